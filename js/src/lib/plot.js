// A 2-D plot area that sizes itself from its container: two canvases drawn at the device pixel ratio,
// redrawn on every resize (ResizeObserver), with zoom (wheel), pan (drag), reset (double-click or the
// caller's button) and a tooltip placed inside the plot, above everything else.
import { formatNumber, linearScale, ticks } from "./scales.js";

export const PLOT_CSS = `
.iw-plot { position: relative; width: 100%; overflow: hidden; user-select: none; }
.iw-plot > canvas.iw-layer { position: absolute; left: 0; top: 0; }
.iw-plot > canvas.iw-overlay { cursor: crosshair; }
.iw-plot > canvas.iw-overlay.iw-dragging { cursor: grabbing; }
`;

/** Size a canvas to w x h CSS pixels at the device pixel ratio; returns its context, scaled to CSS pixels. */
export function sizeCanvas(canvas, w, h) {
  const ratio = window.devicePixelRatio || 1;
  const bw = Math.max(1, Math.round(w * ratio)), bh = Math.max(1, Math.round(h * ratio));
  if (canvas.width !== bw) canvas.width = bw;
  if (canvas.height !== bh) canvas.height = bh;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext("2d");
  if (ctx) ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

export class Plot {
  /**
   * options: height (CSS px), margin {left, right, top, bottom}, draw(plot) and drawOverlay(plot) callbacks,
   * hover(i, event) / pick(i) callbacks, nearest(px, py) -> index or -1.
   */
  constructor(parent, options) {
    this.options = options;
    this.margin = options.margin || { left: 64, right: 14, top: 10, bottom: 42 };
    this.root = document.createElement("div");
    this.root.className = "iw-plot";
    this.base = document.createElement("canvas");
    this.base.className = "iw-layer iw-base";
    this.overlay = document.createElement("canvas");
    this.overlay.className = "iw-layer iw-overlay";
    this.tooltip = document.createElement("div");
    this.tooltip.className = "iw-tooltip";
    this.root.append(this.base, this.overlay, this.tooltip);
    parent.appendChild(this.root);
    this.width = 0;
    this.height = options.height || 360;
    this.root.style.height = `${this.height}px`;
    this.dataDomain = { x: [0, 1], y: [0, 1] };
    this.view = null;  // the zoomed domain, or null for the whole data
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.root);
    this.ratio = window.devicePixelRatio || 1;
    this.listen();
  }

  setHeight(height) {
    this.height = height;
    this.root.style.height = `${height}px`;
    this.resize(true);
  }

  /** Redraw when the size (or the pixel ratio) changed; nothing while the container is not laid out. */
  resize(force = false) {
    const w = Math.floor(this.root.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    if (w <= 0) return;
    if (!force && w === this.width && ratio === this.ratio && this.drawn) return;
    this.width = w;
    this.ratio = ratio;
    this.redraw();
  }

  get domain() { return this.view || this.dataDomain; }

  get x() { return linearScale(this.domain.x, [this.margin.left, this.width - this.margin.right]); }

  get y() { return linearScale(this.domain.y, [this.height - this.margin.bottom, this.margin.top]); }

  setData(domain) {
    this.dataDomain = domain;
    this.view = null;
    this.redraw();
  }

  reset() {
    this.view = null;
    this.redraw();
  }

  redraw() {
    if (this.width <= 0) { this.resize(); return; }
    const ctx = sizeCanvas(this.base, this.width, this.height);
    sizeCanvas(this.overlay, this.width, this.height);
    if (!ctx) return;
    this.drawn = true;
    ctx.clearRect(0, 0, this.width, this.height);
    this.options.draw(this, ctx);
    this.redrawOverlay();
  }

  redrawOverlay() {
    const ctx = this.overlay.getContext("2d");
    if (!ctx || this.width <= 0) return;
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    this.options.drawOverlay?.(this, ctx);
  }

  /** Axes, ticks, grid line at zero and axis titles; yTicks may be [{value, label}] in plot space. */
  drawAxes(ctx, { xLabel, yLabel, yTicks, xTicks }) {
    const { left, right, top, bottom } = this.margin;
    const x = this.x, y = this.y, w = this.width, h = this.height;
    ctx.save();
    ctx.strokeStyle = "#b8b8b8";
    ctx.fillStyle = "#333";
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    ctx.moveTo(left, top);
    ctx.lineTo(left, h - bottom);
    ctx.lineTo(w - right, h - bottom);
    ctx.stroke();
    const xCount = Math.max(2, Math.floor((w - left - right) / 90));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of xTicks || ticks(...x.domain, xCount).map((v) => ({ value: v, label: formatNumber(v) }))) {
      const px = x(t.value);
      if (px < left - 0.5 || px > w - right + 0.5) continue;
      ctx.fillText(t.label, px, h - bottom + 5);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yCount = Math.max(2, Math.floor((h - top - bottom) / 50));
    const yt = yTicks || ticks(...y.domain, yCount).map((v) => ({ value: v, label: formatNumber(v) }));
    const drawn = [];
    for (const t of yt) {
      const py = y(t.value);
      if (py < top - 0.5 || py > h - bottom + 0.5) continue;
      if (drawn.some((q) => Math.abs(q - py) < 14)) continue;  // labels never overlap
      drawn.push(py);
      ctx.fillText(t.label, left - 5, py);
      ctx.strokeStyle = t.value === 0 ? "#c8c8c8" : "#f0f0f0";
      ctx.beginPath();
      ctx.moveTo(left + 1, py);
      ctx.lineTo(w - right, py);
      ctx.stroke();
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "alphabetic";
    ctx.fillStyle = "#222";
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(xLabel || "", (left + w - right) / 2, h - 8);
    ctx.translate(13, (top + h - bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(yLabel || "", 0, 0);
    ctx.restore();
  }

  /** Clip to the plot area (points outside the zoomed view are not drawn over the axes). */
  clip(ctx) {
    const { left, right, top, bottom } = this.margin;
    ctx.beginPath();
    ctx.rect(left, top, this.width - left - right, this.height - top - bottom);
    ctx.clip();
  }

  /** Show the tooltip with `content` (a Node) near (px, py), flipped and clamped to stay inside the plot. */
  showTooltip(content, px, py) {
    this.tooltip.replaceChildren(content);
    this.tooltip.style.display = "block";
    const tw = this.tooltip.offsetWidth, th = this.tooltip.offsetHeight, gap = 14;
    let left = px + gap, top = py + gap;
    if (left + tw > this.width) left = px - gap - tw;
    if (top + th > this.height) top = py - gap - th;
    left = Math.max(0, Math.min(left, this.width - tw));
    top = Math.max(0, Math.min(top, this.height - th));
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${top}px`;
  }

  hideTooltip() { this.tooltip.style.display = "none"; }

  local(event) {
    const rect = this.overlay.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  listen() {
    const o = this.overlay;
    let drag = null;
    let hovered = -1;
    o.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [px, py] = this.local(event);
      const factor = Math.exp(Math.sign(event.deltaY) * 0.18);
      const { x, y } = this;
      const cx = x.invert(px), cy = y.invert(py);
      const d = this.domain;
      this.view = {
        x: [cx + (d.x[0] - cx) * factor, cx + (d.x[1] - cx) * factor],
        y: [cy + (d.y[0] - cy) * factor, cy + (d.y[1] - cy) * factor],
      };
      this.hideTooltip();
      this.redraw();
      this.options.onView?.(this);
    }, { passive: false });
    o.addEventListener("mousedown", (event) => {
      if (event.button !== 0) return;
      drag = { start: this.local(event), domain: this.domain, moved: false };
    });
    window.addEventListener("mouseup", () => {
      if (drag) o.classList.remove("iw-dragging");
      if (drag && drag.moved) this.options.onView?.(this);
      setTimeout(() => { drag = null; }, 0);
    });
    o.addEventListener("mousemove", (event) => {
      const [px, py] = this.local(event);
      if (drag && (event.buttons & 1)) {
        const dx = px - drag.start[0], dy = py - drag.start[1];
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          o.classList.add("iw-dragging");
          const kx = (drag.domain.x[1] - drag.domain.x[0]) / (this.width - this.margin.left - this.margin.right);
          const ky = (drag.domain.y[1] - drag.domain.y[0]) / (this.height - this.margin.top - this.margin.bottom);
          this.view = {
            x: [drag.domain.x[0] - dx * kx, drag.domain.x[1] - dx * kx],
            y: [drag.domain.y[0] + dy * ky, drag.domain.y[1] + dy * ky],
          };
          this.hideTooltip();
          this.redraw();
          return;
        }
      }
      const i = this.options.nearest ? this.options.nearest(px, py) : -1;
      if (i !== hovered) { hovered = i; this.hovered = i; this.redrawOverlay(); }
      if (i >= 0) this.options.hover?.(i, px, py);
      else this.hideTooltip();
    });
    o.addEventListener("mouseleave", () => {
      hovered = -1; this.hovered = -1; this.hideTooltip(); this.redrawOverlay();
    });
    o.addEventListener("click", (event) => {
      if (drag && drag.moved) return;
      const [px, py] = this.local(event);
      const i = this.options.nearest ? this.options.nearest(px, py) : -1;
      if (i >= 0) this.options.pick?.(i);
    });
    o.addEventListener("dblclick", () => { this.reset(); this.options.onView?.(this); });
  }

  destroy() { this.observer.disconnect(); }
}
