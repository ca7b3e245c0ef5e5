// The backing object of a shared anonymous mapping (MAP_SHARED|MAP_ANONYMOUS), like the shmem
// file the kernel creates for one (shmem_zero_setup). Its pages are indexed by page offset and
// outlive any one mapping: every VMA that maps the object holds a reference (the kernel's
// get_file/fput on vm_file), split halves and fork children included, and the pages are freed
// when the last reference goes.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { PageRefs } from "./page-ref.js";

export class ShmemObject {
  readonly id: number;
  readonly #pageRefs: PageRefs;
  /** Page offset → frame. */
  readonly #pages = new Map<number, number>();
  #refs = 1;

  constructor(id: number, pages: PageRefs) {
    this.id = id;
    this.#pageRefs = pages;
  }

  /** References held by VMAs. */
  get refs(): number {
    return this.#refs;
  }

  /** Pages allocated to the object. */
  get nrPages(): number {
    return this.#pages.size;
  }

  /** The frame at `pgoff`, or -1 if the object has no page there yet. */
  find(pgoff: number): number {
    return this.#pages.get(pgoff) ?? -1;
  }

  /** shmem_get_folio: the frame at `pgoff`, allocating a zeroed one; -1 when memory is out. */
  getOrAlloc(pgoff: number): number {
    const have = this.#pages.get(pgoff);
    if (have !== undefined) return have;
    this.#alive();
    const ppn = this.#pageRefs.alloc();
    if (ppn >= 0) this.#pages.set(pgoff, ppn);
    return ppn;
  }

  get(): this {
    this.#alive();
    this.#refs++;
    return this;
  }

  /** Drops a reference; the last one frees every page (a pinned one when its pins go). */
  put(): void {
    this.#alive();
    if (--this.#refs > 0) return;
    for (const ppn of this.#pages.values()) this.#pageRefs.put(ppn);
    this.#pages.clear();
  }

  toJSON(): Json {
    return { id: this.id, refs: this.#refs, pages: this.#pages.size };
  }

  #alive(): void {
    if (this.#refs <= 0) throw new SimError(`shmem object ${this.id} used after its last put`);
  }
}
