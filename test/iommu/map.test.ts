import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import { err, OK, type Result, unwrap } from "../../src/base/result.js";
import type { MockPagingDomain } from "../../src/drivers/mock/mock-domain.js";
import { IOMMU_FAULT_WRITE, IOMMU_READ, IOMMU_WRITE } from "../../src/iommu/constants.js";
import type { IommuDomain } from "../../src/iommu/domain.js";
import { mockBed, platBed, traceFields } from "./setup.js";

const RW = IOMMU_READ | IOMMU_WRITE;
const SZ_4K = 0x1000n;
const SZ_2M = 0x20_0000n;
const SZ_1G = 0x4000_0000n;

function domainBed(pgsizeBitmap = SZ_4K | SZ_2M | SZ_1G) {
  const b = mockBed({ pgsizeBitmap });
  const dev = unwrap(b.mock.mockDevCreate());
  const dom = unwrap(b.core.pagingDomainAlloc(dev)) as MockPagingDomain;
  return { ...b, dev, dom };
}

function mapLog(log: readonly string[]): string[] {
  return log
    .filter((l) => l.startsWith("map_pages") || l.startsWith("unmap_pages"))
    .map((l) => l.replace(/^(\w+) \d+ /, "$1 "));
}

describe("iommu_map", () => {
  it("refuses non-paging domains (EINVAL) and domains without map_pages or page sizes (ENODEV, WARN)", () => {
    const b = domainBed();
    expect(b.core.map(b.mock.blockedDomain!, 0n, 0n, SZ_4K, RW)).toEqual(err("EINVAL"));
    const noOps = unwrap(b.core.pagingDomainAlloc(b.dev));
    noOps.ops = { ...noOps.ops, mapPages: undefined } as never;
    expect(b.core.map(noOps, 0n, 0n, SZ_4K, RW)).toEqual(err("ENODEV"));
    const noSizes = unwrap(b.core.pagingDomainAlloc(b.dev));
    noSizes.pgsizeBitmap = 0n;
    expect(b.core.map(noSizes, 0n, 0n, SZ_4K, RW)).toEqual(err("ENODEV"));
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual(["iommu_map", "iommu_map"]);
  });

  it("refuses iova, paddr or size not aligned to the smallest page (EINVAL)", () => {
    const b = domainBed(SZ_2M);
    expect(b.core.map(b.dom, 0x1000n, 0n, SZ_2M, RW)).toEqual(err("EINVAL"));
    expect(b.core.map(b.dom, 0n, 0x1000n, SZ_2M, RW)).toEqual(err("EINVAL"));
    expect(b.core.map(b.dom, 0n, 0n, SZ_2M + SZ_4K, RW)).toEqual(err("EINVAL"));
    expect(b.core.map(b.dom, 0n, 0n, SZ_2M, RW)).toEqual(OK);
    expect(b.core.logs().filter((l) => l.message.startsWith("unaligned")).length).toBe(3);
  });

  it("checks alignment over all 64 bits: pages of 8 GiB, addresses beyond 2^53", () => {
    const SZ_8G = 1n << 33n;
    const b = domainBed(SZ_8G);
    // Misaligned only in the high 32 bits of the address.
    expect(b.core.map(b.dom, 1n << 32n, 0n, SZ_8G, RW)).toEqual(err("EINVAL"));
    expect(b.core.map(b.dom, 0n, 3n << 32n, SZ_8G, RW)).toEqual(err("EINVAL"));
    expect(b.core.map(b.dom, 0n, 0n, 3n << 32n, RW)).toEqual(err("EINVAL"));
    expect(b.core.unmap(b.dom, 1n << 32n, SZ_8G)).toBe(0n);
    expect(b.core.logs().filter((l) => l.message.startsWith("unaligned")).length).toBe(4);
    b.mock.log.length = 0;
    expect(b.core.map(b.dom, 0n, SZ_8G, SZ_8G, RW)).toEqual(OK);
    expect(mapLog(b.mock.log)).toEqual(["map_pages 0x0 0x200000 33 1"]);
    // 2^60 + 4 KiB is not a double: the page numbers come out exact all the same.
    const hi = domainBed(SZ_4K);
    const iova = (1n << 60n) + 0x1000n;
    const pa = (1n << 55n) + 0x7000n;
    hi.mock.log.length = 0;
    expect(hi.core.map(hi.dom, iova, pa, 0x2000n, RW)).toEqual(OK);
    expect(mapLog(hi.mock.log)).toEqual(["map_pages 0x1000000000001 0x80000000007 12 2"]);
    expect(hi.core.iovaToPhys(hi.dom, iova + 0x1234n)).toBe(pa + 0x1234n);
    expect(hi.core.unmap(hi.dom, iova, 0x2000n)).toBe(0x2000n);
    expect(hi.core.map(hi.dom, iova + 0x800n, pa, 0x1000n, RW)).toEqual(err("EINVAL"));
  });

  it("splits greedily into the largest pages the size and both alignments allow", () => {
    const b = domainBed();
    b.mock.log.length = 0;
    expect(b.core.map(b.dom, 0x1f_f000n, 0x3f_f000n, SZ_2M + SZ_4K, RW)).toEqual(OK);
    expect(b.core.map(b.dom, SZ_1G, 0n, SZ_1G + SZ_2M + SZ_4K, RW)).toEqual(OK);
    // iova and paddr at different offsets within 2 MiB: 4 KiB pages only.
    expect(b.core.map(b.dom, 0x8000_0000n, 0x20_1000n, 2n * SZ_2M, RW)).toEqual(OK);
    expect(mapLog(b.mock.log)).toEqual([
      "map_pages 0x1ff 0x3ff 12 1",
      "map_pages 0x200 0x400 21 1",
      "map_pages 0x40000 0x0 30 1",
      "map_pages 0x80000 0x40000 21 1",
      "map_pages 0x80200 0x40200 12 1",
      "map_pages 0x80000 0x201 12 1024",
    ]);
    expect(b.core.iovaToPhys(b.dom, 0x20_0123n)).toBe(0x40_0123n);
  });

  it("emits the map tracepoint with the caller's range, then calls iotlb_sync_map", () => {
    const b = domainBed();
    const rec = b.ctx.trace.record();
    b.mock.log.length = 0;
    expect(b.core.map(b.dom, 0x10_0000n, 0x20_0000n, 0x3000n, RW)).toEqual(OK);
    expect(traceFields(rec.stop(), "iommu:map")).toEqual([
      { iova: 0x10_0000n, paddr: 0x20_0000n, size: 0x3000n },
    ]);
    expect(b.mock.log.at(-1)).toBe(`iotlb_sync_map ${b.dom.id} 0x100 3`);
  });

  it("unmaps what a failing map_pages reported as mapped, and returns its error", () => {
    const b = domainBed(SZ_4K);
    b.mock.faults.arm({ op: "map_pages", nth: 1, errno: "ENOMEM", partialPages: 2 });
    const rec = b.ctx.trace.record();
    expect(b.core.map(b.dom, 0x10_0000n, 0x20_0000n, 0x4000n, RW)).toEqual(err("ENOMEM"));
    const r = rec.stop();
    expect(b.dom.pfns.size).toBe(0);
    expect(traceFields(r, "iommu:map")).toEqual([]);
    expect(traceFields(r, "iommu:unmap")).toEqual([
      { iova: 0x10_0000n, size: 0x2000n, unmapped_size: 0x2000n },
    ]);
  });

  it("unmaps the whole range when iotlb_sync_map fails", () => {
    const b = domainBed();
    b.mock.faults.arm({ op: "iotlb_sync_map", nth: 1, errno: "EIO" });
    expect(b.core.map(b.dom, SZ_2M, SZ_2M, SZ_2M, RW)).toEqual(err("EIO"));
    expect(b.dom.pfns.size).toBe(0);
  });

  it("refuses a freed domain as a use after free", () => {
    const b = domainBed();
    b.core.domainFree(b.dom);
    expect(() => b.core.map(b.dom, 0n, 0n, SZ_4K, RW)).toThrow(SimError);
    expect(() => b.core.map(b.dom, -1n, 0n, SZ_4K, RW)).toThrow(SimError);
  });
});

describe("iommu_unmap", () => {
  it("unmaps until the size is covered or a hole, traces, and syncs once", () => {
    const b = domainBed(SZ_4K);
    unwrap(b.core.map(b.dom, 0x1_0000n, 0x5_0000n, 0x2000n, RW));
    unwrap(b.core.map(b.dom, 0x1_3000n, 0x6_0000n, 0x1000n, RW));
    const rec = b.ctx.trace.record();
    b.mock.log.length = 0;
    expect(b.core.unmap(b.dom, 0x1_0000n, 0x4000n)).toBe(0x2000n);
    expect(traceFields(rec.stop(), "iommu:unmap")).toEqual([
      { iova: 0x1_0000n, size: 0x4000n, unmapped_size: 0x2000n },
    ]);
    expect(b.mock.log.filter((l) => l.startsWith("iotlb_sync ")).length).toBe(1);
    expect(b.core.iovaToPhys(b.dom, 0x1_3000n)).toBe(0x6_0000n);
    // A hole at the start: nothing.
    expect(b.core.unmap(b.dom, 0x1_0000n, 0x1000n)).toBe(0n);
  });

  it("returns 0 without a tracepoint for non-paging domains and misaligned ranges", () => {
    const b = domainBed(SZ_2M);
    const rec = b.ctx.trace.record();
    expect(b.core.unmap(b.mock.blockedDomain!, 0n, SZ_2M)).toBe(0n);
    expect(b.core.unmap(b.dom, SZ_4K, SZ_2M)).toBe(0n);
    expect(b.core.unmap(b.dom, 0n, 0x800n)).toBe(0n);
    expect(traceFields(rec.stop(), "iommu:unmap")).toEqual([]);
  });

  it("unmaps a large mapping with the page sizes it was mapped with", () => {
    const b = domainBed();
    unwrap(b.core.map(b.dom, 0n, 0n, SZ_2M + 2n * SZ_4K, RW));
    b.mock.log.length = 0;
    expect(b.core.unmap(b.dom, 0n, SZ_2M + 2n * SZ_4K)).toBe(SZ_2M + 2n * SZ_4K);
    expect(mapLog(b.mock.log)).toEqual([
      "unmap_pages 0x0 21 1 -> 512",
      "unmap_pages 0x200 12 2 -> 2",
    ]);
  });

  it("the page-number forms agree with the byte forms", () => {
    const b = domainBed();
    expect(b.core.mapPfn(b.dom, 0x200, 0x400, 513, RW)).toEqual(OK);
    expect(b.dom.mappings()).toEqual([
      { iova: SZ_2M, paddr: 2n * SZ_2M, size: SZ_2M + SZ_4K, prot: RW },
    ]);
    expect(b.core.mapPfn(b.dom, 0x1, 0x400, 1, RW)).toEqual(OK);
    expect(b.core.unmapPfn(b.dom, 0x200, 513)).toBe(513);
    expect(b.core.unmapPfn(b.dom, 0x1, 1)).toBe(1);
    expect(b.dom.pfns.size).toBe(0);
    const big = domainBed(SZ_2M);
    expect(big.core.mapPfn(big.dom, 1, 0, 512, RW)).toEqual(err("EINVAL"));
  });
});

describe("iommu_iova_to_phys", () => {
  it("identity domains translate 1:1, blocked ones to 0, paging ones through the driver", () => {
    const b = platBed({ staticIdentity: true });
    const d = b.dev("d");
    expect(b.core.iovaToPhys(b.mock.identityDomain!, 0xdead_b000n)).toBe(0xdead_b000n);
    expect(b.core.iovaToPhys(b.mock.blockedDomain!, 0xdead_b000n)).toBe(0n);
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.iovaToPhys(dom, 0x1000n)).toBe(0n);
    unwrap(b.core.map(dom, 0x1000n, 0x9000n, 0x1000n, RW));
    expect(b.core.iovaToPhys(dom, 0x1abcn)).toBe(0x9abcn);
  });

  it("the page-number form: identity 1:1, blocked -1, a driver without iovaToPhysPfn through its bigint op", () => {
    const b = platBed({ staticIdentity: true });
    const d = b.dev("d");
    expect(b.core.iovaToPhysPfn(b.mock.identityDomain!, 0xdead_b)).toBe(0xdead_b);
    expect(b.core.iovaToPhysPfn(b.mock.blockedDomain!, 0xdead_b)).toBe(-1);
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(dom.ops?.iovaToPhysPfn).toBeUndefined();
    expect(b.core.iovaToPhysPfn(dom, 1)).toBe(-1);
    unwrap(b.core.map(dom, 0x20_0000n, 0x40_0000n, SZ_2M, RW));
    expect(b.core.iovaToPhysPfn(dom, 0x201)).toBe(0x401);
    expect(b.core.iovaToPhysPfn(dom, 0x3ff)).toBe(0x5ff);
    expect(b.core.iovaToPhysPfn(dom, 0x400)).toBe(-1);
    b.core.domainFree(dom);
    expect(() => b.core.iovaToPhysPfn(dom, 0x201)).toThrow(/use after free/);
  });
});

describe("legacy fault reporting", () => {
  it("report_iommu_fault: ENOSYS without a handler, always the io_page_fault tracepoint", () => {
    const b = domainBed();
    const rec = b.ctx.trace.record();
    expect(b.core.reportIommuFault(b.dom, b.dev, 0xbeef_0000n, IOMMU_FAULT_WRITE)).toEqual(
      err("ENOSYS"),
    );
    expect(traceFields(rec.stop(), "iommu:io_page_fault")).toEqual([
      { device: b.dev.name, driver: "iommufd_mock", iova: 0xbeef_0000n, flags: IOMMU_FAULT_WRITE },
    ]);
  });

  it("calls the installed handler with its token and returns its answer", () => {
    const b = domainBed();
    const seen: unknown[] = [];
    const handler = (
      d: IommuDomain,
      dev: unknown,
      iova: bigint,
      flags: number,
      token: unknown,
    ): Result => {
      seen.push([d, dev, iova, flags, token]);
      return err("EAGAIN");
    };
    b.core.setFaultHandler(b.dom, handler, "tok");
    expect(b.dom.cookieType).toBe("FAULT_HANDLER");
    expect(b.core.reportIommuFault(b.dom, b.dev, 0x1000n, 0)).toEqual(err("EAGAIN"));
    expect(seen).toEqual([[b.dom, b.dev, 0x1000n, 0, "tok"]]);
    // The cookie is taken: a second handler is refused with a WARN.
    b.core.setFaultHandler(b.dom, () => OK, null);
    expect(b.core.reportIommuFault(b.dom, b.dev, 0x1000n, 0)).toEqual(err("EAGAIN"));
    expect(b.ctx.warnings.list().map((w) => w.site)).toEqual(["iommu_set_fault_handler"]);
  });

  it("refuses a fault handler on a DMA-API domain (its cookie is the IOVA cookie)", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d");
    const dma = b.core.groupOf(d)!.defaultDomain!;
    b.core.setFaultHandler(dma, () => OK, null);
    expect(dma.cookieType).toBe("DMA_IOVA");
    expect(b.ctx.warnings.count).toBe(1);
  });
});
