// Properties of the DMA API over the RISC-V driver, on random call sequences:
// - live mappings never overlap each other, a reserved region, or an IOVA still waiting in the
//   flush queue;
// - every live mapping translates to its buffer, in software (iova_to_phys) and in hardware;
// - strict mode never leaves an unmapped IOVA reachable; lazy mode leaves none after a flush;
// - a mapped scatterlist's segments hold the entries back to back, each reaching its buffer.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { DMA_BIDIRECTIONAL, DMA_MAPPING_ERROR } from "../../src/dma/constants.js";
import { IOVA_DEFAULT_FQ_TIMEOUT } from "../../src/dma/flush-queue.js";
import { sgTableFromBuffers } from "../../src/dma/scatterlist.js";
import { dmaBed, RAM_BASE, unwrap } from "./setup.js";

type Op =
  | { k: "map"; pages: number; off: number; len: number; buf: number; dir: number; cpu: number }
  | { k: "unmap"; pick: number }
  | { k: "tick"; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("map" as const),
      pages: fc.integer({ min: 1, max: 40 }),
      off: fc.integer({ min: 0, max: 0xfff }),
      len: fc.integer({ min: 1, max: 0x1000 }),
      buf: fc.nat(2000),
      dir: fc.integer({ min: 0, max: 2 }),
      cpu: fc.nat(1),
    }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("unmap" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("tick" as const), ms: fc.integer({ min: 0, max: 12 }) }),
  },
);

interface Live {
  readonly iova: bigint;
  readonly pa: bigint;
  readonly size: bigint;
  readonly dir: number;
  readonly cpu: number;
}

/** The 4 KiB pages a mapping of `size` bytes at `iova` covers. */
function pagesOf(iova: bigint, size: bigint): [bigint, bigint] {
  return [iova >> 12n, (iova + size - 1n) >> 12n];
}

function overlaps(a: [bigint, bigint], b: [bigint, bigint]): boolean {
  return a[0] <= b[1] && b[0] <= a[1];
}

const RESERVED: [bigint, bigint] = [0xffe0_0000n, 0xffef_ffffn];

for (const lazy of [false, true]) {
  test.prop([fc.array(op, { minLength: 1, maxLength: 50, size: "max" })], { numRuns: 40 })(
    `${lazy ? "lazy" : "strict"}: random map/unmap keeps IOVAs disjoint, live mappings reachable, dead ones ${lazy ? "unreachable after a flush" : "unreachable at once"}`,
    (ops) => {
      const b = dmaBed({ core: { strict: !lazy }, nrCpus: 2 });
      const dev = b.platformDev("dev0", 7, {
        resv: [
          {
            start: RESERVED[0],
            length: RESERVED[1] - RESERVED[0] + 1n,
            prot: 0,
            type: IOMMU_RESV.RESERVED,
          },
        ],
      });
      const domain = b.core.getDmaDomain(dev)!;
      const cookie = b.dma.cookieOf(domain)!;
      expect(cookie.mode).toBe(lazy ? "lazy" : "strict");
      const live: Live[] = [];
      /** Pages of unmapped ranges, to probe for stale translations. */
      let dead: bigint[] = [];

      const queuedRanges = (): Array<[bigint, bigint]> => {
        const fq = cookie.fq?.toJSON() as
          | { rings: Array<{ entries: Array<{ iova_pfn: string; pages: number }> }> }
          | undefined;
        if (!fq) return [];
        return fq.rings.flatMap((r) =>
          r.entries.map((e): [bigint, bigint] => {
            const lo = BigInt(e.iova_pfn);
            return [lo, lo + BigInt(e.pages) - 1n];
          }),
        );
      };

      for (const o of ops) {
        if (o.k === "map") {
          const size = BigInt((o.pages - 1) * 0x1000 + o.len);
          const pa = RAM_BASE + BigInt(o.buf) * 0x1000n + BigInt(o.off);
          const iova = b.dma.mapSingle(dev, pa, size, o.dir, 0, o.cpu);
          expect(iova).not.toBe(DMA_MAPPING_ERROR);
          expect(iova & 0xfffn).toBe(pa & 0xfffn);
          expect(iova + size - 1n).toBeLessThanOrEqual(0xffff_ffffn);
          const mine = pagesOf(iova, size);
          for (const l of live) expect(overlaps(mine, pagesOf(l.iova, l.size))).toBe(false);
          expect(overlaps(mine, [RESERVED[0] >> 12n, RESERVED[1] >> 12n])).toBe(false);
          for (const q of queuedRanges()) expect(overlaps(mine, q)).toBe(false);
          dead = dead.filter((p) => p < mine[0] || p > mine[1]);
          live.push({ iova, pa, size, dir: o.dir, cpu: o.cpu });
        } else if (o.k === "unmap") {
          if (live.length === 0) continue;
          const [l] = live.splice(o.pick % live.length, 1);
          b.dma.unmapSingle(dev, l!.iova, l!.size, l!.dir, 0, l!.cpu);
          const [lo, hi] = pagesOf(l!.iova, l!.size);
          for (let p = lo; p <= hi; p++) dead.push(p);
        } else {
          b.ctx.clock.advance(o.ms * 1_000_000);
        }
        // Every live mapping reaches its buffer, first and last byte.
        for (const l of live) {
          for (const d of [0n, l.size - 1n]) {
            expect(b.core.iovaToPhys(domain, l.iova + d)).toBe(l.pa + d);
            expect(b.translate(7, l.iova + d)).toBe(l.pa + d);
          }
        }
        // No stale translation where none may exist.
        const flushed = !lazy || (cookie.fq?.pending ?? 0) === 0;
        if (flushed) {
          for (const p of dead) expect(b.translate(7, p << 12n)).toBe("read_page_fault");
        }
      }
      // Lazy: one timeout later everything unmapped is unreachable.
      b.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * 1_000_000);
      expect(cookie.fq?.pending ?? 0).toBe(0);
      for (const p of dead) expect(b.translate(7, p << 12n)).toBe("read_page_fault");
    },
  );
}

/** Entries that often start at a page start and often end at a page end (where merging happens). */
const entry = fc
  .record({
    page: fc.nat(400),
    off: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xfff })),
    pages: fc.integer({ min: 1, max: 3 }),
    toPageEnd: fc.boolean(),
    len: fc.integer({ min: 1, max: 0x3000 }),
  })
  .map((e) => ({ page: e.page, off: e.off, len: e.toPageEnd ? e.pages * 0x1000 - e.off : e.len }));

test.prop(
  [
    fc.array(entry, { minLength: 1, maxLength: 8 }),
    fc.constantFrom(0, 0x2000, 0x4000, 0x1_0000, 0x10_0000),
    fc.constantFrom(0n, 0xffffn, 0x1_ffffn, 0xffff_ffffn),
  ],
  { numRuns: 150 },
)(
  "dma_map_sg: segments hold the entries back to back, each reaching its buffer",
  (entries, maxSeg, boundary) => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    if (maxSeg !== 0) b.dma.setMaxSegSize(dev, maxSeg);
    if (boundary !== 0n) b.dma.setSegBoundary(dev, boundary);
    const bufs = entries.map(
      (e) => [RAM_BASE + BigInt(e.page) * 0x4000n + BigInt(e.off), e.len] as const,
    );
    const sgt = sgTableFromBuffers(bufs);
    unwrap(b.dma.mapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    // The CPU side is unchanged.
    expect(sgt.sgl.map((s) => [s.page + BigInt(s.offset), s.length])).toEqual(
      bufs.map(([p, l]) => [p, l]),
    );
    const segs = sgt.sgl.slice(0, sgt.nents).map((s) => ({ addr: s.dmaAddress, len: s.dmaLength }));
    expect(segs.reduce((n, s) => n + s.len, 0)).toBe(entries.reduce((n, e) => n + e.len, 0));
    let k = 0;
    let used = 0;
    bufs.forEach(([pa, len]) => {
      if (used === segs[k]!.len) {
        k++;
        used = 0;
      }
      const at = segs[k]!.addr + BigInt(used);
      expect(b.translate(7, at)).toBe(pa);
      expect(b.translate(7, at + BigInt(len - 1))).toBe(pa + BigInt(len - 1));
      used += len;
    });
    expect(k).toBe(segs.length - 1);
    const mask = b.dma.getSegBoundary(dev);
    const fitsWindow = entries.every(
      (e) => BigInt(Math.ceil((e.off + e.len) / 4096) * 4096) <= mask + 1n,
    );
    if (fitsWindow) {
      for (const s of segs) expect(s.addr & ~mask).toBe((s.addr + BigInt(s.len) - 1n) & ~mask);
    }
    b.dma.unmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    for (const s of segs) expect(b.translate(7, s.addr)).toBe("read_page_fault");
  },
);
