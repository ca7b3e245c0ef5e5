// An ID allocator like the kernel's IDA: hands out the lowest free ID in an inclusive range.
// IDs up to 2^32 - 1 (ioasid_t); storage is a sparse set of 1024-ID chunks with occupancy
// counts, so a full chunk is skipped in one step.

import { SimError } from "./errors.js";

const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;
const WORDS = CHUNK >>> 5;
export const IDA_MAX = 0xffff_ffff;

interface Chunk {
  used: number;
  readonly words: Uint32Array;
}

export class Ida {
  readonly #chunks = new Map<number, Chunk>();
  #count = 0;

  /** Number of IDs allocated. */
  get size(): number {
    return this.#count;
  }

  /** Lowest free ID in `[min, max]`, marked used; `-1` when the range is full. */
  alloc(min = 0, max = IDA_MAX): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max > IDA_MAX) {
      throw new SimError(`IDA range [${min}, ${max}] is not within [0, 2^32-1]`);
    }
    let id = min;
    while (id <= max) {
      const ci = Math.floor(id / CHUNK);
      const chunk = this.#chunks.get(ci);
      if (!chunk) return this.#mark(id);
      if (chunk.used === CHUNK) {
        id = (ci + 1) * CHUNK;
        continue;
      }
      const free = firstClear(chunk.words, id - ci * CHUNK);
      if (free < 0) {
        id = (ci + 1) * CHUNK;
        continue;
      }
      const found = ci * CHUNK + free;
      return found <= max ? this.#mark(found) : -1;
    }
    return -1;
  }

  /** Marks `id` used; false if it already was. */
  allocExact(id: number): boolean {
    if (this.has(id)) return false;
    this.#mark(id);
    return true;
  }

  /** Frees `id`; false (and no change) if it was not allocated. */
  free(id: number): boolean {
    const ci = Math.floor(id / CHUNK);
    const chunk = this.#chunks.get(ci);
    if (!chunk) return false;
    const b = id - ci * CHUNK;
    const w = b >>> 5;
    const m = 1 << (b & 31);
    if ((chunk.words[w]! & m) === 0) return false;
    chunk.words[w]! &= ~m;
    chunk.used--;
    this.#count--;
    if (chunk.used === 0) this.#chunks.delete(ci);
    return true;
  }

  has(id: number): boolean {
    const ci = Math.floor(id / CHUNK);
    const chunk = this.#chunks.get(ci);
    if (!chunk) return false;
    const b = id - ci * CHUNK;
    return (chunk.words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }

  /** Allocated IDs in ascending order. */
  *ids(): IterableIterator<number> {
    const keys = [...this.#chunks.keys()].sort((a, b) => a - b);
    for (const ci of keys) {
      const chunk = this.#chunks.get(ci)!;
      for (let b = 0; b < CHUNK; b++) {
        if ((chunk.words[b >>> 5]! & (1 << (b & 31))) !== 0) yield ci * CHUNK + b;
      }
    }
  }

  #mark(id: number): number {
    const ci = Math.floor(id / CHUNK);
    let chunk = this.#chunks.get(ci);
    if (!chunk) {
      chunk = { used: 0, words: new Uint32Array(WORDS) };
      this.#chunks.set(ci, chunk);
    }
    const b = id - ci * CHUNK;
    chunk.words[b >>> 5]! |= 1 << (b & 31);
    chunk.used++;
    this.#count++;
    return id;
  }
}

function firstClear(words: Uint32Array, from: number): number {
  for (let b = from; b < CHUNK; ) {
    const w = words[b >>> 5]!;
    if (w === 0xffff_ffff) {
      b = ((b >>> 5) + 1) << 5;
      continue;
    }
    if ((w & (1 << (b & 31))) === 0) return b;
    b++;
  }
  return -1;
}
