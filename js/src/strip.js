// A strip of test points to pick from: thumbnails (or indices), correct in green, wrong in red.
import { asInt32, asUint8 } from "./lib/arrays.js";
import { drawThumbnail, hasThumbnails, labelName } from "./lib/thumbs.js";

const STYLE = `
.iw-strip { display: flex; gap: 4px; overflow-x: auto; padding: 4px 2px; font: 11px system-ui, sans-serif; }
.iw-strip .iw-cell { border: 2px solid transparent; border-radius: 4px; cursor: pointer; padding: 1px; text-align: center; }
.iw-strip .iw-cell.iw-wrong { border-bottom-color: #d62728; } .iw-strip .iw-cell.iw-right { border-bottom-color: #2ca02c; }
.iw-strip .iw-cell.iw-selected { border-color: #222; background: #f0f0f0; }
`;

export function renderStrip({ model, el }) {
  el.classList.add("iw-strip");
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = document.createElement("div");
  root.style.display = "contents";
  el.append(style, root);

  function draw() {
    const labels = asInt32(model.get("labels"));
    const predictions = asInt32(model.get("predictions"));
    const thumbs = asUint8(model.get("thumbnails"));
    const shape = model.get("thumb_shape");
    const names = model.get("class_names");
    const selected = model.get("selected");
    const cells = [];
    for (let i = 0; i < labels.length; i++) {
      const cell = document.createElement("div");
      const right = labels[i] === predictions[i];
      cell.className = `iw-cell ${right ? "iw-right" : "iw-wrong"}${i === selected ? " iw-selected" : ""}`;
      cell.dataset.index = String(i);
      cell.title = `test #${i}: label ${labelName(names, labels[i])}, predicted ${labelName(names, predictions[i])}`;
      if (hasThumbnails(thumbs, shape)) cell.appendChild(drawThumbnail(document.createElement("canvas"), thumbs, i, shape[0], shape[1], 3));
      else cell.textContent = `#${i}`;
      cell.addEventListener("click", () => { model.set("selected", i); model.save_changes(); });
      cells.push(cell);
    }
    root.replaceChildren(...cells);
  }

  const events = "change:labels change:predictions change:thumbnails change:selected";
  model.on(events, draw);
  draw();
  return () => model.off(events, draw);
}

export default { render: renderStrip };
