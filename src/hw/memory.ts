// Sparse, page-granular physical memory for up to 56-bit physical addresses, little-endian like
// RISC-V, and a frame allocator over its RAM.
//
// Hot paths (page-table walks, device DMA) address memory by page number (a plain number: 44-bit
// PPNs fit easily) and use `pageU32` / `pageU8`, which return the page's backing array or null
// when the page is not RAM (an access fault). Untouched RAM reads as zeros from one shared page,
// so reads never allocate; the first write materialises the page.
// The bigint API (`read64(pa)`, …) is for everyone else.

import { hex, offsetOf, PAGE_SHIFT, PAGE_SIZE, pageOf } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // The page arrays are host-endian typed arrays; RISC-V memory is little-endian.
  throw new SimError("iommu-sim needs a little-endian host");
}

export const PA_BITS = 56;

export interface RamRegion {
  /** Physical base address (page aligned). */
  readonly base: bigint;
  /** Size in bytes (a multiple of 4 KiB). */
  readonly size: bigint;
}

const ZERO_U32 = new Uint32Array(PAGE_SIZE / 4);
const ZERO_U8 = new Uint8Array(ZERO_U32.buffer);

export class PhysicalMemory {
  readonly regions: readonly RamRegion[];
  /** First page number and page count of each region, for the hot-path range check. */
  readonly #firstPage: number[];
  readonly #pageCount: number[];
  readonly #u32 = new Map<number, Uint32Array>();
  readonly #u8 = new Map<number, Uint8Array>();

  constructor(regions: readonly RamRegion[]) {
    for (const r of regions) {
      if (r.base % BigInt(PAGE_SIZE) !== 0n || r.size % BigInt(PAGE_SIZE) !== 0n || r.size <= 0n) {
        throw new SimError(`RAM region ${hex(r.base)}+${hex(r.size)} is not page aligned`);
      }
      if (r.base + r.size > 1n << BigInt(PA_BITS)) {
        throw new SimError(`RAM region ${hex(r.base)}+${hex(r.size)} exceeds ${PA_BITS}-bit PA`);
      }
    }
    const sorted = [...regions].sort((a, b) => (a.base < b.base ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      if (prev.base + prev.size > sorted[i]!.base) throw new SimError("RAM regions overlap");
    }
    this.regions = sorted;
    this.#firstPage = sorted.map((r) => pageOf(r.base));
    this.#pageCount = sorted.map((r) => Number(r.size >> BigInt(PAGE_SHIFT)));
  }

  /** True if page `ppn` is RAM. */
  isRam(ppn: number): boolean {
    const first = this.#firstPage;
    for (let i = 0; i < first.length; i++) {
      const d = ppn - first[i]!;
      if (d >= 0 && d < this.#pageCount[i]!) return true;
    }
    return false;
  }

  /** The page as 1024 little-endian 32-bit words for reading, or null if it is not RAM. */
  pageU32(ppn: number): Uint32Array | null {
    const p = this.#u32.get(ppn);
    if (p) return p;
    return this.isRam(ppn) ? ZERO_U32 : null;
  }

  /** The page as 4096 bytes for reading, or null if it is not RAM. */
  pageU8(ppn: number): Uint8Array | null {
    const p = this.#u8.get(ppn);
    if (p) return p;
    return this.isRam(ppn) ? ZERO_U8 : null;
  }

  /** The page's words for writing (materialised on first use), or null if it is not RAM. */
  writablePageU32(ppn: number): Uint32Array | null {
    const p = this.#u32.get(ppn);
    if (p) return p;
    return this.#materialise(ppn) ? this.#u32.get(ppn)! : null;
  }

  /** The page's bytes for writing (materialised on first use), or null if it is not RAM. */
  writablePageU8(ppn: number): Uint8Array | null {
    const p = this.#u8.get(ppn);
    if (p) return p;
    return this.#materialise(ppn) ? this.#u8.get(ppn)! : null;
  }

  /** Zeroes a page (drops its backing store: untouched RAM reads as zero). */
  zeroPage(ppn: number): void {
    this.#u32.delete(ppn);
    this.#u8.delete(ppn);
  }

  /** Number of pages that hold data (for statistics). */
  get materialisedPages(): number {
    return this.#u32.size;
  }

  // ---- bigint API ----

  read8(pa: bigint): number {
    return this.#readPage(pa, 1)[offsetOf(pa)]!;
  }

  read16(pa: bigint): number {
    const o = offsetOf(pa);
    if (o === PAGE_SIZE - 1) return this.read8(pa) | (this.read8(pa + 1n) << 8);
    const p = this.#readPage(pa, 2);
    return p[o]! | (p[o + 1]! << 8);
  }

  read32(pa: bigint): number {
    const o = offsetOf(pa);
    if ((o & 3) === 0) return this.#readPageU32(pa)[o >>> 2]!;
    return (this.read16(pa) | (this.read16(pa + 2n) << 16)) >>> 0;
  }

  read64(pa: bigint): bigint {
    return (BigInt(this.read32(pa + 4n)) << 32n) | BigInt(this.read32(pa));
  }

  write8(pa: bigint, v: number): void {
    this.#writePage(pa, 1)[offsetOf(pa)] = v & 0xff;
  }

  write16(pa: bigint, v: number): void {
    const o = offsetOf(pa);
    if (o === PAGE_SIZE - 1) {
      this.#requireRam(pa + 1n, 2);
      this.write8(pa, v);
      this.write8(pa + 1n, v >>> 8);
      return;
    }
    const p = this.#writePage(pa, 2);
    p[o] = v & 0xff;
    p[o + 1] = (v >>> 8) & 0xff;
  }

  write32(pa: bigint, v: number): void {
    const o = offsetOf(pa);
    if ((o & 3) === 0) {
      this.#writePageU32(pa)[o >>> 2] = v >>> 0;
      return;
    }
    this.#requireRam(pa + 3n, 4);
    this.write16(pa, v & 0xffff);
    this.write16(pa + 2n, (v >>> 16) & 0xffff);
  }

  write64(pa: bigint, v: bigint): void {
    this.#requireRam(pa + 7n, 8);
    this.write32(pa, Number(v & 0xffff_ffffn));
    this.write32(pa + 4n, Number((v >> 32n) & 0xffff_ffffn));
  }

  /** Copies `length` bytes starting at `pa` (may cross pages). */
  readBytes(pa: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = pa + BigInt(done);
      const o = offsetOf(at);
      const n = Math.min(PAGE_SIZE - o, length - done);
      out.set(this.#readPage(at, 1).subarray(o, o + n), done);
      done += n;
    }
    return out;
  }

  /** Writes `data` starting at `pa` (may cross pages). All pages are checked first: no partial writes. */
  writeBytes(pa: bigint, data: Uint8Array): void {
    for (let done = 0; done < data.length; done += PAGE_SIZE - offsetOf(pa + BigInt(done))) {
      this.#requireRam(pa + BigInt(done), data.length);
    }
    let done = 0;
    while (done < data.length) {
      const at = pa + BigInt(done);
      const o = offsetOf(at);
      const n = Math.min(PAGE_SIZE - o, data.length - done);
      this.#writePage(at, 1).set(data.subarray(done, done + n), o);
      done += n;
    }
  }

  toJSON(): Json {
    return {
      regions: this.regions.map((r) => ({ base: hex(r.base), size: hex(r.size) })),
      materialised_pages: this.materialisedPages,
    };
  }

  #materialise(ppn: number): boolean {
    if (!this.isRam(ppn)) return false;
    const u32 = new Uint32Array(PAGE_SIZE / 4);
    this.#u32.set(ppn, u32);
    this.#u8.set(ppn, new Uint8Array(u32.buffer));
    return true;
  }

  #requireRam(pa: bigint, size: number): number {
    if (pa < 0n || pa >= 1n << BigInt(PA_BITS)) {
      throw new SimError(`physical address ${hex(pa)} is beyond ${PA_BITS} bits`);
    }
    const ppn = pageOf(pa);
    if (!this.isRam(ppn)) throw new SimError(`no RAM at ${hex(pa)} (access of ${size} bytes)`);
    return ppn;
  }

  #readPage(pa: bigint, size: number): Uint8Array {
    return this.pageU8(this.#requireRam(pa, size))!;
  }

  #readPageU32(pa: bigint): Uint32Array {
    return this.pageU32(this.#requireRam(pa, 4))!;
  }

  #writePage(pa: bigint, size: number): Uint8Array {
    return this.writablePageU8(this.#requireRam(pa, size))!;
  }

  #writePageU32(pa: bigint): Uint32Array {
    return this.writablePageU32(this.#requireRam(pa, 4))!;
  }
}

/**
 * Hands out 4 KiB frames of one RAM region, lowest free first (deterministic), zeroed, with
 * accounting. Contiguous naturally-aligned runs serve queues, tables and DMA buffers.
 */
export class FrameAllocator {
  readonly #mem: PhysicalMemory;
  readonly #first: number;
  readonly #count: number;
  readonly #used: Uint32Array;
  #inUse = 0;
  #peak = 0;
  #hint = 0;

  constructor(memory: PhysicalMemory, region: RamRegion = memory.regions[0]!) {
    if (!memory.regions.includes(region)) throw new SimError("region is not RAM of this memory");
    this.#mem = memory;
    this.#first = pageOf(region.base);
    this.#count = Number(region.size >> BigInt(PAGE_SHIFT));
    this.#used = new Uint32Array(Math.ceil(this.#count / 32));
  }

  get totalFrames(): number {
    return this.#count;
  }

  get framesInUse(): number {
    return this.#inUse;
  }

  get peakFramesInUse(): number {
    return this.#peak;
  }

  /** One zeroed frame's page number, or -1 when memory is exhausted. */
  alloc(): number {
    for (let i = this.#hint; i < this.#count; i++) {
      if (!this.#isUsed(i)) {
        this.#take(i, 1);
        this.#hint = i + 1;
        return this.#first + i;
      }
    }
    return -1;
  }

  /**
   * `count` contiguous zeroed frames whose first page number is a multiple of `alignFrames`
   * (absolute, so the physical address is aligned); -1 if no such run is free.
   */
  allocContiguous(count: number, alignFrames = 1): number {
    if (count < 1 || alignFrames < 1 || !Number.isInteger(count)) {
      throw new SimError(`bad contiguous allocation: ${count} frames aligned to ${alignFrames}`);
    }
    const start0 = Math.ceil(this.#first / alignFrames) * alignFrames - this.#first;
    for (let i = start0; i + count <= this.#count; i += alignFrames) {
      let j = 0;
      while (j < count && !this.#isUsed(i + j)) j++;
      if (j === count) {
        this.#take(i, count);
        return this.#first + i;
      }
    }
    return -1;
  }

  /** Frees `count` frames starting at `ppn`; freeing a free frame is a bug and throws. */
  free(ppn: number, count = 1): void {
    for (let k = 0; k < count; k++) {
      const i = ppn + k - this.#first;
      if (i < 0 || i >= this.#count || !this.#isUsed(i)) {
        throw new SimError(`freeing frame ${hex(ppn + k)} that is not allocated`);
      }
    }
    for (let k = 0; k < count; k++) {
      const i = ppn + k - this.#first;
      this.#used[i >>> 5]! &= ~(1 << (i & 31));
      this.#mem.zeroPage(ppn + k);
    }
    this.#inUse -= count;
    const i0 = ppn - this.#first;
    if (i0 < this.#hint) this.#hint = i0;
  }

  isAllocated(ppn: number): boolean {
    const i = ppn - this.#first;
    return i >= 0 && i < this.#count && this.#isUsed(i);
  }

  toJSON(): Json {
    return {
      total_frames: this.#count,
      frames_in_use: this.#inUse,
      peak_frames_in_use: this.#peak,
    };
  }

  #isUsed(i: number): boolean {
    return (this.#used[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  #take(i: number, count: number): void {
    for (let k = 0; k < count; k++) {
      this.#used[(i + k) >>> 5]! |= 1 << ((i + k) & 31);
      this.#mem.zeroPage(this.#first + i + k);
    }
    this.#inUse += count;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
  }
}
