// The allocation-free 4 KiB entry API of PageTable (set4k, replace4k, update4k) and its cursor
// (seek4k, leafRange/nextLeaf, replaceAt/updateAt/clearAt): software PTEs (V=0, kept by the
// OS), RSW bits, in-place rewrites that never touch table pages, and ordered range iteration.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import { SV39, SV48, SV57X4 } from "../../../src/hw/pgtable/modes.js";
import {
  PageTable,
  PT_EXISTS,
  PT_NO_MEMORY,
  PT_NOT_MAPPED,
  PT_OK,
  PT_OUT_OF_RANGE,
  PT_STATUS_NAMES,
  PT_WOULD_SPLIT,
  type TableReclaim,
} from "../../../src/hw/pgtable/page-table.js";
import {
  decodePte,
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
} from "../../../src/hw/pgtable/pte.js";
import { PteCursor } from "../../../src/hw/pgtable/pte-cursor.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  type WalkResult,
} from "../../../src/hw/pgtable/walk-result.js";
import { AD, lastPteAddress, RW, type Table, table, walkAlone } from "./fixture.js";

const LEAF = PTE_V | RW | PTE_U | AD;
/** Linux's PROT_NONE encoding on RISC-V: V=0, G reused as _PAGE_PROT_NONE, R kept. */
const PROT_NONE = PTE_G | PTE_R | AD;
const RSW1 = 0x100;
const RSW2 = 0x200;
const K4 = 0x1000n;

/** Walks page `vpn` of `t` as the only stage, as a user request. */
function hw(t: Table, vpn: number, access: Access = ACCESS_READ): WalkResult {
  return walkAlone(t, vpn, access, true);
}

/** The 64-bit PTE of page `vpn` read from memory at the address the walker reads it. */
function rawPte(t: Table, vpn: number): bigint {
  return t.mem.read64(lastPteAddress(hw(t, vpn)));
}

/** Every entry the cursor visits over [start, end): [vpn, pages, ppn, flags]. */
function visit(pt: PageTable, start: number, end: number): number[][] {
  const cur = new PteCursor();
  expect(pt.leafRange(cur, start, end)).toBe(PT_OK);
  const out: number[][] = [];
  while (pt.nextLeaf(cur)) out.push([cur.vpn, cur.pages, cur.ppn, cur.flags]);
  return out;
}

describe("PageTable: software PTEs (V=0 entries the OS keeps)", () => {
  it("keeps the PPN and every bit in memory while the walker sees an invalid PTE", () => {
    const t = table(SV48);
    expect(t.pt.set4k(0x123, 0x8_1234, PROT_NONE | RSW1, 1)).toBe(PT_OK);
    const f = decodePte(rawPte(t, 0x123));
    expect(f).toMatchObject({ v: false, r: true, g: true, a: true, d: true, rsw: 1 });
    expect([f.ppn, f.pbmt, f.w, f.x, f.u]).toEqual([0x8_1234, 1, false, false, false]);
    for (const access of [ACCESS_READ, ACCESS_WRITE, ACCESS_EXECUTE] as const) {
      const out = hw(t, 0x123, access);
      expect([out.ok, out.fault, out.reason, out.faultLevel]).toEqual([
        false,
        "page-fault",
        "invalid",
        0,
      ]);
    }
    // The hardware's view: nothing mapped.
    expect(t.pt.lookup(0x123_000n)).toBeNull();
    expect(t.pt.lookupPpn(0x123)).toBe(-1);
    expect(t.pt.iovaToPhys(0x123_000n)).toBe(0n);
    expect(t.pt.mappings()).toEqual([]);
  });

  it("holds its table pages, is refused by map, left alone by protect, removed by unmap", () => {
    const t = table(SV39);
    expect(t.pt.set4k(5, 0x4444, PROT_NONE)).toBe(PT_OK);
    expect([t.pt.tablePages, t.frames.framesInUse]).toEqual([3, 3]);
    expect(t.pt.map4k(5, 0x99, RW | AD)).toBe(PT_EXISTS);
    expect(t.pt.set4k(5, 0x99, LEAF)).toBe(PT_EXISTS);
    expect(t.pt.map(0x0n, 0x10_0000n, 0x1_0000n, RW | AD)).toBe("exists"); // NAPOT over it
    expect(t.pt.map(0x0n, 0x0n, 0x20_0000n, RW | AD)).toBe("exists"); // superpage over its table
    expect(t.pt.protect(0x0n, 0x10000n, PTE_R)).toBe("not-mapped");
    t.pt.map4k(6, 0x5555, RW | AD);
    expect(t.pt.protect(0x0n, 0x10000n, PTE_R)).toBe("ok");
    expect(decodePte(rawPte(t, 5))).toMatchObject({ v: false, r: true, g: true, ppn: 0x4444 });
    expect(t.pt.unmap(0x0n, 0x10000n)).toEqual({ status: "ok", unmapped: 0x2000n });
    expect(t.frames.framesInUse).toBe(1);
    t.pt.set4k(5, 0x4444, PROT_NONE);
    expect(t.pt.unmap4k(5)).toBe(PT_OK);
    expect(t.pt.unmap4k(5)).toBe(PT_NOT_MAPPED);
    expect(t.frames.framesInUse).toBe(1);
  });

  it("carries RSW bits on valid leaves, which the walker ignores", () => {
    const t = table(SV39);
    expect(t.pt.set4k(7, 0x7777, LEAF | RSW1 | RSW2)).toBe(PT_OK);
    expect(decodePte(rawPte(t, 7)).rsw).toBe(3);
    const out = hw(t, 7, ACCESS_WRITE);
    expect([out.ok, out.ppn, out.s1Perm]).toEqual([true, 0x7777, LEAF]);
    expect(t.pt.lookup(0x7000n)).toMatchObject({ pa: 0x777_7000n, perm: LEAF });
    // protect keeps RSW.
    expect(t.pt.protect(0x7000n, K4, PTE_R, PTE_R | PTE_W)).toBe("ok");
    expect(decodePte(rawPte(t, 7))).toMatchObject({ rsw: 3, w: false, ppn: 0x7777 });
  });

  it("refuses illegal entries with a SimError", () => {
    const t = table(SV39);
    expect(() => t.pt.set4k(1, 1, PTE_V | PTE_W)).toThrow(/W without R/);
    expect(() => t.pt.set4k(1, 1, PTE_V)).toThrow(/needs R, W or X/);
    expect(() => t.pt.set4k(1, 1, 0x400)).toThrow(/bits 9:0/);
    expect(() => t.pt.set4k(1, 0, 0)).toThrow(/all-zero/);
    expect(() => t.pt.set4k(1, 1.5, PROT_NONE)).toThrow(/44-bit/);
    expect(() => t.pt.set4k(1, 1, PROT_NONE, 3)).toThrow(/PBMT/);
    expect(() => t.pt.replace4k(1, 1, PTE_V | PTE_W)).toThrow(/W without R/); // even when empty
    expect(() => t.pt.update4k(1, 0x400, 0)).toThrow(/bits 9:0/);
    expect(t.pt.set4k(2 ** 27, 1, PROT_NONE)).toBe(PT_OUT_OF_RANGE);
    // A software PTE with only a PPN, or only a PBMT, is not empty.
    expect(t.pt.set4k(1, 9, 0)).toBe(PT_OK);
    expect(t.pt.set4k(2, 0, 0, 2)).toBe(PT_OK);
    expect(visit(t.pt, 0, 8).map((e) => e[0])).toEqual([1, 2]);
  });

  it("set4k runs out of table frames cleanly", () => {
    const t = table(SV48, "free", 3);
    expect(t.pt.set4k(0, 0x100, PROT_NONE)).toBe(PT_NO_MEMORY);
    expect(t.frames.framesInUse).toBe(1);
  });
});

describe("PageTable: replace4k and update4k rewrite in place", () => {
  it("turns a leaf into a software PTE and back without touching table pages", () => {
    const t = table(SV48, "defer");
    t.pt.map4k(0x50, 0x8888, RW | PTE_U | AD);
    const used = t.frames.framesInUse;
    expect(t.pt.replace4k(0x50, 0x8888, PROT_NONE)).toBe(PT_OK);
    expect(hw(t, 0x50).reason).toBe("invalid");
    expect(decodePte(rawPte(t, 0x50))).toMatchObject({ v: false, g: true, ppn: 0x8888 });
    expect(t.pt.replace4k(0x50, 0x9999, LEAF | RSW1)).toBe(PT_OK);
    expect(hw(t, 0x50).ppn).toBe(0x9999);
    expect([t.frames.framesInUse, t.pt.deferredPages]).toEqual([used, 0]);
  });

  it("needs no frame even when memory is exhausted", () => {
    const t = table(SV39, "free", 4);
    t.pt.map4k(3, 0x33, RW | AD);
    expect(t.frames.alloc()).toBeGreaterThan(0);
    expect(t.frames.alloc()).toBe(-1);
    expect(t.pt.replace4k(3, 0x44, PROT_NONE)).toBe(PT_OK);
    expect(t.pt.replace4k(3, 0x44, LEAF)).toBe(PT_OK);
    expect(t.pt.lookupPpn(3)).toBe(0x44);
  });

  it("reports empty entries, superpages, NAPOT ranges and non-canonical pages", () => {
    const t = table(SV39);
    t.pt.map(0x20_0000n, 0x40_0000n, 0x20_0000n, RW | AD);
    t.pt.map(0x1_0000n, 0x8_0000n, 0x1_0000n, RW | AD);
    t.pt.map4k(1, 0x11, RW | AD);
    for (const [vpn, rc] of [
      [2, PT_NOT_MAPPED], // table present, entry empty
      [0x4000, PT_NOT_MAPPED], // no table
      [0x201, PT_WOULD_SPLIT],
      [0x13, PT_WOULD_SPLIT],
      [2 ** 30, PT_OUT_OF_RANGE],
    ] as const) {
      expect(t.pt.replace4k(vpn, 0x99, LEAF)).toBe(rc);
      expect(t.pt.update4k(vpn, PTE_A, 0)).toBe(rc);
    }
    expect(t.pt.mappings().map((m) => m.pa)).toEqual([0x11000n, 0x8_0000n, 0x40_0000n]);
  });

  it("update4k sets and clears bits, keeps PPN and PBMT, and refuses illegal results", () => {
    const t = table(SV39);
    t.pt.set4k(9, 0x1234, PTE_V | PTE_R | PTE_U, 2);
    expect(t.pt.update4k(9, PTE_W | PTE_A | PTE_D | RSW1, 0)).toBe(PT_OK);
    expect(decodePte(rawPte(t, 9))).toMatchObject({
      v: true,
      w: true,
      a: true,
      d: true,
      rsw: 1,
      ppn: 0x1234,
      pbmt: 2,
    });
    // Clear first, then set: a bit in both ends up set.
    expect(t.pt.update4k(9, PTE_D, PTE_A | PTE_D)).toBe(PT_OK);
    expect(decodePte(rawPte(t, 9))).toMatchObject({ a: false, d: true });
    expect(() => t.pt.update4k(9, 0, PTE_R)).toThrow(/W without R/);
    expect(decodePte(rawPte(t, 9)).r).toBe(true); // nothing written
    // Clearing V (and W) makes a software PTE; clearing everything would be an empty entry.
    expect(t.pt.update4k(9, PTE_G, PTE_V | PTE_W | PTE_U)).toBe(PT_OK);
    expect(hw(t, 9).reason).toBe("invalid");
    const u = table(SV39);
    u.pt.set4k(9, 0, PTE_G);
    expect(() => u.pt.update4k(9, 0, PTE_G)).toThrow(/all-zero/);
  });

  test.prop(
    [
      fc.array(
        fc.record({
          page: fc.integer({ min: 0, max: 3000 }),
          kind: fc.constantFrom("set", "replace", "update", "unmap"),
          valid: fc.boolean(),
          ppn: fc.integer({ min: 1, max: 2 ** 40 }),
          rsw: fc.integer({ min: 0, max: 3 }),
        }),
        { maxLength: 60 },
      ),
      fc.constantFrom<TableReclaim>("free", "defer", "keep"),
    ],
    { numRuns: 80 },
  )(
    "agrees with a model; replace and update keep table pages; the walker sees only valid entries",
    (ops, reclaim) => {
      const t = table(SV39, reclaim);
      const model = new Map<number, { ppn: number; flags: number }>();
      for (const o of ops) {
        const flags = (o.valid ? LEAF : PROT_NONE) | (o.rsw << 8);
        const had = model.get(o.page);
        const frames = t.frames.framesInUse;
        const deferred = t.pt.deferredPages;
        if (o.kind === "set") {
          expect(t.pt.set4k(o.page, o.ppn, flags)).toBe(had ? PT_EXISTS : PT_OK);
          if (!had) model.set(o.page, { ppn: o.ppn, flags });
        } else if (o.kind === "replace") {
          expect(t.pt.replace4k(o.page, o.ppn, flags)).toBe(had ? PT_OK : PT_NOT_MAPPED);
          if (had) model.set(o.page, { ppn: o.ppn, flags });
          expect([t.frames.framesInUse, t.pt.deferredPages]).toEqual([frames, deferred]);
        } else if (o.kind === "update") {
          // Toggle between a leaf and a software PTE by bits alone.
          const set = had && (had.flags & PTE_V) === 0 ? PTE_V | PTE_W | PTE_U : PTE_G;
          const clear = set === PTE_G ? PTE_V | PTE_W | PTE_U : PTE_G;
          expect(t.pt.update4k(o.page, set, clear)).toBe(had ? PT_OK : PT_NOT_MAPPED);
          if (had) had.flags = (had.flags | set) & ~clear;
          expect([t.frames.framesInUse, t.pt.deferredPages]).toEqual([frames, deferred]);
        } else {
          expect(t.pt.unmap4k(o.page)).toBe(had ? PT_OK : PT_NOT_MAPPED);
          model.delete(o.page);
        }
      }
      const keys = [...model.keys()].sort((a, b) => a - b);
      expect(visit(t.pt, 0, 4096)).toEqual(
        keys.map((k) => [k, 1, model.get(k)!.ppn, model.get(k)!.flags]),
      );
      const cur = new PteCursor();
      for (let p = 0; p < 3100; p += 7) {
        const e = model.get(p);
        expect(t.pt.seek4k(cur, p)).toBe(e ? PT_OK : PT_NOT_MAPPED);
        expect([cur.vpn, cur.ppn, cur.flags]).toEqual(e ? [p, e.ppn, e.flags] : [p, 0, 0]);
        const out = hw(t, p);
        if (e && e.flags & PTE_V) expect([out.ok, out.ppn]).toEqual([true, e.ppn]);
        else expect([out.ok, out.reason]).toEqual([false, "invalid"]);
      }
      if (reclaim !== "keep") {
        // Sv39: root, one level-1 table, one level-0 table per 2 MiB region in use.
        const leafTables = new Set(keys.map((k) => Math.floor(k / 512))).size;
        expect(t.pt.tablePages - t.pt.deferredPages).toBe(
          1 + (leafTables > 0 ? 1 + leafTables : 0),
        );
      }
    },
  );
});

describe("PageTable: seek4k", () => {
  it("describes a 4 KiB entry, an empty one, a NAPOT range and a superpage", () => {
    const t = table(SV48);
    const cur = new PteCursor();
    t.pt.set4k(0x1001, 0x2345, LEAF | RSW1, 1);
    expect(t.pt.seek4k(cur, 0x1001)).toBe(PT_OK);
    expect(cur).toMatchObject({ vpn: 0x1001, level: 0, pages: 1, ppn: 0x2345, pbmt: 1 });
    expect([cur.valid, cur.empty, cur.flags]).toEqual([true, false, LEAF | RSW1]);
    expect(t.pt.seek4k(cur, 0x1002)).toBe(PT_NOT_MAPPED);
    expect([cur.empty, cur.valid, cur.lo, cur.hi]).toEqual([true, false, 0, 0]);
    t.pt.map(0x20_0000n, 0x8_0000n, 0x1_0000n, RW | AD);
    expect(t.pt.seek4k(cur, 0x20b)).toBe(PT_WOULD_SPLIT);
    expect(cur).toMatchObject({ vpn: 0x200, level: 0, pages: 16, ppn: 0x80 });
    t.pt.map(0x4000_0000n, 0x8000_0000n, 0x4000_0000n, RW | AD);
    expect(t.pt.seek4k(cur, 0x4_0123)).toBe(PT_WOULD_SPLIT);
    expect(cur).toMatchObject({ vpn: 0x4_0000, level: 2, pages: 512 * 512, ppn: 0x8_0000 });
    expect(t.pt.seek4k(cur, 2 ** 36)).toBe(PT_OUT_OF_RANGE);
  });

  it("lets the cursor rewrite the entry it found", () => {
    const t = table(SV39);
    const cur = new PteCursor();
    t.pt.map4k(4, 0x44, RW | PTE_U | AD);
    expect(t.pt.seek4k(cur, 4)).toBe(PT_OK);
    t.pt.updateAt(cur, 0, PTE_W);
    expect(cur.flags).toBe(PTE_V | PTE_R | PTE_U | AD);
    t.pt.replaceAt(cur, 0x55, PROT_NONE);
    expect([cur.valid, cur.ppn]).toEqual([false, 0x55]);
    t.pt.clearAt(cur);
    expect(cur.empty).toBe(true);
    expect(t.frames.framesInUse).toBe(1);
  });

  it("refuses a cursor of another table, on no 4 KiB entry, on an emptied entry, or stale", () => {
    const t = table(SV39, "defer");
    const other = PageTable.create(t.mem, t.frames, SV39)!;
    const cur = new PteCursor();
    t.pt.map4k(1, 0x11, RW | AD);
    t.pt.map4k(2, 0x22, RW | AD);
    t.pt.map4k(0x400, 0x33, RW | AD);
    expect(() => t.pt.updateAt(cur, PTE_A, 0)).toThrow(/does not stand on a 4 KiB entry/);
    expect(() => t.pt.nextLeaf(cur)).toThrow(/not started on this table/);
    t.pt.seek4k(cur, 1);
    expect(() => other.replaceAt(cur, 1, LEAF)).toThrow(/does not stand/);
    t.pt.unmap4k(1); // behind the cursor's back; the table stays (entry 2 is left)
    expect(() => t.pt.updateAt(cur, PTE_A, 0)).toThrow(/entry is empty/);
    t.pt.seek4k(cur, 2);
    t.pt.unmap4k(0x400); // reclaims another table: every cursor must look again
    expect(() => t.pt.clearAt(cur)).toThrow(/stale/);
    expect(t.pt.seek4k(cur, 2)).toBe(PT_OK);
    t.pt.clearAt(cur);
    t.pt.map(0x1_0000n, 0x1_0000n, 0x1_0000n, RW | AD);
    t.pt.seek4k(cur, 0x10);
    expect(() => t.pt.updateAt(cur, PTE_A, 0)).toThrow(/does not stand on a 4 KiB entry/);
    t.pt.destroy();
    expect(() => t.pt.seek4k(cur, 1)).toThrow(/after destroy/);
  });
});

describe("PageTable: leafRange / nextLeaf", () => {
  it("visits leaves of every size once, in order, with the one straddling the start", () => {
    const t = table(SV48);
    t.pt.map(0x20_0000n, 0x40_0000n, 0x20_0000n, RW | AD); // pages 0x200-0x3ff
    t.pt.map(0x41_0000n, 0x8_0000n, 0x1_0000n, RW | AD); // NAPOT 0x410-0x41f
    t.pt.set4k(0x405, 0x77, PROT_NONE);
    t.pt.map4k(0x420, 0x78, RW | AD);
    t.pt.map(0x8000_0000n, 0x4000_0000n, 0x4000_0000n, RW | AD); // 1 GiB at page 0x80000
    expect(visit(t.pt, 0x300, 0x80001)).toEqual([
      [0x200, 512, 0x400, LEAF & ~PTE_U],
      [0x405, 1, 0x77, PROT_NONE],
      [0x410, 16, 0x80, LEAF & ~PTE_U],
      [0x420, 1, 0x78, LEAF & ~PTE_U],
      [0x80000, 512 * 512, 0x40000, LEAF & ~PTE_U],
    ]);
    expect(visit(t.pt, 0x418, 0x419)).toEqual([[0x410, 16, 0x80, LEAF & ~PTE_U]]);
    expect(visit(t.pt, 0x406, 0x410)).toEqual([]);
    expect(visit(t.pt, 5, 5)).toEqual([]);
  });

  it("walks the upper half with sign-extended page numbers, and refuses the hole", () => {
    const t = table(SV39);
    const top = 2 ** 52 - 1; // the last page of the 64-bit space
    t.pt.set4k(top, 0x99, LEAF);
    t.pt.set4k(top - 600, 0x98, PROT_NONE);
    expect(visit(t.pt, top - 1000, top + 1).map((e) => e[0])).toEqual([top - 600, top]);
    const cur = new PteCursor();
    expect(t.pt.leafRange(cur, 2 ** 26 - 1, top + 1)).toBe(PT_OUT_OF_RANGE); // across the hole
    expect(t.pt.leafRange(cur, 2 ** 27, 2 ** 27 + 1)).toBe(PT_OUT_OF_RANGE);
    expect(() => t.pt.leafRange(cur, 5, 4)).toThrow(SimError);
    // x4 root of four pages.
    const g = table(SV57X4);
    g.pt.set4k(2 ** 45 * 3 + 7, 0x5, LEAF);
    expect(visit(g.pt, 0, 2 ** 47).map((e) => e[0])).toEqual([2 ** 45 * 3 + 7]);
  });

  it("skips empty tables: a whole Sv48 half with three leaves is quick", () => {
    const t = table(SV48, "keep");
    for (const vpn of [5, 2 ** 20 + 3, 2 ** 35 - 1]) t.pt.map4k(vpn, 0x10, RW | AD);
    t.pt.unmap4k(2 ** 20 + 3); // its tables stay, empty
    expect(visit(t.pt, 0, 2 ** 35).map((e) => e[0])).toEqual([5, 2 ** 35 - 1]);
  });

  it("clears entries as it goes, reclaiming tables under it, and carries on", () => {
    for (const reclaim of ["free", "defer"] as const) {
      const t = table(SV39, reclaim);
      for (let i = 0; i < 1500; i += 3) t.pt.set4k(i, i + 1, i % 2 ? LEAF : PROT_NONE);
      const cur = new PteCursor();
      t.pt.leafRange(cur, 0, 1500);
      const seen: number[] = [];
      while (t.pt.nextLeaf(cur)) {
        seen.push(cur.vpn);
        t.pt.clearAt(cur);
      }
      expect(seen).toEqual(Array.from({ length: 500 }, (_, i) => i * 3));
      t.pt.releaseDeferred();
      expect(t.frames.framesInUse).toBe(1);
    }
  });

  type Op = { page: number; shift: number; soft: boolean };
  test.prop(
    [
      fc.array(
        fc.record({
          page: fc.integer({ min: 0, max: 4095 }),
          shift: fc.constantFrom(12, 12, 12, 16, 21),
          soft: fc.boolean(),
        }),
        { maxLength: 40 },
      ),
      fc.integer({ min: 0, max: 4200 }),
      fc.integer({ min: 0, max: 4200 }),
      fc.nat(9),
    ],
    { numRuns: 100 },
  )(
    "visits exactly the entries intersecting the range, in order, while clearing some of them",
    (ops: Op[], a, b, clearEvery) => {
      const t = table(SV39);
      const leaves: Array<{ base: number; pages: number; ppn: number; soft: boolean }> = [];
      let next = 0x10_0000;
      for (const o of ops) {
        const pages = 2 ** (o.shift - 12);
        const base = o.page - (o.page % pages);
        const ppn = Math.ceil(next / pages) * pages;
        next = ppn + pages;
        const rc =
          o.shift === 12
            ? t.pt.set4k(base, ppn, o.soft ? PROT_NONE : LEAF)
            : PT_STATUS_NAMES.indexOf(
                t.pt.map(BigInt(base) << 12n, BigInt(ppn) << 12n, BigInt(pages) << 12n, RW),
              );
        if (rc === PT_OK) leaves.push({ base, pages, ppn, soft: o.shift === 12 && o.soft });
      }
      const [start, end] = a <= b ? [a, b] : [b, a];
      const want = leaves
        // An empty range [a, a) intersects nothing, not even a superpage around a.
        .filter((l) => start < end && l.base < end && l.base + l.pages > start)
        .sort((x, y) => x.base - y.base);
      const cur = new PteCursor();
      expect(t.pt.leafRange(cur, start, end)).toBe(PT_OK);
      const got: Array<[number, number, number, boolean]> = [];
      let n = 0;
      while (t.pt.nextLeaf(cur)) {
        got.push([cur.vpn, cur.pages, cur.ppn, !cur.valid]);
        if (clearEvery > 0 && n++ % clearEvery === 0 && cur.pages === 1) t.pt.clearAt(cur);
      }
      expect(got).toEqual(want.map((l) => [l.base, l.pages, l.ppn, l.soft]));
    },
  );
});
