#!/usr/bin/env python3
"""Open every HTML report in headless Chromium, as a person would, and fail on
any console message (SVG attribute errors such as a NaN coordinate show up
there) or an empty screenshot.

    python3 bench/render_check.py [FILE_OR_DIR ...]   # default: notebooks-output/
    # screenshots go to target/render-check/*.png

Needs Debian's `chromium` (apt-get install chromium); standard library only.
Run by hand, like the other scripts under bench/ (CI does not have Chromium).
"""

import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "render-check"
CONSOLE = re.compile(r":CONSOLE[:(]")


def pages(args):
    for a in args or [str(ROOT / "notebooks-output")]:
        p = pathlib.Path(a)
        yield from sorted(p.rglob("*.html")) if p.is_dir() else [p]


def check(page: pathlib.Path, browser: str) -> list:
    OUT.mkdir(parents=True, exist_ok=True)
    rel = page.resolve().relative_to(ROOT) if page.resolve().is_relative_to(ROOT) else page
    png = OUT / (str(rel).replace("/", "__") + ".png")
    if png.exists():
        png.unlink()
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--screenshot={png}", "--window-size=1450,2400", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    problems = [l for l in run.stderr.splitlines() if CONSOLE.search(l)]
    if not png.exists() or png.stat().st_size < 5000:
        problems.append(f"no screenshot (or an empty one) at {png}")
    return problems


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    failed = 0
    for page in pages(sys.argv[1:]):
        problems = check(page, browser)
        print(f"{'FAIL' if problems else 'ok  '} {page}")
        for p in problems:
            print(f"     {p}")
        failed += bool(problems)
    print(f"{failed} page(s) with problems; screenshots in {OUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
