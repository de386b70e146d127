// Influence versus distance (the paper's Figure 4): one mark per training point, coloured by the sign
// of its predicted change (helpful blue, harmful vermillion) and shaped by label agreement (filled =
// same label as the test point, ring = different). Zoom with the wheel, pan by dragging, reset by
// double-click or the button; the y axis can be linear, symmetric-log or rank.
import { asFloat32, asUint8 } from "./lib/arrays.js";
import { tooltipCard } from "./lib/card.js";
import { addStyle, COMMON_CSS, h, swatch } from "./lib/dom.js";
import { PointGrid } from "./lib/hittest.js";
import { HARMFUL, HELPFUL, NEUTRAL, SELECTED } from "./lib/palette.js";
import { PLOT_CSS, Plot } from "./lib/plot.js";
import { formatNumber, medianAbs, niceFloor, paddedExtent, ranks, symlog, symlogTicks } from "./lib/scales.js";

const CSS = `
.iw-scatter { font: 12px system-ui, sans-serif; color: #222; width: 100%; min-width: 0; box-sizing: border-box; }
`;

const Y_TITLES = {
  linear: (label) => label,
  symlog: (label) => `${label} (symmetric log)`,
  rank: () => "rank of the change (0 = most harmful, 1 = most helpful)",
};

export function renderScatter({ model, el }) {
  el.classList.add("iw-scatter");
  addStyle(el, COMMON_CSS + PLOT_CSS + CSS);
  const scaleSelect = h("select", "iw-y-scale");
  for (const [value, text] of [["linear", "linear"], ["symlog", "symmetric log"], ["rank", "rank"]]) {
    const option = h("option", null, text);
    option.value = value;
    scaleSelect.appendChild(option);
  }
  const reset = h("button", "iw-reset", "Reset zoom");
  reset.type = "button";
  const task = model.get("task");
  const legend = h("span", "iw-legend",
    swatch("dot", HELPFUL), "helpful", swatch("dot", HARMFUL), "harmful",
    ...(task === "regression" ? [] : [swatch("dot", "#555"), "same label as the test point", swatch("ring", "#555"),
      "different label"]));
  const controls = h("span", "iw-controls", h("label", null, "y axis ", scaleSelect), reset);
  const toolbar = h("div", "iw-toolbar", legend, controls);
  el.appendChild(toolbar);

  let state = null;
  const plot = new Plot(el, {
    height: model.get("height"),
    draw: drawBase,
    drawOverlay,
    nearest: (px, py) => (state && state.grid ? state.grid.nearest(px, py, 7) : -1),
    hover: showTooltip,
    pick: (i) => { model.set("selected", i); model.save_changes(); },
    onView: () => { state.grid = null; rebuildGrid(); },
  });

  // a seam for the browser tests: where point i is drawn, in the plot's CSS pixels (NaN when clipped)
  plot.root.iwPointAt = (i) => (state && state.px ? [state.px[i], state.py[i]] : null);
  plot.root.iwCount = () => (state ? state.xs.length : 0);

  function prepare() {
    const xs = asFloat32(model.get("distances"));
    const ys = asFloat32(model.get("changes"));
    const mode = model.get("y_scale") || "linear";
    let ty = ys, f = null;
    if (mode === "symlog") { f = symlog(niceFloor(medianAbs(ys))); ty = Float32Array.from(ys, f); }
    else if (mode === "rank") ty = ranks(ys);
    state = { xs, ys, ty, f, mode, same: asUint8(model.get("same_label")) };
    scaleSelect.value = mode;
    plot.setData({ x: paddedExtent(xs), y: mode === "rank" ? [-0.03, 1.03] : paddedExtent(ty) });
  }

  function rebuildGrid() {
    if (!state || plot.width <= 0) return;
    const x = plot.x, y = plot.y;
    const px = new Float32Array(state.xs.length), py = new Float32Array(state.xs.length);
    const { left, right, top, bottom } = plot.margin;
    for (let i = 0; i < px.length; i++) {
      px[i] = x(state.xs[i]); py[i] = y(state.ty[i]);
      if (px[i] < left || px[i] > plot.width - right || py[i] < top || py[i] > plot.height - bottom) px[i] = NaN;
    }
    state.px = px; state.py = py;
    state.grid = new PointGrid(px, py, 8);
  }

  function drawBase(p, ctx) {
    if (!state) return;
    rebuildGrid();
    let yTicks;
    if (state.mode === "symlog") yTicks = symlogTicks(state.f, ...p.y.domain);
    else if (state.mode === "rank") yTicks = [0, 0.25, 0.5, 0.75, 1].map((v) => ({ value: v, label: String(v) }));
    p.drawAxes(ctx, { xLabel: model.get("x_label"), yLabel: Y_TITLES[state.mode](model.get("y_label")), yTicks });
    ctx.save();
    p.clip(ctx);
    const { px, py, ys, same } = state;
    const r = px.length > 3000 ? 2.2 : 3.2;
    // different-label rings first, then filled same-label dots, each in its colour; helpful and harmful drawn last
    for (const filled of [false, true]) {
      for (const [color, test] of [[NEUTRAL, (v) => v === 0], [HARMFUL, (v) => v < 0], [HELPFUL, (v) => v > 0]]) {
        ctx.beginPath();
        for (let i = 0; i < px.length; i++) {
          if (!Number.isFinite(px[i]) || !test(ys[i]) || (same[i] ? true : false) !== filled) continue;
          ctx.moveTo(px[i] + r, py[i]);
          ctx.arc(px[i], py[i], r, 0, 2 * Math.PI);
        }
        if (filled) { ctx.fillStyle = color; ctx.globalAlpha = 0.75; ctx.fill(); }
        else { ctx.strokeStyle = color; ctx.lineWidth = 1.4; ctx.globalAlpha = 0.85; ctx.stroke(); }
      }
    }
    ctx.restore();
  }

  function ring(ctx, i, color, radius, width) {
    if (!Number.isFinite(state.px[i])) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.arc(state.px[i], state.py[i], radius, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function drawOverlay(p, ctx) {
    if (!state || !state.px) return;
    const selected = model.get("selected");
    if (selected >= 0 && selected < state.px.length) { ring(ctx, selected, "#fff", 8, 4); ring(ctx, selected, SELECTED, 8, 2); }
    if (p.hovered >= 0) ring(ctx, p.hovered, "#333", 6, 1.5);
  }

  function showTooltip(i, px, py) {
    const lines = [`distance ${formatNumber(state.xs[i])}`, `change in test loss if removed ${formatNumber(state.ys[i])}`];
    plot.showTooltip(tooltipCard(model, i, lines), px, py);
  }

  scaleSelect.addEventListener("change", () => { model.set("y_scale", scaleSelect.value); model.save_changes(); });
  reset.addEventListener("click", () => { plot.reset(); });
  const heightChanged = () => plot.setHeight(model.get("height"));
  const dataEvents = "change:distances change:changes change:same_label change:y_scale";
  const overlayChanged = () => plot.redrawOverlay();
  model.on(dataEvents, prepare);
  model.on("change:selected", overlayChanged);
  model.on("change:height", heightChanged);
  prepare();
  return () => {
    model.off(dataEvents, prepare); model.off("change:selected", overlayChanged); model.off("change:height", heightChanged);
    plot.destroy();
  };
}

export default { render: renderScatter };
