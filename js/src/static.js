// The explorer in a static HTML page: every precomputed test point stays explorable without a kernel.
import { base64ToDataView } from "./lib/arrays.js";
import { linkModels, StaticModel } from "./lib/static-model.js";
import { renderRanked } from "./ranked.js";
import { renderScatter } from "./scatter.js";
import { renderStrip } from "./strip.js";

function decode(value) {
  return typeof value === "object" && value !== null && typeof value.b64 === "string" ? base64ToDataView(value.b64) : value;
}

export function mountStatic(payload, root) {
  const train = payload.train;
  const points = payload.points;
  const order = payload.order;
  const shared = {
    labels: decode(train.labels), thumbnails: decode(train.thumbnails), thumb_shape: train.thumb_shape,
    class_names: payload.class_names, row_text: train.row_text || [], selected: -1,
  };
  const pointState = (key) => ({
    changes: decode(points[key].changes), distances: decode(points[key].distances),
    same_label: decode(points[key].same_label), test_info: points[key].info,
    test_thumbnail: decode(points[key].thumbnail),
  });
  const first = pointState(order[payload.initial]);
  const ranked = new StaticModel({ ...shared, ...first, k: payload.k });
  const scatter = new StaticModel({ ...shared, ...first, width: payload.width, height: payload.height,
    x_label: payload.x_label, y_label: payload.y_label });
  const strip = new StaticModel({
    labels: decode(payload.strip.labels), predictions: decode(payload.strip.predictions),
    thumbnails: decode(payload.strip.thumbnails), thumb_shape: train.thumb_shape,
    class_names: payload.class_names, selected: payload.initial,
  });
  linkModels(ranked, scatter, "selected");
  const loo = document.createElement("img");
  loo.className = "iw-static-loo";
  const notes = document.createElement("pre");
  notes.className = "iw-static-notes";
  function showPoint() {
    const key = order[strip.get("selected")];
    const state = pointState(key);
    for (const model of [ranked, scatter]) {
      model.set("selected", -1);
      for (const [name, value] of Object.entries(state)) model.set(name, value);
    }
    const extra = points[key];
    loo.style.display = extra.loo_png ? "block" : "none";
    if (extra.loo_png) loo.src = `data:image/png;base64,${extra.loo_png}`;
    notes.textContent = extra.notes || "";
  }
  strip.on("change:selected", showPoint);

  const sections = [["iw-static-strip", strip, renderStrip], ["iw-static-ranked", ranked, renderRanked],
    ["iw-static-scatter", scatter, renderScatter]];
  for (const [className, model, render] of sections) {
    const el = document.createElement("div");
    el.className = className;
    root.appendChild(el);
    render({ model, el });
  }
  root.append(loo, notes);
  showPoint();
  return { ranked, scatter, strip };
}

const element = typeof document !== "undefined" ? document.getElementById("iw-payload") : null;
if (element) {
  window.influenceWidgets = mountStatic(JSON.parse(element.textContent), document.getElementById("iw-root"));
}
