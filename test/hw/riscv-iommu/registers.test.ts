import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import { cmd, enableQueues, MODE, R, rig, submit } from "./fixture.js";

describe("capabilities", () => {
  it("encodes every field at its spec position", () => {
    const r = rig({
      version: 0x10,
      Sv39: true,
      Sv48: true,
      Sv57: false,
      Svpbmt: true,
      Sv39x4: true,
      Sv48x4: false,
      Sv57x4: false,
      MSI_FLAT: true,
      AMO_HWAD: true,
      ATS: true,
      T2GPA: false,
      END: true,
      IGS: "WSI",
      DBG: true,
      PAS: 48,
      PD8: true,
      PD17: false,
      PD20: true,
      QOSID: true,
      NL: true,
      S: true,
    });
    const c = r.iommu.read64(R.capabilities);
    const bit = (n: number) => Number((c >> BigInt(n)) & 1n);
    expect(Number(c & 0xffn)).toBe(0x10);
    expect([bit(8), bit(9), bit(10), bit(11)]).toEqual([0, 1, 1, 0]); // Sv32 Sv39 Sv48 Sv57
    expect([bit(14), bit(15)]).toEqual([0, 1]); // Svrsw60t59b Svpbmt
    expect([bit(16), bit(17), bit(18), bit(19)]).toEqual([0, 1, 0, 0]);
    expect([bit(21), bit(22), bit(23), bit(24)]).toEqual([0, 1, 0, 1]); // AMO_MRIF MSI_FLAT MSI_MRIF AMO_HWAD
    expect([bit(25), bit(26), bit(27)]).toEqual([1, 0, 1]); // ATS T2GPA END
    expect(Number((c >> 28n) & 3n)).toBe(1); // IGS = WSI
    expect([bit(30), bit(31)]).toEqual([0, 1]); // HPM DBG
    expect(Number((c >> 32n) & 0x3fn)).toBe(48);
    expect([bit(38), bit(39), bit(40), bit(41), bit(42), bit(43)]).toEqual([1, 0, 1, 1, 1, 1]);
    expect(c >> 44n).toBe(0n);
    // The halves read separately give the same value, and the register is read-only.
    expect(BigInt(r.iommu.read32(0)) | (BigInt(r.iommu.read32(4)) << 32n)).toBe(c);
    r.iommu.write64(R.capabilities, 0n);
    expect(r.iommu.read64(R.capabilities)).toBe(c);
  });

  it("refuses inconsistent or unmodelled capability sets", () => {
    expect(() => rig({ Sv48: true, Sv39: false })).toThrow(/Sv48 requires Sv39/);
    expect(() => rig({ PAS: 60 })).toThrow(/PAS/);
    expect(() => rig({ HPM: true } as never)).toThrow(/unmodelled/);
    expect(() => rig({ T2GPA: true, ATS: false })).toThrow(/T2GPA requires ATS/);
  });
});

describe("reset values", () => {
  it("starts Off with queues, ipsr and debug idle", () => {
    const r = rig();
    const io = r.iommu;
    expect(io.read64(R.ddtp) & 0x1fn).toBe(MODE.Off); // mode Off, busy 0
    for (const csr of [R.cqcsr, R.fqcsr, R.pqcsr]) expect(io.read32(csr)).toBe(0);
    expect(io.read32(R.ipsr)).toBe(0);
    expect(io.read64(R.tr_req_ctl) & 1n).toBe(0n);
    expect(io.ioatc.iotlbEntries()).toEqual([]);
    expect(io.ioatc.deviceContexts()).toEqual([]);
  });
});

describe("fctl", () => {
  it("BE is writable only with END, WSI only with IGS=BOTH, GXL never", () => {
    const both = rig({ END: true, IGS: "BOTH" }).iommu;
    both.write32(R.fctl, 0b111);
    expect(both.read32(R.fctl)).toBe(0b011);
    const fixed = rig({ END: false, IGS: "MSI" }).iommu;
    fixed.write32(R.fctl, 0b111);
    expect(fixed.read32(R.fctl)).toBe(0);
    const wsiOnly = rig({ IGS: "WSI" }).iommu;
    expect(wsiOnly.read32(R.fctl)).toBe(0b010);
    wsiOnly.write32(R.fctl, 0);
    expect(wsiOnly.read32(R.fctl)).toBe(0b010);
  });

  it("ignores writes while the IOMMU is not Off or a queue is on", () => {
    const r = rig({ IGS: "BOTH" });
    r.iommu.write64(R.ddtp, MODE.Bare);
    r.iommu.write32(R.fctl, 2);
    expect(r.iommu.read32(R.fctl)).toBe(0);
    r.iommu.write64(R.ddtp, MODE.Off);
    enableQueues(r);
    r.iommu.write32(R.fctl, 2);
    expect(r.iommu.read32(R.fctl)).toBe(0);
  });
});

describe("ddtp", () => {
  it("keeps legal modes, the PPN within PAS, and reads busy as 0", () => {
    const io = rig({ PAS: 40 }).iommu;
    io.write64(R.ddtp, (0xfff_ffff_ffffn << 10n) | MODE.LVL3);
    const v = io.read64(R.ddtp);
    expect(v & 0xfn).toBe(MODE.LVL3);
    expect((v >> 4n) & 1n).toBe(0n);
    expect(v >> 10n).toBe((1n << 28n) - 1n); // PPN limited to PAS-12 = 28 bits
    expect(v & 0x3e0n).toBe(0n); // reserved 9:5
  });

  it("treats reserved and custom modes as WARL (old value kept)", () => {
    const io = rig().iommu;
    io.write64(R.ddtp, MODE.Bare);
    for (const m of [5n, 13n, 14n, 15n]) {
      io.write64(R.ddtp, m);
      expect(io.read64(R.ddtp) & 0xfn).toBe(MODE.Bare);
    }
  });

  it("does not change DDT depth without going through Off or Bare", () => {
    const io = rig().iommu;
    io.write64(R.ddtp, (0x80000n << 10n) | MODE.LVL1);
    io.write64(R.ddtp, (0x80000n << 10n) | MODE.LVL3);
    expect(io.read64(R.ddtp) & 0xfn).toBe(MODE.LVL1);
    io.write64(R.ddtp, (0x80000n << 10n) | MODE.Off);
    io.write64(R.ddtp, (0x80000n << 10n) | MODE.LVL3);
    expect(io.read64(R.ddtp) & 0xfn).toBe(MODE.LVL3);
  });

  it("accepts two 4-byte writes, high half first", () => {
    const io = rig().iommu;
    const v = (0x1234_5678n << 10n) | MODE.LVL2;
    io.write32(R.ddtp + 4, Number(v >> 32n));
    io.write32(R.ddtp, Number(v & 0xffff_ffffn));
    expect(io.read64(R.ddtp)).toBe(v);
  });
});

describe("queue registers", () => {
  it("cqb/fqb/pqb keep LOG2SZ-1 and PPN, and head/tail only LOG2SZ bits", () => {
    const io = rig().iommu;
    io.write64(R.cqb, 0xffff_ffff_ffff_ffffn);
    expect(io.read64(R.cqb)).toBe((((1n << 44n) - 1n) << 10n) | 0x1fn);
    io.write64(R.cqb, (0x80010n << 10n) | 2n); // 8 entries
    io.write32(R.cqt, 0xffff_ffff);
    expect(io.read32(R.cqt)).toBe(7);
    io.write64(R.fqb, (0x80020n << 10n) | 3n); // 16 entries
    io.write32(R.fqh, 0xffff_ffff);
    expect(io.read32(R.fqh)).toBe(15);
    io.write32(R.fqt, 5); // read-only
    expect(io.read32(R.fqt)).toBe(0);
    io.write64(R.pqb, (0x80030n << 10n) | 0n); // 2 entries
    io.write32(R.pqh, 3);
    expect(io.read32(R.pqh)).toBe(1);
    io.write32(R.cqh, 3); // read-only
    expect(io.read32(R.cqh)).toBe(0);
  });

  it("a queue reads its entries at the PPN of both halves, each written on its own", () => {
    const r = rig();
    const io = r.iommu;
    const q = enableQueues(r, { cq: 3 });
    io.write32(R.cqcsr, 0);
    // PPN[43:22] = 1 puts the queue at 16 GiB + the old address: no RAM, so cqmf.
    io.write32(R.cqb + 4, 1);
    io.write32(R.cqcsr, 1);
    submit(r, q, cmd.fence());
    expect([io.read32(R.cqh), io.read32(R.cqcsr) & 0x100]).toEqual([0, 0x100]);
    // Back to the RAM page with a high-half write alone: the waiting command runs on enable.
    io.write32(R.cqcsr, 0);
    io.write32(R.cqb + 4, 0);
    io.write32(R.cqcsr, 1);
    expect([io.read32(R.cqh), io.read32(R.cqcsr) & 0x100]).toEqual([1, 0]);
    // LOG2SZ from a low-half write alone: 4 entries, so cqt keeps two bits.
    io.write32(R.cqcsr, 0);
    io.write32(R.cqb, Number(((q.cq >> 12n) << 10n) & 0xffff_fc00n) | 1);
    io.write32(R.cqt, 7);
    expect(io.read32(R.cqt)).toBe(3);
  });

  it("enabling a queue resets its index and error bits, sets on; disabling clears on", () => {
    const r = rig();
    const io = r.iommu;
    enableQueues(r);
    expect(io.read32(R.cqcsr)).toBe((1 << 16) | 1);
    expect(io.read32(R.fqcsr)).toBe((1 << 16) | 1);
    expect(io.read32(R.pqcsr)).toBe((1 << 16) | 1);
    io.write32(R.cqcsr, 0);
    expect(io.read32(R.cqcsr)).toBe(0);
  });

  it("ignores a base write while the queue is on", () => {
    const r = rig();
    enableQueues(r);
    const before = r.iommu.read64(R.fqb);
    r.iommu.write64(R.fqb, (0x80099n << 10n) | 4n);
    expect(r.iommu.read64(R.fqb)).toBe(before);
  });

  it("has no page-request queue registers without ATS", () => {
    const io = rig({ ATS: false, T2GPA: false }).iommu;
    io.write64(R.pqb, 0x1234n << 10n);
    io.write32(R.pqcsr, 3);
    io.write32(R.pqh, 1);
    expect([io.read64(R.pqb), io.read32(R.pqcsr), io.read32(R.pqh), io.read32(R.pqt)]).toEqual([
      0n,
      0,
      0,
      0,
    ]);
  });
});

describe("optional registers", () => {
  it("read zero and ignore writes when absent: debug without DBG, qosid without QOSID, HPM", () => {
    const io = rig({ DBG: false, QOSID: false }).iommu;
    io.write64(R.tr_req_iova, 0x1000n);
    io.write64(R.tr_req_ctl, 1n);
    io.write32(R.iommu_qosid, 0xfff_0fff);
    io.write32(88, 1); // iocountovf
    io.write64(96, 5n); // iohpmcycles
    io.write64(104, 5n); // iohpmctr1
    expect(io.read64(R.tr_req_iova)).toBe(0n);
    expect(io.read64(R.tr_response)).toBe(0n);
    expect(io.read32(R.iommu_qosid)).toBe(0);
    expect(io.read32(88)).toBe(0);
    expect(io.read64(96)).toBe(0n);
    expect(io.read64(104)).toBe(0n);
    expect(io.read32(2000)).toBe(0); // reserved space
  });

  it("iommu_qosid keeps RCID/MCID within their widths", () => {
    const io = rig({ QOSID: true }, { rcidBits: 4, mcidBits: 6 }).iommu;
    io.write32(R.iommu_qosid, 0xffff_ffff);
    expect(io.read32(R.iommu_qosid)).toBe(0xf | (0x3f << 16));
  });

  it("msi_cfg_tbl exists only with MSI and keeps the legal bits", () => {
    const msi = rig({ IGS: "MSI" }, { vectors: 4 }).iommu;
    msi.write64(R.msi_cfg_tbl + 16, 0xffff_ffff_ffff_ffffn);
    expect(msi.read64(R.msi_cfg_tbl + 16)).toBe(0x00ff_ffff_ffff_fffcn);
    msi.write32(R.msi_cfg_tbl + 24, 0xdead_beef);
    msi.write32(R.msi_cfg_tbl + 28, 0xffff_ffff);
    expect(msi.read32(R.msi_cfg_tbl + 24)).toBe(0xdead_beef);
    expect(msi.read32(R.msi_cfg_tbl + 28)).toBe(1);
    msi.write64(R.msi_cfg_tbl + 16 * 5, 0x1000n); // vector 5 does not exist with 4 vectors
    expect(msi.read64(R.msi_cfg_tbl + 16 * 5)).toBe(0n);
    const wsi = rig({ IGS: "WSI" }).iommu;
    wsi.write64(R.msi_cfg_tbl, 0x1000n);
    expect(wsi.read64(R.msi_cfg_tbl)).toBe(0n);
  });

  it("icvec fields keep log2(vectors) bits", () => {
    const io = rig({}, { vectors: 4 }).iommu;
    io.write64(R.icvec, 0xffff_ffff_ffff_ffffn);
    expect(io.read64(R.icvec)).toBe(0x3333n);
  });
});

describe("access checks", () => {
  it("refuses misaligned, out-of-page and 8-byte accesses to 4-byte registers", () => {
    const io = rig().iommu;
    expect(() => io.read32(2)).toThrow(SimError);
    expect(() => io.read64(R.cqh)).toThrow(/spans/);
    expect(() => io.write64(R.cqcsr, 0n)).toThrow(/spans/);
    expect(() => io.read32(4096)).toThrow(/outside/);
    expect(() => io.write32(R.fctl, 2 ** 33)).toThrow(/32-bit/);
    expect(io.read64(R.msi_cfg_tbl)).toBe(0n); // msi_addr is an 8-byte register
  });
});
