// A whole machine end to end: PCI devices behind a RISC-V IOMMU, from boot to device removal.

import { describe, expect, it } from "vitest";
import { OK, unwrap } from "../../../src/base/result.js";
import type { RiscvIommuInfo } from "../../../src/drivers/riscv/context.js";
import type { RiscvPagingDomain } from "../../../src/drivers/riscv/domain.js";
import { IOMMU_FAULT_WRITE, IOMMU_READ, IOMMU_WRITE } from "../../../src/iommu/constants.js";
import { bed, bytes, commandsOf, dma } from "./setup.js";

const PA = 0x8300_0000n;

describe("a machine with PCI devices behind a RISC-V IOMMU", () => {
  it("probe → attach → map → DMA → unmap (IOTINVAL + IOFENCE.C) → fault in the FQ → report", () => {
    const b = bed();
    const pdev = b.pciHost((h) => {
      h.addRootPort({ acs: true }).addEndpoint({ name: "nic0", bars: [0x4000] });
    })("nic0");
    const info = pdev.iommu!.priv as RiscvIommuInfo;
    const rid = info.requesterId;
    const dom = unwrap(b.core.pagingDomainAlloc(pdev)) as RiscvPagingDomain;
    const attach = commandsOf(b.ctx, () => expect(b.core.attachDevice(dom, pdev)).toEqual(OK));
    expect(attach).toContain(`IODIR.INVAL_DDT DV=1 DID=${rid}`);
    unwrap(b.core.map(dom, 0x10000n, PA, 0x1000n, IOMMU_READ | IOMMU_WRITE));
    expect(dma(b.io.hardware, rid, 0x10040n, { data: bytes(0x5a) }).ok).toBe(true);
    expect(b.memory.read8(PA + 0x40n)).toBe(0x5a);
    const faults: bigint[] = [];
    b.core.setFaultHandler(
      dom,
      (_d, _dev, iova, flags) => {
        expect(flags).toBe(IOMMU_FAULT_WRITE);
        faults.push(iova);
        return OK;
      },
      null,
    );
    const unmap = commandsOf(b.ctx, () => b.core.unmap(dom, 0x10000n, 0x1000n));
    expect(unmap).toEqual([
      `IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${dom.pscid} ADDR=0x10000`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.io.hardware, rid, 0x10040n, { data: bytes(1) })).toMatchObject({
      ok: false,
      fault: "write_page_fault",
    });
    b.ctx.scheduler.settle();
    expect(faults).toEqual([0x10040n]);
    expect(b.io.iommu.faultLog.at(-1)).toMatchObject({
      device: pdev.name,
      domain: dom.id,
      reported: "0",
    });
    expect(b.memory.read8(PA + 0x40n)).toBe(0x5a);
  });

  it("every DMA alias of a conventional PCI device gets a device context translating the same way", () => {
    const b = bed();
    const legacy = b.pciHost((h) => {
      h.addRootPort({ acs: true }).addPcieToPciBridge().addEndpoint({ name: "legacy0", slot: 2 });
    })("legacy0");
    const info = legacy.iommu!.priv as RiscvIommuInfo;
    expect(info.ids.length).toBe(2);
    const dom = b.core.getDomainForDev(legacy) as RiscvPagingDomain;
    unwrap(b.core.map(dom, 0x2000n, PA, 0x1000n, IOMMU_READ));
    for (const id of info.ids) {
      const r = dma(b.io.hardware, id, 0x2000n);
      expect(r.ok && r.pa).toBe(PA);
    }
    expect(b.io.iommu.deviceOf(info.ids[0]!)).toBe(legacy);
    const view = info.toJSON() as {
      contexts: Array<{ tc: { V: boolean }; ta: { PSCID: number } }>;
    };
    expect(view.contexts.map((c) => [c.tc.V, c.ta.PSCID])).toEqual([
      [true, dom.pscid],
      [true, dom.pscid],
    ]);
  });

  it("removing the IOMMU turns translation off and gives its memory back", () => {
    const b = bed();
    expect(b.ctx.scheduler.queues().map((q) => q.name)).toContain("riscv-iommu iommu0");
    const before = b.frames.framesInUse;
    const d = b.dev("dev0", 3);
    expect(b.frames.framesInUse).toBeGreaterThan(before);
    b.driver.remove(b.io.iommu);
    expect(d.iommu).toBeNull();
    expect(b.core.iommuDevices()).not.toContain(b.io.iommu);
    expect(dma(b.io.hardware, 3, 0x1000n)).toMatchObject({ ok: false, cause: 256 });
    expect((b.io.hardware.queuesJson() as { cq: { cqcsr: { cqon: boolean } } }).cq.cqcsr.cqon).toBe(
      false,
    );
    expect(b.ctx.scheduler.queues().map((q) => q.name)).not.toContain("riscv-iommu iommu0");
  });
});
