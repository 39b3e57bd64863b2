"""Print pip constraints pinning every floor in pyproject.toml (``name>=X`` -> ``name==X``).

CI installs the package with ``-c`` this file on the oldest supported Python, so the floors
users read in pyproject.toml are the versions tested. Read from pyproject itself, so the two
cannot drift. ``python .ci/minimum_versions.py EXTRA ...`` covers the optional extras named.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(pyproject["dependencies"])
for extra in sys.argv[1:]:
    requirements += pyproject["optional-dependencies"][extra]

pins = {}
for requirement in requirements:
    requirement = requirement.split(";")[0].strip()  # environment markers: the floor still holds
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,\s]+)", requirement)
    if match:
        pins[match[1].lower()] = match[3]
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
