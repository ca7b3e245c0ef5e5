// Offsets and fields of the memory-mapped register file ("Register layout"). Fields are given as
// bit positions within the 32-bit half that holds them, because the model keeps every 64-bit
// register as two 32-bit halves.

export const REG = {
  capabilities: 0,
  fctl: 8,
  ddtp: 16,
  cqb: 24,
  cqh: 32,
  cqt: 36,
  fqb: 40,
  fqh: 48,
  fqt: 52,
  pqb: 56,
  pqh: 64,
  pqt: 68,
  cqcsr: 72,
  fqcsr: 76,
  pqcsr: 80,
  ipsr: 84,
  iocountovf: 88,
  iocountinh: 92,
  iohpmcycles: 96,
  iohpmctr: 104,
  iohpmevt: 352,
  tr_req_iova: 600,
  tr_req_ctl: 608,
  tr_response: 616,
  iommu_qosid: 624,
  icvec: 760,
  msi_cfg_tbl: 768,
} as const;

/** Size in bytes of the register page. */
export const REG_SPACE = 4096;

/** Registers that are 8 bytes wide (may be accessed as one 8-byte or two 4-byte accesses). */
export const REG64 = new Set<number>([
  REG.capabilities,
  REG.ddtp,
  REG.cqb,
  REG.fqb,
  REG.pqb,
  REG.iohpmcycles,
  REG.tr_req_iova,
  REG.tr_req_ctl,
  REG.tr_response,
  REG.icvec,
]);

export const FCTL = { BE: 1 << 0, WSI: 1 << 1, GXL: 1 << 2 } as const;

/** `ddtp.iommu_mode` encodings. */
export const DDTP_MODE = { Off: 0, Bare: 1, "1LVL": 2, "2LVL": 3, "3LVL": 4 } as const;
export type IommuMode = keyof typeof DDTP_MODE;
export const DDTP_MODE_NAMES: readonly string[] = ["Off", "Bare", "1LVL", "2LVL", "3LVL"];

/** Command, fault and page-request queue CSR bits (same positions in `cqcsr`/`fqcsr`/`pqcsr`). */
export const QCSR = {
  en: 1 << 0,
  ie: 1 << 1,
  mf: 1 << 8,
  /** `cmd_to` in `cqcsr`, `fqof`/`pqof` in the others. */
  bit9: 1 << 9,
  cmd_ill: 1 << 10,
  fence_w_ip: 1 << 11,
  on: 1 << 16,
  busy: 1 << 17,
} as const;

export const IPSR = { cip: 1 << 0, fip: 1 << 1, pmip: 1 << 2, pip: 1 << 3 } as const;

/** `tr_req_ctl` low-half bits. */
export const TR_REQ_CTL = { go: 1 << 0, priv: 1 << 1, exe: 1 << 2, nw: 1 << 3 } as const;

/**
 * A PPN field at bits 53:10 of a 64-bit register, held in halves: bits 31:10 of the low half
 * are PPN[21:0], bits 21:0 of the high half are PPN[43:22].
 */
export function ppnOfHalves(lo: number, hi: number): number {
  return (lo >>> 10) + (hi & 0x3f_ffff) * 0x40_0000;
}

/** The halves' PPN bits for `ppn` (other bits zero). */
export function halvesOfPpn(ppn: number): { lo: number; hi: number } {
  return { lo: ((ppn % 0x40_0000) << 10) >>> 0, hi: Math.floor(ppn / 0x40_0000) & 0x3f_ffff };
}
