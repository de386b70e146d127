"""The views in a real browser: a harness page over the bundled ES modules, and the static export."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import numpy as np
import pytest

from influence_widgets.widgets.views import STATIC

SHOTS = os.environ.get("IW_SHOTS") == "1"  # save screenshots under /work/notes/shots/views for review
# the one stand-in for an anywidget model, the static export's own (get/set/on/off/save_changes)
STATIC_MODEL = pathlib.Path(__file__).resolve().parents[2] / "js" / "src" / "lib" / "static-model.js"

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<div id="ranked"></div><div id="scatter"></div>
<script type="module">
import ranked from "./ranked.js";
import scatter from "./scatter.js";
import { StaticModel as Model } from "./static-model.js";
const spec = await (await fetch("./data.json")).json();
const f32 = (a) => new DataView(new Float32Array(a).buffer);
const i32 = (a) => new DataView(new Int32Array(a).buffer);
const u8 = (a) => new DataView(new Uint8Array(a).buffer);
const shared = { labels: i32(spec.labels), thumbnails: u8(spec.thumbnails), thumb_shape: [8, 8], class_names: [],
  row_text: [], selected: -1, changes: f32(spec.changes) };
window.rankedModel = new Model({ ...shared, k: 3, test_info: { index: 0, label: 1, prediction: 1, loss: 0.2 },
  test_thumbnail: u8(spec.thumbnails.slice(0, 64)) });
window.scatterModel = new Model({ ...shared, distances: f32(spec.distances), same_label: u8(spec.same),
  height: 400, y_scale: "linear", x_label: "distance", y_label: "change" });
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
    shutil.copy(STATIC_MODEL, root / STATIC_MODEL.name)
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
    x, y = page.page.evaluate(f"document.querySelector('.iw-scatter .iw-plot').iwPointAt({target})")
    # the point is drawn where its distance and change say (the scale's own arithmetic, independently)
    plot_width = page.page.evaluate("document.querySelector('.iw-scatter .iw-plot').clientWidth")
    assert abs(x - pixel(d[target], d.min(), d.max(), 64, plot_width - 14)) < 0.5
    assert abs(y - pixel(changes[target], changes.min(), changes.max(), 400 - 42, 10)) < 0.5
    page.page.locator(".iw-scatter .iw-overlay").click(position={"x": float(x), "y": float(y)})
    assert page.page.evaluate("window.scatterModel.get('selected')") in (target, *_close_points(page, target))
    page.page.evaluate("window.rankedModel.set('selected', window.scatterModel.get('selected'))")  # the link
    top = set(np.argsort(-changes)[:3]) | set(np.argsort(changes)[:3])
    if target not in top:  # a point outside the lists is shown on its own, highlighted
        assert page.page.locator(f".iw-chosen .iw-item.iw-selected[data-index='{target}']").count() == 1
    page.page.locator(".iw-ranked .iw-helpful .iw-item").nth(1).click()
    second = int(page.page.locator(".iw-ranked .iw-helpful .iw-item").nth(1).get_attribute("data-index"))
    assert page.page.evaluate("window.rankedModel.get('selected')") == second
    assert page.page.locator(".iw-ranked .iw-item.iw-selected").count() == 1
    assert page.errors == [] and page.refused == []


def _close_points(page, target):
    """Points drawn within the click radius of the target (any of them is a right answer)."""
    return page.page.evaluate(
        f"""(() => {{ const r = document.querySelector('.iw-scatter .iw-plot'); const [x, y] = r.iwPointAt({target});
        const out = []; for (let i = 0; i < r.iwCount(); i++) {{ const [a, b] = r.iwPointAt(i);
        if ((a - x) ** 2 + (b - y) ** 2 <= 49) out.push(i); }} return out; }})()"""
    )


def test_scatter_stays_fast_with_ten_thousand_points(open_page, static_server):
    root, url = static_server
    write_harness(root, 10_000, seed=1)
    page = open_page(url)
    page.page.goto(f"{url}/harness.html")
    page.page.wait_for_function("window.ready === true")
    render_ms = page.page.evaluate("window.renderMs")
    overlay = page.page.locator(".iw-scatter .iw-overlay")
    start = time.perf_counter()
    for k in range(40):
        overlay.hover(position={"x": 80 + 12 * k, "y": 100 + 5 * k})
    hover_ms = (time.perf_counter() - start) / 40 * 1000
    assert render_ms < 1000 and hover_ms < 200, (render_ms, hover_ms)
    assert page.errors == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One report with user ids and a leave-one-out run on one of its test points (shared by the tests)."""
    from tests_support import small_explorer

    explorer = small_explorer(test_ids=[38, 54, 299, 7, 1160, 12, 5, 77])
    explorer.show(1)
    explorer.loo.n_points = 6
    explorer.loo.run(background=False)
    explorer.show(0)  # the report opens on test #38, which has no leave-one-out run
    path = tmp_path_factory.mktemp("export") / "report.html"
    explorer.save_html(path, test_indices=[0, 1, 2, 3])
    return explorer, path


@pytest.mark.parametrize("width", [700, 1100, 1600])
def test_exported_report_lays_out_at_every_width(browser, exported, width):
    from geometry import MEASURE, check_layout, check_tooltip

    explorer, path = exported
    context = browser.new_context(viewport={"width": width + 32, "height": 1000}, device_scale_factor=2)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri())
        page.wait_for_selector(".iw-ranked .iw-item")
        page.wait_for_timeout(150)
        m = page.evaluate(MEASURE, "#iw-root")
        assert abs(m["area"]["w"] - width) <= 2, m["area"]
        check_layout(m, {"iw-strip", "iw-ranked", "iw-scatter", "iw-solve"})
        assert page.locator(".iw-loo .iw-empty").inner_text().startswith("No leave-one-out check was run for test #38")
        page.locator(".iw-strip .iw-cell").nth(1).click()  # test #54 has a leave-one-out result
        assert "test #54" in page.locator(".iw-test-summary").inner_text()
        verdict = page.locator(".iw-loo .iw-headline").inner_text()
        assert verdict.startswith("The influence prediction") and "Pearson" in verdict
        check_layout(page.evaluate(MEASURE, "#iw-root"), {"iw-strip", "iw-ranked", "iw-scatter", "iw-loo", "iw-solve"})
        text = check_tooltip(page, ".iw-scatter")
        assert text.startswith("train #")
        if SHOTS:
            page.screenshot(path=f"/work/notes/shots/views/export-{width}.png", full_page=True)
        ids = page.locator(".iw-strip .iw-cell").evaluate_all("cs => cs.map(c => c.dataset.id)")
        assert ids == ["38", "54", "299", "7"]
        page.locator(".iw-strip .iw-cells").focus()
        page.keyboard.press("ArrowRight")
        assert "test #299" in page.locator(".iw-test-summary").inner_text()
        first = int(page.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index"))
        assert first == int(np.argmax(explorer.point(2).changes))
        page.locator(".iw-ranked .iw-helpful .iw-item").first.click()
        assert page.evaluate("window.influenceWidgets.scatter.get('selected')") == first
        assert errors == []
    finally:
        context.close()


def test_hostile_strings_in_the_report_stay_text(browser, tmp_path):
    """Class names, row texts, feature names, ids and the title that try to run or end the page."""
    import torch
    from geometry import HOSTILE

    from influence_widgets import InfluenceExplainer
    from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs
    from influence_widgets.widgets import explore

    torch.manual_seed(0)
    x = torch.randn(40, 3)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = LogisticRegression(3, 3)
    fit_lbfgs(model, cross_entropy_per_example, x, y, 0.1)
    ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.1, progress=False)
    explorer = explore(
        ex,
        x[:3],
        y[:3],
        class_names=[HOSTILE + "0", HOSTILE + "1", HOSTILE + "2"],
        feature_names=[HOSTILE + "a", "\u2028" + HOSTILE, "</script>"],
        row_text=[HOSTILE + "\u2029"] * 40,
        train_ids=[HOSTILE + str(i) for i in range(40)],
        test_ids=["<b>t0</b>", "t1", "t2"],
        loo_points=3,
    )
    explorer.ranked.selected = int(np.argmax(explorer.point(0).changes))
    explorer.loo.run(background=False)
    path = tmp_path / "hostile.html"
    explorer.save_html(path, title=HOSTILE)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    dialogs, errors, refused = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: refused.append(r.url) if not r.url.startswith(("file://", "data:")) else None)
    try:
        page.goto(path.as_uri())
        page.wait_for_selector(".iw-ranked .iw-item")
        assert page.title() == HOSTILE
        assert page.locator(".iw-test-summary").inner_text().startswith("test #<b>t0</b>")
        item = page.locator(".iw-ranked .iw-item").first
        assert HOSTILE in item.inner_text() and item.locator(".iw-feature").count() >= 1
        page.locator(".iw-ranked .iw-item").first.click()
        assert page.locator(".iw-compare").inner_text().count(HOSTILE) >= 2  # the feature table, as text
        check = page.evaluate(
            """() => { const d = document.createElement('div'); d.innerHTML = '<img src=x onerror="window.ran=1">';
            document.body.appendChild(d); return new Promise(r => setTimeout(() => r(window.ran === 1), 200)); }"""
        )
        assert check is False  # the page's CSP blocks inline event handlers even if markup got in
        assert page.locator("img, iframe, object").count() <= 1 and dialogs == [] and errors == [], (dialogs, errors)
        assert [u for u in refused if not u.endswith("/x")] == []
    finally:
        context.close()


def test_scatter_zooms_pans_resets_and_spreads_the_band_at_zero(open_page, static_server):
    root, url = static_server
    write_harness(root, 300, seed=2)
    page = open_page(url).page
    page.goto(f"{url}/harness.html")
    page.wait_for_function("window.ready === true")
    at = "(i) => document.querySelector('.iw-scatter .iw-plot').iwPointAt(i)"
    box = page.locator(".iw-scatter .iw-overlay").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = np.array([page.evaluate(at, i) for i in range(0, 300, 10)])
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -300)  # zoom in around the cursor
    page.wait_for_timeout(100)
    zoomed = np.array([page.evaluate(at, i) for i in range(0, 300, 10)])
    centre = np.array([cx - box["x"], cy - box["y"]])
    inside = np.isfinite(zoomed[:, 0])
    assert inside.sum() < len(zoomed)  # some points left the view
    assert (np.linalg.norm(zoomed[inside] - centre, axis=1) > np.linalg.norm(before[inside] - centre, axis=1)).all()
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy, steps=4)
    page.mouse.up()
    panned = np.array([page.evaluate(at, i) for i in range(0, 300, 10)])
    both = inside & np.isfinite(panned[:, 0])
    np.testing.assert_allclose(panned[both, 0] - zoomed[both, 0], 40, atol=1.5)
    page.locator(".iw-scatter .iw-reset").click()
    np.testing.assert_allclose(np.array([page.evaluate(at, i) for i in range(0, 300, 10)]), before, atol=1e-3)
    page.locator(".iw-scatter .iw-y-scale").select_option("symlog")
    assert page.evaluate("window.scatterModel.get('y_scale')") == "symlog"
    spread = np.array([page.evaluate(at, i)[1] for i in range(300)])
    linear = before[:, 1]
    changes = np.asarray(json.loads((root / "data.json").read_text())["changes"])
    small = np.abs(changes) < np.median(np.abs(changes))  # the band near zero takes more of the height
    assert np.ptp(spread[small]) > 1.3 * np.ptp(
        np.array([pixel(v, changes.min(), changes.max(), 358, 10) for v in changes[small]])
    ), (np.ptp(spread[small]), np.ptp(linear))
