import { describe, expect, it } from "vitest";
import { asFloat32, asInt32, base64ToDataView } from "../src/lib/arrays.js";
import { PointGrid } from "../src/lib/hittest.js";
import { describeChange, helpfulAndHarmful, topK } from "../src/lib/ranking.js";
import { formatNumber, linearScale, paddedExtent, ticks } from "../src/lib/scales.js";

describe("array decoding", () => {
  it("reads float32 from a DataView at an aligned offset without copying", () => {
    const source = new Float32Array([0, 1.5, -2, 3]);
    const view = new DataView(source.buffer, 4, 8);
    const out = asFloat32(view);
    expect(Array.from(out)).toEqual([1.5, -2]);
    expect(out.buffer).toBe(source.buffer);
  });
  it("copies when the offset is unaligned", () => {
    const bytes = new Uint8Array(9);
    new DataView(bytes.buffer).setInt32(1, 42, true);
    expect(Array.from(asInt32(new DataView(bytes.buffer, 1, 4)))).toEqual([42]);
  });
  it("rejects a byte count that is not whole elements", () => {
    expect(() => asFloat32(new DataView(new ArrayBuffer(6)))).toThrow(/whole number/);
  });
  it("decodes base64 into the same bytes", () => {
    const text = Buffer.from(new Float32Array([0.25, 8]).buffer).toString("base64");
    expect(Array.from(asFloat32(base64ToDataView(text)))).toEqual([0.25, 8]);
  });
});

describe("scales", () => {
  it("maps and inverts", () => {
    const s = linearScale([0, 10], [100, 200]);
    expect(s(5)).toBe(150);
    expect(s.invert(175)).toBe(7.5);
  });
  it("pads the extent and ignores non-finite values", () => {
    expect(paddedExtent([0, 10, NaN, Infinity], 0.1)).toEqual([-1, 11]);
    expect(paddedExtent([3, 3])).toEqual([2.5, 3.5]);
    expect(paddedExtent([])).toEqual([0, 1]);
  });
  it("gives round ticks inside the range", () => {
    expect(ticks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const t = ticks(-0.013, 0.027, 4);
    expect(t[0]).toBeGreaterThanOrEqual(-0.013);
    expect(t.at(-1)).toBeLessThanOrEqual(0.027);
    expect(t).toContain(0);
  });
  it("formats numbers compactly", () => {
    expect(formatNumber(0.012345)).toBe("0.0123");
    expect(formatNumber(123456)).toBe("1.23e+5");
    expect(formatNumber(0)).toBe("0");
  });
});

describe("hit testing", () => {
  it("finds the nearest point within the radius", () => {
    const grid = new PointGrid(new Float32Array([10, 50, 52]), new Float32Array([10, 50, 50]), 8);
    expect(grid.nearest(11, 11, 6)).toBe(0);
    expect(grid.nearest(52.5, 50, 6)).toBe(2);
    expect(grid.nearest(200, 200, 6)).toBe(-1);
  });
  it("agrees with brute force on 10,000 random points", () => {
    let seed = 1;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 600;
    const xs = Float32Array.from({ length: 10000 }, rand), ys = Float32Array.from({ length: 10000 }, rand);
    const grid = new PointGrid(xs, ys, 8);
    for (let q = 0; q < 200; q++) {
      const px = rand(), py = rand();
      let best = -1, bestD = 36;
      for (let i = 0; i < xs.length; i++) {
        const d = (xs[i] - px) ** 2 + (ys[i] - py) ** 2;
        if (d <= bestD) { bestD = d; best = i; }
      }
      const found = grid.nearest(px, py, 6);
      if (best === -1) expect(found).toBe(-1);
      else expect((xs[found] - px) ** 2 + (ys[found] - py) ** 2).toBeCloseTo(bestD, 3);
    }
  });
});

describe("ranking", () => {
  it("lists helpful (positive change) and harmful (negative change) points", () => {
    const changes = new Float32Array([0.5, -0.2, 0.1, -0.9, NaN, 0]);
    expect(topK(changes, 2)).toEqual([0, 2]);
    expect(helpfulAndHarmful(changes, 3)).toEqual({ helpful: [0, 2], harmful: [3, 1] });
  });
  it("describes the change in words", () => {
    expect(describeChange(0.012)).toBe("removing this point would raise the test loss by 0.012");
    expect(describeChange(-0.5)).toBe("removing this point would lower the test loss by 0.5");
    expect(describeChange(2e-6)).toBe("removing this point would raise the test loss by 2.0e-6");
  });
});

import { pointId, snippet } from "../src/lib/labels.js";
import { differences } from "../src/lib/rows.js";
import { medianAbs, ranks, symlog, symlogTicks } from "../src/lib/scales.js";

describe("symmetric log and rank axes", () => {
  it("is linear near zero, logarithmic far out, odd, and inverts", () => {
    const f = symlog(0.01);
    expect(f(0)).toBe(0);
    expect(f(-0.5)).toBeCloseTo(-f(0.5), 12);
    expect(f(1e-5)).toBeCloseTo(1e-3, 5);  // about v / c for |v| << c
    expect(f(10) - f(1)).toBeCloseTo(Math.log(1001 / 101), 10);
    for (const v of [-3, -1e-4, 0.02, 7]) expect(f.invert(f(v))).toBeCloseTo(v, 10);
  });
  it("takes the median nonzero |value| as its linear range", () => {
    expect(medianAbs([0, -3, 1, 2, NaN])).toBe(2);
    expect(medianAbs([0, 0])).toBe(1);
  });
  it("labels ticks in data units", () => {
    const f = symlog(0.01);
    const t = symlogTicks(f, f(-1), f(1));
    expect(t.map((x) => x.label)).toContain("0.1");
    expect(t.map((x) => x.label)).toContain("-1");
    for (const x of t) expect(f.invert(x.value)).toBeCloseTo(Number(x.label), 10);
  });
  it("ranks values in [0, 1]", () => {
    expect(Array.from(ranks([5, -1, 3]))).toEqual([1, 0, 0.5]);
  });
});

describe("labels and rows", () => {
  it("names points by the user's ids, else by position", () => {
    expect(pointId(["a", "b"], 1)).toBe("b");
    expect(pointId([], 4)).toBe("4");
    expect(snippet("x".repeat(10), 5)).toBe("xxxx…");
  });
  it("sorts features by standardised difference from the test row", () => {
    const rows = new Float32Array([0, 0, 0, 1, 10, 1]);  // two rows of three features
    const out = differences(rows, 3, 1, new Float32Array([0, 0, 0]), new Float32Array([1, 100, 0.5]), ["a", "b", "c"]);
    expect(out.map((f) => f.name)).toEqual(["c", "a", "b"]);
    expect(out[0].z).toBeCloseTo(2, 6);
    expect(out[2].z).toBeCloseTo(0.1, 6);
  });
});

import { niceFloor } from "../src/lib/scales.js";
describe("nice symlog range", () => {
  it("rounds down to 1, 2 or 5 times a power of ten", () => {
    expect(niceFloor(0.00152)).toBeCloseTo(0.001, 12);
    expect(niceFloor(0.0031)).toBeCloseTo(0.002, 12);
    expect(niceFloor(7)).toBe(5);
  });
});
