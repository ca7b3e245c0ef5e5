// The DSA-like engine over a real RISC-V IOMMU: submission through portals (MOVDIR64B to a
// dedicated WQ, ENQCMD with the submitter's PASID to a shared WQ), memmove/memfill/compare/
// compval/batch with completion records in memory, descriptor errors, commands, and the view.
// Page faults and PRI are in dsa-faults.test.ts.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  CMDSTS_ERR,
  DSA_CMD,
  DSA_COMP,
  DSA_OPCODE,
  DSA_PORTAL_LIMITED,
  DSA_REG,
  IDXD_OP_FLAG,
} from "../../../src/hw/endpoints/dsa-regs.js";
import { PCI_COMMAND } from "../../../src/hw/pci/regs.js";
import {
  command,
  type DsaRig,
  descriptor,
  dsaMachine,
  enableDevice,
  enqueue,
  mapPages,
  PASID,
  RECORD,
  r32,
  readVa,
  record,
  setupWq,
  svaSpace,
  w32,
  writeVa,
} from "./dsa-fixture.js";
import { dcPaging, pageTable } from "./fixture.js";

const BASE = 0x1000_0000n;
const SRC = BASE;
const DST = BASE + 0x8000n;
const CRA = BASE + 0xf000n;

function fill(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed * 7 + (i >> 8)) & 0xff);
}

/** A DSA with a shared WQ 0 and an SVA space for PASID 5 with 16 mapped pages at BASE. */
function sva(o: Parameters<typeof dsaMachine>[0] = {}) {
  const r = dsaMachine(o);
  const pt = svaSpace(r);
  const frames = mapPages(r, pt, BASE, 16);
  expect(enableDevice(r)).toBe(0);
  expect(setupWq(r, 0, { size: 8 })).toBe(0);
  return { r, pt, frames };
}

function cr(r: DsaRig, frames: bigint[], at = CRA) {
  return record(r, frames[Number((at - BASE) / 4096n)]! + (at % 4096n));
}

describe("operations through a shared WQ with the submitter's PASID", () => {
  it("memmove across pages writes the data and a success record", () => {
    const { r, frames } = sva();
    const data = fill(0x2345, 1);
    writeVa(r, frames, BASE, SRC + 0x123n, data);
    expect(
      enqueue(
        r,
        descriptor({
          opcode: DSA_OPCODE.MEMMOVE,
          flags: RECORD,
          completion: CRA,
          a1: SRC + 0x123n,
          a2: DST + 0xff0n,
          size: data.length,
        }),
      ),
    ).toBe(true);
    expect(cr(r, frames).status).toBe(0); // nothing ran yet: work runs when the device runs
    r.dsa.run();
    expect(readVa(r, frames, BASE, DST + 0xff0n, data.length)).toEqual(data);
    expect(cr(r, frames)).toMatchObject({ status: DSA_COMP.SUCCESS, result: 0 });
    expect(r.dsa.completed).toBe(1);
  });

  it("memmove with overlapping buffers behaves like memmove", () => {
    for (const [src, dst] of [
      [0x100n, 0x900n],
      [0x900n, 0x100n],
    ] as const) {
      const { r, frames } = sva();
      const init = fill(0x3000, 3);
      writeVa(r, frames, BASE, BASE, init);
      enqueue(
        r,
        descriptor({
          opcode: DSA_OPCODE.MEMMOVE,
          flags: RECORD,
          completion: CRA,
          a1: BASE + src,
          a2: BASE + dst,
          size: 0x2000,
        }),
      );
      r.dsa.run();
      const expected = init.slice();
      expected.copyWithin(Number(dst), Number(src), Number(src) + 0x2000);
      expect(readVa(r, frames, BASE, BASE, 0x3000)).toEqual(expected);
      expect(cr(r, frames).status).toBe(DSA_COMP.SUCCESS);
    }
  });

  it("memmove overlap is found across a 4 GiB boundary of the addresses", () => {
    const low = 0xffff_c000n; // pages up to 0x1_0000_4000
    for (const [src, dst] of [
      [0x2100n, 0x4900n], // destination above 4 GiB inside the source: copied downward
      [0x4900n, 0x2100n],
    ] as const) {
      const r = dsaMachine();
      const pt = svaSpace(r);
      const frames = mapPages(r, pt, low, 8);
      expect([enableDevice(r), setupWq(r, 0, { size: 8 })]).toEqual([0, 0]);
      const init = fill(0x8000, 5);
      writeVa(r, frames, low, low, init);
      enqueue(
        r,
        descriptor({
          opcode: DSA_OPCODE.MEMMOVE,
          flags: 0,
          a1: low + src,
          a2: low + dst,
          size: 0x3000,
        }),
      );
      r.dsa.run();
      const expected = init.slice();
      expected.copyWithin(Number(dst), Number(src), Number(src) + 0x3000);
      expect(readVa(r, frames, low, low, 0x8000)).toEqual(expected);
    }
  });

  it("memfill repeats the 8-byte pattern from the destination's start", () => {
    const { r, frames } = sva();
    const pattern = 0x0807_0605_0403_0201n;
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.MEMFILL,
        flags: RECORD,
        completion: CRA,
        a1: pattern,
        a2: DST + 3n,
        size: 0x1005,
      }),
    );
    r.dsa.run();
    const got = readVa(r, frames, BASE, DST + 3n, 0x1005);
    expect([...got.subarray(0, 10)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 1, 2]);
    expect(got[0x1004]).toBe((0x1004 % 8) + 1);
    expect(readVa(r, frames, BASE, DST, 3)).toEqual(new Uint8Array(3));
    expect(cr(r, frames).status).toBe(DSA_COMP.SUCCESS);
  });

  it("compare reports the first difference; Check Result turns a mismatch into a false predicate", () => {
    const { r, frames } = sva();
    const data = fill(0x1800, 2);
    writeVa(r, frames, BASE, SRC, data);
    writeVa(r, frames, BASE, DST, data);
    const cmp = (flags: number, expected = 0, at = CRA) =>
      descriptor({
        opcode: DSA_OPCODE.COMPARE,
        flags: RECORD | flags,
        completion: at,
        a1: SRC,
        a2: DST,
        size: data.length,
        expected,
      });
    enqueue(r, cmp(0));
    r.dsa.run();
    expect(cr(r, frames)).toMatchObject({ status: DSA_COMP.SUCCESS, result: 0 });
    writeVa(r, frames, BASE, DST + 0x1234n, Uint8Array.of(data[0x1234]! ^ 1));
    enqueue(r, cmp(0, 0, CRA + 0x20n));
    enqueue(r, cmp(IDXD_OP_FLAG.CR, 0, CRA + 0x40n));
    enqueue(r, cmp(IDXD_OP_FLAG.CR, 1, CRA + 0x60n));
    r.dsa.run();
    expect(cr(r, frames, CRA + 0x20n)).toMatchObject({
      status: DSA_COMP.SUCCESS,
      result: 1,
      bytes: 0x1234,
    });
    expect(cr(r, frames, CRA + 0x40n)).toMatchObject({ status: DSA_COMP.SUCCESS_PRED, result: 1 });
    expect(cr(r, frames, CRA + 0x60n)).toMatchObject({ status: DSA_COMP.SUCCESS, result: 1 });
  });

  it("compval compares against a pattern", () => {
    const { r, frames } = sva();
    const pattern = Uint8Array.of(9, 9, 9, 9, 7, 7, 7, 7);
    const buf = new Uint8Array(100);
    for (let i = 0; i < 100; i++) buf[i] = pattern[i % 8]!;
    buf[77] = 0;
    writeVa(r, frames, BASE, SRC, buf);
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.COMPVAL,
        flags: RECORD,
        completion: CRA,
        a1: SRC,
        a2: 0x0707_0707_0909_0909n,
        size: 100,
      }),
    );
    r.dsa.run();
    expect(cr(r, frames)).toMatchObject({ result: 1, bytes: 77 });
  });

  it("a batch runs its descriptors in order; a fenced one after a failure ends it", () => {
    const { r, frames } = sva();
    const list = BASE + 0x4000n;
    const data = fill(64, 4);
    writeVa(r, frames, BASE, SRC, data);
    const subs = [
      descriptor({
        opcode: DSA_OPCODE.MEMMOVE,
        flags: RECORD,
        completion: CRA + 0x20n,
        a1: SRC,
        a2: DST,
        size: 64,
      }),
      // differs from SRC at offset 0: a false predicate with Check Result
      descriptor({
        opcode: DSA_OPCODE.COMPARE,
        flags: RECORD | IDXD_OP_FLAG.CR,
        completion: CRA + 0x40n,
        a1: SRC,
        a2: DST + 0x100n,
        size: 64,
      }),
      descriptor({
        opcode: DSA_OPCODE.MEMFILL,
        flags: RECORD | IDXD_OP_FLAG.FENCE,
        completion: CRA + 0x60n,
        a1: 0xffn,
        a2: DST,
        size: 8,
      }),
    ];
    for (const [i, d] of subs.entries()) writeVa(r, frames, BASE, list + BigInt(i) * 64n, d);
    enqueue(
      r,
      descriptor({ opcode: DSA_OPCODE.BATCH, flags: RECORD, completion: CRA, a1: list, size: 3 }),
    );
    r.dsa.run();
    expect(readVa(r, frames, BASE, DST, 64)).toEqual(data); // the fill never ran
    expect(cr(r, frames, CRA + 0x20n).status).toBe(DSA_COMP.SUCCESS);
    expect(cr(r, frames, CRA + 0x40n).status).toBe(DSA_COMP.SUCCESS_PRED);
    expect(cr(r, frames, CRA + 0x60n).status).toBe(0);
    expect(cr(r, frames)).toMatchObject({ status: DSA_COMP.BATCH_FAIL, bytes: 2 });
    // Without the fence the whole batch runs.
    writeVa(r, frames, BASE, list + 128n + 4n, Uint8Array.of(RECORD, 0, 0, DSA_OPCODE.MEMFILL));
    enqueue(
      r,
      descriptor({ opcode: DSA_OPCODE.BATCH, flags: RECORD, completion: CRA, a1: list, size: 3 }),
    );
    r.dsa.run();
    expect(cr(r, frames, CRA + 0x60n).status).toBe(DSA_COMP.SUCCESS);
    expect(cr(r, frames)).toMatchObject({ status: DSA_COMP.BATCH_FAIL, bytes: 3 });
    expect([...readVa(r, frames, BASE, DST, 8)]).toEqual([0xff, 0, 0, 0, 0, 0, 0, 0]);
  });

  test.prop(
    [
      fc.array(
        fc.record({
          op: fc.constantFrom("move", "fill"),
          src: fc.integer({ min: 0, max: 0x7000 }),
          dst: fc.integer({ min: 0, max: 0x7000 }),
          len: fc.integer({ min: 1, max: 0x1000 }),
          pattern: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        }),
        { minLength: 1, maxLength: 6 },
      ),
    ],
    { numRuns: 25 },
  )("memmove and memfill match a byte model of the address space", (ops) => {
    const { r, frames } = sva();
    const model = fill(0x8000, 9);
    writeVa(r, frames, BASE, BASE, model);
    for (const [i, op] of ops.entries()) {
      const at = CRA + BigInt(32 * i);
      if (op.op === "move") {
        enqueue(
          r,
          descriptor({
            opcode: DSA_OPCODE.MEMMOVE,
            flags: RECORD,
            completion: at,
            a1: BASE + BigInt(op.src),
            a2: BASE + BigInt(op.dst),
            size: op.len,
          }),
        );
        model.copyWithin(op.dst, op.src, op.src + op.len);
      } else {
        enqueue(
          r,
          descriptor({
            opcode: DSA_OPCODE.MEMFILL,
            flags: RECORD,
            completion: at,
            a1: op.pattern,
            a2: BASE + BigInt(op.dst),
            size: op.len,
          }),
        );
        for (let k = 0; k < op.len; k++) {
          model[op.dst + k] = Number((op.pattern >> BigInt(8 * (k % 8))) & 0xffn);
        }
      }
      r.dsa.run();
      expect(cr(r, frames, at).status).toBe(DSA_COMP.SUCCESS);
    }
    expect(readVa(r, frames, BASE, BASE, 0x8000)).toEqual(model);
  });
});

describe("submission", () => {
  it("a dedicated WQ without a PASID works on the device's DMA API domain", () => {
    const r = dsaMachine();
    const pt = pageTable(r);
    const frames = mapPages(r, pt, BASE, 16);
    dcPaging(r, r.id, pt);
    enableDevice(r);
    expect(setupWq(r, 1, { dedicated: true })).toBe(0);
    writeVa(r, frames, BASE, SRC, fill(100, 5));
    r.bridge.mmioWriteBlock(
      r.dsa.portalAddress(1),
      descriptor({
        opcode: DSA_OPCODE.MEMMOVE,
        flags: RECORD,
        completion: CRA,
        a1: SRC,
        a2: DST,
        size: 100,
      }),
    );
    r.dsa.run();
    expect(readVa(r, frames, BASE, DST, 100)).toEqual(fill(100, 5));
    expect(cr(r, frames).status).toBe(DSA_COMP.SUCCESS);
  });

  it("a dedicated WQ configured with a PASID uses it, whatever the descriptor says", () => {
    const r = dsaMachine();
    const pt = svaSpace(r, { pasid: 9 });
    const frames = mapPages(r, pt, BASE, 16);
    enableDevice(r);
    setupWq(r, 0, { dedicated: true, pasid: 9 });
    r.bridge.mmioWriteBlock(
      r.dsa.portalAddress(0),
      descriptor({
        opcode: DSA_OPCODE.MEMFILL,
        flags: RECORD,
        completion: CRA,
        a1: 0x11n,
        a2: DST,
        size: 1,
        pasid: 3,
      }),
    );
    r.dsa.run();
    expect(readVa(r, frames, BASE, DST, 1)).toEqual(Uint8Array.of(0x11));
    expect(cr(r, frames).status).toBe(DSA_COMP.SUCCESS);
  });

  it("ENQCMD gets Retry when the shared WQ is full, disabled, or dedicated", () => {
    const r = dsaMachine();
    enableDevice(r);
    setupWq(r, 0, { size: 1 });
    setupWq(r, 1, { size: 1, dedicated: true });
    const d = descriptor({ opcode: DSA_OPCODE.NOOP });
    expect(enqueue(r, d)).toBe(true);
    expect(enqueue(r, d)).toBe(false); // full until the device runs
    expect(enqueue(r, d, PASID, 1)).toBe(false); // dedicated
    expect(enqueue(r, d, PASID, 2)).toBe(false); // not enabled
    // A posted write to a shared WQ is dropped.
    r.bridge.mmioWriteBlock(r.dsa.portalAddress(0), d);
    r.dsa.run();
    expect(enqueue(r, d)).toBe(true);
    expect(r.dsa.wqs[0]!.toJSON()).toMatchObject({ submitted: 2, retries: 1, dropped: 1 });
    expect(r.dsa.wqs[1]!.toJSON()).toMatchObject({ retries: 1 });
  });

  it("a shared WQ's limited portal takes ENQCMD only below WQCFG.wq_thresh, the unlimited one up to its size", () => {
    const r = dsaMachine();
    enableDevice(r);
    w32(r, DSA_REG.WQCFG + 4, 2); // wq_thresh, written while the WQ is disabled
    setupWq(r, 0, { size: 4 });
    const d = descriptor({ opcode: DSA_OPCODE.NOOP });
    const limited = r.dsa.portalAddress(0) + BigInt(DSA_PORTAL_LIMITED);
    expect(r.bridge.mmioEnqueue(limited, d, PASID)).toBe(true);
    expect(r.bridge.mmioEnqueue(limited, d, PASID)).toBe(true);
    expect(r.bridge.mmioEnqueue(limited, d, PASID)).toBe(false); // Retry at the threshold
    expect(enqueue(r, d)).toBe(true); // the unlimited portal fills the WQ
    expect(enqueue(r, d)).toBe(true);
    expect(enqueue(r, d)).toBe(false);
    r.dsa.run();
    expect(r.bridge.mmioEnqueue(limited, d, PASID)).toBe(true);
    expect(r.dsa.wqs[0]!.toJSON()).toMatchObject({ submitted: 5, retries: 2 });
  });

  it("the descriptor runs with the submission's PASID: another PASID's space is not reachable", () => {
    const { r, frames } = sva();
    // PASID 6 has no process context: the record cannot be written (nothing is reported there).
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.MEMFILL,
        flags: RECORD,
        completion: CRA,
        a1: 1n,
        a2: DST,
        size: 8,
      }),
      6,
    );
    r.dsa.run();
    expect(readVa(r, frames, BASE, DST, 8)).toEqual(new Uint8Array(8));
    expect(r.dsa.swerr).toMatchObject({ valid: true, error: DSA_COMP.CRA_XLAT, pasid: 6 });
  });
});

describe("descriptor errors", () => {
  it("a transfer size above the WQ's max_xfer_shift is out of range, one at it is not", () => {
    const r = dsaMachine();
    const frames = mapPages(r, svaSpace(r), BASE, 16);
    expect(enableDevice(r)).toBe(0);
    w32(r, DSA_REG.WQCFG + 12, 12); // WQCFG dword 3: max_xfer_shift 12 (4 KiB)
    expect(setupWq(r, 0, { size: 8 })).toBe(0);
    for (const [i, size] of [4096, 4097].entries()) {
      enqueue(
        r,
        descriptor({
          opcode: DSA_OPCODE.MEMMOVE,
          flags: RECORD,
          completion: CRA + BigInt(32 * i),
          a1: SRC,
          a2: DST,
          size,
        }),
      );
    }
    r.dsa.run();
    expect([cr(r, frames).status, cr(r, frames, CRA + 32n).status]).toEqual([
      DSA_COMP.SUCCESS,
      DSA_COMP.XFER_ERANGE,
    ]);
  });

  it("are reported in the completion record", () => {
    const { r, frames } = sva();
    const cases: Array<[Parameters<typeof descriptor>[0], number, number]> = [
      [{ opcode: 0x30 }, DSA_COMP.BAD_OPCODE, 0],
      [{ opcode: DSA_OPCODE.MEMMOVE, size: 0 }, DSA_COMP.XFER_ERANGE, 0],
      [{ opcode: DSA_OPCODE.MEMMOVE, size: (1 << 21) + 1 }, DSA_COMP.XFER_ERANGE, 0],
      [
        { opcode: DSA_OPCODE.MEMMOVE, size: 8, flags: IDXD_OP_FLAG.BOF },
        DSA_COMP.INVALID_FLAGS,
        IDXD_OP_FLAG.BOF,
      ],
      [
        { opcode: DSA_OPCODE.MEMMOVE, size: 8, flags: 0x40_0000 },
        DSA_COMP.INVALID_FLAGS,
        0x40_0000,
      ],
      [{ opcode: DSA_OPCODE.BATCH, size: 1, a1: BASE }, DSA_COMP.DESC_CNT_ERANGE, 0],
      [{ opcode: DSA_OPCODE.BATCH, size: 2, a1: BASE + 8n }, DSA_COMP.DESCLIST_ALIGN, 0],
    ];
    for (const [i, [d, status, invalid]] of cases.entries()) {
      const at = CRA + BigInt(32 * i);
      enqueue(
        r,
        descriptor({
          ...d,
          a1: d.a1 ?? SRC,
          a2: DST,
          flags: (d.flags ?? 0) | RECORD,
          completion: at,
        }),
      );
      r.dsa.run();
      expect(cr(r, frames, at)).toMatchObject({ status, invalidFlags: invalid });
    }
  });

  it("without a completion record address, errors go to SWERR", () => {
    const { r } = sva();
    enqueue(r, descriptor({ opcode: 0x30 }));
    r.dsa.run();
    expect(r.dsa.swerr).toMatchObject({
      valid: true,
      error: DSA_COMP.BAD_OPCODE,
      wq: 0,
      operation: 0x30,
      pasid: PASID,
    });
    expect(r32(r, DSA_REG.INTCAUSE) & 1).toBe(1);
    // A second error before software acknowledges: Overflow.
    enqueue(r, descriptor({ opcode: 0x31 }));
    r.dsa.run();
    expect(r.dsa.swerr).toMatchObject({ overflow: true, operation: 0x30 });
    w32(r, DSA_REG.SWERR, 3);
    expect(r.dsa.swerr.valid).toBe(false);
  });

  it("a misaligned completion record address is an SWERR", () => {
    const { r } = sva();
    enqueue(r, descriptor({ opcode: DSA_OPCODE.NOOP, flags: RECORD, completion: CRA + 8n }));
    r.dsa.run();
    expect(r.dsa.swerr).toMatchObject({ valid: true, error: DSA_COMP.CRA_ALIGN });
  });

  it("Privileged submissions need the PASID capability's Privileged Mode Enable", () => {
    const { r, frames } = sva();
    r.dsa.fn.config.write(r.dsa.fn.caps.pasid + 6, 2, 1); // PASID enabled, Privileged Mode off
    r.bridge.mmioEnqueue(
      r.dsa.portalAddress(0),
      descriptor({ opcode: DSA_OPCODE.NOOP, flags: RECORD, completion: CRA }),
      PASID,
      true,
    );
    r.dsa.run();
    expect(r.dsa.swerr).toMatchObject({ valid: true, error: DSA_COMP.PRIV_BAD, pasid: PASID });
    expect(cr(r, frames).status).toBe(0);
  });
});

describe("commands", () => {
  it("answer with the idxd error codes", () => {
    const r = dsaMachine();
    expect(command(r, DSA_CMD.ENABLE_WQ, 0)).toBe(CMDSTS_ERR.DEV_NOTEN);
    expect(command(r, DSA_CMD.DISABLE_DEVICE)).toBe(CMDSTS_ERR.DIS_DEV_EN);
    expect(command(r, 0x1f)).toBe(CMDSTS_ERR.INVAL_CMD);
    const cmdReg = r.dsa.fn.config.read(PCI_COMMAND, 2);
    r.dsa.fn.config.write(PCI_COMMAND, 2, cmdReg & ~4);
    expect(enableDevice(r)).toBe(CMDSTS_ERR.BUSMASTER_EN);
    r.dsa.fn.config.write(PCI_COMMAND, 2, cmdReg);
    expect(enableDevice(r)).toBe(0);
    expect(enableDevice(r)).toBe(CMDSTS_ERR.DEV_ENABLED);
    expect(r32(r, DSA_REG.GENSTS)).toBe(1);
    expect(command(r, DSA_CMD.ENABLE_WQ, 9)).toBe(CMDSTS_ERR.INVAL_WQIDX);
    expect(command(r, DSA_CMD.ENABLE_WQ, 0)).toBe(CMDSTS_ERR.WQ_SIZE);
    expect(setupWq(r, 0, { size: 4 })).toBe(0);
    expect(command(r, DSA_CMD.ENABLE_WQ, 0)).toBe(CMDSTS_ERR.WQ_ENABLED);
    expect(command(r, DSA_CMD.ABORT_WQ, (1 << 16) | 1)).toBe(CMDSTS_ERR.INVAL_WQIDX); // WQ 16
  });

  it("a shared WQ needs PASID enabled; Block On Fault needs PRI", () => {
    const r = dsaMachine({ pri: false });
    r.dsa.fn.config.write(r.dsa.fn.caps.pasid + 6, 2, 0);
    enableDevice(r);
    expect(setupWq(r, 0)).toBe(CMDSTS_ERR.WQ_MODE);
    expect(setupWq(r, 1, { dedicated: true, pasid: 3 })).toBe(CMDSTS_ERR.PASID_EN);
    expect(setupWq(r, 2, { dedicated: true, bof: true })).toBe(CMDSTS_ERR.BOF_EN);
    expect(setupWq(r, 3, { dedicated: true })).toBe(0);
  });

  it("WQCFG is read-only while the WQ is enabled", () => {
    const r = dsaMachine();
    enableDevice(r);
    setupWq(r, 0, { size: 4 });
    w32(r, DSA_REG.WQCFG, 7);
    expect(r32(r, DSA_REG.WQCFG)).toBe(4);
    expect(r32(r, DSA_REG.WQCFG + 24) >>> 30).toBe(1); // wq_state: enabled
  });

  it("Disable WQ waits until the WQ has drained", () => {
    const { r, frames } = sva();
    enqueue(r, descriptor({ opcode: DSA_OPCODE.NOOP, flags: RECORD, completion: CRA }));
    w32(r, DSA_REG.CMD, (DSA_CMD.DISABLE_WQ << 20) | 1 | 0x8000_0000);
    expect(r32(r, DSA_REG.CMDSTS) >>> 31).toBe(1);
    expect(enqueue(r, descriptor({ opcode: DSA_OPCODE.NOOP }))).toBe(false);
    r.dsa.run();
    expect(r32(r, DSA_REG.CMDSTS)).toBe(0);
    expect(r32(r, DSA_REG.INTCAUSE) & 2).toBe(2);
    expect(cr(r, frames).status).toBe(DSA_COMP.SUCCESS);
    expect(r32(r, DSA_REG.WQCFG + 24) >>> 30).toBe(0);
  });

  it("Abort WQ discards queued descriptors without records", () => {
    const { r, frames } = sva();
    enqueue(r, descriptor({ opcode: DSA_OPCODE.NOOP, flags: RECORD, completion: CRA }));
    expect(command(r, DSA_CMD.ABORT_WQ, 1)).toBe(0);
    r.dsa.run();
    expect(cr(r, frames).status).toBe(0);
    expect(r.dsa.aborted).toBe(1);
  });
});

describe("views and traces", () => {
  it("traces each completed descriptor and has a JSON view", () => {
    const { r, frames } = sva();
    const rec = r.r.ctx.trace.record();
    enqueue(
      r,
      descriptor({
        opcode: DSA_OPCODE.MEMFILL,
        flags: RECORD,
        completion: CRA,
        a1: 1n,
        a2: DST,
        size: 16,
      }),
    );
    r.dsa.run();
    const events = rec.stop();
    expect(events.filter((e) => e.event === "device:descriptor").map((e) => e.fields)).toEqual([
      { wq: 0, opcode: "memfill", pasid: PASID, status: 1, bytes: 0, fault_addr: null },
    ]);
    expect(events.filter((e) => e.event === "device:dma").length).toBe(2); // data, record
    const v = r.dsa.toJSON() as { [k: string]: unknown };
    expect(v).toMatchObject({
      kind: "dsa",
      registers: { GENSTS: "enabled", SWERR: null },
      wqs: [{ index: 0, mode: "shared", enabled: true, occupancy: 0, submitted: 1 }, {}, {}, {}],
      counters: { completed: 1 },
    });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
    void frames;
  });
});
