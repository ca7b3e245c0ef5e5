import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { LruMap } from "../../../src/hw/riscv-iommu/lru.js";

describe("LruMap", () => {
  it("evicts the least recently used pair and reports it", () => {
    const m = new LruMap<string>(2);
    m.set(1, 0, "a");
    m.set(1, 5, "b");
    expect(m.get(1, 0)).toBe("a");
    expect(m.set(2, 0, "c")).toBe("b");
    expect(m.values()).toEqual(["c", "a"]);
    expect(m.peek(1, 5)).toBeUndefined();
  });

  it("deletes one pair, all pairs of a first key, or everything", () => {
    const m = new LruMap<number>(8);
    for (const [a, b] of [
      [1, 1],
      [1, 2],
      [2, 1],
    ]) {
      m.set(a!, b!, a! * 10 + b!);
    }
    expect(m.delete(2, 1)).toBe(true);
    expect(m.delete(2, 1)).toBe(false);
    expect(m.deleteAll(1)).toBe(2);
    expect(m.size).toBe(0);
    m.set(3, 3, 33);
    m.clear();
    expect(m.get(3, 3)).toBeUndefined();
  });

  test.prop([
    fc.integer({ min: 1, max: 4 }),
    fc.array(
      fc.tuple(
        fc.constantFrom("get", "set", "del"),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
      ),
    ),
  ])("behaves like a reference LRU list", (capacity, ops) => {
    const m = new LruMap<number>(capacity);
    let model: Array<[string, number]> = []; // most recent first
    let v = 0;
    for (const [op, a, b] of ops) {
      const k = `${a},${b}`;
      const i = model.findIndex(([x]) => x === k);
      if (op === "get") {
        expect(m.get(a, b)).toBe(i >= 0 ? model[i]![1] : undefined);
        if (i >= 0) model = [model[i]!, ...model.filter((_, j) => j !== i)];
      } else if (op === "set") {
        v++;
        m.set(a, b, v);
        const entry: [string, number] = [k, v];
        model = [entry, ...model.filter((_, j) => j !== i)].slice(0, capacity);
      } else {
        expect(m.delete(a, b)).toBe(i >= 0);
        model = model.filter((_, j) => j !== i);
      }
      expect(m.values()).toEqual(model.map(([, x]) => x));
    }
  });
});
