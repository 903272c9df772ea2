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
