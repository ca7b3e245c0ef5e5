// An address space's VMAs, sorted by start and never overlapping (the kernel keeps them in a
// maple tree; a sorted array with binary search gives the same answers for the sizes simulated).
// Ranges are page numbers: [startPage, endPage).

import { SimError } from "../base/errors.js";

export interface PageRange {
  readonly startPage: number;
  readonly endPage: number;
}

export class VmaList<T extends PageRange> {
  readonly #items: T[] = [];

  get length(): number {
    return this.#items.length;
  }

  at(i: number): T | undefined {
    return this.#items[i];
  }

  /** Index of the first VMA with endPage > page (find_vma's answer), or length if none. */
  indexAfter(page: number): number {
    const items = this.#items;
    let lo = 0;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]!.endPage <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** find_vma: the first VMA ending above `page` (it may start above it too), or null. */
  find(page: number): T | null {
    return this.#items[this.indexAfter(page)] ?? null;
  }

  /** vma_lookup: the VMA containing `page`, or null. */
  lookup(page: number): T | null {
    const v = this.find(page);
    return v !== null && v.startPage <= page ? v : null;
  }

  /** find_vma_intersection: the first VMA overlapping [start, end), or null. */
  intersection(start: number, end: number): T | null {
    const v = this.find(start);
    return v !== null && v.startPage < end ? v : null;
  }

  indexOf(vma: T): number {
    const i = this.indexAfter(vma.startPage);
    return this.#items[i] === vma ? i : -1;
  }

  /** Inserts a VMA that overlaps none; returns its index. */
  insert(vma: T): number {
    if (!(vma.startPage < vma.endPage)) {
      throw new SimError(`empty or inverted VMA [${vma.startPage}, ${vma.endPage})`);
    }
    const i = this.indexAfter(vma.startPage);
    const next = this.#items[i];
    if (next !== undefined && next.startPage < vma.endPage) {
      throw new SimError(
        `VMA pages [${vma.startPage}, ${vma.endPage}) overlap [${next.startPage}, ${next.endPage})`,
      );
    }
    this.#items.splice(i, 0, vma);
    return i;
  }

  remove(vma: T): void {
    const i = this.indexOf(vma);
    if (i < 0) throw new SimError("removing a VMA that is not in this list");
    this.#items.splice(i, 1);
  }

  /** The VMAs overlapping [start, end), in order (a copy: safe to modify the list meanwhile). */
  overlapping(start: number, end: number): T[] {
    const out: T[] = [];
    for (let i = this.indexAfter(start); i < this.#items.length; i++) {
      const v = this.#items[i]!;
      if (v.startPage >= end) break;
      out.push(v);
    }
    return out;
  }

  /** All VMAs in address order (a copy). */
  toArray(): T[] {
    return [...this.#items];
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.#items[Symbol.iterator]();
  }
}
