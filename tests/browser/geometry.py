"""Geometry checks shared by the browser tests: every view laid out, inside its output area, crisp."""

from __future__ import annotations

HOSTILE = "<img src=x onerror=alert(1)>\"'<script>alert(2)</script><!--"

# Every visible view's box, the output area's box, canvases' backing sizes against the pixel ratio.
MEASURE = """(areaSelector) => {
  const area = document.querySelector(areaSelector);
  const box = (e) => { const r = e.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const visible = (e) => e.offsetParent !== null && getComputedStyle(e).visibility !== "hidden";
  const views = [];
  for (const cls of ["iw-strip", "iw-ranked", "iw-scatter", "iw-loo", "iw-solve"]) {
    for (const e of area.querySelectorAll("." + cls)) if (visible(e)) views.push({cls, ...box(e)});
  }
  const canvases = [];
  for (const c of area.querySelectorAll("canvas.iw-layer")) {
    if (!visible(c)) continue;
    canvases.push({w: c.width, h: c.height, cw: c.clientWidth, ch: c.clientHeight});
  }
  const buttons = [];
  for (const b of document.querySelectorAll(".jupyter-button, .iw-toolbar button")) {
    if (visible(b)) buttons.push({text: b.textContent.trim(), scroll: b.scrollWidth, client: b.clientWidth});
  }
  return {area: box(area), views, canvases, buttons, ratio: window.devicePixelRatio};
}"""


def check_layout(m: dict, expected_views: set[str]) -> None:
    """No zero sizes, inside the output area, no two views overlapping, canvases at the pixel ratio."""
    area = m["area"]
    shown = {v["cls"] for v in m["views"]}
    assert expected_views <= shown, (expected_views - shown, m)
    for v in m["views"]:
        assert v["w"] > 50 and v["h"] > 20, v
        assert v["x"] >= area["x"] - 1 and v["x"] + v["w"] <= area["x"] + area["w"] + 1, (v, area)
    views = m["views"]
    for i, a in enumerate(views):
        for b in views[i + 1 :]:
            overlap_x = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            overlap_y = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_x <= 1 or overlap_y <= 1, ("overlap", a, b)
    assert m["canvases"], "no canvas drawn"
    for c in m["canvases"]:
        assert c["cw"] > 50 and c["ch"] > 50, c
        assert c["w"] == round(c["cw"] * m["ratio"]) and c["h"] == round(c["ch"] * m["ratio"]), c
    for b in m["buttons"]:
        assert b["scroll"] <= b["client"] + 1, ("truncated button", b)


HOVER_FARTHEST = """(selector) => {
  const root = document.querySelector(selector + " .iw-plot");
  root.scrollIntoView({block: "center"});
  let best = -1, bx = -1, by = -1;
  for (let i = 0; i < root.iwCount(); i++) {
    const [x, y] = root.iwPointAt(i);
    if (Number.isFinite(x) && x + y > bx + by) { best = i; bx = x; by = y; }
  }
  const r = root.getBoundingClientRect();
  return {index: best, x: r.left + bx, y: r.top + by};
}"""

TOOLTIP_BOX = """(selector) => {
  const root = document.querySelector(selector + " .iw-plot");
  const tip = root.querySelector(".iw-tooltip");
  const r = tip.getBoundingClientRect(), p = root.getBoundingClientRect();
  tip.style.pointerEvents = "auto";  // elementFromPoint skips pointer-events: none
  const at = ([fx, fy]) => document.elementFromPoint(r.left + fx * r.width, r.top + fy * r.height);
  const hits = [[0.5, 0.5], [0.1, 0.1], [0.9, 0.9]].map(at);
  tip.style.pointerEvents = "";
  return {shown: getComputedStyle(tip).display !== "none", tip: [r.left, r.top, r.right, r.bottom],
          plot: [p.left, p.top, p.right, p.bottom], onTop: hits.every((e) => e !== null && tip.contains(e)),
          text: tip.textContent};
}"""


def check_tooltip(page, selector: str) -> str:
    """Hover the point drawn nearest the bottom-right corner; the tooltip must be inside the plot, on top."""
    target = page.evaluate(HOVER_FARTHEST, selector)
    assert target["index"] >= 0
    page.mouse.move(target["x"], target["y"])
    page.wait_for_timeout(50)
    t = page.evaluate(TOOLTIP_BOX, selector)
    assert t["shown"], t
    (left, top, right, bottom), (pl, pt, pr, pb) = t["tip"], t["plot"]
    assert left >= pl - 1 and top >= pt - 1 and right <= pr + 1 and bottom <= pb + 1, t
    assert t["onTop"], ("tooltip covered", t)
    return t["text"]
