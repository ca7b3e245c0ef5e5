// dma_map_sg through dma-iommu: one IOVA range per list, entries widened to whole pages, DMA
// segments merged as __finalise_sg merges them (granule-aligned starts, max segment size, segment
// boundary with padding), errors; and the dma-direct and untrusted (per-entry) paths.

import { describe, expect, it } from "vitest";
import { OK } from "../../src/base/result.js";
import { BusType, Device } from "../../src/bus/device.js";
import {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
} from "../../src/dma/constants.js";
import {
  SG_DMA_SWIOTLB,
  SgTable,
  sgInitTable,
  sgSetBuf,
  sgTableFromBuffers,
} from "../../src/dma/scatterlist.js";
import { buffer, dmaBed, unwrap } from "./setup.js";

const K4 = 0x1000;

function segments(sgt: SgTable): Array<[bigint, number]> {
  return sgt.sgl.slice(0, sgt.nents).map((s) => [s.dmaAddress, s.dmaLength]);
}

describe("dma_map_sg through the RISC-V IOMMU", () => {
  it("page-aligned entries, physically scattered, become one IOVA-contiguous DMA segment", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const base = buffer(b, 8);
    const pages = [base + 0x5000n, base, base + 0x2000n];
    const sgt = sgTableFromBuffers(pages.map((p) => [p, K4] as const));
    expect(b.dma.mapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toEqual(OK);
    expect(sgt.nents).toBe(1);
    const [addr, len] = segments(sgt)[0]!;
    expect(len).toBe(3 * K4);
    pages.forEach((p, i) => {
      expect(b.translate(7, addr + BigInt(i * K4) + 0x10n)).toBe(p + 0x10n);
    });
    // The entries are restored for the CPU side.
    expect(sgt.sgl.map((s) => [s.page, s.offset, s.length])).toEqual(pages.map((p) => [p, 0, K4]));
    expect(sgt.sgl[1]!.dmaLength).toBe(0);
    b.dma.unmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    for (let i = 0; i < 3; i++) {
      expect(b.translate(7, addr + BigInt(i * K4))).toBe("read_page_fault");
    }
  });

  it("an entry ending at its page's end joins the next; one ending inside a page closes its segment", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const p = buffer(b, 4);
    const joined = sgTableFromBuffers([
      [p + 0x800n, 0x800],
      [p + 0x2000n, 0x1000],
    ]);
    unwrap(b.dma.mapSgtable(dev, joined, DMA_TO_DEVICE));
    const [a, len] = segments(joined)[0]!;
    expect([joined.nents, a & 0xfffn, len]).toEqual([1, 0x800n, 0x1800]);
    expect(b.translate(7, a)).toBe(p + 0x800n);
    expect(b.translate(7, a + 0x800n)).toBe(p + 0x2000n);

    const split = sgTableFromBuffers([
      [p + 0x1000n, 0x100],
      [p + 0x3000n, 0x1000],
    ]);
    unwrap(b.dma.mapSgtable(dev, split, DMA_TO_DEVICE));
    const segs = segments(split);
    expect(segs.length).toBe(2);
    expect(segs[1]![0] - segs[0]![0]).toBe(0x1000n);
    expect(segs.map((s) => s[1])).toEqual([0x100, 0x1000]);
    expect(b.translate(7, segs[1]![0])).toBe(p + 0x3000n);
  });

  it("the maximum segment size splits merged segments", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    b.dma.setMaxSegSize(dev, 0x2000);
    expect(b.dma.getMaxSegSize(dev)).toBe(0x2000);
    const p = buffer(b, 3);
    const sgt = sgTableFromBuffers([0n, 1n, 2n].map((i) => [p + i * 0x1000n, K4] as const));
    unwrap(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE));
    const segs = segments(sgt);
    expect(segs.map((s) => s[1])).toEqual([0x2000, 0x1000]);
    expect(segs[1]![0] - segs[0]![0]).toBe(0x2000n);
  });

  it("an entry that would cross the segment boundary pads the previous one up to it (the pad is mapped)", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    b.dma.setSegBoundary(dev, 0xffffn);
    const p = buffer(b, 32);
    const q = p + 0x1_0000n;
    const sgt = sgTableFromBuffers([
      [p, 0xc000],
      [q, 0xc000],
    ]);
    unwrap(b.dma.mapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    const segs = segments(sgt);
    expect(segs.length).toBe(2);
    const [a0, l0] = segs[0]!;
    const [a1, l1] = segs[1]!;
    expect([l0, l1]).toEqual([0xc000, 0xc000]);
    expect(a1 - a0).toBe(0x1_0000n);
    expect(a1 & 0xffffn).toBe(0n);
    expect(b.translate(7, a1)).toBe(q);
    // The padding maps the physical pages after the first buffer, as the kernel does.
    expect(b.translate(7, a0 + 0xc000n)).toBe(p + 0xc000n);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    const r = cookie.iovad!.findIova(Number(a0 >> 12n))!;
    // 0x1c000 bytes = 28 pages, rounded to 32 (so the range starts on a boundary).
    expect([r.pfnHi - r.pfnLo + 1, r.pfnLo % 16]).toEqual([32, 0]);
    expect(() => b.dma.setSegBoundary(dev, 0x1234n)).toThrow(/2\^n - 1/);
  });

  it("no IOVA space: ENOMEM from dma_map_sgtable, 0 from dma_map_sg, the list restored", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    unwrap(b.dma.setMask(dev, DMA_BIT_MASK(13)));
    const p = buffer(b, 3);
    const sgt = sgTableFromBuffers([
      [p + 0x10n, 0x1000],
      [p + 0x2000n, 0x800],
    ]);
    expect(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(sgt.sgl.map((s) => [s.offset, s.length, s.dmaAddress, s.dmaLength])).toEqual([
      [0x10, 0x1000, DMA_MAPPING_ERROR, 0],
      [0, 0x800, DMA_MAPPING_ERROR, 0],
    ]);
    expect(b.dma.mapSg(dev, sgt.sgl, 2, DMA_TO_DEVICE)).toBe(0);
    expect(b.dma.s.stats.mappingErrors).toBe(2);
  });

  it("a failing iommu_map: the driver's ENOMEM passes, other errnos become EINVAL; the IOVA is freed", () => {
    const b = dmaBed({ iommu: { mock: {} } });
    const dev = b.platformDev("dev0", 7);
    const sgt = sgTableFromBuffers([
      [0x8000_0000n, K4],
      [0x8000_3000n, K4],
    ]);
    // The second run fails after the first was mapped: it is unmapped again.
    b.mock!.faults.arm({ op: "map_pages", nth: 2, errno: "ENOMEM" });
    expect(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE)).toEqual({ ok: false, errno: "ENOMEM" });
    const domain = b.core.getDmaDomain(dev)!;
    expect(b.core.iovaToPhys(domain, 0x7fff_e000n)).toBe(0n);
    b.mock!.faults.arm({ op: "map_pages", nth: 1, errno: "ENOENT" });
    expect(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE)).toEqual({ ok: false, errno: "EINVAL" });
    unwrap(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE));
    // Both failures gave their IOVA range back: the third call gets the same one.
    expect(sgt.sgl[0]!.dmaAddress).toBe(0x7fff_e000n);
  });

  it("traces one dma:map per DMA segment", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const p = buffer(b, 2);
    const sgl = sgInitTable(2);
    sgSetBuf(sgl[0]!, p, K4);
    sgSetBuf(sgl[1]!, p + 0x1000n, 0x80);
    const rec = b.ctx.trace.record();
    expect(b.dma.mapSg(dev, sgl, 2, DMA_TO_DEVICE)).toBe(1);
    const maps = rec.stop().filter((r) => r.event === "dma:map");
    expect(maps.map((r) => r.fields)).toEqual([
      {
        device: "dev0",
        kind: "sg",
        iova: sgl[0]!.dmaAddress,
        paddr: p,
        size: 0x1080n,
        dir: "TO_DEVICE",
        attrs: 0,
      },
    ]);
  });
});

describe("dma_map_sg on the other paths", () => {
  it("dma-direct: every entry is its own physical segment", () => {
    const b = dmaBed({ core: { passthrough: true } });
    const dev = b.platformDev("dev0", 7);
    const p = buffer(b, 2);
    const sgt = sgTableFromBuffers([
      [p, K4],
      [p + 0x1000n, K4],
    ]);
    unwrap(b.dma.mapSgtable(dev, sgt, DMA_TO_DEVICE));
    expect(segments(sgt)).toEqual([
      [p, K4],
      [p + 0x1000n, K4],
    ]);
  });

  it("an untrusted device maps entry by entry (swiotlb path): aligned entries work, an unaligned one fails with EIO", () => {
    const b = dmaBed();
    const tb = b.pciHost((h) => {
      h.addRootPort({ acs: true, externalFacing: true }).addEndpoint({ name: "tb0" });
    })("tb0");
    const p = buffer(b, 2);
    const ok = sgTableFromBuffers([
      [p, K4],
      [p + 0x1000n, K4],
    ]);
    unwrap(b.dma.mapSgtable(tb, ok, DMA_TO_DEVICE));
    expect(ok.nents).toBe(2);
    const [[a0], [a1]] = segments(ok) as [[bigint, number], [bigint, number]];
    expect(a0).not.toBe(a1 - 0x1000n); // separate IOVA ranges, not one merged range
    expect(ok.sgl[0]!.dmaFlags & SG_DMA_SWIOTLB).toBe(SG_DMA_SWIOTLB);
    b.dma.unmapSgtable(tb, ok, DMA_TO_DEVICE);
    // scatterlist.h has sg_dma_mark_swiotlb but no unmark: the mark outlives the unmap.
    expect(ok.sgl[0]!.dmaFlags & SG_DMA_SWIOTLB).toBe(SG_DMA_SWIOTLB);
    const domain = b.core.getDmaDomain(tb)!;
    expect(b.core.iovaToPhys(domain, a0)).toBe(0n);
    expect(b.core.iovaToPhys(domain, a1)).toBe(0n);

    const bad = sgTableFromBuffers([
      [p, K4],
      [p + 0x1010n, 0x10],
    ]);
    const cookie = b.dma.cookieOf(domain)!;
    const [maps, unmaps] = [cookie.maps, cookie.unmaps];
    expect(b.dma.mapSgtable(tb, bad, DMA_TO_DEVICE)).toEqual({ ok: false, errno: "EIO" });
    // The entry mapped before the failure was unmapped again.
    expect([cookie.maps - maps, cookie.unmaps - unmaps]).toEqual([1, 1]);
  });

  it("no dma_mask: WARN_ON_ONCE, dma_map_sg 0 and dma_map_sgtable 0 with nents 0 (no errno)", () => {
    const b = dmaBed();
    const odd = new Device("odd0", new BusType("odd"));
    const sgt = sgTableFromBuffers([[buffer(b), K4]]);
    const before = b.ctx.warnings.count;
    expect(b.dma.mapSg(odd, sgt.sgl, 1, DMA_TO_DEVICE)).toBe(0);
    // __dma_map_sg_attrs returns 0 before its errno check, and dma_map_sgtable only fails on < 0.
    expect(b.dma.mapSgtable(odd, sgt, DMA_TO_DEVICE)).toEqual(OK);
    expect(sgt.nents).toBe(0);
    expect(b.ctx.warnings.count).toBe(before + 1);
    expect(b.ctx.warnings.list().at(-1)?.site).toBe("__dma_map_sg_attrs");
  });

  it("nents beyond the list is simulator misuse", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const sgl = sgInitTable(1);
    sgSetBuf(sgl[0]!, buffer(b), K4);
    expect(() => b.dma.mapSg(dev, sgl, 2, DMA_TO_DEVICE)).toThrow(/nents/);
    expect(() => new SgTable(sgl, 3)).toThrow(/entries/);
  });
});
