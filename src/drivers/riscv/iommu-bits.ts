// The RISC-V IOMMU programming interface as the driver sees it (the counterpart of the kernel's
// drivers/iommu/riscv/iommu-bits.h): register offsets and fields, the command encodings of
// "IOMMU command opcodes", the device- and process-context fields, and decoders of the
// fault-queue and page-request-queue records. Written from the specification on purpose, not
// imported from the hardware model, so that a disagreement between the two shows up in tests.
//
// 64-bit values on the hot path (commands, records) are two 32-bit halves: `lo` = bits 31:0,
// `hi` = bits 63:32.

// ---------------------------------------------------------------- registers ("Register layout")

export const RISCV_IOMMU_REG = {
  CAPABILITIES: 0x0000,
  FCTL: 0x0008,
  DDTP: 0x0010,
  CQB: 0x0018,
  CQH: 0x0020,
  CQT: 0x0024,
  FQB: 0x0028,
  FQH: 0x0030,
  FQT: 0x0034,
  PQB: 0x0038,
  PQH: 0x0040,
  PQT: 0x0044,
  CQCSR: 0x0048,
  FQCSR: 0x004c,
  PQCSR: 0x0050,
  IPSR: 0x0054,
  ICVEC: 0x02f8,
  MSI_CFG_TBL: 0x0300,
} as const;

/** Offset of the head/tail register of a queue relative to its base register (same for all). */
export const Q_HEAD_OFFSET = RISCV_IOMMU_REG.CQH - RISCV_IOMMU_REG.CQB;
export const Q_TAIL_OFFSET = RISCV_IOMMU_REG.CQT - RISCV_IOMMU_REG.CQB;

/** `capabilities` fields, low half (bits 31:0) and high half (bits 63:32). */
export const CAP_LO = {
  VERSION_MASK: 0xff,
  SV39: 1 << 9,
  SV48: 1 << 10,
  SV57: 1 << 11,
  SVPBMT: 1 << 15,
  SV39X4: 1 << 17,
  SV48X4: 1 << 18,
  SV57X4: 1 << 19,
  MSI_FLAT: 1 << 22,
  AMO_HWAD: 1 << 24,
  ATS: 1 << 25,
  T2GPA: 1 << 26,
  END: 1 << 27,
  IGS_SHIFT: 28,
  DBG: 1 << 31,
} as const;

export const CAP_HI = {
  PAS_MASK: 0x3f,
  PD8: 1 << 6,
  PD17: 1 << 7,
  PD20: 1 << 8,
  QOSID: 1 << 9,
  NL: 1 << 10,
  S: 1 << 11,
} as const;

/** `capabilities.IGS` encodings. */
export const IGS = { MSI: 0, WSI: 1, BOTH: 2 } as const;

export const FCTL_BE = 1 << 0;
export const FCTL_WSI = 1 << 1;

/** `ddtp.iommu_mode` (bits 3:0) and `ddtp.busy` (bit 4); PPN in bits 53:10. */
export const DDTP_MODE = { OFF: 0, BARE: 1, LVL1: 2, LVL2: 3, LVL3: 4 } as const;
export const DDTP_MODE_MASK = 0xf;
export const DDTP_BUSY = 1 << 4;
export const DDTP_MODE_NAMES: readonly string[] = ["Off", "Bare", "1LVL", "2LVL", "3LVL"];

/** Queue base registers: LOG2SZ-1 in bits 4:0, PPN in bits 53:10. */
export const QUEUE_LOG2SZ_MASK = 0x1f;

/** Queue CSR bits, at the same positions in cqcsr, fqcsr and pqcsr. */
export const QCSR = {
  ENABLE: 1 << 0,
  INTR_ENABLE: 1 << 1,
  MEM_FAULT: 1 << 8,
  /** cqcsr.cmd_to, fqcsr.fqof, pqcsr.pqof */
  OVERFLOW_OR_TO: 1 << 9,
  CMD_ILL: 1 << 10,
  FENCE_W_IP: 1 << 11,
  ACTIVE: 1 << 16,
  BUSY: 1 << 17,
} as const;

/** Interrupt causes: their `ipsr` bit index and `icvec` field (4 bits each, same order). */
export const INTR = { CQ: 0, FQ: 1, PM: 2, PQ: 3 } as const;
export const INTR_COUNT = 4;
export const ICVEC_FIELD_MASK = 0xf;

/** `msi_cfg_tbl` entry `v`: msi_addr (8 bytes, bits 55:2), msi_data (4), msi_vec_ctl (4). */
export function msiCfgAddr(v: number): number {
  return RISCV_IOMMU_REG.MSI_CFG_TBL + 16 * v;
}
export function msiCfgData(v: number): number {
  return RISCV_IOMMU_REG.MSI_CFG_TBL + 16 * v + 8;
}
export function msiCfgCtrl(v: number): number {
  return RISCV_IOMMU_REG.MSI_CFG_TBL + 16 * v + 12;
}
export const MSI_CFG_TBL_ADDR_MASK = ((1n << 56n) - 1n) & ~3n;

// ---------------------------------------------------------------- PPN fields

const TWO22 = 0x40_0000;
const TWO20 = 0x10_0000;
const TWO32 = 0x1_0000_0000;

/** Low half of a doubleword whose bits 53:10 hold `ppn` (directory entries, ddtp, queue bases). */
export function ppn53Lo(ppn: number): number {
  return ((ppn % TWO22) << 10) >>> 0;
}
export function ppn53Hi(ppn: number): number {
  return Math.floor(ppn / TWO22) >>> 0;
}
/** The PPN in bits 53:10 of a doubleword given as halves. */
export function ppn53Of(lo: number, hi: number): number {
  return (lo >>> 10) + (hi & 0x3f_ffff) * TWO22;
}

/** A doubleword as a bigint (views and registers only, never the hot path). */
export function u64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

// ---------------------------------------------------------------- device and process contexts

/** `DC.tc` bits. */
export const DC_TC = {
  V: 1 << 0,
  EN_ATS: 1 << 1,
  EN_PRI: 1 << 2,
  T2GPA: 1 << 3,
  DTF: 1 << 4,
  PDTV: 1 << 5,
  PRPR: 1 << 6,
  GADE: 1 << 7,
  SADE: 1 << 8,
  DPE: 1 << 9,
  SBE: 1 << 10,
  SXL: 1 << 11,
} as const;

/** Doubleword offsets inside a device context. */
export const DC_OFF = { tc: 0, iohgatp: 8, ta: 16, fsc: 24 } as const;
export const DC_SIZE_BASE = 32;
export const DC_SIZE_EXTENDED = 64;

/** `iosatp.MODE` / `PC.fsc.MODE` (SXL = 0) and `pdtp.MODE`, in bits 63:60 of `fsc`. */
export const ATP_MODE = { BARE: 0, SV39: 8, SV48: 9, SV57: 10 } as const;
export const PDTP_MODE = { BARE: 0, PD8: 1, PD17: 2, PD20: 3 } as const;
export const PDTP_MODE_NAMES: readonly string[] = ["Bare", "PD8", "PD17", "PD20"];

/** High half of an `fsc` (iosatp, pdtp, PC.fsc): MODE in 63:60, PPN 43:0. */
export function fscHi(mode: number, ppn: number): number {
  return ((mode << 28) | (Math.floor(ppn / TWO32) & 0xfff)) >>> 0;
}
export function fscLo(ppn: number): number {
  return (ppn % TWO32) >>> 0;
}

/** `PC.ta` bits (low half): V, ENS, SUM, PSCID 31:12. `DC.ta` has PSCID at the same place. */
export const PC_TA = { V: 1 << 0, ENS: 1 << 1, SUM: 1 << 2 } as const;
export const PSCID_SHIFT = 12;
export const PSCID_MAX = TWO20 - 1;
export const PC_SIZE = 16;

// ---------------------------------------------------------------- commands

/** ATS.INVAL page field for "every page": S=1 with address bits 62:12 set (PCIe). */
export const ATS_ALL_PAGES = 2 ** 51 - 1;

export const CMD_OPCODE = { IOTINVAL: 1, IOFENCE: 2, IODIR: 3, ATS: 4 } as const;
export const CMD_SIZE = 16;

/** A command as four 32-bit words (dword0 lo/hi, dword1 lo/hi); reused by its owner. */
export class RiscvIommuCommand {
  lo0 = 0;
  hi0 = 0;
  lo1 = 0;
  hi1 = 0;

  /** `IOTINVAL.VMA` with GV=AV=PSCV=0: every first-stage entry (riscv_iommu_cmd_inval_vma). */
  invalVma(): this {
    return this.#start(CMD_OPCODE.IOTINVAL);
  }

  /** Adds PSCV=1 and PSCID. */
  setPscid(pscid: number): this {
    this.lo0 = (this.lo0 | ((pscid & PSCID_MAX) << PSCID_SHIFT)) >>> 0;
    this.hi0 |= 1; // PSCV
    return this;
  }

  /** Adds AV=1 and ADDR[63:12] = `page` (dword1 bits 61:10). */
  setAddr(page: number): this {
    this.lo0 |= 1 << 10;
    this.lo1 = ppn53Lo(page);
    this.hi1 = Math.floor(page / TWO22) & 0x3fff_ffff;
    return this;
  }

  /** `IOFENCE.C` with no operands (riscv_iommu_cmd_iofence). */
  iofence(): this {
    return this.#start(CMD_OPCODE.IOFENCE);
  }

  /** `IODIR.INVAL_DDT`, all device contexts until `setDid`. */
  iodirInvalDdt(): this {
    return this.#start(CMD_OPCODE.IODIR);
  }

  /** `IODIR.INVAL_PDT` of (DID, PID): DV must be 1. */
  iodirInvalPdt(did: number, pid: number): this {
    return this.#start((CMD_OPCODE.IODIR | (1 << 7) | ((pid & 0xf_ffff) << 12)) >>> 0).setDid(did);
  }

  /** Adds DV=1 and DID (bits 63:40). */
  setDid(did: number): this {
    this.hi0 = (this.hi0 | 2 | ((did & 0xff_ffff) << 8)) >>> 0;
    return this;
  }

  /**
   * `ATS.INVAL` to device_id `did` (segment in bits 23:16 → DSV/DSEG when non-zero) for `page`
   * with the PCIe size encoding when `s`; PASID-specific when `pasid >= 0`.
   */
  atsInval(did: number, pasid: number, global: boolean, s: boolean, page: number): this {
    this.#ats(0, did, pasid);
    this.lo1 = ((global ? 1 : 0) | (s ? 1 << 11 : 0) | ((page % TWO20) << 12)) >>> 0;
    this.hi1 = Math.floor(page / TWO20) >>> 0;
    return this;
  }

  /** `ATS.PRGR`: a Page Request Group Response with `code` for PRG index `prgi`. */
  atsPrgr(did: number, pasid: number, prgi: number, code: number): this {
    this.#ats(1, did, pasid);
    this.lo1 = 0;
    // Payload bits 40:32 PRG index, 47:44 response code (PCIe PRG Response message).
    this.hi1 = ((prgi & 0x1ff) | ((code & 0xf) << 12)) >>> 0;
    return this;
  }

  /** A fresh command whose dword0 low half is `lo0` (opcode, func3, operands); the rest zero. */
  #start(lo0: number): this {
    this.lo0 = lo0;
    this.hi0 = 0;
    this.lo1 = 0;
    this.hi1 = 0;
    return this;
  }

  #ats(func3: number, did: number, pasid: number): void {
    const seg = (did >>> 16) & 0xff;
    const rid = did & 0xffff;
    this.lo0 = (CMD_OPCODE.ATS | (func3 << 7) | (pasid >= 0 ? (pasid & 0xf_ffff) << 12 : 0)) >>> 0;
    this.hi0 = ((pasid >= 0 ? 1 : 0) | (seg !== 0 ? 2 : 0) | (rid << 8) | (seg << 24)) >>> 0;
  }

  /** `IOTINVAL.VMA …` etc., for logs. */
  toString(): string {
    return `${u64(this.lo0, this.hi0).toString(16).padStart(16, "0")}_${u64(this.lo1, this.hi1)
      .toString(16)
      .padStart(16, "0")}`;
  }
}

// ---------------------------------------------------------------- queue records

export const FQ_RECORD_SIZE = 32;
export const PQ_RECORD_SIZE = 16;

/** Fault record `TTYP` encodings. */
export const TTYP = {
  NONE: 0,
  UNTRANSLATED_EXEC: 1,
  UNTRANSLATED_READ: 2,
  UNTRANSLATED_WRITE: 3,
  TRANSLATED_EXEC: 5,
  TRANSLATED_READ: 6,
  TRANSLATED_WRITE: 7,
  ATS_TRANSLATION_REQUEST: 8,
  PCIE_MESSAGE: 9,
} as const;

/** True for the TTYPs of a read/write/execute transaction (iotval holds its IOVA). */
export function ttypIsTransaction(ttyp: number): boolean {
  return (ttyp >= 1 && ttyp <= 3) || (ttyp >= 5 && ttyp <= 8);
}

/** True for the write TTYPs (report_iommu_fault's IOMMU_FAULT_WRITE). */
export function ttypIsWrite(ttyp: number): boolean {
  return ttyp === TTYP.UNTRANSLATED_WRITE || ttyp === TTYP.TRANSLATED_WRITE;
}

/** The names of the fault causes of "Fault record CAUSE field encodings". */
export const FAULT_CAUSE_NAMES: Readonly<Record<number, string>> = {
  1: "instruction_access_fault",
  4: "read_address_misaligned",
  5: "read_access_fault",
  6: "write_address_misaligned",
  7: "write_access_fault",
  12: "instruction_page_fault",
  13: "read_page_fault",
  15: "write_page_fault",
  20: "instruction_guest_page_fault",
  21: "read_guest_page_fault",
  23: "write_guest_page_fault",
  256: "all_inbound_transactions_disallowed",
  257: "ddt_entry_load_access_fault",
  258: "ddt_entry_not_valid",
  259: "ddt_entry_misconfigured",
  260: "transaction_type_disallowed",
  261: "msi_pte_load_access_fault",
  262: "msi_pte_not_valid",
  263: "msi_pte_misconfigured",
  264: "mrif_access_fault",
  265: "pdt_entry_load_access_fault",
  266: "pdt_entry_not_valid",
  267: "pdt_entry_misconfigured",
  268: "ddt_data_corruption",
  269: "pdt_data_corruption",
  270: "msi_pt_data_corruption",
  271: "msi_mrif_data_corruption",
  272: "internal_data_path_error",
  273: "iommu_msi_write_access_fault",
  274: "pt_data_corruption",
};

/** A fault record decoded from the FQ ("Fault-queue record"). */
export interface FaultRecord {
  readonly cause: number;
  readonly pid: number;
  readonly pv: boolean;
  readonly priv: boolean;
  readonly ttyp: number;
  readonly did: number;
  readonly iotval: bigint;
  readonly iotval2: bigint;
}

/** Decodes the FQ record whose four doublewords are `w` (8 halves, lo first). */
export function decodeFaultRecord(w: ArrayLike<number>, at: number): FaultRecord {
  const lo0 = w[at]!;
  const hi0 = w[at + 1]!;
  return {
    cause: lo0 & 0xfff,
    pid: (lo0 >>> 12) & 0xf_ffff,
    pv: (hi0 & 1) !== 0,
    priv: (hi0 & 2) !== 0,
    ttyp: (hi0 >>> 2) & 0x3f,
    did: hi0 >>> 8,
    iotval: u64(w[at + 4]!, w[at + 5]!),
    iotval2: u64(w[at + 6]!, w[at + 7]!),
  };
}

/** A "Page Request" / "Stop Marker" record decoded from the PQ ("Page-request-queue record"). */
export interface PageRequestRecord {
  readonly pid: number;
  readonly pv: boolean;
  readonly priv: boolean;
  readonly exec: boolean;
  readonly did: number;
  readonly r: boolean;
  readonly w: boolean;
  readonly last: boolean;
  readonly prgi: number;
  /** Page address bits 63:12 as a page number. */
  readonly page: number;
}

export function decodePageRequest(w: ArrayLike<number>, at: number): PageRequestRecord {
  const lo0 = w[at]!;
  const hi0 = w[at + 1]!;
  const lo1 = w[at + 2]!;
  const hi1 = w[at + 3]!;
  return {
    pid: (lo0 >>> 12) & 0xf_ffff,
    pv: (hi0 & 1) !== 0,
    priv: (hi0 & 2) !== 0,
    exec: (hi0 & 4) !== 0,
    did: hi0 >>> 8,
    r: (lo1 & 1) !== 0,
    w: (lo1 & 2) !== 0,
    last: (lo1 & 4) !== 0,
    prgi: (lo1 >>> 3) & 0x1ff,
    page: (lo1 >>> 12) + hi1 * TWO20,
  };
}

/** PCIe PRG response codes (ATS.PRGR payload). */
export const PRG_RESPONSE = { SUCCESS: 0b0000, INVALID_REQUEST: 0b0001, FAILURE: 0b1111 } as const;
