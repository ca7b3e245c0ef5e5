// JSON views of the DMA layer (devices, cookies with their flush queues, statistics) and its trace
// events.

import { describe, expect, it } from "vitest";
import type { Json } from "../../src/base/json.js";
import {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
} from "../../src/dma/constants.js";
import { sgInitTable, sgSetBuf } from "../../src/dma/scatterlist.js";
import { buffer, dmaBed, unwrap } from "./setup.js";

function scenario(lazy: boolean) {
  const b = dmaBed({ core: { strict: !lazy } });
  const dev = b.platformDev("dev0", 7);
  const bare = b.platformDev("bare0", 2, { iommu: false });
  const pa = buffer(b, 4);
  const a = b.dma.mapSingle(dev, pa, 0x1000n, DMA_BIDIRECTIONAL);
  const c = b.dma.mapSingle(dev, pa + 0x1000n, 0x2000n, DMA_TO_DEVICE);
  b.dma.mapSingle(bare, pa, 0x10n, DMA_TO_DEVICE);
  b.dma.unmapSingle(dev, a, 0x1000n, DMA_BIDIRECTIONAL);
  b.ctx.clock.advance(1_000_000);
  return { b, dev, bare, a, c };
}

describe("views", () => {
  it("the DMA API view: devices, cookies (IOVA ranges, flush queue contents and counters), statistics", () => {
    const { b, a, c } = scenario(true);
    const view = b.dma.toJSON() as { [k: string]: Json };
    expect(JSON.parse(JSON.stringify(view))).toEqual(view);
    expect(view).toMatchObject({
      nr_cpus: 1,
      forcedac: false,
      stats: {
        map_page: 3,
        unmap_page: 1,
        mapping_errors: 0,
        bytes_mapped: 0x3010,
        bytes_unmapped: 0x1000,
        iotlb_syncs: 0,
        queued_iovas: 1,
      },
      devices: [
        { device: "dev0", ops: "dma-iommu", domain_type: "DMA_FQ", mode: "lazy" },
        { device: "bare0", ops: "dma-direct", domain: null },
      ],
    });
    const cookies = view.cookies as Array<{ [k: string]: Json }>;
    expect(cookies.length).toBe(1);
    expect(cookies[0]).toMatchObject({
      mode: "lazy",
      granule: 4096,
      start_pfn: "0x1",
      options: { qt: "per-cpu", fq_size: 256, fq_timeout_ms: 10 },
      maps: 2,
      unmaps: 1,
      fq: {
        fq_flush_start_cnt: 0,
        fq_flush_finish_cnt: 0,
        timer: { at: 10_000_000, cpu: 0 },
        pending: 1,
        rings: [
          { cpu: 0, entries: [{ iova_pfn: `0x${(a >> 12n).toString(16)}`, pages: 1, counter: 0 }] },
        ],
      },
      iovad: {
        ranges: [
          expect.objectContaining({
            iova: `0x${((c >> 12n) << 12n).toString(16)}`,
            kind: "allocated",
          }),
          expect.objectContaining({ iova: `0x${a.toString(16)}`, kind: "allocated" }),
        ],
      },
    });
  });

  it("views are deterministic: the same calls give the same JSON", () => {
    const one = JSON.stringify(scenario(true).b.dma.toJSON());
    const two = JSON.stringify(scenario(true).b.dma.toJSON());
    expect(one).toBe(two);
    expect(JSON.stringify(scenario(false).b.dma.toJSON())).not.toBe(one);
  });

  it("a strict cookie has no flush queue; the IOVA went back to the range cache", () => {
    const { b, dev, a } = scenario(false);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!.toJSON() as {
      [k: string]: Json;
    };
    expect(cookie).toMatchObject({ mode: "strict", fq: null });
    expect(cookie.iovad).toMatchObject({
      ranges: expect.arrayContaining([
        expect.objectContaining({ iova: `0x${a.toString(16)}`, kind: "cached" }),
      ]),
    });
    expect(b.dma.s.stats.iotlbSyncs).toBe(1);
  });
});

describe("trace events", () => {
  it("dma:map for every map call, DMA_MAPPING_ERROR included; dma:unmap with its mode", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const bare = b.platformDev("bare0", 2, { iommu: false });
    unwrap(b.dma.setMask(dev, DMA_BIT_MASK(13)));
    const pa = buffer(b);
    const rec = b.ctx.trace.record();
    const ok = b.dma.mapSingle(dev, pa + 8n, 0x10n, DMA_TO_DEVICE, 1 << 9);
    b.dma.mapSingle(dev, pa, 0x10n, DMA_TO_DEVICE);
    b.dma.unmapSingle(dev, ok, 0x10n, DMA_TO_DEVICE);
    b.dma.unmapSingle(bare, pa, 0x10n, DMA_TO_DEVICE);
    const dmaEvents = rec
      .stop()
      .filter((r) => r.event.startsWith("dma:"))
      .map((r) => [r.event, r.track, r.fields]);
    expect(dmaEvents).toEqual([
      [
        "dma:map",
        "dev0",
        {
          device: "dev0",
          kind: "page",
          iova: 0x1008n,
          paddr: pa + 8n,
          size: 0x10n,
          dir: "TO_DEVICE",
          attrs: 1 << 9,
        },
      ],
      [
        "dma:map",
        "dev0",
        {
          device: "dev0",
          kind: "page",
          iova: DMA_MAPPING_ERROR,
          paddr: pa,
          size: 0x10n,
          dir: "TO_DEVICE",
          attrs: 0,
        },
      ],
      [
        "dma:unmap",
        "dev0",
        {
          device: "dev0",
          kind: "page",
          iova: 0x1008n,
          size: 0x10n,
          dir: "TO_DEVICE",
          attrs: 0,
          mode: "strict",
        },
      ],
      [
        "dma:unmap",
        "bare0",
        {
          device: "bare0",
          kind: "page",
          iova: pa,
          size: 0x10n,
          dir: "TO_DEVICE",
          attrs: 0,
          mode: "direct",
        },
      ],
    ]);
  });

  it("resource, sg and coherent calls: one dma:map / dma:unmap each with its kind and mode, and their counters", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const bare = b.platformDev("bare0", 2, { iommu: false });
    const p = buffer(b, 2);
    const bar = 0x4000_0000n;
    const rec = b.ctx.trace.record();
    const res = b.dma.mapResource(dev, bar + 0x10n, 0x100n, DMA_BIDIRECTIONAL, 1 << 5);
    b.dma.unmapResource(dev, res, 0x100n, DMA_BIDIRECTIONAL);
    const sgl = sgInitTable(2);
    sgSetBuf(sgl[0]!, p, 0x1000);
    sgSetBuf(sgl[1]!, p + 0x1000n, 0x80);
    expect(b.dma.mapSg(dev, sgl, 2, DMA_TO_DEVICE)).toBe(1);
    const sgIova = sgl[0]!.dmaAddress;
    b.dma.unmapSg(dev, sgl, 2, DMA_TO_DEVICE);
    const buf = b.dma.allocCoherent(bare, 0x1000n)!;
    b.dma.freeCoherent(bare, 0x1000n, buf, buf.dmaHandle);
    const events = rec
      .stop()
      .filter((r) => r.event.startsWith("dma:"))
      .map((r) => [r.event, r.fields]);
    const common = { device: "dev0", attrs: 0 };
    expect(events).toEqual([
      [
        "dma:map",
        {
          ...common,
          kind: "resource",
          iova: res,
          paddr: bar + 0x10n,
          size: 0x100n,
          dir: "BIDIRECTIONAL",
          attrs: 1 << 5,
        },
      ],
      [
        "dma:unmap",
        {
          ...common,
          kind: "resource",
          iova: res,
          size: 0x100n,
          dir: "BIDIRECTIONAL",
          mode: "strict",
        },
      ],
      [
        "dma:map",
        { ...common, kind: "sg", iova: sgIova, paddr: p, size: 0x1080n, dir: "TO_DEVICE" },
      ],
      [
        "dma:unmap",
        { ...common, kind: "sg", iova: sgIova, size: 0x1080n, dir: "TO_DEVICE", mode: "strict" },
      ],
      [
        "dma:map",
        {
          ...common,
          device: "bare0",
          kind: "alloc",
          iova: buf.dmaHandle,
          paddr: buf.dmaHandle,
          size: 0x1000n,
          dir: "BIDIRECTIONAL",
        },
      ],
      [
        "dma:unmap",
        {
          ...common,
          device: "bare0",
          kind: "alloc",
          iova: buf.dmaHandle,
          size: 0x1000n,
          dir: "BIDIRECTIONAL",
          mode: "direct",
        },
      ],
    ]);
    expect(b.dma.s.stats.toJSON()).toMatchObject({
      map_resource: 1,
      unmap_resource: 1,
      map_sg: 1,
      unmap_sg: 1,
      alloc: 1,
      free: 1,
      mapping_errors: 0,
      bytes_mapped: 0x100 + 0x1080 + 0x1000,
      bytes_unmapped: 0x100 + 0x1080 + 0x1000,
    });
  });

  it("dma:log carries the kernel's log lines (Failed to set up IOMMU … retaining platform DMA ops)", () => {
    // A DMA domain whose range is incompatible with a second device's: EFAULT, dma-direct.
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const domain = b.core.getDmaDomain(dev)!;
    domain.geometry.apertureStart = 0x10_0000n;
    const rec = b.ctx.trace.record();
    b.core.s.dma.setupDmaOps(dev, domain, () => true);
    expect(dev.dmaIommu).toBe(false);
    expect(
      rec
        .stop()
        .filter((r) => r.event === "dma:log")
        .map((r) => r.fields),
    ).toEqual([
      { level: "warn", device: null, message: "Incompatible range for DMA domain" },
      {
        level: "warn",
        device: null,
        message: "Failed to set up IOMMU for device dev0; retaining platform DMA ops",
      },
    ]);
  });
});
