// Leave-one-out check (the paper's Figure 2): predicted against actual change in test loss for each
// retrained removal, the identity line, the verdict in words above. Hover shows the training point,
// a click selects it (linked with the ranked list and the scatter).
import { asFloat32, asInt32 } from "./lib/arrays.js";
import { tooltipCard } from "./lib/card.js";
import { addStyle, COMMON_CSS, h, swatch } from "./lib/dom.js";
import { PointGrid } from "./lib/hittest.js";
import { changeColor, HARMFUL, HELPFUL, IDENTITY, NEWTON, SELECTED } from "./lib/palette.js";
import { PLOT_CSS, Plot } from "./lib/plot.js";
import { formatNumber, paddedExtent } from "./lib/scales.js";

const CSS = `
.iw-loo { font: 13px system-ui, sans-serif; color: #222; width: 100%; min-width: 0; box-sizing: border-box; }
.iw-loo .iw-verdict { padding: 8px 10px; border-radius: 6px; margin-bottom: 6px; border-left: 4px solid #888; background: #f6f6f6; }
.iw-loo .iw-verdict.iw-agrees { border-left-color: ${HELPFUL}; background: #eef5fb; }
.iw-loo .iw-verdict.iw-disagrees { border-left-color: ${HARMFUL}; background: #fdf1ea; }
.iw-loo .iw-headline { font-weight: 600; }
.iw-loo .iw-causes { margin: 4px 0 0 18px; padding: 0; }
.iw-loo .iw-figures { display: flex; flex-wrap: wrap; gap: 2px 14px; margin-top: 4px; font-size: 12px; color: #444; }
.iw-loo .iw-empty { padding: 14px 10px; color: #555; background: #f6f6f6; border-radius: 6px; }
.iw-loo .iw-body { display: flex; flex-wrap: wrap; gap: 6px 14px; }
.iw-loo .iw-body > .iw-plot-wrap { flex: 1 1 360px; min-width: 0; max-width: 760px; }
`;

export function renderLOO({ model, el }) {
  el.classList.add("iw-loo");
  addStyle(el, COMMON_CSS + PLOT_CSS + CSS);
  const verdictBox = h("div", "iw-verdict");
  const empty = h("div", "iw-empty");
  const reset = h("button", "iw-reset", "Reset zoom");
  reset.type = "button";
  const legend = h("span", "iw-legend", swatch("dot", HELPFUL), "predicted helpful", swatch("dot", HARMFUL),
    "predicted harmful", swatch("plus", NEWTON), "Newton step", swatch("line", IDENTITY), "predicted = actual");
  const wrap = h("div", "iw-plot-wrap", h("div", "iw-toolbar", legend, h("span", "iw-spacer"), reset));
  const body = h("div", "iw-body", wrap);
  el.append(verdictBox, empty, body);

  let state = null;
  const plot = new Plot(wrap, {
    height: model.get("height"),
    margin: { left: 70, right: 14, top: 10, bottom: 42 },
    draw: drawBase,
    drawOverlay,
    nearest: (px, py) => (state && state.grid ? state.grid.nearest(px, py, 8) : -1),
    hover: showTooltip,
    pick: (k) => { model.set("selected", state.removed[k]); model.save_changes(); },
    onView: () => {},
  });

  function drawVerdict() {
    const v = model.get("verdict") || {};
    verdictBox.className = "iw-verdict" + (v.agrees === true ? " iw-agrees" : v.agrees === false ? " iw-disagrees" : "");
    const parts = [h("div", "iw-headline", v.headline || "")];
    if (v.causes && v.causes.length) {
      parts.push(h("div", null, "Likely cause" + (v.causes.length > 1 ? "s" : "") + ":"));
      parts.push(h("ul", "iw-causes", ...v.causes.map((c) => h("li", null, c))));
    }
    if (v.figures && v.figures.length) {
      parts.push(h("div", "iw-figures", ...v.figures.map(([name, value]) => h("span", null, `${name}: `, h("b", null, value)))));
    }
    verdictBox.replaceChildren(...parts);
  }

  function prepare() {
    const removed = asInt32(model.get("removed"));
    const predicted = asFloat32(model.get("predicted"));
    const actual = asFloat32(model.get("actual"));
    const refined = asFloat32(model.get("refined"));
    const hasData = removed.length > 0;
    empty.textContent = model.get("empty_text") || "No leave-one-out run yet.";
    empty.style.display = hasData ? "none" : "block";
    body.style.display = hasData ? "flex" : "none";
    verdictBox.style.display = hasData || (model.get("verdict") || {}).headline ? "block" : "none";
    drawVerdict();
    state = { removed, predicted, actual, refined: refined.length === removed.length ? refined : null };
    const all = [...predicted, ...actual, ...(state.refined || [])];
    const extent = paddedExtent(all, 0.08);
    plot.setData({ x: extent, y: extent });
    if (hasData) plot.resize(true);
  }

  function drawBase(p, ctx) {
    if (!state || !state.removed.length) return;
    p.drawAxes(ctx, { xLabel: "predicted change in test loss (−I_up,loss / n)", yLabel: "actual change (retrained, minus drift)" });
    ctx.save();
    p.clip(ctx);
    const x = p.x, y = p.y;
    const lo = Math.min(x.domain[0], y.domain[0]), hi = Math.max(x.domain[1], y.domain[1]);
    ctx.strokeStyle = IDENTITY; ctx.setLineDash([5, 4]); ctx.lineWidth = 1.2;
    ctx.beginPath(); ctx.moveTo(x(lo), y(lo)); ctx.lineTo(x(hi), y(hi)); ctx.stroke();
    ctx.setLineDash([]);
    const px = new Float32Array(state.removed.length), py = new Float32Array(state.removed.length);
    if (state.refined) {
      ctx.strokeStyle = NEWTON; ctx.lineWidth = 1.6;
      for (let k = 0; k < state.refined.length; k++) {
        const cx = x(state.refined[k]), cy = y(state.actual[k]);
        ctx.beginPath(); ctx.moveTo(cx - 4, cy); ctx.lineTo(cx + 4, cy); ctx.moveTo(cx, cy - 4); ctx.lineTo(cx, cy + 4); ctx.stroke();
      }
    }
    for (let k = 0; k < state.removed.length; k++) {
      px[k] = x(state.predicted[k]); py[k] = y(state.actual[k]);
      ctx.fillStyle = changeColor(state.predicted[k]);
      ctx.globalAlpha = 0.85;
      ctx.beginPath(); ctx.arc(px[k], py[k], 4.5, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.restore();
    state.px = px; state.py = py;
    state.grid = new PointGrid(px, py, 8);
  }

  function drawOverlay(p, ctx) {
    if (!state || !state.px) return;
    const selected = model.get("selected");
    for (let k = 0; k < state.removed.length; k++) {
      if (state.removed[k] !== selected) continue;
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 4; ctx.beginPath(); ctx.arc(state.px[k], state.py[k], 8, 0, 2 * Math.PI); ctx.stroke();
      ctx.strokeStyle = SELECTED; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(state.px[k], state.py[k], 8, 0, 2 * Math.PI); ctx.stroke();
    }
    if (p.hovered >= 0) {
      ctx.strokeStyle = "#333"; ctx.lineWidth = 1.5; ctx.beginPath(); ctx.arc(state.px[p.hovered], state.py[p.hovered], 6.5, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  function showTooltip(k, px, py) {
    const lines = [`predicted ${formatNumber(state.predicted[k])}`, `actual ${formatNumber(state.actual[k])}`];
    if (state.refined) lines.push(`Newton step ${formatNumber(state.refined[k])}`);
    plot.showTooltip(tooltipCard(model, state.removed[k], lines), px, py);
  }

  reset.addEventListener("click", () => plot.reset());
  const events = "change:removed change:predicted change:actual change:refined change:verdict change:empty_text";
  const overlay = () => plot.redrawOverlay();
  model.on(events, prepare);
  model.on("change:selected", overlay);
  prepare();
  return () => { model.off(events, prepare); model.off("change:selected", overlay); plot.destroy(); };
}

export default { render: renderLOO };
