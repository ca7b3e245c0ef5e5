// Conformance: the debug translation interface ("Debug support": tr_req_iova, tr_req_ctl,
// tr_response) and flat MSI address translation ("Process to translate addresses of MSIs").

import { describe, expect, it } from "vitest";
import {
  atp,
  ats,
  Ddt,
  dma,
  enableQueues,
  identityGStage,
  iohgatp,
  P,
  R,
  RawPt,
  rig,
  TC,
  takeFaults,
  translate,
  URW,
} from "../fixture.js";

const DID = 0x33;

describe("debug translation interface", () => {
  function setup() {
    const r = rig({ IGS: "WSI" });
    const q = enableQueues(r);
    const ddt = new Ddt(r, 2);
    ddt.install();
    const pt = new RawPt(r, 3);
    ddt.writeDc(DID, { tc: TC.V, fsc: atp(8, pt.rootPpn) });
    return { r, q, pt };
  }

  /** tr_req_ctl: Go 0, Priv 1, Exe 2, NW 3, PID 31:12, PV 32, DID 63:40. */
  function request(r: ReturnType<typeof rig>, iova: bigint, ctl: bigint): bigint {
    r.iommu.write64(R.tr_req_iova, iova);
    r.iommu.write64(R.tr_req_ctl, ctl | (BigInt(DID) << 40n) | 1n);
    expect(r.iommu.read64(R.tr_req_ctl) & 1n).toBe(0n); // Go/Busy cleared on completion
    return r.iommu.read64(R.tr_response);
  }

  it("translates a 4-KiB page: fault 0, S 0, PPN at 53:10", () => {
    const { r, pt } = setup();
    const pa = r.page();
    pt.map(0x7000n, pa, URW);
    expect(request(r, 0x7000n, 0n)).toBe((pa >> 12n) << 10n);
    expect(r.iommu.read64(R.tr_req_iova)).toBe(0x7000n);
  });

  it("encodes a superpage's size in the PPN with S=1, and reports PBMT", () => {
    const { r, pt } = setup();
    pt.map(0x4000_0000n, 0x8020_0000n, URW, 1, 1n << 61n); // 2 MiB, PBMT=NC
    const resp = request(r, 0x4000_5000n, 8n); // NW: read only
    expect(resp & 1n).toBe(0n);
    expect((resp >> 7n) & 3n).toBe(1n);
    expect((resp >> 9n) & 1n).toBe(1n);
    // 2 MiB: PPN bits 7:0 ones, bit 8 zero.
    expect(resp >> 10n).toBe((0x8020_0000n >> 12n) | 0xffn);
  });

  it("reports a fault in tr_response and in the fault queue (as an Untranslated request)", () => {
    const { r, q, pt } = setup();
    const pa = r.page();
    pt.map(0x7000n, pa, P.R | P.A | P.U);
    expect(request(r, 0x7000n, 0n) & 1n).toBe(1n); // NW=0 asks for write
    expect(request(r, 0x7000n, 4n | 8n) & 1n).toBe(1n); // Exe
    expect(request(r, 0x7000n, 8n)).toBe((pa >> 12n) << 10n); // NW=1: read only
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp, f.did, f.iotval])).toEqual([
      [15, 3, DID, 0x7000n],
      [12, 1, DID, 0x7000n],
    ]);
  });

  it("passes PV, PID and Priv to the translation", () => {
    const { r, q } = setup();
    request(r, 0x7000n, (1n << 32n) | (0x5n << 12n) | 2n);
    expect(takeFaults(r, q).map((f) => [f.cause, f.pv, f.pid, f.priv])).toEqual([
      [260, true, 5, true],
    ]);
  });
});

describe("MSI address translation (MSI_FLAT)", () => {
  // Guest interrupt files at GPA 0x2800_0000 + n × 4 KiB, n < 8: mask 0x7, pattern 0x28000.
  const MSI_GPA = 0x2800_3000n;

  function setup() {
    const r = rig({ MSI_FLAT: true, IGS: "WSI" });
    const q = enableQueues(r);
    const ddt = new Ddt(r, 1, true);
    ddt.install();
    const g = identityGStage(r);
    const msiPt = r.page();
    ddt.writeDc(DID, {
      tc: TC.V | TC.EN_ATS,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      msiptp: atp(1, msiPt >> 12n),
      msiMask: 0x7n,
      msiPattern: 0x2_8000n,
    });
    return { r, q, msiPt, ddt, g };
  }

  /** Basic-mode MSI PTE: V, M=3, PPN 53:10. */
  const msiPte = (ppn: bigint) => 1n | (3n << 1n) | (ppn << 10n);

  it("translates a write to a virtual interrupt file through its MSI PTE", () => {
    const { r, msiPt } = setup();
    const file = 0x2f00_0000n; // an IMSIC guest file (not RAM: only translated here)
    r.mem.write64(msiPt + 3n * 16n, msiPte(file >> 12n));
    const res = translate(r, dma(DID, MSI_GPA | 0x4n, "write"));
    expect(res.paddr).toBe(file | 0x4n);
    // Addresses that do not match the pattern use the G-stage.
    expect(translate(r, dma(DID, 0x8000_1000n, "write")).paddr).toBe(0x8000_1000n);
  });

  it("MSI PTE not valid (262), misconfigured (263: M=1 MRIF, M=0, C=1, reserved), load fault (261)", () => {
    const { r, q, msiPt, ddt, g } = setup();
    const cases: Array<[bigint, number]> = [
      [0n, 262],
      [1n | (1n << 1n), 263], // M=1: MRIF without MSI_MRIF
      [1n, 263], // M=0
      [msiPte(0x2f000n) | (1n << 63n), 263], // C=1
      [msiPte(0x2f000n) | (1n << 5n), 263], // reserved bit 5
    ];
    for (const [pte, cause] of cases) {
      r.mem.write64(msiPt + 3n * 16n, pte);
      expect(translate(r, dma(DID, MSI_GPA, "write")).fault?.cause).toBe(cause);
    }
    ddt.writeDc(DID + 1, {
      tc: TC.V,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      msiptp: atp(1, 0x10n), // MSI page table outside RAM
      msiMask: 0x7n,
      msiPattern: 0x2_8000n,
    });
    expect(translate(r, dma(DID + 1, MSI_GPA, "write")).fault?.cause).toBe(261);
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp, f.iotval])).toEqual([
      ...cases.map(([, c]) => [c, 3, MSI_GPA]),
      [261, 3, MSI_GPA],
    ]);
  });

  it("reads the MSI PTE at (msiptp.PPN × 4096) | (I × 16): an OR, not a sum", () => {
    const { r, g, ddt } = setup();
    const pair = r.pages(2, 2);
    const odd = (pair >> 12n) + 1n; // msiptp.PPN with bit 0 set
    // Interrupt file I = 256 (mask 0x1ff): I × 16 = 0x1000 sets bit 12, already set in the PPN.
    r.mem.write64(odd << 12n, msiPte(0x2f123n));
    ddt.writeDc(DID + 3, {
      tc: TC.V,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      msiptp: atp(1, odd),
      msiMask: 0x1ffn,
      msiPattern: 0x2_8000n,
    });
    expect(translate(r, dma(DID + 3, 0x2810_0000n, "write")).paddr).toBe(0x2f12_3000n);
  });

  it("an MSI page is not executable (cause 1); poisoned MSI page table (270)", () => {
    const { r, q, msiPt } = setup();
    r.mem.write64(msiPt + 3n * 16n, msiPte(0x2f000n));
    expect(translate(r, dma(DID, MSI_GPA, "execute")).fault?.cause).toBe(1);
    r.iommu.setPoisoned(Number(msiPt >> 12n), true);
    expect(translate(r, dma(DID, MSI_GPA, "write")).fault?.cause).toBe(270);
    expect(takeFaults(r, q).map((f) => f.cause)).toEqual([1, 270]);
  });

  it("an MSI page behind a first stage is recognised on the GPA", () => {
    const { r, msiPt, ddt, g } = setup();
    r.mem.write64(msiPt + 1n * 16n, msiPte(0x2f001n));
    const pt = new RawPt(r, 3);
    pt.map(0x5000n, 0x2800_1000n, URW);
    ddt.writeDc(DID + 2, {
      tc: TC.V,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      fsc: atp(8, pt.rootPpn),
      msiptp: atp(1, msiPt >> 12n),
      msiMask: 0x7n,
      msiPattern: 0x2_8000n,
    });
    expect(translate(r, dma(DID + 2, 0x5008n, "write")).paddr).toBe(0x2f00_1008n);
    // Not cached as a regular translation.
    expect(r.iommu.ioatc.iotlbEntries()).toEqual([]);
  });

  it("an MSI address never reaches the G-stage (step 18 before 19): no A/D update, no fault", () => {
    // A G-stage that also maps the guest's interrupt-file page (as a hypervisor does for the
    // harts), with A=D=0 and GADE=1: a walk of it would set A and D.
    const { r, q, msiPt, ddt, g } = setup();
    r.mem.write64(msiPt + 3n * 16n, msiPte(0x2f000n));
    const gPte = g.map(MSI_GPA, r.page(), P.R | P.W | P.U);
    ddt.writeDc(DID, {
      tc: TC.V | TC.GADE,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      msiptp: atp(1, msiPt >> 12n),
      msiMask: 0x7n,
      msiPattern: 0x2_8000n,
    });
    expect(translate(r, dma(DID, MSI_GPA, "write")).paddr).toBe(0x2f00_0000n);
    expect(r.mem.read64(gPte) & (P.A | P.D)).toBe(0n);
    // A corrupted G-stage table behind the MSI page is not read either.
    r.iommu.setPoisoned(Number(gPte >> 12n), true);
    expect(translate(r, dma(DID, MSI_GPA, "write")).paddr).toBe(0x2f00_0000n);
    expect(takeFaults(r, q)).toEqual([]);
  });

  it("ATS to an MSI page behind a read-only first-stage page: W=0 (denied in one stage)", () => {
    const { r, msiPt, ddt, g } = setup();
    r.mem.write64(msiPt + 1n * 16n, msiPte(0x2f001n));
    const pt = new RawPt(r, 3);
    pt.map(0x5000n, 0x2800_1000n, P.R | P.A | P.U);
    ddt.writeDc(DID + 2, {
      tc: TC.V | TC.EN_ATS,
      iohgatp: iohgatp(8, 2, g.rootPpn),
      fsc: atp(8, pt.rootPpn),
      msiptp: atp(1, msiPt >> 12n),
      msiMask: 0x7n,
      msiPattern: 0x2_8000n,
    });
    const c = ats(r, DID + 2, 0x5000n);
    expect([c.status, c.r, c.w, c.x, c.ppn]).toEqual(["success", true, false, false, 0x2f001]);
  });

  it("an ATS request for an MSI page gets R=W=1, X=0, 4 KiB, no Global", () => {
    const { r, msiPt } = setup();
    r.mem.write64(msiPt + 3n * 16n, msiPte(0x2f000n));
    const c = ats(r, DID, MSI_GPA);
    expect([c.status, c.r, c.w, c.x, c.global, c.sizeShift, c.ppn]).toEqual([
      "success",
      true,
      true,
      false,
      false,
      12,
      0x2f000,
    ]);
  });
});
