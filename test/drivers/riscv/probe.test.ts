import { describe, expect, it } from "vitest";
import { err } from "../../../src/base/result.js";
import { RISCV_IOMMU_REG } from "../../../src/drivers/riscv/iommu-bits.js";
import { IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_IDENTITY } from "../../../src/iommu/constants.js";
import { bed, commands, dma } from "./setup.js";

describe("bring-up (riscv_iommu_init)", () => {
  it("programs queues, interrupts and the DDT through registers, then registers with the core", () => {
    const b = bed();
    const { hardware: hw, iommu } = b.io;
    expect(b.io.probe.ok).toBe(true);
    const regs = hw.registersJson() as { ddtp: { iommu_mode: string; PPN: string } };
    expect(regs.ddtp.iommu_mode).toBe("3LVL");
    expect(BigInt(regs.ddtp.PPN)).toBe(BigInt(iommu.ddt!.rootPpn));
    const q = hw.queuesJson() as {
      cq: { cqcsr: { cqon: boolean; cie: boolean }; cqb: { LOG2SZ: number } };
      fq: { fqcsr: { fqon: boolean; fie: boolean }; fqb: { LOG2SZ: number } };
      pq: { pqcsr: { pqon: boolean; pie: boolean }; pqb: { LOG2SZ: number } };
    };
    expect(q.cq.cqcsr).toMatchObject({ cqon: true, cie: true });
    expect(q.fq.fqcsr).toMatchObject({ fqon: true, fie: true });
    expect(q.pq.pqcsr).toMatchObject({ pqon: true, pie: true });
    expect(q.cq.cqb.LOG2SZ).toBe(8);
    expect(q.fq.fqb.LOG2SZ).toBe(6);
    // MSIs (IGS = BOTH, the platform has an MSI controller): fctl.WSI = 0, one vector each.
    expect(iommu.msi).toBe(true);
    expect(hw.read32(RISCV_IOMMU_REG.FCTL) & 2).toBe(0);
    expect([0, 1, 2, 3].map((c) => iommu.vectorOf(c))).toEqual([0, 1, 3, 2]);
    expect(b.core.iommuDevices()).toContain(iommu);
    expect(iommu.maxPasids).toBe(2 ** 20);
  });

  it("chooses wires when the platform has no MSI controller, and maps causes onto fewer vectors", () => {
    const b = bed([{ name: "iommu0", options: { msi: false, irqs: 2 } }]);
    const { hardware: hw, iommu } = b.io;
    expect(iommu.msi).toBe(false);
    expect(hw.read32(RISCV_IOMMU_REG.FCTL) & 2).toBe(2);
    expect([0, 1, 2, 3].map((c) => iommu.vectorOf(c))).toEqual([0, 1, 1, 0]);
  });

  it("takes four MSIs whatever the platform's wires; without wires a wired IOMMU is refused", () => {
    const b = bed([{ name: "iommu0", options: { irqs: 2 } }]);
    expect(b.io.iommu.msi).toBe(true);
    expect(b.io.iommu.irqsCount).toBe(4);
    expect([0, 1, 2, 3].map((c) => b.io.iommu.vectorOf(c))).toEqual([0, 1, 3, 2]);
    const w = bed([{ name: "iommu0", options: { msi: false, irqs: 0 } }]);
    expect(w.io.probe).toEqual(err("ENODEV"));
    expect(w.core.logs().some((l) => l.message.includes("no IRQ resources provided"))).toBe(true);
  });

  it("refuses an IOMMU that only signals MSIs on a platform without an MSI controller (ENODEV)", () => {
    const b = bed([{ name: "iommu0", capabilities: { IGS: "MSI" }, options: { msi: false } }]);
    expect(b.io.probe).toEqual(err("ENODEV"));
    expect(b.core.iommuDevices()).not.toContain(b.io.iommu);
    expect(b.core.logs().some((l) => l.message.includes("wire-signaled"))).toBe(true);
  });

  it("max_pasids follows the widest process-directory format", () => {
    const b = bed([
      { name: "a", capabilities: { PD20: false } },
      { name: "b", capabilities: { PD20: false, PD17: false } },
      { name: "c", capabilities: { PD20: false, PD17: false, PD8: false } },
    ]);
    expect(b.iommus.get("a")!.iommu.maxPasids).toBe(2 ** 17);
    expect(b.iommus.get("b")!.iommu.maxPasids).toBe(2 ** 8);
    expect(b.iommus.get("c")!.iommu.maxPasids).toBe(0);
  });

  it("sends IODIR.INVAL_DDT, IOTINVAL.VMA and IOFENCE.C after setting ddtp", () => {
    const b = bed([{ name: "iommu0" }]);
    const rec = b.ctx.trace.record();
    b.io.iommu.iodirSetMode(1); // Bare
    expect(commands(rec.stop())).toEqual([
      "IODIR.INVAL_DDT DV=0",
      "IOTINVAL.VMA AV=0 PSCV=0 GV=0",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
  });
});

describe("probe_device and default domains", () => {
  it("a probed device gets a DMA default domain; its DMA goes through the page table", () => {
    const b = bed();
    const d = b.dev("dev0", 5);
    const dom = b.core.getDomainForDev(d)!;
    expect(dom.type).toBe(IOMMU_DOMAIN_DMA);
    // Not mapped yet: the walk faults (read page fault, cause 13).
    expect(dma(b.io.hardware, 5, 0x1000n)).toEqual({
      ok: false,
      fault: "read_page_fault",
      cause: 13,
    });
    expect(b.core.map(dom, 0x1000n, RAM_PAGE, 0x1000n, 3).ok).toBe(true);
    b.memory.write64(RAM_PAGE + 8n, 0x1122334455667788n);
    const r = dma(b.io.hardware, 5, 0x1008n);
    expect(r.ok && r.pa).toBe(RAM_PAGE + 8n);
  });

  it("passthrough boots the device on the identity domain (Bare): DMA addresses are physical", () => {
    const b = bed([{ name: "iommu0" }], { passthrough: true });
    const d = b.dev("dev0", 5);
    expect(b.core.getDomainForDev(d)!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    const r = dma(b.io.hardware, 5, RAM_PAGE);
    expect(r.ok && r.pa).toBe(RAM_PAGE);
  });
});

const RAM_PAGE = 0x8300_0000n;
