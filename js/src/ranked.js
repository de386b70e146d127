// Ranked training points for one test point: the most helpful and the most harmful, with thumbnails.
import { asFloat32, asInt32, asUint8 } from "./lib/arrays.js";
import { describeChange, helpfulAndHarmful } from "./lib/ranking.js";
import { drawThumbnail, hasThumbnails, labelName } from "./lib/thumbs.js";

const STYLE = `
.iw-ranked { font: 13px system-ui, sans-serif; color: #222; display: flex; flex-direction: column; gap: 8px; }
.iw-ranked .iw-test { display: flex; gap: 10px; align-items: center; padding: 6px; background: #f4f6fa; border-radius: 6px; }
.iw-ranked .iw-columns { display: flex; gap: 16px; flex-wrap: wrap; }
.iw-ranked .iw-column { flex: 1 1 260px; min-width: 240px; }
.iw-ranked h4 { margin: 4px 0; font-size: 13px; }
.iw-ranked .iw-item { display: flex; gap: 8px; align-items: center; padding: 3px 4px; border-radius: 4px; cursor: pointer; border: 2px solid transparent; }
.iw-ranked .iw-item:hover { background: #eef2ff; }
.iw-ranked .iw-item.iw-selected { border-color: #d62728; background: #fff1f0; }
.iw-ranked .iw-row-text { font-family: ui-monospace, monospace; font-size: 11px; color: #555; }
.iw-ranked .iw-helpful .iw-bar { background: #1f77b4; } .iw-ranked .iw-harmful .iw-bar { background: #ff7f0e; }
.iw-ranked .iw-bar { height: 4px; border-radius: 2px; margin-top: 2px; }
`;

function addStyle(el) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  el.appendChild(style);
}

export function renderRanked({ model, el }) {
  el.classList.add("iw-ranked");
  const root = document.createElement("div");
  root.className = "iw-ranked-root";
  addStyle(el);
  el.appendChild(root);

  function item(i, change, maxAbs, labels, thumbs, shape, names, rowText, selected) {
    const row = document.createElement("div");
    row.className = "iw-item" + (i === selected ? " iw-selected" : "");
    row.dataset.index = String(i);
    if (hasThumbnails(thumbs, shape)) {
      const canvas = drawThumbnail(document.createElement("canvas"), thumbs, i, shape[0], shape[1], 4);
      canvas.className = "iw-thumb";
      row.appendChild(canvas);
    }
    const text = document.createElement("div");
    const title = document.createElement("div");
    title.innerHTML = `<b>train #${i}</b> · label ${labelName(names, labels[i])}`;
    const words = document.createElement("div");
    words.className = "iw-words";
    words.textContent = describeChange(change);
    text.append(title, words);
    if (rowText && rowText[i] !== undefined) {
      const extra = document.createElement("div");
      extra.className = "iw-row-text";
      extra.textContent = rowText[i];
      text.appendChild(extra);
    }
    const bar = document.createElement("div");
    bar.className = "iw-bar";
    bar.style.width = `${Math.max(2, (140 * Math.abs(change)) / (maxAbs || 1))}px`;
    text.appendChild(bar);
    row.appendChild(text);
    row.addEventListener("click", () => {
      model.set("selected", i);
      model.save_changes();
    });
    return row;
  }

  function draw() {
    const changes = asFloat32(model.get("changes"));
    const labels = asInt32(model.get("labels"));
    const thumbs = asUint8(model.get("thumbnails"));
    const shape = model.get("thumb_shape");
    const names = model.get("class_names");
    const rowText = model.get("row_text");
    const selected = model.get("selected");
    const info = model.get("test_info") || {};
    const { helpful, harmful } = helpfulAndHarmful(changes, model.get("k"));
    let maxAbs = 0;
    for (const i of [...helpful, ...harmful]) maxAbs = Math.max(maxAbs, Math.abs(changes[i]));

    const header = document.createElement("div");
    header.className = "iw-test";
    const testThumb = asUint8(model.get("test_thumbnail"));
    if (hasThumbnails(testThumb, shape)) {
      header.appendChild(drawThumbnail(document.createElement("canvas"), testThumb, 0, shape[0], shape[1], 6));
    }
    const summary = document.createElement("div");
    summary.className = "iw-test-summary";
    if (info.index !== undefined) {
      summary.innerHTML = `<b>test #${info.index}</b> · label ${labelName(names, info.label)} · predicted ` +
        `${labelName(names, info.prediction)} · test loss ${Number(info.loss).toPrecision(3)}`;
    } else {
      summary.textContent = "no test point selected";
    }
    header.appendChild(summary);

    const columns = document.createElement("div");
    columns.className = "iw-columns";
    for (const [kind, title, list] of [
      ["iw-helpful", "Most helpful (removing raises the test loss)", helpful],
      ["iw-harmful", "Most harmful (removing lowers the test loss)", harmful],
    ]) {
      const column = document.createElement("div");
      column.className = `iw-column ${kind}`;
      const h = document.createElement("h4");
      h.textContent = title;
      column.appendChild(h);
      for (const i of list) column.appendChild(item(i, changes[i], maxAbs, labels, thumbs, shape, names, rowText, selected));
      if (!list.length) column.appendChild(Object.assign(document.createElement("div"), { textContent: "none" }));
      columns.appendChild(column);
    }
    const parts = [header];
    if (selected >= 0 && selected < changes.length && !helpful.includes(selected) && !harmful.includes(selected)) {
      const chosen = document.createElement("div");
      chosen.className = "iw-chosen";
      const h = document.createElement("h4");
      h.textContent = "Selected point";
      chosen.append(h, item(selected, changes[selected], Math.max(maxAbs, Math.abs(changes[selected])), labels, thumbs,
        shape, names, rowText, selected));
      parts.push(chosen);
    }
    root.replaceChildren(...parts, columns);
  }

  const events = "change:changes change:selected change:k change:test_info change:test_thumbnail change:labels change:thumbnails";
  model.on(events, draw);
  draw();
  return () => model.off(events, draw);
}

export default { render: renderRanked };
