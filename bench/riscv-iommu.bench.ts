// RISC-V IOMMU translation cost: an IOTLB hit, and a full Sv48 walk with the device context
// cached (IOTLB miss), plus the two-stage miss and an ATS Translation Request for comparison;
// and the command queue's cost for one strict unmap's invalidation (IOTINVAL.VMA + IOFENCE.C).

import { createContext } from "../src/base/context.js";
import { FrameAllocator, PhysicalMemory } from "../src/hw/memory.js";
import {
  AtsCompletion,
  AtsRequest,
  DmaRequest,
  DmaResponse,
} from "../src/hw/pci/translation-agent.js";
import { SV39X4, SV48 } from "../src/hw/pgtable/modes.js";
import { PageTable } from "../src/hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X } from "../src/hw/pgtable/pte.js";
import { RiscvIommu } from "../src/hw/riscv-iommu/iommu.js";
import type { BenchSuite } from "./harness.js";

const URW = PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;

/** An IOMMU with a 1LVL DDT; device 1 single-stage Sv48, device 2 two-stage Sv48 over Sv39x4. */
function machine(iotlbEntries: number) {
  const ctx = createContext();
  const mem = new PhysicalMemory([{ base: 0x8000_0000n, size: 256n << 20n }]);
  const frames = new FrameAllocator(mem);
  const iommu = new RiscvIommu(ctx, mem, "iommu0", { iotlbEntries });
  const ddt = BigInt(frames.alloc()) << 12n;
  const s1 = PageTable.create(mem, frames, SV48)!;
  const g = PageTable.create(mem, frames, SV39X4)!;
  g.map(0x8000_0000n, 0x8000_0000n, 1n << 30n, URW | PTE_X);
  const pages = [0x10_0000_0000n, 0x20_0000_0000n, 0x30_0000_0000n];
  for (const va of pages) s1.map(va, BigInt(frames.alloc()) << 12n, 4096n, URW);
  // DC 1: iosatp Sv48, PSCID 1. DC 2: the same first stage over an identity G-stage, GSCID 1.
  mem.write64(ddt + 32n, 1n);
  mem.write64(ddt + 32n + 16n, 1n << 12n);
  mem.write64(ddt + 32n + 24n, (9n << 60n) | BigInt(s1.rootPpn));
  mem.write64(ddt + 64n, 3n); // V, EN_ATS
  mem.write64(ddt + 64n + 8n, (8n << 60n) | (1n << 44n) | BigInt(g.rootPpn));
  mem.write64(ddt + 64n + 16n, 1n << 12n);
  mem.write64(ddt + 64n + 24n, (9n << 60n) | BigInt(s1.rootPpn));
  iommu.write64(16, ((ddt >> 12n) << 10n) | 2n);
  return { iommu, mem, frames, pages: pages.map((va) => Number(va >> 12n)) };
}

/** Register offsets of the command queue (RISC-V IOMMU "Register layout"). */
const CQB = 24;
const CQH = 32;
const CQT = 36;
const CQCSR = 72;

export const suite: BenchSuite = {
  title: "riscv-iommu",
  build(bench) {
    const out = new DmaResponse();
    let sink = 0;

    const hit = machine(4096);
    const req = new DmaRequest();
    req.deviceId = 1;
    req.iovaPage = hit.pages[0]!;
    hit.iommu.translate(req, out);
    bench.add("translate, IOTLB hit (Sv48)", () => {
      hit.iommu.translate(req, out);
      sink ^= out.ppn;
    });

    // One IOTLB entry and two pages alternating: every translation misses and walks.
    const miss = machine(1);
    const mreq = new DmaRequest();
    mreq.deviceId = 1;
    let i = 0;
    bench.add("translate, IOTLB miss: full Sv48 walk, DC cached", () => {
      mreq.iovaPage = miss.pages[i++ & 1]!;
      miss.iommu.translate(mreq, out);
      sink ^= out.ppn;
    });

    const two = machine(1);
    const treq = new DmaRequest();
    treq.deviceId = 2;
    let j = 0;
    bench.add("translate, IOTLB miss: two-stage Sv48 over Sv39x4", () => {
      treq.iovaPage = two.pages[j++ & 1]!;
      two.iommu.translate(treq, out);
      sink ^= out.ppn;
    });

    const atsReq = new AtsRequest();
    atsReq.deviceId = 2;
    atsReq.iovaPage = two.pages[2]!;
    const completion = new AtsCompletion();
    const atsM = machine(4096);
    atsM.iommu.atsTranslate(atsReq, completion);
    bench.add("ATS Translation Request, IOTLB hit", () => {
      atsM.iommu.atsTranslate(atsReq, completion);
      sink ^= completion.ppn;
    });

    // A 64-entry command queue pre-filled with IOTINVAL.VMA (AV=1, PSCV=1 PSCID 1, an address
    // not cached) / IOFENCE.C (AV=0, as the Linux driver's sync) pairs: each operation advances
    // cqt by two, as a driver's strict unmap does. The IOTLB keeps the three entries of PSCID 1,
    // so every IOTINVAL.VMA looks at them and drops none.
    const cq = machine(4096);
    const cqPpn = cq.frames.alloc();
    const cqBase = BigInt(cqPpn) << 12n;
    const cqEntries = 64;
    const unmapped = 0x40_0000_0000n >> 12n;
    for (let k = 0; k < cqEntries; k += 2) {
      const at = cqBase + BigInt(k) * 16n;
      cq.mem.write64(at, 1n | (1n << 10n) | (1n << 12n) | (1n << 32n)); // IOTINVAL.VMA
      cq.mem.write64(at + 8n, unmapped << 10n);
      cq.mem.write64(at + 16n, 2n); // IOFENCE.C
      cq.mem.write64(at + 24n, 0n);
    }
    cq.iommu.write64(CQB, (BigInt(cqPpn) << 10n) | BigInt(Math.log2(cqEntries) - 1));
    cq.iommu.write32(CQCSR, 1);
    const cqReq = new DmaRequest();
    cqReq.deviceId = 1;
    for (const p of cq.pages) {
      cqReq.iovaPage = p;
      cq.iommu.translate(cqReq, out);
    }
    let tail = 0;
    const invalidate = () => {
      tail = (tail + 2) & (cqEntries - 1);
      cq.iommu.write32(CQT, tail);
    };
    invalidate();
    bench.add("IOTINVAL.VMA (address) + IOFENCE.C through the command queue", () => {
      invalidate();
      sink ^= tail;
    });
    if (
      cq.iommu.read32(CQH) !== tail ||
      cq.iommu.read32(CQCSR) !== 0x1_0001 ||
      cq.iommu.iotlb.size !== cq.pages.length
    ) {
      throw new Error("benchmark set-up does not run the command queue");
    }

    if (sink === -1 || out.fault !== null || completion.status !== "success") {
      throw new Error("benchmark set-up does not translate");
    }
  },
};
