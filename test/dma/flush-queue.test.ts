// Strict and lazy invalidation with the RISC-V driver: in lazy mode (DMA_FQ) an unmapped IOVA
// stays reachable through the IOTLB until the flush queue flushes (timeout or a full ring), and
// its IOVA is not reused before that flush.

import { describe, expect, it } from "vitest";
import type { TraceRecord } from "../../src/base/trace.js";
import { DMA_BIDIRECTIONAL } from "../../src/dma/constants.js";
import {
  IOVA_DEFAULT_FQ_SIZE,
  IOVA_DEFAULT_FQ_TIMEOUT,
  IOVA_SINGLE_FQ_SIZE,
  IOVA_SINGLE_FQ_TIMEOUT,
} from "../../src/dma/flush-queue.js";
import { IOMMU_CAP } from "../../src/iommu/constants.js";
import { buffer, type DmaBed, dmaBed, unwrap } from "./setup.js";

const K4 = 0x1000n;
const MS = 1_000_000;

function lazyBed(nrCpus = 1) {
  const b = dmaBed({ core: { strict: false }, nrCpus });
  const dev = b.platformDev("dev0", 7);
  const domain = b.core.getDmaDomain(dev)!;
  const cookie = b.dma.cookieOf(domain)!;
  return { ...b, dev, domain, cookie };
}

function commandsOf(b: DmaBed, fn: () => void): string[] {
  const rec = b.ctx.trace.record();
  fn();
  return rec
    .stop()
    .filter((r) => r.event === "riscv_iommu:command")
    .map((r) => (r.fields as { opcode: string }).opcode);
}

function flushEvents(records: readonly TraceRecord[]) {
  return records.filter((r) => r.event === "dma:flush_queue").map((r) => r.fields);
}

describe("lazy invalidation (DMA_FQ)", () => {
  it("a lazy policy gives DMA_FQ on an IOMMU with IOMMU_CAP_DEFERRED_FLUSH, per-CPU rings of 256, 10 ms", () => {
    const b = lazyBed();
    expect(b.domain.type).toBe(11);
    expect(b.dma.deviceView(b.dev)).toMatchObject({ domain_type: "DMA_FQ", mode: "lazy" });
    expect(b.cookie.options).toEqual({
      qt: "per-cpu",
      fqSize: IOVA_DEFAULT_FQ_SIZE,
      fqTimeout: IOVA_DEFAULT_FQ_TIMEOUT,
    });
  });

  it("unmap sends no invalidation: the old IOVA still translates from the IOTLB until the timeout flush", () => {
    const b = lazyBed();
    const pa = buffer(b, 2);
    const iova = b.dma.mapSingle(b.dev, pa, 2n * K4, DMA_BIDIRECTIONAL);
    expect(b.translate(7, iova)).toBe(pa); // cached in the IOTLB; the second page is not
    expect(commandsOf(b, () => b.dma.unmapSingle(b.dev, iova, 2n * K4, DMA_BIDIRECTIONAL))).toEqual(
      [],
    );
    // The stale window: the cached page still reaches the freed buffer, the other page walks the
    // (already cleared) table and faults.
    expect(b.translate(7, iova + 0x10n)).toBe(pa + 0x10n);
    expect(b.translate(7, iova + K4)).toBe("read_page_fault");
    expect(b.cookie.fq!.pending).toBe(1);
    const pfn = Number(iova >> 12n);
    expect(b.cookie.fq!.awaitsFlush(pfn + 1, pfn + 1)).toBe(true);
    expect(b.cookie.fq!.awaitsFlush(pfn - 1, pfn - 1)).toBe(false);
    expect(b.cookie.fq!.awaitsFlush(pfn + 2, pfn + 9)).toBe(false);
    b.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * MS - 1);
    expect(b.translate(7, iova)).toBe(pa);
    const rec = b.ctx.trace.record();
    b.ctx.clock.advance(1);
    const events = rec.stop();
    expect(
      events.filter((r) => r.event === "riscv_iommu:command").map((r) => r.fields),
    ).toMatchObject([{ opcode: "IOTINVAL.VMA" }, { opcode: "IOFENCE.C" }]);
    expect(flushEvents(events)).toEqual([
      { domain: b.domain.id, reason: "timeout", entries: 1, pending: 0, flush_cnt: 1 },
    ]);
    expect(b.translate(7, iova)).toBe("read_page_fault");
    expect(b.cookie.fq!.awaitsFlush(pfn, pfn + 1)).toBe(false);
    expect(b.dma.s.stats.toJSON()).toMatchObject({
      iotlb_syncs: 0,
      queued_iovas: 1,
      fq_flushes: { full: 0, timeout: 1 },
    });
  });

  it("an IOVA is not reused before its flush, and is reused (range cache) after it", () => {
    const b = lazyBed();
    const pa = buffer(b);
    const a = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL);
    b.dma.unmapSingle(b.dev, a, K4, DMA_BIDIRECTIONAL);
    const c = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL);
    expect(c).not.toBe(a);
    b.dma.unmapSingle(b.dev, c, K4, DMA_BIDIRECTIONAL);
    b.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * MS);
    // Freed oldest first into the magazine: the last freed comes back first.
    expect(b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL)).toBe(c);
    expect(b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL)).toBe(a);
  });

  it("a full ring (255 entries) flushes on the next unmap: the high-water mark", () => {
    const b = lazyBed();
    const pa = buffer(b);
    const iovas: bigint[] = [];
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE; i++) {
      iovas.push(b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL));
    }
    expect(new Set(iovas).size).toBe(IOVA_DEFAULT_FQ_SIZE);
    for (const iova of iovas) expect(b.translate(7, iova)).toBe(pa);
    const rec = b.ctx.trace.record();
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE - 1; i++) {
      b.dma.unmapSingle(b.dev, iovas[i]!, K4, DMA_BIDIRECTIONAL);
    }
    expect(flushEvents(rec.records)).toEqual([]);
    expect(b.cookie.fq!.pending).toBe(IOVA_DEFAULT_FQ_SIZE - 1);
    // Every unmapped IOVA is still in the IOTLB.
    expect(iovas.slice(0, -1).every((a) => b.translate(7, a) === pa)).toBe(true);
    b.dma.unmapSingle(b.dev, iovas.at(-1)!, K4, DMA_BIDIRECTIONAL);
    expect(flushEvents(rec.stop())).toEqual([
      { domain: b.domain.id, reason: "full", entries: 255, pending: 0, flush_cnt: 1 },
    ]);
    expect(b.cookie.fq!.pending).toBe(1);
    expect(iovas.every((a) => b.translate(7, a) === "read_page_fault")).toBe(true);
    expect(b.cookie.fq!.toJSON()).toMatchObject({
      fq_flush_start_cnt: 1,
      fq_flush_finish_cnt: 1,
      flushes: { full: 1, timeout: 0 },
      queued: 256,
      freed: 255,
      pending: 1,
      rings: [
        {
          cpu: 0,
          entries: [{ iova_pfn: `0x${(iovas.at(-1)! >> 12n).toString(16)}`, pages: 1, counter: 1 }],
        },
      ],
    });
    // The timer armed by the first entry still fires and frees the last one.
    b.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * MS);
    expect(b.cookie.fq!.pending).toBe(0);
  });

  it("per-CPU rings: a full flush frees only its own ring; another CPU frees its flushed entries on its next unmap", () => {
    const b = lazyBed(2);
    const pa = buffer(b);
    const one = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL, 0, 1);
    b.dma.unmapSingle(b.dev, one, K4, DMA_BIDIRECTIONAL, 0, 1);
    const iovas: bigint[] = [];
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE; i++) {
      iovas.push(b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL));
    }
    for (const a of iovas) b.dma.unmapSingle(b.dev, a, K4, DMA_BIDIRECTIONAL);
    const view = () =>
      (b.cookie.fq!.toJSON() as { rings: Array<{ cpu: number; entries: unknown[] }> }).rings.map(
        (r) => r.entries.length,
      );
    expect(view()).toEqual([1, 1]);
    const two = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL, 0, 1);
    b.dma.unmapSingle(b.dev, two, K4, DMA_BIDIRECTIONAL, 0, 1);
    expect(view()).toEqual([1, 1]);
    expect(b.cookie.fq!.freed).toBe(256);
    // CPU 1's freed IOVA went to CPU 1's range cache: CPU 1 gets it back, CPU 0 does not.
    expect(b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL, 0, 1)).toBe(one);
  });

  it("a shadowing IOMMU (shadow_on_flush) gets one shared ring of 32768 entries and a 1 s timeout", () => {
    const b = lazyBed(2);
    b.dev.iommu!.shadowOnFlush = true;
    const group = b.core.groupOf(b.dev)!;
    unwrap(b.core.groupStoreType(group, "identity"));
    unwrap(b.core.groupStoreType(group, "DMA-FQ"));
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(b.dev)!)!;
    expect(cookie.options).toEqual({
      qt: "single",
      fqSize: IOVA_SINGLE_FQ_SIZE,
      fqTimeout: IOVA_SINGLE_FQ_TIMEOUT,
    });
    const pa = buffer(b);
    const a = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL, 0, 0);
    const c = b.dma.mapSingle(b.dev, pa, K4, DMA_BIDIRECTIONAL, 0, 1);
    b.dma.unmapSingle(b.dev, a, K4, DMA_BIDIRECTIONAL, 0, 0);
    b.dma.unmapSingle(b.dev, c, K4, DMA_BIDIRECTIONAL, 0, 1);
    expect(cookie.fq!.toJSON()).toMatchObject({ rings: [{ cpu: null }], pending: 2 });
    b.ctx.clock.advance(IOVA_DEFAULT_FQ_TIMEOUT * MS);
    expect(cookie.fq!.pending).toBe(2);
    b.ctx.clock.advance((IOVA_SINGLE_FQ_TIMEOUT - IOVA_DEFAULT_FQ_TIMEOUT) * MS);
    expect(cookie.fq!.pending).toBe(0);
  });

  it("freeing the domain stops its flush timer (iommu_dma_free_fq)", () => {
    const b = lazyBed();
    const iova = b.dma.mapSingle(b.dev, buffer(b), K4, DMA_BIDIRECTIONAL);
    b.dma.unmapSingle(b.dev, iova, K4, DMA_BIDIRECTIONAL);
    expect(b.ctx.clock.pending().some((t) => t.label.includes("fq_flush_timeout"))).toBe(true);
    unwrap(b.core.groupStoreType(b.core.groupOf(b.dev)!, "identity"));
    expect(b.domain.freed).toBe(true);
    expect(b.ctx.clock.pending().some((t) => t.label.includes("fq_flush_timeout"))).toBe(false);
    expect(b.dma.opsKind(b.dev)).toBe("dma-direct");
  });
});

describe("choosing strict or lazy", () => {
  it("without IOMMU_CAP_DEFERRED_FLUSH a DMA_FQ default becomes DMA (strict)", () => {
    const b = dmaBed({ core: { strict: false }, iommu: { mock: {} } });
    const dev = b.platformDev("dev0", 7);
    const domain = b.core.getDmaDomain(dev)!;
    expect(domain.type).toBe(3);
    expect(b.dma.cookieOf(domain)!.fq).toBeNull();
  });

  it("with IOMMU_CAP_DEFERRED_FLUSH the mock keeps DMA_FQ and unmaps skip iotlb_sync", () => {
    const b = dmaBed({
      core: { strict: false },
      iommu: { mock: { capabilities: [IOMMU_CAP.CACHE_COHERENCY, IOMMU_CAP.DEFERRED_FLUSH] } },
    });
    const dev = b.platformDev("dev0", 7);
    const domain = b.core.getDmaDomain(dev)!;
    expect(domain.type).toBe(11);
    const iova = b.dma.mapSingle(dev, 0x8000_0000n, K4, DMA_BIDIRECTIONAL);
    const logLen = b.mock!.log.length;
    b.dma.unmapSingle(dev, iova, K4, DMA_BIDIRECTIONAL);
    expect(b.mock!.log.slice(logLen).some((l) => l.startsWith("iotlb_sync"))).toBe(false);
  });

  it("sysfs DMA → DMA-FQ brings the flush queue up in place; later unmaps are lazy", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const domain = b.core.getDmaDomain(dev)!;
    const pa = buffer(b);
    const iova = b.dma.mapSingle(dev, pa, K4, DMA_BIDIRECTIONAL);
    unwrap(b.core.groupStoreType(b.core.groupOf(dev)!, "DMA-FQ"));
    expect(b.core.getDmaDomain(dev)).toBe(domain);
    expect(domain.type).toBe(11);
    expect(domain.iovaCookie!.fq).toBe(true);
    expect(b.translate(7, iova)).toBe(pa);
    b.dma.unmapSingle(dev, iova, K4, DMA_BIDIRECTIONAL);
    expect(b.translate(7, iova)).toBe(pa);
    expect(b.dma.cookieOf(domain)!.fq!.pending).toBe(1);
  });

  it("strict mode never leaves the old IOVA reachable, whatever the IOTLB held", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const pa = buffer(b, 4);
    const iova = b.dma.mapSingle(dev, pa, 4n * K4, DMA_BIDIRECTIONAL);
    for (let i = 0n; i < 4n; i++) expect(b.translate(7, iova + i * K4)).toBe(pa + i * K4);
    b.dma.unmapSingle(dev, iova, 4n * K4, DMA_BIDIRECTIONAL);
    for (let i = 0n; i < 4n; i++) expect(b.translate(7, iova + i * K4)).toBe("read_page_fault");
  });
});
