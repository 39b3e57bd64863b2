"""``python -m sci.gaunt.calibrate``: measure the Gaunt-product methods on this machine.

Writes the table that ``method="auto"`` reads (:func:`sci.gaunt.calibrate_methods`): by default
the user's (``$SCI_GAUNT_METHODS``, else ``gaunt_methods.json`` in the data cache folder), with
``--packaged`` the repository's ``sci/gaunt/auto_methods.json``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from ..backend import use_backend
    from ._auto import (
        DEFAULT_BATCHES,
        DEFAULT_DEGREES,
        DEFAULT_POWERS,
        PACKAGED_TABLE,
        calibrate_methods,
        user_table_path,
    )

    parser = argparse.ArgumentParser(prog="python -m sci.gaunt.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None, choices=("numpy", "numba", "cupy"),
                        help="the switch to measure under (default: the active one)")
    parser.add_argument("--torch", metavar="DEVICE", default=None,
                        help="measure torch tensors on DEVICE (cpu, cuda, cuda:1) instead")
    parser.add_argument("--degrees", type=int, nargs="+", default=list(DEFAULT_DEGREES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                        choices=("float32", "float64"))
    parser.add_argument("--powers", type=int, nargs="*", default=list(DEFAULT_POWERS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--packaged", action="store_true",
                        help=f"write the repository's table ({PACKAGED_TABLE.name})")
    args = parser.parse_args(argv)
    path = PACKAGED_TABLE if args.packaged else user_table_path()
    xp = device = None
    if args.torch is not None:
        import torch

        xp, device = torch, args.torch

    def say(line: str) -> None:
        print(line, flush=True)

    with use_backend(args.backend) if args.backend else _nothing():
        calibrate_methods(degrees=args.degrees, batches=args.batches, dtypes=args.dtypes,
                          powers=args.powers, xp=xp, device=device, repeats=args.repeats,
                          path=path, progress=say)
    print(f"written: {path}")
    return 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
