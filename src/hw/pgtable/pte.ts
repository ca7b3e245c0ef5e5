// RV64 page-table entries (Sv39/Sv48/Sv57 and their x4 G-stage variants share one format).
//
//   63  N (Svnapot)         61-62 PBMT (Svpbmt)     54-60 reserved
//   10-53 PPN (44 bits)     8-9 RSW                 7 D  6 A  5 G  4 U  3 X  2 W  1 R  0 V
//
// Two forms: a bigint form for the public API (`encodePte` / `decodePte`) and a hot-path form on
// the two little-endian 32-bit halves as they sit in memory (`lo` = bits 31:0, `hi` = 63:32).
// `classifyPte` decides validity exactly as step 3/4 of the privileged spec's "Virtual Address
// Translation Process" does, including the Svnapot, Svpbmt and Zicfiss encodings.

import { SimError } from "../../base/errors.js";

// ---- bits of the low half ----
export const PTE_V = 0x01;
export const PTE_R = 0x02;
export const PTE_W = 0x04;
export const PTE_X = 0x08;
export const PTE_U = 0x10;
export const PTE_G = 0x20;
export const PTE_A = 0x40;
export const PTE_D = 0x80;
export const PTE_RSW_SHIFT = 8;
/** Bits 9:8, RSW: "reserved for use by supervisor software", ignored by the hardware. */
export const PTE_RSW_MASK = 0x300;
/** Bits 9:0 (V, R W X U G A D, RSW): the `flags` of the PageTable's 4 KiB entry API. */
export const PTE_FLAGS_MASK = 0x3ff;
export const PTE_PPN_SHIFT = 10;
/** The permission bits a leaf carries (R W X U G A D), i.e. bits 7:1. */
export const PTE_PERM_MASK = 0xfe;

// ---- bits of the high half (PTE bit n is bit n-32 here) ----
/** PPN bits 43:22 live in PTE bits 53:32. */
export const PTE_HI_PPN_MASK = 0x003f_ffff;
/** PTE bits 60:54, reserved for future standard use. */
export const PTE_HI_RESERVED_MASK = 0x1fc0_0000;
export const PTE_HI_PBMT_SHIFT = 29;
export const PTE_HI_PBMT_MASK = 0x6000_0000;
/** PTE bit 63, Svnapot's N. */
export const PTE_HI_N = 0x8000_0000;

// ---- Svpbmt memory types ----
export const PBMT_PMA = 0;
export const PBMT_NC = 1;
export const PBMT_IO = 2;

/** Low four PPN bits of a 64 KiB NAPOT PTE (Svnapot: ppn[0] = x xxxx 1000, napot_bits = 4). */
export const NAPOT_64K_PPN_BITS = 0b1000;

const TWO22 = 0x40_0000;
const PPN_LIMIT = 2 ** 44;

// ---- hot-path helpers on halves ----

/** The 44-bit PPN of a PTE given as halves. */
export function ptePpn(lo: number, hi: number): number {
  return (lo >>> PTE_PPN_SHIFT) + (hi & PTE_HI_PPN_MASK) * TWO22;
}

/** Low half of a PTE with this PPN and bits 9:0 (`flags`, V included by the caller). */
export function pteLo(ppn: number, flags: number): number {
  return (((ppn % TWO22) << PTE_PPN_SHIFT) | (flags & 0x3ff)) >>> 0;
}

/** High half of a PTE with this PPN, PBMT and N. */
export function pteHi(ppn: number, pbmt: number, n: boolean): number {
  return (Math.floor(ppn / TWO22) | ((pbmt & 3) << PTE_HI_PBMT_SHIFT) | (n ? PTE_HI_N : 0)) >>> 0;
}

/** PBMT field of a high half. */
export function ptePbmt(hi: number): number {
  return (hi & PTE_HI_PBMT_MASK) >>> PTE_HI_PBMT_SHIFT;
}

/** True when a valid PTE is a leaf (any of R, W, X set); R=W=X=0 points to the next table. */
export function pteIsLeaf(lo: number): boolean {
  return (lo & (PTE_R | PTE_W | PTE_X)) !== 0;
}

// ---- classification (privileged spec, translation process steps 3-4) ----

/** V=0: "If pte.v = 0 … stop and raise a page-fault". */
export const PTE_INVALID = 0;
/** A valid pointer to the next-level table (R=W=X=0). */
export const PTE_POINTER = 1;
/** A valid leaf whose encoding is legal (alignment and permissions are checked later). */
export const PTE_LEAF = 2;
/** Bits reserved for future standard use are set: 60:54; N without Svnapot; PBMT without Svpbmt. */
export const PTE_RESERVED_BITS = 3;
/**
 * A reserved encoding: W=1 with R=0 (except the Zicfiss shadow-stack xwr=010 when enabled);
 * D, A, U, N or PBMT on a non-leaf PTE; PBMT=3 on a leaf; an N=1 leaf that is not the 64 KiB
 * encoding (level > 0, or ppn[3:0] ≠ 1000).
 */
export const PTE_RESERVED_ENCODING = 4;

export type PteClass =
  | typeof PTE_INVALID
  | typeof PTE_POINTER
  | typeof PTE_LEAF
  | typeof PTE_RESERVED_BITS
  | typeof PTE_RESERVED_ENCODING;

/**
 * Classifies a PTE read at `level`.
 * - `gStage`: a G-stage PTE; the Zicfiss shadow-stack encoding stays reserved there, and the
 *   G bit is ignored ("must be ignored by hardware").
 * - `svnapot` / `svpbmt`: whether those extensions are in effect for this stage; without them
 *   N and PBMT are reserved bits.
 * - `shadowStack`: first stage with Zicfiss active (xenvcfg.SSE=1): xwr=010 is a shadow-stack
 *   page. Must be false for IO: the RISC-V IOMMU spec ("Process to translate an IOVA") keeps
 *   xwr=010 reserved for IO transactions, and it is reserved for CPUs without Zicfiss.
 */
export function classifyPte(
  lo: number,
  hi: number,
  level: number,
  gStage: boolean,
  svnapot: boolean,
  svpbmt: boolean,
  shadowStack: boolean,
): PteClass {
  if ((lo & PTE_V) === 0) return PTE_INVALID;
  if ((hi & PTE_HI_RESERVED_MASK) !== 0) return PTE_RESERVED_BITS;
  if (!svnapot && (hi & PTE_HI_N) !== 0) return PTE_RESERVED_BITS;
  if (!svpbmt && (hi & PTE_HI_PBMT_MASK) !== 0) return PTE_RESERVED_BITS;
  const xwr = (lo >>> 1) & 7;
  if (xwr === 0) {
    // "For non-leaf PTEs, the D, A, and U bits are reserved"; Svpbmt: bits 62-61 reserved in
    // non-leaf PTEs; Svnapot: N=1 is only defined for a level-0 leaf.
    if ((lo & (PTE_D | PTE_A | PTE_U)) !== 0) return PTE_RESERVED_ENCODING;
    if ((hi & (PTE_HI_N | PTE_HI_PBMT_MASK)) !== 0) return PTE_RESERVED_ENCODING;
    return PTE_POINTER;
  }
  if ((xwr & 3) === 2 && !(xwr === 2 && shadowStack && !gStage)) return PTE_RESERVED_ENCODING;
  if ((hi & PTE_HI_PBMT_MASK) === PTE_HI_PBMT_MASK) return PTE_RESERVED_ENCODING;
  if (
    (hi & PTE_HI_N) !== 0 &&
    (level !== 0 || ((lo >>> PTE_PPN_SHIFT) & 0xf) !== NAPOT_64K_PPN_BITS)
  ) {
    return PTE_RESERVED_ENCODING;
  }
  return PTE_LEAF;
}

// ---- bigint form ----

export interface PteFields {
  readonly v: boolean;
  readonly r: boolean;
  readonly w: boolean;
  readonly x: boolean;
  readonly u: boolean;
  readonly g: boolean;
  readonly a: boolean;
  readonly d: boolean;
  /** Bits 9:8, for supervisor software. */
  readonly rsw: number;
  /** Bits 53:10. */
  readonly ppn: number;
  /** Bits 60:54 (must be 0 for a valid PTE). */
  readonly reserved: number;
  /** Bits 62:61. */
  readonly pbmt: number;
  /** Bit 63. */
  readonly n: boolean;
}

function checkField(name: string, value: number, limit: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= limit) {
    throw new SimError(`PTE field ${name}=${value} does not fit (limit ${limit})`);
  }
}

/** The 64-bit PTE with these fields (missing ones are 0/false). */
export function encodePte(f: Partial<PteFields>): bigint {
  const rsw = f.rsw ?? 0;
  const ppn = f.ppn ?? 0;
  const reserved = f.reserved ?? 0;
  const pbmt = f.pbmt ?? 0;
  checkField("rsw", rsw, 4);
  checkField("ppn", ppn, PPN_LIMIT);
  checkField("reserved", reserved, 128);
  checkField("pbmt", pbmt, 4);
  const flags =
    (f.v ? PTE_V : 0) |
    (f.r ? PTE_R : 0) |
    (f.w ? PTE_W : 0) |
    (f.x ? PTE_X : 0) |
    (f.u ? PTE_U : 0) |
    (f.g ? PTE_G : 0) |
    (f.a ? PTE_A : 0) |
    (f.d ? PTE_D : 0) |
    (rsw << PTE_RSW_SHIFT);
  const lo = pteLo(ppn, flags);
  const hi = (pteHi(ppn, pbmt, f.n ?? false) | (reserved << 22)) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** The fields of a 64-bit PTE. */
export function decodePte(pte: bigint): PteFields {
  if (pte < 0n || pte >= 1n << 64n) throw new SimError(`PTE 0x${pte.toString(16)} is not 64-bit`);
  const lo = Number(pte & 0xffff_ffffn);
  const hi = Number(pte >> 32n);
  return {
    v: (lo & PTE_V) !== 0,
    r: (lo & PTE_R) !== 0,
    w: (lo & PTE_W) !== 0,
    x: (lo & PTE_X) !== 0,
    u: (lo & PTE_U) !== 0,
    g: (lo & PTE_G) !== 0,
    a: (lo & PTE_A) !== 0,
    d: (lo & PTE_D) !== 0,
    rsw: (lo >>> PTE_RSW_SHIFT) & 3,
    ppn: ptePpn(lo, hi),
    reserved: (hi & PTE_HI_RESERVED_MASK) >>> 22,
    pbmt: ptePbmt(hi),
    n: (hi & PTE_HI_N) !== 0,
  };
}

/** `DAGUXWRV`-style text for traces and views: `ppn=0x80123 ----XWRV pbmt=0` plus N when set. */
export function formatPte(lo: number, hi: number): string {
  const names = "VRWXUGAD";
  let flags = "";
  for (let b = 7; b >= 0; b--) flags += (lo >>> b) & 1 ? names[b] : "-";
  const n = (hi & PTE_HI_N) !== 0 ? " N" : "";
  return `ppn=0x${ptePpn(lo, hi).toString(16)} ${flags} pbmt=${ptePbmt(hi)}${n}`;
}
