// Nearest-point lookup on a uniform grid, so hover and click stay fast with 10,000+ points.

export class PointGrid {
  /** xs, ys: pixel coordinates; cell: grid cell size in pixels. */
  constructor(xs, ys, cell = 8) {
    this.xs = xs; this.ys = ys; this.cell = cell;
    this.cells = new Map();
    for (let i = 0; i < xs.length; i++) {
      if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) continue;
      const key = this.key(Math.floor(xs[i] / cell), Math.floor(ys[i] / cell));
      let bucket = this.cells.get(key);
      if (!bucket) { bucket = []; this.cells.set(key, bucket); }
      bucket.push(i);
    }
  }

  key(cx, cy) { return cx * 100003 + cy; }

  /** Index of the point nearest (px, py) within `radius` pixels, or -1. */
  nearest(px, py, radius = 6) {
    const reach = Math.ceil(radius / this.cell);
    const cx = Math.floor(px / this.cell), cy = Math.floor(py / this.cell);
    let best = -1, bestD = radius * radius;
    for (let gx = cx - reach; gx <= cx + reach; gx++) {
      for (let gy = cy - reach; gy <= cy + reach; gy++) {
        const bucket = this.cells.get(this.key(gx, gy));
        if (!bucket) continue;
        for (const i of bucket) {
          const dx = this.xs[i] - px, dy = this.ys[i] - py, d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }
}
