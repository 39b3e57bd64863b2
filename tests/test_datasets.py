"""sci.datasets: the registry, local copies, the cache, downloads (from a local HTTP server), and
what the figures do when the data is hidden."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from types import MappingProxyType

import pytest

import sci.datasets as datasets
from sci.datasets import REGISTRY, Dataset, DataUnavailableError, fetch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hidden(tmp_path, monkeypatch):
    """No local copy, an empty cache, downloads allowed only where a test says so."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv(datasets.DATA_VARIABLE, str(empty))
    monkeypatch.setenv(datasets.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setenv(datasets.DOWNLOAD_VARIABLE, "0")
    return tmp_path


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over a folder: (folder, base URL, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _with_entries(monkeypatch, **entries: Dataset) -> None:
    monkeypatch.setattr(datasets, "REGISTRY", MappingProxyType({**REGISTRY, **entries}))


def test_registry_entries_are_pinned_and_checksummed():
    assert len(REGISTRY) == 9
    for name, entry in REGISTRY.items():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0, name
        assert entry.url.startswith("https://"), name
        if name.startswith("chebtuck-paper/"):
            # one commit of the paper's repository, not a branch that can move
            assert "/bonans/ChebTuck/d3235cef615ad99995078d5b52c9fde91896ad27/" in entry.url
        else:
            assert entry.member is not None and len(entry.archive_sha256) == 64


def test_local_copy_matches_the_registry(dataset):
    # every file of ../shared/data (or SCI_DATA_DIR) is the registry's, checksum and all
    for name in REGISTRY:
        assert dataset(name).is_file()


def test_unknown_name_is_refused():
    with pytest.raises(KeyError, match="registry's files"):
        fetch("proteins/1abc.pqr")


def test_hidden_data_raises_a_clear_error(hidden):
    with pytest.raises(DataUnavailableError) as info:
        fetch("proteins/adk_open.pqr")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.dataset == "proteins/adk_open.pqr"
    assert str(hidden / "no-data" / "proteins" / "adk_open.pqr") in message
    assert "downloads are off" in message and "SCI_DATA_DIR" in message
    with pytest.raises(DataUnavailableError, match="adk_open.pqr"):
        datasets.adk_open()


def test_without_pooch_the_error_says_how_to_get_it(hidden, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch -> ImportError
    with pytest.raises(DataUnavailableError, match=r"needs pooch .*sci-theory-results\[data\]"):
        fetch("chebtuck-paper/Newt_canon_256.mat", download=True)


def test_a_wrong_local_file_is_never_used(tmp_path):
    (tmp_path / "proteins").mkdir()
    (tmp_path / "proteins" / "adk_open.pqr").write_text("ATOM\n")
    with pytest.raises(DataUnavailableError, match="SHA-256"):
        fetch("proteins/adk_open.pqr", data_dir=tmp_path)


def test_download_is_checked_and_cached(hidden, server):
    pytest.importorskip("pooch")
    root, base, requests = server
    payload = b"a data file\n" * 100
    (root / "file.bin").write_bytes(payload)
    mp = pytest.MonkeyPatch()
    try:
        _with_entries(mp, **{"test/file.bin": Dataset(_sha256(payload), f"{base}/file.bin", "t")})
        path = fetch("test/file.bin", download=True)
        assert path == hidden / "cache" / "test" / "file.bin" and path.read_bytes() == payload
        assert fetch("test/file.bin", download=False) == path  # from the cache, no request
        assert requests == ["/file.bin"]
        # the source changed: its checksum no longer matches, and nothing is cached
        (root / "other.bin").write_bytes(b"changed")
        _with_entries(mp, **{"test/other.bin": Dataset(_sha256(b"x"), f"{base}/other.bin", "t")})
        with pytest.raises(DataUnavailableError, match="download failed"):
            fetch("test/other.bin", download=True)
        assert not (hidden / "cache" / "test" / "other.bin").exists()
    finally:
        mp.undo()


def test_download_of_an_archive_member(hidden, server):
    pytest.importorskip("pooch")
    root, base, _ = server
    member = b"ATOM      1  N   MET     1       0.000   0.000   0.000 -0.3000 1.8500\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/data/one.pqr")
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member))
    (root / "pkg-1.0.tar.gz").write_bytes(buffer.getvalue())
    mp = pytest.MonkeyPatch()
    try:
        _with_entries(mp, **{"proteins/one.pqr": Dataset(
            _sha256(member), f"{base}/pkg-1.0.tar.gz", "t", member="pkg-1.0/data/one.pqr",
            archive_sha256=_sha256(buffer.getvalue()),
        )})
        path = fetch("proteins/one.pqr", download=True)
        assert path.read_bytes() == member
        assert not (hidden / "cache" / ".archives").exists()  # the archive is not kept
    finally:
        mp.undo()


def test_local_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_VARIABLE, str(tmp_path))
    assert datasets.local_data_dir() == tmp_path
    assert datasets.local_data_dir(tmp_path / "x") == tmp_path / "x"  # the argument wins
    monkeypatch.delenv(datasets.DATA_VARIABLE)
    beside = ROOT.parent / "shared" / "data"
    assert datasets.local_data_dir() == (beside if beside.is_dir() else None)


def test_figures_with_the_data_hidden(tmp_path):
    """Data figures are skipped with a one-line reason; the others are drawn; exit status 0."""
    pytest.importorskip("matplotlib")
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = dict(os.environ, SCI_DATA_DIR=str(empty), SCI_DATA_CACHE=str(tmp_path / "cache"),
               SCI_DATA_DOWNLOAD="0", SCI_PROGRESS="0")
    out = tmp_path / "out"
    names = ["chebyshev_tucker_protein", "chebyshev_tucker_newton", "marchenko_pastur"]
    result = subprocess.run(
        [sys.executable, "-m", "figures", "--quick", "--no-cache", "--workers", "1",
         "--out", str(out), *names],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "1 of 3 figures drawn into" in result.stdout and "2 skipped:" in result.stdout
    for name, file in [("chebyshev_tucker_protein", "proteins/adk_open.pqr"),
                       ("chebyshev_tucker_newton", "chebtuck-paper/Newt_canon_256.mat")]:
        assert any(line.startswith(f"{name}: skipped -- data file '{file}'") for line in lines)
        assert any(line.strip().startswith(f"{name}: data file '{file}'") for line in lines)
        assert not (out / f"{name}.png").exists()
    assert (out / "marchenko_pastur.png").is_file() and (out / "marchenko_pastur.json").is_file()
