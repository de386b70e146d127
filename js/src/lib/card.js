// What a training point looks like wherever it is shown (lists, tooltips): thumbnail, row or text, and its id.
import { asFloat32, asUint8 } from "./arrays.js";
import { h } from "./dom.js";
import { formatValue, pointId, snippet, targetText } from "./labels.js";
import { differences } from "./rows.js";
import { drawThumbnail, hasThumbnails } from "./thumbs.js";

export function featureCount(model) {
  const names = model.get("feature_names") || [];
  const rows = asFloat32(model.get("rows"));
  return names.length && rows.length ? names.length : 0;
}

/** The thumbnail of training point i, or null. */
export function thumbnailOf(model, i, size = 40) {
  const thumbs = asUint8(model.get("thumbnails"));
  const shape = model.get("thumb_shape");
  if (!hasThumbnails(thumbs, shape)) return null;
  return drawThumbnail(document.createElement("canvas"), thumbs, i, shape[0], shape[1], size);
}

/** "train #id · label X" */
export function titleOf(model, i, prefix = "train") {
  return [h("b", null, `${prefix} #${pointId(model.get("ids"), i)}`), ` · ${targetText(model, i)}`];
}

/** The largest differences of training row i from the test row, as "name 1.2 (test 0.3)" parts. */
export function differenceLine(model, i, testRow, top = 3) {
  const d = featureCount(model);
  if (!d) return null;
  const diffs = differences(asFloat32(model.get("rows")), d, i, testRow, asFloat32(model.get("row_scale")),
    model.get("feature_names")).slice(0, Math.min(top, d));
  const line = h("div", "iw-diffs");
  diffs.forEach((f, k) => {
    if (k) line.append(" · ");
    line.append(h("span", "iw-feature", f.name), ` ${formatValue(f.train)}`);
    if (Number.isFinite(f.test)) line.append(h("span", "iw-test-value", ` (test ${formatValue(f.test)})`));
  });
  return line;
}

/** The row text of point i as a snippet, or null. */
export function textOf(model, i, max = 120) {
  const texts = model.get("row_text") || [];
  if (texts[i] === undefined) return null;
  const node = h("div", "iw-row-text", snippet(texts[i], max));
  node.title = String(texts[i]);
  return node;
}

/** A tooltip's content for training point i, with extra lines of text. */
export function tooltipCard(model, i, lines, testRow) {
  return h("div", "iw-card", thumbnailOf(model, i, 56), h("div", null, ...titleOf(model, i)), textOf(model, i, 90),
    differenceLine(model, i, testRow), ...lines.map((l) => h("div", null, l)));
}
