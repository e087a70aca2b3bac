"""What a reader meets on each page of the built book, as a table: page size, MathJax errors,
display equations wider than the page, and outputs that need horizontal scrolling at 1280 px.

    python tools/page_report.py                # builds the book into a temporary folder
    python tools/page_report.py --html DIR     # an already built _build/html

Needs jupyter-book, Playwright and Chromium (``make install``, ``make browser``).  The browser
test (tests/test_book_html.py) asserts on the same two checks, defined here once.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# MathJax's TeX errors and the display equations that overflow their container
DISPLAY_MATH_CHECK = """() => MathJax.startup.promise.then(() => {
    const errors = document.querySelectorAll('mjx-merror').length;
    const wide = [];
    for (const box of document.querySelectorAll('mjx-container[display="true"]')) {
        const maths = box.querySelector('mjx-math').getBoundingClientRect();
        const room = box.parentElement.getBoundingClientRect();
        if (maths.width > room.width + 1 || maths.left < room.left - 1) {
            wide.push(box.textContent.slice(0, 40));
        }
    }
    return {errors, wide, count: document.querySelectorAll('mjx-container').length};
})"""

# the elements of cell outputs that scroll sideways (their content is wider than they are)
SCROLLING_OUTPUTS = """() => [...document.querySelectorAll('.cell_output *')].filter(element =>
    element.scrollWidth > element.clientWidth + 1
    && ['auto', 'scroll'].includes(getComputedStyle(element).overflowX))
  .map(element => element.textContent.trim().slice(0, 60))"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def build(out: Path) -> Path:
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jupyter_book), "build", "--all", "-W", "--path-output", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, text=True)
    return out / "_build" / "html"


def report(html: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for path in sorted((html / "book").glob("[0-9][0-9]_*.html")):
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{base}/book/{path.name}", wait_until="load")
                maths = {"errors": 0, "wide": [], "count": 0}
                if page.locator('script[src*="mathjax"]').count():
                    page.wait_for_function("() => window.MathJax && MathJax.startup "
                                           "&& MathJax.startup.promise", timeout=30_000)
                    maths = page.evaluate(DISPLAY_MATH_CHECK)
                rows.append({"page": path.stem, "kB": path.stat().st_size / 1e3,
                             "maths": maths["count"], "maths errors": maths["errors"],
                             "wide equations": len(maths["wide"]),
                             "scrolling outputs": len(page.evaluate(SCROLLING_OUTPUTS))})
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", type=Path, help="a built _build/html folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rows = report(args.html or build(Path(folder)))
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[key]:.0f}" if isinstance(row[key], float) else str(row[key])
                         for key in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
