"""Headless Debian chromium through Playwright, with every request that leaves the page refused."""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import threading

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM) or os.environ.get("CI"):
        return  # in CI a missing browser is a failure, not a skip
    skip = pytest.mark.skip(reason="Debian chromium is not installed (apt-get install -y chromium)")
    for item in items:
        if "browser" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Page:
    """A page whose requests to anything but ``allowed`` prefixes are aborted and recorded."""

    def __init__(self, browser, allowed: tuple[str, ...]):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"{error} {error.stack}"))
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{msg.text} at {msg.location.get('url', '')}") if msg.type == "error" else None
            ),
        )

        def route(route):
            if route.request.url.startswith(allowed):
                route.continue_()
            else:
                self.refused.append(route.request.url)
                route.abort()

        self.page.route("**/*", route)

    def close(self):
        self.context.close()


@pytest.fixture
def open_page(browser):
    pages = []

    def make(*allowed: str) -> Page:
        page = Page(browser, allowed or ("file://",))
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


@pytest.fixture(scope="session")
def static_server(tmp_path_factory):
    """A loopback HTTP server over a temporary folder (ES modules do not load from file://)."""
    root = tmp_path_factory.mktemp("harness")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield pathlib.Path(root), f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
