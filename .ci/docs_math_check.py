"""Check, in a real browser with no network, that the built docs render their formulas.

Serves the built HTML on 127.0.0.1, opens one results page in headless Chromium with every
other host unresolvable (so a CDN could not help), lets MathJax run, and fails if

* MathJax rendered nothing (no ``mjx-container`` element), or
* TeX source is still on the page (a ``\\(`` or ``\\[`` outside scripts and styles: what a
  reader sees when MathJax did not load).

It also saves a screenshot of the page for a human to look at.

Usage (after the docs build)::

    python3 .ci/docs_math_check.py [--html docs/_build/html] [--page results/gaunt.html]
                                   [--screenshot docs/_build/math_check.png]

Chromium is the Debian package ``chromium``; where it is missing the script installs it
(``apt-get update && apt-get install -y chromium``, as root).
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
    # no host but the local server resolves: the page must render from its own files
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# virtual time: Chromium runs the page's timers (MathJax's loader and typesetting) this far
# ahead before it dumps the DOM or takes the screenshot.
BUDGET_MS = 20000


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() != 0:
        sys.exit("docs math check: chromium is not installed and this is not root "
                 "(apt-get install -y chromium)")
    print("docs math check: installing chromium (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    path = shutil.which("chromium")
    if path is None:
        sys.exit("docs math check: chromium still missing after apt-get install")
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def visible_tex(dom: str) -> list[str]:
    """Snippets of the page's text that still hold TeX delimiters (scripts, styles removed)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return [text[max(0, m.start() - 30): m.end() + 40].replace("\n", " ")
            for m in re.finditer(r"\\[(\[]", text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default=str(ROOT / "docs" / "_build" / "html"))
    parser.add_argument("--page", default="results/gaunt.html")
    parser.add_argument("--screenshot", default=str(ROOT / "docs" / "_build" / "math_check.png"))
    args = parser.parse_args(argv)

    site = Path(args.html)
    if not (site / args.page).is_file():
        sys.exit(f"docs math check: {site / args.page} not found (build the docs first)")
    source = (site / args.page).read_text(encoding="utf-8")
    if "\\(" not in source and "\\[" not in source:
        sys.exit(f"docs math check: {args.page} has no formulas to check; choose another page")
    browser = chromium()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{args.page}"
    screenshot = Path(args.screenshot).resolve()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as profile_a, tempfile.TemporaryDirectory() as profile_b:
            common = [browser, *CHROMIUM_FLAGS, f"--virtual-time-budget={BUDGET_MS}"]
            dom = subprocess.run(
                [*common, f"--user-data-dir={profile_a}", "--dump-dom", url],
                capture_output=True, text=True, timeout=180,
            )
            shot = subprocess.run(
                [*common, f"--user-data-dir={profile_b}", "--window-size=1280,2400",
                 f"--screenshot={screenshot}", url],
                capture_output=True, text=True, timeout=180,
            )
    finally:
        server.shutdown()
        server.server_close()

    problems = []
    if dom.returncode != 0 or not dom.stdout.strip():
        problems.append(f"chromium --dump-dom failed ({dom.returncode}): {dom.stderr[-2000:]}")
    else:
        rendered = len(re.findall(r"<mjx-container\b", dom.stdout))
        raw = visible_tex(dom.stdout)
        print(f"docs math check: {args.page}: {rendered} formulas rendered by MathJax, "
              f"{len(raw)} left as TeX source")
        if rendered == 0:
            problems.append("MathJax rendered no formula (no mjx-container element)")
        if raw:
            problems.append("TeX source shows on the page, e.g. " + " | ".join(raw[:3]))
    if shot.returncode != 0 or not screenshot.is_file():
        problems.append(f"chromium --screenshot failed ({shot.returncode}): {shot.stderr[-2000:]}")
    else:
        print(f"docs math check: screenshot in {screenshot}")
    for problem in problems:
        print(f"docs math check: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
