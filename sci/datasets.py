"""The data sets of the papers: a registry of files, each checked by SHA-256, fetched on first use.

Modelled on :mod:`scipy.datasets`: every file has a name (its path in the data folder), a
SHA-256 and a source. :func:`fetch` returns a local path, looking in this order:

1. a local copy: the ``data_dir`` argument, else the folder named by ``SCI_DATA_DIR``, else,
   in a source checkout, ``../shared/data`` beside the repository (where the project keeps it);
2. the download cache (``SCI_DATA_CACHE``, else pooch's per-user cache folder);
3. a download from the source, with `pooch <https://www.fatiando.org/pooch>`_ (the optional
   ``data`` extra: ``pip install "sci-theory-results[data]"``), unless ``download=False`` or
   ``SCI_DATA_DOWNLOAD=0``.

A file that is found nowhere and cannot be downloaded raises :class:`DataUnavailableError`
(a :class:`FileNotFoundError`) that says where it looked and how to supply it. A file whose
checksum differs from the registry's is never used.

Sources
-------
``chebtuck-paper/*.mat``
    The test data published with the Chebyshev-Tucker paper (Benner, Khoromskij, Khoromskaia &
    Sun, arXiv:2503.01696) in its reproduction repository, github.com/bonans/ChebTuck.
``proteins/adk_open.pqr``
    Adenylate kinase (open form, 3341 atoms, PQR from PDB2PQR with CHARMM), from the
    MDAnalysis test-suite package MDAnalysisTests 2.11.0 (its source archive on PyPI).

Functions
---------
fetch                 the local path of one registry file (downloaded if needed)
adk_open              adenylate kinase: positions (Å), charges (e), radii (Å)
download_all          fetch every file (e.g. before going offline)
clear_cache           delete the download cache
local_data_dir        the local copy in use, if any
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

__all__ = [
    "CACHE_VARIABLE",
    "DATA_VARIABLE",
    "DOWNLOAD_VARIABLE",
    "REGISTRY",
    "DataUnavailableError",
    "Dataset",
    "adk_open",
    "clear_cache",
    "download_all",
    "fetch",
    "local_data_dir",
]

DATA_VARIABLE = "SCI_DATA_DIR"
CACHE_VARIABLE = "SCI_DATA_CACHE"
DOWNLOAD_VARIABLE = "SCI_DATA_DOWNLOAD"

# A download that stalls fails instead of hanging a figure run or a test session.
_TIMEOUT_S = 60


class DataUnavailableError(FileNotFoundError):
    """A registry file is neither in a local copy nor in the cache, and cannot be downloaded.

    ``dataset`` is the registry name of the file.
    """

    def __init__(self, message: str, dataset: str | None = None) -> None:
        super().__init__(message)
        self.dataset = dataset


@dataclass(frozen=True)
class Dataset:
    """One registry file: where it comes from and its checksum."""

    sha256: str
    """SHA-256 of the file itself."""
    url: str
    """The file, or the archive that holds it (``member``)."""
    description: str
    member: str | None = None
    """The file's path inside the archive at ``url``; ``None`` when ``url`` is the file."""
    archive_sha256: str | None = None
    """SHA-256 of the archive at ``url`` (with ``member``)."""


# Pinned to the repository's commit so a later push cannot change what a name means.
_CHEBTUCK = (
    "https://raw.githubusercontent.com/bonans/ChebTuck/"
    "d3235cef615ad99995078d5b52c9fde91896ad27/data/"
)
_NEWTON_SHA256 = {
    256: "36632af6553003e697f9409702c0b6011f26700c483c1a0b79e5850727c152ba",
    512: "be9ccee47c02a7574f6ba177d3f62a51260dabf19d5ea554f54a65437997bcef",
    1024: "e2d9b5d750034249378dbae713480b062f3e4c2c8b328dcef6b43452a1b87b2e",
    2048: "bce44be0f86330c08d19db42aa6e832b370b4d37532cfb1c2470d5ccd5d94e24",
    4096: "3c5cb8ab9fd58c33799183541897f9264732d342958c169cb4074eb78869d7e9",
    8192: "dd102cfb0bd276fad3b94251f48abe65ddaac58d500d7694a14a56d25b5402aa",
}
_MDANALYSIS_SDIST = (
    "https://files.pythonhosted.org/packages/27/bb/"
    "f16a0690f7f0219eec3310deb3d47f09da6df58a50873f6624f4742ea6f0/mdanalysistests-2.11.0.tar.gz"
)

REGISTRY: Mapping[str, Dataset] = MappingProxyType({
    **{
        f"chebtuck-paper/Newt_canon_{n}.mat": Dataset(
            sha256, f"{_CHEBTUCK}Newton_CP_-1_1/Newt_canon_{n}.mat",
            f"canonical (CP) factor U1r of the Newton kernel 1/|x| on the {n}^3 grid",
        )
        for n, sha256 in _NEWTON_SHA256.items()
    },
    "chebtuck-paper/n256_Pn500.mat": Dataset(
        "d3071ad4f4dc7cd79ee35e1380479f44979d12b899873b3a62f53a8d6b123b89",
        f"{_CHEBTUCK}Data_256-2048/n256_Pn500.mat",
        "long-range potential of a 500-particle bio-molecule on a 256^3 grid, CP form",
    ),
    "chebtuck-paper/Lattice_n960_ParticlesNumber_2304_Rank_50.mat": Dataset(
        "250caa30679ac8367702e580336471096f2c5e9cd4c5aaf8bfd898db7dffefe2",
        f"{_CHEBTUCK}lattice/Lattice_n960_ParticlesNumber_2304_Rank_50.mat",
        "lattice-summed Newton kernel of a 24 x 24 x 4 lattice of 2304 charges",
    ),
    "proteins/adk_open.pqr": Dataset(
        "8b3818da8e5b3a598bcce44a74d6693494b3fd552d7c897100caf4a01a5d4434",
        _MDANALYSIS_SDIST,
        "adenylate kinase, open form, 3341 atoms (PQR, CHARMM)",
        member="mdanalysistests-2.11.0/MDAnalysisTests/data/adk_open.pqr",
        archive_sha256="5edeb5b01805da728b202103aa8d2b5974a37f1005ab1fe0150ed7d59702d2ea",
    ),
})


def local_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local copy :func:`fetch` reads first, or ``None`` when there is none.

    ``data_dir`` if given, else ``$SCI_DATA_DIR``, else ``../shared/data`` beside a source
    checkout (the folder holding ``pyproject.toml`` above this package) when it exists.

    >>> from sci.datasets import local_data_dir
    >>> local_data_dir("/some/folder")
    PosixPath('/some/folder')
    """
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_VARIABLE, "").strip()
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[1]
    beside = root.parent / "shared" / "data"
    if (root / "pyproject.toml").is_file() and beside.is_dir():
        return beside
    return None


def _cache_dir() -> Path:
    env = os.environ.get(CACHE_VARIABLE, "").strip()
    if env:
        return Path(env)
    try:
        import pooch
    except ImportError:
        return Path.home() / ".cache" / "sci-theory-results"
    return Path(pooch.os_cache("sci-theory-results"))


def _download_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(DOWNLOAD_VARIABLE, "").strip().lower() not in {"0", "false", "no"}


@functools.lru_cache(maxsize=64)
def _sha256_of(path: Path, mtime_ns: int, size: int) -> str:
    # Keyed by modification time and size: a file is hashed once per process, and again if it
    # changes.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, name: str, entry: Dataset) -> Path:
    stat = path.stat()
    found = _sha256_of(path, stat.st_mtime_ns, stat.st_size)
    if found != entry.sha256:
        raise DataUnavailableError(
            f"{path} is not the registry's {name!r}: SHA-256 {found}, expected {entry.sha256} "
            "(a damaged or different file; replace it or delete it to download it again)",
            name,
        )
    return path


def _download(name: str, entry: Dataset, cache: Path) -> Path:
    import pooch

    downloader = pooch.HTTPDownloader(timeout=_TIMEOUT_S, progressbar=False)
    if entry.member is None:
        target = cache / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=target.name,
                       path=target.parent, downloader=downloader)
        return target
    # The file ships inside an archive: fetch it (checked), extract the one member, and keep
    # that member under its registry name; the archive itself is not kept.
    archives = cache / ".archives"
    extracted = pooch.retrieve(
        entry.url, known_hash=f"sha256:{entry.archive_sha256}", path=archives,
        fname=entry.url.rsplit("/", 1)[-1], downloader=downloader,
        processor=pooch.Untar(members=[entry.member]),
    )
    target = cache / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(extracted[0], target)
    shutil.rmtree(archives, ignore_errors=True)
    return target


def fetch(
    name: str, *, data_dir: str | os.PathLike | None = None, download: bool | None = None
) -> Path:
    """The local path of the registry file ``name``, checked against its SHA-256.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`, the file's path in the data folder, e.g.
        ``"proteins/adk_open.pqr"``.
    data_dir : path-like, optional
        A local copy of the data folder, read in place (default: ``$SCI_DATA_DIR``, else
        ``../shared/data`` beside a source checkout).
    download : bool, optional
        Whether a missing file may be downloaded into the cache (default: yes, unless
        ``SCI_DATA_DOWNLOAD=0``). Downloading needs pooch (the ``data`` extra).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    KeyError
        ``name`` is not in the registry.
    DataUnavailableError
        The file is in no local copy or cache and cannot be downloaded, or a copy found has the
        wrong checksum. The message says where it looked and how to supply the file.

    Examples
    --------
    >>> from sci.datasets import REGISTRY, fetch
    >>> "proteins/adk_open.pqr" in REGISTRY
    True
    >>> fetch("proteins/adk_open.pqr").name  # doctest: +SKIP
    'adk_open.pqr'
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise KeyError(f"name must be one of the registry's files {sorted(REGISTRY)}; got {name!r}")
    entry = REGISTRY[name]
    local = local_data_dir(data_dir)
    looked = []
    if local is not None:
        path = local / name
        if path.is_file():
            return _checked(path, name, entry)
        looked.append(str(path))
    cache = _cache_dir()
    cached = cache / name
    if cached.is_file():
        return _checked(cached, name, entry)
    looked.append(str(cached))
    where = f"looked in {' and '.join(looked)}"
    supply = (f"set {DATA_VARIABLE} to a folder holding {name}, or pass data_dir=; "
              f"the source is {entry.url}")
    if not _download_allowed(download):
        raise DataUnavailableError(
            f"data file {name!r} not found ({where}) and downloads are off "
            f"(download=False or {DOWNLOAD_VARIABLE}=0): {supply}",
            name,
        )
    try:
        import pooch  # noqa: F401
    except ImportError:
        raise DataUnavailableError(
            f"data file {name!r} not found ({where}), and downloading it needs pooch "
            f"(pip install \"sci-theory-results[data]\"): {supply}",
            name,
        ) from None
    try:
        return _checked(_download(name, entry, cache), name, entry)
    except DataUnavailableError:
        raise
    except Exception as exc:  # network errors, refused connections, a changed file at the source
        raise DataUnavailableError(
            f"data file {name!r} not found ({where}) and its download failed "
            f"({type(exc).__name__}: {exc}): {supply}",
            name,
        ) from exc


def adk_open(
    *, data_dir: str | os.PathLike | None = None, download: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adenylate kinase (open form): positions (M, 3) in Å, charges (M,) in e, radii (M,) in Å.

    3341 atoms, read with :func:`sci.chebyshev_tucker.read_pqr` from the registry file
    ``proteins/adk_open.pqr`` (MDAnalysisTests 2.11.0; see :func:`fetch` for the arguments).

    Examples
    --------
    >>> from sci.datasets import adk_open
    >>> x, q, radii = adk_open()  # doctest: +SKIP
    >>> x.shape, round(float(q.sum()), 6)  # doctest: +SKIP
    ((3341, 3), -4.0)
    """
    from sci.chebyshev_tucker import read_pqr

    return read_pqr(fetch("proteins/adk_open.pqr", data_dir=data_dir, download=download))


def download_all(*, data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Fetch every registry file (from a local copy where there is one); name -> path.

    Run it once with a network to work offline afterwards (the files stay in the cache).

    Examples
    --------
    >>> from sci.datasets import download_all
    >>> paths = download_all()  # doctest: +SKIP
    >>> sorted(paths)[0]  # doctest: +SKIP
    'chebtuck-paper/Lattice_n960_ParticlesNumber_2304_Rank_50.mat'
    """
    return {name: fetch(name, data_dir=data_dir, download=True) for name in REGISTRY}


def clear_cache() -> None:
    """Delete the download cache (``SCI_DATA_CACHE`` or pooch's); never a local copy."""
    shutil.rmtree(_cache_dir(), ignore_errors=True)
