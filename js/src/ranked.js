// Ranked training points for one test point: the most helpful and the most harmful, each with its
// thumbnail, row (largest differences from the test row marked) or text, and the user's id.
import { asFloat32, asUint8 } from "./lib/arrays.js";
import { differenceLine, featureCount, textOf, thumbnailOf, titleOf } from "./lib/card.js";
import { addStyle, COMMON_CSS, h, swatch } from "./lib/dom.js";
import { formatValue, labelName, pointId, snippet } from "./lib/labels.js";
import { HARMFUL, HELPFUL } from "./lib/palette.js";
import { describeChange, helpfulAndHarmful } from "./lib/ranking.js";
import { differences } from "./lib/rows.js";
import { drawThumbnail, hasThumbnails } from "./lib/thumbs.js";

const CSS = `
.iw-ranked { font: 13px system-ui, sans-serif; color: #222; display: flex; flex-direction: column; gap: 8px; min-width: 0; box-sizing: border-box; width: 100%; }
.iw-ranked .iw-test { display: flex; gap: 10px; align-items: center; padding: 6px 8px; background: #f4f6fa; border-radius: 6px; }
.iw-ranked .iw-columns { display: flex; gap: 12px; flex-wrap: wrap; }
.iw-ranked .iw-column { flex: 1 1 240px; min-width: 0; }
.iw-ranked h4 { margin: 4px 0; font-size: 13px; }
.iw-ranked .iw-item { display: flex; gap: 8px; align-items: center; padding: 3px 4px; border-radius: 4px; cursor: pointer; border: 2px solid transparent; min-width: 0; }
.iw-ranked .iw-item:hover { background: #f0f0f0; }
.iw-ranked .iw-item.iw-selected { border-color: #000; background: #f3f3f3; }
.iw-ranked .iw-item > div { min-width: 0; overflow-wrap: anywhere; }
.iw-ranked .iw-row-text { font-family: ui-monospace, monospace; font-size: 11px; color: #555; }
.iw-ranked .iw-diffs { font-size: 11px; color: #444; } .iw-ranked .iw-feature { font-weight: 600; }
.iw-ranked .iw-test-value { color: #777; }
.iw-ranked .iw-words { font-size: 12px; color: #333; }
.iw-ranked .iw-bar { height: 5px; border-radius: 2px; margin-top: 2px; }
.iw-ranked .iw-compare { border-collapse: collapse; font-size: 12px; margin-top: 4px; }
.iw-ranked .iw-compare td, .iw-ranked .iw-compare th { padding: 1px 8px 1px 0; text-align: right; }
.iw-ranked .iw-compare td:first-child, .iw-ranked .iw-compare th:first-child { text-align: left; }
.iw-ranked .iw-compare tr.iw-marked td { font-weight: 700; } .iw-ranked .iw-compare tr.iw-marked td:first-child::before { content: "▶ "; }
`;

export function renderRanked({ model, el }) {
  el.classList.add("iw-ranked");
  addStyle(el, COMMON_CSS + CSS);
  const root = h("div", "iw-ranked-root");
  root.style.display = "contents";
  el.appendChild(root);

  function item(i, change, maxAbs, selected, testRow) {
    const row = h("div", "iw-item" + (i === selected ? " iw-selected" : ""));
    row.dataset.index = String(i);
    row.dataset.id = pointId(model.get("ids"), i);
    const thumb = thumbnailOf(model, i, 40);
    if (thumb) row.appendChild(thumb);
    const bar = h("div", "iw-bar");
    bar.style.width = `${Math.max(2, (140 * Math.abs(change)) / (maxAbs || 1))}px`;
    bar.style.background = change > 0 ? HELPFUL : HARMFUL;
    row.appendChild(h("div", null, h("div", "iw-item-title", ...titleOf(model, i)), h("div", "iw-words", describeChange(change)),
      textOf(model, i), differenceLine(model, i, testRow), bar));
    row.addEventListener("click", () => { model.set("selected", i); model.save_changes(); });
    return row;
  }

  function comparison(i, testRow) {
    const d = featureCount(model);
    if (!d || testRow.length !== d) return null;
    const diffs = differences(asFloat32(model.get("rows")), d, i, testRow, asFloat32(model.get("row_scale")), model.get("feature_names"));
    const marked = new Set(diffs.slice(0, 3).map((f) => f.j));
    const shown = diffs.slice(0, 3).concat(diffs.slice(3).sort((a, b) => a.j - b.j)).slice(0, 24);
    const table = h("table", "iw-compare", h("thead", null, h("tr", null, h("th", null, "feature"), h("th", null, "test"),
      h("th", null, `train #${pointId(model.get("ids"), i)}`), h("th", null, "difference / sd"))));
    const body = h("tbody");
    for (const f of shown) {
      const tr = h("tr", marked.has(f.j) ? "iw-marked" : null, h("td", null, f.name), h("td", null, formatValue(f.test)),
        h("td", null, formatValue(f.train)), h("td", null, f.z.toFixed(2)));
      body.appendChild(tr);
    }
    table.appendChild(body);
    const note = d > shown.length ? h("div", "iw-diffs", `${d - shown.length} more features not shown`) : null;
    return h("div", null, h("div", "iw-diffs", "▶ marks the three largest differences (in training standard deviations)"), table, note);
  }

  function draw() {
    const changes = asFloat32(model.get("changes"));
    const selected = model.get("selected");
    const info = model.get("test_info") || {};
    const names = model.get("class_names");
    const testRow = asFloat32(model.get("test_row"));
    const { helpful, harmful } = helpfulAndHarmful(changes, model.get("k"));
    let maxAbs = 0;
    for (const i of [...helpful, ...harmful]) maxAbs = Math.max(maxAbs, Math.abs(changes[i]));

    const header = h("div", "iw-test");
    const testThumb = asUint8(model.get("test_thumbnail"));
    const shape = model.get("thumb_shape");
    if (hasThumbnails(testThumb, shape)) header.appendChild(drawThumbnail(document.createElement("canvas"), testThumb, 0, shape[0], shape[1], 56));
    const summary = h("div", "iw-test-summary");
    if (info.id !== undefined || info.index !== undefined) {
      const id = info.id !== undefined ? info.id : info.index;
      const regression = model.get("task") === "regression";
      const target = info.target_text ?? labelName(names, info.label);
      const prediction = info.prediction_text ?? labelName(names, info.prediction);
      summary.append(h("b", "iw-test-id", `test #${id}`), ` · ${regression ? "target" : "label"} ${target} · predicted ${prediction}` +
        ` · test loss ${Number(info.loss).toPrecision(3)}`);
      if (info.text) summary.append(h("div", "iw-row-text", snippet(info.text, 160)));
    } else {
      summary.textContent = "no test point selected";
    }
    header.appendChild(summary);

    const columns = h("div", "iw-columns");
    for (const [kind, color, title, list] of [
      ["iw-helpful", HELPFUL, "Most helpful (removing raises the test loss)", helpful],
      ["iw-harmful", HARMFUL, "Most harmful (removing lowers the test loss)", harmful],
    ]) {
      const column = h("div", `iw-column ${kind}`, h("h4", null, swatch("dot", color), title));
      for (const i of list) column.appendChild(item(i, changes[i], maxAbs, selected, testRow));
      if (!list.length) column.appendChild(h("div", null, "none"));
      columns.appendChild(column);
    }
    const parts = [header];
    if (selected >= 0 && selected < changes.length) {
      const inLists = helpful.includes(selected) || harmful.includes(selected);
      const chosen = h("div", "iw-chosen", h("h4", null, "Selected point"));
      if (!inLists) chosen.appendChild(item(selected, changes[selected], Math.max(maxAbs, Math.abs(changes[selected])), selected, testRow));
      const table = comparison(selected, testRow);
      if (table) chosen.appendChild(table);
      if (!inLists || table) parts.push(chosen);
    }
    root.replaceChildren(...parts, columns);
  }

  const events = "change:changes change:selected change:k change:test_info change:test_thumbnail change:test_row change:labels change:targets change:thumbnails change:ids";
  model.on(events, draw);
  draw();
  return () => model.off(events, draw);
}

export default { render: renderRanked };
