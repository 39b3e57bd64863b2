"""Print the README command marked ``<!-- command: NAME -->`` (the contract CI runs verbatim)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(name: str, text: str | None = None) -> str:
    text = README.read_text(encoding="utf-8") if text is None else text
    pattern = rf"<!-- command: {re.escape(name)} -->\s*```(?:bash|sh)?\n(.+?)\n```"
    matches = re.findall(pattern, text, flags=re.S)
    if len(matches) != 1:
        raise SystemExit(f"README.md must hold exactly one '{name}' command; found {len(matches)}")
    command = matches[0].strip()
    if "\n" in command:
        raise SystemExit(f"the README's '{name}' command must be one line")
    return command


if __name__ == "__main__":
    print(readme_command(sys.argv[1]))
