"""The rendered book works offline: chapter 8's widgets without a kernel, MathJax without a CDN.

Builds the book once per session into a temporary folder (``jupyter-book build --all -W
--path-output``), serves it on 127.0.0.1 and drives headless Chromium with Playwright.  Skipped,
with the reason, when Chromium, Playwright or the web assets (``make web-assets``) are missing;
``make test`` installs all three, so on CI it runs.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENDOR_STAMP = REPO_ROOT / "book" / "_widgets" / "vendor" / ".stamp"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LAB_PAGE = "book/08_lab.html"


def jupyter_book() -> str:
    beside_python = Path(sys.executable).parent / "jupyter-book"
    found = str(beside_python) if beside_python.exists() else shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (make install)")
    return found


@pytest.fixture(scope="session")
def html_dir(tmp_path_factory) -> Path:
    """The book built from this checkout, with zero warnings allowed, in a temporary folder."""
    if not VENDOR_STAMP.is_file():
        pytest.skip(f"web assets missing ({VENDOR_STAMP}); run `make web-assets`")
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [jupyter_book(), "build", "--all", "-W", "--path-output", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"jupyter-book build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    html = out / "_build" / "html"
    assert (html / LAB_PAGE).is_file(), f"{LAB_PAGE} was not built; is it in _toc.yml?"
    return html


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="session")
def base_url(html_dir):
    handler = functools.partial(QuietHandler, directory=str(html_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make browser, or apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class ExternalLoads(HTMLParser):
    """Collects the URLs a page would fetch by itself that are not relative to the book."""

    LOADING = {"script": ("src",), "img": ("src", "srcset"), "iframe": ("src",),
               "link": ("href",), "source": ("src", "srcset"), "video": ("src", "poster"),
               "audio": ("src",), "embed": ("src",), "object": ("data",)}

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not set((attrs.get("rel") or "").split()) & {
                "stylesheet", "preload", "modulepreload", "icon", "prefetch", "preconnect",
                "dns-prefetch", "manifest"}:
            return  # navigation links (prev/next, index) are not loads
        for name in self.LOADING.get(tag, ()):
            value = attrs.get(name) or ""
            if re.match(r"^\s*(https?:)?//", value):
                self.urls.append(f"<{tag} {name}={value}>")


def test_built_html_loads_nothing_from_the_network(html_dir):
    offenders = {}
    for page in sorted(html_dir.rglob("*.html")):
        parser = ExternalLoads()
        parser.feed(page.read_text(encoding="utf-8"))
        if parser.urls:
            offenders[str(page.relative_to(html_dir))] = parser.urls
    assert not offenders, f"pages load from the network: {offenders}"
    lab = (html_dir / LAB_PAGE).read_text(encoding="utf-8")
    assert "application/vnd.jupyter.widget-state+json" in lab, "the lab stores no widget state"
    assert "unpkg.com" not in lab and "cdn.jsdelivr.net" not in lab


def visible_frame(widget) -> tuple[str, int]:
    """(locator of the one frame a widget shows, its index from the bgnet-frame-N class)."""
    images = widget.locator("img:visible")
    assert images.count() == 1, f"expected one visible frame, found {images.count()}"
    match = re.search(r"bgnet-frame-(\d+)", images.first.get_attribute("class") or "")
    assert match, "frame images carry no bgnet-frame-N class"
    return images.first, int(match.group(1))


def wait_for_frame(page, widget_index: int, old_frame: int) -> None:
    page.wait_for_function(
        """([index, old]) => {
            const widget = document.querySelectorAll('.bgnet-frames')[index];
            const shown = [...widget.querySelectorAll('img')].filter(
                img => img.offsetParent !== null && img.complete && img.naturalWidth > 0);
            return shown.length === 1 && !shown[0].classList.contains('bgnet-frame-' + old);
        }""", arg=[widget_index, old_frame], timeout=10_000)


def test_lab_widgets_and_math_work_offline(base_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    requests, bad_responses, page_errors = [], [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("response", lambda response: response.status >= 400
            and bad_responses.append(f"{response.status} {response.url}"))
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    page.goto(f"{base_url}/{LAB_PAGE}", wait_until="load")
    widgets = page.locator(".bgnet-frames")
    widgets.first.locator("img").first.wait_for(state="visible", timeout=30_000)
    assert widgets.count() == 2, "the lab should show the θ widget and the depth × θ grid"

    # the θ widget: arrow keys on the slider handle move the Stack to another frame
    theta = widgets.nth(0)
    image, first_frame = visible_frame(theta)
    before = image.screenshot()
    readout_before = theta.locator(".widget-readout").inner_text()
    theta.locator(".noUi-handle").first.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    wait_for_frame(page, 0, first_frame)
    image, frame = visible_frame(theta)
    assert frame == first_frame + 3, "three steps right should show the third next frame"
    assert theta.locator(".widget-readout").inner_text() != readout_before
    assert image.screenshot() != before, "the shown picture did not change"

    # the grid: the last depth button switches rows and leaves the grid's θ slider alone
    grid = widgets.nth(1)
    _, grid_frame = visible_frame(grid)
    grid_theta = grid.locator(".widget-readout").inner_text()
    grid.locator("button").last.click()
    wait_for_frame(page, 1, grid_frame)
    assert visible_frame(grid)[1] != grid_frame
    assert grid.locator(".widget-readout").inner_text() == grid_theta

    # MathJax typeset eq. 15 from the book's own copy
    page.locator("mjx-container").first.wait_for(state="attached", timeout=30_000)
    assert page.locator("mjx-container").count() >= 1
    assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"

    page.screenshot(path=str(tmp_path / "lab.png"), full_page=True)
    leaving = [url for url in requests if urlsplit(url).scheme not in ("data", "blob", "about")
               and urlsplit(url).hostname not in LOCAL_HOSTS]
    assert not leaving, f"requests left localhost: {leaving}"
    assert any("/_static/vendor/html-manager/embed-amd.js" in url for url in requests)
    assert any("/_static/vendor/mathjax/tex-chtml.js" in url for url in requests)
    assert not bad_responses, f"failed loads: {bad_responses}"
    assert not page_errors, f"JavaScript errors: {page_errors}"
    page.close()


# the checks tools/page_report.py prints for every page, asserted here
_spec = importlib.util.spec_from_file_location("page_report",
                                               REPO_ROOT / "tools" / "page_report.py")
page_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(page_report)
DISPLAY_MATH_CHECK = page_report.DISPLAY_MATH_CHECK
SCROLLING_OUTPUTS = page_report.SCROLLING_OUTPUTS
CHAPTER_PAGES = sorted(path.stem for path in (REPO_ROOT / "book").glob("[0-9][0-9]_*.ipynb"))



@pytest.mark.parametrize("chapter", CHAPTER_PAGES)
def test_every_equation_renders_and_fits(base_url, browser, chapter):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{base_url}/book/{chapter}.html", wait_until="load")
    if not page.locator('script[src*="mathjax"]').count():  # Sphinx adds it only for maths
        assert page.locator(".math").count() == 0, f"{chapter}: maths but no MathJax"
        page.close()
        return
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                           timeout=30_000)
    found = page.evaluate(DISPLAY_MATH_CHECK)
    page.close()
    assert found["errors"] == 0, f"{chapter}: {found['errors']} MathJax TeX errors"
    assert not found["wide"], f"{chapter}: display equations wider than the page: {found['wide']}"





@pytest.mark.parametrize("chapter", CHAPTER_PAGES)
def test_outputs_fit_the_page(base_url, browser, chapter):
    """At 1280 px, at most two outputs of a page need horizontal scrolling."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{base_url}/book/{chapter}.html", wait_until="load")
    scrolling = page.evaluate(SCROLLING_OUTPUTS)
    page.close()
    assert len(scrolling) <= 2, f"{chapter}: {len(scrolling)} outputs scroll: {scrolling}"


EXPLORER_PAGE = "book/14_inside.html"


def test_matching_explorer_follows_clicks_offline(html_dir, base_url, browser):
    """Chapter 14's explorer: a click on a sample cell moves the highlighted template cell and
    the readout; another pair redraws; the page stays small and loads nothing from outside."""
    size_mb = (html_dir / EXPLORER_PAGE).stat().st_size / 1e6
    assert size_mb < 8, f"{EXPLORER_PAGE} is {size_mb:.1f} MB"
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page_errors, requests = [], []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{base_url}/{EXPLORER_PAGE}", wait_until="load")
    explorer = page.locator(".bgnet-explorer").first
    page.wait_for_selector(".bgnet-explorer[data-ready='1']", timeout=30_000)
    canvas = explorer.locator("canvas.bgnet-sample")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()

    def click_cell(fraction_x, fraction_y):
        canvas.click(position={"x": box["width"] * fraction_x, "y": box["height"] * fraction_y})
        return (explorer.get_attribute("data-sample-cell"),
                explorer.get_attribute("data-template-cell"),
                explorer.locator(".bgnet-readout").inner_text())

    top_left = click_cell(0.05, 0.05)
    page.mouse.move(0, 0)  # leave the canvas: the click's lock on the cell is released
    bottom_right = click_cell(0.95, 0.95)
    assert top_left[0] == "0" and top_left[2].startswith("sample cell (row 0, col 0)")
    assert bottom_right[0] != top_left[0] and bottom_right[2] != top_left[2]
    assert bottom_right[1] != top_left[1], "the highlighted template cell did not move"
    before = explorer.locator("canvas.bgnet-template").screenshot()
    explorer.locator("select").select_option(index=2)  # the other model
    after = explorer.locator("canvas.bgnet-template").screenshot()
    assert after != before, "choosing another pair did not redraw the template"
    leaving = [url for url in requests if urlsplit(url).scheme not in ("data", "blob", "about")
               and urlsplit(url).hostname not in LOCAL_HOSTS]
    assert not leaving and not page_errors, (leaving, page_errors)
    page.close()
