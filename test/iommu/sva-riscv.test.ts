// SVA on the RISC-V machine, end to end: a PCIe test device (PASID, ATS, PRI) behind a RISC-V
// IOMMU touches a page its bound process has not faulted in yet; the page request travels
// through the IOMMU's page-request queue, the driver's interrupt thread and the core's IOPF path
// into handle_mm_fault; the response goes back as ATS.PRGR, and the retried access succeeds with
// the right data. Then seed 003 on the same machine: the historical supervisor bind (a PASID on
// the kernel's page table, no IOTLB flush for kernel unmaps: a stale translation survives) next
// to its upstream replacement (the DMA domain attached to a global PASID, as idxd does, where an
// unmap is flushed and the device faults).

import { describe, expect, it } from "vitest";
import { unwrap } from "../../src/base/result.js";
import { pciDevId } from "../../src/bus/pci.js";
import { checkCore } from "../../src/check/invariants.js";
import { RiscvIommuCommand } from "../../src/drivers/riscv/iommu-bits.js";
import type { RiscvSvaDomain } from "../../src/drivers/riscv/sva.js";
import type { PrgOutcome } from "../../src/hw/endpoints/pri.js";
import { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { SV57 } from "../../src/hw/pgtable/modes.js";
import {
  IOMMU_DOMAIN_DMA,
  IOMMU_PASID_INVALID,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../../src/iommu/constants.js";
import { IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_SUCCESS } from "../../src/iommu/fault.js";
import { IOMMU_SVA_BIND_SUPERVISOR } from "../../src/iommu/sva.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { initMm, vmallocRange } from "../../src/mm/init-mm.js";
import { MmSubsystem } from "../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { ProcessTable } from "../../src/mm/process.js";
import { vmap, vmUnmapAliases, vunmap } from "../../src/mm/vmalloc.js";
import { bed, bytes, commands, dma } from "../drivers/riscv/setup.js";
import { riscvPciHost } from "./conformance/riscv-pci.js";

const A = 0x4000_0000n;

function machine() {
  const b = bed([{ name: "iommu0" }]);
  const ph = riscvPciHost(b, "iommu0", 0, (h) => {
    h.addRootPort({ acs: true }).addEndpoint({
      name: "t0",
      bars: [0x10000],
      ats: true,
      pri: true,
      pasid: 20,
    });
  });
  const pdev = ph.pdev("t0");
  const dev = new TestDevice(ph.bridge, ph.host.function("t0"));
  const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
  const procs = new ProcessTable(sys);
  const p = unwrap(procs.spawn("app"));
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
  unwrap(vmMmap(p.mm!, A, 0x4000n, PROT_READ | PROT_WRITE, flags));
  const invariants = () => {
    expect(checkCore(b.core, { drivers: [b.driver] })).toEqual([]);
    expect(b.ctx.warnings.list()).toEqual([]);
  };
  return {
    ...b,
    pdev,
    dev,
    rid: pciDevId(pdev.fn),
    sys,
    procs,
    p,
    mm: p.mm!,
    cpu: new Cpu(sys),
    hw: b.io.hardware,
    invariants,
  };
}

type M = ReturnType<typeof machine>;

/** The device's PRI asks for the page of `addr` and the machine runs until it is answered. */
function pageRequest(m: M, pasid: number, addr: bigint, write: boolean): PrgOutcome | null {
  let outcome: PrgOutcome | null = null;
  const sent = m.dev.pri!.request({
    pasidValid: true,
    pasid,
    privileged: false,
    page: Number(addr >> 12n),
    read: true,
    write,
    execute: false,
    done: (o) => {
      outcome = o;
    },
  });
  expect(sent).toBe("sent");
  expect(outcome).toBeNull();
  m.ctx.scheduler.settle();
  return outcome;
}

describe("I/O page faults end to end on the RISC-V IOMMU", () => {
  it("a device read of a page the process never touched: page request → PQ → core → handle_mm_fault → ATS.PRGR → the retry reads it", () => {
    const m = machine();
    expect(m.cpu.store(m.mm, A, bytes(0xca, 0xfe)).ok).toBe(true);
    const bond = unwrap(m.core.svaBindDevice(m.pdev, m.mm));
    const pasid = m.core.svaGetPasid(bond);
    expect(m.pdev.iommu!.faultParam).not.toBeNull();
    const ok = m.dev.read(A, 2, { pasid, ats: true });
    expect(ok.ok && [...ok.data]).toEqual([0xca, 0xfe]);
    const miss = m.dev.read(A + 0x1000n, 4, { pasid, ats: true });
    expect(miss.ok).toBe(false);
    expect(miss.result).toMatch(/^page-fault/);
    expect(m.mm.pgtable.lookup(A + 0x1000n)).toBeNull();
    const rec = m.ctx.trace.record();
    expect(pageRequest(m, pasid, A + 0x1000n, false)).toBe("success");
    const r = rec.stop();
    const path = r
      .map((x) => x.event)
      .filter((e) =>
        [
          "device:page_request",
          "riscv_iommu:page_request",
          "iommu_core:iopf_report",
          "mm:fault",
          "iommu_core:iopf_response",
          "device:page_response",
        ].includes(e),
      );
    expect(path).toEqual([
      "device:page_request",
      "riscv_iommu:page_request",
      "iommu_core:iopf_report",
      "mm:fault",
      "iommu_core:iopf_response",
      "device:page_response",
    ]);
    expect(commands(r)).toContain(`ATS.PRGR DID=${m.rid} PID=${pasid} PRGI=0 code=0`);
    // The read fault mapped the zero page: the retry reads zeros.
    const again = m.dev.read(A + 0x1000n, 4, { pasid, ats: true });
    expect(again.ok && [...again.data]).toEqual([0, 0, 0, 0]);
    m.invariants();
  });

  it("a device write to an absent page: the write fault allocates it and the CPU reads what the device wrote", () => {
    const m = machine();
    const pasid = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(m.pdev, m.mm)));
    const data = bytes(1, 2, 3, 4);
    expect(m.dev.write(A + 0x2000n, data, { pasid, ats: true }).ok).toBe(false);
    expect(pageRequest(m, pasid, A + 0x2000n, true)).toBe("success");
    expect(m.dev.write(A + 0x2000n, data, { pasid, ats: true }).ok).toBe(true);
    const back = m.cpu.load(m.mm, A + 0x2000n, 4);
    expect(back.ok && [...back.value]).toEqual([1, 2, 3, 4]);
    m.invariants();
  });

  it("EOPNOTSUPP when the IOMMU cannot walk the process's page-table format (Sv57 on an Sv48 IOMMU)", () => {
    const b = bed([{ name: "iommu0", capabilities: { Sv57: false } }]);
    const ph = riscvPciHost(b, "iommu0", 0, (h) => {
      h.addRootPort({ acs: true }).addEndpoint({ name: "t0", bars: [0x10000], pasid: 20 });
    });
    const procs = new ProcessTable(new MmSubsystem(b.ctx, b.memory, b.frames));
    const deep = unwrap(procs.spawn("deep", { mode: SV57 }));
    const flat = unwrap(procs.spawn("flat"));
    const t0 = ph.pdev("t0");
    expect(b.core.svaBindDevice(t0, deep.mm!)).toEqual({ ok: false, errno: "EOPNOTSUPP" });
    // The PASID stays with the mm although the bind failed.
    expect(b.core.mmGetPasid(deep.mm!)).toBe(1);
    expect(b.core.svaBindDevice(t0, flat.mm!).ok).toBe(true);
    expect(checkCore(b.core, { drivers: [b.driver] })).toEqual([]);
  });

  it("a request outside the process's mappings is answered Invalid Request; the device gives up", () => {
    const m = machine();
    const pasid = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(m.pdev, m.mm)));
    expect(pageRequest(m, pasid, A + 0x10_0000n, false)).toBe("invalid");
    expect(m.dev.read(A + 0x10_0000n, 4, { pasid, ats: true }).ok).toBe(false);
    // After munmap the same page that worked is refused too.
    expect(pageRequest(m, pasid, A + 0x3000n, true)).toBe("success");
    unwrap(vmMunmap(m.mm, A + 0x3000n, 0x1000n));
    expect(pageRequest(m, pasid, A + 0x3000n, true)).toBe("invalid");
    // The driver's page-response log has the three, with the core's codes.
    expect(
      m.io.iommu.pageResponses.map((r) => [r.dev, r.pasid, r.grpid, r.code, r.withPasid]),
    ).toEqual([
      [m.pdev.name, pasid, 0, IOMMU_PAGE_RESP_INVALID, true],
      [m.pdev.name, pasid, 0, IOMMU_PAGE_RESP_SUCCESS, true],
      [m.pdev.name, pasid, 0, IOMMU_PAGE_RESP_INVALID, true],
    ]);
    m.invariants();
  });
});

describe("seed 003 on the RISC-V machine: supervisor SVA (historical) and its replacement", () => {
  /** The kernel maps a page of its own (vmap, PAGE_KERNEL: global, supervisor-only). */
  function kernel(m: M) {
    m.core.setMmSubsystem(m.sys);
    const frame = m.frames.alloc();
    const pa = BigInt(frame) << 12n;
    m.memory.writeBytes(pa, bytes(0x4b, 0x45, 0x52, 0x4e));
    const kva = vmap(m.sys, [frame])!;
    expect(kva).toBe(vmallocRange(m.sys.kernelMode).start);
    return { initMm: initMm(m.sys), frame, pa, kva };
  }

  it("a supervisor bind walks the kernel's table for privileged requests (PC.ta.ENS); a kernel unmap is never flushed: the device keeps reaching the page", () => {
    const m = machine();
    const k = kernel(m);
    const bond = unwrap(m.core.svaBindDevice(m.pdev, null, IOMMU_SVA_BIND_SUPERVISOR));
    const pasid = m.core.svaGetPasid(bond);
    const dom = bond.domain as RiscvSvaDomain;
    expect(dom.mm).toBe(k.initMm);
    expect(dom.ens).toBe(true);
    // User requests on that PASID are not privileged: the kernel page (U = 0) refuses them.
    expect(dma(m.hw, m.rid, k.kva, { pasid, length: 4 })).toMatchObject({ ok: false, cause: 13 });
    const first = dma(m.hw, m.rid, k.kva, { pasid, priv: true, length: 4 });
    expect(first.ok && [...first.data]).toEqual([0x4b, 0x45, 0x52, 0x4e]);
    expect(m.hw.ioatc.processContexts().find((pc) => pc.processId === pasid)?.ENS).toBe(true);
    // The kernel vunmaps the page, purges (the CPUs' flush_tlb_kernel_range) and reuses the
    // frame: no mmu notifier hears of it, so no command reaches the IOMMU.
    const cmds = m.ctx.trace.record();
    vunmap(m.sys, k.kva);
    vmUnmapAliases(m.sys);
    expect(k.initMm.pgtable.lookup(k.kva)).toBeNull();
    m.memory.writeBytes(k.pa, bytes(0x6e, 0x65, 0x77, 0x21));
    const trace = cmds.stop();
    expect(
      trace.filter((r) => r.event === "mm:flush_tlb_kernel_range").map((r) => r.fields),
    ).toEqual([{ start: k.kva, end: k.kva + 0x2000n }]);
    expect(trace.filter((r) => r.event === "mm:invalidate_range")).toEqual([]);
    expect(commands(trace)).toEqual([]);
    expect(dom.notifications).toBe(0);
    // The IOTLB still holds the translation: the device reads whatever the frame holds now.
    const stale = dma(m.hw, m.rid, k.kva, { pasid, priv: true, length: 4 });
    expect(stale.ok && stale.pa).toBe(k.pa);
    expect(stale.ok && [...stale.data]).toEqual([0x6e, 0x65, 0x77, 0x21]);
    // Even the domain's own flush (IOTINVAL.VMA for its PSCID) keeps it: kernel PTEs are global
    // (G = 1), and a PSCID-scoped invalidation spares global entries (spec, IOTINVAL.VMA table).
    const fl = m.ctx.trace.record();
    dom.invalidateRange(k.kva, k.kva + 4096n);
    expect(commands(fl.stop())[0]).toBe(
      `IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${dom.pscid} ADDR=0x${k.kva.toString(16)}`,
    );
    expect(dma(m.hw, m.rid, k.kva, { pasid, priv: true, length: 4 }).ok).toBe(true);
    // An invalidation of the address in every address space (PSCV = 0) finally drops it.
    m.io.iommu.cmdSend(new RiscvIommuCommand().invalVma().setAddr(Number(k.kva >> 12n)));
    m.io.iommu.cmdSync();
    expect(dma(m.hw, m.rid, k.kva, { pasid, priv: true, length: 4 })).toMatchObject({
      ok: false,
      cause: 13,
    });
    m.invariants();
    m.core.svaUnbindDevice(bond);
    m.invariants();
  });

  it("the user SVA bind on the same device is kept coherent: munmap flushes the IOTLB and the device faults", () => {
    const m = machine();
    kernel(m);
    unwrap(m.core.svaBindDevice(m.pdev, null, IOMMU_SVA_BIND_SUPERVISOR));
    const user = unwrap(m.core.svaBindDevice(m.pdev, m.mm));
    const pasid = m.core.svaGetPasid(user);
    expect((user.domain as RiscvSvaDomain).ens).toBe(false);
    expect(m.cpu.store(m.mm, A, bytes(7)).ok).toBe(true);
    expect(dma(m.hw, m.rid, A, { pasid, length: 1 }).ok).toBe(true);
    // Supervisor requests on a user PASID: transaction type disallowed (ENS = 0).
    expect(dma(m.hw, m.rid, A, { pasid, priv: true })).toMatchObject({ ok: false, cause: 260 });
    unwrap(vmMunmap(m.mm, A, 0x1000n));
    expect(dma(m.hw, m.rid, A, { pasid, length: 1 })).toMatchObject({ ok: false, cause: 13 });
    m.invariants();
  });

  it("the upstream replacement (idxd): the DMA domain at a global PASID; DMA addresses are IOVAs and an unmap is flushed", () => {
    const m = machine();
    kernel(m);
    const sup = unwrap(m.core.svaBindDevice(m.pdev, null, IOMMU_SVA_BIND_SUPERVISOR));
    const dmaDomain = m.core.getDmaDomain(m.pdev)!;
    expect(dmaDomain.type).toBe(IOMMU_DOMAIN_DMA);
    const pasid = m.core.allocGlobalPasid(m.pdev);
    expect(pasid).not.toBe(IOMMU_PASID_INVALID);
    expect(pasid).not.toBe(m.core.svaGetPasid(sup));
    expect(m.core.attachDevicePasid(dmaDomain, m.pdev, pasid, null).ok).toBe(true);
    const frame = m.frames.alloc();
    const pa = BigInt(frame) << 12n;
    m.memory.writeBytes(pa, bytes(0x11, 0x22));
    const iova = dmaDomain.geometry.apertureStart + 0x10_0000n;
    expect(m.core.map(dmaDomain, iova, pa, 4096n, IOMMU_READ | IOMMU_WRITE).ok).toBe(true);
    const r = dma(m.hw, m.rid, iova, { pasid, length: 2 });
    expect(r.ok && [...r.data]).toEqual([0x11, 0x22]);
    const rec = m.ctx.trace.record();
    expect(m.core.unmap(dmaDomain, iova, 4096n)).toBe(4096n);
    expect(commands(rec.stop()).some((c) => c.startsWith("IOTINVAL.VMA"))).toBe(true);
    expect(dma(m.hw, m.rid, iova, { pasid, length: 2 })).toMatchObject({ ok: false, cause: 13 });
    // The PASID holds a domain-tagged entry: no fault handler, and no SVA bind can take it.
    expect(m.core.attachHandleGet(m.core.groupOf(m.pdev)!, pasid, 0).ok).toBe(false);
    m.invariants();
    m.core.detachDevicePasid(dmaDomain, m.pdev, pasid);
    m.core.freeGlobalPasid(pasid);
    m.invariants();
  });
});
