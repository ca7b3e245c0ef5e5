// Conformance: "Process to locate the Device-context", "Device-context configuration checks"
// and steps 1-5 of "Process to translate an IOVA". Every table entry is written by hand; every
// fault is checked field by field as read back from the fault queue in memory.

import { describe, expect, it } from "vitest";
import type { IommuCapabilities } from "../../../../src/hw/riscv-iommu/capabilities.js";
import {
  atp,
  type DcFields,
  Ddt,
  dma,
  enableQueues,
  type Fault,
  HIGH_RAM_PPN,
  iohgatp,
  MODE,
  R,
  RawPt,
  rig,
  TC,
  takeFaults,
  translate,
  URW,
} from "../fixture.js";

const IOVA = 0x4000_1234n;

/** A rig with queues, a 1LVL DDT, and one DC for device 5; returns the record of one read. */
function faultOf(
  dc: DcFields,
  caps: Partial<IommuCapabilities> = {},
  o: { fctl?: number; did?: number } = {},
): Fault[] {
  const r = rig(caps, { rcidBits: 4, mcidBits: 4 });
  if (o.fctl !== undefined) r.iommu.write32(R.fctl, o.fctl);
  const q = enableQueues(r);
  const ddt = new Ddt(r, 1, caps.MSI_FLAT ?? false);
  ddt.install();
  ddt.writeDc(o.did ?? 5, dc);
  const res = translate(r, dma(o.did ?? 5, IOVA));
  const faults = takeFaults(r, q);
  expect(res.ok).toBe(faults.length === 0 ? res.ok : false);
  return faults;
}

function expectRecord(f: Fault | undefined, cause: number, did = 5, ttyp = 2): void {
  expect(f).toEqual({
    cause,
    pid: 0,
    pv: false,
    priv: false,
    ttyp,
    did,
    reserved: 0n,
    iotval: IOVA,
    iotval2: 0n,
  });
}

const V = TC.V;

describe("device-context configuration checks (cause 259)", () => {
  const cases: Array<[string, DcFields, Partial<IommuCapabilities>?, { fctl?: number }?]> = [
    ["tc reserved bit 12", { tc: V | (1n << 12n) }],
    ["tc reserved bit 40", { tc: V | (1n << 40n) }],
    ["ta reserved bit 0", { tc: V, ta: 1n }],
    ["ta reserved bit 35", { tc: V, ta: 1n << 35n }],
    ["ta RCID without QOSID", { tc: V, ta: 1n << 40n }],
    ["fsc reserved bit 50", { tc: V, fsc: 1n << 50n }],
    ["EN_ATS without capabilities.ATS", { tc: V | TC.EN_ATS }, { ATS: false, T2GPA: false }],
    ["EN_PRI without capabilities.ATS", { tc: V | TC.EN_PRI }, { ATS: false, T2GPA: false }],
    ["PRPR without capabilities.ATS", { tc: V | TC.PRPR }, { ATS: false, T2GPA: false }],
    ["T2GPA without EN_ATS", { tc: V | TC.T2GPA, iohgatp: iohgatp(8, 1, 0x80000n) }],
    ["EN_PRI without EN_ATS", { tc: V | TC.EN_PRI }],
    ["PRPR without EN_PRI", { tc: V | TC.EN_ATS | TC.PRPR }],
    [
      "T2GPA without capabilities.T2GPA",
      { tc: V | TC.EN_ATS | TC.T2GPA, iohgatp: iohgatp(8, 1, 0x80000n) },
      { T2GPA: false },
    ],
    ["T2GPA with Bare iohgatp", { tc: V | TC.EN_ATS | TC.T2GPA }],
    ["pdtp PD20 unsupported", { tc: V | TC.PDTV, fsc: atp(3, 0x80000n) }, { PD20: false }],
    ["pdtp PD17 unsupported", { tc: V | TC.PDTV, fsc: atp(2, 0x80000n) }, { PD17: false }],
    ["pdtp PD8 unsupported", { tc: V | TC.PDTV, fsc: atp(1, 0x80000n) }, { PD8: false }],
    ["pdtp reserved mode 4", { tc: V | TC.PDTV, fsc: atp(4, 0x80000n) }],
    ["pdtp custom mode 14", { tc: V | TC.PDTV, fsc: atp(14, 0x80000n) }],
    ["iosatp reserved mode 1", { tc: V, fsc: atp(1, 0x80000n) }],
    ["iosatp reserved mode 11", { tc: V, fsc: atp(11, 0x80000n) }],
    [
      "iosatp Sv39 unsupported",
      { tc: V, fsc: atp(8, 0x80000n) },
      { Sv39: false, Sv48: false, Sv57: false },
    ],
    ["iosatp Sv48 unsupported", { tc: V, fsc: atp(9, 0x80000n) }, { Sv48: false, Sv57: false }],
    ["iosatp Sv57 unsupported", { tc: V, fsc: atp(10, 0x80000n) }, { Sv57: false }],
    ["DPE with PDTV=0", { tc: V | TC.DPE }],
    ["iohgatp reserved mode 1", { tc: V, iohgatp: iohgatp(1, 0, 0x80000n) }],
    ["iohgatp reserved mode 12", { tc: V, iohgatp: iohgatp(12, 0, 0x80000n) }],
    ["iohgatp Sv39x4 unsupported", { tc: V, iohgatp: iohgatp(8, 0, 0x80000n) }, { Sv39x4: false }],
    ["iohgatp Sv48x4 unsupported", { tc: V, iohgatp: iohgatp(9, 0, 0x80000n) }, { Sv48x4: false }],
    ["iohgatp Sv57x4 unsupported", { tc: V, iohgatp: iohgatp(10, 0, 0x80000n) }, { Sv57x4: false }],
    ["iohgatp root not 16-KiB aligned", { tc: V, iohgatp: iohgatp(8, 0, 0x80001n) }],
    ["SADE without AMO_HWAD", { tc: V | TC.SADE }, { AMO_HWAD: false }],
    ["GADE without AMO_HWAD", { tc: V | TC.GADE }, { AMO_HWAD: false }],
    ["SBE differs from fctl.BE with one endianness", { tc: V | TC.SBE }],
    ["SXL=1 with a read-only fctl.GXL=0", { tc: V | TC.SXL }],
    ["RCID wider than supported", { tc: V, ta: 1n << 44n }, { QOSID: true }],
    ["MCID wider than supported", { tc: V, ta: 1n << 56n }, { QOSID: true }],
    [
      "msiptp reserved mode 2",
      { tc: V, iohgatp: iohgatp(8, 1, 0x80000n), msiptp: atp(2, 0x80000n) },
      { MSI_FLAT: true },
    ],
    ["msiptp Flat with Bare iohgatp", { tc: V, msiptp: atp(1, 0x80000n) }, { MSI_FLAT: true }],
    ["msiptp reserved bits", { tc: V, msiptp: 1n << 50n }, { MSI_FLAT: true }],
    ["msi_addr_mask bits above MGPAW", { tc: V, msiMask: 1n << 50n }, { MSI_FLAT: true }],
    ["msi_addr_pattern reserved bits", { tc: V, msiPattern: 1n << 63n }, { MSI_FLAT: true }],
    ["extended DC reserved doubleword", { tc: V, reserved7: 1n }, { MSI_FLAT: true }],
  ];

  for (const [name, dc, caps, o] of cases) {
    it(name, () => {
      const faults = faultOf(dc, caps, o);
      expect(faults).toHaveLength(1);
      expectRecord(faults[0], 259);
    });
  }

  it("SBE=1 is legal when both endiannesses are supported (END=1)", () => {
    expect(faultOf({ tc: V | TC.SBE }, { END: true })).toEqual([]);
  });

  it("a well-configured DC with Bare stages passes the IOVA through", () => {
    const r = rig();
    enableQueues(r);
    const ddt = new Ddt(r, 1);
    ddt.install();
    ddt.writeDc(5, { tc: V });
    const res = translate(r, dma(5, IOVA, "write"));
    expect(res.ok).toBe(true);
    expect(res.paddr).toBe(IOVA);
  });

  it("a misconfigured DC is reported even with DTF=1 (DTF is assumed 0 when no DC is located)", () => {
    const faults = faultOf({ tc: V | TC.DTF | (1n << 13n) });
    expectRecord(faults[0], 259);
  });
});

describe("locating the device context", () => {
  for (const levels of [1, 2, 3] as const) {
    for (const extended of [false, true]) {
      it(`walks a ${levels}-level DDT with ${extended ? "extended" : "base"} DCs`, () => {
        const r = rig({ MSI_FLAT: extended });
        enableQueues(r);
        const ddt = new Ddt(r, levels, extended);
        ddt.install();
        const maxBits =
          levels === 1 ? (extended ? 6 : 7) : levels === 2 ? (extended ? 15 : 16) : 24;
        const did = 2 ** maxBits - 3;
        // The DC selects a first-stage Sv39 table so the result shows the right DC was used.
        const pt = new RawPt(r, 3);
        const pa = r.page();
        pt.map(IOVA, pa, URW);
        ddt.writeDc(did, { tc: V, fsc: atp(8, pt.rootPpn), ta: 9n << 12n });
        ddt.writeDc(did - 1, { tc: V }); // a neighbour, Bare
        const res = translate(r, dma(did, IOVA));
        expect(res.paddr).toBe(pa | (IOVA & 0xfffn));
        expect(translate(r, dma(did - 1, IOVA)).paddr).toBe(IOVA);
      });
    }
  }

  it("device_id wider than the DDT: cause 260 (1LVL, 2LVL; base and extended)", () => {
    for (const [levels, extended, did] of [
      [1, false, 128],
      [1, true, 64],
      [2, false, 1 << 16],
      [2, true, 1 << 15],
    ] as const) {
      const r = rig({ MSI_FLAT: extended });
      const q = enableQueues(r);
      new Ddt(r, levels, extended).install();
      expect(translate(r, dma(did, IOVA)).fault?.cause).toBe(260);
      expectRecord(takeFaults(r, q)[0], 260, did);
    }
  });

  it("Off: cause 256 for every request", () => {
    const r = rig();
    const q = enableQueues(r);
    expect(translate(r, dma(3, IOVA, "write")).fault?.code).toBe(
      "all_inbound_transactions_disallowed",
    );
    expectRecord(takeFaults(r, q)[0], 256, 3, 3);
  });

  it("Bare: Untranslated requests pass, Translated ones are cause 260", () => {
    const r = rig();
    const q = enableQueues(r);
    r.iommu.write64(R.ddtp, MODE.Bare);
    const ok = translate(r, dma(3, 0x1234_5678_9000n, "execute"));
    expect(ok.ok).toBe(true);
    expect(ok.paddr).toBe(0x1234_5678_9000n);
    const bad = translate(r, dma(3, IOVA, "write", { translated: true }));
    expect(bad.fault?.cause).toBe(260);
    expectRecord(takeFaults(r, q)[0], 260, 3, 7);
  });

  it("non-leaf entry not valid: cause 258", () => {
    const r = rig();
    const q = enableQueues(r);
    new Ddt(r, 3).install();
    translate(r, dma(0x12_3456, IOVA));
    expectRecord(takeFaults(r, q)[0], 258, 0x12_3456);
  });

  it("DC not valid: cause 258", () => {
    const f = faultOf({ tc: 0n, fsc: atp(8, 0x80000n) });
    expectRecord(f[0], 258);
  });

  it("non-leaf entry with reserved bits: cause 259", () => {
    for (const bit of [1n, 9n, 54n, 63n]) {
      const r = rig();
      const q = enableQueues(r);
      const ddt = new Ddt(r, 2);
      ddt.install();
      ddt.writeDc(0x345, { tc: V });
      const nl = ddt.nonLeafAddress(0x345, 1);
      r.mem.write64(nl, r.mem.read64(nl) | (1n << bit));
      translate(r, dma(0x345, IOVA));
      expectRecord(takeFaults(r, q)[0], 259, 0x345);
    }
  });

  it("DDT entry outside RAM or beyond PAS: cause 257 (root, non-leaf, leaf)", () => {
    // Root outside RAM.
    let r = rig();
    let q = enableQueues(r);
    r.iommu.write64(R.ddtp, (0x10n << 10n) | MODE.LVL2);
    translate(r, dma(7, IOVA));
    expectRecord(takeFaults(r, q)[0], 257, 7);
    // Non-leaf pointing outside RAM: the DC load faults.
    r = rig();
    q = enableQueues(r);
    const ddt = new Ddt(r, 2);
    ddt.install();
    r.mem.write64(ddt.root, (0x20n << 10n) | 1n);
    translate(r, dma(7, IOVA));
    expectRecord(takeFaults(r, q)[0], 257, 7);
    // A non-leaf entry pointing to RAM beyond capabilities.PAS (RAM at 4 GiB, PAS 32 bits).
    for (const [pas, cause] of [
      [32, 257],
      [40, 258],
    ] as const) {
      r = rig({ PAS: pas }, {}, true);
      q = enableQueues(r);
      const d = new Ddt(r, 2);
      d.install();
      r.mem.write64(d.root, (HIGH_RAM_PPN << 10n) | 1n);
      translate(r, dma(7, IOVA));
      expectRecord(takeFaults(r, q)[0], cause, 7);
    }
  });

  it("poisoned DDT data: cause 268", () => {
    const r = rig();
    const q = enableQueues(r);
    const ddt = new Ddt(r, 1);
    ddt.install();
    ddt.writeDc(5, { tc: V });
    r.iommu.setPoisoned(Number(ddt.root >> 12n), true);
    translate(r, dma(5, IOVA));
    expectRecord(takeFaults(r, q)[0], 268);
  });

  it("uses the DDT-cached DC until IODIR.INVAL_DDT (covered with the CQ); caches only valid DCs", () => {
    const r = rig();
    const q = enableQueues(r);
    const ddt = new Ddt(r, 1);
    ddt.install();
    ddt.writeDc(5, { tc: 0n });
    expect(translate(r, dma(5, IOVA)).fault?.cause).toBe(258);
    ddt.writeDc(5, { tc: V }); // V 0→1 needs no invalidation
    expect(translate(r, dma(5, IOVA)).ok).toBe(true);
    expect(r.iommu.ioatc.deviceContexts().map((d) => d.deviceId)).toEqual([5]);
    takeFaults(r, q);
  });
});
