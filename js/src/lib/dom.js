// DOM building that never parses markup: every string goes in as text.

/** A new element with a class and children (strings become text nodes). */
export function h(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Add a <style> with `css` once per root element. */
export function addStyle(el, css) {
  const style = document.createElement("style");
  style.textContent = css;
  el.appendChild(style);
}

/** A legend swatch: a dot (filled or a ring) or a line, in `color`. */
export function swatch(kind, color) {
  const s = document.createElement("span");
  s.className = `iw-swatch iw-swatch-${kind}`;
  s.style.setProperty("--iw-color", color);
  return s;
}

export const COMMON_CSS = `
.iw-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin: 0 4px 0 10px; vertical-align: -1px; box-sizing: border-box; }
.iw-swatch-dot { background: var(--iw-color); }
.iw-swatch-ring { border: 2px solid var(--iw-color); }
.iw-swatch-line { width: 16px; height: 0; border-radius: 0; border-top: 2px dashed var(--iw-color); vertical-align: 3px; }
.iw-swatch-plus { width: 10px; height: 10px; border-radius: 0; background: linear-gradient(var(--iw-color), var(--iw-color)) center / 2px 100% no-repeat, linear-gradient(var(--iw-color), var(--iw-color)) center / 100% 2px no-repeat; }
.iw-legend { font-size: 12px; color: #333; line-height: 1.8; }
.iw-legend .iw-swatch:first-child { margin-left: 0; }
.iw-tooltip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #999; border-radius: 4px;
  padding: 5px 7px; display: none; z-index: 10; font: 12px system-ui, sans-serif; color: #222; box-shadow: 0 2px 6px rgba(0,0,0,.18);
  max-width: 280px; white-space: normal; line-height: 1.35; }
.iw-tooltip .iw-thumb { display: block; margin-bottom: 4px; image-rendering: pixelated; }
.iw-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; margin-bottom: 4px; font: 12px system-ui, sans-serif; }
.iw-toolbar button, .iw-toolbar select { font: 12px system-ui, sans-serif; padding: 2px 8px; white-space: nowrap; }
.iw-toolbar .iw-spacer { flex: 1 1 auto; }
.iw-toolbar .iw-legend { flex: 1 1 auto; min-width: 0; }
.iw-toolbar .iw-controls { flex: 0 0 auto; margin-left: auto; display: flex; gap: 8px; align-items: center; white-space: nowrap; }
`;
