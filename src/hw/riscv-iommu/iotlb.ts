// The IOTLB part of the IOMMU address-translation caches (IOATC, "Caching in-memory data
// structures"). One entry caches one successful translation, from the IOVA straight to the
// supervisor physical page, tagged as "Identifiers used to tag IOATC entries" allows:
//
//   - the GSCID when the second stage is active, or "host" when it is Bare;
//   - the PSCID when the first stage is active (none when it is Bare), and the first-stage G
//     bit: a global entry matches every PSCID of its GSCID / of the host;
//   - the IOVA page range, and for entries built with an active second stage the range of the
//     G-stage leaf that produced them (for IOTINVAL.GVMA with an address).
//
// Entries keep the raw leaf permission bits of each stage; the permission checks are made on
// every hit, so a hit never depends on how the entry was first used. A hit never re-reads
// memory: an entry stays until an IOTINVAL drops it or it is replaced (least recently used).
//
// Which entries each command drops (the model's reading of "IOTINVAL.VMA operands and
// operations", "IOTINVAL.GVMA operands and operations" and the NL/S extensions):
//   - IOTINVAL.VMA acts on entries holding first-stage information: GV=0 host entries, GV=1
//     entries of GSCID; PSCV=1 only that PSCID and never global entries; AV=1 only entries
//     whose first-stage leaf range overlaps ADDR (or the S range): an entry smaller than its
//     first-stage leaf (a two-stage entry cut down by a smaller G-stage leaf, or a 4 KiB entry
//     with MSI page tables on) still holds that leaf, which "corresponds to the IOVA in ADDR".
//     G-stage-only entries are untouched (like HFENCE.VVMA, the first-stage fence).
//   - IOTINVAL.GVMA acts on entries holding G-stage information: GV=0 all of them, GV=1 those
//     of GSCID; with GV=AV=1 only entries whose G-stage leaf range overlaps ADDR (or the S range).
//   - NL needs nothing more: only leaf translations are cached.

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";

/** The PSCID tag of global entries (PSCIDs are 20-bit). */
const GLOBAL_TAG = 0x10_0000;
const NO_ID = -1;
const TWO32 = 0x1_0000_0000;

/** Size classes: log2 of the entry size in pages (4 KiB, 64 KiB NAPOT, 2 MiB … 256 TiB). */
const CLASS_LOG2_PAGES = [0, 4, 9, 18, 27, 36] as const;

/** 2^i for i in 0..64, exact: the hot paths look powers of two up instead of computing them. */
const POW2: readonly number[] = Array.from({ length: 65 }, (_, i) => 2 ** i);

/**
 * `vpn` rounded down to a multiple of 2^log2 pages (log2 one of CLASS_LOG2_PAGES), without the
 * floating-point `%` (slow for page numbers above 2^31).
 */
function alignPages(vpn: number, log2: number): number {
  if (log2 === 0) return vpn;
  if (log2 < 31) return vpn - ((vpn >>> 0) & (POW2[log2]! - 1));
  const hi = Math.floor(vpn / TWO32);
  return (hi - (hi & (POW2[log2 - 32]! - 1))) * TWO32;
}

function classOf(log2Pages: number): number {
  return CLASS_LOG2_PAGES.indexOf(log2Pages as (typeof CLASS_LOG2_PAGES)[number]);
}

/**
 * Hash of an entry's tag (all parts small integers or a page number below 2^52), as a signed
 * 32-bit integer: callers keep its low bits, and a small integer needs no heap number.
 */
function hashTag(gTag: number, pTag: number, cls: number, vpnBase: number): number {
  const lo = vpnBase >>> 0;
  const hi = (vpnBase / TWO32) | 0;
  let h = Math.imul(lo ^ Math.imul(hi, 0x27d4_eb2d), 0x9e37_79b1);
  h ^= Math.imul((gTag << 21) ^ pTag ^ (cls << 28), 0x85eb_ca6b);
  return h ^ (h >>> 15);
}

export class IotlbEntry {
  /** GSCID, or -1 when the second stage was Bare. */
  gscid = NO_ID;
  /** PSCID, or -1 when the first stage was Bare. */
  pscid = NO_ID;
  global = false;
  /** First IOVA page of the entry and log2 of its size in pages. */
  vpnBase = 0;
  log2Pages = 0;
  /** Physical page of `vpnBase`. */
  ppnBase = 0;
  /** Guest physical page of `vpnBase` (equals ppnBase when the second stage was Bare). */
  gpaBase = 0;
  /** log2 pages of the G-stage leaf (0 when Bare). */
  gLog2Pages = 0;
  /** log2 pages of the first-stage leaf (0 when Bare): at least `log2Pages`. */
  s1Log2Pages = 0;
  /** Leaf PTE bits 7:0 of the first stage (0 when Bare) and of the G-stage (0 when Bare). */
  s1Perm = 0;
  gPerm = 0;
  pbmt = 0;
  hasFirstStage = false;
  hasGStage = false;
  // bookkeeping: the tag as indexed (PSCID tag GLOBAL_TAG for global entries), liveness, LRU
  pTag = 0;
  cls = 0;
  live = false;
  prev: IotlbEntry | null = null;
  next: IotlbEntry | null = null;

  toJSON(): Json {
    return {
      gscid: this.gscid < 0 ? null : this.gscid,
      pscid: this.pscid < 0 ? null : this.pscid,
      global: this.global,
      iova: hex(this.vpnBase * 4096),
      size: hex(2 ** (this.log2Pages + 12)),
      s1_leaf_size: this.hasFirstStage ? hex(2 ** (this.s1Log2Pages + 12)) : null,
      pa: hex(this.ppnBase * 4096),
      gpa: this.hasGStage ? hex(this.gpaBase * 4096) : null,
      g_leaf_size: this.hasGStage ? hex(2 ** (this.gLog2Pages + 12)) : null,
      s1_perm: this.hasFirstStage ? permString(this.s1Perm) : null,
      g_perm: this.hasGStage ? permString(this.gPerm) : null,
      pbmt: this.pbmt,
    };
  }
}

function permString(p: number): string {
  const names = "VRWXUGAD";
  let s = "";
  for (let b = 7; b >= 1; b--) s += (p >>> b) & 1 ? names[b] : "-";
  return s;
}

/** What an IOTLB insertion describes (a reusable scratch object of the caller). */
export interface IotlbFill {
  gscid: number;
  pscid: number;
  global: boolean;
  vpn: number;
  log2Pages: number;
  ppn: number;
  gpa: number;
  gLog2Pages: number;
  /** log2 pages of the first-stage leaf (ignored without a first stage). */
  s1Log2Pages: number;
  s1Perm: number;
  gPerm: number;
  pbmt: number;
  hasFirstStage: boolean;
  hasGStage: boolean;
}

export class Iotlb {
  readonly capacity: number;
  hits = 0;
  misses = 0;
  #count = 0;
  #head: IotlbEntry | null = null;
  #tail: IotlbEntry | null = null;
  readonly #free: IotlbEntry[] = [];
  /**
   * Open-addressing index (linear probing, deletion by backward shift): slot i holds an entry
   * or null. At most half full, so probes stay short. Allocation-free lookups.
   */
  readonly #slots: Array<IotlbEntry | null>;
  readonly #slotMask: number;
  /** Live entries per size class, and global ones: classes or globals absent are not probed. */
  readonly #classCount = new Int32Array(CLASS_LOG2_PAGES.length);
  #globals = 0;
  /** Live entries smaller than their first-stage leaf (the per-page VMA index misses them). */
  #split = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    let n = 16;
    while (n < capacity * 2) n *= 2;
    this.#slots = new Array<IotlbEntry | null>(n).fill(null);
    this.#slotMask = n - 1;
  }

  get size(): number {
    return this.#count;
  }

  /**
   * The entry translating page `vpn` in the address space (gscid, pscid) — -1 for "host" or
   * "first stage Bare" — including global entries of that GSCID. Marks it most recently used.
   * Does not count hits or misses (the caller decides whether the entry is usable).
   */
  lookup(gscid: number, pscid: number, vpn: number): IotlbEntry | null {
    let e = this.#probe(gscid, pscid, vpn);
    if (e === null && pscid >= 0 && this.#globals > 0) e = this.#probe(gscid, GLOBAL_TAG, vpn);
    if (e !== null && e !== this.#head) {
      this.#unlink(e);
      this.#pushFront(e);
    }
    return e;
  }

  #probe(gTag: number, pTag: number, vpn: number): IotlbEntry | null {
    const counts = this.#classCount;
    for (let c = 0; c < CLASS_LOG2_PAGES.length; c++) {
      if (counts[c] === 0) continue;
      const e = this.#find(gTag, pTag, c, alignPages(vpn, CLASS_LOG2_PAGES[c]!));
      if (e !== null) return e;
    }
    return null;
  }

  #find(gTag: number, pTag: number, cls: number, vpnBase: number): IotlbEntry | null {
    const slots = this.#slots;
    const mask = this.#slotMask;
    for (let i = hashTag(gTag, pTag, cls, vpnBase) & mask; ; i = (i + 1) & mask) {
      const e = slots[i]!;
      if (e === null) return null;
      if (e.vpnBase === vpnBase && e.cls === cls && e.pTag === pTag && e.gscid === gTag) return e;
    }
  }

  /** Caches a translation, replacing an entry with the same tag and base. */
  insert(f: IotlbFill): void {
    const cls = classOf(f.log2Pages);
    if (cls < 0) return; // not a size this IOTLB holds
    const vpnBase = alignPages(f.vpn, f.log2Pages);
    const offsetPages = f.vpn - vpnBase;
    const global = f.global && f.pscid >= 0;
    const pTag = global ? GLOBAL_TAG : f.pscid;
    const old = this.#find(f.gscid, pTag, cls, vpnBase);
    if (old !== null) this.#remove(old);
    if (this.#count >= this.capacity) this.#remove(this.#tail!);
    const e = this.#free.pop() ?? new IotlbEntry();
    e.gscid = f.gscid;
    e.pscid = f.pscid;
    e.global = global;
    e.pTag = pTag;
    e.cls = cls;
    e.vpnBase = vpnBase;
    e.log2Pages = f.log2Pages;
    e.ppnBase = f.ppn - offsetPages;
    e.gpaBase = f.gpa - offsetPages;
    e.gLog2Pages = f.gLog2Pages;
    e.s1Log2Pages = f.hasFirstStage ? Math.max(f.s1Log2Pages, f.log2Pages) : 0;
    e.s1Perm = f.s1Perm;
    e.gPerm = f.gPerm;
    e.pbmt = f.pbmt;
    e.hasFirstStage = f.hasFirstStage;
    e.hasGStage = f.hasGStage;
    e.live = true;
    const slots = this.#slots;
    const mask = this.#slotMask;
    let i = hashTag(e.gscid, pTag, cls, vpnBase) & mask;
    while (slots[i] !== null) i = (i + 1) & mask;
    slots[i] = e;
    this.#classCount[cls]!++;
    if (global) this.#globals++;
    if (e.s1Log2Pages > e.log2Pages) this.#split++;
    this.#pushFront(e);
    this.#count++;
  }

  /** Drops one entry (e.g. one found unusable on a hit, before re-walking). */
  drop(e: IotlbEntry): void {
    if (e.live) this.#remove(e);
  }

  /**
   * IOTINVAL.VMA. `gscid` is used when `gv`, `pscid` when `pscv`; with `av` the range is
   * `log2Pages` pages (0 without S) from page `addr`. Returns the number of entries dropped.
   */
  invalidateVma(
    gv: boolean,
    gscid: number,
    pscv: boolean,
    pscid: number,
    av: boolean,
    addr: number,
    log2Pages: number,
  ): number {
    const gTag = gv ? gscid : NO_ID;
    // One page of one PSCID (a driver's per-page unmap): only the entry of each size class that
    // covers the page can match, and the index finds it; global entries are not indexed by PSCID.
    // Entries cut smaller than their first-stage leaf are not found that way: then scan.
    if (av && pscv && log2Pages === 0 && this.#split === 0) {
      return this.#dropCovering(gTag, pscid, addr);
    }
    const first = alignDown(addr, log2Pages);
    const end = first + POW2[log2Pages]!;
    let n = 0;
    for (let e = this.#head; e !== null; ) {
      const next = e.next;
      if (
        e.hasFirstStage &&
        e.gscid === gTag &&
        (!pscv || (e.pscid === pscid && !e.global)) &&
        (!av || overlaps(e.vpnBase, e.s1Log2Pages, first, end))
      ) {
        this.#remove(e);
        n++;
      }
      e = next;
    }
    return n;
  }

  /** IOTINVAL.GVMA (`av` only matters with `gv`). */
  invalidateGvma(gv: boolean, gscid: number, av: boolean, addr: number, log2Pages: number): number {
    const byAddress = gv && av;
    const first = alignDown(addr, log2Pages);
    const end = first + POW2[log2Pages]!;
    let n = 0;
    for (let e = this.#head; e !== null; ) {
      const next = e.next;
      if (
        e.hasGStage &&
        (!gv || e.gscid === gscid) &&
        (!byAddress || overlaps(e.gpaBase, e.gLog2Pages, first, end))
      ) {
        this.#remove(e);
        n++;
      }
      e = next;
    }
    return n;
  }

  /** Drops everything (e.g. for tests); returns the number dropped. */
  invalidateAll(): number {
    let n = 0;
    while (this.#head !== null) {
      this.#remove(this.#head);
      n++;
    }
    return n;
  }

  /** Drops the non-global first-stage entries of (gTag, pscid) whose range holds page `vpn`. */
  #dropCovering(gTag: number, pscid: number, vpn: number): number {
    const counts = this.#classCount;
    let n = 0;
    for (let c = 0; c < CLASS_LOG2_PAGES.length; c++) {
      if (counts[c] === 0) continue;
      const e = this.#find(gTag, pscid, c, alignPages(vpn, CLASS_LOG2_PAGES[c]!));
      if (e?.hasFirstStage) {
        this.#remove(e);
        n++;
      }
    }
    return n;
  }

  /** Live entries, most recently used first. */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (let e = this.#head; e !== null; e = e.next) out.push(e);
    return out;
  }

  toJSON(): Json {
    return {
      capacity: this.capacity,
      size: this.#count,
      hits: this.hits,
      misses: this.misses,
      entries: this.entries().map((e) => e.toJSON()),
    };
  }

  #remove(e: IotlbEntry): void {
    const slots = this.#slots;
    const mask = this.#slotMask;
    let i = hashTag(e.gscid, e.pTag, e.cls, e.vpnBase) & mask;
    while (slots[i] !== e) i = (i + 1) & mask;
    // Backward-shift deletion: move later members of the probe cluster into the hole when
    // their home slot does not lie cyclically in (hole, their slot].
    let hole = i;
    for (let j = (i + 1) & mask; slots[j] !== null; j = (j + 1) & mask) {
      const x = slots[j]!;
      const home = hashTag(x.gscid, x.pTag, x.cls, x.vpnBase) & mask;
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!between) {
        slots[hole] = x;
        hole = j;
      }
    }
    slots[hole] = null;
    this.#classCount[e.cls]!--;
    if (e.global) this.#globals--;
    if (e.s1Log2Pages > e.log2Pages) this.#split--;
    e.live = false;
    this.#unlink(e);
    this.#count--;
    this.#free.push(e);
  }

  #unlink(e: IotlbEntry): void {
    if (e.prev) e.prev.next = e.next;
    else this.#head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.#tail = e.prev;
    e.prev = null;
    e.next = null;
  }

  #pushFront(e: IotlbEntry): void {
    e.next = this.#head;
    if (this.#head) this.#head.prev = e;
    this.#head = e;
    if (this.#tail === null) this.#tail = e;
  }
}

/** `x` rounded toward zero to a multiple of 2^log2 (any log2 up to 64). */
function alignDown(x: number, log2: number): number {
  return log2 === 0 ? x : x - (x % POW2[log2]!);
}

/**
 * Whether the naturally aligned 2^la pages around `a` intersect the pages [first, end) (an
 * operand range, already aligned).
 */
function overlaps(a: number, la: number, first: number, end: number): boolean {
  const a0 = alignDown(a, la);
  return a0 < end && first < a0 + POW2[la]!;
}
