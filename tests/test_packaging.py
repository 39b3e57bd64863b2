"""Packaging: names, what `import sci` pulls in, optional tqdm, the console script, metadata."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SUBPACKAGES = ["generalization", "neural_collapse", "chebyshev_tucker", "gaunt",
               "tensor_attention"]
# Optional: each in the extra that needs it, never imported by `import sci` or a subpackage.
OPTIONAL = {"matplotlib", "tqdm", "sympy", "mpmath", "tensorly", "pooch", "dask",
            "distributed", "theory", "figures"}


def test_names_cannot_collide():
    project = PYPROJECT["project"]
    assert project["name"] == "sci-theory-results"  # `sci` is another project on PyPI
    # the wheel holds the `sci` package only: no top-level `theory`, `figures`, `tests`
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["sci", "sci.*"]
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["sci"]
    assert (ROOT / "sci" / "py.typed").is_file()
    assert project["scripts"]["sci-figures"] == "sci._figures_cli:main"
    assert project["urls"]["Source"].startswith("https://")


def test_required_dependencies_are_what_sci_imports(tmp_path):
    required = {re.split(r"[<>=\[ ]", d)[0] for d in PYPROJECT["project"]["dependencies"]}
    assert required == {"numpy", "scipy", "numba", "array-api-compat"}
    code = ("import sys, sci, sci.datasets, sci.parallel; "
            + "; ".join(f"import sci.{s}" for s in SUBPACKAGES)
            + f"; print(sorted({{m.split('.')[0] for m in sys.modules}} & {OPTIONAL!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_progress_bar_without_tqdm(monkeypatch):
    from sci._progress import progress_bar

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert list(progress_bar(range(3), progress=True)) == [0, 1, 2]


def test_progress_write_without_tqdm(monkeypatch, capsys):
    from sci._progress import progress_write

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    progress_write("figure: done")
    assert capsys.readouterr().out == "figure: done\n"


def test_console_script(capsys, tmp_path):
    from sci._figures_cli import main

    assert main(["--list"]) == 0
    assert "marchenko_pastur" in capsys.readouterr().out
    # installed without the source tree: a clear message, no traceback
    assert main(["--list"], root=tmp_path) == 2
    assert "source repository" in capsys.readouterr().err


def test_public_functions_have_return_types():
    # Open: sci.backend (issue 13 reworks it) and gaunt's Fourier conversions (issue 15.5);
    # parallel_map returns whatever its function does.
    exempt = {"asarray", "register", "implementation", "sh_to_fourier", "fourier_to_sh",
              "parallel_map"}
    missing = []
    for sub in [*SUBPACKAGES, "datasets", "parallel", "backend"]:
        module = importlib.import_module(f"sci.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.isfunction(obj) or name in exempt:
                continue
            ann = inspect.signature(obj).return_annotation
            if ann is inspect.Signature.empty or re.search(r"\bAny\b", str(ann)):
                missing.append(f"sci.{sub}.{name} -> {ann}")
    assert not missing, missing


def test_citation_lists_the_papers():
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    papers = (ROOT / "docs" / "bib" / "papers.bib").read_text(encoding="utf-8")
    arxiv = set(re.findall(r"arXiv:(\d{4}\.\d{5})", papers))
    assert len(arxiv) == 6  # the five results; tensor attention has two papers
    assert arxiv == set(re.findall(r"arXiv:(\d{4}\.\d{5})", citation))
    assert "license: BSD-3-Clause" in citation
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PYPROJECT["project"]["urls"]["Source"] in citation
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["figures", "tests"])
def test_readme_commands_install_what_they_run(command):
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        from readme_command import readme_command
    finally:
        sys.path.remove(str(ROOT / ".ci"))
    line = readme_command(command)
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', line)
    assert extras, line
    optional = PYPROJECT["project"]["optional-dependencies"]
    for extra in extras[1].split(","):
        assert extra in optional
    if command == "figures":  # the figures import matplotlib: their extra must be installed
        assert "figures" in extras[1].split(",")
