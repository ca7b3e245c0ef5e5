// A RISC-V page table (any of the six modes) held in simulated physical memory, built the way
// software builds one: tables are frames from a FrameAllocator, PTEs are written into memory,
// and the hardware walker (walk.ts) reads exactly what this wrote.
//
// Mappings: `map` installs one leaf of a size the mode allows (4 KiB, 64 KiB Svnapot NAPOT =
// 16 identical level-0 PTEs with N=1 and ppn[3:0]=1000, 2 MiB, 1 GiB, 512 GiB, 256 TiB); it
// never replaces an existing mapping. `unmap` removes every mapping inside a range but never
// splits a superpage or NAPOT range. `protect` changes permission bits in a range.
// Outcomes are values (PtStatus); only misuse (a size the mode lacks, bad permission bits,
// use after destroy) throws SimError.
//
// Intermediate tables are allocated on demand. When the last valid entry of a non-root table
// goes (unmap, or a map that ran out of memory half-way), the table is reclaimed according to
// `reclaim`: "free" (default) clears its parent PTE and frees the frame at once; "defer" clears
// the parent PTE and holds the frame until `releaseDeferred()` — for owners that must first
// invalidate walk caches, as the kernel frees table pages only after the IOTLB flush; "keep"
// leaves empty tables in place until `destroy()`. Empty tables in place are reused, and a map of
// a superpage over an empty table reclaims that table.
//
// Software PTEs: a 4 KiB entry may also hold a PTE with V=0 that is not all zero — a page the OS
// keeps out of the hardware's reach with its PPN and bits preserved (Linux's PROT_NONE pages:
// V=0 with G reused as _PAGE_PROT_NONE). The walker sees V=0 and faults, as for an empty entry;
// this table counts the entry as occupied: map refuses it ("exists"), unmap removes it, and
// protect, lookup, lookupPpn, iovaToPhys and mappings — the hardware's view — pass over it.
// Only an all-zero entry is empty.
//
// This object must be the only writer of its tables' PTEs (hardware A/D updates aside): it keeps
// a count of non-empty entries per table.
//
// Hot path, on page numbers, returning small integers (PT_*), allocating nothing but table
// frames: `map4k` / `unmap4k` / `lookupPpn`; for one 4 KiB entry with any bits 9:0 (RSW and
// V=0 software PTEs included) `set4k` (a new entry), `replace4k` (rewrite in place, never
// touching table pages), `update4k` (clear/set bits); and with a caller-owned PteCursor,
// `seek4k` (read one entry), `leafRange` + `nextLeaf` (every non-empty entry of a range, in
// order, skipping empty tables) and `replaceAt` / `updateAt` / `clearAt` on the entry found.

import { hex } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import type { FrameAllocator, PhysicalMemory } from "../memory.js";
import {
  isCanonicalAddress,
  isCanonicalVpn,
  leafLevelOf,
  type PagingMode,
  signExtendVpn,
  treeVpn,
  vpnIndex,
} from "./modes.js";
import {
  NAPOT_64K_PPN_BITS,
  PTE_FLAGS_MASK,
  PTE_HI_N,
  PTE_PERM_MASK,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
  pteHi,
  pteLo,
  ptePbmt,
  ptePpn,
} from "./pte.js";
import { PteCursor } from "./pte-cursor.js";

/**
 * Outcome of a page-table operation:
 * - "ok";
 * - "exists": map over a range that already has a mapping (also inside a larger leaf);
 * - "misaligned": va or pa not aligned to the mapping size, or a range not 4 KiB aligned;
 * - "no-memory": no frame for an intermediate table (nothing is left half-built);
 * - "would-split": unmap/protect would cover only part of a superpage or NAPOT range (nothing
 *   changed);
 * - "not-mapped": nothing mapped there;
 * - "out-of-range": va not canonical (first stage) or above the GPA width (G-stage), a range
 *   crossing the non-canonical hole, or pa beyond 56 bits.
 */
export type PtStatus =
  | "ok"
  | "exists"
  | "misaligned"
  | "no-memory"
  | "would-split"
  | "not-mapped"
  | "out-of-range";

export const PT_OK = 0;
export const PT_EXISTS = 1;
export const PT_MISALIGNED = 2;
export const PT_NO_MEMORY = 3;
export const PT_WOULD_SPLIT = 4;
export const PT_NOT_MAPPED = 5;
export const PT_OUT_OF_RANGE = 6;

/** Status name of each PT_* code. */
export const PT_STATUS_NAMES: readonly PtStatus[] = Object.freeze([
  "ok",
  "exists",
  "misaligned",
  "no-memory",
  "would-split",
  "not-mapped",
  "out-of-range",
]);

export type TableReclaim = "free" | "defer" | "keep";

export interface PageTableOptions {
  readonly reclaim?: TableReclaim;
}

/** One leaf mapping: the whole leaf region (a NAPOT range counts as one 64 KiB mapping). */
export interface Mapping {
  readonly va: bigint;
  readonly pa: bigint;
  readonly size: bigint;
  /** PTE bits 7:0 (V R W X U G A D) as in memory, A/D included. */
  readonly perm: number;
  readonly pbmt: number;
}

export interface UnmapResult {
  readonly status: PtStatus;
  /** Bytes unmapped (0 unless status is "ok"). */
  readonly unmapped: bigint;
}

const TWO32 = 0x1_0000_0000;
const PPN_LIMIT = 2 ** 44;
const POW2 = new Float64Array(64).map((_, i) => 2 ** i);
const RWX = PTE_R | PTE_W | PTE_X;

// #scan operations
const SCAN_CHECK = 0;
const SCAN_REMOVE = 1;
const SCAN_PROTECT = 2;

export class PageTable {
  readonly memory: PhysicalMemory;
  readonly mode: PagingMode;
  readonly reclaim: TableReclaim;
  readonly #frames: FrameAllocator;
  #root: number;
  /** Non-empty entries of each non-root table page. */
  readonly #counts = new Map<number, number>();
  readonly #deferred: number[] = [];
  /** Table page and entry index visited at each depth (0 = root) by the last descent. */
  readonly #pathPage = new Float64Array(8);
  readonly #pathIdx = new Int32Array(8);
  /** Scratch outputs of #locate. */
  #page = 0;
  #idx = 0;
  /** Scratch accumulators of #scan. */
  #scanPages = 0;
  #scanPerm = 0;
  #scanMask = 0;
  /** Bumped whenever a table page is detached, so cursors holding its words know to re-descend. */
  #gen = 0;
  /** Cursor of the by-page-number entry operations. */
  readonly #cur = new PteCursor();

  /**
   * A new empty table (root allocated: one page, or 16 KiB aligned 4 pages for x4 modes), or
   * null when the allocator has no room for the root.
   */
  static create(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    mode: PagingMode,
    options: PageTableOptions = {},
  ): PageTable | null {
    const root =
      mode.rootPages > 1 ? frames.allocContiguous(mode.rootPages, mode.rootPages) : frames.alloc();
    if (root < 0) return null;
    return new PageTable(memory, frames, mode, root, options.reclaim ?? "free");
  }

  private constructor(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    mode: PagingMode,
    root: number,
    reclaim: TableReclaim,
  ) {
    this.memory = memory;
    this.#frames = frames;
    this.mode = mode;
    this.#root = root;
    this.reclaim = reclaim;
  }

  /** Page number of the root table (for satp/iosatp/hgatp/iohgatp.PPN). */
  get rootPpn(): number {
    this.#alive();
    return this.#root;
  }

  /** Frames this table holds: root pages, intermediate tables and deferred ones. */
  get tablePages(): number {
    return this.#root < 0 ? 0 : this.mode.rootPages + this.#counts.size + this.#deferred.length;
  }

  /** Frames detached by unmap and awaiting `releaseDeferred()` (reclaim "defer"). */
  get deferredPages(): number {
    return this.#deferred.length;
  }

  // ---------------------------------------------------------------- bigint API

  /**
   * Maps [va, va+size) to [pa, pa+size) with one leaf of `size` (a size of `mode.leafShifts`).
   * `perm`: PTE bits R W X U G A D (V is added); a leaf needs R or X, and W needs R.
   * `pbmt`: Svpbmt type 0 (PMA), 1 (NC) or 2 (IO).
   */
  map(va: bigint, pa: bigint, size: bigint, perm: number, pbmt = 0): PtStatus {
    this.#alive();
    const level = this.#levelOfSize(size);
    checkLeaf(perm, pbmt);
    if ((va & (size - 1n)) !== 0n || (pa & (size - 1n)) !== 0n) return "misaligned";
    if (!isCanonicalAddress(this.mode, va) || pa < 0n || pa >> 12n >= BigInt(PPN_LIMIT))
      return "out-of-range";
    const napot = size === 0x1_0000n;
    return PT_STATUS_NAMES[
      this.#install(Number(va >> 12n), Number(pa >> 12n), level, PTE_V | perm, pbmt, napot)
    ]!;
  }

  /**
   * Removes every mapping (and software PTE) inside [va, va+size). Refuses ("would-split",
   * nothing changed) when a superpage or NAPOT range is only partly inside. "not-mapped" when
   * the range held nothing.
   */
  unmap(va: bigint, size: bigint): UnmapResult {
    this.#alive();
    const range = this.#range(va, size);
    if (typeof range === "string") return { status: range, unmapped: 0n };
    const [start, end] = range;
    this.#scanMask = 0;
    if (this.#scanRoot(start, end, SCAN_CHECK)) return { status: "would-split", unmapped: 0n };
    this.#scanRoot(start, end, SCAN_REMOVE);
    const pages = this.#scanPages;
    if (pages === 0) return { status: "not-mapped", unmapped: 0n };
    return { status: "ok", unmapped: BigInt(pages) << 12n };
  }

  /**
   * Sets the bits of `mask` (default R W X U) in every valid leaf inside [va, va+size) to those
   * of `perm`; other bits (A, D, G unless masked, RSW, PPN, PBMT, N) are kept, software PTEs
   * left alone. Same refusals as unmap. The result must stay a legal leaf (R or X set, W only
   * with R).
   */
  protect(va: bigint, size: bigint, perm: number, mask = PTE_R | PTE_W | PTE_X | PTE_U): PtStatus {
    this.#alive();
    if (!Number.isInteger(mask) || (mask & ~PTE_PERM_MASK) !== 0) {
      throw new SimError(`protect mask 0x${mask.toString(16)} is not within PTE bits 7:1`);
    }
    const range = this.#range(va, size);
    if (typeof range === "string") return range;
    const [start, end] = range;
    this.#scanPerm = perm & mask;
    this.#scanMask = mask;
    if (this.#scanRoot(start, end, SCAN_CHECK)) return "would-split";
    if (this.#scanPages === 0) return "not-mapped";
    this.#scanRoot(start, end, SCAN_PROTECT);
    return "ok";
  }

  /** The leaf mapping that covers `va`, or null. */
  lookup(va: bigint): Mapping | null {
    this.#alive();
    if (!isCanonicalAddress(this.mode, va)) return null;
    const vpn = Number(va >> 12n);
    const found = this.#find(vpn);
    if (found < 0) return null;
    const lo = this.#leafLo;
    const hi = this.#leafHi;
    const napot = found === 0 && (hi & PTE_HI_N) !== 0;
    const shift = napot ? 16 : 12 + 9 * found;
    const size = 1n << BigInt(shift);
    let ppn = ptePpn(lo, hi);
    if (napot) ppn -= NAPOT_64K_PPN_BITS;
    return {
      va: va & ~(size - 1n),
      pa: BigInt(ppn) << 12n,
      size,
      perm: lo & 0xff,
      pbmt: ptePbmt(hi),
    };
  }

  /** The physical address `va` maps to, or 0n when unmapped (like iommu_iova_to_phys). */
  iovaToPhys(va: bigint): bigint {
    const m = this.lookup(va);
    return m === null ? 0n : m.pa + (va - m.va);
  }

  /** Every leaf mapping, in tree order (for first-stage modes: lower half, then upper half). */
  mappings(): Mapping[] {
    this.#alive();
    const out: Mapping[] = [];
    this.#collect(this.#root, this.mode.levels - 1, 0, 512 * this.mode.rootPages, out);
    return out;
  }

  /** Frees every table frame, the root included. The table is unusable afterwards. */
  destroy(): void {
    this.#alive();
    this.#gen++;
    for (const page of [...this.#counts.keys()]) this.#frames.free(page);
    this.#counts.clear();
    this.releaseDeferred();
    this.#frames.free(this.#root, this.mode.rootPages);
    this.#root = -1;
  }

  /** Frees the frames of tables detached by unmap under reclaim "defer"; returns how many. */
  releaseDeferred(): number {
    const n = this.#deferred.length;
    for (let i = 0; i < n; i++) this.#frames.free(this.#deferred[i]!);
    this.#deferred.length = 0;
    return n;
  }

  toJSON(): Json {
    return {
      mode: this.mode.name,
      root: this.#root < 0 ? null : hex(this.#root * 4096),
      table_pages: this.tablePages,
      deferred_pages: this.#deferred.length,
      reclaim: this.reclaim,
    };
  }

  // ---------------------------------------------------------------- hot path

  /**
   * Maps 4 KiB page `vpn` (a full-VA page number, as the walker takes) to `ppn`. `perm` as for
   * `map`. Returns PT_OK, PT_EXISTS, PT_NO_MEMORY or PT_OUT_OF_RANGE.
   */
  map4k(vpn: number, ppn: number, perm: number, pbmt = 0): number {
    this.#alive();
    checkLeaf(perm, pbmt);
    if (!(ppn >= 0 && ppn < PPN_LIMIT))
      throw new SimError(`ppn ${ppn} is not a 44-bit page number`);
    if (!isCanonicalVpn(this.mode, vpn)) return PT_OUT_OF_RANGE;
    return this.#install(vpn, ppn, 0, PTE_V | perm, pbmt, false);
  }

  /**
   * Unmaps the 4 KiB page `vpn` (a leaf or a software PTE). Returns PT_OK, PT_NOT_MAPPED,
   * PT_WOULD_SPLIT (the page lies in a superpage or NAPOT range) or PT_OUT_OF_RANGE.
   */
  unmap4k(vpn: number): number {
    this.#alive();
    if (!isCanonicalVpn(this.mode, vpn)) return PT_OUT_OF_RANGE;
    const mem = this.memory;
    const vlo = vpn >>> 0;
    const vhi = (vpn - vlo) / TWO32;
    let table = this.#root;
    let depth = 0;
    for (let level = this.mode.levels - 1; ; level--, depth++) {
      this.#locate(table, level, vlo, vhi);
      const page = this.#page;
      const idx = this.#idx;
      this.#pathPage[depth] = page;
      this.#pathIdx[depth] = idx;
      const words = mem.writablePageU32(page)!;
      const lo = words[idx << 1]!;
      const hi = words[(idx << 1) + 1]!;
      if ((lo & PTE_V) === 0) {
        // A software PTE (level 0, not all zero) goes like a mapping.
        if (level > 0 || (lo | hi) === 0) return PT_NOT_MAPPED;
      } else if ((lo & RWX) === 0) {
        table = ptePpn(lo, hi);
        continue;
      } else if (level > 0 || (hi & PTE_HI_N) !== 0) {
        return PT_WOULD_SPLIT;
      }
      words[idx << 1] = 0;
      words[(idx << 1) + 1] = 0;
      this.#countAdd(page, -1);
      this.#reclaimUp(this.#pathPage, this.#pathIdx, depth);
      return PT_OK;
    }
  }

  /** The 4 KiB physical page `vpn` maps to (any leaf size), or -1. No permission checks. */
  lookupPpn(vpn: number): number {
    this.#alive();
    if (!isCanonicalVpn(this.mode, vpn)) return -1;
    const level = this.#find(vpn);
    if (level < 0) return -1;
    const ppn = ptePpn(this.#leafLo, this.#leafHi);
    if (level === 0)
      return (this.#leafHi & PTE_HI_N) !== 0 ? ppn - NAPOT_64K_PPN_BITS + (vpn % 16) : ppn;
    return ppn + (vpn % POW2[9 * level]!);
  }

  // ---------------------------------------------------------------- 4 KiB entries, any bits

  /**
   * Writes a new 4 KiB entry for page `vpn` (tables allocated on demand). Like map4k, but
   * `flags` gives all of PTE bits 9:0: with V, a legal leaf (R or X, W only with R) carrying the
   * caller's RSW bits; without V, a software PTE that the walker treats as invalid and this
   * table keeps (not all zero). Returns PT_OK, PT_EXISTS (the entry, or a larger leaf over it,
   * is taken), PT_NO_MEMORY or PT_OUT_OF_RANGE.
   */
  set4k(vpn: number, ppn: number, flags: number, pbmt = 0): number {
    this.#alive();
    checkEntry(ppn, flags, pbmt);
    if (!isCanonicalVpn(this.mode, vpn)) return PT_OUT_OF_RANGE;
    return this.#install(vpn, ppn, 0, flags, pbmt, false);
  }

  /**
   * Rewrites the existing 4 KiB entry of page `vpn` (a leaf or a software PTE) in place with
   * `ppn`, `flags` and `pbmt` as for set4k. Never allocates or frees a table page, so the entry
   * changes in one write, as a kernel's set_pte does. Returns PT_OK, PT_NOT_MAPPED (empty),
   * PT_WOULD_SPLIT (the page lies in a superpage or NAPOT range) or PT_OUT_OF_RANGE.
   */
  replace4k(vpn: number, ppn: number, flags: number, pbmt = 0): number {
    checkEntry(ppn, flags, pbmt);
    const rc = this.seek4k(this.#cur, vpn);
    if (rc !== PT_OK) return rc;
    this.replaceAt(this.#cur, ppn, flags, pbmt);
    return PT_OK;
  }

  /**
   * Clears the bits of `clear` and then sets those of `set` (both within bits 9:0) in the
   * existing 4 KiB entry of page `vpn`, PPN and PBMT kept; the result must be legal as for
   * set4k. Same returns as replace4k.
   */
  update4k(vpn: number, set: number, clear: number): number {
    checkMasks(set, clear);
    const rc = this.seek4k(this.#cur, vpn);
    if (rc !== PT_OK) return rc;
    this.updateAt(this.#cur, set, clear);
    return PT_OK;
  }

  // ---------------------------------------------------------------- cursor

  /**
   * Reads the entry of page `vpn` into `cur`, which then stands on it. PT_OK: a non-empty 4 KiB
   * entry, a leaf or a software PTE (`cur.valid` tells which); PT_NOT_MAPPED: nothing there
   * (`cur.empty`); PT_WOULD_SPLIT: the page lies in a superpage or NAPOT leaf, which `cur`
   * describes; PT_OUT_OF_RANGE.
   */
  seek4k(cur: PteCursor, vpn: number): number {
    this.#alive();
    this.#takeCursor(cur);
    cur.vpn = vpn;
    cur.level = 0;
    cur.pages = 1;
    if (!isCanonicalVpn(this.mode, vpn)) return PT_OUT_OF_RANGE;
    const tvpn = treeVpn(this.mode, vpn);
    const vlo = vpn >>> 0;
    const vhi = (vpn - vlo) / TWO32;
    let table = this.#root;
    for (let level = this.mode.levels - 1, depth = 0; ; level--, depth++) {
      this.#locate(table, level, vlo, vhi);
      const page = this.#page;
      const idx = this.#idx;
      cur.pathPage[depth] = page;
      cur.pathIdx[depth] = idx;
      if (level === 0) {
        const words = this.memory.writablePageU32(page)!;
        const lo = words[idx << 1]!;
        const hi = words[(idx << 1) + 1]!;
        cur.words = words;
        cur.gen = this.#gen;
        cur.tableBase = tvpn - idx;
        cur.depth = depth;
        if ((lo & PTE_V) !== 0 && (hi & PTE_HI_N) !== 0) {
          cur.index = idx & ~15;
          this.#fill(cur, cur.tableBase + cur.index, 0, 16, lo, hi);
          return PT_WOULD_SPLIT;
        }
        cur.index = idx;
        cur.lo = lo;
        cur.hi = hi;
        return (lo | hi) === 0 ? PT_NOT_MAPPED : PT_OK;
      }
      const words = this.memory.pageU32(page)!;
      const lo = words[idx << 1]!;
      const hi = words[(idx << 1) + 1]!;
      if ((lo & PTE_V) === 0) return PT_NOT_MAPPED;
      if ((lo & RWX) !== 0) {
        const span = POW2[9 * level]!;
        this.#fill(cur, tvpn - (tvpn % span), level, span, lo, hi);
        return PT_WOULD_SPLIT;
      }
      table = ptePpn(lo, hi);
    }
  }

  /**
   * Starts an iteration of `cur` over the pages [startVpn, endVpn) (input page numbers, end
   * exclusive, both in the same half of a first-stage space); `nextLeaf` then moves it. Returns
   * PT_OK, or PT_OUT_OF_RANGE for a non-canonical range or one across the hole.
   */
  leafRange(cur: PteCursor, startVpn: number, endVpn: number): number {
    this.#alive();
    if (!Number.isSafeInteger(startVpn) || !Number.isSafeInteger(endVpn) || endVpn < startVpn) {
      throw new SimError(`[${startVpn}, ${endVpn}) is not a range of page numbers`);
    }
    this.#takeCursor(cur);
    if (startVpn === endVpn) return PT_OK;
    if (!isCanonicalVpn(this.mode, startVpn) || !isCanonicalVpn(this.mode, endVpn - 1)) {
      return PT_OUT_OF_RANGE;
    }
    const start = treeVpn(this.mode, startVpn);
    const end = treeVpn(this.mode, endVpn - 1) + 1;
    if (end - start !== endVpn - startVpn) return PT_OUT_OF_RANGE;
    cur.next = start;
    cur.end = end;
    return PT_OK;
  }

  /**
   * Moves `cur` to the next non-empty entry of its range in address order — each leaf once (a
   * superpage or NAPOT range too, also one that begins before the range) and each software
   * PTE — and returns true; false at the end. Empty tables are skipped without visiting their
   * entries. The table may change between calls, through the cursor (replaceAt, updateAt,
   * clearAt) or otherwise: the cursor goes on from the page after the entry it stood on.
   */
  nextLeaf(cur: PteCursor): boolean {
    this.#alive();
    if (cur.owner !== this)
      throw new SimError("nextLeaf: the cursor was not started on this table");
    const end = cur.end;
    let pos = cur.next;
    while (pos < end) {
      const words = cur.words;
      const base = cur.tableBase;
      if (words !== null && cur.gen === this.#gen && pos >= base && pos - base < 512) {
        // Inside the level-0 table found last time: a plain scan of its entries.
        const stop = end - base < 512 ? end - base : 512;
        for (let e = pos - base; e < stop; e++) {
          const lo = words[e << 1]!;
          const hi = words[(e << 1) + 1]!;
          if ((lo | hi) === 0) continue;
          const napot = (lo & PTE_V) !== 0 && (hi & PTE_HI_N) !== 0;
          const first = napot ? e & ~15 : e;
          const pages = napot ? 16 : 1;
          this.#fill(cur, base + first, 0, pages, lo, hi);
          cur.index = first;
          cur.next = base + first + pages;
          return true;
        }
        pos = base + 512;
        continue;
      }
      pos = this.#descend(cur, pos, end);
      if (pos < 0) return true;
    }
    cur.next = end;
    return false;
  }

  /**
   * Rewrites the 4 KiB entry `cur` stands on (non-empty) with `ppn`, `flags` and `pbmt`, as
   * replace4k does. Misuse throws: a cursor of another table, on no 4 KiB entry, on an entry
   * emptied since, or stale (table pages were reclaimed since it moved — seek again).
   */
  replaceAt(cur: PteCursor, ppn: number, flags: number, pbmt = 0): void {
    checkEntry(ppn, flags, pbmt);
    const words = this.#slot(cur, "replaceAt");
    const lo = pteLo(ppn, flags);
    const hi = pteHi(ppn, pbmt, false);
    words[cur.index << 1] = lo;
    words[(cur.index << 1) + 1] = hi;
    cur.lo = lo;
    cur.hi = hi;
  }

  /**
   * Clears `clear` and then sets `set` (bits 9:0) in the 4 KiB entry `cur` stands on, as
   * update4k does, reading the entry from memory (hardware A/D updates included). Misuse
   * throws as for replaceAt.
   */
  updateAt(cur: PteCursor, set: number, clear: number): void {
    checkMasks(set, clear);
    const words = this.#slot(cur, "updateAt");
    const w = cur.index << 1;
    const hi = words[w + 1]!;
    const lo = ((words[w]! & ~clear) | set) >>> 0;
    if ((lo & PTE_V) !== 0) checkLeaf(lo & 0xff, 0);
    else if ((lo | hi) === 0)
      throw new SimError("updateAt would leave an all-zero entry; use clearAt");
    words[w] = lo;
    cur.lo = lo;
    cur.hi = hi;
  }

  /**
   * Empties the 4 KiB entry `cur` stands on; a table left empty is reclaimed per `reclaim`.
   * Misuse throws as for replaceAt.
   */
  clearAt(cur: PteCursor): void {
    const words = this.#slot(cur, "clearAt");
    words[cur.index << 1] = 0;
    words[(cur.index << 1) + 1] = 0;
    cur.lo = 0;
    cur.hi = 0;
    this.#countAdd(cur.pathPage[cur.depth]!, -1);
    this.#reclaimUp(cur.pathPage, cur.pathIdx, cur.depth);
  }

  // ---------------------------------------------------------------- internals

  #leafLo = 0;
  #leafHi = 0;

  #alive(): void {
    if (this.#root < 0) throw new SimError("page table used after destroy()");
  }

  #levelOfSize(size: bigint): number {
    const shift = size > 0n && (size & (size - 1n)) === 0n ? size.toString(2).length - 1 : -1;
    const level = shift < 0 ? -1 : leafLevelOf(this.mode, shift);
    if (level < 0) throw new SimError(`${hex(size)} is not a leaf size of ${this.mode.name}`);
    return level;
  }

  /** Sets #page/#idx to the page and index of `vpn`'s entry in `table` at `level`. */
  #locate(table: number, level: number, vlo: number, vhi: number): void {
    const idx = vpnIndex(this.mode, level, vlo, vhi);
    this.#page = table + (idx >>> 9);
    this.#idx = idx & 511;
  }

  /** Descends to the leaf of `vpn`; returns its level (PTE in #leafLo/#leafHi) or -1. */
  #find(vpn: number): number {
    const vlo = vpn >>> 0;
    const vhi = (vpn - vlo) / TWO32;
    let table = this.#root;
    for (let level = this.mode.levels - 1; level >= 0; level--) {
      this.#locate(table, level, vlo, vhi);
      const words = this.memory.pageU32(this.#page)!;
      const lo = words[this.#idx << 1]!;
      const hi = words[(this.#idx << 1) + 1]!;
      if ((lo & PTE_V) === 0) return -1;
      if ((lo & RWX) !== 0) {
        this.#leafLo = lo;
        this.#leafHi = hi;
        return level;
      }
      table = ptePpn(lo, hi);
    }
    return -1;
  }

  /**
   * Installs a leaf with bits 9:0 `flags` at `level` (NAPOT: 16 level-0 entries); returns a PT_*
   * code.
   */
  #install(
    vpn: number,
    ppn: number,
    level: number,
    flags: number,
    pbmt: number,
    napot: boolean,
  ): number {
    const mem = this.memory;
    const vlo = vpn >>> 0;
    const vhi = (vpn - vlo) / TWO32;
    let table = this.#root;
    let depth = 0;
    for (let i = this.mode.levels - 1; i > level; i--, depth++) {
      this.#locate(table, i, vlo, vhi);
      const page = this.#page;
      const w = this.#idx << 1;
      this.#pathPage[depth] = page;
      this.#pathIdx[depth] = this.#idx;
      const words = mem.writablePageU32(page)!;
      const lo = words[w]!;
      if ((lo & PTE_V) !== 0) {
        if ((lo & RWX) !== 0) return PT_EXISTS;
        table = ptePpn(lo, words[w + 1]!);
        continue;
      }
      const t = this.#frames.alloc();
      if (t < 0) {
        // Undo the tables this call created (each holds only the pointer to the next).
        this.#reclaimUp(this.#pathPage, this.#pathIdx, depth, true);
        return PT_NO_MEMORY;
      }
      words[w] = pteLo(t, PTE_V);
      words[w + 1] = pteHi(t, 0, false);
      this.#countAdd(page, 1);
      this.#counts.set(t, 0);
      table = t;
    }
    this.#locate(table, level, vlo, vhi);
    const page = this.#page;
    const words = mem.writablePageU32(page)!;
    const count = napot ? 16 : 1;
    const first = napot ? this.#idx & ~15 : this.#idx;
    for (let k = 0; k < count; k++) {
      const w = (first + k) << 1;
      const lo = words[w]!;
      if ((lo & PTE_V) === 0) {
        if (level > 0 || (lo | words[w + 1]!) === 0) continue;
        return PT_EXISTS; // a software PTE
      }
      if ((lo & RWX) !== 0) return PT_EXISTS;
      const child = ptePpn(lo, words[w + 1]!);
      if (this.#counts.get(child) !== 0) return PT_EXISTS;
      // An empty table left in place ("keep") gives way to the superpage.
      this.#unlink(page, words, w, child);
    }
    const leafPpn = napot ? ppn + NAPOT_64K_PPN_BITS : ppn;
    const lo = pteLo(leafPpn, flags);
    const hi = pteHi(leafPpn, pbmt, napot);
    for (let k = 0; k < count; k++) {
      const w = (first + k) << 1;
      words[w] = lo;
      words[w + 1] = hi;
    }
    this.#countAdd(page, count);
    return PT_OK;
  }

  /** Makes `cur` this table's, standing on no entry (empty PTE, no table, no iteration). */
  #takeCursor(cur: PteCursor): void {
    cur.owner = this;
    cur.words = null;
    cur.index = -1;
    cur.lo = 0;
    cur.hi = 0;
    cur.next = 0;
    cur.end = 0;
  }

  /** Sets the leaf fields of `cur`: tree page `tbase` (sign-extended), level, pages, PTE. */
  #fill(cur: PteCursor, tbase: number, level: number, pages: number, lo: number, hi: number): void {
    cur.vpn = signExtendVpn(this.mode, tbase);
    cur.level = level;
    cur.pages = pages;
    cur.lo = lo;
    cur.hi = hi;
  }

  /**
   * From the root towards tree page `pos` (< `end`) for nextLeaf: skips empty entries at every
   * level. Returns `pos` with `cur.words` set to the level-0 table to scan from there; or the
   * tree page after a table with nothing left at or after `pos` (the caller descends again from
   * there); or -1 with `cur` on a superpage leaf.
   */
  #descend(cur: PteCursor, pos: number, end: number): number {
    const mem = this.memory;
    cur.words = null;
    let table = this.#root;
    let level = this.mode.levels - 1;
    let base = 0;
    let entries = 512 * this.mode.rootPages;
    for (let depth = 0; ; depth++) {
      if (level === 0) {
        cur.words = mem.writablePageU32(table)!;
        cur.gen = this.#gen;
        cur.tableBase = base;
        cur.depth = depth;
        cur.pathPage[depth] = table;
        return pos;
      }
      const span = POW2[9 * level]!;
      let child = -1;
      for (let e = Math.floor((pos - base) / span); e < entries; e++) {
        const eBase = base + e * span;
        if (eBase >= end) return end;
        const page = table + (e >>> 9);
        const w = (e & 511) << 1;
        const words = mem.pageU32(page)!;
        const lo = words[w]!;
        if ((lo & PTE_V) === 0) continue;
        const hi = words[w + 1]!;
        if ((lo & RWX) !== 0) {
          this.#fill(cur, eBase, level, span, lo, hi);
          cur.next = eBase + span;
          return -1;
        }
        cur.pathPage[depth] = page;
        cur.pathIdx[depth] = e & 511;
        child = ptePpn(lo, hi);
        if (eBase > pos) pos = eBase;
        base = eBase;
        break;
      }
      if (child < 0) return base + entries * span;
      table = child;
      level--;
      entries = 512;
    }
  }

  /** The words of the 4 KiB entry `cur` stands on, after the checks of replaceAt & co. */
  #slot(cur: PteCursor, what: string): Uint32Array {
    this.#alive();
    const words = cur.words;
    if (cur.owner !== this || words === null || cur.pages !== 1 || cur.index < 0) {
      throw new SimError(`${what}: the cursor does not stand on a 4 KiB entry of this table`);
    }
    if (cur.gen !== this.#gen) {
      throw new SimError(`${what}: the cursor is stale (table pages were reclaimed); seek again`);
    }
    if ((words[cur.index << 1]! | words[(cur.index << 1) + 1]!) === 0) {
      throw new SimError(`${what}: the cursor's entry is empty`);
    }
    return words;
  }

  #countAdd(page: number, delta: number): void {
    if (page - this.#root < this.mode.rootPages && page >= this.#root) return;
    this.#counts.set(page, this.#counts.get(page)! + delta);
  }

  /**
   * After an entry of the table at path depth `depth` went away: reclaims that table and its
   * ancestors while they are empty (never the root). `pathPage`/`pathIdx`: the table page and
   * entry index visited at each depth on the way down.
   */
  #reclaimUp(pathPage: Float64Array, pathIdx: Int32Array, depth: number, always = false): void {
    if (this.reclaim === "keep" && !always) return;
    for (let d = depth; d > 0; d--) {
      const page = pathPage[d]!;
      if (this.#counts.get(page) !== 0) return;
      const parent = pathPage[d - 1]!;
      const w = pathIdx[d - 1]! << 1;
      this.#unlink(parent, this.memory.writablePageU32(parent)!, w, page);
    }
  }

  /**
   * Clears the entry at word `w` of table `page` (whose words are `words`), which points to the
   * empty table `child`, and frees `child`.
   */
  #unlink(page: number, words: Uint32Array, w: number, child: number): void {
    words[w] = 0;
    words[w + 1] = 0;
    this.#countAdd(page, -1);
    this.#counts.delete(child);
    this.#release(child);
  }

  #release(page: number): void {
    this.#gen++;
    if (this.reclaim === "defer") this.#deferred.push(page);
    else this.#frames.free(page);
  }

  /** The tree-page range [start, end) of [va, va+size), or the status refusing it. */
  #range(va: bigint, size: bigint): [number, number] | PtStatus {
    if ((va & 0xfffn) !== 0n || (size & 0xfffn) !== 0n || size <= 0n) return "misaligned";
    const last = va + size - 1n;
    if (!isCanonicalAddress(this.mode, va) || !isCanonicalAddress(this.mode, last))
      return "out-of-range";
    const start = treeVpn(this.mode, Number(va >> 12n));
    const end = treeVpn(this.mode, Number(last >> 12n)) + 1;
    // Both ends canonical but in different halves: the range covers the non-canonical hole.
    if (end - start !== Number(size >> 12n)) return "out-of-range";
    return [start, end];
  }

  /** Runs #scan over the root; returns true if a leaf straddles the range (CHECK only). */
  #scanRoot(start: number, end: number, op: number): boolean {
    this.#scanPages = 0;
    return this.#scan(
      this.#root,
      this.mode.levels - 1,
      0,
      512 * this.mode.rootPages,
      start,
      end,
      op,
    );
  }

  /**
   * Visits the entries of `table` (covering tree pages from `base`, `entries` entries at
   * `level`) that intersect [start, end). CHECK counts mapped pages and reports straddling
   * leaves; REMOVE clears leaves and reclaims emptied tables; PROTECT rewrites permissions.
   */
  #scan(
    table: number,
    level: number,
    base: number,
    entries: number,
    start: number,
    end: number,
    op: number,
  ): boolean {
    const span = POW2[9 * level]!;
    const e0 = Math.max(0, Math.floor((start - base) / span));
    const e1 = Math.min(entries, Math.ceil((end - base) / span));
    for (let e = e0; e < e1; e++) {
      const page = table + (e >>> 9);
      const w = (e & 511) << 1;
      const words = this.memory.writablePageU32(page)!;
      const lo = words[w]!;
      const hi = words[w + 1]!;
      if ((lo & PTE_V) === 0) {
        // A software PTE is removed by unmap (and counted as unmapped); protect leaves it.
        if (level === 0 && op === SCAN_REMOVE && (lo | hi) !== 0) {
          words[w] = 0;
          words[w + 1] = 0;
          this.#countAdd(page, -1);
          this.#scanPages++;
        }
        continue;
      }
      const eBase = base + e * span;
      if ((lo & RWX) === 0) {
        const child = ptePpn(lo, hi);
        if (this.#scan(child, level - 1, eBase, 512, start, end, op)) return true;
        if (op === SCAN_REMOVE && this.#counts.get(child) === 0 && this.reclaim !== "keep") {
          this.#unlink(page, words, w, child);
        }
        continue;
      }
      const napot = level === 0 && (hi & PTE_HI_N) !== 0;
      const lBase = napot ? base + (e & ~15) : eBase;
      const lSpan = napot ? 16 : span;
      if (lBase < start || lBase + lSpan > end) {
        if (op === SCAN_CHECK) return true;
        throw new SimError("page table changed between check and apply");
      }
      this.#scanPages += span;
      const next = ((lo & ~this.#scanMask) | this.#scanPerm) >>> 0;
      if (op === SCAN_CHECK) {
        // protect: refuse (before changing anything) a result that is no legal leaf.
        if (this.#scanMask !== 0) checkLeaf(next & PTE_PERM_MASK, 0);
      } else if (op === SCAN_REMOVE) {
        words[w] = 0;
        words[w + 1] = 0;
        this.#countAdd(page, -1);
      } else {
        words[w] = next;
      }
    }
    return false;
  }

  #collect(table: number, level: number, base: number, entries: number, out: Mapping[]): void {
    const span = POW2[9 * level]!;
    for (let e = 0; e < entries; e++) {
      const words = this.memory.pageU32(table + (e >>> 9))!;
      const w = (e & 511) << 1;
      const lo = words[w]!;
      const hi = words[w + 1]!;
      if ((lo & PTE_V) === 0) continue;
      const eBase = base + e * span;
      if ((lo & RWX) === 0) {
        this.#collect(ptePpn(lo, hi), level - 1, eBase, 512, out);
        continue;
      }
      const napot = level === 0 && (hi & PTE_HI_N) !== 0;
      if (napot && (e & 15) !== 0) continue;
      const shift = napot ? 16 : 12 + 9 * level;
      const ppn = ptePpn(lo, hi) - (napot ? NAPOT_64K_PPN_BITS : 0);
      out.push({
        va: BigInt(signExtendVpn(this.mode, eBase)) << 12n,
        pa: BigInt(ppn) << 12n,
        size: 1n << BigInt(shift),
        perm: lo & 0xff,
        pbmt: ptePbmt(hi),
      });
    }
  }
}

/**
 * Throws unless `ppn`, bits 9:0 `flags` and `pbmt` make a 4 KiB entry for set4k & co: a legal
 * leaf when V is set, else any software PTE that is not all zero.
 */
function checkEntry(ppn: number, flags: number, pbmt: number): void {
  if (!(Number.isInteger(ppn) && ppn >= 0 && ppn < PPN_LIMIT)) {
    throw new SimError(`ppn ${ppn} is not a 44-bit page number`);
  }
  if (!Number.isInteger(flags) || (flags & ~PTE_FLAGS_MASK) !== 0) {
    throw new SimError(`PTE flags 0x${flags.toString(16)} have bits beyond PTE bits 9:0`);
  }
  if ((flags & PTE_V) !== 0) checkLeaf(flags & 0xff, pbmt);
  else if (pbmt !== 0 && pbmt !== 1 && pbmt !== 2)
    throw new SimError(`PBMT ${pbmt} is not PMA/NC/IO`);
  else if (ppn === 0 && flags === 0 && pbmt === 0) {
    throw new SimError("an all-zero PTE is an empty entry, not a software PTE (unmap it instead)");
  }
}

/** Throws unless `set` and `clear` are bit masks within PTE bits 9:0. */
function checkMasks(set: number, clear: number): void {
  if (
    !Number.isInteger(set) ||
    !Number.isInteger(clear) ||
    ((set | clear) & ~PTE_FLAGS_MASK) !== 0
  ) {
    throw new SimError(
      `PTE bit masks 0x${set.toString(16)}/0x${clear.toString(16)} go beyond bits 9:0`,
    );
  }
}

/** Throws unless `perm` is a legal leaf (R or X; W only with R; bits 7:1 only) and pbmt 0-2. */
function checkLeaf(perm: number, pbmt: number): void {
  if (!Number.isInteger(perm) || (perm & ~(PTE_PERM_MASK | PTE_V)) !== 0) {
    throw new SimError(`leaf permission 0x${perm.toString(16)} has bits beyond PTE bits 7:0`);
  }
  if ((perm & RWX) === 0) throw new SimError("a leaf needs R, W or X (R=W=X=0 is a table pointer)");
  if ((perm & (PTE_R | PTE_W)) === PTE_W) throw new SimError("W without R is a reserved encoding");
  if (pbmt !== 0 && pbmt !== 1 && pbmt !== 2) throw new SimError(`PBMT ${pbmt} is not PMA/NC/IO`);
}
