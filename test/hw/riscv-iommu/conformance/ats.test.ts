// Conformance: "PCIe ATS translation request handling" — completion status (Success, UR, CA),
// the permission, Priv, Global and size fields, which failures are logged, T2GPA.

import { describe, expect, it } from "vitest";
import { encodeSizedAddress } from "../../../../src/hw/pci/translation-agent.js";
import {
  atp,
  ats,
  Ddt,
  enableQueues,
  identityGStage,
  iohgatp,
  MODE,
  P,
  Pdt,
  pcTa,
  R,
  RawPt,
  rig,
  TC,
  takeFaults,
  URW,
} from "../fixture.js";

const DID = 0x51;
const IOVA = 0x4000_0000n;
const ATS = TC.V | TC.EN_ATS;

function setup(caps = {}) {
  const r = rig({ IGS: "WSI", ...caps });
  const q = enableQueues(r);
  const ddt = new Ddt(r, 1);
  ddt.install();
  return { r, q, ddt };
}

describe("failure completions", () => {
  it("EN_ATS=0: UR, logged as cause 260 with TTYP 8", () => {
    const { r, q, ddt } = setup();
    ddt.writeDc(DID, { tc: TC.V });
    expect(ats(r, DID, IOVA + 0x123n).status).toBe("UR");
    expect(takeFaults(r, q)).toEqual([
      {
        cause: 260,
        pid: 0,
        pv: false,
        priv: false,
        ttyp: 8,
        did: DID,
        reserved: 0n,
        iotval: IOVA,
        iotval2: 0n,
      },
    ]);
  });

  it("Off (256), Bare (260), DC not valid (258), misconfigured (259): UR, logged", () => {
    const { r, q, ddt } = setup();
    r.iommu.write64(R.ddtp, MODE.Off);
    expect(ats(r, DID, IOVA).status).toBe("UR");
    r.iommu.write64(R.ddtp, MODE.Bare);
    expect(ats(r, DID, IOVA).status).toBe("UR");
    r.iommu.write64(R.ddtp, MODE.Off);
    ddt.install();
    expect(ats(r, DID, IOVA).status).toBe("UR");
    ddt.writeDc(DID + 1, { tc: ATS | (1n << 20n) });
    expect(ats(r, DID + 1, IOVA).status).toBe("UR");
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp])).toEqual([
      [256, 8],
      [260, 8],
      [258, 8],
      [259, 8],
    ]);
  });

  it("access fault reading a PTE (5/7) and PDT load fault (265): CA, logged", () => {
    const { r, q, ddt } = setup();
    ddt.writeDc(DID, { tc: ATS, fsc: atp(8, 0x10n) });
    expect(ats(r, DID, IOVA, { nw: true }).status).toBe("CA");
    expect(ats(r, DID, IOVA).status).toBe("CA");
    ddt.writeDc(DID + 1, { tc: ATS | TC.PDTV, fsc: atp(2, 0x10n) });
    expect(ats(r, DID + 1, IOVA, { pasid: 1 }).status).toBe("CA");
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp, f.pv])).toEqual([
      [5, 8, false],
      [7, 8, false],
      [265, 8, true],
    ]);
  });

  it("page-table data corruption (274): CA, logged", () => {
    const { r, q, ddt } = setup();
    const pt = new RawPt(r, 3);
    pt.map(IOVA, r.page(), URW);
    ddt.writeDc(DID, { tc: ATS, fsc: atp(8, pt.rootPpn) });
    r.iommu.setPoisoned(Number(pt.rootPpn), true);
    expect(ats(r, DID, IOVA).status).toBe("CA");
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp])).toEqual([[274, 8]]);
  });

  it("page faults and PDT not valid: Success with R=W=0, not logged", () => {
    const { r, q, ddt } = setup();
    const pt = new RawPt(r, 3);
    ddt.writeDc(DID, { tc: ATS, fsc: atp(8, pt.rootPpn) });
    const c = ats(r, DID, IOVA);
    expect([c.status, c.r, c.w, c.x, c.fault?.cause]).toEqual(["success", false, false, false, 13]);
    const pdt = new Pdt(r, 1);
    ddt.writeDc(DID + 1, { tc: ATS | TC.PDTV, fsc: atp(1, pdt.root >> 12n) });
    const d = ats(r, DID + 1, IOVA, { pasid: 3 });
    expect([d.status, d.r, d.w, d.fault?.cause]).toEqual(["success", false, false, 266]);
    const g = new RawPt(r, 3, true);
    ddt.writeDc(DID + 2, { tc: ATS, iohgatp: iohgatp(8, 1, g.rootPpn) });
    const e = ats(r, DID + 2, IOVA);
    // Write refused, then read refused: the reason kept is the read's.
    expect([e.status, e.r, e.w, e.fault?.cause]).toEqual(["success", false, false, 21]);
    expect(takeFaults(r, q)).toEqual([]);
  });
});

describe("successful completions", () => {
  function pdtDevice(ta = pcTa({ ens: true, sum: false })) {
    const s = setup();
    const pt = new RawPt(s.r, 3);
    const pdt = new Pdt(s.r, 1);
    pdt.writePc(7, ta, atp(8, pt.rootPpn));
    s.ddt.writeDc(DID, { tc: ATS | TC.PDTV | TC.SADE, fsc: atp(1, pdt.root >> 12n) });
    return { ...s, pt };
  }

  it("grants what the page allows: R/W, NW asks only R, a read-only page gives W=0", () => {
    const { r, q, pt } = pdtDevice();
    const pa = r.page();
    pt.map(IOVA, pa, URW);
    pt.map(IOVA + 0x1000n, r.page(), P.R | P.A | P.U);
    const rw = ats(r, DID, IOVA, { pasid: 7 });
    expect([rw.status, rw.r, rw.w, rw.x, rw.priv, rw.u, rw.n, rw.global]).toEqual([
      "success",
      true,
      true,
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(rw.ppn).toBe(Number(pa >> 12n));
    expect(rw.sizeShift).toBe(12);
    const nw = ats(r, DID, IOVA, { pasid: 7, nw: true });
    expect([nw.r, nw.w]).toEqual([true, false]);
    const ro = ats(r, DID, IOVA + 0x1000n, { pasid: 7 });
    expect([ro.status, ro.r, ro.w]).toEqual(["success", true, false]);
    expect(takeFaults(r, q)).toEqual([]);
  });

  it("granting W sets D (SADE=1): the device will write without asking again", () => {
    const { r, pt } = pdtDevice();
    const pte = pt.map(IOVA, r.page(), P.R | P.W | P.U);
    ats(r, DID, IOVA, { pasid: 7, nw: true });
    expect(r.mem.read64(pte) & (P.A | P.D)).toBe(P.A);
    ats(r, DID, IOVA, { pasid: 7 });
    expect(r.mem.read64(pte) & (P.A | P.D)).toBe(P.A | P.D);
  });

  it("X only when requested with a PASID, allowed, and not a supervisor request to a U page", () => {
    const { r, pt } = pdtDevice(pcTa({ ens: true, sum: true }));
    pt.map(IOVA, r.page(), URW | P.X);
    pt.map(IOVA + 0x1000n, r.page(), RWX_S);
    expect(ats(r, DID, IOVA, { pasid: 7, exe: true }).x).toBe(true);
    expect(ats(r, DID, IOVA, { pasid: 7 }).x).toBe(false);
    const sup = ats(r, DID, IOVA, { pasid: 7, exe: true, priv: true });
    expect([sup.r, sup.w, sup.x, sup.priv]).toEqual([true, true, false, true]); // SUM: R/W ok, X never
    const s2 = ats(r, DID, IOVA + 0x1000n, { pasid: 7, exe: true, priv: true });
    expect([s2.r, s2.x, s2.priv]).toEqual([true, true, true]);
  });

  it("privilege and the U bit: user to U=0, or supervisor to U=1 without SUM, give R=W=0", () => {
    const { r, q, pt } = pdtDevice(pcTa({ ens: true, sum: false }));
    pt.map(IOVA, r.page(), URW);
    pt.map(IOVA + 0x1000n, r.page(), RWX_S);
    const a = ats(r, DID, IOVA, { pasid: 7, priv: true });
    const b = ats(r, DID, IOVA + 0x1000n, { pasid: 7 });
    expect([a.status, a.r, a.w, b.status, b.r, b.w]).toEqual([
      "success",
      false,
      false,
      "success",
      false,
      false,
    ]);
    expect(takeFaults(r, q)).toEqual([]);
  });

  it("Global comes from the first-stage G bit when the request has a PASID", () => {
    const { r, ddt, pt } = pdtDevice();
    pt.map(IOVA, r.page(), URW | P.G);
    expect(ats(r, DID, IOVA, { pasid: 7 }).global).toBe(true);
    const pt2 = new RawPt(r, 3);
    pt2.map(IOVA, r.page(), URW | P.G);
    ddt.writeDc(DID + 1, { tc: ATS, fsc: atp(8, pt2.rootPpn) });
    expect(ats(r, DID + 1, IOVA).global).toBe(false);
  });

  it("reports a superpage's size with the S-bit encoding", () => {
    const { r, ddt } = setup();
    const pt = new RawPt(r, 3);
    const base = 0x8020_0000n;
    pt.map(IOVA, base, URW, 1);
    ddt.writeDc(DID, { tc: ATS, fsc: atp(8, pt.rootPpn) });
    const c = ats(r, DID, IOVA + 0x3_4000n);
    expect(c.sizeShift).toBe(21);
    expect(c.ppn).toBe(Number(base >> 12n));
    // Address bits 12..19 are ones, bit 20 zero, S (bit 11) set.
    expect(c.translatedAddress).toBe(base | 0xff000n | 0x800n);
    expect(encodeSizedAddress(0x12345, 12)).toBe(0x1234_5000n);
  });

  it("both stages Bare: an identity translation of a 2-MiB range", () => {
    const { r, ddt } = setup();
    ddt.writeDc(DID, { tc: ATS });
    const c = ats(r, DID, 0x1234_5678_9000n);
    expect([c.status, c.r, c.w, c.sizeShift, c.ppn]).toEqual([
      "success",
      true,
      true,
      21,
      0x1_2345_6789 - 0x189,
    ]);
  });

  it("T2GPA: the completion carries the GPA; the size is the smaller of both stages", () => {
    const { r, ddt } = setup();
    const g = identityGStage(r); // 1 GiB G-stage leaves
    const pt = new RawPt(r, 3);
    const gpa = 0x8040_0000n;
    pt.map(IOVA, gpa, URW, 1); // 2 MiB first-stage leaf
    ddt.writeDc(DID, {
      tc: ATS | TC.T2GPA,
      fsc: atp(8, pt.rootPpn),
      iohgatp: iohgatp(8, 3, g.rootPpn),
    });
    const c = ats(r, DID, IOVA);
    expect([c.status, c.ppn, c.sizeShift]).toEqual(["success", Number(gpa >> 12n), 21]);
  });

  it("is answered from the IOTLB when it holds the translation", () => {
    const { r, ddt } = setup();
    const pt = new RawPt(r, 3);
    const pa = r.page();
    const pte = pt.map(IOVA, pa, URW);
    ddt.writeDc(DID, { tc: ATS, fsc: atp(8, pt.rootPpn) });
    ats(r, DID, IOVA);
    r.mem.write64(pte, 0n);
    const c = ats(r, DID, IOVA);
    expect([c.r, c.w, c.ppn]).toEqual([true, true, Number(pa >> 12n)]);
    expect(r.iommu.ioatc.stats.iotlbHits).toBe(1);
  });
});

/** A supervisor-only (U=0) page with R, W, X. */
const RWX_S = P.R | P.W | P.X | P.A | P.D;
