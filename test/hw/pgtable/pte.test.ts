import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import {
  classifyPte,
  decodePte,
  encodePte,
  formatPte,
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_HI_N,
  PTE_INVALID,
  PTE_LEAF,
  PTE_POINTER,
  PTE_R,
  PTE_RESERVED_BITS,
  PTE_RESERVED_ENCODING,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
  type PteFields,
  pteHi,
  pteIsLeaf,
  pteLo,
  ptePbmt,
  ptePpn,
} from "../../../src/hw/pgtable/pte.js";

const fields: fc.Arbitrary<PteFields> = fc.record({
  v: fc.boolean(),
  r: fc.boolean(),
  w: fc.boolean(),
  x: fc.boolean(),
  u: fc.boolean(),
  g: fc.boolean(),
  a: fc.boolean(),
  d: fc.boolean(),
  rsw: fc.integer({ min: 0, max: 3 }),
  ppn: fc.integer({ min: 0, max: 2 ** 44 - 1 }),
  reserved: fc.integer({ min: 0, max: 127 }),
  pbmt: fc.integer({ min: 0, max: 3 }),
  n: fc.boolean(),
});

function halves(pte: bigint): [number, number] {
  return [Number(pte & 0xffff_ffffn), Number(pte >> 32n)];
}

/** Classify a bigint PTE with every extension on unless told otherwise. */
function cls(
  pte: bigint,
  level = 0,
  opts: { g?: boolean; napot?: boolean; pbmt?: boolean; ss?: boolean } = {},
) {
  const [lo, hi] = halves(pte);
  return classifyPte(
    lo,
    hi,
    level,
    opts.g ?? false,
    opts.napot ?? true,
    opts.pbmt ?? true,
    opts.ss ?? false,
  );
}

describe("PTE encoding", () => {
  test.prop([fields])("decode(encode(f)) = f", (f) => {
    expect(decodePte(encodePte(f))).toEqual(f);
  });

  test.prop([fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })])("encode(decode(x)) = x", (x) => {
    expect(encodePte(decodePte(x))).toBe(x);
  });

  test.prop([fields])("the hot-path halves agree with the bigint form", (f) => {
    const pte = encodePte(f);
    const [lo, hi] = halves(pte);
    expect(ptePpn(lo, hi)).toBe(f.ppn);
    expect(ptePbmt(hi)).toBe(f.pbmt);
    expect((hi & PTE_HI_N) !== 0).toBe(f.n);
    const flags = lo & 0x3ff;
    expect(pteLo(f.ppn, flags)).toBe(lo);
    if (f.reserved === 0) expect(pteHi(f.ppn, f.pbmt, f.n)).toBe(hi);
  });

  it("places every field at its spec bit position", () => {
    expect(encodePte({ v: true })).toBe(1n);
    expect(encodePte({ d: true })).toBe(0x80n);
    expect(encodePte({ rsw: 3 })).toBe(0x300n);
    expect(encodePte({ ppn: 1 })).toBe(1n << 10n);
    expect(encodePte({ ppn: 2 ** 44 - 1 })).toBe(((1n << 44n) - 1n) << 10n);
    expect(encodePte({ reserved: 1 })).toBe(1n << 54n);
    expect(encodePte({ reserved: 0x40 })).toBe(1n << 60n);
    expect(encodePte({ pbmt: 2 })).toBe(2n << 61n);
    expect(encodePte({ n: true })).toBe(1n << 63n);
    expect(() => encodePte({ ppn: 2 ** 44 })).toThrow(SimError);
    expect(() => encodePte({ pbmt: 4 })).toThrow(SimError);
    expect(() => decodePte(1n << 64n)).toThrow(SimError);
  });

  it("formats PTEs for traces", () => {
    const [lo, hi] = halves(
      encodePte({ v: true, r: true, w: true, a: true, ppn: 0x80123, n: true }),
    );
    expect(formatPte(lo, hi)).toBe("ppn=0x80123 -A---WRV pbmt=0 N");
    expect(pteIsLeaf(lo)).toBe(true);
    expect(pteIsLeaf(PTE_V)).toBe(false);
  });
});

describe("classifyPte", () => {
  const leaf = (extra: Partial<PteFields> = {}) =>
    encodePte({ v: true, r: true, a: true, ppn: 0x1000, ...extra });
  const pointer = (extra: Partial<PteFields> = {}) => encodePte({ v: true, ppn: 0x1000, ...extra });

  it("tells invalid, pointer and leaf apart", () => {
    expect(cls(encodePte({ r: true, w: true, ppn: 5 }))).toBe(PTE_INVALID);
    expect(cls(pointer(), 2)).toBe(PTE_POINTER);
    expect(cls(leaf(), 2)).toBe(PTE_LEAF);
    expect(cls(encodePte({ v: true, x: true }))).toBe(PTE_LEAF);
  });

  it("flags bits 60:54 and extension bits without their extension as reserved bits", () => {
    for (let b = 0; b < 7; b++) expect(cls(leaf({ reserved: 1 << b }))).toBe(PTE_RESERVED_BITS);
    expect(cls(pointer({ reserved: 1 }), 1)).toBe(PTE_RESERVED_BITS);
    expect(cls(leaf({ n: true, ppn: 0x1008 }), 0, { napot: false })).toBe(PTE_RESERVED_BITS);
    expect(cls(leaf({ pbmt: 1 }), 0, { pbmt: false })).toBe(PTE_RESERVED_BITS);
    expect(cls(leaf({ pbmt: 1 }))).toBe(PTE_LEAF);
    expect(cls(leaf({ rsw: 3 }))).toBe(PTE_LEAF); // RSW is ignored
  });

  it("flags W without R as reserved, except xwr=010 as a first-stage shadow-stack page", () => {
    const ss = encodePte({ v: true, w: true, a: true });
    const wx = encodePte({ v: true, w: true, x: true, a: true });
    expect(cls(ss)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(ss, 0, { ss: true })).toBe(PTE_LEAF);
    expect(cls(ss, 0, { ss: true, g: true })).toBe(PTE_RESERVED_ENCODING);
    expect(cls(wx, 0, { ss: true })).toBe(PTE_RESERVED_ENCODING);
  });

  it("flags D, A, U, N and PBMT on a non-leaf PTE as reserved encodings", () => {
    expect(cls(pointer({ a: true }), 1)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(pointer({ d: true }), 1)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(pointer({ u: true }), 1)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(pointer({ n: true }), 1)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(pointer({ pbmt: 1 }), 1)).toBe(PTE_RESERVED_ENCODING);
    expect(cls(pointer({ g: true }), 1)).toBe(PTE_POINTER);
  });

  it("flags PBMT=3 on a leaf and every NAPOT encoding but 64 KiB at level 0", () => {
    expect(cls(leaf({ pbmt: 3 }))).toBe(PTE_RESERVED_ENCODING);
    expect(cls(leaf({ n: true, ppn: 0x1008 }))).toBe(PTE_LEAF);
    for (const low of [0b0000, 0b0001, 0b0010, 0b0100, 0b1100, 0b1001, 0b0110]) {
      expect(cls(leaf({ n: true, ppn: 0x1000 | low }))).toBe(PTE_RESERVED_ENCODING);
    }
    expect(cls(leaf({ n: true, ppn: 0x1008 }), 1)).toBe(PTE_RESERVED_ENCODING);
  });

  test.prop([
    fields,
    fc.integer({ min: 0, max: 4 }),
    fc.boolean(),
    fc.boolean(),
    fc.boolean(),
    fc.boolean(),
  ])("agrees with a direct reading of the spec's rules", (f, level, g, napot, pbmt, ss) => {
    const pte = encodePte(f);
    const xwr = (f.x ? 4 : 0) | (f.w ? 2 : 0) | (f.r ? 1 : 0);
    let want: number;
    if (!f.v) want = PTE_INVALID;
    else if (f.reserved !== 0 || (f.n && !napot) || (f.pbmt !== 0 && !pbmt))
      want = PTE_RESERVED_BITS;
    else if (xwr === 0)
      want = f.a || f.d || f.u || f.n || f.pbmt !== 0 ? PTE_RESERVED_ENCODING : PTE_POINTER;
    else if ((xwr === 2 && !(ss && !g)) || xwr === 6) want = PTE_RESERVED_ENCODING;
    else if (f.pbmt === 3) want = PTE_RESERVED_ENCODING;
    else if (f.n && (level !== 0 || (f.ppn & 15) !== 8)) want = PTE_RESERVED_ENCODING;
    else want = PTE_LEAF;
    expect(cls(pte, level, { g, napot, pbmt, ss })).toBe(want);
  });

  it("exports the PTE bit constants at their spec positions", () => {
    expect([PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D]).toEqual([
      1, 2, 4, 8, 16, 32, 64, 128,
    ]);
  });
});
