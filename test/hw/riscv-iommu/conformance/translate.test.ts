// Conformance: "Process to translate an IOVA" steps 7-20, "Process to locate the
// Process-context", "Process-context configuration checks", A/D updating, and the fault records
// of translation faults (CAUSE, TTYP, PV/PID/PRIV, iotval, iotval2 with its implicit bits).

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
  identityGStage,
  iohgatp,
  P,
  Pdt,
  pcTa,
  type Queues,
  RAM_BASE,
  RawPt,
  type Rig,
  RW_AD,
  rig,
  TC,
  takeFaults,
  translate,
  URW,
} from "../fixture.js";

const V = TC.V;
const IOVA = 0x4000_1234n;
const DID = 0x21;

interface Setup {
  r: Rig;
  q: Queues;
  ddt: Ddt;
}

function setup(caps: Partial<IommuCapabilities> = {}): Setup {
  const r = rig(caps);
  const q = enableQueues(r);
  const ddt = new Ddt(r, 1);
  ddt.install();
  return { r, q, ddt };
}

function record(
  cause: number,
  ttyp: number,
  o: { pid?: number; priv?: boolean; iotval?: bigint; iotval2?: bigint; did?: number } = {},
): Fault {
  return {
    cause,
    pid: o.pid ?? 0,
    pv: o.pid !== undefined,
    priv: o.priv ?? false,
    ttyp,
    did: o.did ?? DID,
    reserved: 0n,
    iotval: o.iotval ?? IOVA,
    iotval2: o.iotval2 ?? 0n,
  };
}

/** A DC with a first-stage table of `levels` (3 Sv39, 4 Sv48, 5 Sv57) and PSCID 7. */
function firstStage(s: Setup, levels = 3, tc: bigint = V, extra: DcFields = {}): RawPt {
  const pt = new RawPt(s.r, levels);
  s.ddt.writeDc(DID, { tc, fsc: atp(5 + levels, pt.rootPpn), ta: 7n << 12n, ...extra });
  return pt;
}

describe("first stage (single-stage, PDTV=0)", () => {
  for (const levels of [3, 4, 5]) {
    it(`translates through Sv${12 + 9 * levels} with the DC's iosatp`, () => {
      const s = setup();
      const pt = firstStage(s, levels);
      const va = levels === 3 ? IOVA : 0x7f_1234_5000n | (IOVA & 0xfffn);
      const pa = s.r.page();
      pt.map(va, pa, URW | P.X);
      for (const access of ["read", "write", "execute"] as const) {
        const res = translate(s.r, dma(DID, va, access));
        expect(res.fault).toBeNull();
        expect(res.paddr).toBe(pa | (va & 0xfffn));
        expect(res.pageShift).toBe(12);
      }
      expect(takeFaults(s.r, s.q)).toEqual([]);
    });
  }

  it("reports a superpage's size and the PBMT of the leaf", () => {
    const s = setup();
    const pt = firstStage(s);
    const base = RAM_BASE + (4n << 20n);
    pt.map(0x4000_0000n, base, URW, 1, 2n << 61n); // 2 MiB, PBMT=IO
    const res = translate(s.r, dma(DID, 0x4001_2345n));
    expect(res.paddr).toBe(base + 0x1_2345n);
    expect(res.pageShift).toBe(21);
    expect(res.pbmt).toBe(2);
  });

  it("page faults: invalid PTE for read (13), write (15) and execute (12)", () => {
    const s = setup();
    firstStage(s);
    for (const [access, cause, ttyp] of [
      ["read", 13, 2],
      ["write", 15, 3],
      ["execute", 12, 1],
    ] as const) {
      expect(translate(s.r, dma(DID, IOVA, access)).fault?.cause).toBe(cause);
      expect(takeFaults(s.r, s.q)).toEqual([record(cause, ttyp)]);
    }
  });

  it("permissions: write to a read-only page (15), execute without X (12), user to U=0 (13)", () => {
    const s = setup();
    const pt = firstStage(s);
    pt.map(IOVA, s.r.page(), P.R | P.A | P.U);
    pt.map(IOVA + 0x1000n, s.r.page(), RW_AD); // U=0
    expect(translate(s.r, dma(DID, IOVA, "write")).fault?.cause).toBe(15);
    expect(translate(s.r, dma(DID, IOVA, "execute")).fault?.cause).toBe(12);
    expect(translate(s.r, dma(DID, IOVA + 0x1000n)).fault?.cause).toBe(13);
    expect(takeFaults(s.r, s.q).map((f) => f.cause)).toEqual([15, 12, 13]);
  });

  it("a privilege request without a PASID is a User request (U=0 page faults, PRIV=0)", () => {
    const s = setup();
    const pt = firstStage(s);
    pt.map(IOVA, s.r.page(), RW_AD); // U=0: supervisor only
    expect(translate(s.r, dma(DID, IOVA, "read", { priv: true })).fault?.cause).toBe(13);
    expect(takeFaults(s.r, s.q)).toEqual([record(13, 2)]);
  });

  it("xwr=010 (a Zicfiss shadow-stack page on harts) and 110 stay reserved for IO: page faults", () => {
    const s = setup();
    const pt = firstStage(s);
    pt.map(IOVA, s.r.page(), P.W | P.U | P.A | P.D); // xwr = 010
    pt.map(IOVA + 0x1000n, s.r.page(), P.W | P.X | P.U | P.A | P.D); // xwr = 110
    for (const va of [IOVA, IOVA + 0x1000n]) {
      expect(translate(s.r, dma(DID, va, "read")).fault?.cause).toBe(13);
      expect(translate(s.r, dma(DID, va, "write")).fault?.cause).toBe(15);
    }
    // The same in the G-stage.
    const g = new RawPt(s.r, 3, true);
    g.map(IOVA, s.r.page(), P.W | P.U | P.A | P.D);
    s.ddt.writeDc(DID + 1, { tc: V, iohgatp: iohgatp(8, 1, g.rootPpn) });
    expect(translate(s.r, dma(DID + 1, IOVA, "write")).fault?.cause).toBe(23);
  });

  it("Svnapot: a 64 KiB NAPOT leaf translates with pageShift 16; other N=1 encodings fault", () => {
    const s = setup();
    const pt = firstStage(s);
    const block = s.r.pages(16, 16);
    const va = 0x5_0000n; // 64 KiB aligned
    // ppn[3:0] = 1000 marks the 64 KiB range; the IOMMU takes ppn[3:0] from vpn[3:0].
    const napotPpn = (block >> 12n) | 8n;
    for (let i = 0n; i < 16n; i++) {
      pt.map(va + i * 0x1000n, napotPpn << 12n, URW, 0, 1n << 63n);
    }
    const res = translate(s.r, dma(DID, va + 0x7123n));
    expect([res.paddr, res.pageShift]).toEqual([block + 0x7123n, 16]);
    pt.map(IOVA, (block >> 12n) << 12n, URW, 0, 1n << 63n); // ppn[3:0] = 0000: reserved
    expect(translate(s.r, dma(DID, IOVA)).fault?.cause).toBe(13);
  });

  it("Svpbmt: PBMT=3 is reserved; without capabilities.Svpbmt the PBMT bits are reserved", () => {
    for (const [svpbmt, pbmt, ok] of [
      [true, 1n, true],
      [true, 3n, false],
      [false, 1n, false],
    ] as const) {
      const s = setup({ Svpbmt: svpbmt });
      const pt = firstStage(s);
      pt.map(IOVA, s.r.page(), URW, 0, pbmt << 61n);
      const res = translate(s.r, dma(DID, IOVA));
      expect(ok ? res.pbmt : res.fault?.cause).toBe(ok ? Number(pbmt) : 13);
    }
  });

  it("SADE=0: A=0, or D=0 on a write, is a page fault", () => {
    const s = setup();
    const pt = firstStage(s);
    pt.map(IOVA, s.r.page(), P.R | P.W | P.U); // A=0, D=0
    expect(translate(s.r, dma(DID, IOVA)).fault?.cause).toBe(13);
    const pte = pt.pteAddress(IOVA);
    s.r.mem.write64(pte, s.r.mem.read64(pte) | P.A);
    expect(translate(s.r, dma(DID, IOVA)).ok).toBe(true);
    expect(translate(s.r, dma(DID, IOVA, "write")).fault?.cause).toBe(15);
  });

  it("SADE=1: the IOMMU sets A, and D on a write, in the PTE", () => {
    const s = setup();
    const pt = firstStage(s, 3, V | TC.SADE);
    pt.map(IOVA, s.r.page(), P.R | P.W | P.U);
    const pte = pt.pteAddress(IOVA);
    expect(translate(s.r, dma(DID, IOVA)).ok).toBe(true);
    expect(s.r.mem.read64(pte) & (P.A | P.D)).toBe(P.A);
    expect(translate(s.r, dma(DID, IOVA, "write")).ok).toBe(true);
    expect(s.r.mem.read64(pte) & (P.A | P.D)).toBe(P.A | P.D);
  });

  it("access faults reading a PTE outside RAM: 5 (read), 7 (write), 1 (execute)", () => {
    const s = setup();
    s.ddt.writeDc(DID, { tc: V, fsc: atp(8, 0x10n) });
    for (const [access, cause, ttyp] of [
      ["read", 5, 2],
      ["write", 7, 3],
      ["execute", 1, 1],
    ] as const) {
      expect(translate(s.r, dma(DID, IOVA, access)).fault?.cause).toBe(cause);
      expect(takeFaults(s.r, s.q)).toEqual([record(cause, ttyp)]);
    }
  });

  it("a page-table page beyond capabilities.PAS is an access fault, even where RAM exists", () => {
    // RAM at 4 GiB; with PAS = 32 the IOMMU cannot address it (as for the DDT), with 40 it can.
    for (const [pas, first, second] of [
      [32, 5, 5],
      [40, 13, 21],
    ] as const) {
      const r = rig({ PAS: pas }, {}, true);
      const q = enableQueues(r);
      const ddt = new Ddt(r, 1);
      ddt.install();
      const pt = new RawPt(r, 3);
      r.mem.write64(pt.root + ((IOVA >> 30n) & 0x1ffn) * 8n, (HIGH_RAM_PPN << 10n) | P.V);
      ddt.writeDc(DID, { tc: V, fsc: atp(8, pt.rootPpn) });
      expect(translate(r, dma(DID, IOVA)).fault?.cause).toBe(first);
      const g = new RawPt(r, 3, true);
      r.mem.write64(g.root + (IOVA >> 30n) * 8n, (HIGH_RAM_PPN << 10n) | P.V);
      ddt.writeDc(DID + 1, { tc: V, iohgatp: iohgatp(8, 1, g.rootPpn) });
      expect(translate(r, dma(DID + 1, IOVA)).fault?.cause).toBe(second);
      expect(takeFaults(r, q).map((f) => f.cause)).toEqual([first, second]);
    }
  });

  it("a poisoned page-table page: cause 274 (first/second-stage PT data corruption)", () => {
    const s = setup();
    const pt = firstStage(s);
    pt.map(IOVA, s.r.page(), URW);
    const leafTable = pt.pteAddress(IOVA) >> 12n;
    s.r.iommu.setPoisoned(Number(leafTable), true);
    expect(translate(s.r, dma(DID, IOVA, "write")).fault?.cause).toBe(274);
    expect(takeFaults(s.r, s.q)).toEqual([record(274, 3)]);
  });

  it("a non-canonical IOVA is a page fault with the full IOVA in iotval", () => {
    const s = setup();
    firstStage(s);
    const va = 0x0000_4000_0000_0000n;
    expect(translate(s.r, dma(DID, va)).fault?.cause).toBe(13);
    expect(takeFaults(s.r, s.q)).toEqual([record(13, 2, { iotval: va })]);
  });

  it("a request with a PASID to a DC without PDTV is cause 260 (PV, PID, PRIV recorded)", () => {
    const s = setup();
    firstStage(s);
    translate(s.r, dma(DID, IOVA, "write", { pasid: 0x1234, priv: true }));
    expect(takeFaults(s.r, s.q)).toEqual([record(260, 3, { pid: 0x1234, priv: true })]);
  });

  it("DTF=1 suppresses translation faults but not the error to the device", () => {
    const s = setup();
    firstStage(s, 3, V | TC.DTF);
    expect(translate(s.r, dma(DID, IOVA)).fault?.cause).toBe(13);
    expect(translate(s.r, dma(DID, IOVA, "read", { pasid: 1 })).fault?.cause).toBe(260);
    expect(takeFaults(s.r, s.q)).toEqual([]);
    expect(s.r.iommu.suppressedFaults).toBe(2);
  });
});

describe("process contexts (PDTV=1)", () => {
  function pdtSetup(levels: 1 | 2 | 3, tc = V | TC.PDTV, caps: Partial<IommuCapabilities> = {}) {
    const s = setup(caps);
    const pdt = new Pdt(s.r, levels);
    s.ddt.writeDc(DID, { tc, fsc: atp(levels, pdt.root >> 12n) });
    return { ...s, pdt };
  }

  for (const [levels, pid] of [
    [1, 0xab],
    [2, 0x1_abcd],
    [3, 0xf_abcd],
  ] as const) {
    it(`walks a PD${[8, 17, 20][levels - 1]} table to the PC of PASID ${pid.toString(16)}`, () => {
      const s = pdtSetup(levels);
      const pt = new RawPt(s.r, 4);
      const pa = s.r.page();
      pt.map(IOVA, pa, URW);
      s.pdt.writePc(pid, pcTa({ pscid: 3 }), atp(9, pt.rootPpn));
      const res = translate(s.r, dma(DID, IOVA, "write", { pasid: pid }));
      expect(res.paddr).toBe(pa | 0x234n);
      expect(s.r.iommu.ioatc.processContexts().map((p) => [p.processId, p.pscid])).toEqual([
        [pid, 3],
      ]);
    });
  }

  it("a PASID wider than pdtp.MODE is cause 260", () => {
    const s = pdtSetup(1);
    translate(s.r, dma(DID, IOVA, "read", { pasid: 0x100 }));
    const s2 = pdtSetup(2);
    translate(s2.r, dma(DID, IOVA, "read", { pasid: 0x2_0000 }));
    expect(takeFaults(s.r, s.q)).toEqual([record(260, 2, { pid: 0x100 })]);
    expect(takeFaults(s2.r, s2.q)).toEqual([record(260, 2, { pid: 0x2_0000 })]);
  });

  it("PC not valid (266), non-leaf PDT entry not valid (266)", () => {
    const s = pdtSetup(2);
    s.pdt.writePc(5, pcTa({ v: false }), 0n);
    translate(s.r, dma(DID, IOVA, "read", { pasid: 5 }));
    translate(s.r, dma(DID, IOVA, "read", { pasid: 0x300 })); // non-leaf entry 3 absent
    expect(takeFaults(s.r, s.q)).toEqual([
      record(266, 2, { pid: 5 }),
      record(266, 2, { pid: 0x300 }),
    ]);
  });

  it("PC misconfigured (267): reserved bits, reserved mode, unsupported mode", () => {
    for (const [ta, fsc, caps] of [
      [pcTa({}) | (1n << 3n), 0n, {}],
      [pcTa({}) | (1n << 40n), 0n, {}],
      [pcTa({}), (1n << 50n) | atp(8, 0x80000n), {}],
      [pcTa({}), atp(3, 0x80000n), {}],
      [pcTa({}), atp(10, 0x80000n), { Sv57: false }],
    ] as Array<[bigint, bigint, Partial<IommuCapabilities>]>) {
      const s = pdtSetup(1, V | TC.PDTV, caps);
      s.pdt.writePc(9, ta, fsc);
      translate(s.r, dma(DID, IOVA, "read", { pasid: 9 }));
      expect(takeFaults(s.r, s.q)).toEqual([record(267, 2, { pid: 9 })]);
    }
  });

  it("non-leaf PDT entry with reserved bits (267), outside RAM (265), poisoned (269)", () => {
    const s = pdtSetup(3);
    s.pdt.writePc(0x2_0001, pcTa({}), 0n);
    s.r.mem.write64(s.pdt.root + 8n, s.r.mem.read64(s.pdt.root + 8n) | (1n << 5n));
    translate(s.r, dma(DID, IOVA, "read", { pasid: 0x2_0001 }));
    s.r.mem.write64(s.pdt.root + 16n, (0x30n << 10n) | 1n); // PDI[2]=2 → page 0x30
    translate(s.r, dma(DID, IOVA, "read", { pasid: 0x4_0001 }));
    s.pdt.writePc(0x1, pcTa({}), 0n);
    s.r.iommu.setPoisoned(Number(s.pdt.root >> 12n), true);
    translate(s.r, dma(DID, IOVA, "read", { pasid: 0x1 }));
    expect(takeFaults(s.r, s.q)).toEqual([
      record(267, 2, { pid: 0x2_0001 }),
      record(265, 2, { pid: 0x4_0001 }),
      record(269, 2, { pid: 0x1 }),
    ]);
  });

  it("supervisor requests need PC.ta.ENS (260); SUM governs U pages; never execute U pages", () => {
    const s = pdtSetup(1);
    const pt = new RawPt(s.r, 3);
    pt.map(IOVA, s.r.page(), URW | P.X);
    s.pdt.writePc(1, pcTa({ ens: false }), atp(8, pt.rootPpn));
    s.pdt.writePc(2, pcTa({ ens: true, sum: false }), atp(8, pt.rootPpn));
    s.pdt.writePc(3, pcTa({ ens: true, sum: true }), atp(8, pt.rootPpn));
    expect(translate(s.r, dma(DID, IOVA, "read", { pasid: 1 })).ok).toBe(true); // user
    expect(translate(s.r, dma(DID, IOVA, "read", { pasid: 1, priv: true })).fault?.cause).toBe(260);
    expect(translate(s.r, dma(DID, IOVA, "read", { pasid: 2, priv: true })).fault?.cause).toBe(13);
    expect(translate(s.r, dma(DID, IOVA, "write", { pasid: 3, priv: true })).ok).toBe(true);
    expect(translate(s.r, dma(DID, IOVA, "execute", { pasid: 3, priv: true })).fault?.cause).toBe(
      12,
    );
    expect(takeFaults(s.r, s.q)).toEqual([
      record(260, 2, { pid: 1, priv: true }),
      record(13, 2, { pid: 2, priv: true }),
      record(12, 1, { pid: 3, priv: true }),
    ]);
  });

  it("without a PASID: DPE=1 uses PASID 0's PC; DPE=0 means first stage Bare", () => {
    const s = pdtSetup(1, V | TC.PDTV | TC.DPE);
    const pt = new RawPt(s.r, 3);
    const pa = s.r.page();
    pt.map(IOVA, pa, URW);
    s.pdt.writePc(0, pcTa({}), atp(8, pt.rootPpn));
    expect(translate(s.r, dma(DID, IOVA)).paddr).toBe(pa | 0x234n);
    const s2 = pdtSetup(1, V | TC.PDTV);
    expect(translate(s2.r, dma(DID, IOVA)).paddr).toBe(IOVA);
  });

  it("pdtp.MODE Bare: requests with a PASID are not translated by a first stage", () => {
    const s = setup();
    s.ddt.writeDc(DID, { tc: V | TC.PDTV, fsc: 0n });
    expect(translate(s.r, dma(DID, IOVA, "write", { pasid: 77 })).paddr).toBe(IOVA);
  });
});

describe("second stage and two-stage translation", () => {
  const GPA = 0x1000_0000n;

  it("G-stage only: GPA→SPA; guest-page faults 21/23/20 report the GPA in iotval2", () => {
    const s = setup();
    const g = new RawPt(s.r, 3, true);
    const spa = s.r.page();
    g.map(GPA, spa, URW);
    s.ddt.writeDc(DID, { tc: V, iohgatp: iohgatp(8, 4, g.rootPpn) });
    expect(translate(s.r, dma(DID, GPA | 0x10n, "write")).paddr).toBe(spa | 0x10n);
    const bad = GPA + 0x5000n + 0x6c7n;
    for (const [access, cause, ttyp] of [
      ["read", 21, 2],
      ["write", 23, 3],
      ["execute", 20, 1],
    ] as const) {
      expect(translate(s.r, dma(DID, bad, access)).fault?.cause).toBe(cause);
      // iotval2[63:2] = GPA[63:2]; bits 1:0 = 0 (not an implicit access).
      expect(takeFaults(s.r, s.q)).toEqual([
        record(cause, ttyp, { iotval: bad, iotval2: bad & ~3n }),
      ]);
    }
  });

  it("G-stage permissions check U=1 (as a user access) and GADE updates A/D", () => {
    const s = setup();
    const g = new RawPt(s.r, 3, true);
    g.map(GPA, s.r.page(), RW_AD); // U=0 in the G-stage: every access faults
    g.map(GPA + 0x1000n, s.r.page(), P.R | P.W | P.U); // A=D=0
    s.ddt.writeDc(DID, { tc: V | TC.GADE, iohgatp: iohgatp(8, 4, g.rootPpn) });
    expect(translate(s.r, dma(DID, GPA)).fault?.cause).toBe(21);
    expect(translate(s.r, dma(DID, GPA + 0x1000n, "write")).ok).toBe(true);
    expect(s.r.mem.read64(g.pteAddress(GPA + 0x1000n)) & (P.A | P.D)).toBe(P.A | P.D);
  });

  it("two-stage: first-stage tables in guest memory, output through the G-stage", () => {
    const s = setup();
    const g = identityGStage(s.r);
    const pt = new RawPt(s.r, 3);
    const pa = s.r.page();
    pt.map(IOVA, pa, URW);
    s.ddt.writeDc(DID, {
      tc: V,
      iohgatp: iohgatp(8, 4, g.rootPpn),
      fsc: atp(8, pt.rootPpn),
      ta: 7n << 12n,
    });
    expect(translate(s.r, dma(DID, IOVA, "write")).paddr).toBe(pa | 0x234n);
  });

  it("two-stage: a guest-page fault on the final GPA (iotval2 = GPA, bit 0 clear)", () => {
    const s = setup();
    // Guest RAM is mapped 1:1 (so the first-stage tables are reachable), GPA 0x1000_0000 is not.
    const g = identityGStage(s.r);
    const pt = new RawPt(s.r, 3);
    pt.map(IOVA, GPA, URW);
    s.ddt.writeDc(DID, { tc: V, iohgatp: iohgatp(8, 4, g.rootPpn), fsc: atp(8, pt.rootPpn) });
    expect(translate(s.r, dma(DID, IOVA, "write")).fault?.cause).toBe(23);
    expect(takeFaults(s.r, s.q)).toEqual([record(23, 3, { iotval2: GPA | 0x234n })]);
  });

  it("two-stage: a guest-page fault reading a first-stage PTE sets iotval2 bit 0", () => {
    const s = setup();
    const g = new RawPt(s.r, 3, true);
    const pt = new RawPt(s.r, 3);
    pt.map(IOVA, s.r.page(), URW);
    // The G-stage maps nothing: the read of the first-stage root PTE faults.
    s.ddt.writeDc(DID, { tc: V, iohgatp: iohgatp(8, 4, g.rootPpn), fsc: atp(8, pt.rootPpn) });
    expect(translate(s.r, dma(DID, IOVA, "execute")).fault?.cause).toBe(20);
    const rootPte = pt.root + ((IOVA >> 30n) & 0x1ffn) * 8n;
    expect(takeFaults(s.r, s.q)).toEqual([record(20, 1, { iotval2: rootPte | 1n })]);
  });

  it("two-stage with SADE: a guest-page fault on the implicit A/D write sets iotval2 bits 1:0", () => {
    const s = setup();
    const g = identityGStage(s.r, P.R | P.A | P.U); // guest memory read-only in the G-stage
    const pt = new RawPt(s.r, 3);
    pt.map(IOVA, s.r.page(), P.R | P.W | P.U); // A=0: the IOMMU must write it
    s.ddt.writeDc(DID, {
      tc: V | TC.SADE | TC.GADE,
      iohgatp: iohgatp(8, 4, g.rootPpn),
      fsc: atp(8, pt.rootPpn),
    });
    expect(translate(s.r, dma(DID, IOVA)).fault?.cause).toBe(21);
    const leaf = pt.pteAddress(IOVA);
    expect(takeFaults(s.r, s.q)).toEqual([record(21, 2, { iotval2: leaf | 3n })]);
  });

  it("PDT in guest memory: a guest-page fault reading it reports the original access, bit 0", () => {
    const s = setup();
    const g = new RawPt(s.r, 3, true); // maps nothing
    const pdt = new Pdt(s.r, 1);
    s.ddt.writeDc(DID, {
      tc: V | TC.PDTV,
      iohgatp: iohgatp(8, 4, g.rootPpn),
      fsc: atp(1, pdt.root >> 12n),
    });
    expect(translate(s.r, dma(DID, IOVA, "write", { pasid: 3 })).fault?.cause).toBe(23);
    expect(takeFaults(s.r, s.q)).toEqual([
      record(23, 3, { pid: 3, iotval2: (pdt.root + 3n * 16n) | 1n }),
    ]);
  });

  it("PDT in guest memory: an access fault in the G-stage walk is cause 265", () => {
    const s = setup();
    s.ddt.writeDc(DID, {
      tc: V | TC.PDTV,
      iohgatp: iohgatp(8, 4, 0x40n), // G-stage root outside RAM
      fsc: atp(1, 0x80000n),
    });
    translate(s.r, dma(DID, IOVA, "read", { pasid: 3 }));
    expect(takeFaults(s.r, s.q)).toEqual([record(265, 2, { pid: 3 })]);
  });

  it("PDT in guest memory: a poisoned G-stage PTE page is PDT data corruption (269)", () => {
    const s = setup();
    const g = identityGStage(s.r);
    const pdt = new Pdt(s.r, 1);
    s.ddt.writeDc(DID, {
      tc: V | TC.PDTV,
      iohgatp: iohgatp(8, 4, g.rootPpn),
      fsc: atp(1, pdt.root >> 12n),
    });
    s.r.iommu.setPoisoned(Number(g.rootPpn), true);
    translate(s.r, dma(DID, IOVA, "read", { pasid: 3 }));
    expect(takeFaults(s.r, s.q)).toEqual([record(269, 2, { pid: 3 })]);
  });

  it("PDT in guest memory: translated through an identity G-stage", () => {
    const s = setup();
    const g = identityGStage(s.r);
    const pdt = new Pdt(s.r, 2);
    const pt = new RawPt(s.r, 3);
    const pa = s.r.page();
    pt.map(IOVA, pa, URW);
    pdt.writePc(0x123, pcTa({ pscid: 11 }), atp(8, pt.rootPpn));
    s.ddt.writeDc(DID, {
      tc: V | TC.PDTV,
      iohgatp: iohgatp(8, 4, g.rootPpn),
      fsc: atp(2, pdt.root >> 12n),
    });
    expect(translate(s.r, dma(DID, IOVA, "read", { pasid: 0x123 })).paddr).toBe(pa | 0x234n);
  });
});

describe("Translated requests", () => {
  it("need EN_ATS (260, TTYP 5/6/7); pass through without T2GPA; use the G-stage with T2GPA", () => {
    const s = setup();
    s.ddt.writeDc(DID, { tc: V });
    for (const [access, ttyp] of [
      ["execute", 5],
      ["read", 6],
      ["write", 7],
    ] as const) {
      expect(translate(s.r, dma(DID, IOVA, access, { translated: true })).fault?.cause).toBe(260);
      expect(takeFaults(s.r, s.q)).toEqual([record(260, ttyp)]);
    }
    s.ddt.writeDc(0x22, { tc: V | TC.EN_ATS, fsc: atp(8, 0x10n) });
    expect(translate(s.r, dma(0x22, IOVA, "write", { translated: true })).paddr).toBe(IOVA);
    const g = new RawPt(s.r, 3, true);
    const spa = s.r.page();
    g.map(IOVA, spa, URW);
    s.ddt.writeDc(0x23, { tc: V | TC.EN_ATS | TC.T2GPA, iohgatp: iohgatp(8, 1, g.rootPpn) });
    expect(translate(s.r, dma(0x23, IOVA, "write", { translated: true })).paddr).toBe(spa | 0x234n);
    expect(
      translate(s.r, dma(0x23, IOVA + 0x1000n, "read", { translated: true })).fault?.cause,
    ).toBe(21);
  });
});
