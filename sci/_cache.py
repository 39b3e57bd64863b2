"""An on-disk cache of JSON results, keyed by parameters and the package version.

Writes are atomic (a temporary file in the same directory, then :func:`os.replace`), so an
interrupted run or two concurrent ones never leave a truncated entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ._json import to_jsonable


def cache_key(**parameters: Any) -> str:
    """A stable hex digest of ``parameters`` plus the ``sci`` version."""
    from . import __version__

    payload = json.dumps(
        {"sci_version": __version__, **to_jsonable(parameters)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _default_mode() -> int:
    # mkstemp creates files 0600; a finished file gets the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give ``tmp`` ordinary permissions and rename it onto ``path`` (atomic on POSIX)."""
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        atomic_replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DiskCache:
    """JSON values stored under ``directory/<key>.json``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The stored value, or ``None`` when absent or unreadable (then it is recomputed)."""
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: Any) -> None:
        atomic_write_text(self.path(key), json.dumps(to_jsonable(value)))
