// Conformance: "PCIe ATS Page Request handling" and "Page-Request-Queue (PQ)": records in the
// spec's format, overflow and memory faults, Stop Markers, the IOMMU's own PRG responses and
// the PASID rules (PRPR), the fault records of refused messages.

import { describe, expect, it } from "vitest";
import type { PageRequestMessage } from "../../../../src/hw/pci/translation-agent.js";
import { Ddt, enableQueues, MODE, R, RecordingPort, rig, TC, takeFaults } from "../fixture.js";

const DID = 0x0410;
const PQCSR = { pqen: 1, pie: 2, pqmf: 1 << 8, pqof: 1 << 9, pqon: 1 << 16 };
const SUCCESS = 0;
const INVALID_REQUEST = 1;
const RESPONSE_FAILURE = 0b1111;

function msg(o: Partial<PageRequestMessage> = {}): PageRequestMessage {
  return {
    deviceId: DID,
    pasidValid: true,
    pasid: 0x4_5678,
    privileged: false,
    execute: false,
    read: true,
    write: false,
    last: true,
    prgIndex: 0x1c3,
    page: 0x12_3456_789a,
    ...o,
  };
}

function setup(tc = TC.V | TC.EN_ATS | TC.EN_PRI, log2 = 4) {
  const r = rig({ IGS: "WSI" });
  const q = enableQueues(r, { pq: log2 });
  const ddt = new Ddt(r, 2);
  ddt.install();
  ddt.writeDc(DID, { tc });
  const port = new RecordingPort();
  r.iommu.connectPort(DID, port);
  return { r, q, ddt, port };
}

function pqRecord(r: ReturnType<typeof rig>, pq: bigint, i: number): [bigint, bigint] {
  return [r.mem.read64(pq + BigInt(i) * 16n), r.mem.read64(pq + BigInt(i) * 16n + 8n)];
}

describe("queued page requests", () => {
  it("are written in the record format and raise pip with pie", () => {
    const { r, q, port } = setup();
    r.iommu.write32(R.pqcsr, PQCSR.pqen | PQCSR.pie);
    r.iommu.pageRequest(msg({ privileged: true, execute: true, write: true }));
    expect(r.iommu.read32(R.pqt)).toBe(1);
    const [hdr, payload] = pqRecord(r, q.pq, 0);
    // PID 31:12, PV 32, PRIV 33, EXEC 34, DID 63:40; everything else 0.
    expect(hdr).toBe(
      (0x4_5678n << 12n) | (1n << 32n) | (1n << 33n) | (1n << 34n) | (BigInt(DID) << 40n),
    );
    // R 0, W 1, L 2, PRGI 11:3, page address 63:12.
    expect(payload).toBe(1n | 2n | 4n | (0x1c3n << 3n) | (0x12_3456_789an << 12n));
    expect(r.iommu.read32(R.ipsr) & 8).toBe(8);
    expect(port.responses).toEqual([]); // software answers, not the IOMMU
  });

  it("without a PASID, PID, PRIV and EXEC are 0", () => {
    const { r, q } = setup();
    r.iommu.pageRequest(msg({ pasidValid: false, privileged: true, execute: true }));
    const [hdr] = pqRecord(r, q.pq, 0);
    expect(hdr).toBe(BigInt(DID) << 40n);
  });

  it("Stop Markers are queued (L=1, R=W=0, with a PASID)", () => {
    const { r, q } = setup();
    r.iommu.pageRequest(msg({ read: false, write: false, last: true }));
    const [, payload] = pqRecord(r, q.pq, 0);
    expect(payload & 7n).toBe(4n);
  });
});

describe("page requests the IOMMU cannot queue", () => {
  it("PQ off: Response Failure with the PASID, no fault record", () => {
    const { r, q, port } = setup();
    r.iommu.write32(R.pqcsr, 0);
    r.iommu.pageRequest(msg());
    r.iommu.pageRequest(msg({ last: false })); // no response needed: silently dropped
    r.iommu.pageRequest(msg({ read: false, last: true })); // Stop Marker: never answered
    expect(port.responses).toEqual([
      {
        deviceId: DID,
        pasidValid: true,
        pasid: 0x4_5678,
        prgIndex: 0x1c3,
        responseCode: RESPONSE_FAILURE,
      },
    ]);
    expect(takeFaults(r, q)).toEqual([]);
  });

  it("PQ full: pqof, Success without PASID unless PRPR, later messages dropped until cleared", () => {
    for (const prpr of [false, true]) {
      const tc = TC.V | TC.EN_ATS | TC.EN_PRI | (prpr ? TC.PRPR : 0n);
      const { r, q, port } = setup(tc, 1); // 2 entries: 1 usable
      r.iommu.write32(R.pqcsr, PQCSR.pqen | PQCSR.pie);
      r.iommu.pageRequest(msg({ prgIndex: 1 }));
      r.iommu.write32(R.ipsr, 8);
      r.iommu.pageRequest(msg({ prgIndex: 2 }));
      expect(r.iommu.read32(R.pqcsr) & PQCSR.pqof).toBe(PQCSR.pqof);
      expect(r.iommu.read32(R.ipsr) & 8).toBe(8);
      r.iommu.write32(R.pqh, 1); // software consumed the record
      r.iommu.pageRequest(msg({ prgIndex: 3 })); // still dropped: pqof
      expect(r.iommu.read32(R.pqt)).toBe(1);
      expect(port.responses.map((m) => [m.prgIndex, m.responseCode, m.pasidValid])).toEqual([
        [2, SUCCESS, prpr],
        [3, SUCCESS, prpr],
      ]);
      r.iommu.write32(R.pqcsr, PQCSR.pqen | PQCSR.pqof);
      r.iommu.pageRequest(msg({ prgIndex: 4 }));
      expect(r.iommu.read32(R.pqt)).toBe(0);
      expect(takeFaults(r, q)).toEqual([]);
    }
  });

  it("PQ memory fault: pqmf, Response Failure", () => {
    const { r, port } = setup();
    r.iommu.write32(R.pqcsr, 0);
    r.iommu.write64(R.pqb, (0x10n << 10n) | 3n);
    r.iommu.write32(R.pqcsr, PQCSR.pqen);
    r.iommu.pageRequest(msg({ pasidValid: false }));
    expect(r.iommu.read32(R.pqcsr) & PQCSR.pqmf).toBe(PQCSR.pqmf);
    r.iommu.pageRequest(msg({ pasidValid: false, prgIndex: 5 }));
    expect(port.responses.map((m) => [m.prgIndex, m.responseCode, m.pasidValid])).toEqual([
      [0x1c3, RESPONSE_FAILURE, false],
      [5, RESPONSE_FAILURE, false],
    ]);
  });

  it("EN_PRI=0: cause 260 (TTYP 9, iotval = Page Request code), Invalid Request", () => {
    const { r, q, port } = setup(TC.V | TC.EN_ATS);
    r.iommu.pageRequest(msg({ privileged: true }));
    expect(takeFaults(r, q)).toEqual([
      {
        cause: 260,
        pid: 0x4_5678,
        pv: true,
        priv: true,
        ttyp: 9,
        did: DID,
        reserved: 0n,
        iotval: 0x04n,
        iotval2: 0n,
      },
    ]);
    // PRPR is 0 (it must be without EN_PRI): no PASID in the response.
    expect(port.responses).toEqual([
      {
        deviceId: DID,
        pasidValid: false,
        pasid: 0,
        prgIndex: 0x1c3,
        responseCode: INVALID_REQUEST,
      },
    ]);
  });

  it("EN_PRI=0 with DTF=1: no fault record, still answered", () => {
    const { r, q, port } = setup(TC.V | TC.EN_ATS | TC.DTF);
    r.iommu.pageRequest(msg());
    expect(takeFaults(r, q)).toEqual([]);
    expect(port.responses.map((m) => m.responseCode)).toEqual([INVALID_REQUEST]);
  });

  it("no DC: Off → 256, DC invalid → 258: Response Failure keeping the PASID", () => {
    const { r, q, ddt, port } = setup();
    ddt.writeDc(DID, { tc: 0n });
    r.iommu.pageRequest(msg());
    r.iommu.write64(R.ddtp, MODE.Off);
    r.iommu.pageRequest(msg({ pasidValid: false }));
    expect(takeFaults(r, q).map((f) => [f.cause, f.ttyp, f.iotval])).toEqual([
      [258, 9, 4n],
      [256, 9, 4n],
    ]);
    expect(port.responses.map((m) => [m.responseCode, m.pasidValid])).toEqual([
      [RESPONSE_FAILURE, true],
      [RESPONSE_FAILURE, false],
    ]);
  });

  it("Bare, or a device_id too wide for the DDT: 260, Invalid Request without PASID", () => {
    const { r, q, port } = setup();
    const wide = new RecordingPort();
    r.iommu.connectPort(0x1_0000, wide);
    r.iommu.pageRequest(msg({ deviceId: 0x1_0000 })); // 2LVL base format: 16-bit device_id
    r.iommu.write64(R.ddtp, MODE.Off);
    r.iommu.write64(R.ddtp, MODE.Bare);
    r.iommu.pageRequest(msg());
    expect(takeFaults(r, q).map((f) => f.cause)).toEqual([260, 260]);
    expect(wide.responses.map((m) => [m.responseCode, m.pasidValid])).toEqual([
      [INVALID_REQUEST, false],
    ]);
    expect(port.responses.map((m) => [m.responseCode, m.pasidValid])).toEqual([
      [INVALID_REQUEST, false],
    ]);
  });
});
