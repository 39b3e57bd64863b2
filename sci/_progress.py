"""Progress bars for long work: on in a terminal, off otherwise, silenced by ``SCI_PROGRESS=0``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress_enabled(progress: bool | None = None) -> bool | None:
    """``False`` when silenced (argument or ``SCI_PROGRESS=0``); ``None`` lets tqdm decide (TTY)."""
    if progress is False or os.environ.get("SCI_PROGRESS", "").strip() in {"0", "false", "no"}:
        return False
    return True if progress else None


def progress_bar(
    iterable: Iterable[T], *, progress: bool | None = None, **tqdm_kwargs: Any
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar that turns itself off when stderr is not a terminal.

    Parameters
    ----------
    progress : bool or None
        ``False`` silences it; ``True`` forces it; ``None`` (default) shows it on a terminal.
        Without tqdm (an optional dependency, in the ``figures`` extra) there is no bar.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: the same iteration, silently
        return iter(iterable)

    enabled = progress_enabled(progress)
    # tqdm's disable=None means "disable when not attached to a TTY".
    disable = True if enabled is False else (False if enabled else None)
    # leave=None: a bar nested in another (a sweep inside ``python -m figures``) clears its
    # line when done instead of leaving a stale copy between the outer bar and the results.
    tqdm_kwargs.setdefault("leave", None)
    return iter(tqdm(iterable, disable=disable, **tqdm_kwargs))


def progress_write(message: str, *, file: Any = None) -> None:
    """Print a line of results without breaking the progress bars on the terminal.

    Through :func:`tqdm.tqdm.write`: the bars are cleared, the line printed, the bars drawn again
    below it (a plain ``print`` would land in the middle of a bar's line).
    """
    import sys

    file = file if file is not None else sys.stdout
    try:
        from tqdm.auto import tqdm
    except ImportError:  # no tqdm, no bars to keep clear of
        print(message, file=file, flush=True)
        return
    tqdm.write(message, file=file)
