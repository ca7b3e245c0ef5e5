// The isolation oracle on whole RISC-V machines: correct software gives no findings; each way a
// device can reach memory the OS no longer maps for it (the lazy flush window, a missed IOTLB or
// ATC invalidation, supervisor SVA's kernel mappings, the previous domain), hardware pointed
// somewhere else, refused accesses the OS allows, and peer-to-peer traffic no IOMMU sees are
// found, each under its own category.

import { describe, expect, it, vi } from "vitest";
import { unwrap } from "../../src/base/result.js";
import { attachOracle, IsolationOracle } from "../../src/check/oracle.js";
import { NicDriver } from "../../src/drivers/nic/e1000.js";
import { infoOf } from "../../src/drivers/riscv/fault.js";
import { DC_TC, RiscvIommuCommand } from "../../src/drivers/riscv/iommu-bits.js";
import { IOMMU_SVA_BIND_SUPERVISOR } from "../../src/iommu/sva.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { vmap, vmUnmapAliases, vunmap } from "../../src/mm/vmalloc.js";
import { type OracleRig, oracleRig } from "./oracle-fixture.js";

const LAZY = { extends: "default", boot: { "iommu.strict": 0 } };
const FQ_TIMEOUT_NS = 10_000_000;

/** The DC of a device in memory (address of its first byte). */
function dcAddress(r: OracleRig, name: string): bigint {
  const place = r.riscv(name).iommu.dcPlace(r.deviceId(name))!;
  return (BigInt(place.ppn) << 12n) + BigInt(place.offset);
}

/** IODIR.INVAL_DDT of one device, then IOFENCE.C, through the driver's command queue. */
function invalidateDc(r: OracleRig, name: string): void {
  const iommu = r.riscv(name).iommu;
  iommu.cmdSend(new RiscvIommuCommand().iodirInvalDdt().setDid(r.deviceId(name)));
  iommu.cmdSync();
}

describe("correct software, strict invalidation: nothing to find", () => {
  it("NIC loopback through the DMA API: every ring and buffer access is what the OS mapped", () => {
    const r = oracleRig({ extends: "default", devices: { nic0: { driver: null } } });
    const m = r.m;
    const env = { dma: m.dma, memory: m.memory, frames: m.frames, bridges: m.endpoints.bridges };
    const driver = new NicDriver(env, m.buses.pci, { loopback: true });
    m.model.driverRegister(driver);
    const adapter = driver.adapterOf(r.dev("nic0"))!;
    for (let i = 0; i < 8; i++) {
      expect(adapter.xmit(new Uint8Array(100 + i * 300).fill(i))).toBe("NETDEV_TX_OK");
    }
    m.settle();
    expect(adapter.poll()).toEqual({ tx: 8, rx: 8 });
    const s = r.oracle.stats();
    expect(s.checked).toBeGreaterThan(16);
    expect(s.agreed).toBe(s.checked - s.expectedFaults);
    r.clean();
    expect(r.oracle.verdict().summary).toMatch(/^isolated: \d+ device accesses checked/);
  });

  it("a test device: DMA while mapped agrees; after dma_unmap it faults, as the OS says", () => {
    const r = oracleRig();
    const acc = r.testDevice("acc0");
    const iova = r.map("acc0", r.page(0x11));
    expect(acc.read(iova, 8).ok).toBe(true);
    expect(acc.write(iova + 8n, new Uint8Array(4)).ok).toBe(true);
    r.unmap("acc0", iova);
    expect(acc.read(iova, 8).ok).toBe(false);
    expect(r.oracle.stats()).toMatchObject({ checked: 3, agreed: 2, expectedFaults: 1 });
    r.clean();
  });

  it("a VFIO-style owner blocks the group: accesses fault and none is a finding", () => {
    const r = oracleRig();
    const acc = r.testDevice("acc0");
    const iova = r.map("acc0", r.page());
    expect(acc.read(iova, 8).ok).toBe(true);
    const group = r.m.core.groupOf(r.dev("acc0"))!;
    expect(r.m.core.groupClaimDmaOwner(group, "vfio").ok).toBe(true);
    expect(group.domain).toBe(group.blockingDomain);
    expect(acc.read(iova, 8).ok).toBe(false);
    expect(acc.read(0x1000n, 8).ok).toBe(false);
    expect(r.oracle.stats()).toMatchObject({ checked: 3, agreed: 1, expectedFaults: 2 });
    r.clean();
  });
});

describe("lazy invalidation (DMA_FQ)", () => {
  it("an access after dma_unmap and before the flush is one stale access in the lazy window", () => {
    const r = oracleRig(LAZY);
    const acc = r.testDevice("acc0");
    const pa = r.page(0x22);
    const iova = r.map("acc0", pa);
    expect(acc.read(iova, 8).ok).toBe(true);
    r.unmap("acc0", iova);
    expect(acc.read(iova + 0x10n, 8).ok).toBe(true);
    const domain = r.m.core.getDmaDomain(r.dev("acc0"))!;
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "stale",
        category: "stale-iotlb: lazy flush window",
        device: "acc0",
        rid: r.deviceId("acc0"),
        pasid: null,
        access: "read",
        request: "untranslated",
        fromAtc: false,
        iova,
        pa,
        expected: null,
        domain: domain.id,
        time: 0,
      }),
    ]);
    expect(r.oracle.findings()[0]!.detail).toBe(
      `acc0 read of 0x${iova.toString(16)} reached 0x${pa.toString(16)} through a stale IOMMU ` +
        "translation; OS: not mapped; unmapped lazily, its IOTLB flush still waits on the flush queue",
    );
    expect(r.oracle.verdict()).toMatchObject({ isolated: false, findings: 1 });
    expect(r.oracle.verdict().summary).toBe(
      "NOT isolated: 1 finding in 2 checked accesses (1 stale-iotlb: lazy flush window)",
    );
    // The flush-queue timer invalidates the IOTLB: the access faults, which the OS agrees with.
    r.m.advance(FQ_TIMEOUT_NS);
    expect(acc.read(iova, 8).ok).toBe(false);
    expect(r.oracle.findings()).toHaveLength(1);
    expect(r.oracle.stats().expectedFaults).toBe(1);
  });

  it("served from the device's ATC, the window is stale-atc", () => {
    const r = oracleRig(LAZY);
    const acc = r.testDevice("acc0");
    const pa = r.page();
    const iova = r.map("acc0", pa);
    expect(acc.write(iova, new Uint8Array(8), { ats: true }).ok).toBe(true);
    r.unmap("acc0", iova);
    expect(acc.write(iova, new Uint8Array(8), { ats: true }).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        category: "stale-atc: lazy flush window",
        request: "translated",
        fromAtc: true,
        iova,
        pa,
        access: "write",
      }),
    ]);
    // An emptied ATC asks again: the IOMMU's stale translation is granted (not an access by
    // itself), and the access through the new ATC entry is the one finding.
    acc.atc!.clear();
    expect(acc.read(iova, 8, { ats: true }).ok).toBe(true);
    expect(r.oracle.stats().staleGrants).toBe(1);
    expect(r.oracle.findings().map((f) => [f.category, f.request, f.access])).toEqual([
      ["stale-atc: lazy flush window", "translated", "write"],
      ["stale-atc: lazy flush window", "translated", "read"],
    ]);
  });
});

describe("translations the oracle must recognise", () => {
  it("a 2 MiB coherent buffer freed lazily: a page never accessed is stale through the superpage entry", () => {
    const r = oracleRig(LAZY);
    const acc = r.testDevice("acc0");
    const dev = r.dev("acc0");
    const buf = r.m.dma.allocCoherent(dev, 0x20_0000n)!;
    expect(buf.pages.every((p, i) => p === buf.pages[0]! + i)).toBe(true);
    expect(acc.read(buf.dmaHandle, 8).ok).toBe(true);
    r.m.dma.freeCoherent(dev, 0x20_0000n, buf, buf.dmaHandle);
    expect(acc.read(buf.dmaHandle + 0x5_0000n, 8).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        category: "stale-iotlb: lazy flush window",
        iova: buf.dmaHandle + 0x5_0000n,
        pa: BigInt(buf.pages[0x50]!) << 12n,
      }),
    ]);
  });

  it("identity (passthrough) domains: the device reaches the IOVA as a physical address", () => {
    const r = oracleRig({ extends: "default", boot: { "iommu.passthrough": 1 } });
    const pa = r.page(0x66);
    expect(r.testDevice("acc0").read(pa, 8).data[0]).toBe(0x66);
    expect(r.oracle.stats()).toMatchObject({ checked: 1, agreed: 1 });
    r.clean();
  });

  it("a device behind no IOMMU is not checked, only counted", () => {
    const r = oracleRig({
      extends: "default",
      pci: { rp9: { type: "root_port", slot: 9 } },
      devices: { raw0: { parent: "rp9", iommu: null, endpoint: "test" } },
    });
    const pa = r.page(0x77);
    expect(r.testDevice("raw0").read(pa, 8).data[0]).toBe(0x77);
    expect(r.oracle.stats()).toMatchObject({ checked: 0, unchecked: { "no IOMMU group": 1 } });
    r.clean();
  });
});

describe("missed invalidations", () => {
  it("IOTINVAL skipped (inject.skipIotinval): stale with no flush pending, also after the IOVA is reused", () => {
    const r = oracleRig();
    const acc = r.testDevice("acc0");
    r.riscv("acc0").iommu.inject.skipIotinval = true;
    const pa = r.page();
    const iova = r.map("acc0", pa);
    expect(acc.read(iova, 8).ok).toBe(true);
    r.unmap("acc0", iova);
    expect(acc.read(iova, 8).ok).toBe(true);
    // Strict mode frees the IOVA at once: the next map reuses it for another page.
    const other = r.page();
    expect(r.map("acc0", other)).toBe(iova);
    expect(acc.read(iova, 8).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        category: "stale-iotlb: missed invalidation",
        pa,
        expected: null,
      }),
      expect.objectContaining({
        category: "stale-iotlb: missed invalidation",
        pa,
        expected: other,
      }),
    ]);
  });

  it("a device that acknowledges ATS invalidations without dropping its ATC entries: stale-atc", () => {
    const r = oracleRig();
    const acc = r.testDevice("acc0");
    const pa = r.page();
    const iova = r.map("acc0", pa);
    expect(acc.read(iova, 8, { ats: true }).ok).toBe(true);
    const inval = vi.spyOn(acc.atc!, "invalidate").mockReturnValue(0);
    r.unmap("acc0", iova);
    expect(inval).toHaveBeenCalled();
    // The IOMMU dropped its translation: an Untranslated request faults, the ATC still serves.
    expect(acc.read(iova, 8).ok).toBe(false);
    expect(acc.read(iova, 8, { ats: true }).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "stale",
        category: "stale-atc: missed invalidation",
        fromAtc: true,
        iova,
        pa,
      }),
    ]);
  });
});

describe("SVA", () => {
  it("supervisor SVA (seed 003): a vunmapped kernel page stays reachable — the kernel mapping is never flushed", () => {
    const r = oracleRig();
    const m = r.m;
    const kpage = r.page(0x33);
    const kva = vmap(m.mm, [Number(kpage >> 12n)])!;
    const sva = unwrap(m.core.svaBindDevice(r.dev("dsa0"), null, IOMMU_SVA_BIND_SUPERVISOR));
    const pasid = m.core.svaGetPasid(sva);
    // A User request cannot reach a kernel page: the OS agrees with the fault.
    expect(r.rawRead("dsa0", kva, { pasid }).ok).toBe(false);
    expect(r.rawRead("dsa0", kva, { pasid, privileged: true }).ok).toBe(true);
    vunmap(m.mm, kva);
    vmUnmapAliases(m.mm);
    expect(r.rawRead("dsa0", kva, { pasid, privileged: true }).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "stale",
        category: "stale-iotlb: kernel mapping not flushed",
        device: "dsa0",
        pasid,
        privileged: true,
        iova: kva,
        pa: kpage,
        mm: 0,
      }),
    ]);
    expect(r.oracle.stats()).toMatchObject({ agreed: 1, expectedFaults: 1 });
    m.core.svaUnbindDevice(sva);
  });

  it("user SVA: munmap's notifier flushes the IOMMU (no findings); untouched pages are PRI faults", () => {
    const r = oracleRig();
    const m = r.m;
    const p = unwrap(m.processes.spawn("app"));
    const mm = p.mm!;
    const va = 0x4000_0000n;
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    expect(vmMmap(mm, va, 0x4000n, PROT_READ | PROT_WRITE, flags).ok).toBe(true);
    expect(m.cpu.store(mm, va, new Uint8Array([1, 2, 3])).ok).toBe(true);
    const sva = unwrap(m.core.svaBindDevice(r.dev("acc0"), mm));
    const pasid = m.core.svaGetPasid(sva);
    const acc = r.testDevice("acc0");
    expect(acc.read(va, 3, { pasid }).ok).toBe(true);
    // Never touched by the CPU: not present, the fault handler would map it.
    expect(acc.read(va + 0x2000n, 8, { pasid }).ok).toBe(false);
    expect(unwrap(vmMunmap(mm, va, 0x1000n)) ?? null).toBeNull();
    expect(acc.read(va, 3, { pasid }).ok).toBe(false);
    expect(r.oracle.stats()).toMatchObject({
      checked: 3,
      agreed: 1,
      priFaults: 1,
      expectedFaults: 1,
    });
    r.clean();
    m.core.svaUnbindDevice(sva);
  });
});

describe("hardware that does not do what the OS programmed", () => {
  /** acc0 and gpu0 (both behind iommu1, separate groups) each map one page at the same IOVA. */
  function twoDomains() {
    const r = oracleRig();
    const mine = r.page(0x44);
    const theirs = r.page(0x55);
    const iova = r.map("acc0", mine);
    expect(r.map("gpu0", theirs)).toBe(iova);
    return { r, iova, mine, theirs };
  }

  it("a DC whose iosatp.PPN points at another domain's table: wrong-target", () => {
    const { r, iova, mine, theirs } = twoDomains();
    const other = r.m.core.getDmaDomain(r.dev("gpu0"))! as unknown as { rootPpn: number };
    const fsc = dcAddress(r, "acc0") + 24n;
    const old = r.m.memory.read64(fsc);
    r.m.memory.write64(fsc, (old & ~((1n << 44n) - 1n)) | BigInt(other.rootPpn));
    invalidateDc(r, "acc0");
    expect(r.testDevice("acc0").read(iova, 8).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "wrong-target",
        category: "wrong-target",
        iova,
        pa: theirs,
        expected: mine,
      }),
    ]);
    expect(r.oracle.findings()[0]!.detail).toBe(
      `acc0 read of 0x${iova.toString(16)} reached 0x${theirs.toString(16)}, which the OS ` +
        `never mapped there; OS maps it to 0x${mine.toString(16)}`,
    );
    expect(r.oracle.verdict().summary).toContain("1 wrong-target");
  });

  it("a DC made invalid behind the driver's back: accesses the OS maps fault — unexpected-fault", () => {
    const { r, iova, mine } = twoDomains();
    const tc = dcAddress(r, "acc0");
    r.m.memory.write64(tc, r.m.memory.read64(tc) & ~1n);
    invalidateDc(r, "acc0");
    expect(r.testDevice("acc0").read(iova, 8).ok).toBe(false);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "unexpected-fault",
        iova,
        pa: null,
        expected: mine,
        fault: "ddt_entry_not_valid",
      }),
    ]);
  });

  it("DC.tc.EN_ATS cleared behind the driver's back: the ATS Translation Request is refused — unexpected-fault", () => {
    const { r, iova, mine } = twoDomains();
    const tc = dcAddress(r, "acc0");
    r.m.memory.write64(tc, r.m.memory.read64(tc) & ~BigInt(DC_TC.EN_ATS));
    invalidateDc(r, "acc0");
    const acc = r.testDevice("acc0");
    expect(acc.read(iova, 8, { ats: true }).ok).toBe(false);
    expect(acc.read(iova, 8).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "unexpected-fault",
        request: "ats-translation",
        iova,
        pa: null,
        expected: mine,
      }),
    ]);
    expect(r.oracle.stats()).toMatchObject({ checked: 2, agreed: 1 });
  });

  it("an old DC written back after the group moved to a blocking domain: stale through the previous domain", () => {
    const r = oracleRig();
    const acc = r.testDevice("acc0");
    const pa = r.page();
    const iova = r.map("acc0", pa);
    expect(acc.read(iova, 8).ok).toBe(true);
    const dc = dcAddress(r, "acc0");
    const saved = r.m.memory.readBytes(dc, 32);
    expect(r.m.core.groupClaimDmaOwner(r.m.core.groupOf(r.dev("acc0"))!, "vfio").ok).toBe(true);
    r.m.memory.writeBytes(dc, saved);
    invalidateDc(r, "acc0");
    expect(acc.read(iova, 8).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({ kind: "stale", category: "stale-iotlb: previous domain", pa }),
    ]);
  });
});

describe("SVA, hardware not following the unbind", () => {
  it("a process context written back after the unbind: stale through the PASID's previous address space", () => {
    const r = oracleRig();
    const m = r.m;
    const mm = unwrap(m.processes.spawn("app")).mm!;
    const va = 0x4000_0000n;
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    expect(vmMmap(mm, va, 0x1000n, PROT_READ | PROT_WRITE, flags).ok).toBe(true);
    expect(m.cpu.store(mm, va, new Uint8Array([5])).ok).toBe(true);
    const sva = unwrap(m.core.svaBindDevice(r.dev("acc0"), mm));
    const pasid = m.core.svaGetPasid(sva);
    const acc = r.testDevice("acc0");
    expect(acc.read(va, 1, { pasid }).ok).toBe(true);
    const place = infoOf(r.dev("acc0"))!.pdt!.pcPlace(pasid, false)!;
    const pc = (BigInt(place.ppn) << 12n) + BigInt(place.offset);
    const saved = m.memory.readBytes(pc, 16);
    m.core.svaUnbindDevice(sva);
    expect(acc.read(va, 1, { pasid }).ok).toBe(false);
    r.clean();
    m.memory.writeBytes(pc, saved);
    const iommu = r.riscv("acc0").iommu;
    iommu.cmdSend(new RiscvIommuCommand().iodirInvalPdt(r.deviceId("acc0"), pasid));
    iommu.cmdSync();
    expect(acc.read(va, 1, { pasid }).ok).toBe(true);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        category: "stale-iotlb: previous domain",
        pasid,
        iova: va,
        expected: null,
        domain: null,
      }),
    ]);
    expect(r.oracle.findings()[0]!.detail).toContain(`OS: nothing attached at PASID ${pasid}`);
  });
});

describe("peer-to-peer without ACS", () => {
  it("a write to a peer's BAR below the same switch never reaches the IOMMU: p2p-bypass, reported apart", () => {
    const r = oracleRig({
      name: "p2p",
      memory: { size: "256M" },
      iommus: { iommu0: { driver: "riscv" } },
      pci: {
        rp0: { type: "root_port", slot: 1, acs: true },
        sw0: { type: "switch_upstream", parent: "rp0" },
        dp0: { type: "switch_downstream", parent: "sw0", slot: 0, acs: false },
        dp1: { type: "switch_downstream", parent: "sw0", slot: 1, acs: false },
      },
      devices: {
        t0: { parent: "dp0", endpoint: "test" },
        t1: { parent: "dp1", endpoint: "test" },
      },
    });
    const bar = BigInt(r.dev("t1").fn.barBase(0));
    const t0 = r.testDevice("t0");
    expect(t0.write(bar + 0x10n, new Uint8Array([9, 9])).ok).toBe(true);
    expect(r.testDevice("t1").barMemory(0)[0x10]).toBe(9);
    expect(r.oracle.findings()).toEqual([
      expect.objectContaining({
        kind: "p2p-bypass",
        category: "p2p-bypass",
        device: "t0",
        peer: "t1",
        iova: bar,
        pa: bar,
        expected: null,
        domain: null,
      }),
    ]);
    const v = r.oracle.verdict();
    expect(v).toMatchObject({ isolated: true, findings: 0, p2pBypasses: 1 });
    expect(v.summary).toMatch(/^isolated: .*; 1 peer-to-peer access bypassed the IOMMU$/);
  });
});

describe("the oracle itself", () => {
  it("while a trace is recorded, each finding has a check:isolation record just before the device's dma record", () => {
    const r = oracleRig(LAZY);
    const acc = r.testDevice("acc0");
    const iova = r.map("acc0", r.page());
    acc.read(iova, 8);
    r.unmap("acc0", iova);
    const rec = r.m.ctx.trace.record();
    acc.read(iova, 8);
    const records = rec.stop();
    const [f] = r.oracle.findings();
    const i = records.findIndex((x) => x.event === "check:isolation");
    expect(f?.traceSeq).toBe(records[i]!.seq);
    expect(records[i]!.fields).toMatchObject({ category: "stale-iotlb: lazy flush window", iova });
    expect(records.slice(i).some((x) => x.event === "device:dma")).toBe(true);
    expect(r.m.ctx.trace.enabled).toBe(false);
  });

  it("keeps at most maxFindings, counts them all; clear() forgets them; detach() stops watching", () => {
    const r = oracleRig(LAZY);
    r.oracle.detach();
    const oracle = attachOracle(r.m, { maxFindings: 2 });
    const acc = r.testDevice("acc0");
    const iova = r.map("acc0", r.page());
    acc.read(iova, 8);
    r.unmap("acc0", iova);
    for (let i = 0; i < 5; i++) acc.read(iova, 8);
    expect(oracle.findings()).toHaveLength(2);
    expect(oracle.dropped).toBe(3);
    expect(oracle.counts()).toEqual({
      byKind: { stale: 5 },
      byCategory: { "stale-iotlb: lazy flush window": 5 },
      byDevice: { acc0: 5 },
    });
    expect(oracle.toJSON()).toMatchObject({ verdict: { findings: 5 }, dropped: 3 });
    oracle.clear();
    expect(oracle.verdict().isolated).toBe(true);
    oracle.detach();
    acc.read(iova, 8);
    expect(oracle.stats().pages).toBe(0);
    expect(r.m.endpoints.bridges.every((b) => b.observer === null)).toBe(true);
  });

  it("attachOracle gives the machine's oracle when one watches it; a bridge someone else observes is refused", () => {
    const r = oracleRig();
    expect(attachOracle(r.m)).toBe(r.oracle);
    const parts = { core: r.m.core, pci: r.m.buses.pci, bridges: r.m.endpoints.bridges };
    expect(() => new IsolationOracle(parts).attach()).toThrow(/pci0 already has a DMA observer/);
    expect(() => new IsolationOracle({ ...parts, pci: r.m.buses.platform })).toThrow(
      /needs the PCI bus type, not bus "platform"/,
    );
    r.oracle.detach();
    r.m.endpoints.bridges[0]!.observer = { observeDma: () => {} };
    expect(() => attachOracle(r.m)).toThrow(/pci0 already has a DMA observer/);
  });
});
