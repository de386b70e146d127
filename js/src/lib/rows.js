// Tabular rows: a training row beside the test row, the largest standardised differences first.

/** Row i of a flat float32 [n, d] buffer. */
export function rowOf(rows, d, i) {
  return rows.subarray(i * d, (i + 1) * d);
}

/**
 * Features of training row i against the test row, sorted by |train - test| / scale, largest first.
 * Returns [{ j, name, train, test, z }].
 */
export function differences(rows, d, i, testRow, scale, names) {
  const row = rowOf(rows, d, i);
  const out = [];
  for (let j = 0; j < d; j++) {
    const s = scale && scale.length === d && scale[j] > 0 ? scale[j] : 1;
    out.push({ j, name: names && names[j] !== undefined ? String(names[j]) : `x${j}`, train: row[j],
      test: testRow && testRow.length === d ? testRow[j] : NaN, z: testRow && testRow.length === d ? Math.abs(row[j] - testRow[j]) / s : 0 });
  }
  return out.sort((a, b) => b.z - a.z || a.j - b.j);
}
