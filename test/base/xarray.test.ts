import { describe, expect, it } from "vitest";
import { XArray } from "../../src/base/xarray.js";

describe("XArray", () => {
  it("reserved slots read as empty but refuse insert", () => {
    const xa = new XArray<string>();
    expect(xa.reserve(3)).toBe(true);
    expect(xa.load(3)).toBeUndefined();
    expect(xa.isReserved(3)).toBe(true);
    expect(xa.insert(3, "a")).toBe(false);
    expect(xa.reserve(3)).toBe(false);
    expect(xa.isEmpty()).toBe(false);
    xa.release(3);
    expect(xa.isEmpty()).toBe(true);
    expect(xa.insert(3, "a")).toBe(true);
    expect(xa.reserve(3)).toBe(false);
    xa.release(3);
    expect(xa.load(3)).toBe("a");
  });

  it("store overwrites a reservation or entry; erase returns the old entry", () => {
    const xa = new XArray<string>();
    xa.reserve(1);
    expect(xa.store(1, "x")).toBeUndefined();
    expect(xa.store(1, "y")).toBe("x");
    expect(xa.erase(1)).toBe("y");
    expect(xa.erase(1)).toBeUndefined();
    expect(xa.isEmpty()).toBe(true);
  });

  it("lists entries and reservations in index order", () => {
    const xa = new XArray<number>();
    xa.insert(9, 90);
    xa.insert(2, 20);
    xa.reserve(5);
    xa.reserve(0);
    expect(xa.entries()).toEqual([
      [2, 20],
      [9, 90],
    ]);
    expect(xa.reservations()).toEqual([0, 5]);
  });
});
