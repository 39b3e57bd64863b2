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


def expand(requirements: list[str]) -> list[str]:
    """The requirements, with the project's own extras (``name[a,b]``) replaced by theirs."""
    out = []
    for requirement in requirements:
        own = re.fullmatch(rf"{re.escape(pyproject['name'])}\[([^\]]+)\]", requirement.strip())
        if own:
            for extra in own[1].split(","):
                out += expand(pyproject["optional-dependencies"][extra.strip()])
        else:
            out.append(requirement)
    return out


requirements = expand(list(pyproject["dependencies"]) + [
    f"{pyproject['name']}[{extra}]" for extra in sys.argv[1:]
])

pins = {}
for requirement in requirements:
    requirement = requirement.split(";")[0].strip()  # environment markers: the floor still holds
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,\s]+)", requirement)
    if match:
        pins[match[1].lower()] = match[3]
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
