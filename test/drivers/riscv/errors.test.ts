// The errno paths of bring-up, probe, allocation, mapping and PASID attach.

import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../../src/base/result.js";
import { Device } from "../../../src/bus/device.js";
import type { RiscvPagingDomain } from "../../../src/drivers/riscv/domain.js";
import { RiscvIommuDevice } from "../../../src/drivers/riscv/iommu.js";
import { RISCV_IOMMU_REG } from "../../../src/drivers/riscv/iommu-bits.js";
import { RiscvIommu } from "../../../src/hw/riscv-iommu/iommu.js";
import { IOMMU_DOMAIN_SVA, IOMMU_READ } from "../../../src/iommu/constants.js";
import { mmAlloc } from "../../../src/mm/fork.js";
import { MmSubsystem } from "../../../src/mm/mm-types.js";
import { bed, dma } from "./setup.js";

/** A bed without IOMMUs, and a hand-made hardware instance for it. */
function bare(caps: ConstructorParameters<typeof RiscvIommu>[3] = {}) {
  const b = bed([{ name: "iommu0" }]);
  const hw = new RiscvIommu(b.ctx, b.memory, "iommu1", caps);
  const hwdev = new Device("iommu1", b.platform);
  b.model.deviceAdd(hwdev);
  const iommu = new RiscvIommuDevice(
    { hw, ctx: b.ctx, core: b.core, memory: b.memory, frames: b.frames, pscids: b.driver.pscids },
    b.driver.events,
  );
  return { ...b, hw, hwdev, iommu };
}

describe("bring-up errors", () => {
  it("EBUSY for an IOMMU left translating (not a kdump kernel)", () => {
    const b = bare();
    b.hw.write64(RISCV_IOMMU_REG.DDTP, (BigInt(b.frames.alloc()) << 10n) | 2n);
    expect(b.driver.register(b.iommu, b.hwdev)).toEqual(err("EBUSY"));
    expect(b.core.iommuDevices()).not.toContain(b.iommu);
  });

  it("ENODEV for an unsupported capabilities.version", () => {
    const b = bare({ capabilities: { version: 0x20 } });
    expect(b.driver.register(b.iommu, b.hwdev)).toEqual(err("ENODEV"));
  });

  it("turns big-endian structures back to little-endian when both are supported", () => {
    const b = bare({ capabilities: { END: true } });
    b.hw.write32(RISCV_IOMMU_REG.FCTL, 1);
    expect(b.hw.read32(RISCV_IOMMU_REG.FCTL) & 1).toBe(1);
    expect(b.driver.register(b.iommu, b.hwdev)).toEqual(OK);
    expect(b.hw.read32(RISCV_IOMMU_REG.FCTL) & 1).toBe(0);
  });

  it("ENOMEM without memory for the queues; everything allocated so far is given back", () => {
    const b = bare();
    const free: number[] = [];
    for (let f = b.frames.alloc(); f >= 0; f = b.frames.alloc()) free.push(f);
    // Room for the DDT root and one ring page only.
    b.frames.free(free.pop()!);
    b.frames.free(free.pop()!);
    const inUse = b.frames.framesInUse;
    expect(b.driver.register(b.iommu, b.hwdev)).toEqual(err("ENOMEM"));
    expect(b.frames.framesInUse).toBe(inUse);
  });
});

describe("probe and allocation errors", () => {
  it("a device_id wider than the DDT leaves the device without an IOMMU (ENODEV)", () => {
    const b = bed([{ name: "iommu0", options: { ddtMode: "1LVL" } }]);
    expect(b.io.iommu.ddtMode).toBe(2);
    const ok = b.dev("ok", 127);
    const wide = b.dev("wide", 128);
    expect(b.core.groupOf(ok)).not.toBeNull();
    expect(b.core.groupOf(wide)).toBeNull();
    expect(wide.iommu).toBeNull();
  });

  it("ENOMEM when the PSCIDs run out, for paging and SVA domains", () => {
    const b = bed([{ name: "iommu0", options: { pscidBits: 2 } }]);
    const d = b.dev("dev0", 1, { pasidBits: 8 }); // its DMA domain takes PSCID 1
    const a = unwrap(b.core.pagingDomainAlloc(d));
    const c = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.io.iommu.pscidsInUse()).toEqual([1, 2, 3]);
    expect(b.core.pagingDomainAlloc(d)).toEqual(err("ENOMEM"));
    b.core.domainFree(a);
    expect(b.core.pagingDomainAlloc(d).ok).toBe(true);
    b.core.domainFree(c);
    expect(b.io.iommu.pscidsInUse()).toEqual([1, 2]);
  });

  it("map errors: ERANGE for a non-canonical IOVA, ENOMEM without table memory", () => {
    const b = bed();
    const d = b.dev("dev0", 1);
    const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    const out = { mappedPages: 0 };
    // Sv57: IOVA bit 56 set without the sign extension above it.
    expect(dom.mapPages(2 ** 44, 0x8_3000, 12, 1, IOMMU_READ, out)).toEqual(err("ERANGE"));
    for (let f = b.frames.alloc(); f >= 0; f = b.frames.alloc());
    expect(b.core.map(dom, 0x1_0000_0000n, 0x8300_0000n, 0x1000n, IOMMU_READ)).toEqual(
      err("ENOMEM"),
    );
    expect(b.core.iovaToPhys(dom, 0x1_0000_0000n)).toBe(0n);
  });

  it("set_dev_pasid ENOMEM leaves the PASID on its old domain and the device untouched", () => {
    const b = bed();
    const d = b.dev("dev0", 1, { pasidBits: 20 });
    const one = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    const two = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    unwrap(b.core.map(one, 0x1000n, 0x8300_0000n, 0x1000n, IOMMU_READ));
    unwrap(b.core.attachDevicePasid(one, d, 0x20000));
    for (let f = b.frames.alloc(); f >= 0; f = b.frames.alloc());
    // PASID 0x30000 needs new directory levels: no memory.
    expect(two.ops!.setDevPasid!(two, d, 0x30000, null)).toEqual(err("ENOMEM"));
    expect(b.driver.programmedPasids(d)).toEqual([0x20000]);
    expect(two.bonds).toEqual([]);
    const r = dma(b.io.hardware, 1, 0x1000n, { pasid: 0x20000 });
    expect(r.ok && r.pa).toBe(0x8300_0000n);
  });

  it("SVA needs PASIDs enabled on the device (EOPNOTSUPP for a PCI function without the capability)", () => {
    const b = bed();
    const fn = b.pciHost((h) => {
      h.addRootPort({ acs: true }).addEndpoint({ name: "nic0" });
      h.addRootPort({ acs: true }).addEndpoint({ name: "dsa0", pasid: 8 });
    });
    const [nic, dsa] = [fn("nic0"), fn("dsa0")];
    const mm = unwrap(mmAlloc(new MmSubsystem(b.ctx, b.memory, b.frames)));
    expect(b.driver.ops.domainAllocSva!(nic, mm)).toEqual(err("EOPNOTSUPP"));
    const dom = unwrap(b.driver.ops.domainAllocSva!(dsa, mm));
    expect(dom.type).toBe(IOMMU_DOMAIN_SVA);
    b.core.s.domainInit(dom, IOMMU_DOMAIN_SVA, b.driver.ops, dsa);
    b.core.domainFree(dom);
  });
});
