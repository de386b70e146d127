// Which training points to list, from predicted changes in test loss on removal (-I_up,loss / n).

/** Indices of the k largest values (descending), ignoring non-finite ones. */
export function topK(values, k, { largest = true } = {}) {
  const idx = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) idx.push(i);
  idx.sort((a, b) => (largest ? values[b] - values[a] : values[a] - values[b]) || a - b);
  return idx.slice(0, Math.max(0, k));
}

/**
 * Helpful points: removing them would raise the test loss (predicted change > 0), largest first.
 * Harmful points: removing them would lower it (predicted change < 0), most negative first.
 */
export function helpfulAndHarmful(changes, k) {
  const helpful = topK(changes, k, { largest: true }).filter((i) => changes[i] > 0);
  const harmful = topK(changes, k, { largest: false }).filter((i) => changes[i] < 0);
  return { helpful, harmful };
}

/** The sentence shown under a training point. */
export function describeChange(change) {
  const size = Math.abs(change);
  const amount = size >= 1e-3 && size < 1e4 ? Number(size.toPrecision(2)).toString() : size.toExponential(1);
  if (change > 0) return `removing this point would raise the test loss by ${amount}`;
  if (change < 0) return `removing this point would lower the test loss by ${amount}`;
  return "removing this point would not change the test loss";
}
