// Grayscale thumbnails drawn from a uint8 buffer of [n, h, w] pixels (0 = black, 255 = white).
export { labelName } from "./labels.js";

/** Draw image `index` into `canvas` at its own resolution, shown `size` CSS pixels on its longer side. */
export function drawThumbnail(canvas, pixels, index, h, w, size = 40) {
  canvas.width = w;
  canvas.height = h;
  const scale = size / Math.max(h, w);
  canvas.style.width = `${Math.round(w * scale)}px`;
  canvas.style.height = `${Math.round(h * scale)}px`;
  canvas.style.imageRendering = "pixelated";
  canvas.classList.add("iw-thumb");
  const ctx = canvas.getContext("2d");
  if (!ctx) return canvas;
  const image = ctx.createImageData(w, h);
  const start = index * h * w;
  for (let p = 0; p < h * w; p++) {
    const v = pixels[start + p];
    image.data[4 * p] = v; image.data[4 * p + 1] = v; image.data[4 * p + 2] = v; image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

export function hasThumbnails(pixels, shape) {
  return Array.isArray(shape) && shape.length === 2 && shape[0] > 0 && shape[1] > 0 && pixels.length > 0;
}
