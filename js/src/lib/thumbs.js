// Grayscale thumbnails drawn from a uint8 buffer of [n, h, w] pixels (0 = black, 255 = white).

export function drawThumbnail(canvas, pixels, index, h, w, scale = 4) {
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * scale}px`;
  canvas.style.height = `${h * scale}px`;
  canvas.style.imageRendering = "pixelated";
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

/** A label's display name. */
export function labelName(names, label) {
  return names && names[label] !== undefined ? String(names[label]) : String(label);
}
