"""The views in a real browser: a harness page over the bundled ES modules, and the static export."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np

from influence_widgets.widgets.views import STATIC

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<div id="ranked"></div><div id="scatter"></div>
<script type="module">
import ranked from "./ranked.js";
import scatter from "./scatter.js";
const spec = await (await fetch("./data.json")).json();
const f32 = (a) => new DataView(new Float32Array(a).buffer);
const i32 = (a) => new DataView(new Int32Array(a).buffer);
const u8 = (a) => new DataView(new Uint8Array(a).buffer);
class Model {
  constructor(s) { this.s = s; this.h = {}; }
  get(k) { return this.s[k]; }
  set(k, v) { this.s[k] = v; (this.h["change:" + k] || []).forEach((f) => f()); }
  save_changes() {}
  on(e, f) { e.split(" ").forEach((k) => (this.h[k] = this.h[k] || []).push(f)); }
  off() {}
}
const shared = { labels: i32(spec.labels), thumbnails: u8(spec.thumbnails), thumb_shape: [8, 8], class_names: [],
  row_text: [], selected: -1, changes: f32(spec.changes) };
window.rankedModel = new Model({ ...shared, k: 3, test_info: { index: 0, label: 1, prediction: 1, loss: 0.2 },
  test_thumbnail: u8(spec.thumbnails.slice(0, 64)) });
window.scatterModel = new Model({ ...shared, distances: f32(spec.distances), same_label: u8(spec.same),
  width: 600, height: 400, x_label: "distance", y_label: "change" });
const t0 = performance.now();
ranked.render({ model: window.rankedModel, el: document.getElementById("ranked") });
scatter.render({ model: window.scatterModel, el: document.getElementById("scatter") });
window.renderMs = performance.now() - t0;
window.ready = true;
</script></body></html>
"""


def pixel(value, lo, hi, start, stop):
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return start + (value - lo) * (stop - start) / (hi - lo)


def write_harness(root, n, seed=0):
    rng = np.random.default_rng(seed)
    spec = {
        "changes": rng.normal(size=n).tolist(),
        "distances": rng.uniform(1, 5, size=n).tolist(),
        "labels": rng.integers(0, 10, size=n).tolist(),
        "same": rng.integers(0, 2, size=n).tolist(),
        "thumbnails": rng.integers(0, 256, size=n * 64).tolist(),
    }
    for name in ("ranked.js", "scatter.js"):
        shutil.copy(STATIC / name, root / name)
    (root / "data.json").write_text(json.dumps(spec))
    (root / "harness.html").write_text(HARNESS)
    return spec


def test_ranked_and_scatter_render_and_a_click_selects_the_right_point(open_page, static_server):
    root, url = static_server
    spec = write_harness(root, 300)
    page = open_page(url)
    page.page.goto(f"{url}/harness.html")
    page.page.wait_for_function("window.ready === true")
    changes = np.asarray(spec["changes"], dtype=np.float32)
    assert page.page.locator(".iw-ranked .iw-helpful .iw-item").count() == 3
    first = int(page.page.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index"))
    assert first == int(np.argmax(changes))
    d = np.asarray(spec["distances"], dtype=np.float32)
    target = int(np.argmin(np.abs(d - 3)))  # a point in the middle, away from the edges
    x = pixel(d[target], d.min(), d.max(), 64, 600 - 12)
    y = pixel(changes[target], changes.min(), changes.max(), 400 - 40, 12)
    # pick a target that no other point crowds within the click radius
    close = (np.abs(pixel(d, d.min(), d.max(), 64, 588) - x) < 7) & (
        np.abs(pixel(changes, changes.min(), changes.max(), 360, 12) - y) < 7
    )
    assert close.sum() == 1, "the random layout put another point next to the target; change the seed"
    page.page.locator(".iw-scatter-overlay").click(position={"x": float(x), "y": float(y)})
    assert page.page.evaluate("window.scatterModel.get('selected')") == target
    page.page.evaluate("window.rankedModel.set('selected', window.scatterModel.get('selected'))")  # the link
    top = set(np.argsort(-changes)[:3]) | set(np.argsort(changes)[:3])
    if target not in top:  # a point outside the lists is shown on its own, highlighted
        assert page.page.locator(f".iw-chosen .iw-item.iw-selected[data-index='{target}']").count() == 1
    page.page.locator(".iw-ranked .iw-helpful .iw-item").nth(1).click()
    second = int(page.page.locator(".iw-ranked .iw-helpful .iw-item").nth(1).get_attribute("data-index"))
    assert page.page.evaluate("window.rankedModel.get('selected')") == second
    assert page.page.locator(".iw-ranked .iw-item.iw-selected").count() == 1
    assert page.errors == [] and page.refused == []


def test_scatter_stays_fast_with_ten_thousand_points(open_page, static_server):
    root, url = static_server
    write_harness(root, 10_000, seed=1)
    page = open_page(url)
    page.page.goto(f"{url}/harness.html")
    page.page.wait_for_function("window.ready === true")
    render_ms = page.page.evaluate("window.renderMs")
    overlay = page.page.locator(".iw-scatter-overlay")
    start = time.perf_counter()
    for k in range(40):
        overlay.hover(position={"x": 80 + 12 * k, "y": 100 + 5 * k})
    hover_ms = (time.perf_counter() - start) / 40 * 1000
    assert page.page.locator(".iw-scatter .iw-tooltip").is_visible() or hover_ms > 0
    assert render_ms < 1000 and hover_ms < 200, (render_ms, hover_ms)
    assert page.errors == []


def test_exported_report_is_explorable_offline(open_page, tmp_path):
    from tests_support import small_explorer

    explorer = small_explorer()
    path = tmp_path / "report.html"
    explorer.save_html(path, test_indices=[0, 1, 2, 3])
    page = open_page("file://")
    page.page.goto(path.as_uri())
    page.page.wait_for_selector(".iw-ranked .iw-item")
    assert "test #0" in page.page.locator(".iw-test-summary").inner_text()
    page.page.locator(".iw-strip .iw-cell").nth(2).click()
    assert "test #2" in page.page.locator(".iw-test-summary").inner_text()
    expected = explorer.point(2).changes
    first = int(page.page.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index"))
    assert first == int(np.argmax(expected))
    page.page.locator(".iw-ranked .iw-helpful .iw-item").first.click()
    assert page.page.evaluate("window.influenceWidgets.scatter.get('selected')") == first
    assert page.errors == [] and page.refused == []
