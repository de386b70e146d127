"""The built documentation site: a notebook page's embedded explorer renders and responds, with the network refused.

Needs the site built first (``bash docs/build.sh``; CI builds it before the tests). Locally the test is
skipped when there is no built site; in CI a missing site is a failure.
"""

from __future__ import annotations

import os
import pathlib

import pytest

SITE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "_build" / "html"


def pages_with_an_explorer() -> list[pathlib.Path]:
    if not SITE.is_dir():
        return []
    return sorted(p for p in (SITE / "notebooks").glob("*.html") if 'class="explorer-export"' in p.read_text())


def test_an_embedded_explorer_renders_and_follows_a_click_offline(open_page):
    pages = pages_with_an_explorer()
    if not pages:
        if os.environ.get("CI"):
            pytest.fail(f"no built notebook page with an embedded explorer under {SITE}: run docs/build.sh first")
        pytest.skip("the documentation site is not built (bash docs/build.sh)")
    page = open_page("file://")  # the site and its embedded exports only: anything else is refused
    page.page.goto(pages[0].as_uri())
    frame = page.page.frame_locator("iframe.explorer-export").first
    frame.locator(".iw-ranked .iw-item").first.wait_for()
    assert "test #0" in frame.locator(".iw-test-summary").inner_text()
    helpful_before = frame.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index")
    frame.locator(".iw-strip .iw-cell").nth(1).click()
    assert "test #1" in frame.locator(".iw-test-summary").inner_text()
    helpful_after = frame.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index")
    assert helpful_before is not None and helpful_after is not None
    frame.locator(".iw-ranked .iw-helpful .iw-item").first.click()
    selected = frame.locator("body").evaluate("() => window.influenceWidgets.scatter.get('selected')")
    assert selected == int(helpful_after)
    assert page.errors == [] and page.refused == [], (page.errors, page.refused)
