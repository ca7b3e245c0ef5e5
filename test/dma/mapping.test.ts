// The streaming DMA API on a RISC-V IOMMU: ops selection, masks, map/unmap of single buffers,
// reserved regions, identity and IOMMU-less devices, and every place the kernel fails a mapping.

import { describe, expect, it } from "vitest";
import { OK } from "../../src/base/result.js";
import { BusType, Device } from "../../src/bus/device.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { pciDevId } from "../../src/bus/pci.js";
import {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_NONE,
  DMA_TO_DEVICE,
} from "../../src/dma/constants.js";
import { iommuDmaInitDomain, iommuGetDmaCookie } from "../../src/dma/dma-iommu.js";
import { dmaApiOf, installDmaApi } from "../../src/dma/mapping.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/iommu/constants.js";
import { buffer, dmaBed, RAM_BASE, unwrap } from "./setup.js";

const K4 = 0x1000n;

describe("ops selection and masks", () => {
  it("a device on a DMA default domain uses dma-iommu with 32-bit masks; one without an IOMMU uses dma-direct", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 1);
    const bare = b.platformDev("bare0", 2, { iommu: false });
    expect(b.dma.opsKind(dev)).toBe("dma-iommu");
    expect(b.dma.opsKind(bare)).toBe("dma-direct");
    expect(b.dma.deviceView(dev)).toMatchObject({
      device: "dev0",
      ops: "dma-iommu",
      dma_mask: "0xffffffff",
      coherent_dma_mask: "0xffffffff",
      dma_parms: { max_segment_size: 0x10000, segment_boundary_mask: "0xffffffffffffffff" },
      domain_type: "DMA",
      mode: "strict",
    });
    expect(b.dma.deviceView(bare)).toMatchObject({ ops: "dma-direct", domain: null });
    expect(dmaApiOf(b.core)).toBe(b.dma);
    expect(() => installDmaApi(b.core, { memory: b.memory, frames: b.frames })).toThrow(
      /already installed/,
    );
  });

  it("a released device is dma-direct: release clears dma_iommu (iommu_deinit_device)", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 1);
    expect(b.dma.opsKind(dev)).toBe("dma-iommu");
    b.model.deviceDel(dev);
    expect(dev.dmaIommu).toBe(false);
    expect(b.dma.opsKind(dev)).toBe("dma-direct");
    const pa = buffer(b);
    expect(b.dma.mapSingle(dev, pa, K4, DMA_TO_DEVICE)).toBe(pa);
  });

  it("PCI devices get the PCI defaults and the 32-bit IOVA workaround", () => {
    const b = dmaBed();
    const nic = b.pciHost((h) => h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" }))(
      "nic0",
    );
    expect(b.dma.deviceView(nic)).toMatchObject({
      ops: "dma-iommu",
      dma_mask: "0xffffffff",
      dma_parms: { max_segment_size: 0x10000, segment_boundary_mask: "0xffffffff" },
      pci_32bit_workaround: true,
    });
  });

  it("dma_set_mask: any mask through the IOMMU; dma-direct refuses masks below its memory (EIO)", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 1);
    const bare = b.platformDev("bare0", 2, { iommu: false });
    expect(b.dma.setMask(dev, DMA_BIT_MASK(20))).toEqual(OK);
    expect(b.dma.getMask(dev)).toBe(0xfffffn);
    // RAM ends at 0x8400_0000: min_mask = 0x83fff000.
    expect(b.dma.setMask(bare, DMA_BIT_MASK(31))).toEqual({ ok: false, errno: "EIO" });
    expect(b.dma.setMask(bare, 0x83ff_ffffn)).toEqual(OK);
    expect(b.dma.setMaskAndCoherent(bare, DMA_BIT_MASK(24))).toEqual({ ok: false, errno: "EIO" });
    expect(b.dma.getCoherentMask(bare)).toBe(0xffff_ffffn);
    expect(b.dma.setMaskAndCoherent(bare, DMA_BIT_MASK(64))).toEqual(OK);
    expect(b.dma.getCoherentMask(bare)).toBe(DMA_BIT_MASK(64));
  });

  it("a device without a dma_mask pointer: EIO, WARN_ON_ONCE and DMA_MAPPING_ERROR until coerced", () => {
    const b = dmaBed();
    // A device on a bus with no DMA set-up (like the iommufd mock bus).
    const fresh = new Device("odd0", new BusType("odd"));
    expect(b.dma.deviceView(fresh)).toMatchObject({ dma_mask: null, coherent_dma_mask: "0x0" });
    expect(b.dma.setMask(fresh, DMA_BIT_MASK(64))).toEqual({ ok: false, errno: "EIO" });
    const before = b.ctx.warnings.count;
    expect(b.dma.mapSingle(fresh, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(b.dma.mapSingle(fresh, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(b.ctx.warnings.count).toBe(before + 1);
    expect(b.dma.coerceMaskAndCoherent(fresh, DMA_BIT_MASK(64))).toEqual(OK);
    expect(b.dma.mapSingle(fresh, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(RAM_BASE);
  });

  it("dma_coerce_mask_and_coherent points dma_mask at coherent_dma_mask: one mask from then on", () => {
    const b = dmaBed();
    const get = b.pciHost((h) => {
      h.addRootPort({ acs: true }).addEndpoint({ name: "ep0" });
    });
    const dev = get("ep0");
    expect(b.dma.coerceMaskAndCoherent(dev, DMA_BIT_MASK(48))).toEqual(OK);
    expect(b.dma.getMask(dev)).toBe(DMA_BIT_MASK(48));
    // The kernel stores through one pointer now: setting either mask sets both.
    expect(b.dma.setCoherentMask(dev, DMA_BIT_MASK(40))).toEqual(OK);
    expect(b.dma.getMask(dev)).toBe(DMA_BIT_MASK(40));
    expect(b.dma.setMask(dev, DMA_BIT_MASK(36))).toEqual(OK);
    expect(b.dma.getCoherentMask(dev)).toBe(DMA_BIT_MASK(36));
  });

  it("an invalid direction is a BUG_ON (simulator misuse)", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 1);
    expect(() => b.dma.mapSingle(dev, RAM_BASE, K4, DMA_NONE)).toThrow(/invalid DMA direction/);
    expect(() => b.dma.mapSingle(dev, RAM_BASE, 0n, DMA_TO_DEVICE)).toThrow(/size/);
  });
});

describe("dma_map_single / dma_unmap_single through the RISC-V IOMMU", () => {
  it("returns an IOVA below the 32-bit mask that translates to the buffer, in software and hardware", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const pa = buffer(b) + 0x234n;
    const iova = b.dma.mapSingle(dev, pa, 0x100n, DMA_BIDIRECTIONAL);
    expect(b.dma.mappingError(dev, iova)).toEqual(OK);
    expect(iova).toBeLessThan(1n << 32n);
    expect(iova & 0xfffn).toBe(0x234n);
    const domain = b.core.getDmaDomain(dev)!;
    expect(b.core.iovaToPhys(domain, iova)).toBe(pa);
    expect(b.translate(7, iova, "write")).toBe(pa);
    // Top-down below 4 GiB: the first page is the last one under the mask.
    expect(iova >> 12n).toBe(0xfffffn);
  });

  it("the direction decides the permission: TO_DEVICE is read-only for the device", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const pa = buffer(b);
    const to = b.dma.mapSingle(dev, pa, K4, DMA_TO_DEVICE);
    expect(b.translate(7, to, "read")).toBe(pa);
    expect(b.translate(7, to, "write")).toBe("write_page_fault");
    const from = b.dma.mapSingle(dev, pa, K4, DMA_FROM_DEVICE);
    expect(b.translate(7, from, "write")).toBe(pa);
  });

  it("a buffer across pages maps whole pages at the same offset", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const pa = buffer(b, 3) + 0xf00n;
    const iova = b.dma.mapSingle(dev, pa, 0x1200n, DMA_BIDIRECTIONAL);
    expect(iova & 0xfffn).toBe(0xf00n);
    for (const d of [0n, 0x100n, 0x1100n, 0x11ffn]) expect(b.translate(7, iova + d)).toBe(pa + d);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    const alloc = cookie.iovad!.findIova(Number(iova >> 12n))!;
    // Three pages are needed; a cacheable size is rounded up to a power of two.
    expect(alloc.pfnHi - alloc.pfnLo + 1).toBe(4);
  });

  it("strict unmap: the IOTLB is invalidated before the IOVA is freed, the old IOVA faults, the next map reuses it", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const pa = buffer(b);
    const iova = b.dma.mapSingle(dev, pa, K4, DMA_BIDIRECTIONAL);
    expect(b.translate(7, iova)).toBe(pa); // the IOTLB now holds it
    const rec = b.ctx.trace.record();
    b.dma.unmapSingle(dev, iova, K4, DMA_BIDIRECTIONAL);
    const events = rec.stop();
    const cmds = events.filter((r) => r.event === "riscv_iommu:command").map((r) => r.fields);
    expect(cmds.map((c) => (c as { opcode: string }).opcode)).toEqual([
      "IOTINVAL.VMA",
      "IOFENCE.C",
    ]);
    expect(events.find((r) => r.event === "dma:unmap")?.fields).toMatchObject({
      device: "dev0",
      kind: "page",
      iova,
      size: K4,
      mode: "strict",
    });
    expect(b.translate(7, iova)).toBe("read_page_fault");
    expect(b.dma.mapSingle(dev, pa, K4, DMA_BIDIRECTIONAL)).toBe(iova);
    expect(b.dma.s.stats.toJSON()).toMatchObject({ map_page: 2, unmap_page: 1, iotlb_syncs: 1 });
  });

  it("unmapping an address that is not mapped WARNs and changes nothing", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const iova = b.dma.mapSingle(dev, buffer(b), K4, DMA_BIDIRECTIONAL);
    const before = b.ctx.warnings.count;
    b.dma.unmapSingle(dev, 0x1234_5000n, K4, DMA_BIDIRECTIONAL);
    expect(b.ctx.warnings.list().at(-1)?.site).toBe("iommu_dma_unmap_page");
    expect(b.ctx.warnings.count).toBe(before + 1);
    expect(typeof b.translate(7, iova)).toBe("bigint");
  });

  it("a 64-bit platform device gets IOVAs at the top of the aperture; PCI devices stay below 4 GiB first", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    unwrap(b.dma.setMaskAndCoherent(dev, DMA_BIT_MASK(64)));
    const domain = b.core.getDmaDomain(dev)!;
    const iova = b.dma.mapSingle(dev, buffer(b), K4, DMA_BIDIRECTIONAL);
    expect(iova).toBe(domain.geometry.apertureEnd - 0xfffn);

    const nic = b.pciHost((h) => h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" }))(
      "nic0",
    );
    unwrap(b.dma.setMaskAndCoherent(nic, DMA_BIT_MASK(64)));
    const pciIova = b.dma.mapSingle(nic, buffer(b), K4, DMA_BIDIRECTIONAL);
    expect(pciIova).toBe(0xffff_f000n);
  });

  it('PCI: when nothing fits below 4 GiB the workaround is dropped for good ("Using 56-bit DMA addresses")', () => {
    const b = dmaBed();
    const get = b.pciHost((h) => h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" }));
    const nic = get("nic0");
    unwrap(b.dma.setMaskAndCoherent(nic, DMA_BIT_MASK(64)));
    const big = b.dma.mapSingle(nic, RAM_BASE, 1n << 32n, DMA_TO_DEVICE);
    expect(big).not.toBe(DMA_MAPPING_ERROR);
    expect(big).toBeGreaterThan(0xffff_ffffn);
    expect(nic.iommu!.pci32bitWorkaround).toBe(false);
    expect(b.dma.logs().at(-1)).toEqual({
      level: "notice",
      device: nic.name,
      message: "Using 56-bit DMA addresses",
    });
    expect(b.dma.mapSingle(nic, buffer(b), K4, DMA_TO_DEVICE)).toBeGreaterThan(0xffff_ffffn);
    expect(b.translate(pciDevId(nic.fn), big + 0x1234_5678n)).toBe(RAM_BASE + 0x1234_5678n);
  });

  it("iommu.forcedac: PCI devices go straight to the full mask", () => {
    const b = dmaBed({ forcedac: true });
    const nic = b.pciHost((h) => h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" }))(
      "nic0",
    );
    expect(nic.iommu!.pci32bitWorkaround).toBe(false);
    unwrap(b.dma.setMaskAndCoherent(nic, DMA_BIT_MASK(64)));
    expect(b.dma.mapSingle(nic, buffer(b), K4, DMA_TO_DEVICE)).toBeGreaterThan(0xffff_ffffn);
  });

  it("out of IOVA space below the mask: DMA_MAPPING_ERROR (dma_mapping_error → ENOMEM), the mapping is not made", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    // pfns 1..3 only.
    unwrap(b.dma.setMask(dev, DMA_BIT_MASK(14)));
    const got = [0, 1, 2].map(() => b.dma.mapSingle(dev, buffer(b), K4, DMA_TO_DEVICE));
    expect(got).toEqual([0x3000n, 0x2000n, 0x1000n]);
    const fail = b.dma.mapSingle(dev, buffer(b), K4, DMA_TO_DEVICE);
    expect(fail).toBe(DMA_MAPPING_ERROR);
    expect(b.dma.mappingError(dev, fail)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(b.dma.s.stats.mappingErrors).toBe(1);
  });

  it("an iommu_map failure frees the IOVA again (mock fault injection)", () => {
    const b = dmaBed({ iommu: { mock: {} } });
    const dev = b.platformDev("dev0", 7);
    b.mock!.faults.arm({ op: "map_pages", nth: 1, errno: "ENOMEM" });
    expect(b.dma.mapSingle(dev, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    // free_iova_fast: the range went back to the range cache, nothing stays allocated.
    expect(cookie.iovad!.toJSON()).toMatchObject({
      ranges: [{ pfn_lo: "0x7ffff", kind: "cached" }],
    });
    expect(b.core.iovaToPhys(b.core.getDmaDomain(dev)!, 0x7fff_f000n)).toBe(0n);
    // The next map gets the same IOVA from the cache and works.
    const iova = b.dma.mapSingle(dev, RAM_BASE, K4, DMA_TO_DEVICE);
    expect(iova).toBe(0x7fff_f000n);
  });
});

describe("the IOVA cookie", () => {
  it("iommu_get_dma_cookie: EEXIST on a domain with a cookie; iommu_dma_init_domain: EINVAL without a DMA_IOVA cookie", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const dma = b.core.getDmaDomain(dev)!;
    expect(iommuGetDmaCookie(dma)).toEqual({ ok: false, errno: "EEXIST" });
    const unmanaged = unwrap(b.core.pagingDomainAlloc(dev));
    expect(unmanaged.cookieType).toBe("NONE");
    expect(iommuDmaInitDomain(b.dma.s, unmanaged, dev, () => true)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    expect(iommuGetDmaCookie(unmanaged)).toEqual(OK);
    expect(unmanaged.cookieType).toBe("DMA_IOVA");
  });
});

describe("deferred attach (is_attach_deferred, e.g. kdump)", () => {
  it("the first map attaches the default domain; a failing attach fails the map", () => {
    const b = dmaBed({ iommu: { mock: { attachDeferred: true } } });
    const dev = b.platformDev("dev0", 7);
    expect(dev.iommu!.attachDeferred).toBe(true);
    const attaches = () => b.mock!.log.filter((l) => l.startsWith("attach_dev dev0")).length;
    expect(attaches()).toBe(0);
    b.mock!.faults.arm({ op: "attach_dev", nth: 1, errno: "ENOSPC" });
    expect(b.dma.mapSingle(dev, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(dev.iommu!.attachDeferred).toBe(true);
    expect(b.dma.mapSingle(dev, RAM_BASE, K4, DMA_TO_DEVICE)).not.toBe(DMA_MAPPING_ERROR);
    expect(dev.iommu!.attachDeferred).toBe(false);
    expect(attaches()).toBe(2);
  });
});

describe("reserved regions and the aperture", () => {
  it("firmware RESERVED and MSI regions are never handed out; SW_MSI is left to the DMA layer", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7, {
      resv: [
        { start: 0xffff_0000n, length: 0x1_0000n, prot: 0, type: IOMMU_RESV.RESERVED },
        { start: 0xfffe_0000n, length: 0x2000n, prot: IOMMU_WRITE, type: IOMMU_RESV.MSI },
        { start: 0xfffd_0000n, length: 0x1_0000n, prot: IOMMU_WRITE, type: IOMMU_RESV.SW_MSI },
      ],
    });
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    expect(cookie.msiPages).toEqual([0xfffe_0000n, 0xfffe_1000n]);
    const kinds = (cookie.iovad!.toJSON() as { ranges: Array<{ pfn_lo: string; kind: string }> })
      .ranges;
    expect(kinds).toEqual([
      expect.objectContaining({ pfn_lo: "0xfffe0", kind: "reserved" }),
      expect.objectContaining({ pfn_lo: "0xffff0", kind: "reserved" }),
    ]);
    const iovas: bigint[] = [];
    for (let i = 0; i < 40; i++) iovas.push(b.dma.mapSingle(dev, buffer(b), K4, DMA_TO_DEVICE));
    for (const a of iovas) {
      expect(a >= 0xfffe_0000n && a < 0xfffe_2000n).toBe(false);
      expect(a >= 0xffff_0000n).toBe(false);
    }
    // The SW_MSI window is ordinary IOVA space here: allocation runs through it.
    expect(iovas.some((a) => a >= 0xfffd_0000n && a < 0xfffe_0000n)).toBe(true);
  });

  it("a PCI device's IOVA domain reserves its host bridge's memory window", () => {
    const b = dmaBed();
    const nic = b.pciHost((h) => h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" }))(
      "nic0",
    );
    unwrap(b.dma.setMask(nic, DMA_BIT_MASK(31)));
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(nic)!)!;
    expect(cookie.iovad!.ranges()).toContainEqual(
      expect.objectContaining({ pfnLo: 0x40000, pfnHi: 0x7ffff }),
    );
    // The 2 GiB mask ends inside the window: IOVAs come from below it.
    expect(b.dma.mapSingle(nic, buffer(b), K4, DMA_TO_DEVICE)).toBe(0x3fff_f000n);
  });

  it("the IOVA domain starts at the aperture (mock aperture 16 MiB .. 2 GiB) with the smallest page as granule", () => {
    const b = dmaBed({ iommu: { mock: {} } });
    const dev = b.platformDev("dev0", 7);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    expect(cookie.iovad!.startPfn).toBe(0x1000);
    expect(cookie.iovad!.granule).toBe(4096);
    unwrap(b.dma.setMask(dev, DMA_BIT_MASK(64)));
    expect(b.dma.mapSingle(dev, RAM_BASE, K4, DMA_TO_DEVICE)).toBe(0x7fff_f000n);
  });
});

describe("dma-direct", () => {
  it("IDENTITY default domain: DMA addresses are physical and the hardware passes them through", () => {
    const b = dmaBed({ core: { passthrough: true } });
    const dev = b.platformDev("dev0", 7);
    expect(b.core.getDmaDomain(dev)!.type).toBe(4);
    expect(b.dma.opsKind(dev)).toBe("dma-direct");
    const pa = buffer(b) + 0x10n;
    const addr = b.dma.mapSingle(dev, pa, 0x20n, DMA_BIDIRECTIONAL);
    expect(addr).toBe(pa);
    expect(b.translate(7, addr, "write")).toBe(pa);
    const rec = b.ctx.trace.record();
    b.dma.unmapSingle(dev, addr, 0x20n, DMA_BIDIRECTIONAL);
    expect(rec.stop().map((r) => r.event)).toEqual(["dma:unmap"]);
  });

  it("a buffer beyond the mask would need swiotlb: dev_WARN_ONCE and DMA_MAPPING_ERROR", () => {
    const b = dmaBed({ ramBase: 0x1_0000_0000n });
    const bare = b.platformDev("bare0", 2, { iommu: false });
    const pa = buffer(b);
    expect(b.dma.mapSingle(bare, pa, K4, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(b.ctx.warnings.list().at(-1)?.site).toBe("dma_direct_map_page");
    unwrap(b.dma.setMask(bare, DMA_BIT_MASK(40)));
    expect(b.dma.mapSingle(bare, pa, K4, DMA_TO_DEVICE)).toBe(pa);
  });

  it("dma_map_resource: physical through dma-direct, IOMMU_MMIO mapping through dma-iommu", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const bare = b.platformDev("bare0", 2, { iommu: false });
    const bar = 0x4000_0000n;
    expect(b.dma.mapResource(bare, bar, K4, DMA_BIDIRECTIONAL)).toBe(bar);
    const iova = b.dma.mapResource(dev, bar + 0x10n, K4, DMA_BIDIRECTIONAL);
    expect(iova & 0xfffn).toBe(0x10n);
    expect(b.translate(7, iova)).toBe(bar + 0x10n);
    b.dma.unmapResource(dev, iova, K4, DMA_BIDIRECTIONAL);
    expect(b.translate(7, iova)).toBe("read_page_fault");
  });

  it("dma-direct dma_map_resource beyond the mask: dev_err_once, WARN_ON_ONCE and DMA_MAPPING_ERROR", () => {
    const b = dmaBed();
    const bare = b.platformDev("bare0", 2, { iommu: false });
    const bar = 0x1_4000_0000n; // above the 32-bit mask the platform bus gives
    const before = b.ctx.warnings.count;
    expect(b.dma.mapResource(bare, bar, K4, DMA_BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR);
    expect(b.dma.mapResource(bare, bar, K4, DMA_BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR);
    expect(b.ctx.warnings.count).toBe(before + 1);
    expect(b.ctx.warnings.list().at(-1)?.site).toBe("dma_direct_map_resource");
    expect(b.dma.logs().filter((l) => l.level === "err")).toHaveLength(1);
  });
});

describe("untrusted devices (no swiotlb)", () => {
  it("whole pages map; a sub-page buffer fails with one dev_warn_once", () => {
    const b = dmaBed();
    const get = b.pciHost((h) => {
      h.addRootPort({ acs: true, externalFacing: true }).addEndpoint({ name: "tb0" });
    });
    const tb = get("tb0");
    expect(tb.untrusted).toBe(true);
    expect(b.dma.mapSingle(tb, buffer(b), K4, DMA_TO_DEVICE)).not.toBe(DMA_MAPPING_ERROR);
    expect(b.dma.mapSingle(tb, buffer(b) + 8n, 64n, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(b.dma.mapSingle(tb, buffer(b), 64n, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(b.dma.logs().filter((l) => l.message.includes("bounce buffers"))).toEqual([
      {
        level: "warn",
        device: tb.name,
        message: "DMA bounce buffers are inactive, unable to map unaligned transaction.",
      },
    ]);
  });
});

describe("owned groups keep the DMA API on the default domain (as the kernel does)", () => {
  it("mappings succeed but the hardware translates through the owner's domain", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const group = b.core.groupOf(dev)!;
    unwrap(b.core.groupClaimDmaOwner(group, "vfio"));
    const pa = buffer(b);
    const iova = b.dma.mapSingle(dev, pa, K4, DMA_BIDIRECTIONAL);
    expect(b.dma.opsKind(dev)).toBe("dma-iommu");
    expect(b.core.iovaToPhys(b.core.getDmaDomain(dev)!, iova)).toBe(pa);
    // The group sits on its blocking domain (DC.tc.V = 0): the device cannot reach the mapping.
    expect(b.translate(7, iova)).toBe("ddt_entry_not_valid");
    b.core.groupReleaseDmaOwner(group);
    expect(b.translate(7, iova)).toBe(pa);
  });
});

describe("prot bits", () => {
  it("dma_info_to_prot maps directions and DMA_ATTR_PRIVILEGED", async () => {
    const { dmaInfoToProt } = await import("../../src/dma/dma-iommu.js");
    const { IOMMU_CACHE, IOMMU_PRIV } = await import("../../src/iommu/constants.js");
    expect(dmaInfoToProt(DMA_BIDIRECTIONAL, true, 0)).toBe(IOMMU_CACHE | IOMMU_READ | IOMMU_WRITE);
    expect(dmaInfoToProt(DMA_TO_DEVICE, false, 0)).toBe(IOMMU_READ);
    expect(dmaInfoToProt(DMA_FROM_DEVICE, false, 1 << 9)).toBe(IOMMU_PRIV | IOMMU_WRITE);
    expect(dmaInfoToProt(DMA_NONE, true, 0)).toBe(0);
  });
});
