"""``python -m benchmarks [NAME ...] [--quick]``: time sci against its peers, record results."""

from __future__ import annotations

import argparse
import sys

import sci

from ._harness import RESULTS, discover, run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument("--backend", choices=sci.backend.BACKENDS, default=None)
    parser.add_argument("--report", metavar="PATH", default=None,
                        help="write the performance page (reStructuredText) from the recorded "
                             "results to PATH ('-': print it) and exit")
    args = parser.parse_args(argv)
    if args.report:
        from ._report import render, write

        if args.report == "-":
            print(render(args.out), end="")
        else:
            print(f"-> {write(args.report, args.out)}")
        return 0
    registry = discover()
    if args.list:
        for name, bench in registry.items():
            print(f"{name:<20} {bench.description}")
        return 0
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(registry)}"
        )
    if args.backend:
        try:  # an unavailable backend: one line with the reason, exit code 2 (no traceback)
            sci.set_backend(args.backend)
        except sci.BackendNotAvailableError as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
    from sci.parallel import use_executor

    for name in args.names or list(registry):
        # Time the kernels in this process, not a process pool (sweeps split into tasks would
        # otherwise go to sci.parallel's default executor).
        with use_executor("serial"):
            record = run_benchmark(registry[name], quick=args.quick, out=args.out,
                                   repeats=args.repeats)
        print(f"-> {record['path']}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
