"""Helpers for the real-browser tests: a headless Chromium driven by Playwright, servers on 127.0.0.1.

Playwright for Python is pointed at the Debian ``chromium`` package (``/usr/bin/chromium``): nothing downloads a
browser. Outside CI, a missing piece skips the test with a message saying how to install it; in CI (``CI=true``)
it fails the test instead, so the browser tests always run there.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ACPG_LAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def require(what: str, how: str) -> None:
    """Skip (outside CI) or fail (in CI) because ``what`` is missing; ``how`` says how to install it."""
    message = f"{what} is missing; install it with: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the browser tests must run in CI; .ci/run installs Chromium)")
    pytest.skip(message)


def require_browser() -> str:
    """The path of Chromium, after checking that Playwright and Chromium are there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require("Playwright for Python", "pip install -e '.[dev]'")
    path = chromium_path()
    if path is None:
        require("Chromium (/usr/bin/chromium)", "apt-get install -y chromium")
    return path


@contextlib.contextmanager
def browser_page(chromium: str, user_data_dir: Path, *, width: int = 1400, height: int = 900):
    """A fresh Chromium (new profile in ``user_data_dir``) and one page; closed whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def static_server(directory: Path):
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def keep_offline(page, base_url: str) -> list[str]:
    """Abort every request of ``page`` that does not go to ``base_url`` (the local server), as for a reader
    without internet; return the list, filled as the page runs, of the URLs aborted."""
    outside: list[str] = []

    def abort(route) -> None:
        outside.append(route.request.url)
        route.abort()

    page.route(lambda u: not u.startswith(base_url.rstrip("/") + "/"), abort)
    return outside


class Screenshots:
    """Screenshots under the test's temporary directory; `where` lists them for a failure message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page, name: str) -> Path:
        path = self.directory / f"{len(self.taken):02d}_{name}.png"
        with contextlib.suppress(Exception):  # a screenshot must never hide the real failure
            page.screenshot(path=str(path))
            self.taken.append(path)
        return path

    def where(self) -> str:
        return f"screenshots in {self.directory}: " + ", ".join(p.name for p in self.taken)


# ------------------------------------------------------------------------------------------- book page checks
#: Run in a book page (Jupyter Book 1.x, sphinx-book-theme). The evidence appendix is *collapsed* when every piece
#: of content after its heading that the browser shows (a text node with visible text; an img, table, svg,
#: canvas, iframe, video or pre element; shown = ``checkVisibility()`` and a non-empty box: the content of a closed
#: <details> is not shown, Chromium skips it with content-visibility) lies inside a heading (h1-h6) or inside the
#: <summary> of a <details>: everything else is inside a closed <details> (a dropdown or a hidden cell), so it has
#: no box. There must be exactly one such heading and at least one fold after it.
APPENDIX_COLLAPSED = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const heads = [...article.querySelectorAll('h1, h2, h3, h4, h5, h6')]
    .filter(h => h.textContent.replace(/#\\s*$/, '').trim() === 'Evidence appendix');
  if (heads.length !== 1) return {heading: heads.length, visible: [], folds: 0};
  const head = heads[0];
  const after = n => !head.contains(n) && (head.compareDocumentPosition(n) & Node.DOCUMENT_POSITION_FOLLOWING);
  const allowed = n => { const e = n.nodeType === Node.TEXT_NODE ? n.parentElement : n;
    return !!e.closest('h1, h2, h3, h4, h5, h6, summary'); };
  const shown = n => { let rects;
    const e = n.nodeType === Node.TEXT_NODE ? n.parentElement : n;
    if (!e.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true})) return false;
    if (n.nodeType === Node.TEXT_NODE) {
      const r = document.createRange(); r.selectNodeContents(n); rects = r.getClientRects();
    } else rects = n.getClientRects();
    return [...rects].some(r => r.width > 0 && r.height > 0); };
  const visible = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const content = n.nodeType === Node.TEXT_NODE ? n.textContent.trim().length > 0
      : ['IMG', 'TABLE', 'SVG', 'svg', 'CANVAS', 'IFRAME', 'VIDEO', 'PRE'].includes(n.tagName);
    if (content && after(n) && !allowed(n) && shown(n))
      visible.push((n.nodeType === Node.TEXT_NODE ? n.textContent : '<' + n.tagName.toLowerCase() + '>')
        .trim().slice(0, 80));
  }
  const folds = [...article.querySelectorAll('details')].filter(d => after(d));
  return {heading: 1, visible: visible.slice(0, 8), nvisible: visible.length, folds: folds.length,
          open: folds.filter(d => d.open).length};
}"""
#: With every fold of the page open (so that what is inside is laid out too), reports each displayed image
#: narrower than ``minimum`` x its natural width, each image that did not load or is not displayed (``hidden``:
#: none should be, with every fold open), and each table whose right edge
#: passes the content column's unless an element between it and the column (the table included) scrolls
#: horizontally within the column.
LAYOUT_PROBLEMS = """(minimum) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = article.getBoundingClientRect();
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  const small = [], broken = [], overflowing = [], hidden = [];
  for (const img of article.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) { broken.push(img.getAttribute('src')); continue; }
    if (img.clientWidth === 0) { hidden.push((img.getAttribute('src') || '').slice(-60)); continue; }
    const ratio = img.clientWidth / img.naturalWidth;
    if (ratio < minimum)
      small.push(`${(img.getAttribute('src') || '').slice(-60)}: ${img.clientWidth}/${img.naturalWidth} px`);
  }
  let tables = 0;
  for (const table of article.querySelectorAll('table')) {
    const r = table.getBoundingClientRect();
    if (r.width === 0) continue;
    tables += 1;
    if (r.right <= column.right + 1) continue;
    let ok = false;
    for (let e = table; e && e !== article; e = e.parentElement)
      if (scrolls(e) && e.getBoundingClientRect().right <= column.right + 1) { ok = true; break; }
    if (!ok) overflowing.push(`${table.className || 'table'} ${Math.round(r.width)} px wide, right edge `
                              + `${Math.round(r.right)} > ${Math.round(column.right)}`);
  }
  return {small, broken, overflowing, hidden, tables, column: Math.round(column.width),
          page_overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth};
}"""


#: Resolves, once MathJax (when the page loads it) has typeset the page and the fonts it asked for have loaded,
#: to what the reader sees of the page's math (Sphinx marks each formula ``.math``): ``math`` formulas, ``raw`` the
#: first ones without a typeset ``mjx-container`` in them (a reader sees their TeX), ``mathjax`` whether MathJax 3
#: started at all, and its fonts (``MJX*`` font faces) ``loaded`` and ``failed``.
MATH_REPORT = """async () => {
  const math = [...document.querySelectorAll('.math')];
  const mathjax = !!(window.MathJax && MathJax.startup && MathJax.startup.promise);
  if (mathjax) await MathJax.startup.promise;
  await document.fonts.ready;
  const fonts = [...document.fonts].filter(f => f.family.startsWith('MJX'));
  return {math: math.length, typeset: document.querySelectorAll('mjx-container').length, mathjax,
          raw: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 60))
            .slice(0, 5),
          loaded: fonts.filter(f => f.status === 'loaded').map(f => f.family),
          failed: fonts.filter(f => f.status === 'error').map(f => f.family)};
}"""


def math_problems(page) -> list[str]:
    """What is wrong with the math of the page open in ``page`` (`MATH_REPORT`): formulas left as TeX, MathJax
    not started, its fonts not loaded; empty when the page has no math or all of it is typeset."""
    report = page.evaluate(MATH_REPORT)
    if not report["math"]:
        return []
    found = [] if report["mathjax"] else ["MathJax did not start"]
    if report["raw"]:
        found.append(f"formulas shown as TeX: {report['raw']}")
    if not report["loaded"] or report["failed"]:
        found.append(f"MathJax fonts loaded {report['loaded']}, failed {report['failed']}")
    return found


#: Resolves after two animation frames: what a change of the page (a fold opened) looks like once drawn.
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def open_folds(page) -> None:
    """Open every <details> of the page's article, and wait until it is drawn and its images loaded."""
    page.evaluate("() => document.querySelectorAll('article details').forEach(d => { d.open = true; })")
    page.evaluate(NEXT_FRAMES)
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
    page.wait_for_timeout(300)  # a dropdown's opening transition


def book_page_report(page, minimum: float = 0.7) -> dict:
    """The appendix and layout checks of the book page open in ``page``: ``appendix`` (`APPENDIX_COLLAPSED`, as
    the page opens), then every fold opened and the layout (`LAYOUT_PROBLEMS`) measured once drawn."""
    page.evaluate(NEXT_FRAMES)
    collapsed = page.evaluate(APPENDIX_COLLAPSED)
    open_folds(page)
    return {"appendix": collapsed, **page.evaluate(LAYOUT_PROBLEMS, minimum)}
