// Influence versus Euclidean distance (the paper's Figure 4): one dot per training point.
import { asFloat32, asInt32, asUint8 } from "./lib/arrays.js";
import { PointGrid } from "./lib/hittest.js";
import { formatNumber, linearScale, paddedExtent, ticks } from "./lib/scales.js";
import { drawThumbnail, hasThumbnails, labelName } from "./lib/thumbs.js";

const SAME = "rgba(31, 119, 180, 0.55)";
const DIFFERENT = "rgba(255, 127, 14, 0.55)";
const MARGIN = { left: 64, right: 12, top: 12, bottom: 40 };

const STYLE = `
.iw-scatter { position: relative; font: 12px system-ui, sans-serif; color: #222; }
.iw-scatter canvas { position: absolute; left: 0; top: 0; }
.iw-scatter .iw-tooltip { position: absolute; pointer-events: none; background: rgba(255,255,255,0.95);
  border: 1px solid #bbb; border-radius: 4px; padding: 4px 6px; display: none; white-space: nowrap; z-index: 2; }
.iw-scatter .iw-legend { position: absolute; right: 16px; top: 14px; background: rgba(255,255,255,0.85); padding: 2px 6px; }
`;

export function renderScatter({ model, el }) {
  el.classList.add("iw-scatter");
  const style = document.createElement("style");
  style.textContent = STYLE;
  const base = document.createElement("canvas");
  base.className = "iw-scatter-canvas";
  const overlay = document.createElement("canvas");
  overlay.className = "iw-scatter-overlay";
  const tooltip = document.createElement("div");
  tooltip.className = "iw-tooltip";
  const legend = document.createElement("div");
  legend.className = "iw-legend";
  legend.innerHTML = `<span style="color:${SAME}">●</span> same label as the test point &nbsp;` +
    `<span style="color:${DIFFERENT}">●</span> different label`;
  el.append(style, base, overlay, tooltip, legend);

  let state = null;
  let hover = -1;

  function size(canvas, w, h) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const ctx = canvas.getContext("2d");
    if (ctx) ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  function draw() {
    const w = model.get("width"), h = model.get("height");
    el.style.width = `${w}px`;
    el.style.height = `${h}px`;
    const xs = asFloat32(model.get("distances"));
    const ys = asFloat32(model.get("changes"));
    const same = asUint8(model.get("same_label"));
    const x = linearScale(paddedExtent(xs), [MARGIN.left, w - MARGIN.right]);
    const y = linearScale(paddedExtent(ys), [h - MARGIN.bottom, MARGIN.top]);
    const px = new Float32Array(xs.length), py = new Float32Array(ys.length);
    for (let i = 0; i < xs.length; i++) { px[i] = x(xs[i]); py[i] = y(ys[i]); }
    state = { xs, ys, px, py, grid: new PointGrid(px, py, 8) };
    const ctx = size(base, w, h);
    size(overlay, w, h);
    if (!ctx) return;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "#999";
    ctx.fillStyle = "#444";
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    ctx.moveTo(MARGIN.left, MARGIN.top);
    ctx.lineTo(MARGIN.left, h - MARGIN.bottom);
    ctx.lineTo(w - MARGIN.right, h - MARGIN.bottom);
    ctx.stroke();
    ctx.textAlign = "center";
    for (const t of ticks(...x.domain, 6)) ctx.fillText(formatNumber(t), x(t), h - MARGIN.bottom + 14);
    ctx.textAlign = "right";
    for (const t of ticks(...y.domain, 5)) ctx.fillText(formatNumber(t), MARGIN.left - 4, y(t) + 4);
    if (y.domain[0] < 0 && y.domain[1] > 0) {
      ctx.strokeStyle = "#ddd";
      ctx.beginPath();
      ctx.moveTo(MARGIN.left, y(0));
      ctx.lineTo(w - MARGIN.right, y(0));
      ctx.stroke();
    }
    ctx.textAlign = "center";
    ctx.fillText(model.get("x_label"), (MARGIN.left + w - MARGIN.right) / 2, h - 6);
    ctx.save();
    ctx.translate(12, (MARGIN.top + h - MARGIN.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(model.get("y_label"), 0, 0);
    ctx.restore();
    for (const pass of [0, 1]) {  // different-label points first, so same-label points stay visible
      ctx.fillStyle = pass ? SAME : DIFFERENT;
      for (let i = 0; i < px.length; i++) {
        if ((same[i] ? 1 : 0) !== pass || !Number.isFinite(px[i]) || !Number.isFinite(py[i])) continue;
        ctx.fillRect(px[i] - 2, py[i] - 2, 4, 4);
      }
    }
    drawOverlay();
  }

  function ring(ctx, i, color, radius) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(state.px[i], state.py[i], radius, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    if (!ctx || !state) return;
    ctx.clearRect(0, 0, model.get("width"), model.get("height"));
    const selected = model.get("selected");
    if (selected >= 0 && selected < state.px.length) ring(ctx, selected, "#d62728", 7);
    if (hover >= 0) ring(ctx, hover, "#222", 5);
  }

  function pointAt(event) {
    const rect = overlay.getBoundingClientRect();
    return state ? state.grid.nearest(event.clientX - rect.left, event.clientY - rect.top, 6) : -1;
  }

  function showTooltip(i, event) {
    if (i < 0) { tooltip.style.display = "none"; return; }
    const labels = asInt32(model.get("labels"));
    const names = model.get("class_names");
    const thumbs = asUint8(model.get("thumbnails"));
    const shape = model.get("thumb_shape");
    tooltip.replaceChildren();
    if (hasThumbnails(thumbs, shape)) tooltip.appendChild(drawThumbnail(document.createElement("canvas"), thumbs, i, shape[0], shape[1], 3));
    const text = document.createElement("div");
    text.className = "iw-tooltip-text";
    text.textContent = `train #${i} · label ${labelName(names, labels[i])} · distance ${formatNumber(state.xs[i])} · ` +
      `change if removed ${formatNumber(state.ys[i])}`;
    tooltip.appendChild(text);
    const rect = overlay.getBoundingClientRect();
    tooltip.style.left = `${Math.min(event.clientX - rect.left + 12, model.get("width") - 220)}px`;
    tooltip.style.top = `${event.clientY - rect.top + 12}px`;
    tooltip.style.display = "block";
  }

  overlay.addEventListener("mousemove", (event) => {
    const i = pointAt(event);
    if (i !== hover) { hover = i; drawOverlay(); }
    showTooltip(i, event);
  });
  overlay.addEventListener("mouseleave", () => { hover = -1; tooltip.style.display = "none"; drawOverlay(); });
  overlay.addEventListener("click", (event) => {
    const i = pointAt(event);
    if (i >= 0) { model.set("selected", i); model.save_changes(); }
  });

  const dataEvents = "change:distances change:changes change:same_label change:width change:height";
  model.on(dataEvents, draw);
  model.on("change:selected", drawOverlay);
  draw();
  return () => { model.off(dataEvents, draw); model.off("change:selected", drawOverlay); };
}

export default { render: renderScatter };
