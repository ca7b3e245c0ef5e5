// 64-bit and address helpers. Public APIs take addresses and sizes as bigint (Sv57 virtual and
// 56-bit physical addresses exceed 2^53); hot paths use page numbers and 32-bit halves instead.

import { SimError } from "./errors.js";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const PAGE_MASK = PAGE_SIZE - 1;
export const PAGE_SIZE_N = 4096n;

const TWO32 = 0x1_0000_0000;
const U64_MAX = (1n << 64n) - 1n;

/** Low 32 bits of a 64-bit value, as an unsigned number. */
export function lo32(x: bigint): number {
  return Number(x & 0xffff_ffffn);
}

/** High 32 bits of a 64-bit value, as an unsigned number. */
export function hi32(x: bigint): number {
  return Number((x >> 32n) & 0xffff_ffffn);
}

/** The 64-bit value made of two unsigned 32-bit halves. */
export function fromHalves(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** A non-negative integer below 2^53 as a number; throws beyond that (a bug, not input). */
export function toSafeNumber(x: bigint, what = "value"): number {
  if (x < 0n || x > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SimError(`${what} 0x${x.toString(16)} does not fit a safe integer`);
  }
  return Number(x);
}

/** Page number and in-page offset of an address (page numbers of 64-bit addresses fit 52 bits). */
export function pageOf(addr: bigint): number {
  return Number(addr >> BigInt(PAGE_SHIFT));
}

export function offsetOf(addr: bigint): number {
  return Number(addr & BigInt(PAGE_MASK));
}

/** The address of a page number plus offset. */
export function addrOf(page: number, offset = 0): bigint {
  return (BigInt(page) << BigInt(PAGE_SHIFT)) + BigInt(offset);
}

/** Number of 2^shift units in `page`, i.e. an unsigned right shift for numbers above 2^32. */
export function shiftRight(x: number, shift: number): number {
  return shift < 31 && x < TWO32 ? x >>> shift : Math.floor(x / 2 ** shift);
}

/** Field `[lsb, lsb+width)` of a 64-bit value. */
export function field(x: bigint, lsb: number, width: number): bigint {
  return (x >> BigInt(lsb)) & ((1n << BigInt(width)) - 1n);
}

/** `x` with field `[lsb, lsb+width)` replaced by `value` (truncated to the field). */
export function withField(x: bigint, lsb: number, width: number, value: bigint): bigint {
  const mask = ((1n << BigInt(width)) - 1n) << BigInt(lsb);
  return (x & ~mask) | ((value << BigInt(lsb)) & mask);
}

export function bit(x: bigint, n: number): boolean {
  return ((x >> BigInt(n)) & 1n) === 1n;
}

export function isAligned(x: bigint, align: bigint): boolean {
  return (x & (align - 1n)) === 0n;
}

export function alignDown(x: bigint, align: bigint): bigint {
  return x & ~(align - 1n);
}

export function alignUp(x: bigint, align: bigint): bigint {
  return (x + align - 1n) & ~(align - 1n);
}

export function isPowerOfTwo(x: bigint): boolean {
  return x > 0n && (x & (x - 1n)) === 0n;
}

/** Index of the lowest set bit (x > 0). */
export function ctz(x: bigint): number {
  let n = 0;
  while (((x >> BigInt(n)) & 1n) === 0n) n++;
  return n;
}

/** Wrap a bigint to an unsigned 64-bit value. */
export function u64(x: bigint): bigint {
  return x & U64_MAX;
}

/** `0x…` in lower case, zero-padded to `digits` hex digits when given. */
export function hex(x: bigint | number, digits = 0): string {
  const s = (typeof x === "bigint" ? x : BigInt(x)).toString(16);
  return `0x${s.padStart(digits, "0")}`;
}

/** Human size: `4 KiB`, `2 MiB`, `1 GiB`, or bytes. */
export function formatSize(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = bytes;
  let u = 0;
  while (u < units.length - 1 && v >= 1024n && v % 1024n === 0n) {
    v /= 1024n;
    u++;
  }
  return `${v} ${units[u]}`;
}
