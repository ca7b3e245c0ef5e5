// The plain test device over the IO bridge and a real RISC-V IOMMU: Bare, single-stage,
// two-stage and per-PASID translation, faults that abort and are logged, requests the device's
// configuration refuses, requester IDs through a PCIe-to-PCI bridge, and the transaction log.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { PCI_COMMAND } from "../../../src/hw/pci/regs.js";
import type { PciBridge } from "../../../src/hw/pci/topology.js";
import { PTE_A, PTE_R, PTE_U } from "../../../src/hw/pgtable/pte.js";
import {
  bareMode,
  dcPaging,
  dcPasid,
  dcTwoStage,
  did,
  enablePasid,
  faults,
  identityGStage,
  type Machine,
  machine,
  map,
  page,
  pageTable,
  processContext,
  RAM_BASE,
  SRW,
  URW,
} from "./fixture.js";

const IOVA = 0x1000_0000n;

function bytes(n: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

/** One root port with the test device "t0" (PASID capable, 1 BAR). */
function withDevice(o: Parameters<typeof machine>[1] = {}): Machine & { dev: TestDevice } {
  const m = machine((h) => {
    h.addRootPort().addEndpoint({ name: "t0", bars: [0x1000], pasid: true });
  }, o);
  const dev = new TestDevice(m.bridge, m.host.function("t0"));
  return { ...m, dev };
}

describe("without translation", () => {
  it("Bare mode passes device addresses through to memory", () => {
    const m = withDevice();
    bareMode(m);
    const pa = page(m);
    const w = m.dev.write(pa + 0x10n, bytes(32));
    expect(w.ok).toBe(true);
    expect(m.r.mem.readBytes(pa + 0x10n, 32)).toEqual(bytes(32));
    const r = m.dev.read(pa + 0x10n, 32);
    expect(r).toMatchObject({ ok: true, done: 32, result: "ok" });
    expect(r.data).toEqual(bytes(32));
  });

  it("a host without a translation agent uses physical addresses", () => {
    const m = withDevice({ iommu: false });
    const pa = page(m);
    expect(m.dev.write(pa, bytes(8)).ok).toBe(true);
    expect(m.r.mem.readBytes(pa, 8)).toEqual(bytes(8));
  });

  it("an address that is neither RAM nor a BAR is an Unsupported Request", () => {
    const m = withDevice();
    bareMode(m);
    const r = m.dev.read(0x1_0000_0000n, 4);
    expect(r).toMatchObject({ ok: false, done: 0, result: "UR not-memory" });
    expect(r.faultAddress).toBe(0x1_0000_0000n);
  });
});

describe("single-stage translation", () => {
  it("a transfer crossing a page boundary lands in both mapped frames", () => {
    const m = withDevice();
    const pt = pageTable(m);
    const [a, b] = [page(m), page(m)];
    map(pt, IOVA, b);
    map(pt, IOVA + 0x1000n, a);
    dcPaging(m, did(m, m.dev.fn), pt);
    const data = bytes(0x40);
    expect(m.dev.write(IOVA + 0xfe0n, data).ok).toBe(true);
    expect(m.r.mem.readBytes(b + 0xfe0n, 0x20)).toEqual(data.subarray(0, 0x20));
    expect(m.r.mem.readBytes(a, 0x20)).toEqual(data.subarray(0x20));
    expect(m.dev.read(IOVA + 0xfe0n, 0x40).data).toEqual(data);
    expect(m.dev.log().at(-1)!.pages).toEqual([Number(b >> 12n), Number(a >> 12n)]);
  });

  it("a fault aborts at the faulting page, with a fault record and a logged CA", () => {
    const m = withDevice();
    const pt = pageTable(m);
    const a = page(m);
    map(pt, IOVA, a);
    const id = did(m, m.dev.fn);
    dcPaging(m, id, pt);
    const w = m.dev.write(IOVA + 0xff0n, bytes(0x20));
    // The first page's bytes landed; the write to the unmapped page was discarded.
    expect(w).toMatchObject({
      ok: false,
      done: 0x10,
      result: "CA translation-fault write_page_fault",
    });
    expect(w.faultAddress).toBe(IOVA + 0x1000n);
    expect(m.r.mem.readBytes(a + 0xff0n, 0x10)).toEqual(bytes(0x10));
    const r = m.dev.read(IOVA + 0x1000n, 4);
    expect(r.result).toBe("CA translation-fault read_page_fault");
    expect(faults(m).map((f) => [f.cause, f.ttyp, f.did, f.iotval])).toEqual([
      [15, 3, id, IOVA + 0x1000n],
      [13, 2, id, IOVA + 0x1000n],
    ]);
    expect(m.dev.log().map((t) => [t.dir, t.ok, t.done])).toEqual([
      ["write", false, 0x10],
      ["read", false, 0],
    ]);
    expect(m.dev.failures).toBe(2);
  });

  it("a read-only mapping refuses writes", () => {
    const m = withDevice();
    const pt = pageTable(m);
    map(pt, IOVA, page(m), PTE_R | PTE_A | PTE_U);
    dcPaging(m, did(m, m.dev.fn), pt);
    expect(m.dev.read(IOVA, 8).ok).toBe(true);
    expect(m.dev.write(IOVA, bytes(8)).result).toBe("CA translation-fault write_page_fault");
  });

  it("an invalid device context aborts with the DDT cause", () => {
    const m = withDevice();
    const r = m.dev.read(IOVA, 8);
    expect(r.result).toBe("CA translation-fault ddt_entry_not_valid");
    expect(faults(m).map((f) => f.cause)).toEqual([258]);
  });

  test.prop(
    [
      fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      fc.array(
        fc.record({
          off: fc.integer({ min: 0, max: 4 * 4096 - 1 }),
          len: fc.integer({ min: 1, max: 3 * 4096 }),
          write: fc.boolean(),
        }),
        { maxLength: 12 },
      ),
    ],
    { numRuns: 40 },
  )("DMA through random mappings matches a byte model of the IOVA space", (mapped, ops) => {
    const m = withDevice();
    const pt = pageTable(m);
    const frames = mapped.map((isMapped) => (isMapped ? page(m) : -1n));
    frames.forEach((f, i) => {
      if (f >= 0n) map(pt, IOVA + BigInt(i) * 4096n, f);
    });
    dcPaging(m, did(m, m.dev.fn), pt);
    const model = new Uint8Array(4 * 4096);
    let seed = 0;
    for (const op of ops) {
      const len = Math.min(op.len, model.length - op.off);
      // Bytes up to the first unmapped page are transferred, then the transaction aborts.
      let ok = len;
      for (let p = Math.floor(op.off / 4096); p * 4096 < op.off + len; p++) {
        if (frames[p]! < 0n) {
          ok = Math.max(0, p * 4096 - op.off);
          break;
        }
      }
      if (op.write) {
        const data = bytes(len, ++seed);
        const w = m.dev.write(IOVA + BigInt(op.off), data);
        expect(w.done).toBe(ok);
        model.set(data.subarray(0, ok), op.off);
      } else {
        const r = m.dev.read(IOVA + BigInt(op.off), len);
        expect(r.done).toBe(ok);
        expect(r.data.subarray(0, ok)).toEqual(model.subarray(op.off, op.off + ok));
      }
    }
    frames.forEach((f, i) => {
      if (f >= 0n)
        expect(m.r.mem.readBytes(f, 4096)).toEqual(model.subarray(i * 4096, (i + 1) * 4096));
    });
  });
});

describe("two-stage translation", () => {
  it("walks the first stage and then the G-stage", () => {
    const m = withDevice();
    const g = identityGStage(m);
    // Guest-physical page outside RAM, backed by a host frame through the G-stage only.
    const gpa = 0x2_0000_0000n;
    const spa = page(m);
    expect(g.map(gpa, spa, 4096n, URW)).toBe("ok");
    const s1 = pageTable(m);
    map(s1, IOVA, gpa);
    dcTwoStage(m, did(m, m.dev.fn), s1, g, 5);
    expect(m.dev.write(IOVA + 8n, bytes(16)).ok).toBe(true);
    expect(m.r.mem.readBytes(spa + 8n, 16)).toEqual(bytes(16));
    expect(m.dev.read(IOVA + 8n, 16).data).toEqual(bytes(16));
  });

  it("a G-stage fault is a guest-page fault carrying the GPA", () => {
    const m = withDevice();
    const g = identityGStage(m);
    const s1 = pageTable(m);
    map(s1, IOVA, 0x3_0000_0000n);
    const id = did(m, m.dev.fn);
    dcTwoStage(m, id, s1, g, 6);
    expect(m.dev.read(IOVA + 4n, 4).result).toBe("CA translation-fault read_guest_page_fault");
    const [f] = faults(m);
    expect(f).toMatchObject({ cause: 21, iotval: IOVA + 4n });
    // The faulting GPA (bits 1:0 say whether it was an implicit access: it was not).
    expect(f!.iotval2).toBe(0x3_0000_0004n);
  });
});

describe("PASIDs", () => {
  it("each PASID walks its own first-stage table", () => {
    const m = withDevice();
    enablePasid(m.dev.fn);
    const pdt = dcPasid(m, did(m, m.dev.fn));
    const [a, b] = [page(m), page(m)];
    const pt1 = pageTable(m);
    const pt2 = pageTable(m);
    map(pt1, IOVA, a);
    map(pt2, IOVA, b);
    processContext(pdt, 1, pt1);
    processContext(pdt, 2, pt2);
    expect(m.dev.write(IOVA, bytes(8, 1), { pasid: 1 }).ok).toBe(true);
    expect(m.dev.write(IOVA, bytes(8, 2), { pasid: 2 }).ok).toBe(true);
    expect(m.r.mem.readBytes(a, 8)).toEqual(bytes(8, 1));
    expect(m.r.mem.readBytes(b, 8)).toEqual(bytes(8, 2));
    // Without a PASID and without DPE: first stage Bare, the IOVA is not RAM.
    expect(m.dev.read(IOVA, 8).result).toBe("UR not-memory");
    // A PASID without a process context.
    expect(m.dev.read(IOVA, 8, { pasid: 3 }).result).toBe(
      "CA translation-fault pdt_entry_not_valid",
    );
    expect(m.dev.log().map((t) => t.pasid)).toEqual([1, 2, null, 3]);
  });

  it("supervisor pages need Privileged requests and PC.ta.ENS", () => {
    const m = withDevice();
    enablePasid(m.dev.fn, true);
    const pdt = dcPasid(m, did(m, m.dev.fn));
    const pt = pageTable(m);
    const k = page(m);
    map(pt, IOVA, k, SRW);
    processContext(pdt, 7, pt, { ens: true });
    expect(m.dev.read(IOVA, 4, { pasid: 7 }).result).toBe("CA translation-fault read_page_fault");
    expect(m.dev.write(IOVA, bytes(4), { pasid: 7, privileged: true }).ok).toBe(true);
    expect(m.r.mem.readBytes(k, 4)).toEqual(bytes(4));
    processContext(pdt, 8, pt, { ens: false });
    expect(m.dev.read(IOVA, 4, { pasid: 8, privileged: true }).result).toBe(
      "CA translation-fault transaction_type_disallowed",
    );
  });

  it("the device refuses what its PASID capability does not enable", () => {
    const m = withDevice();
    const before = m.r.iommu.ioatc.stats.iotlbMisses;
    expect(m.dev.read(IOVA, 4, { pasid: 1 }).result).toBe("refused: PASID not enabled");
    enablePasid(m.dev.fn, false);
    expect(m.dev.read(IOVA, 4, { pasid: 1, privileged: true }).result).toBe(
      "refused: Privileged Mode not enabled",
    );
    expect(m.dev.read(IOVA, 4, { translated: true }).result).toBe("refused: ATS not enabled");
    expect(m.dev.read(IOVA, 4, { ats: true }).result).toBe("refused: ATS not enabled");
    // Nothing left the device: no fault, no translation.
    expect(faults(m)).toEqual([]);
    expect(m.r.iommu.ioatc.stats.iotlbMisses).toBe(before);
  });

  it("a rogue device sends them anyway and the IOMMU stops them", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0" });
    });
    const dev = new TestDevice(m.bridge, m.host.function("t0"), { rogue: true });
    const pt = pageTable(m);
    map(pt, IOVA, page(m));
    dcPaging(m, did(m, dev.fn), pt);
    // DC.tc.PDTV = 0: a request with a PASID is a disallowed transaction type.
    expect(dev.read(IOVA, 4, { pasid: 1 }).result).toBe(
      "CA translation-fault transaction_type_disallowed",
    );
    // DC.tc.EN_ATS = 0: Translated requests are disallowed too.
    expect(dev.read(RAM_BASE, 4, { translated: true }).result).toBe(
      "CA translation-fault transaction_type_disallowed",
    );
    expect(faults(m).map((f) => [f.cause, f.ttyp])).toEqual([
      [260, 2],
      [260, 6],
    ]);
  });
});

describe("the fabric", () => {
  it("the IOMMU sees the PCIe-to-PCI bridge's requester ID for a device behind it", () => {
    const m = machine((h) => {
      h.addRootPort().addPcieToPciBridge({ name: "br" }).addEndpoint({ name: "legacy", slot: 3 });
    });
    const dev = new TestDevice(m.bridge, m.host.function("legacy"));
    const br = m.host.function("br") as PciBridge;
    const alias = did(m, dev.fn);
    expect(alias).not.toBe(dev.fn.rid);
    expect(alias).toBe(br.secondaryBusNumber << 8);
    const pt = pageTable(m);
    const a = page(m);
    map(pt, IOVA, a);
    dcPaging(m, alias, pt);
    expect(dev.write(IOVA, bytes(4)).ok).toBe(true);
    expect(m.r.mem.readBytes(a, 4)).toEqual(bytes(4));
  });

  it("a function without Bus Master Enable cannot issue requests", () => {
    const m = withDevice();
    bareMode(m);
    const cmdReg = m.dev.fn.config.read(PCI_COMMAND, 2);
    m.dev.fn.config.write(PCI_COMMAND, 2, cmdReg & ~4);
    expect(m.dev.read(RAM_BASE, 4).result).toBe("UR bus-master-disabled");
  });

  it("emits device:dma for each transaction", () => {
    const m = withDevice();
    bareMode(m);
    const rec = m.r.ctx.trace.record();
    m.dev.write(RAM_BASE + 0x100n, bytes(4));
    m.dev.read(0x1_0000_0000n, 4);
    const dma = rec.stop().filter((t) => t.event === "device:dma");
    expect(dma.map((t) => [t.track, t.fields])).toEqual([
      [
        "t0",
        {
          rid: did(m, m.dev.fn),
          pasid: null,
          iova: RAM_BASE + 0x100n,
          size: 4,
          dir: "write",
          result: "ok",
        },
      ],
      [
        "t0",
        {
          rid: did(m, m.dev.fn),
          pasid: null,
          iova: 0x1_0000_0000n,
          size: 4,
          dir: "read",
          result: "UR not-memory",
        },
      ],
    ]);
  });
});

describe("the log and the view", () => {
  it("keeps at most logCapacity transactions", () => {
    const m = machine((h) => {
      h.addRootPort().addEndpoint({ name: "t0" });
    });
    bareMode(m);
    const dev = new TestDevice(m.bridge, m.host.function("t0"), { logCapacity: 2 });
    for (let i = 0; i < 3; i++) dev.write(RAM_BASE + BigInt(i) * 8n, bytes(8));
    expect(dev.log().map((t) => t.seq)).toEqual([1, 2]);
    dev.clearLog();
    expect(dev.log()).toEqual([]);
  });

  it("has a JSON view with counters and the log", () => {
    const m = withDevice();
    bareMode(m);
    m.dev.write(RAM_BASE, bytes(4));
    const v = m.dev.toJSON() as { [k: string]: unknown };
    expect(v).toMatchObject({
      name: "t0",
      kind: "test-device",
      counters: { reads: 0, writes: 1, failures: 0 },
      log: [{ dir: "write", address: "0x80000000", mode: "untranslated", pages: ["0x80000000"] }],
    });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
  });

  it("a BAR is plain memory for CPU MMIO", () => {
    const m = withDevice();
    const bar = m.dev.fn.barAddress(0);
    m.bridge.mmioWrite(bar + 8n, 4, 0xdead_beefn);
    expect(m.bridge.mmioRead(bar + 8n, 4)).toBe(0xdead_beefn);
    expect(m.dev.barMemory(0).subarray(8, 12)).toEqual(Uint8Array.of(0xef, 0xbe, 0xad, 0xde));
    // Nothing decodes the address: reads return all ones.
    expect(m.bridge.mmioRead(0x7000_0000n, 4)).toBe(0xffff_ffffn);
  });
});
