"""``sci-figures``: the console script for ``python -m figures`` (see the README).

The figure scripts are part of the source repository (``figures/``, beside this package), not
of the installed package: the command runs them from a source checkout installed with
``pip install -e ".[figures]"``, and says so anywhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None, *, root: Path | None = None) -> int:
    """Run ``python -m figures`` with ``argv``; ``root``: the checkout (default: beside sci)."""
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    if not (root / "figures" / "_registry.py").is_file():
        print(
            "sci-figures: the figure scripts live in the source repository (figures/), which "
            f"this installation ({root}) does not have. Clone the repository and install it "
            'with `pip install -e ".[figures]"`, then run `sci-figures` or `python -m figures`.',
            file=sys.stderr,
        )
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from figures.__main__ import main as figures_main

    return figures_main(argv)


if __name__ == "__main__":
    sys.exit(main())
