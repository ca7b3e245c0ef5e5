// The IOMMU's data-structure interface: its implicit reads and writes of directory tables,
// queues and interrupt messages. Values are 64-bit doublewords handled as two 32-bit halves,
// in the endianness the caller selects (`fctl.BE` or `DC.tc.SBE`). An access beyond
// `capabilities.PAS` or to a page that is not RAM is an access fault (the PMA checker's abort);
// a page marked poisoned reports data corruption, so the RAS cause codes can be exercised.

import { PAGE_SIZE } from "../../base/bits.js";
import type { PhysicalMemory } from "../memory.js";

export const ACCESS_OK = 0;
export const ACCESS_FAULT = 1;
export const ACCESS_CORRUPT = 2;
export type AccessStatus = typeof ACCESS_OK | typeof ACCESS_FAULT | typeof ACCESS_CORRUPT;

export function bswap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

export class ImplicitMemory {
  /** Halves of the last doubleword loaded (the first of the two for `load128`). */
  lo = 0;
  hi = 0;
  /** Halves of the second doubleword of the last `load128`. */
  lo2 = 0;
  hi2 = 0;
  readonly #mem: PhysicalMemory;
  readonly #ppnLimit: number;
  readonly #poisoned = new Set<number>();

  constructor(memory: PhysicalMemory, pasBits: number) {
    this.#mem = memory;
    this.#ppnLimit = 2 ** (pasBits - 12);
  }

  get memory(): PhysicalMemory {
    return this.#mem;
  }

  /** True when page `ppn` lies within the physical address space the IOMMU can address. */
  inRange(ppn: number): boolean {
    return ppn >= 0 && ppn < this.#ppnLimit;
  }

  /** True when some page is poisoned (so walks must be checked). */
  get hasPoison(): boolean {
    return this.#poisoned.size > 0;
  }

  isPoisoned(ppn: number): boolean {
    return this.#poisoned.has(ppn);
  }

  /** Marks a page poisoned (reads of it report data corruption) or heals it. */
  setPoisoned(ppn: number, poisoned: boolean): void {
    if (poisoned) this.#poisoned.add(ppn);
    else this.#poisoned.delete(ppn);
  }

  /** Loads the doubleword at byte `offset` (8-aligned) of page `ppn` into `lo`/`hi`. */
  load64(ppn: number, offset: number, be: boolean): AccessStatus {
    if (ppn >= this.#ppnLimit) return ACCESS_FAULT;
    const words = this.#mem.pageU32(ppn);
    if (words === null) return ACCESS_FAULT;
    if (this.#poisoned.size > 0 && this.#poisoned.has(ppn)) return ACCESS_CORRUPT;
    const i = offset >>> 2;
    if (be) {
      this.hi = bswap32(words[i]!);
      this.lo = bswap32(words[i + 1]!);
    } else {
      this.lo = words[i]!;
      this.hi = words[i + 1]!;
    }
    return ACCESS_OK;
  }

  /**
   * Loads the two doublewords at byte `offset` (16-aligned) of page `ppn` into `lo`/`hi` and
   * `lo2`/`hi2` with one page lookup (a 16-byte command). Both lie in one page, so they fault
   * or succeed together.
   */
  load128(ppn: number, offset: number, be: boolean): AccessStatus {
    if (ppn >= this.#ppnLimit) return ACCESS_FAULT;
    const words = this.#mem.pageU32(ppn);
    if (words === null) return ACCESS_FAULT;
    if (this.#poisoned.size > 0 && this.#poisoned.has(ppn)) return ACCESS_CORRUPT;
    const i = offset >>> 2;
    if (be) {
      this.hi = bswap32(words[i]!);
      this.lo = bswap32(words[i + 1]!);
      this.hi2 = bswap32(words[i + 2]!);
      this.lo2 = bswap32(words[i + 3]!);
    } else {
      this.lo = words[i]!;
      this.hi = words[i + 1]!;
      this.lo2 = words[i + 2]!;
      this.hi2 = words[i + 3]!;
    }
    return ACCESS_OK;
  }

  /** Stores a doubleword; false on an access fault. */
  store64(ppn: number, offset: number, lo: number, hi: number, be: boolean): boolean {
    const words = ppn < this.#ppnLimit ? this.#mem.writablePageU32(ppn) : null;
    if (words === null) return false;
    const i = offset >>> 2;
    if (be) {
      words[i] = bswap32(hi);
      words[i + 1] = bswap32(lo);
    } else {
      words[i] = lo >>> 0;
      words[i + 1] = hi >>> 0;
    }
    return true;
  }

  /** Stores a 4-byte word at a 4-aligned byte `offset`; false on an access fault. */
  store32(ppn: number, offset: number, value: number, be: boolean): boolean {
    const words = ppn < this.#ppnLimit ? this.#mem.writablePageU32(ppn) : null;
    if (words === null) return false;
    words[offset >>> 2] = be ? bswap32(value) : value >>> 0;
    return true;
  }
}

/** Page number and offset of the `index`-th `size`-byte entry of a table starting at `ppn`. */
export function entryLocation(ppn: number, index: number, size: number): [number, number] {
  const byte = index * size;
  return [ppn + Math.floor(byte / PAGE_SIZE), byte % PAGE_SIZE];
}
