"""Command lines and terminal output: unavailable backends, quick vs full outputs, progress."""

from __future__ import annotations

import io
import json
import re

import pytest

import sci


@pytest.mark.parametrize("module", ["figures", "benchmarks"])
def test_unavailable_backend_is_one_line_and_exit_code_2(module, monkeypatch, capsys):
    import importlib

    main = importlib.import_module(f"{module}.__main__").main

    def unavailable(name):
        raise sci.BackendNotAvailableError(f"backend {name!r} is not available: no CUDA device")

    monkeypatch.setattr(sci, "set_backend", unavailable)
    assert main(["--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"python -m {module}: error: backend 'cupy' is not available: no CUDA device"
    ]


def test_quick_figures_go_apart_from_full_ones_and_are_labelled(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from figures import __main__ as cli
    from figures import _runner
    from figures._registry import discover

    assert cli is not None
    assert _runner.default_out(True) == _runner.DEFAULT_OUT / "quick"
    assert _runner.default_out(False) == _runner.DEFAULT_OUT
    # The CLI's default --out follows --quick.
    monkeypatch.setattr(_runner, "DEFAULT_OUT", tmp_path / "out")
    seen = {}

    def fake_run(figure, *, quick, out, **kwargs):
        seen[quick] = out
        return {"from_cache": True, "reproduces": figure.reproduces}

    monkeypatch.setattr(cli, "run_figure", fake_run)
    monkeypatch.setattr(cli, "default_out", _runner.default_out)
    assert cli.main(["--quick", "--no-progress", "marchenko_pastur"]) == 0
    assert cli.main(["--no-progress", "marchenko_pastur"]) == 0
    assert seen == {True: str(tmp_path / "out" / "quick"), False: str(tmp_path / "out")}

    # The quick figure says so in the image; the full one does not.
    texts = {}
    import dataclasses

    # The full parameters replaced by the quick ones: the same run, only the label differs.
    real_plot = discover()["marchenko_pastur"]
    real_plot = dataclasses.replace(real_plot, full=real_plot.quick)
    drawn = []
    monkeypatch.setattr(plt, "close", lambda fig: drawn.append(fig))
    for quick in (True, False):
        _runner.run_figure(real_plot, quick=quick, out=tmp_path / str(quick),
                           cache_dir=tmp_path / "cache", progress=False)
        texts[quick] = [t.get_text() for t in drawn[-1].texts]
        assert json.loads((tmp_path / str(quick) / "marchenko_pastur.json").read_text())[
            "quick"] is quick
    assert _runner.QUICK_LABEL in texts[True]
    assert _runner.QUICK_LABEL not in texts[False]


def test_result_lines_do_not_land_inside_progress_bars():
    from sci._progress import progress_bar, progress_write

    buf = io.StringIO()
    for i in progress_bar(range(3), progress=True, file=buf, desc="outer"):
        for _ in progress_bar(range(2), progress=True, file=buf, desc="inner"):
            pass
        progress_write(f"result {i}", file=buf)
    out = buf.getvalue()
    for i in range(3):
        # Each result line starts on a cleared line (after '\r') and ends it: never glued to
        # a bar's text, as a plain print() between bar refreshes is.
        assert re.search(rf"\rresult {i}\n", out), out
        assert not re.search(rf"[^\r\s]result {i}", out)
