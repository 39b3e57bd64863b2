"""Print the CPython versions pyproject.toml's classifiers declare supported, one per line.

``.ci/run`` runs the whole test suite on each that this machine has, so the classifiers say
what is tested.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
for classifier in project["classifiers"]:
    match = re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier)
    if match:
        print(match[1])
