// A strip of test points to pick from: each with its thumbnail (or text), its id and whether the model
// got it right (✓) or wrong (✗, vermillion frame), with a legend. Click, or use the arrow keys.
import { asFloat32, asInt32, asUint8 } from "./lib/arrays.js";
import { addStyle, COMMON_CSS, h } from "./lib/dom.js";
import { formatValue, labelName, pointId, snippet } from "./lib/labels.js";
import { RIGHT, WRONG } from "./lib/palette.js";
import { drawThumbnail, hasThumbnails } from "./lib/thumbs.js";

const CSS = `
.iw-strip { font: 12px system-ui, sans-serif; color: #222; width: 100%; min-width: 0; box-sizing: border-box; }
.iw-strip .iw-cells { display: flex; gap: 6px; overflow-x: auto; padding: 4px 2px 6px; outline: none; }
.iw-strip .iw-cells:focus-visible { box-shadow: 0 0 0 2px #0072B2; border-radius: 4px; }
.iw-strip .iw-cell { flex: 0 0 auto; border: 2px solid #ddd; border-radius: 5px; cursor: pointer; padding: 3px; text-align: center; min-width: 44px; background: #fff; }
.iw-strip .iw-cell.iw-wrong { border-color: ${WRONG}; border-style: dashed; }
.iw-strip .iw-cell.iw-selected { border-color: #000; border-style: solid; box-shadow: 0 0 0 2px #000; }
.iw-strip .iw-cell .iw-thumb { display: block; margin: 0 auto 2px; }
.iw-strip .iw-caption { font-size: 11px; white-space: nowrap; }
.iw-strip .iw-mark-right { color: ${RIGHT}; font-weight: 700; } .iw-strip .iw-mark-wrong { color: ${WRONG}; font-weight: 700; }
.iw-strip .iw-cell .iw-row-text { max-width: 140px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: 11px; }
`;

export function renderStrip({ model, el }) {
  el.classList.add("iw-strip");
  addStyle(el, COMMON_CSS + CSS);
  const legend = h("div", "iw-legend");
  const cells = h("div", "iw-cells");
  cells.tabIndex = 0;
  cells.setAttribute("role", "listbox");
  cells.setAttribute("aria-label", "test points (arrow keys to move)");
  cells.dataset.lmSuppressShortcuts = "true";  // the frontends' own arrow-key shortcuts stay out of the strip
  el.append(legend, cells);

  function describe(i) {
    const ids = model.get("ids");
    const names = model.get("class_names");
    if (model.get("task") === "regression") {
      const t = asFloat32(model.get("targets"))[i], p = asFloat32(model.get("predicted_values"))[i];
      return { right: null, title: `test #${pointId(ids, i)}: target ${formatValue(t)}, predicted ${formatValue(p)}`,
        mark: `err ${formatValue(Math.abs(p - t))}` };
    }
    const l = asInt32(model.get("labels"))[i], p = asInt32(model.get("predictions"))[i];
    return { right: l === p, title: `test #${pointId(ids, i)}: label ${labelName(names, l)}, predicted ${labelName(names, p)}`,
      mark: l === p ? "✓" : "✗" };
  }

  function count() {
    return model.get("task") === "regression" ? asFloat32(model.get("targets")).length : asInt32(model.get("labels")).length;
  }

  function draw() {
    const thumbs = asUint8(model.get("thumbnails"));
    const shape = model.get("thumb_shape");
    const texts = model.get("row_text") || [];
    const selected = model.get("selected");
    const regression = model.get("task") === "regression";
    legend.replaceChildren(regression
      ? "Test points: click one, or use the arrow keys. err = |prediction − target|."
      : h("span", null, "Test points: click one, or use the arrow keys. ", h("span", "iw-mark-right", "✓"), " predicted right · ",
        h("span", "iw-mark-wrong", "✗"), " predicted wrong (dashed frame)"));
    const out = [];
    for (let i = 0; i < count(); i++) {
      const d = describe(i);
      const cell = h("div", `iw-cell${d.right === false ? " iw-wrong" : ""}${i === selected ? " iw-selected" : ""}`);
      cell.dataset.index = String(i);
      cell.dataset.id = pointId(model.get("ids"), i);
      cell.title = d.title;
      cell.setAttribute("role", "option");
      cell.setAttribute("aria-selected", String(i === selected));
      if (hasThumbnails(thumbs, shape)) cell.appendChild(drawThumbnail(document.createElement("canvas"), thumbs, i, shape[0], shape[1], 40));
      else if (texts[i] !== undefined) cell.appendChild(h("div", "iw-row-text", snippet(texts[i], 40)));
      cell.appendChild(h("div", "iw-caption", `#${pointId(model.get("ids"), i)} `,
        h("span", d.right === false ? "iw-mark-wrong" : "iw-mark-right", d.mark)));
      cell.addEventListener("click", () => { choose(i); cells.focus({ preventScroll: true }); });
      out.push(cell);
    }
    cells.replaceChildren(...out);
    const cell = out[selected];  // keep the chosen cell in sight by scrolling the strip only, never the page
    if (cell) {
      const left = cell.offsetLeft - cells.offsetLeft, right = left + cell.offsetWidth;
      if (left < cells.scrollLeft) cells.scrollLeft = left;
      else if (right > cells.scrollLeft + cells.clientWidth) cells.scrollLeft = right - cells.clientWidth;
    }
  }

  function choose(i) {
    const n = count();
    if (!n) return;
    const j = Math.max(0, Math.min(n - 1, i));
    if (j !== model.get("selected")) { model.set("selected", j); model.save_changes(); }
  }

  cells.addEventListener("keydown", (event) => {
    const i = model.get("selected");
    const moves = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: count() - 1 };
    if (event.key in moves) { event.preventDefault(); event.stopPropagation(); choose(moves[event.key]); }
  });

  const events = "change:labels change:predictions change:targets change:predicted_values change:thumbnails change:selected change:ids";
  model.on(events, draw);
  draw();
  return () => model.off(events, draw);
}

export default { render: renderStrip };
