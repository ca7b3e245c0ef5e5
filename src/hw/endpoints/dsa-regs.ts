// The DSA-like engine's programming interface: register offsets and fields, commands and their
// error codes, descriptor and completion-record layouts, opcodes, flags and completion status
// codes. Numbers follow Intel DSA as Linux knows it (include/uapi/linux/idxd.h,
// drivers/dma/idxd/registers.h); only what the model implements is listed.

import type { PciFunctionOptions } from "../pci/options.js";

/** BAR 0: registers. BAR 1: work-queue portals (the model's BARs are 32-bit, one slot each). */
export const DSA_MMIO_BAR = 0;
export const DSA_PORTAL_BAR = 1;
export const DSA_MMIO_BAR_SIZE = 0x1_0000;
/**
 * Each WQ owns four 4-KiB portal pages (idxd_get_wq_portal_offset: limited at +0x1000, IMS at
 * +0x2000). A limited portal of a shared WQ takes submissions only below WQCFG.wq_thresh; the
 * interrupt type only selects how a completion interrupt is sent (not modelled).
 */
export const DSA_PORTAL_STRIDE = 0x4000;
export const DSA_PORTAL_LIMITED = 0x1000;

export const DSA_REG = {
  VER: 0x00,
  GENCAP: 0x10,
  WQCAP: 0x20,
  GRPCAP: 0x30,
  ENGCAP: 0x38,
  OPCAP: 0x40,
  TABLE_OFFSET: 0x60,
  GENCFG: 0x80,
  GENCTRL: 0x88,
  GENSTS: 0x90,
  INTCAUSE: 0x98,
  CMD: 0xa0,
  CMDSTS: 0xa8,
  SWERR: 0xc0,
  /** WQCFG tables start here; 32 bytes per WQ (WQCAP.wqcfg_size = 0). */
  WQCFG: 0x400,
} as const;

export const DSA_VERSION = 0x100;
export const DSA_WQCFG_SIZE = 32;

/** GENCAP fields. */
export const GENCAP_BLOCK_ON_FAULT = 1 << 0;
export const GENCAP_OVERLAP_COPY = 1 << 1;
export const GENCAP_MAX_XFER_SHIFT = 16;
export const GENCAP_MAX_BATCH_SHIFT = 21;

/** WQCAP high-word bits (bit n of the register is bit n - 32 here). */
export const WQCAP_HI_SHARED = 1 << (48 - 32);
export const WQCAP_HI_DEDICATED = 1 << (49 - 32);
export const WQCAP_HI_ATS = 1 << (50 - 32);
export const WQCAP_HI_PRS = 1 << (55 - 32);

/** GENSTS.state */
export const DSA_STATE = { disabled: 0, enabled: 1, drain: 2, halt: 3 } as const;

/** INTCAUSE bits (RW1C). */
export const INTC_ERR = 0x01;
export const INTC_CMD = 0x02;

/** CMD register: operand 19:0, command 24:20, request interrupt 31. */
export const CMD_INT_REQ = 0x8000_0000;
export const DSA_CMD = {
  ENABLE_DEVICE: 1,
  DISABLE_DEVICE: 2,
  DRAIN_ALL: 3,
  ABORT_ALL: 4,
  RESET_DEVICE: 5,
  ENABLE_WQ: 6,
  DISABLE_WQ: 7,
  DRAIN_WQ: 8,
  ABORT_WQ: 9,
  RESET_WQ: 10,
  DRAIN_PASID: 11,
  ABORT_PASID: 12,
} as const;

/** CMDSTS: error 7:0, active 31. */
export const CMDSTS_ACTIVE = 0x8000_0000;
export const CMDSTS_ERR = {
  SUCCESS: 0,
  INVAL_CMD: 0x01,
  INVAL_WQIDX: 0x02,
  DEV_ENABLED: 0x10,
  BUSMASTER_EN: 0x12,
  WQ_SIZE_ERANGE: 0x14,
  DEV_NOTEN: 0x20,
  WQ_ENABLED: 0x21,
  WQ_SIZE: 0x22,
  WQ_MODE: 0x24,
  BOF_EN: 0x25,
  PASID_EN: 0x26,
  MAX_BATCH_SIZE: 0x27,
  MAX_XFER_SIZE: 0x28,
  DIS_DEV_EN: 0x31,
  DEV_NOT_EN: 0x32,
} as const;

/** WQCFG dword 2 fields. */
export const WQCFG_MODE_DEDICATED = 1 << 0;
export const WQCFG_BOF = 1 << 1;
export const WQCFG_ATS_DISABLE = 1 << 2;
export const WQCFG_PRS_DISABLE = 1 << 3;
export const WQCFG_PASID_SHIFT = 8;
export const WQCFG_PASID_EN = 1 << 28;
export const WQCFG_PRIV = 1 << 29;

/** SWERR qword 0 fields. */
export const SWERR_VALID = 1 << 0;
export const SWERR_OVERFLOW = 1 << 1;
export const SWERR_DESC_VALID = 1 << 2;
export const SWERR_WQ_IDX_VALID = 1 << 3;
export const SWERR_BATCH = 1 << 4;
export const SWERR_FAULT_RW = 1 << 5;
export const SWERR_PRIV = 1 << 6;

// ---- descriptors (64 bytes) ----

/** Byte offsets in a descriptor. */
export const DESC = {
  /** PASID 19:0, priv 31. */
  PASID: 0,
  /** flags 23:0, opcode 31:24. */
  FLAGS_OPCODE: 4,
  COMPLETION_ADDR: 8,
  /** src_addr / pattern / desc_list_addr */
  ADDR1: 16,
  /** dst_addr / src2_addr / comp_pattern */
  ADDR2: 24,
  /** xfer_size / desc_count */
  SIZE: 32,
  INT_HANDLE: 36,
  EXPECTED_RES: 40,
} as const;
export const DESC_SIZE = 64;

export const DSA_OPCODE = {
  NOOP: 0x00,
  BATCH: 0x01,
  DRAIN: 0x02,
  MEMMOVE: 0x03,
  MEMFILL: 0x04,
  COMPARE: 0x05,
  COMPVAL: 0x06,
} as const;

export const DSA_OPCODE_NAMES: Readonly<Record<number, string>> = {
  0: "noop",
  1: "batch",
  2: "drain",
  3: "memmove",
  4: "memfill",
  5: "compare",
  6: "compval",
};

export const IDXD_OP_FLAG = {
  FENCE: 0x0001,
  /** Block On Fault */
  BOF: 0x0002,
  /** Completion Record Address Valid */
  CRAV: 0x0004,
  /** Request Completion Record */
  RCR: 0x0008,
  /** Request Completion Interrupt */
  RCI: 0x0010,
  /** Check Result (compare) */
  CR: 0x0080,
  /** Cache Control: a hint, no effect here */
  CC: 0x0100,
} as const;

/** Flags the model accepts; any other set bit is an invalid flag. */
export const SUPPORTED_FLAGS =
  IDXD_OP_FLAG.FENCE |
  IDXD_OP_FLAG.BOF |
  IDXD_OP_FLAG.CRAV |
  IDXD_OP_FLAG.RCR |
  IDXD_OP_FLAG.RCI |
  IDXD_OP_FLAG.CR |
  IDXD_OP_FLAG.CC;

// ---- completion records (32 bytes, 32-byte aligned) ----

export const CR = {
  STATUS: 0,
  RESULT: 1,
  BYTES_COMPLETED: 4,
  FAULT_ADDR: 8,
  INVALID_FLAGS: 16,
} as const;
export const CR_SIZE = 32;

export const DSA_COMP = {
  NONE: 0x00,
  SUCCESS: 0x01,
  SUCCESS_PRED: 0x02,
  PAGE_FAULT_NOBOF: 0x03,
  PAGE_FAULT_IR: 0x04,
  BATCH_FAIL: 0x05,
  BATCH_PAGE_FAULT: 0x06,
  BAD_OPCODE: 0x10,
  INVALID_FLAGS: 0x11,
  XFER_ERANGE: 0x13,
  DESC_CNT_ERANGE: 0x14,
  DESCLIST_ALIGN: 0x18,
  CRA_XLAT: 0x1a,
  CRA_ALIGN: 0x1b,
  PRIV_BAD: 0x1d,
  HW_ERR1: 0x20,
  TRANSLATION_FAIL: 0x22,
} as const;

/** Status bit 7: the page fault was on a write. */
export const DSA_COMP_STATUS_WRITE = 0x80;

/** PCI identity and capabilities of a DSA-like function, for the hierarchy builder. */
export function dsaFunctionOptions(
  o: { name?: string; wqs?: number; pasidWidth?: number; ats?: boolean; pri?: boolean } = {},
): PciFunctionOptions {
  const wqs = o.wqs ?? 4;
  let portals = DSA_PORTAL_STRIDE * wqs;
  // BAR sizes are powers of two.
  portals = 2 ** Math.ceil(Math.log2(portals));
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    vendorId: 0x8086,
    deviceId: 0x0b25,
    classCode: 0x088000,
    bars: [DSA_MMIO_BAR_SIZE, portals],
    pasid: { width: o.pasidWidth ?? 20, exec: false, priv: true },
    ats: o.ats ?? true,
    pri: o.pri ?? true,
  };
}
