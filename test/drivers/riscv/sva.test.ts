import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { OK, type Result, unwrap } from "../../../src/base/result.js";
import type { RiscvSvaDomain } from "../../../src/drivers/riscv/sva.js";
import { PTE_W } from "../../../src/hw/pgtable/pte.js";
import { IOMMU_DOMAIN_SVA } from "../../../src/iommu/constants.js";
import { Cpu } from "../../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/flags.js";
import { mmAlloc, mmput } from "../../../src/mm/fork.js";
import { MmSubsystem } from "../../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../../src/mm/mmap.js";
import { doMprotect } from "../../../src/mm/mprotect.js";
import { bed, bytes, commandsOf, dma } from "./setup.js";

const A = 0x4000_0000n;
const PAGES = 8;
const PASID = 9;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

function must<T>(r: Result<T>): T {
  return unwrap(r);
}

/** A process with 8 populated pages at A, and dev0 bound to its mm at PASID 9. */
function svaBed(specs: Parameters<typeof bed>[0] = [{ name: "iommu0" }]) {
  const b = bed(specs);
  const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
  const mm = must(mmAlloc(sys));
  must(vmMmap(mm, A, BigInt(PAGES) << 12n, PROT_READ | PROT_WRITE, ANON | MAP_POPULATE));
  const cpu = new Cpu(sys);
  const d = b.dev("dev0", 5, { pasidBits: 20 });
  const ops = b.driver.ops;
  const dom = must(ops.domainAllocSva!(d, mm)) as RiscvSvaDomain;
  // What iommu_sva_domain_alloc does around the driver's allocator.
  b.core.s.domainInit(dom, IOMMU_DOMAIN_SVA, ops, d);
  expect(b.core.attachDevicePasid(dom, d, PASID)).toEqual(OK);
  return { ...b, sys, mm, cpu, d, dom, hw: b.io.hardware };
}

describe("SVA domains", () => {
  it("the device sees exactly the process's memory, through the process's own page table", () => {
    const b = svaBed();
    expect(b.cpu.store(b.mm, A + 0x1010n, bytes(0xde, 0xad)).ok).toBe(true);
    const r = dma(b.hw, 5, A + 0x1010n, { pasid: PASID, length: 2 });
    expect(r.ok && [...r.data]).toEqual([0xde, 0xad]);
    expect(dma(b.hw, 5, A + 0x2000n, { pasid: PASID, data: bytes(7) }).ok).toBe(true);
    const back = b.cpu.load(b.mm, A + 0x2000n, 1);
    expect(back.ok && back.value[0]).toBe(7);
    // The process context the IOMMU cached: the mm's root, the domain's PSCID, ENS off.
    const pc = b.hw.ioatc.processContexts().find((p) => p.processId === PASID)!;
    expect(pc.fscPpn).toBe(b.mm.pgdPpn);
    expect(pc.fscMode).toBe(b.mm.pgtable.mode.modeField);
    expect(pc.pscid).toBe(b.dom.pscid);
    expect(pc.ENS).toBe(false);
    // Supervisor requests are refused (ENS = 0): transaction type disallowed.
    expect(dma(b.hw, 5, A, { pasid: PASID, priv: true })).toMatchObject({ ok: false, cause: 260 });
    // Without the PASID the device is on its DMA domain, where A is not mapped.
    expect(dma(b.hw, 5, A).ok).toBe(false);
  });

  it("munmap → notifier → IOTINVAL.VMA of the page + IOFENCE.C → the next device access faults", () => {
    const b = svaBed();
    expect(dma(b.hw, 5, A + 0x3000n, { pasid: PASID }).ok).toBe(true); // cached
    const cmds = commandsOf(b.ctx, () => must(vmMunmap(b.mm, A + 0x3000n, 0x1000n)));
    expect(cmds).toEqual([
      `IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${b.dom.pscid} ADDR=0x40003000`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.hw, 5, A + 0x3000n, { pasid: PASID })).toEqual({
      ok: false,
      fault: "read_page_fault",
      cause: 13,
    });
    expect(b.dom.notifications).toBe(1);
  });

  it("mprotect(PROT_READ) → the device's next write faults even though the page was cached writable", () => {
    const b = svaBed();
    expect(dma(b.hw, 5, A, { pasid: PASID, data: bytes(1) }).ok).toBe(true);
    must(doMprotect(b.mm, A, 0x1000n, PROT_READ));
    expect(dma(b.hw, 5, A, { pasid: PASID, data: bytes(2) })).toMatchObject({
      ok: false,
      cause: 15,
    });
    expect(dma(b.hw, 5, A, { pasid: PASID }).ok).toBe(true);
  });

  it("a large munmap flushes the whole PSCID", () => {
    const b = bed();
    const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
    const mm = must(mmAlloc(sys));
    must(vmMmap(mm, A, 0x400000n, PROT_READ | PROT_WRITE, ANON | MAP_POPULATE));
    const d = b.dev("dev0", 5, { pasidBits: 20 });
    const dom = must(b.driver.ops.domainAllocSva!(d, mm)) as RiscvSvaDomain;
    b.core.s.domainInit(dom, IOMMU_DOMAIN_SVA, b.driver.ops, d);
    unwrap(b.core.attachDevicePasid(dom, d, PASID));
    const cmds = commandsOf(b.ctx, () => must(vmMunmap(mm, A, 0x400000n)));
    expect(cmds.filter((c) => c.startsWith("IOTINVAL"))).toEqual([
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${dom.pscid}`,
    ]);
  });

  it("mm release clears the PASID's process context: the IOMMU stops walking the dying mm", () => {
    const b = svaBed();
    expect(dma(b.hw, 5, A, { pasid: PASID }).ok).toBe(true);
    const cmds = commandsOf(b.ctx, () => mmput(b.mm));
    expect(b.dom.released).toBe(true);
    expect(cmds.slice(0, 6)).toEqual([
      `IODIR.INVAL_PDT DID=5 PID=${PASID}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      `IODIR.INVAL_PDT DID=5 PID=${PASID}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${b.dom.pscid}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.hw, 5, A, { pasid: PASID })).toMatchObject({ ok: false, cause: 266 });
    // Unbind and free: the notifier lets go of the mm, which is then freed.
    b.core.detachDevicePasid(b.dom, b.d, PASID);
    b.core.domainFree(b.dom);
    expect(b.mm.state).toBe("freed");
    expect(b.io.iommu.pscidsInUse()).not.toContain(b.dom.pscid);
  });

  it("domain_alloc_sva errors: EOPNOTSUPP without PASID support or for a table format the IOMMU cannot walk", () => {
    const b = bed([
      { name: "nopd", capabilities: { PD8: false, PD17: false, PD20: false } },
      { name: "sv39", capabilities: { Sv48: false, Sv57: false } },
    ]);
    const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
    const mm = must(mmAlloc(sys));
    const a = b.dev("a", 1, { iommu: "nopd", pasidBits: 8 });
    const c = b.dev("c", 1, { iommu: "sv39", pasidBits: 8 });
    expect(b.driver.ops.domainAllocSva!(a, mm)).toEqual({ ok: false, errno: "EOPNOTSUPP" });
    expect(b.driver.ops.domainAllocSva!(c, mm)).toEqual({ ok: false, errno: "EOPNOTSUPP" });
  });

  test.prop(
    [
      fc.array(
        fc.record({
          op: fc.constantFrom("munmap", "mmap", "ro", "rw", "cpu", "dev-read", "dev-write"),
          page: fc.integer({ min: 0, max: PAGES - 1 }),
        }),
        { minLength: 1, maxLength: 40 },
      ),
    ],
    { numRuns: 60 },
  )("the device never sees a translation the process no longer has", (ops) => {
    const b = svaBed();
    for (const { op, page } of ops) {
      const va = A + (BigInt(page) << 12n);
      if (op === "munmap") must(vmMunmap(b.mm, va, 0x1000n));
      else if (op === "mmap") must(vmMmap(b.mm, va, 0x1000n, PROT_READ | PROT_WRITE, ANON));
      else if (op === "ro") doMprotect(b.mm, va, 0x1000n, PROT_READ);
      else if (op === "rw") doMprotect(b.mm, va, 0x1000n, PROT_READ | PROT_WRITE);
      else if (op === "cpu") b.cpu.store(b.mm, va, bytes(page));
      else dma(b.hw, 5, va, { pasid: PASID, ...(op === "dev-write" ? { data: bytes(1) } : {}) });
      for (let p = 0; p < PAGES; p++) {
        const at = A + (BigInt(p) << 12n);
        const m = b.mm.pgtable.lookup(at);
        const read = dma(b.hw, 5, at, { pasid: PASID });
        expect(read.ok).toBe(m !== null);
        if (read.ok) expect(read.pa).toBe(m!.pa);
        const write = dma(b.hw, 5, at, { pasid: PASID, data: bytes(p) });
        expect(write.ok).toBe(m !== null && (m.perm & PTE_W) !== 0);
      }
    }
  });
});
