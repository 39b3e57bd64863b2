"""Sphinx configuration. Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Before the build, every figure of ``figures/`` is computed in its quick mode into
``docs/_generated/figures`` (cached in ``docs/_generated/cache``), and the gallery page is
written from the figure registry, so the docs always show what the code computes now. The
performance page is written from the benchmark records in ``benchmarks/results/``.
Set ``SCI_DOCS_FULL_FIGURES=1`` to draw the full-size figures instead.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import sci  # noqa: E402

# The repository's address, from the one place it is written: pyproject.toml's [project.urls].
SOURCE_URL = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "urls"
]["Source"]

project = "sci"
author = "the sci developers"
copyright = "2026, the sci developers"
release = version = sci.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax 3 from a pip package, copied into _static/mathjax: no CDN, so the formulas
    # render with no network (.ci/docs_math_check.py checks it in a browser).
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinxcontrib.bibtex",
]
mathjax_path = "mathjax/tex-chtml.js"
autosummary_generate = True
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
bibtex_bibfiles = sorted(str(p.relative_to(DOCS)) for p in (DOCS / "bib").glob("*.bib"))
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"
exclude_patterns = ["_build", "**/README.md"]
templates_path = ["_templates"]
html_theme = "pydata_sphinx_theme"
html_title = f"sci {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "icon_links": [
        {"name": "Source repository", "url": SOURCE_URL, "icon": "fa-brands fa-github"},
    ],
}
rst_epilog = f"\n.. _source repository: {SOURCE_URL}\n"

# A subpackage's docstring opens with an overview: lines "name   -- summary" under headings,
# read as plain text in a terminal. Sphinx would join each group into one paragraph; these
# lines become a bullet list with links to each name's page.
_OVERVIEW_ENTRY = re.compile(r"^(?P<names>[A-Za-z_][\w.]*(?:, [A-Za-z_][\w.]*)*)\s{2,}"
                             r"(?:--\s+)?(?P<summary>\S.*)$")


def _overview_lists(app, what, name, obj, options, lines):
    if what != "module":
        return
    out: list[str] = []
    in_list = False
    for line in lines:
        match = _OVERVIEW_ENTRY.match(line)
        if match:
            if not in_list and out and out[-1].strip():
                out.append("")
            names = ", ".join(
                f":obj:`~{name}.{n}`" if hasattr(obj, n) else f"``{n}``"
                for n in match["names"].split(", ")
            )
            out.append(f"* {names} -- {match['summary']}")
            in_list = True
        elif in_list and line.startswith("  ") and line.strip():
            out[-1] += " " + line.strip()  # a summary continued on the next line
        else:
            if in_list and line.strip():
                out.append("")
            out.append(line)
            in_list = False
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", _overview_lists, priority=600)


def _generate_figures() -> None:
    """Run every figure (quick unless asked for full) and write the gallery page."""
    from figures._registry import discover
    from figures._runner import run_figure

    generated = DOCS / "_generated"
    out = generated / "figures"
    quick = os.environ.get("SCI_DOCS_FULL_FIGURES", "") not in {"1", "true", "yes"}
    registry = discover()
    lines = [
        "Figure gallery",
        "==============",
        "",
        "Every figure the package reproduces, drawn by ``python -m figures`` "
        f"({'quick mode: reduced sizes, same computation' if quick else 'full size'}). "
        "Beside each PNG the runner writes a JSON file with the numbers drawn.",
        "",
    ]
    skipped: dict[str, str] = {}
    by_subpackage: dict[str, list] = {}
    for fig in registry.values():
        by_subpackage.setdefault(fig.subpackage or "other", []).append(fig)
    for subpackage, figs in sorted(by_subpackage.items()):
        lines += [subpackage, "-" * len(subpackage), ""]
        for fig in figs:
            cache = os.environ.get("SCI_FIGURES_CACHE") or generated / "cache"
            record = run_figure(fig, quick=quick, out=out, cache_dir=cache, progress=False)
            lines += [
                f".. _figure-{fig.name}:",
                "",
                fig.title,
                "~" * len(fig.title),
                "",
                f"*Reproduces:* {fig.reproduces}. Command: ``python -m figures {fig.name}``.",
                "",
            ]
            if "skipped" in record:
                # The pages that embed it still build: they show a panel that says why.
                skipped[fig.name] = record["skipped"]
                _placeholder(out / f"{fig.name}.png", fig.title, record["skipped"])
                lines += [f".. note:: Not drawn in this build: {record['skipped']}.", ""]
            lines += [
                f".. image:: /_generated/figures/{fig.name}.png",
                f"   :alt: {fig.title}",
                "   :width: 90%",
                "",
            ]
    (generated / "gallery.rst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if skipped:
        print(f"docs: {len(skipped)} figure(s) not drawn (their data cannot be had):")
        for name, reason in skipped.items():
            print(f"  {name}: {reason}")


def _placeholder(path: Path, title: str, reason: str) -> None:
    """A PNG that says the figure was not drawn, and why."""
    import textwrap

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 2))
    fig.text(0.5, 0.5, f"{title}\n\nnot drawn in this build:\n" + textwrap.fill(reason, 90),
             ha="center", va="center", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _generate_performance_page() -> None:
    """The performance page, from the benchmark records (benchmarks/_report.py)."""
    from benchmarks._report import write

    write(DOCS / "_generated" / "performance.rst")


_generate_figures()
_generate_performance_page()
