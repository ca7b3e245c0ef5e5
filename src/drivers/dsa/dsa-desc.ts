// `struct dsa_hw_desc` and `struct dsa_completion_record` (include/uapi/linux/idxd.h) as bytes:
// what the kernel's dmaengine path and a user-space library (libaccel-config's users) write to
// a portal, and how both read a 32-byte completion record back.

import { SimError } from "../../base/errors.js";
import { CR, CR_SIZE, DESC, DESC_SIZE, DSA_COMP } from "../../hw/endpoints/dsa-regs.js";

export interface DsaHwDesc {
  readonly opcode: number;
  /** `IDXD_OP_FLAG_*`. */
  readonly flags?: number;
  /** PASID field (bits 19:0): ENQCMD replaces it with the submitter's PASID. */
  readonly pasid?: number;
  /** Privileged (bit 31 of the PASID dword): ENQCMDS only. */
  readonly priv?: boolean;
  readonly completionAddr?: bigint;
  /** src_addr / pattern / desc_list_addr. */
  readonly src?: bigint;
  /** dst_addr / src2_addr / comp_pattern. */
  readonly dst?: bigint;
  /** xfer_size / desc_count. */
  readonly size?: number;
  readonly expectedRes?: number;
}

function put64(b: Uint8Array, at: number, v: bigint): void {
  if (v < 0n || v >= 1n << 64n)
    throw new SimError(`descriptor field 0x${v.toString(16)} is not a u64`);
  for (let i = 0; i < 8; i++) b[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

function put32(b: Uint8Array, at: number, v: number): void {
  for (let i = 0; i < 4; i++) b[at + i] = (v >>> (8 * i)) & 0xff;
}

/** The 64 bytes of a descriptor. */
export function dsaHwDesc(d: DsaHwDesc): Uint8Array {
  const b = new Uint8Array(DESC_SIZE);
  const pasid = d.pasid ?? 0;
  if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 1 << 20) {
    throw new SimError(`descriptor PASID ${pasid} is not a 20-bit value`);
  }
  put32(b, DESC.PASID, (pasid | (d.priv ? 0x8000_0000 : 0)) >>> 0);
  put32(b, DESC.FLAGS_OPCODE, ((d.opcode << 24) | ((d.flags ?? 0) & 0xff_ffff)) >>> 0);
  put64(b, DESC.COMPLETION_ADDR, d.completionAddr ?? 0n);
  put64(b, DESC.ADDR1, d.src ?? 0n);
  put64(b, DESC.ADDR2, d.dst ?? 0n);
  put32(b, DESC.SIZE, d.size ?? 0);
  b[DESC.EXPECTED_RES] = d.expectedRes ?? 0;
  return b;
}

/** A completion record as software reads it. */
export interface DsaCompletionRecord {
  /** Status byte: 0 while the descriptor has not completed. */
  readonly status: number;
  readonly result: number;
  readonly bytesCompleted: number;
  readonly faultAddr: bigint;
  readonly invalidFlags: number;
}

/** Decodes the 32 bytes of a completion record. */
export function decodeCompletionRecord(b: Uint8Array): DsaCompletionRecord {
  if (b.length !== CR_SIZE) throw new SimError(`a completion record has ${CR_SIZE} bytes`);
  const u32 = (at: number) =>
    (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  return {
    status: b[CR.STATUS]!,
    result: b[CR.RESULT]!,
    bytesCompleted: u32(CR.BYTES_COMPLETED),
    faultAddr: (BigInt(u32(CR.FAULT_ADDR + 4)) << 32n) | BigInt(u32(CR.FAULT_ADDR)),
    invalidFlags: u32(CR.INVALID_FLAGS),
  };
}

/** `DSA_COMP_STATUS(status)`: the status code without the fault's R/W bit. */
export function dsaCompStatus(status: number): number {
  return status & 0x7f;
}

/** The status names the views print (DSA_COMP_*). */
export function dsaCompName(status: number): string {
  const code = dsaCompStatus(status);
  for (const [name, value] of Object.entries(DSA_COMP)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}
