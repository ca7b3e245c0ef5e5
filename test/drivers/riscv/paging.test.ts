import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../../src/base/result.js";
import type { RiscvPagingDomain } from "../../../src/drivers/riscv/domain.js";
import {
  IOMMU_FAULT_READ,
  IOMMU_FAULT_WRITE,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../../../src/iommu/constants.js";
import { bed, bytes, commandsOf, dma } from "./setup.js";

const PA = 0x8300_0000n;
const RW = IOMMU_READ | IOMMU_WRITE;

/** A device on iommu0 with an UNMANAGED paging domain attached. */
function attached(o: Parameters<typeof bed>[0] = [{ name: "iommu0" }]) {
  const b = bed(o);
  const d = b.dev("dev0", 5);
  const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
  expect(b.core.attachDevice(dom, d)).toEqual(OK);
  return { ...b, d, dom, hw: b.io.hardware, iommu: b.io.iommu };
}

describe("paging domains", () => {
  it("have the kernel's page sizes and aperture for the widest Sv mode", () => {
    const b = attached();
    expect(b.dom.pagingMode.name).toBe("Sv57");
    expect(b.dom.pgsizeBitmap).toBe((1n << 12n) | (1n << 21n) | (1n << 30n) | (1n << 39n));
    expect(b.dom.geometry).toEqual({
      apertureStart: 0n,
      apertureEnd: (1n << 56n) - 1n,
      forceAperture: true,
    });
    const s39 = attached([{ name: "iommu0", capabilities: { Sv48: false, Sv57: false } }]);
    expect(s39.dom.pagingMode.name).toBe("Sv39");
    expect(s39.dom.pgsizeBitmap).toBe((1n << 12n) | (1n << 21n) | (1n << 30n));
    expect(s39.dom.geometry.apertureEnd).toBe((1n << 38n) - 1n);
  });

  it("an IOMMU without first-stage modes cannot allocate one (ENODEV)", () => {
    const b = bed([{ name: "iommu0", capabilities: { Sv39: false, Sv48: false, Sv57: false } }]);
    const d = b.dev("dev0", 1);
    expect(b.core.pagingDomainAlloc(d)).toEqual(err("ENODEV"));
  });

  it("attach writes the DC (iosatp, PSCID) with IODIR.INVAL_DDT and IOFENCE.C around it", () => {
    const b = bed();
    const d = b.dev("dev0", 5);
    const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    const cmds = commandsOf(b.ctx, () => expect(b.core.attachDevice(dom, d)).toEqual(OK));
    // The old DC (the default DMA domain) was valid: invalidate, rewrite, invalidate.
    expect(cmds).toEqual([
      "IODIR.INVAL_DDT DV=1 DID=5",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      "IODIR.INVAL_DDT DV=1 DID=5",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      // The default domain lost its last device: its PSCID is flushed.
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${(b.core.getDmaDomain(d) as RiscvPagingDomain).pscid}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    const info = d.iommu!.priv as { toJSON(): unknown };
    expect(JSON.stringify(info.toJSON())).toContain(`"PSCID":${dom.pscid}`);
  });

  it("a device's DMA reaches the mapped physical memory, read and write", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x2000n, RW)).toEqual(OK);
    b.memory.writeBytes(PA + 0x1010n, bytes(1, 2, 3, 4));
    const r = dma(b.hw, 5, 0x11010n, { length: 4 });
    expect(r).toEqual({ ok: true, pa: PA + 0x1010n, data: bytes(1, 2, 3, 4) });
    expect(dma(b.hw, 5, 0x10008n, { data: bytes(9, 9) }).ok).toBe(true);
    expect(b.memory.read16(PA + 8n)).toBe(0x0909);
    expect(b.core.iovaToPhys(b.dom, 0x11234n)).toBe(PA + 0x1234n);
  });

  it("iova_to_phys by page number (the driver's iovaToPhysPfn): 4 KiB and 2 MiB leaves, -1 elsewhere", () => {
    const b = attached();
    expect(b.dom.ops?.iovaToPhysPfn).toBeDefined();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x2000n, RW)).toEqual(OK);
    expect(b.core.map(b.dom, 0x40_0000n, PA + 0x20_0000n, 0x20_0000n, RW)).toEqual(OK);
    const pa = Number(PA >> 12n);
    for (const [iovaPfn, ppn] of [
      [0x10, pa],
      [0x11, pa + 1],
      [0x12, -1],
      [0x400, pa + 0x200],
      [0x5ff, pa + 0x3ff],
      [0x600, -1],
      [2 ** 45, -1],
    ]) {
      expect([iovaPfn, b.core.iovaToPhysPfn(b.dom, iovaPfn!)]).toEqual([iovaPfn, ppn]);
      const phys = b.core.iovaToPhys(b.dom, BigInt(iovaPfn!) << 12n);
      expect(phys === 0n ? -1 : Number(phys >> 12n)).toBe(ppn);
    }
  });

  it("read-only mappings refuse device writes (write page fault, cause 15)", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x1000n, IOMMU_READ)).toEqual(OK);
    expect(dma(b.hw, 5, 0x10000n).ok).toBe(true);
    expect(dma(b.hw, 5, 0x10000n, { data: bytes(1) })).toEqual({
      ok: false,
      fault: "write_page_fault",
      cause: 15,
    });
  });

  it("strict unmap: IOTINVAL.VMA of the page then IOFENCE.C; the next access faults", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x1000n, RW)).toEqual(OK);
    expect(dma(b.hw, 5, 0x10000n).ok).toBe(true); // now cached in the IOTLB
    const cmds = commandsOf(b.ctx, () =>
      expect(b.core.unmap(b.dom, 0x10000n, 0x1000n)).toBe(0x1000n),
    );
    expect(cmds).toEqual([
      `IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${b.dom.pscid} ADDR=0x10000`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.hw, 5, 0x10000n)).toEqual({ ok: false, fault: "read_page_fault", cause: 13 });
  });

  it("a skipped invalidation (test hook) leaves a stale IOTLB hit: the invalidations keep DMA coherent", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x1000n, RW)).toEqual(OK);
    expect(dma(b.hw, 5, 0x10000n).ok).toBe(true);
    b.iommu.inject.skipIotinval = true;
    const cmds = commandsOf(b.ctx, () => b.core.unmap(b.dom, 0x10000n, 0x1000n));
    expect(cmds).toEqual(["IOFENCE.C AV=0 WSI=0 PR=0 PW=0"]);
    expect(b.core.iovaToPhys(b.dom, 0x10000n)).toBe(0n);
    // The page table says unmapped, yet the device still reaches the old page.
    const stale = dma(b.hw, 5, 0x10000n);
    expect(stale.ok && stale.pa).toBe(PA);
    b.iommu.inject.skipIotinval = false;
    b.dom.flushIotlbAll();
    expect(dma(b.hw, 5, 0x10000n).ok).toBe(false);
  });

  it("invalidates the whole PSCID from 2 MiB on (riscv_iommu_iotlb_inval's limit)", () => {
    const b = attached();
    // PA off 2 MiB alignment: 4 KiB pages only.
    expect(b.core.map(b.dom, 0x400000n, PA + 0x1000n, 0x203000n, RW)).toEqual(OK);
    const small = commandsOf(b.ctx, () => b.core.unmap(b.dom, 0x400000n, 0x3000n));
    expect(small.filter((c) => c.startsWith("IOTINVAL")).length).toBe(3);
    const below = commandsOf(b.ctx, () => b.core.unmap(b.dom, 0x403000n, 0x1ff000n));
    expect(below.filter((c) => c.startsWith("IOTINVAL")).length).toBe(511);
    b.core.map(b.dom, 0x400000n, PA + 0x1000n, 0x202000n, RW);
    const big = commandsOf(b.ctx, () => b.core.unmap(b.dom, 0x400000n, 0x200000n));
    expect(big.filter((c) => c.startsWith("IOTINVAL"))).toEqual([
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${b.dom.pscid}`,
    ]);
  });

  it("maps 2 MiB leaves when size and alignment allow; unmapping a page at its start unmaps the leaf", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x200000n, PA - (PA % 0x200000n), 0x200000n, RW)).toEqual(OK);
    const m = b.dom.pgtable.lookup(0x201000n);
    expect(m?.size).toBe(0x200000n);
    expect(b.core.unmap(b.dom, 0x200000n, 0x1000n)).toBe(0x200000n);
    expect(b.dom.pgtable.lookup(0x201000n)).toBeNull();
  });

  it("refuses to replace a live mapping (EEXIST) and rolls the map back", () => {
    const b = attached();
    expect(b.core.map(b.dom, 0x10000n, PA, 0x1000n, RW)).toEqual(OK);
    expect(b.core.map(b.dom, 0xf000n, PA, 0x2000n, RW)).toEqual(err("EEXIST"));
    expect(b.core.iovaToPhys(b.dom, 0xf000n)).toBe(0n);
    expect(b.core.iovaToPhys(b.dom, 0x10000n)).toBe(PA);
    expect(b.ctx.warnings.take().map((w) => w.site)).toContain("riscv_iommu_map_pages");
  });

  it("a domain no device uses sends no commands; lazy unmaps are flushed by flush_iotlb_all", () => {
    const b = bed();
    const d = b.dev("dev0", 5);
    const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    expect(
      commandsOf(b.ctx, () => {
        b.core.map(dom, 0x1000n, PA, 0x1000n, RW);
        b.core.unmap(dom, 0x1000n, 0x1000n);
      }),
    ).toEqual([]);
    b.core.attachDevice(dom, d);
    b.core.map(dom, 0x1000n, PA, 0x1000n, RW);
    expect(dma(b.io.hardware, 5, 0x1000n).ok).toBe(true);
    // Lazy: unmap without the sync (what a flush queue does), then flush everything at once.
    b.core.s.gather.init();
    expect(dom.unmapPages(1, 12, 1, b.core.s.gather)).toBe(1);
    expect(dma(b.io.hardware, 5, 0x1000n).ok).toBe(true); // stale until the flush
    expect(commandsOf(b.ctx, () => dom.flushIotlbAll())).toEqual([
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${dom.pscid}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.io.hardware, 5, 0x1000n).ok).toBe(false);
  });

  it("keeps emptied tables for reuse; a superpage over an emptied table invalidates the whole PSCID", () => {
    const b = attached();
    const before = b.frames.framesInUse;
    b.core.map(b.dom, 0x40000000n, PA, 0x1000n, RW);
    const withTables = b.frames.framesInUse;
    expect(withTables).toBeGreaterThan(before);
    const cmds = commandsOf(b.ctx, () => b.core.unmap(b.dom, 0x40000000n, 0x1000n));
    expect(cmds[0]).toBe(`IOTINVAL.VMA AV=1 PSCV=1 GV=0 PSCID=${b.dom.pscid} ADDR=0x40000000`);
    expect(b.frames.framesInUse).toBe(withTables);
    // Mapping again reuses the tables: no new frame.
    b.core.map(b.dom, 0x40001000n, PA, 0x1000n, RW);
    expect(b.frames.framesInUse).toBe(withTables);
    b.core.unmap(b.dom, 0x40001000n, 0x1000n);
    const big = commandsOf(b.ctx, () =>
      expect(b.core.map(b.dom, 0x40000000n, 0x84000000n, 0x200000n, RW)).toEqual(OK),
    );
    expect(big).toEqual([
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${b.dom.pscid}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(b.frames.framesInUse).toBe(withTables - 1);
  });

  it("freeing a domain gives back its PSCID and every page-table page", () => {
    const b = bed();
    const d = b.dev("dev0", 5);
    const before = b.frames.framesInUse;
    const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
    b.core.map(dom, 0x40000000n, PA, 0x3000n, RW);
    expect(b.io.iommu.pscidsInUse()).toContain(dom.pscid);
    b.core.domainFree(dom);
    expect(b.io.iommu.pscidsInUse()).not.toContain(dom.pscid);
    expect(b.frames.framesInUse).toBe(before);
    // A view of the freed domain no longer reads its (gone) table.
    expect(dom.toJSON()).toMatchObject({ freed: true, root: null, pscid: dom.pscid });
  });

  it("capable: CACHE_COHERENCY and DEFERRED_FLUSH (DMA-FQ default domains work)", () => {
    const b = bed([{ name: "iommu0" }], { strict: false });
    const d = b.dev("dev0", 5);
    expect(b.core.deviceIommuCapable(d, 4)).toBe(true);
    expect(b.core.deviceIommuCapable(d, 0)).toBe(true);
    expect(b.core.deviceIommuCapable(d, 5)).toBe(false);
    expect(b.core.groupShowType(b.core.groupOf(d)!)).toBe("DMA-FQ");
  });
});

describe("identity and blocked domains", () => {
  it("identity: DC valid with Bare iosatp; blocked: DC invalid, DMA faults with cause 258", () => {
    const b = attached();
    const identity = b.driver.identityDomain;
    b.core.detachDevice(b.dom, b.d);
    // Claiming DMA ownership parks the group on the blocking domain.
    expect(b.core.deviceClaimDmaOwner(b.d, "owner")).toEqual(OK);
    expect(b.core.getDomainForDev(b.d)).toBe(b.driver.blockedDomain);
    expect(dma(b.hw, 5, 0x1000n)).toEqual({ ok: false, fault: "ddt_entry_not_valid", cause: 258 });
    expect(b.core.attachDevice(identity, b.d)).toEqual(OK);
    const r = dma(b.hw, 5, PA + 0x10n);
    expect(r.ok && r.pa).toBe(PA + 0x10n);
  });
});

describe("fault queue draining", () => {
  it("the interrupt thread drains the FQ into report_iommu_fault, the io_page_fault tracepoint and the fault log", () => {
    const b = attached();
    const seen: Array<[bigint, number]> = [];
    b.core.setFaultHandler(
      b.dom,
      (_d, _dev, iova, flags) => {
        seen.push([iova, flags]);
        return OK;
      },
      null,
    );
    const rec = b.ctx.trace.record();
    expect(dma(b.hw, 5, 0x7000n, { data: bytes(1) }).ok).toBe(false);
    expect(dma(b.hw, 5, 0x8010n).ok).toBe(false);
    // The MSI reached the driver's hard handler, which queued the FQ thread.
    expect(b.ctx.scheduler.queues().some((q) => q.pendingCount > 0)).toBe(true);
    expect(b.iommu.faultLog).toEqual([]);
    b.ctx.scheduler.settle();
    expect(seen).toEqual([
      [0x7000n, IOMMU_FAULT_WRITE],
      [0x8010n, IOMMU_FAULT_READ],
    ]);
    const trace = rec.stop();
    expect(trace.filter((r) => r.event === "iommu:io_page_fault").map((r) => r.fields)).toEqual([
      { device: "dev0", driver: "platform", iova: 0x7000n, flags: 1 },
      { device: "dev0", driver: "platform", iova: 0x8010n, flags: 0 },
    ]);
    expect(
      b.iommu.faultLog.map((e) => [
        e.record.cause,
        e.record.ttyp,
        e.record.did,
        e.device,
        e.domain,
        e.reported,
      ]),
    ).toEqual([
      [15, 3, 5, "dev0", b.dom.id, "0"],
      [13, 2, 5, "dev0", b.dom.id, "0"],
    ]);
    // fqh caught up with fqt.
    expect(b.hw.read32(0x30)).toBe(b.hw.read32(0x34));
  });

  it("an explicit drain works without interrupts; a fault of an unknown device_id is logged only", () => {
    const b = attached();
    expect(dma(b.hw, 77, 0x1000n)).toEqual({ ok: false, fault: "ddt_entry_not_valid", cause: 258 });
    expect(b.iommu.processFaultQueue()).toBe(1);
    expect(b.iommu.faultLog[0]).toMatchObject({ device: null, reported: "unknown device_id" });
    expect(b.iommu.faultLog[0]!.record.did).toBe(77);
    // dev_warn_ratelimited("Fault %d devid: 0x%x iotval: %llx iotval2: %llx"): %llx has no 0x.
    expect(b.core.logs().map((l) => l.message)).toContain(
      "riscv-iommu iommu0: Fault 258 devid: 0x4d iotval: 1000 iotval2: 0",
    );
  });

  it("fqof: overflowing records are dropped, the handler clears the error and reporting resumes", () => {
    const b = bed([{ name: "iommu0", options: { fqEntries: 4 } }]);
    b.dev("dev0", 5);
    for (let i = 0; i < 6; i++) dma(b.io.hardware, 5, BigInt(i) << 12n);
    b.ctx.scheduler.settle();
    // 3 records fit a 4-entry queue (one slot stays empty); the rest were dropped.
    expect(b.io.iommu.faultLog.length).toBe(3);
    expect(b.io.iommu.queueErrors.fq).toBe(1);
    expect(b.core.logs().some((l) => l.message.includes("overflow:1"))).toBe(true);
    dma(b.io.hardware, 5, 0x9000n);
    b.ctx.scheduler.settle();
    expect(b.io.iommu.faultLog.length).toBe(4);
  });

  it("wired interrupts: the level stays up until the thread cleared ipsr.fip", () => {
    const b = bed([{ name: "iommu0", options: { msi: false } }]);
    b.dev("dev0", 5);
    dma(b.io.hardware, 5, 0x1000n);
    expect(b.io.iommu.runIrqThreads()).toBe(1);
    expect(b.io.iommu.faultLog.length).toBe(1);
    expect(b.io.hardware.read32(0x54) & 2).toBe(0);
    dma(b.io.hardware, 5, 0x2000n);
    expect(b.io.iommu.runIrqThreads()).toBe(1);
    expect(b.io.iommu.faultLog.length).toBe(2);
  });
});

describe("release", () => {
  it("removing a device invalidates its DC and drops its device_ids", () => {
    const b = attached();
    const cmds = commandsOf(b.ctx, () => b.model.deviceDel(b.d));
    expect(cmds).toContain("IODIR.INVAL_DDT DV=1 DID=5");
    expect(dma(b.hw, 5, 0x1000n).ok).toBe(false);
    expect(b.iommu.deviceOf(5)).toBeNull();
  });
});

describe("coherence", () => {
  test.prop(
    [
      fc.array(
        fc.record({
          map: fc.boolean(),
          page: fc.integer({ min: 0, max: 15 }),
          pages: fc.integer({ min: 1, max: 4 }),
          frame: fc.integer({ min: 0, max: 63 }),
          write: fc.boolean(),
        }),
        { minLength: 1, maxLength: 30 },
      ),
    ],
    { numRuns: 50 },
  )("with strict invalidation the device only ever sees what the page table maps now", (ops) => {
    const b = attached();
    const IOVA = 0x100000n;
    for (const o of ops) {
      const iova = IOVA + (BigInt(o.page) << 12n);
      const size = BigInt(o.pages) << 12n;
      if (o.map) {
        // Only into a free range (iommu_map never replaces).
        let free = true;
        for (let i = 0n; i < size; i += 0x1000n) free &&= b.core.iovaToPhys(b.dom, iova + i) === 0n;
        if (free) {
          const prot = o.write ? RW : IOMMU_READ;
          expect(b.core.map(b.dom, iova, PA + (BigInt(o.frame) << 12n), size, prot)).toEqual(OK);
        }
      } else {
        b.core.unmap(b.dom, iova, size);
      }
      for (let p = 0; p < 20; p++) {
        const at = IOVA + (BigInt(p) << 12n);
        const want = b.core.iovaToPhys(b.dom, at);
        const r = dma(b.hw, 5, at);
        expect(r.ok ? r.pa : 0n).toBe(want);
      }
    }
  });
});
