// The solve of the selected test point: its trace on a log scale (CG residuals or LiSSA estimate
// norms), and every solver's figures in words (a direct solve has no trace, and says so).
import { asFloat32 } from "./lib/arrays.js";
import { addStyle, COMMON_CSS, h } from "./lib/dom.js";
import { HELPFUL } from "./lib/palette.js";
import { PLOT_CSS, Plot } from "./lib/plot.js";

const CSS = `
.iw-solve { font: 13px system-ui, sans-serif; color: #222; display: flex; flex-wrap: wrap; gap: 8px 18px; width: 100%; box-sizing: border-box; }
.iw-solve .iw-solve-text { flex: 1 1 300px; min-width: 0; }
.iw-solve .iw-solve-plot { flex: 1 1 360px; min-width: 0; max-width: 700px; }
.iw-solve h4 { margin: 2px 0 6px; font-size: 13px; }
.iw-solve table { border-collapse: collapse; font-size: 12px; }
.iw-solve td { padding: 2px 10px 2px 0; vertical-align: top; } .iw-solve td:first-child { color: #555; }
.iw-solve .iw-warning { color: #8a3300; margin-top: 4px; }
`;

export function renderSolve({ model, el }) {
  el.classList.add("iw-solve");
  addStyle(el, COMMON_CSS + PLOT_CSS + CSS);
  const text = h("div", "iw-solve-text");
  const plotBox = h("div", "iw-solve-plot");
  el.append(text, plotBox);
  let trace = new Float32Array(0);
  const plot = new Plot(plotBox, {
    height: model.get("height"),
    margin: { left: 62, right: 12, top: 8, bottom: 40 },
    draw(p, ctx) {
      if (trace.length < 2) return;
      const logs = Array.from(trace, (v) => Math.log10(Math.max(v, 1e-300)));
      const yTicks = [];
      for (let e = Math.floor(p.y.domain[0]); e <= Math.ceil(p.y.domain[1]); e++) yTicks.push({ value: e, label: `1e${e}` });
      p.drawAxes(ctx, { xLabel: model.get("trace_kind"), yLabel: "log scale", yTicks });
      ctx.save(); p.clip(ctx);
      ctx.strokeStyle = HELPFUL; ctx.lineWidth = 1.8; ctx.beginPath();
      logs.forEach((v, i) => (i ? ctx.lineTo(p.x(i + 1), p.y(v)) : ctx.moveTo(p.x(i + 1), p.y(v))));
      ctx.stroke(); ctx.restore();
    },
  });

  function draw() {
    trace = asFloat32(model.get("trace"));
    const facts = model.get("facts") || [];
    text.replaceChildren(
      h("h4", null, model.get("title") || ""),
      h("table", null, h("tbody", null, ...facts.map(([k, v]) => h("tr", null, h("td", null, k), h("td", null, v))))),
      ...(model.get("warnings") || []).map((w) => h("div", "iw-warning", `warning: ${w}`)),
    );
    plotBox.style.display = trace.length > 1 ? "block" : "none";
    if (trace.length > 1) {
      const logs = Array.from(trace, (v) => Math.log10(Math.max(v, 1e-300)));
      let lo = Math.min(...logs), hi = Math.max(...logs);
      if (hi - lo < 1) { lo -= 0.5; hi += 0.5; }
      plot.setData({ x: [1, trace.length], y: [lo - 0.1, hi + 0.1] });
      plot.resize(true);
    }
  }
  const events = "change:trace change:facts change:title change:warnings change:trace_kind";
  model.on(events, draw);
  draw();
  return () => { model.off(events, draw); plot.destroy(); };
}

export default { render: renderSolve };
