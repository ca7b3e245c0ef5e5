import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import { SV39, SV39X4, SV48, SV57, SV57X4 } from "../../../src/hw/pgtable/modes.js";
import {
  PageTable,
  PT_EXISTS,
  PT_NO_MEMORY,
  PT_NOT_MAPPED,
  PT_OK,
  PT_OUT_OF_RANGE,
  PT_STATUS_NAMES,
  PT_WOULD_SPLIT,
} from "../../../src/hw/pgtable/page-table.js";
import {
  decodePte,
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_U,
  PTE_W,
  PTE_X,
} from "../../../src/hw/pgtable/pte.js";
import { ACCESS_READ, type WalkResult } from "../../../src/hw/pgtable/walk-result.js";
import { AD, RW, type Table, table, walkAlone } from "./fixture.js";

const K4 = 0x1000n;
const K64 = 0x1_0000n;
const M2 = 0x20_0000n;
const G1 = 0x4000_0000n;

/** Walks `va` (read; supervisor for a first-stage table) over `t.pt`. */
function hw(t: Table, va: bigint): WalkResult {
  return walkAlone(t, Number(va >> 12n), ACCESS_READ, t.pt.mode.gStage);
}

describe("PageTable: map", () => {
  it("allocates the root (16 KiB aligned, 4 pages for x4) and tables on demand", () => {
    const t = table(SV39X4);
    expect(t.pt.rootPpn % 4).toBe(0);
    expect(t.frames.framesInUse).toBe(4);
    expect(t.pt.map(0x1000n, 0x8000_1000n, K4, RW | PTE_U | AD)).toBe("ok");
    expect(t.frames.framesInUse).toBe(6);
    expect(t.pt.tablePages).toBe(6);
    expect(t.pt.map(0x2000n, 0x8000_2000n, K4, RW | PTE_U | AD)).toBe("ok");
    expect(t.frames.framesInUse).toBe(6);
  });

  it("writes a NAPOT 64 KiB mapping as 16 identical PTEs with N=1 and ppn[3:0]=1000", () => {
    const t = table(SV39);
    expect(t.pt.map(0x10000n, 0x8123_0000n, K64, RW | AD)).toBe("ok");
    const out = hw(t, 0x10000n);
    const tablePage = BigInt(out.stepTable[out.steps - 1]!) * 4096n;
    const ptes = Array.from({ length: 16 }, (_, i) =>
      t.mem.read64(tablePage + BigInt(16 + i) * 8n),
    );
    expect(new Set(ptes).size).toBe(1);
    const f = decodePte(ptes[0]!);
    expect([f.n, f.ppn & 15, f.ppn >> 4]).toEqual([true, 0b1000, 0x8123_0000 / 4096 / 16]);
    expect(t.mem.read64(tablePage + 15n * 8n)).toBe(0n);
    expect(t.mem.read64(tablePage + 32n * 8n)).toBe(0n);
    expect(t.pt.lookup(0x1f123n)).toEqual({
      va: 0x10000n,
      pa: 0x8123_0000n,
      size: K64,
      perm: RW | AD | 1,
      pbmt: 0,
    });
    expect(t.pt.iovaToPhys(0x1f123n)).toBe(0x8123_f123n);
    expect(t.pt.lookupPpn(0x1f)).toBe(0x8123f);
  });

  it("maps every leaf size, up to 256 TiB in Sv57", () => {
    const t = table(SV57);
    const sizes = SV57.leafShifts.map((s) => 1n << BigInt(s));
    let va = 0n;
    for (const size of sizes) {
      va = (va + size) & ~(size - 1n);
      va = va === 0n ? size : va;
      expect(t.pt.map(va, size * 3n, size, PTE_R | AD)).toBe("ok");
      expect(t.pt.lookup(va + size - 1n)).toMatchObject({ va, pa: size * 3n, size });
      va += size;
    }
    expect(t.pt.mappings().map((m) => m.size)).toEqual(sizes);
  });

  it("refuses to map over an existing mapping, at any size", () => {
    const t = table(SV48);
    expect(t.pt.map(0x20_0000n, 0x40_0000n, M2, RW | AD)).toBe("ok");
    expect(t.pt.map(0x20_0000n, 0x60_0000n, M2, RW | AD)).toBe("exists");
    expect(t.pt.map(0x21_0000n, 0x60_0000n, K4, RW | AD)).toBe("exists"); // inside the 2 MiB leaf
    expect(t.pt.map(0x21_0000n, 0x60_0000n, K64, RW | AD)).toBe("exists");
    expect(t.pt.map(0x0n, 0x0n, G1, RW | AD)).toBe("exists"); // a 1 GiB leaf over a table in use
    expect(t.pt.map(0x1000_0000n, 0x5000n, K4, RW | AD)).toBe("ok");
    expect(t.pt.map(0x1000_0000n, 0x10000n, K64, RW | AD)).toBe("exists"); // NAPOT over a 4 KiB page
    expect(t.pt.map(0x1001_0000n, 0x10000n, K64, RW | AD)).toBe("ok");
    expect(t.pt.map(0x1001_f000n, 0x5000n, K4, RW | AD)).toBe("exists"); // 4 KiB inside NAPOT
    expect(t.pt.lookup(0x20_0000n)!.pa).toBe(0x40_0000n);
    expect(t.pt.map4k(0x1000_0, 0x99, RW | AD)).toBe(PT_EXISTS);
  });

  it("reports misaligned and out-of-range addresses", () => {
    const t = table(SV39);
    expect(t.pt.map(0x1000n, 0x0n, M2, RW | AD)).toBe("misaligned");
    expect(t.pt.map(0x0n, 0x1000n, M2, RW | AD)).toBe("misaligned");
    expect(t.pt.map(0x8000n, 0x0n, K64, RW | AD)).toBe("misaligned");
    expect(t.pt.map(0x40_0000_0000n, 0x0n, K4, RW | AD)).toBe("out-of-range");
    expect(t.pt.map(0x1000n, 1n << 56n, K4, RW | AD)).toBe("out-of-range");
    expect(t.pt.map4k(2 ** 27, 1, RW | AD)).toBe(PT_OUT_OF_RANGE);
    expect(t.pt.map(0xffff_ffff_ffff_f000n, 0x5000n, K4, RW | AD)).toBe("ok"); // the top page
    expect(t.pt.lookup(0xffff_ffff_ffff_fabcn)!.va).toBe(0xffff_ffff_ffff_f000n);
    const g = table(SV39X4);
    expect(g.pt.map(1n << 41n, 0x0n, K4, RW | PTE_U | AD)).toBe("out-of-range");
  });

  it("throws on misuse: a size the mode lacks, illegal leaf bits, a bad PBMT", () => {
    const t = table(SV39);
    expect(() => t.pt.map(0n, 0n, 1n << 39n, PTE_R)).toThrow(/not a leaf size of Sv39/);
    expect(() => t.pt.map(0n, 0n, 0x3000n, PTE_R)).toThrow(SimError);
    expect(() => t.pt.map(0n, 0n, K4, 0)).toThrow(/needs R, W or X/);
    expect(() => t.pt.map(0n, 0n, K4, PTE_W)).toThrow(/W without R/);
    expect(() => t.pt.map(0n, 0n, K4, 0x100)).toThrow(SimError);
    expect(() => t.pt.map(0n, 0n, K4, PTE_R, 3)).toThrow(/PBMT/);
    expect(() => t.pt.map4k(0, -1, PTE_R)).toThrow(SimError);
  });

  it("runs out of frames cleanly: no-memory, and no table left behind", () => {
    const t = table(SV48, "free", 3); // root + 2 tables
    expect(t.pt.map4k(0, 0x100, RW | AD)).toBe(PT_NO_MEMORY);
    expect(t.frames.framesInUse).toBe(1);
    expect(t.pt.mappings()).toEqual([]);
    expect(t.pt.map(0n, 0n, G1, RW | AD)).toBe("ok"); // needs two tables only
    expect(PageTable.create(t.mem, t.frames, SV48)).not.toBeNull();
    expect(PageTable.create(t.mem, t.frames, SV48)).toBeNull();
    const x4 = table(SV57X4, "free", 6);
    x4.frames.alloc(); // leaves no 16 KiB aligned run of 4
    expect(PageTable.create(x4.mem, x4.frames, SV57X4)).toBeNull();
  });
});

describe("PageTable: unmap", () => {
  it("unmaps, after which the walker faults, and frees emptied tables", () => {
    const t = table(SV48);
    t.pt.map(0x7000_0000_0000n, 0x5000n, K4, RW | AD);
    expect(hw(t, 0x7000_0000_0000n).ok).toBe(true);
    expect(t.frames.framesInUse).toBe(4);
    expect(t.pt.unmap(0x7000_0000_0000n, K4)).toEqual({ status: "ok", unmapped: K4 });
    const out = hw(t, 0x7000_0000_0000n);
    expect([out.ok, out.reason, out.faultLevel]).toEqual([false, "invalid", 3]);
    expect(t.frames.framesInUse).toBe(1);
    expect(t.pt.unmap(0x7000_0000_0000n, K4)).toEqual({ status: "not-mapped", unmapped: 0n });
  });

  it("refuses to unmap part of a superpage or NAPOT range, changing nothing", () => {
    const t = table(SV39);
    t.pt.map(0x20_0000n, 0x40_0000n, M2, RW | AD);
    t.pt.map(0x10000n, 0x80000n, K64, RW | AD);
    t.pt.map(0x5000n, 0x9000n, K4, RW | AD);
    expect(t.pt.unmap(0x20_1000n, K4)).toEqual({ status: "would-split", unmapped: 0n });
    expect(t.pt.unmap(0x1f_f000n, 0x2000n).status).toBe("would-split");
    expect(t.pt.unmap(0x10000n, 0x8000n).status).toBe("would-split");
    expect(t.pt.unmap(0x0n, 0x18000n).status).toBe("would-split"); // would take 0x5000 too
    expect(t.pt.unmap4k(0x201)).toBe(PT_WOULD_SPLIT);
    expect(t.pt.unmap4k(0x1f)).toBe(PT_WOULD_SPLIT);
    expect(t.pt.mappings()).toHaveLength(3);
    expect(hw(t, 0x5000n).ok).toBe(true);
    expect(t.pt.unmap(0x10000n, K64)).toEqual({ status: "ok", unmapped: K64 });
    expect(t.pt.unmap(0x0n, 0x40_0000n)).toEqual({ status: "ok", unmapped: M2 + K4 });
    expect(t.pt.mappings()).toEqual([]);
    expect(t.frames.framesInUse).toBe(1);
  });

  it("reports misaligned and non-canonical ranges, including one across the hole", () => {
    const t = table(SV39);
    expect(t.pt.unmap(0x1001n, K4).status).toBe("misaligned");
    expect(t.pt.unmap(0x1000n, 0n).status).toBe("misaligned");
    expect(t.pt.unmap(0x40_0000_0000n, K4).status).toBe("out-of-range");
    expect(t.pt.unmap(0x3f_ffff_f000n, (1n << 64n) - 0x3f_ffff_f000n).status).toBe("out-of-range");
    expect(t.pt.unmap4k(2 ** 30)).toBe(PT_OUT_OF_RANGE);
  });

  it("hot path: map4k / unmap4k / lookupPpn", () => {
    const t = table(SV48);
    const vpn = 0x7_ffff_ffff; // top of the lower half
    expect(t.pt.map4k(vpn, 0x1234, RW | AD)).toBe(PT_OK);
    expect(t.pt.lookupPpn(vpn)).toBe(0x1234);
    expect(t.pt.lookupPpn(vpn - 1)).toBe(-1);
    expect(t.pt.unmap4k(vpn)).toBe(PT_OK);
    expect(t.pt.unmap4k(vpn)).toBe(PT_NOT_MAPPED);
    expect(t.pt.lookupPpn(vpn)).toBe(-1);
    expect(t.frames.framesInUse).toBe(1);
    expect(PT_STATUS_NAMES[PT_WOULD_SPLIT]).toBe("would-split");
    t.pt.map(0x4000_0000n, 0x8000_0000n, G1, RW | AD);
    expect(t.pt.lookupPpn(0x4000_0 + 0x123)).toBe(0x8000_0 + 0x123);
  });

  it("'defer' detaches emptied tables at once but frees them only on releaseDeferred()", () => {
    const t = table(SV48, "defer");
    t.pt.map(0x1000n, 0x5000n, K4, RW | AD);
    t.pt.map(0x20_0000n, 0x6000n, K4, RW | AD);
    t.pt.unmap(0x1000n, K4);
    expect([t.pt.deferredPages, t.frames.framesInUse]).toEqual([1, 5]);
    t.pt.unmap(0x20_0000n, K4);
    expect([t.pt.deferredPages, t.frames.framesInUse]).toEqual([4, 5]);
    const out = hw(t, 0x1000n);
    expect([out.reason, out.faultLevel]).toEqual(["invalid", 3]); // the root entry is cleared
    expect(t.pt.releaseDeferred()).toBe(4);
    expect([t.pt.deferredPages, t.frames.framesInUse]).toEqual([0, 1]);
  });

  it("'keep' leaves empty tables, reuses them, and lets a superpage replace an empty one", () => {
    const t = table(SV39, "keep");
    t.pt.map(0x1000n, 0x5000n, K4, RW | AD);
    t.pt.unmap(0x1000n, K4);
    expect(t.frames.framesInUse).toBe(3);
    expect(hw(t, 0x1000n).faultLevel).toBe(0);
    t.pt.map(0x2000n, 0x6000n, K4, RW | AD);
    expect(t.frames.framesInUse).toBe(3);
    t.pt.unmap(0x2000n, K4);
    expect(t.pt.map(0x0n, 0x0n, M2, RW | AD)).toBe("ok");
    expect(t.frames.framesInUse).toBe(2);
    expect(hw(t, 0x1000n).ok).toBe(true);
  });
});

describe("PageTable: protect, mappings, destroy", () => {
  it("changes R/W/X/U and keeps A, D, G and the address", () => {
    const t = table(SV39);
    t.pt.map(0x1000n, 0x5000n, K4, RW | PTE_X | PTE_G | AD);
    t.pt.map(0x20_0000n, 0x40_0000n, M2, RW | AD);
    expect(t.pt.protect(0x0n, 0x40_0000n, PTE_R | PTE_U)).toBe("ok");
    expect(t.pt.lookup(0x1000n)).toMatchObject({
      pa: 0x5000n,
      perm: 1 | PTE_R | PTE_U | PTE_G | AD,
    });
    expect(t.pt.lookup(0x20_0000n)!.perm).toBe(1 | PTE_R | PTE_U | AD);
    expect(t.pt.protect(0x1000n, K4, 0, PTE_A | PTE_D)).toBe("ok");
    expect(t.pt.lookup(0x1000n)!.perm & AD).toBe(0);
    expect(t.pt.protect(0x20_0000n, K4, PTE_R)).toBe("would-split");
    expect(t.pt.protect(0x50_0000n, K4, PTE_R)).toBe("not-mapped");
    expect(() => t.pt.protect(0x1000n, K4, PTE_W)).toThrow(/W without R/);
    expect(() => t.pt.protect(0x0n, 0x40_0000n, 0)).toThrow(/needs R, W or X/);
    expect(t.pt.lookup(0x20_0000n)!.perm).toBe(1 | PTE_R | PTE_U | AD); // nothing changed
    expect(() => t.pt.protect(0x1000n, K4, 0, 1)).toThrow(/mask/);
  });

  it("lists mappings in order, upper-half addresses sign-extended", () => {
    const t = table(SV48);
    t.pt.map(0xffff_8000_0000_0000n, 0x1000n, K4, PTE_R | AD);
    t.pt.map(0x3000n, 0x2000n, K4, PTE_R | AD, 1);
    expect(t.pt.mappings()).toEqual([
      { va: 0x3000n, pa: 0x2000n, size: K4, perm: 1 | PTE_R | AD, pbmt: 1 },
      { va: 0xffff_8000_0000_0000n, pa: 0x1000n, size: K4, perm: 1 | PTE_R | AD, pbmt: 0 },
    ]);
    expect(t.pt.toJSON()).toEqual({
      mode: "Sv48",
      root: `0x${(t.pt.rootPpn * 4096).toString(16)}`,
      table_pages: 7,
      deferred_pages: 0,
      reclaim: "free",
    });
  });

  it("destroy frees every frame and the table refuses further use", () => {
    for (const reclaim of ["free", "defer", "keep"] as const) {
      const t = table(SV57X4, reclaim);
      t.pt.map(0x1000n, 0x5000n, K4, RW | PTE_U | AD);
      t.pt.map(0x7_0000_0000_0000n, 0x5000n, K4, RW | PTE_U | AD);
      t.pt.unmap(0x1000n, K4);
      t.pt.destroy();
      expect(t.frames.framesInUse).toBe(0);
      expect(t.pt.tablePages).toBe(0);
      expect(() => t.pt.map4k(1, 1, PTE_R)).toThrow(/after destroy/);
      expect(() => t.pt.rootPpn).toThrow(SimError);
    }
  });

  type Op =
    | { kind: "map"; page: number; shift: number }
    | { kind: "unmap"; page: number; pages: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant("map" as const),
      page: fc.integer({ min: 0, max: 4095 }),
      shift: fc.constantFrom(12, 12, 16, 21),
    }),
    fc.record({
      kind: fc.constant("unmap" as const),
      page: fc.integer({ min: 0, max: 4095 }),
      pages: fc.integer({ min: 1, max: 600 }),
    }),
  );

  test.prop(
    [
      fc.array(op, { maxLength: 40 }),
      fc.constantFrom<"free" | "defer" | "keep">("free", "defer", "keep"),
    ],
    { numRuns: 60 },
  )(
    "agrees with a model of page → frame under random map/unmap, and frees everything at the end",
    (ops, reclaim) => {
      const t = table(SV39, reclaim);
      const model = new Map<number, { ppn: number; base: number; pages: number }>();
      let next = 0x100000;
      for (const o of ops) {
        if (o.kind === "map") {
          const pages = 2 ** (o.shift - 12);
          const base = o.page - (o.page % pages);
          const ppn = Math.ceil(next / pages) * pages;
          next = ppn + pages;
          let free = true;
          for (let p = base; p < base + pages; p++) if (model.has(p)) free = false;
          const status = t.pt.map(
            BigInt(base) << 12n,
            BigInt(ppn) << 12n,
            1n << BigInt(o.shift),
            RW | AD,
          );
          expect(status).toBe(free ? "ok" : "exists");
          if (free)
            for (let p = base; p < base + pages; p++)
              model.set(p, { ppn: ppn + p - base, base, pages });
        } else {
          const end = o.page + o.pages;
          let split = false;
          let mapped = 0;
          for (let p = o.page; p < end; p++) {
            const e = model.get(p);
            if (!e) continue;
            mapped++;
            if (e.base < o.page || e.base + e.pages > end) split = true;
          }
          const r = t.pt.unmap(BigInt(o.page) << 12n, BigInt(o.pages) << 12n);
          if (split) expect(r).toEqual({ status: "would-split", unmapped: 0n });
          else if (mapped === 0) expect(r.status).toBe("not-mapped");
          else {
            expect(r).toEqual({ status: "ok", unmapped: BigInt(mapped) << 12n });
            for (let p = o.page; p < end; p++) model.delete(p);
          }
        }
      }
      for (let p = 0; p < 4096 + 512; p++) expect(t.pt.lookupPpn(p)).toBe(model.get(p)?.ppn ?? -1);
      t.pt.unmap(0n, 0x200_0000n);
      t.pt.releaseDeferred();
      if (reclaim !== "keep") expect(t.frames.framesInUse).toBe(1);
      expect(t.pt.mappings()).toEqual([]);
    },
  );
});
