// Linear scales, padded extents and tick values for the scatter plot.

/** [min, max] of the finite values, padded by `pad` of the range (a zero range becomes +-0.5). */
export function paddedExtent(values, pad = 0.05) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

/** Map [d0, d1] onto [r0, r1]; `.invert` maps back. */
export function linearScale([d0, d1], [r0, r1]) {
  const k = (r1 - r0) / (d1 - d0);
  const scale = (v) => r0 + (v - d0) * k;
  scale.invert = (p) => d0 + (p - r0) / k;
  scale.domain = [d0, d1];
  scale.range = [r0, r1];
  return scale;
}

/** About `count` round tick values inside [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

/** Short numeric label: 3 significant digits, exponent form for very large or small values. */
export function formatNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(3)).toString();
}

/** Symmetric log: linear within +-c, logarithmic beyond; `.invert` maps back. */
export function symlog(c) {
  const f = (v) => Math.sign(v) * Math.log1p(Math.abs(v) / c);
  f.invert = (t) => Math.sign(t) * c * Math.expm1(Math.abs(t));
  f.c = c;
  return f;
}

/** The largest of 1, 2, 5 x 10^k at most v (a readable symlog range). */
export function niceFloor(v) {
  if (!(v > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(v)));
  return [5, 2, 1].map((m) => m * power).find((s) => s <= v * (1 + 1e-12));
}

/** The median of the finite nonzero |values| (symlog's linear range), 1 when there are none. */
export function medianAbs(values) {
  const a = [];
  for (const v of values) if (Number.isFinite(v) && v !== 0) a.push(Math.abs(v));
  if (!a.length) return 1;
  a.sort((p, q) => p - q);
  return a[Math.floor(a.length / 2)];
}

/** Ticks for a symlog axis over transformed [lo, hi]: 0 and +-c 10^k, labelled in data units. */
export function symlogTicks(f, lo, hi) {
  const out = [{ value: 0, label: "0" }];
  for (let k = -1; k <= 8; k++) {
    const v = f.c * Math.pow(10, k);
    for (const s of [1, -1]) out.push({ value: f(s * v), label: formatNumber(s * v) });
  }
  return out.filter((t) => t.value >= lo && t.value <= hi);
}

/** Rank of each value in [0, 1] (ties by position), 0 = smallest. */
export function ranks(values) {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
  const out = new Float32Array(n);
  for (let r = 0; r < n; r++) out[order[r]] = n > 1 ? r / (n - 1) : 0.5;
  return out;
}
