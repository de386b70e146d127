// The explorer in a static HTML page: every precomputed test point stays explorable without a kernel.
// The same render functions as in the notebook, over StaticModel.
import { base64ToDataView } from "./lib/arrays.js";
import { h } from "./lib/dom.js";
import { linkModels, StaticModel } from "./lib/static-model.js";
import { renderLOO } from "./loo.js";
import { renderRanked } from "./ranked.js";
import { renderScatter } from "./scatter.js";
import { renderSolve } from "./solve.js";
import { renderStrip } from "./strip.js";

function decode(value) {
  return typeof value === "object" && value !== null && typeof value.b64 === "string" ? base64ToDataView(value.b64) : value;
}

function decodeAll(state) {
  const out = {};
  for (const [k, v] of Object.entries(state || {})) out[k] = decode(v);
  return out;
}

export function mountStatic(payload, root) {
  const shared = { ...decodeAll(payload.train), selected: -1 };
  const points = payload.points;
  const order = payload.order;
  const pointState = (key) => ({
    changes: decode(points[key].changes), distances: decode(points[key].distances),
    same_label: decode(points[key].same_label), test_info: points[key].info,
    test_thumbnail: decode(points[key].thumbnail), test_row: decode(points[key].test_row),
  });
  const emptyLoo = { removed: new DataView(new ArrayBuffer(0)), predicted: new DataView(new ArrayBuffer(0)),
    actual: new DataView(new ArrayBuffer(0)), refined: new DataView(new ArrayBuffer(0)), verdict: {} };
  const first = pointState(order[payload.initial]);
  const ranked = new StaticModel({ ...shared, ...first, k: payload.k });
  const scatter = new StaticModel({ ...shared, ...first, height: payload.height, y_scale: "linear",
    x_label: payload.x_label, y_label: payload.y_label });
  const loo = new StaticModel({ ...shared, ...emptyLoo, empty_text: "", height: 340 });
  const solve = new StaticModel({ trace: new DataView(new ArrayBuffer(0)), trace_kind: "", title: "", facts: [], warnings: [],
    height: 220 });
  const strip = new StaticModel({ ...decodeAll(payload.strip), thumb_shape: shared.thumb_shape,
    class_names: shared.class_names, selected: payload.initial });
  linkModels(ranked, scatter, "selected");
  linkModels(ranked, loo, "selected");
  function showPoint() {
    const key = order[strip.get("selected")];
    const state = pointState(key);
    for (const model of [ranked, scatter, loo]) model.set("selected", -1);
    for (const model of [ranked, scatter]) for (const [name, value] of Object.entries(state)) model.set(name, value);
    const extra = points[key];
    const looState = extra.loo ? decodeAll(extra.loo) : emptyLoo;
    loo.set("empty_text", extra.loo ? "" : extra.loo_note);
    for (const [name, value] of Object.entries(looState)) loo.set(name, value);
    for (const [name, value] of Object.entries(decodeAll(extra.solve))) solve.set(name, value);
  }
  strip.on("change:selected", showPoint);

  const sections = [
    ["Test points", "iw-static-strip", strip, renderStrip],
    ["Training points that mattered most", "iw-static-ranked", ranked, renderRanked],
    ["Influence against distance", "iw-static-scatter", scatter, renderScatter],
    ["Leave-one-out check", "iw-static-loo", loo, renderLOO],
    ["Solve of this test point", "iw-static-solve", solve, renderSolve],
  ];
  for (const [title, className, model, render] of sections) {
    const el = h("div", className);
    root.appendChild(h("section", null, h("h3", null, title), el));
    render({ model, el });
  }
  showPoint();
  return { ranked, scatter, strip, loo, solve };
}

const element = typeof document !== "undefined" ? document.getElementById("iw-payload") : null;
if (element) {
  window.influenceWidgets = mountStatic(JSON.parse(element.textContent), document.getElementById("iw-root"));
}
