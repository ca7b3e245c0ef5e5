import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import {
  isCanonicalAddress,
  isCanonicalVpn,
  leafLevelOf,
  modeFromField,
  PAGING_MODES,
  pagingMode,
  SV39,
  SV39X4,
  SV48,
  SV48X4,
  SV57,
  SV57X4,
  signExtendVpn,
  treeVpn,
  vpnIndex,
} from "../../../src/hw/pgtable/modes.js";

describe("paging modes", () => {
  it("have the spec's geometry", () => {
    const rows = PAGING_MODES.map((m) => [
      m.name,
      m.levels,
      m.vaBits,
      m.rootIndexBits,
      m.rootPages,
      m.modeField,
    ]);
    expect(rows).toEqual([
      ["Sv39", 3, 39, 9, 1, 8],
      ["Sv48", 4, 48, 9, 1, 9],
      ["Sv57", 5, 57, 9, 1, 10],
      ["Sv39x4", 3, 41, 11, 4, 8],
      ["Sv48x4", 4, 50, 11, 4, 9],
      ["Sv57x4", 5, 59, 11, 4, 10],
    ]);
    for (const m of PAGING_MODES) {
      // Every input bit above the page offset is consumed by exactly one level's index.
      expect(9 * (m.levels - 1) + m.rootIndexBits + 12).toBe(m.vaBits);
    }
  });

  it("allow 4 KiB, 64 KiB NAPOT and one superpage size per upper level", () => {
    expect(SV39.leafShifts).toEqual([12, 16, 21, 30]);
    expect(SV48.leafShifts).toEqual([12, 16, 21, 30, 39]);
    expect(SV57.leafShifts).toEqual([12, 16, 21, 30, 39, 48]);
    expect(SV39X4.leafShifts).toEqual(SV39.leafShifts);
    expect(SV57X4.leafShifts).toEqual(SV57.leafShifts);
    expect(leafLevelOf(SV48, 16)).toBe(0);
    expect(leafLevelOf(SV48, 39)).toBe(3);
    expect(leafLevelOf(SV39, 39)).toBe(-1);
    expect(leafLevelOf(SV57, 48)).toBe(4);
    expect(leafLevelOf(SV57, 13)).toBe(-1);
  });

  it("decode MODE fields per stage and look up names", () => {
    expect(modeFromField(false, 9)).toBe(SV48);
    expect(modeFromField(true, 9)).toBe(SV48X4);
    expect(modeFromField(true, 10)).toBe(SV57X4);
    expect(modeFromField(false, 0)).toBeNull();
    expect(modeFromField(false, 1)).toBeNull();
    expect(pagingMode("Sv57")).toBe(SV57);
    expect(() => pagingMode("Sv32")).toThrow(SimError);
  });

  it("check canonical first-stage addresses by sign extension", () => {
    expect(isCanonicalAddress(SV39, 0x3f_ffff_f000n)).toBe(true);
    expect(isCanonicalAddress(SV39, 0x40_0000_0000n)).toBe(false);
    expect(isCanonicalAddress(SV39, 0xffff_ffc0_0000_0000n)).toBe(true);
    expect(isCanonicalAddress(SV39, 0xffff_ff80_0000_0000n)).toBe(false);
    expect(isCanonicalAddress(SV48, 0xffff_8000_0000_0000n)).toBe(true);
    expect(isCanonicalAddress(SV48, 0x0000_8000_0000_0000n)).toBe(false);
    expect(isCanonicalAddress(SV57, 0xff00_0000_0000_0000n)).toBe(true);
    expect(isCanonicalAddress(SV57, 0x0100_0000_0000_0000n)).toBe(false);
    expect(isCanonicalAddress(SV57, -1n)).toBe(false);
  });

  it("check G-stage addresses by zero high bits", () => {
    expect(isCanonicalAddress(SV39X4, (1n << 41n) - 1n)).toBe(true);
    expect(isCanonicalAddress(SV39X4, 1n << 41n)).toBe(false);
    expect(isCanonicalAddress(SV48X4, 1n << 50n)).toBe(false);
    expect(isCanonicalAddress(SV57X4, (1n << 59n) - 4096n)).toBe(true);
    expect(isCanonicalAddress(SV57X4, 0xffff_ffff_ffff_f000n)).toBe(false);
  });

  test.prop([fc.constantFrom(...PAGING_MODES), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })])(
    "canonical ⇔ the address equals its own extension from the mode's width",
    (m, va) => {
      const w = BigInt(m.vaBits);
      const low = va & ((1n << w) - 1n);
      const extended =
        !m.gStage && (low >> (w - 1n)) & 1n ? low | (((1n << 64n) - 1n) ^ ((1n << w) - 1n)) : low;
      expect(isCanonicalAddress(m, va)).toBe(extended === va);
      expect(isCanonicalVpn(m, Number(va >> 12n))).toBe(extended === va);
    },
  );

  test.prop([fc.constantFrom(...PAGING_MODES), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })])(
    "treeVpn and signExtendVpn invert each other on canonical pages",
    (m, va) => {
      const vpn = Number(va >> 12n);
      if (!isCanonicalVpn(m, vpn)) return;
      const t = treeVpn(m, vpn);
      expect(t).toBeLessThan(2 ** (m.vaBits - 12));
      expect(signExtendVpn(m, t)).toBe(vpn);
    },
  );

  test.prop([fc.constantFrom(...PAGING_MODES), fc.bigInt({ min: 0n, max: (1n << 52n) - 1n })])(
    "vpnIndex is VPN[level] of the page (2 more bits at an x4 root)",
    (m, vpn) => {
      const vlo = Number(vpn & 0xffff_ffffn);
      const vhi = Number(vpn >> 32n);
      for (let level = 0; level < m.levels; level++) {
        const bits = level === m.levels - 1 ? BigInt(m.rootIndexBits) : 9n;
        const want = Number((vpn >> BigInt(9 * level)) & ((1n << bits) - 1n));
        expect(vpnIndex(m, level, vlo, vhi)).toBe(want);
      }
    },
  );
});
