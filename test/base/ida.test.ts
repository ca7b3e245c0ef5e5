import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { Ida } from "../../src/base/ida.js";

describe("Ida", () => {
  it("hands out the lowest free id in the range", () => {
    const ida = new Ida();
    expect(ida.alloc(1, 10)).toBe(1);
    expect(ida.alloc(1, 10)).toBe(2);
    expect(ida.alloc(1, 10)).toBe(3);
    expect(ida.free(2)).toBe(true);
    expect(ida.alloc(1, 10)).toBe(2);
    expect(ida.alloc(5, 10)).toBe(5);
    expect(ida.size).toBe(4);
  });

  it("returns -1 when the range is full, and refuses double frees", () => {
    const ida = new Ida();
    expect(ida.alloc(1, 2)).toBe(1);
    expect(ida.alloc(1, 2)).toBe(2);
    expect(ida.alloc(1, 2)).toBe(-1);
    expect(ida.free(7)).toBe(false);
    expect(ida.free(1)).toBe(true);
    expect(ida.free(1)).toBe(false);
    expect(ida.alloc(1, 0)).toBe(-1);
  });

  it("crosses chunk boundaries and skips full chunks", () => {
    const ida = new Ida();
    for (let i = 0; i < 3000; i++) expect(ida.alloc(0, 1 << 20)).toBe(i);
    ida.free(2047);
    expect(ida.alloc(0, 1 << 20)).toBe(2047);
    expect(ida.alloc(0xffff_fff0, 0xffff_ffff)).toBe(0xffff_fff0);
    expect(ida.has(0xffff_fff0)).toBe(true);
    expect([...ida.ids()].slice(-2)).toEqual([2999, 0xffff_fff0]);
  });

  it("allocExact marks one id", () => {
    const ida = new Ida();
    expect(ida.allocExact(5)).toBe(true);
    expect(ida.allocExact(5)).toBe(false);
    expect(ida.alloc(5, 6)).toBe(6);
  });

  test.prop([
    fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { maxLength: 300 }),
  ])("matches a reference set under random alloc/free", (ops) => {
    const ida = new Ida();
    const ref = new Set<number>();
    for (const [isAlloc, n] of ops) {
      if (isAlloc) {
        let expected = -1;
        for (let i = n; i <= 3000; i++) {
          if (!ref.has(i)) {
            expected = i;
            break;
          }
        }
        expect(ida.alloc(n, 3000)).toBe(expected);
        if (expected >= 0) ref.add(expected);
      } else {
        expect(ida.free(n)).toBe(ref.delete(n));
      }
    }
    expect([...ida.ids()]).toEqual([...ref].sort((a, b) => a - b));
  });
});
