// DSA page faults end to end: a descriptor touches an unmapped page; with Block On Fault the
// device sends a PRI Page Request that lands in the IOMMU's page-request queue; the test plays
// the OS (maps the page, answers with ATS.PRGR through the command queue) and the device
// retries and completes. Invalid/failure responses, no Block On Fault, Stop Markers on a PASID
// abort, drains, and faults on completion records and batch lists.

import { describe, expect, it } from "vitest";
import {
  CMDSTS_ACTIVE,
  DSA_CMD,
  DSA_COMP,
  DSA_COMP_STATUS_WRITE,
  DSA_OPCODE,
  DSA_REG,
  IDXD_OP_FLAG,
} from "../../../src/hw/endpoints/dsa-regs.js";
import { PCI_PRI_STATUS, PCI_PRI_STATUS_RF } from "../../../src/hw/pci/regs.js";
import {
  command,
  type DsaRig,
  descriptor,
  dsaMachine,
  enableDevice,
  enqueue,
  PASID,
  RECORD,
  r32,
  record,
  setupWq,
  svaSpace,
  w32,
  writeVa,
} from "./dsa-fixture.js";
import { cmd, faults, map, page, pageRequests, R, submit } from "./fixture.js";

const BASE = 0x1000_0000n;
const SRC = BASE;
const DST = BASE + 0x4000n;
const CRA = BASE + 0xf000n;
const BOF = IDXD_OP_FLAG.BOF;
const SUCCESS = 0;
const INVALID = 1;
const FAILURE = 0xf;

/**
 * An SVA space for PASID 5 with pages 0-3 (SRC) and 15 (records) mapped and DST pages 4-7
 * left for the OS to map; shared WQ 0 allows Block On Fault.
 */
function faulting(o: { useAts?: boolean; wq?: Parameters<typeof setupWq>[2] } = {}) {
  const r = dsaMachine({ useAts: o.useAts ?? false });
  const pt = svaSpace(r, { ats: true, pri: true });
  const frames = new Map<bigint, bigint>();
  const mapAt = (va: bigint) => {
    const pa = page(r);
    map(pt, va, pa);
    frames.set(va, pa);
    return pa;
  };
  for (const va of [SRC, SRC + 0x1000n, SRC + 0x2000n, SRC + 0x3000n, CRA]) mapAt(va);
  expect(enableDevice(r)).toBe(0);
  expect(setupWq(r, 0, { bof: true, ...o.wq })).toBe(0);
  const read = (va: bigint, n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const a = va + BigInt(i);
      const pa = frames.get(a & ~0xfffn);
      out[i] = pa === undefined ? -1 : r.r.mem.read8(pa + (a & 0xfffn));
    }
    return out;
  };
  const write = (va: bigint, data: Uint8Array) => {
    writeVa(r, [frames.get(va & ~0xfffn)!], va & ~0xfffn, va, data);
  };
  const cr = (at = CRA) => record(r, frames.get(at & ~0xfffn)! + (at & 0xfffn));
  return { r, pt, mapAt, read, write, cr };
}

function respond(r: DsaRig, prgi: number, code: number, pasid: number | undefined = PASID): void {
  submit(r.r, r.q, cmd.ats_prgr(r.id, prgi, code, pasid), cmd.fence());
}

const DATA = Uint8Array.from({ length: 0x300 }, (_, i) => (i * 5 + 1) & 0xff);

/** memmove of 0x300 bytes from SRC to DST + 0xf00: 0x100 bytes on DST page 0, the rest on page 1. */
function move(flags: number = BOF) {
  return descriptor({
    opcode: DSA_OPCODE.MEMMOVE,
    flags: RECORD | flags,
    completion: CRA,
    a1: SRC,
    a2: DST + 0xf00n,
    size: DATA.length,
  });
}

describe("Block On Fault with PRI", () => {
  for (const useAts of [false, true]) {
    it(`a page request reaches the PQ; after the OS maps the page and answers, the copy completes (${useAts ? "ATS" : "untranslated"})`, () => {
      const f = faulting({ useAts });
      const { r } = f;
      f.write(SRC, DATA);
      f.mapAt(DST); // the first destination page exists; the second does not
      enqueue(r, move());
      r.dsa.run();
      expect(r.dsa.current?.waiting).toBe(true);
      expect(f.cr().status).toBe(0);
      const [req, ...more] = pageRequests(r);
      expect(more).toEqual([]);
      expect(req).toMatchObject({
        did: r.id,
        pid: PASID,
        r: true,
        w: true,
        l: true,
        addr: DST + 0x1000n,
      });
      expect(r.dsa.fn.priOutstanding).toBe(1);
      // Untranslated requests that fault are also logged; ATS completions are not.
      expect(faults(r).map((x) => x.cause)).toEqual(useAts ? [] : [15]);
      // The OS makes the page present and answers the group.
      f.mapAt(DST + 0x1000n);
      respond(r, req!.prgi, SUCCESS);
      expect(r.dsa.fn.priOutstanding).toBe(0);
      r.dsa.run();
      expect(f.read(DST + 0xf00n, DATA.length)).toEqual(DATA);
      expect(f.cr()).toMatchObject({ status: DSA_COMP.SUCCESS });
      expect(r.dsa.current).toBeNull();
      if (useAts) expect(r.dsa.atc!.size).toBeGreaterThan(0);
    });
  }

  it("an Invalid Request response ends the descriptor with a partial completion", () => {
    const f = faulting();
    const { r } = f;
    f.write(SRC, DATA);
    f.mapAt(DST);
    enqueue(r, move());
    r.dsa.run();
    const [req] = pageRequests(r);
    respond(r, req!.prgi, INVALID);
    r.dsa.run();
    expect(f.cr()).toMatchObject({
      status: DSA_COMP.PAGE_FAULT_IR | DSA_COMP_STATUS_WRITE,
      bytes: 0x100,
      faultAddr: DST + 0x1000n,
      result: 0,
    });
    expect(f.read(DST + 0xf00n, 0x100)).toEqual(DATA.subarray(0, 0x100));
  });

  it("a read fault asks for read access only and its status has no write bit", () => {
    const f = faulting();
    const { r } = f;
    f.mapAt(DST);
    f.mapAt(DST + 0x1000n);
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.MEMMOVE,
        flags: RECORD | BOF,
        completion: CRA,
        a1: BASE + 0x8000n, // unmapped
        a2: DST,
        size: 16,
      }),
    );
    r.dsa.run();
    const [req] = pageRequests(r);
    expect(req).toMatchObject({ r: true, w: false, addr: BASE + 0x8000n });
    respond(r, req!.prgi, INVALID);
    r.dsa.run();
    expect(f.cr()).toMatchObject({
      status: DSA_COMP.PAGE_FAULT_IR,
      bytes: 0,
      faultAddr: BASE + 0x8000n,
    });
  });

  it("Response Failure latches in the PRI capability; later faults are not waited for", () => {
    const f = faulting();
    const { r } = f;
    enqueue(r, move());
    r.dsa.run();
    const [req] = pageRequests(r);
    respond(r, req!.prgi, FAILURE);
    r.dsa.run();
    expect(f.cr().status).toBe(DSA_COMP.PAGE_FAULT_IR | DSA_COMP_STATUS_WRITE);
    const sta = r.dsa.fn.config.read(r.dsa.fn.caps.pri + PCI_PRI_STATUS, 2);
    expect(sta & PCI_PRI_STATUS_RF).toBe(PCI_PRI_STATUS_RF);
    enqueue(r, move());
    r.dsa.run();
    expect(pageRequests(r).length).toBe(1);
    expect(f.cr().status).toBe(DSA_COMP.PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE);
  });

  it("when the IOMMU cannot queue the request it answers itself (PQ off: Response Failure)", () => {
    const f = faulting();
    const { r } = f;
    r.r.iommu.write32(R.pqcsr, 0);
    enqueue(r, move());
    r.dsa.run();
    expect(f.cr().status).toBe(DSA_COMP.PAGE_FAULT_IR | DSA_COMP_STATUS_WRITE);
    expect(r.dsa.fn.priOutstanding).toBe(0);
  });

  it("the completion record's own page is requested too", () => {
    const f = faulting();
    const { r } = f;
    const cra = BASE + 0xe000n; // unmapped
    enqueue(r, descriptor({ opcode: DSA_OPCODE.NOOP, flags: RECORD | BOF, completion: cra }));
    r.dsa.run();
    const [req] = pageRequests(r);
    expect(req).toMatchObject({ w: true, addr: cra });
    f.mapAt(cra);
    respond(r, req!.prgi, SUCCESS);
    r.dsa.run();
    expect(f.cr(cra).status).toBe(DSA_COMP.SUCCESS);
  });
});

describe("without Block On Fault", () => {
  it("the descriptor ends at once with a partial completion and no page request", () => {
    const f = faulting();
    const { r } = f;
    f.write(SRC, DATA);
    f.mapAt(DST);
    enqueue(r, move(0));
    r.dsa.run();
    expect(pageRequests(r)).toEqual([]);
    expect(f.cr()).toMatchObject({
      status: DSA_COMP.PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE,
      bytes: 0x100,
      faultAddr: DST + 0x1000n,
    });
    // Software touches the page and resubmits the rest, as idxd users do.
    f.mapAt(DST + 0x1000n);
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.MEMMOVE,
        flags: RECORD,
        completion: CRA,
        a1: SRC + 0x100n,
        a2: DST + 0x1000n,
        size: DATA.length - 0x100,
      }),
    );
    r.dsa.run();
    expect(f.read(DST + 0xf00n, DATA.length)).toEqual(DATA);
  });

  it("a WQ with PRS disabled does not block either", () => {
    const f = faulting({ wq: { prsDisable: true } });
    enqueue(f.r, move());
    f.r.dsa.run();
    expect(pageRequests(f.r)).toEqual([]);
    expect(f.cr().status).toBe(DSA_COMP.PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE);
  });

  it("a fault reading a batch's descriptor list is a batch page fault", () => {
    const f = faulting();
    const { r } = f;
    const list = BASE + 0x3fc0n; // descriptor 0 mapped, descriptor 1 on the unmapped page
    f.write(list, descriptor({ opcode: DSA_OPCODE.NOOP }));
    enqueue(
      r,
      descriptor({ opcode: DSA_OPCODE.BATCH, flags: RECORD, completion: CRA, a1: list, size: 2 }),
    );
    r.dsa.run();
    expect(f.cr()).toMatchObject({
      status: DSA_COMP.BATCH_PAGE_FAULT,
      bytes: 1,
      faultAddr: BASE + 0x4000n,
    });
  });
});

describe("stopping a PASID", () => {
  it("Abort PASID while a page request is outstanding sends a Stop Marker; the late response is ignored", () => {
    const f = faulting();
    const { r } = f;
    enqueue(r, move());
    r.dsa.run();
    const [req] = pageRequests(r);
    expect(command(r, DSA_CMD.ABORT_PASID, PASID)).toBe(0);
    const [, marker] = pageRequests(r);
    expect(marker).toMatchObject({ did: r.id, pid: PASID, r: false, w: false, l: true });
    expect(r.dsa.current).toBeNull();
    f.mapAt(DST);
    f.mapAt(DST + 0x1000n);
    respond(r, req!.prgi, SUCCESS);
    r.dsa.run();
    expect(f.cr().status).toBe(0); // abandoned: no record
    expect(r.dsa.fn.priOutstanding).toBe(0);
  });

  it("Abort PASID without outstanding requests sends no Stop Marker", () => {
    const f = faulting();
    expect(command(f.r, DSA_CMD.ABORT_PASID, PASID)).toBe(0);
    expect(pageRequests(f.r)).toEqual([]);
  });

  it("Drain PASID stays active until the blocked descriptor completes", () => {
    const f = faulting();
    const { r } = f;
    f.write(SRC, DATA);
    f.mapAt(DST);
    enqueue(r, move());
    r.dsa.run();
    w32(r, DSA_REG.CMD, (DSA_CMD.DRAIN_PASID << 20) | PASID);
    expect(r32(r, DSA_REG.CMDSTS) & CMDSTS_ACTIVE).not.toBe(0);
    r.dsa.run();
    expect(r32(r, DSA_REG.CMDSTS) & CMDSTS_ACTIVE).not.toBe(0);
    f.mapAt(DST + 0x1000n);
    respond(r, pageRequests(r)[0]!.prgi, SUCCESS);
    r.dsa.run();
    expect(r32(r, DSA_REG.CMDSTS)).toBe(0);
    expect(f.cr().status).toBe(DSA_COMP.SUCCESS);
    expect(pageRequests(r).length).toBe(1); // no Stop Marker: nothing was outstanding
  });
});

describe("the view", () => {
  it("shows the descriptor waiting for its page and the outstanding group", () => {
    const f = faulting();
    enqueue(f.r, move());
    f.r.dsa.run();
    expect(f.r.dsa.toJSON()).toMatchObject({
      current: {
        opcode: "memmove",
        pasid: PASID,
        waiting_for_page: `0x${(DST + 0xf00n).toString(16)}`,
      },
      pri: { outstanding: [{ prgi: 0, pasid: PASID, write: true }], requests: 1 },
      counters: { page_faults: 1, page_requests: 1 },
    });
  });
});
