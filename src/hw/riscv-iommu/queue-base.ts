// The base register shared by the three in-memory queues (`cqb`, `fqb`, `pqb`): LOG2SZ-1 in bits
// 4:0 and the PPN in bits 53:10, WARL, held as two halves. The PPN keeps only the bits within
// `capabilities.PAS`.
//
// The fields derived from the register (size, index mask, PPN) are computed once per register
// write: the queues read them on every command, record and tail/head write.

import type { Json } from "../../base/json.js";
import { ppnOfHalves } from "./registers.js";

export class QueueBase {
  readonly #loMask: number;
  readonly #hiMask: number;
  #lo = 0;
  #hi = 0;
  #log2Size = 1;
  #entries = 2;
  #indexMask = 1;
  #ppn = 0;

  constructor(pasBits: number) {
    const ppnBits = pasBits - 12;
    this.#loMask = (0x1f | (ppnBits >= 22 ? 0xffff_fc00 : ((2 ** ppnBits - 1) << 10) >>> 0)) >>> 0;
    this.#hiMask = ppnBits > 22 ? 2 ** (ppnBits - 22) - 1 : 0;
  }

  /** The register's low and high halves as software reads them. */
  get lo(): number {
    return this.#lo;
  }

  get hi(): number {
    return this.#hi;
  }

  /** Writes the low (`half` 0) or high (1) half, keeping only the implemented bits. */
  write(half: 0 | 1, value: number): void {
    if (half === 0) this.#lo = (value & this.#loMask) >>> 0;
    else this.#hi = (value & this.#hiMask) >>> 0;
    const log2 = (this.#lo & 0x1f) + 1;
    this.#log2Size = log2;
    this.#entries = 2 ** log2;
    this.#indexMask = log2 >= 32 ? 0xffff_ffff : 2 ** log2 - 1;
    this.#ppn = ppnOfHalves(this.#lo, this.#hi);
  }

  /** log2 of the number of entries (LOG2SZ = field + 1). */
  get log2Size(): number {
    return this.#log2Size;
  }

  /** Number of entries. */
  get entries(): number {
    return this.#entries;
  }

  /** Index bits software and the IOMMU may use: LOG2SZ-1:0. */
  get indexMask(): number {
    return this.#indexMask;
  }

  get ppn(): number {
    return this.#ppn;
  }

  /** Page and byte offset of entry `index` (entries of `size` bytes). */
  pageOf(index: number, size: number): number {
    return this.#ppn + Math.floor((index * size) / 4096);
  }

  offsetOf(index: number, size: number): number {
    return (index * size) % 4096;
  }

  toJSON(): Json {
    return { PPN: `0x${this.ppn.toString(16)}`, LOG2SZ: this.log2Size };
  }
}

/** Index following `i` in a queue of `entries` entries. */
export function nextIndex(i: number, entries: number): number {
  return i + 1 === entries ? 0 : i + 1;
}
