// The six RV64 paged translation modes and their geometry.
//
// First stage (RISC-V privileged spec, supervisor chapter, "Sv39"/"Sv48"/"Sv57"): a VA of
// 39/48/57 bits whose bits 63..VAW all equal bit VAW-1 (sign extension), else a page fault.
// G-stage (hypervisor chapter, "Guest Physical Address Translation"): Sv39x4/Sv48x4/Sv57x4 take a
// GPA 2 bits wider (41/50/59); the root table alone is 16 KiB (2048 PTEs), 16 KiB aligned, and
// GPA bits above the width must be 0, else a guest-page fault.
// Every level may hold a leaf ("Any level of PTE may be a leaf PTE"): 4 KiB at level 0, 2 MiB at
// 1, 1 GiB at 2, 512 GiB at 3 (Sv48+), 256 TiB at 4 (Sv57); Svnapot adds 64 KiB NAPOT at level 0
// (also in G-stage: "Svnapot is also supported in G-stage translation").
//
// Page numbers are plain numbers: a VPN of a full 64-bit VA has 52 bits, below 2^53.

import { SimError } from "../../base/errors.js";

export type PagingModeName = "Sv39" | "Sv48" | "Sv57" | "Sv39x4" | "Sv48x4" | "Sv57x4";

export interface PagingMode {
  readonly name: PagingModeName;
  /** True for the G-stage (x4) modes that translate guest physical addresses. */
  readonly gStage: boolean;
  /** Number of page-table levels; the root is level `levels - 1`, 4 KiB leaves are level 0. */
  readonly levels: number;
  /** Width of the input address: VA bits (39/48/57) or GPA bits (41/50/59). */
  readonly vaBits: number;
  /** Index bits at the root level: 9, or 11 for the x4 modes. */
  readonly rootIndexBits: number;
  /** Pages in the root table: 1, or 4 (16 KiB, 16 KiB aligned) for the x4 modes. */
  readonly rootPages: number;
  /** Leaf sizes this mode can map, as log2 of bytes, ascending (16 is the Svnapot 64 KiB range). */
  readonly leafShifts: readonly number[];
  /** The MODE field value in satp/hgatp and in the IOMMU's iosatp/iohgatp (8, 9, 10). */
  readonly modeField: number;
}

function mode(
  name: PagingModeName,
  levels: number,
  gStage: boolean,
  modeField: number,
): PagingMode {
  const leafShifts = [12, 16];
  for (let level = 1; level < levels; level++) leafShifts.push(levelShift(level));
  return Object.freeze({
    name,
    gStage,
    levels,
    vaBits: 12 + 9 * levels + (gStage ? 2 : 0),
    rootIndexBits: gStage ? 11 : 9,
    rootPages: gStage ? 4 : 1,
    leafShifts: Object.freeze(leafShifts),
    modeField,
  });
}

export const SV39: PagingMode = mode("Sv39", 3, false, 8);
export const SV48: PagingMode = mode("Sv48", 4, false, 9);
export const SV57: PagingMode = mode("Sv57", 5, false, 10);
export const SV39X4: PagingMode = mode("Sv39x4", 3, true, 8);
export const SV48X4: PagingMode = mode("Sv48x4", 4, true, 9);
export const SV57X4: PagingMode = mode("Sv57x4", 5, true, 10);

export const PAGING_MODES: readonly PagingMode[] = Object.freeze([
  SV39,
  SV48,
  SV57,
  SV39X4,
  SV48X4,
  SV57X4,
]);

/** The mode called `name` (as the spec spells it); throws on an unknown name. */
export function pagingMode(name: string): PagingMode {
  const m = PAGING_MODES.find((x) => x.name === name);
  if (!m) throw new SimError(`unknown paging mode "${name}" (want one of Sv39…Sv57x4)`);
  return m;
}

/**
 * The mode a satp/iosatp (first stage) or hgatp/iohgatp (G-stage) MODE field selects, or null
 * for Bare (0) and for encodings that name no RV64 paged mode here (the caller reports those).
 */
export function modeFromField(gStage: boolean, field: number): PagingMode | null {
  for (const m of PAGING_MODES) if (m.gStage === gStage && m.modeField === field) return m;
  return null;
}

/** log2 of the bytes one PTE at `level` maps: 12 + 9 × level. */
export function levelShift(level: number): number {
  return 12 + 9 * level;
}

/** The level a leaf of 2^shift bytes lives at (64 KiB NAPOT: level 0), or -1 if the mode has none. */
export function leafLevelOf(m: PagingMode, shift: number): number {
  if (!m.leafShifts.includes(shift)) return -1;
  return shift === 16 ? 0 : (shift - 12) / 9;
}

/**
 * The index of page `vpn`'s entry in its table at `level`, VPN[level], with `vpn` given as its low
 * 32 bits `vlo` and the rest `vhi` (no BigInt). At the root of an x4 G-stage table it has 2 more
 * bits, counting entries across the root's four pages (page = index >>> 9). Walk hot path.
 */
export function vpnIndex(m: PagingMode, level: number, vlo: number, vhi: number): number {
  const shift = 9 * level;
  const idx =
    shift === 0
      ? vlo
      : shift >= 32
        ? vhi >>> (shift - 32)
        : (vlo >>> shift) | (vhi << (32 - shift));
  return idx & (level === m.levels - 1 ? (1 << m.rootIndexBits) - 1 : 511);
}

const TWO_POW = Array.from({ length: 53 }, (_, i) => 2 ** i);

/**
 * Whether `vpn` (a full 64-bit address shifted right by 12, so below 2^52) is a legal input page:
 * first stage — bits 63..VAW of the address equal bit VAW-1; G-stage — bits 63..GAW are zero.
 * Allocation-free; used on the walk hot path.
 */
export function isCanonicalVpn(m: PagingMode, vpn: number): boolean {
  if (m.gStage) return vpn < TWO_POW[m.vaBits - 12]!;
  const top = Math.floor(vpn / TWO_POW[m.vaBits - 13]!);
  return top === 0 || top === TWO_POW[65 - m.vaBits]! - 1;
}

/** `isCanonicalVpn` for a 64-bit address (bits below 12 are ignored). */
export function isCanonicalAddress(m: PagingMode, addr: bigint): boolean {
  if (addr < 0n || addr >= 1n << 64n) return false;
  return isCanonicalVpn(m, Number(addr >> 12n));
}

/**
 * The input page number with the sign-extension bits removed (below 2^(VAW-12)): the position
 * of the page inside the tree. G-stage page numbers are returned unchanged.
 */
export function treeVpn(m: PagingMode, vpn: number): number {
  if (m.gStage) return vpn;
  return vpn % TWO_POW[m.vaBits - 12]!;
}

/** The inverse of `treeVpn` for a first-stage mode: sign-extends bit VAW-13 up to bit 51. */
export function signExtendVpn(m: PagingMode, tvpn: number): number {
  if (m.gStage) return tvpn;
  const width = m.vaBits - 12;
  return tvpn >= TWO_POW[width - 1]! ? tvpn + (TWO_POW[52]! - TWO_POW[width]!) : tvpn;
}
