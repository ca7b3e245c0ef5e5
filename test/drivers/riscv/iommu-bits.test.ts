import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  ATS_ALL_PAGES,
  decodeFaultRecord,
  decodePageRequest,
  fscHi,
  fscLo,
  ppn53Hi,
  ppn53Lo,
  ppn53Of,
  RiscvIommuCommand,
  u64,
} from "../../../src/drivers/riscv/iommu-bits.js";

const dw0 = (c: RiscvIommuCommand) => u64(c.lo0, c.hi0);
const dw1 = (c: RiscvIommuCommand) => u64(c.lo1, c.hi1);
const halves = (x: bigint) => [Number(x & 0xffff_ffffn), Number(x >> 32n)];

describe('command encodings ("IOMMU command opcodes")', () => {
  test.prop([fc.integer({ min: 0, max: 0xf_ffff }), fc.integer({ min: 0, max: 2 ** 52 - 1 })])(
    "IOTINVAL.VMA: opcode 1, AV bit 10, PSCID 31:12, PSCV bit 32, ADDR[63:12] at dword1 bits 61:10",
    (pscid, page) => {
      const c = new RiscvIommuCommand().invalVma().setPscid(pscid).setAddr(page);
      expect(dw0(c)).toBe(1n | (1n << 10n) | (BigInt(pscid) << 12n) | (1n << 32n));
      expect(dw1(c)).toBe(BigInt(page) << 10n);
      const all = new RiscvIommuCommand().invalVma();
      expect([dw0(all), dw1(all)]).toEqual([1n, 0n]);
    },
  );

  test.prop([fc.integer({ min: 0, max: 0xff_ffff }), fc.integer({ min: 0, max: 0xf_ffff })])(
    "IODIR: INVAL_DDT with DV bit 33 and DID 63:40; INVAL_PDT func3 1 with PID 31:12",
    (did, pid) => {
      const ddt = new RiscvIommuCommand().iodirInvalDdt().setDid(did);
      expect(dw0(ddt)).toBe(3n | (1n << 33n) | (BigInt(did) << 40n));
      const pdt = new RiscvIommuCommand().iodirInvalPdt(did, pid);
      expect(dw0(pdt)).toBe(
        3n | (1n << 7n) | (BigInt(pid) << 12n) | (1n << 33n) | (BigInt(did) << 40n),
      );
      expect(dw1(pdt)).toBe(0n);
    },
  );

  test.prop([
    fc.integer({ min: 0, max: 0xff_ffff }),
    fc.option(fc.integer({ min: 0, max: 0xf_ffff }), { nil: -1 }),
    fc.boolean(),
    fc.boolean(),
    fc.integer({ min: 0, max: 2 ** 52 - 1 }),
  ])(
    "ATS.INVAL: PID/PV, RID 55:40 with DSV/DSEG for a non-zero segment, payload G/S/address",
    (did, pasid, g, s, page) => {
      const c = new RiscvIommuCommand().atsInval(did, pasid, g, s, page);
      const seg = BigInt(did >>> 16);
      const pv = pasid >= 0;
      expect(dw0(c)).toBe(
        4n |
          (pv ? (BigInt(pasid) << 12n) | (1n << 32n) : 0n) |
          (seg !== 0n ? 1n << 33n : 0n) |
          (BigInt(did & 0xffff) << 40n) |
          (seg << 56n),
      );
      expect(dw1(c)).toBe((g ? 1n : 0n) | (s ? 1n << 11n : 0n) | (BigInt(page) << 12n));
    },
  );

  it("ATS.PRGR: func3 1, PRG index at payload bits 40:32, response code 47:44", () => {
    const c = new RiscvIommuCommand().atsPrgr(0x0100, 3, 0x1ab, 0xf);
    expect(dw0(c)).toBe(4n | (1n << 7n) | (3n << 12n) | (1n << 32n) | (0x100n << 40n));
    expect(dw1(c)).toBe((0x1abn << 32n) | (0xfn << 44n));
    expect(ATS_ALL_PAGES).toBe(2 ** 51 - 1);
  });

  it("IOFENCE.C with no operands", () => {
    const c = new RiscvIommuCommand().iofence();
    expect([dw0(c), dw1(c)]).toEqual([2n, 0n]);
  });
});

describe("fields", () => {
  test.prop([fc.integer({ min: 0, max: 2 ** 44 - 1 })])("PPN at bits 53:10 round-trips", (ppn) => {
    expect(ppn53Of(ppn53Lo(ppn), ppn53Hi(ppn))).toBe(ppn);
    expect(u64(ppn53Lo(ppn), ppn53Hi(ppn))).toBe(BigInt(ppn) << 10n);
  });

  test.prop([fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 2 ** 44 - 1 })])(
    "fsc: MODE 63:60 and PPN 43:0",
    (mode, ppn) => {
      expect(u64(fscLo(ppn), fscHi(mode, ppn))).toBe((BigInt(mode) << 60n) | BigInt(ppn));
    },
  );
});

describe("queue records", () => {
  test.prop([
    fc.record({
      cause: fc.integer({ min: 0, max: 0xfff }),
      pid: fc.integer({ min: 0, max: 0xf_ffff }),
      pv: fc.boolean(),
      priv: fc.boolean(),
      ttyp: fc.integer({ min: 0, max: 0x3f }),
      did: fc.integer({ min: 0, max: 0xff_ffff }),
      iotval: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      iotval2: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
  ])('a fault record decodes to the fields it was built from ("Fault-queue record")', (r) => {
    const hdr =
      BigInt(r.cause) |
      (BigInt(r.pid) << 12n) |
      (r.pv ? 1n << 32n : 0n) |
      (r.priv ? 1n << 33n : 0n) |
      (BigInt(r.ttyp) << 34n) |
      (BigInt(r.did) << 40n);
    const words = [hdr, 0n, r.iotval, r.iotval2].flatMap(halves);
    expect(decodeFaultRecord([9, 9, ...words], 2)).toEqual(r);
  });

  test.prop([
    fc.record({
      pid: fc.integer({ min: 0, max: 0xf_ffff }),
      pv: fc.boolean(),
      priv: fc.boolean(),
      exec: fc.boolean(),
      did: fc.integer({ min: 0, max: 0xff_ffff }),
      r: fc.boolean(),
      w: fc.boolean(),
      last: fc.boolean(),
      prgi: fc.integer({ min: 0, max: 0x1ff }),
      page: fc.integer({ min: 0, max: 2 ** 52 - 1 }),
    }),
  ])('a page-request record decodes to its message fields ("Page-request-queue record")', (r) => {
    const hdr =
      (BigInt(r.pid) << 12n) |
      (r.pv ? 1n << 32n : 0n) |
      (r.priv ? 1n << 33n : 0n) |
      (r.exec ? 1n << 34n : 0n) |
      (BigInt(r.did) << 40n);
    const payload =
      (r.r ? 1n : 0n) |
      (r.w ? 2n : 0n) |
      (r.last ? 4n : 0n) |
      (BigInt(r.prgi) << 3n) |
      (BigInt(r.page) << 12n);
    expect(decodePageRequest([hdr, payload].flatMap(halves), 0)).toEqual(r);
  });
});
