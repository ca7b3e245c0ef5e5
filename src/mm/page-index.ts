// Which user pages of one address space have a frame behind them: every page the page table
// maps, plus the pages of PROT_NONE VMAs. Like the kernel's rmap and RSS bookkeeping, it lets
// munmap, mprotect, fork and exit visit exactly the populated pages of a range instead of every
// page of it; the PTE bits themselves are always read back from the page table in memory.
//
// PROT_NONE pages: Linux keeps them in the page table as a PTE with V=0 and the PFN kept
// (_PAGE_PROT_NONE), which the hardware walker sees as invalid. The PageTable object only holds
// valid leaves, so such a page is removed from the table and its frame and PTE bits (A/D) are
// kept here until mprotect makes it accessible again. The walker's view is the same: invalid.

import { SimError } from "../base/errors.js";

export class PageIndex {
  /** Page number → frame, for every populated page (mapped or PROT_NONE). */
  readonly #ppn = new Map<number, number>();
  /** Page number → PTE bits 7:0 kept while the page is PROT_NONE. */
  readonly #protNone = new Map<number, number>();

  get size(): number {
    return this.#ppn.size;
  }

  /** The frame behind page `vpn`, or -1. */
  get(vpn: number): number {
    return this.#ppn.get(vpn) ?? -1;
  }

  set(vpn: number, ppn: number): void {
    this.#ppn.set(vpn, ppn);
  }

  delete(vpn: number): void {
    if (!this.#ppn.delete(vpn)) throw new SimError(`page 0x${vpn.toString(16)} is not populated`);
    this.#protNone.delete(vpn);
  }

  isProtNone(vpn: number): boolean {
    return this.#protNone.has(vpn);
  }

  /** PTE bits saved when the page became PROT_NONE. */
  protNoneBits(vpn: number): number {
    const bits = this.#protNone.get(vpn);
    if (bits === undefined) throw new SimError(`page 0x${vpn.toString(16)} is not PROT_NONE`);
    return bits;
  }

  setProtNone(vpn: number, bits: number): void {
    this.#protNone.set(vpn, bits);
  }

  clearProtNone(vpn: number): void {
    this.#protNone.delete(vpn);
  }

  /** Populated pages in [start, end), ascending. */
  range(start: number, end: number): number[] {
    const out: number[] = [];
    if (end - start <= this.#ppn.size) {
      for (let v = start; v < end; v++) if (this.#ppn.has(v)) out.push(v);
      return out;
    }
    for (const v of this.#ppn.keys()) if (v >= start && v < end) out.push(v);
    return out.sort((a, b) => a - b);
  }
}
