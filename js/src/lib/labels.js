// How a point is named and described: the user's ids, class names or regression values.
import { asFloat32, asInt32 } from "./arrays.js";

/** The user's id of point i (the views number by position when no ids were given). */
export function pointId(ids, i) {
  return ids && ids.length > i && i >= 0 ? String(ids[i]) : String(i);
}

/** "label cat" for classes, "target 3.14" for regression targets. */
export function targetText(model, i) {
  if (model.get("task") === "regression") {
    const values = asFloat32(model.get("targets"));
    return `target ${formatValue(values[i])}`;
  }
  const labels = asInt32(model.get("labels"));
  return `label ${labelName(model.get("class_names"), labels[i])}`;
}

export function formatValue(v) {
  if (!Number.isFinite(v)) return String(v);
  return Number(v.toPrecision(4)).toString();
}

/** A label's display name. */
export function labelName(names, label) {
  return names && names[label] !== undefined ? String(names[label]) : String(label);
}

/** A text cut to `max` characters with an ellipsis. */
export function snippet(text, max = 120) {
  const s = String(text ?? "");
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}
