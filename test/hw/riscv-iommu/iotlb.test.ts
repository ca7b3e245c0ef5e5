import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { Iotlb, type IotlbFill } from "../../../src/hw/riscv-iommu/iotlb.js";

function fill(o: Partial<IotlbFill> & { vpn: number }): IotlbFill {
  const gscid = o.gscid ?? -1;
  const pscid = o.pscid ?? 1;
  return {
    gscid,
    pscid,
    global: o.global ?? false,
    vpn: o.vpn,
    log2Pages: o.log2Pages ?? 0,
    ppn: o.ppn ?? 0x80000 + (o.vpn % 4096),
    gpa: o.gpa ?? o.vpn,
    gLog2Pages: o.gLog2Pages ?? 0,
    s1Log2Pages: o.s1Log2Pages ?? o.log2Pages ?? 0,
    s1Perm: 0xff,
    gPerm: 0xff,
    pbmt: 0,
    hasFirstStage: o.hasFirstStage ?? pscid >= 0,
    hasGStage: o.hasGStage ?? gscid >= 0,
  };
}

describe("Iotlb lookup", () => {
  it("finds an entry anywhere in its page range, only in its own address space", () => {
    const t = new Iotlb(8);
    t.insert(fill({ vpn: 0x40_0123, log2Pages: 9, ppn: 0x9_0123, pscid: 3 }));
    const e = t.lookup(-1, 3, 0x40_01ff);
    expect(e?.vpnBase).toBe(0x40_0000);
    expect(e?.ppnBase).toBe(0x9_0000);
    expect(t.lookup(-1, 3, 0x40_0200)).toBeNull();
    expect(t.lookup(-1, 4, 0x40_0001)).toBeNull();
    expect(t.lookup(2, 3, 0x40_0001)).toBeNull();
  });

  it("finds entries of every size class above 2^32 pages (Sv57 and Sv57x4 page numbers)", () => {
    const t = new Iotlb(16);
    const base = 2 ** 45; // page numbers far above 2^32, aligned for every class
    for (const [i, log2Pages] of [0, 4, 9, 18, 27, 36].entries()) {
      t.insert(fill({ vpn: base + i * 2 ** 37 + 5, log2Pages, pscid: 2 }));
    }
    for (const [i, log2Pages] of [0, 4, 9, 18, 27, 36].entries()) {
      const start = base + i * 2 ** 37;
      const inside = log2Pages === 0 ? start + 5 : start + 2 ** log2Pages - 1;
      expect(t.lookup(-1, 2, inside)?.log2Pages).toBe(log2Pages);
      expect(t.lookup(-1, 2, start + 2 ** log2Pages + (log2Pages === 0 ? 5 : 0))).toBeNull();
    }
  });

  it("matches a global entry for every PSCID of its GSCID, but not another GSCID", () => {
    const t = new Iotlb(8);
    t.insert(fill({ vpn: 5, pscid: 1, gscid: 9, global: true }));
    expect(t.lookup(9, 1, 5)).not.toBeNull();
    expect(t.lookup(9, 77, 5)).not.toBeNull();
    expect(t.lookup(8, 1, 5)).toBeNull();
    expect(t.lookup(9, -1, 5)).toBeNull(); // G-stage-only lookups have no first stage
  });

  it("replaces the least recently used entry when full (deterministic)", () => {
    const t = new Iotlb(2);
    t.insert(fill({ vpn: 1 }));
    t.insert(fill({ vpn: 2 }));
    expect(t.lookup(-1, 1, 1)).not.toBeNull(); // 1 is now most recent
    t.insert(fill({ vpn: 3 }));
    expect(t.entries().map((e) => e.vpnBase)).toEqual([3, 1]);
    expect(t.size).toBe(2);
  });

  it("re-inserting the same tag and base replaces, not duplicates", () => {
    const t = new Iotlb(4);
    t.insert(fill({ vpn: 7, ppn: 100 }));
    t.insert(fill({ vpn: 7, ppn: 200 }));
    expect(t.entries().map((e) => e.ppnBase)).toEqual([200]);
  });
});

// ---- the invalidation model, written from the spec's tables ----

interface Snapshot {
  gscid: number;
  pscid: number;
  global: boolean;
  vpnBase: number;
  log2Pages: number;
  gpaBase: number;
  gLog2Pages: number;
  s1Log2Pages: number;
  hasFirstStage: boolean;
  hasGStage: boolean;
}

interface Inval {
  gvma: boolean;
  gv: boolean;
  av: boolean;
  pscv: boolean;
  gscid: number;
  pscid: number;
  addr: number;
  /** log2 pages of the S range, or 0. */
  range: number;
}

function inRange(base: number, log2: number, addr: number, range: number): boolean {
  const a0 = base - (base % 2 ** log2);
  const b0 = addr - (addr % 2 ** range);
  return a0 < b0 + 2 ** range && b0 < a0 + 2 ** log2;
}

/** Whether the spec's operation table says `e` is invalidated by `c`. */
function dropped(e: Snapshot, c: Inval): boolean {
  if (c.gvma) {
    // IOTINVAL.GVMA: information cached from the second stage.
    if (!e.hasGStage) return false;
    if (!c.gv) return true; // all VM address spaces; AV ignored
    if (e.gscid !== c.gscid) return false;
    return !c.av || inRange(e.gpaBase, e.gLog2Pages, c.addr, c.range);
  }
  // IOTINVAL.VMA: first-stage information; host (GV=0) or the VM of GSCID (GV=1).
  if (!e.hasFirstStage) return false;
  const space = c.gv ? e.gscid === c.gscid : e.gscid === -1;
  if (!space) return false;
  // With an address: the entries holding the first-stage leaf that maps ADDR (its whole range).
  const leaf = inRange(e.vpnBase, e.s1Log2Pages, c.addr, c.range);
  const rows: Record<string, boolean> = {
    // AV PSCV: 00 all incl. global; 01 PSCID except global; 10 addr incl. global; 11 addr+PSCID except global
    "00": true,
    "01": e.pscid === c.pscid && !e.global,
    "10": leaf,
    "11": leaf && e.pscid === c.pscid && !e.global,
  };
  return rows[`${+c.av}${+c.pscv}`]!;
}

const entryArb = fc
  .record({
    gscid: fc.integer({ min: -1, max: 2 }),
    pscid: fc.integer({ min: -1, max: 3 }),
    global: fc.boolean(),
    vpn: fc.integer({ min: 0, max: 0x3ff }),
    log2Pages: fc.constantFrom(0, 4, 9),
    gpa: fc.integer({ min: 0, max: 0x3ff }),
    gLog2Pages: fc.constantFrom(0, 4, 9),
    s1Log2Pages: fc.constantFrom(0, 4, 9),
  })
  .filter((x) => x.gscid >= 0 || x.pscid >= 0) // both stages Bare is never cached
  .map((x) =>
    fill({
      ...x,
      gLog2Pages: x.gscid >= 0 ? Math.max(x.gLog2Pages, x.log2Pages) : 0,
      s1Log2Pages: x.pscid >= 0 ? Math.max(x.s1Log2Pages, x.log2Pages) : 0,
    }),
  );

const invalArb = fc.record({
  gvma: fc.boolean(),
  gv: fc.boolean(),
  av: fc.boolean(),
  pscv: fc.boolean(),
  gscid: fc.integer({ min: 0, max: 2 }),
  pscid: fc.integer({ min: 0, max: 3 }),
  addr: fc.integer({ min: 0, max: 0x3ff }),
  range: fc.constantFrom(0, 0, 1, 5),
});

function snap(t: Iotlb): Snapshot[] {
  return t.entries().map((e) => ({
    gscid: e.gscid,
    pscid: e.pscid,
    global: e.global,
    vpnBase: e.vpnBase,
    log2Pages: e.log2Pages,
    gpaBase: e.gpaBase,
    gLog2Pages: e.gLog2Pages,
    s1Log2Pages: e.s1Log2Pages,
    hasFirstStage: e.hasFirstStage,
    hasGStage: e.hasGStage,
  }));
}

describe("Iotlb invalidation scope", () => {
  for (const capacity of [4096, 2]) {
    test.prop([fc.array(entryArb, { maxLength: 40 }), invalArb])(
      `drops exactly what the spec's tables say (capacity ${capacity})`,
      (entries, c) => {
        const t = new Iotlb(capacity);
        for (const e of entries) t.insert(e);
        const before = snap(t);
        const n = c.gvma
          ? t.invalidateGvma(c.gv, c.gscid, c.av, c.addr, c.range)
          : t.invalidateVma(c.gv, c.gscid, c.pscv, c.pscid, c.av, c.addr, c.range);
        const expected = before.filter((e) => !dropped(e, c));
        expect(snap(t)).toEqual(expected);
        expect(n).toBe(before.length - expected.length);
        // Every survivor is still found by lookup.
        for (const e of expected) {
          expect(t.lookup(e.gscid, e.global ? 12345 : e.pscid, e.vpnBase)).not.toBeNull();
        }
      },
    );
  }

  // Page numbers up to 2^52 and every size class, each entry placed around one of a few pages
  // so that invalidations of those pages hit: the per-page VMA (AV=1, PSCV=1) and ranged ones.
  const hubs = [0, 0x7_ffff, 0x8000_0000, 0xf_ffff_ffff_f000];
  const wideEntryArb = fc
    .record({
      gscid: fc.integer({ min: -1, max: 1 }),
      pscid: fc.integer({ min: -1, max: 2 }),
      global: fc.boolean(),
      hub: fc.constantFrom(...hubs),
      delta: fc.integer({ min: -3, max: 3 }),
      log2Pages: fc.constantFrom(0, 4, 9, 18, 27, 36),
      // Sometimes a larger first-stage leaf than the entry (two-stage with smaller G leaves).
      s1Extra: fc.constantFrom(0, 0, 0, 5, 9),
    })
    .filter((x) => x.gscid >= 0 || x.pscid >= 0)
    .map((x) => {
      const vpn = Math.min(2 ** 52 - 1, Math.max(0, x.hub + x.delta * 2 ** x.log2Pages));
      const s1Log2Pages = x.pscid >= 0 ? Math.min(36, x.log2Pages + x.s1Extra) : 0;
      return fill({ ...x, vpn, gpa: vpn, gLog2Pages: x.gscid >= 0 ? x.log2Pages : 0, s1Log2Pages });
    });
  const wideInvalArb = fc.record({
    gvma: fc.constant(false),
    gv: fc.boolean(),
    av: fc.constant(true),
    pscv: fc.boolean(),
    gscid: fc.integer({ min: 0, max: 1 }),
    pscid: fc.integer({ min: 0, max: 2 }),
    addr: fc
      .tuple(fc.constantFrom(...hubs), fc.integer({ min: -70_000, max: 70_000 }))
      .map(([h, d]) => Math.max(0, h + d)),
    range: fc.constantFrom(0, 0, 0, 3, 20, 31, 32, 40),
  });
  test.prop([fc.array(wideEntryArb, { maxLength: 30 }), wideInvalArb], { numRuns: 500 })(
    "address invalidations drop exactly the covering entries at any page number and size",
    (entries, c) => {
      const t = new Iotlb(64);
      for (const e of entries) t.insert(e);
      const before = snap(t);
      const n = t.invalidateVma(c.gv, c.gscid, c.pscv, c.pscid, c.av, c.addr, c.range);
      const expected = before.filter((e) => !dropped(e, c));
      expect(snap(t)).toEqual(expected);
      expect(n).toBe(before.length - expected.length);
      for (const e of expected) {
        expect(t.lookup(e.gscid, e.global ? 12345 : e.pscid, e.vpnBase)).not.toBeNull();
      }
    },
  );

  it("a one-page VMA with PSCV drops the covering entry of every size class, nothing else", () => {
    const t = new Iotlb(64);
    const page = 0xa_bcde_f123_4567;
    for (const log2Pages of [0, 4, 9, 18, 27, 36]) {
      t.insert(fill({ vpn: page, pscid: 1, log2Pages }));
      t.insert(fill({ vpn: page, pscid: 2, log2Pages }));
      t.insert(fill({ vpn: page, pscid: 1, log2Pages, global: true }));
      t.insert(fill({ vpn: page, pscid: 1, log2Pages, gscid: 4 }));
    }
    t.insert(fill({ vpn: page + 1, pscid: 1 }));
    expect(t.size).toBe(25);
    expect(t.invalidateVma(false, 0, true, 1, true, page, 0)).toBe(6);
    const left = t.entries();
    expect(left).toHaveLength(19);
    expect(left.filter((e) => e.pscid === 1 && !e.global && e.gscid === -1)).toEqual([
      expect.objectContaining({ vpnBase: page + 1, log2Pages: 0 }),
    ]);
  });

  it("a one-page VMA drops entries cut smaller than their first-stage leaf anywhere in it", () => {
    const t = new Iotlb(16);
    // A 2 MiB first-stage leaf seen through 4 KiB G-stage leaves: one entry per page.
    t.insert(fill({ vpn: 0x200, pscid: 1, gscid: 3, s1Log2Pages: 9 }));
    t.insert(fill({ vpn: 0x3ff, pscid: 1, gscid: 3, s1Log2Pages: 9 }));
    t.insert(fill({ vpn: 0x400, pscid: 1, gscid: 3, s1Log2Pages: 9 }));
    expect(t.invalidateVma(true, 3, true, 1, true, 0x201, 0)).toBe(2);
    expect(t.entries().map((e) => e.vpnBase)).toEqual([0x400]);
    // Without split entries the indexed path runs; the count follows removals.
    expect(t.invalidateVma(true, 3, false, 0, false, 0, 0)).toBe(1);
    t.insert(fill({ vpn: 0x200, pscid: 1 }));
    t.insert(fill({ vpn: 0x201, pscid: 1 }));
    expect(t.invalidateVma(false, 0, true, 1, true, 0x201, 0)).toBe(1);
  });

  it("VMA with PSCV keeps global entries; VMA without PSCV drops them", () => {
    const t = new Iotlb(8);
    t.insert(fill({ vpn: 1, pscid: 1, global: true }));
    t.insert(fill({ vpn: 2, pscid: 1 }));
    expect(t.invalidateVma(false, 0, true, 1, false, 0, 0)).toBe(1);
    expect(t.entries().map((e) => e.vpnBase)).toEqual([1]);
    expect(t.invalidateVma(false, 0, false, 0, false, 0, 0)).toBe(1);
    expect(t.size).toBe(0);
  });

  it("VMA leaves G-stage-only entries; GVMA leaves host first-stage entries", () => {
    const t = new Iotlb(8);
    t.insert(fill({ vpn: 1, gscid: 3, pscid: -1 }));
    t.insert(fill({ vpn: 2, gscid: -1, pscid: 1 }));
    expect(t.invalidateVma(true, 3, false, 0, false, 0, 0)).toBe(0);
    expect(t.invalidateGvma(false, 0, false, 0, 0)).toBe(1);
    expect(t.entries().map((e) => e.vpnBase)).toEqual([2]);
  });
});
