"""``python -m figures``: reproduce every figure (or the named ones) into ``figures/out/``."""

from __future__ import annotations

import argparse
import os
import sys
import time

import sci
from sci._progress import progress_bar, progress_write
from sci.parallel import SCHEDULER_VARIABLE, get_executor

from ._registry import discover

try:
    from ._runner import DEFAULT_CACHE, DEFAULT_OUT, QUICK_SUBDIR, default_out, run_figure
except ModuleNotFoundError as exc:  # `pip install -e .` alone: say which extra, not a traceback
    if exc.name != "matplotlib":
        raise
    sys.exit('the figures need matplotlib: pip install -e ".[figures]"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sci-figures" if os.path.basename(sys.argv[0]) == "sci-figures"
        else "python -m figures",
        description="Reproduce the figures of the five papers (PNG, PDF and the numbers as JSON).",
    )
    parser.add_argument("names", nargs="*", help="figures to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--quick", action="store_true", help="reduced sizes, same computation")
    parser.add_argument(
        "--out", default=None,
        help=f"output folder (default: {DEFAULT_OUT}; with --quick {DEFAULT_OUT / QUICK_SUBDIR}, "
             "so quick runs never overwrite the full figures)",
    )
    parser.add_argument(
        "--backend", choices=sci.backend.BACKENDS, default=None,
        help="array backend (default: the active one, see SCI_BACKEND)",
    )
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="on-disk cache folder")
    parser.add_argument("--no-cache", action="store_true", help="recompute everything")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help=f"run the sweeps on this Dask scheduler, e.g. tcp://host:8786 (default: "
             f"${SCHEDULER_VARIABLE} if set, else local processes); 'serial' runs in-process",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="local worker processes (default: SCI_WORKERS or every core; 1: in-process)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(default_out(args.quick))

    registry = discover()
    if args.list:
        width = max(map(len, registry), default=0)
        for name, fig in registry.items():
            print(f"{name:<{width}}  {fig.reproduces}")
        return 0
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        parser.error(
            f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(registry)}"
        )
    if args.backend is not None:
        try:  # fails early, with the reason, if it is unavailable: one line, exit code 2
            sci.set_backend(args.backend)
        except sci.BackendNotAvailableError as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
    executor = None
    scheduler = args.scheduler
    if scheduler is None and args.workers is not None:
        scheduler = "processes"  # --workers alone: local processes, whatever the environment
    if scheduler is not None or os.environ.get(SCHEDULER_VARIABLE, "").strip():
        if scheduler not in (None, "serial", "processes") and args.workers is not None:
            parser.error("--workers applies to local processes; a Dask cluster sizes itself")
        try:  # connect now: a wrong address fails here, not after the first figures
            executor = get_executor(scheduler, max_workers=args.workers)
        except (ConnectionError, ImportError, TypeError, ValueError) as exc:
            parser.error(str(exc))
    names = args.names or list(registry)
    progress = False if args.no_progress else None
    skipped = {}
    for name in progress_bar(names, progress=progress, desc="figures", unit="fig"):
        start = time.perf_counter()
        record = run_figure(
            registry[name], quick=args.quick, out=args.out, backend=args.backend,
            cache_dir=None if args.no_cache else args.cache_dir, progress=progress,
            executor=executor,
        )
        if "skipped" in record:  # its data cannot be had (sci.datasets): the others still run
            skipped[name] = record["skipped"]
            progress_write(f"{name}: skipped -- {record['skipped']}")
            continue
        origin = "cache" if record["from_cache"] else f"{time.perf_counter() - start:.1f} s"
        progress_write(f"{name}: {args.out}/{name}.png ({origin}) -- {record['reproduces']}")
    print(f"{len(names) - len(skipped)} of {len(names)} figures drawn into {args.out}"
          + (f"; {len(skipped)} skipped:" if skipped else ""), flush=True)
    for name, reason in skipped.items():
        print(f"  {name}: {reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
