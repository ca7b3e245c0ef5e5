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
//     whose IOVA range overlaps ADDR (or the S range). G-stage-only entries are untouched
//     (like HFENCE.VVMA, the first-stage fence).
//   - IOTINVAL.GVMA acts on entries holding G-stage information: GV=0 all of them, GV=1 those
//     of GSCID; with GV=AV=1 only entries whose G-stage leaf range overlaps ADDR (or the S range).
//   - NL needs nothing more: only leaf translations are cached.

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";

const TWO21 = 0x20_0000;
/** The PSCID tag value of global entries in the space key. */
const GLOBAL_TAG = TWO21 - 1;
const NO_ID = -1;

/** Size classes: log2 of the entry size in pages (4 KiB, 64 KiB NAPOT, 2 MiB … 256 TiB). */
const CLASS_LOG2_PAGES = [0, 4, 9, 18, 27, 36] as const;

function classOf(log2Pages: number): number {
  const c = CLASS_LOG2_PAGES.indexOf(log2Pages as (typeof CLASS_LOG2_PAGES)[number]);
  return c;
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
  /** Leaf PTE bits 7:0 of the first stage (0 when Bare) and of the G-stage (0 when Bare). */
  s1Perm = 0;
  gPerm = 0;
  pbmt = 0;
  hasFirstStage = false;
  hasGStage = false;
  // bookkeeping
  space: Space | null = null;
  cls = 0;
  prev: IotlbEntry | null = null;
  next: IotlbEntry | null = null;

  toJSON(): Json {
    return {
      gscid: this.gscid < 0 ? null : this.gscid,
      pscid: this.pscid < 0 ? null : this.pscid,
      global: this.global,
      iova: hex(this.vpnBase * 4096),
      size: hex(2 ** (this.log2Pages + 12)),
      pa: hex(this.ppnBase * 4096),
      gpa: this.hasGStage ? hex(this.gpaBase * 4096) : null,
      gLeafSize: this.hasGStage ? hex(2 ** (this.gLog2Pages + 12)) : null,
      s1Perm: this.hasFirstStage ? permString(this.s1Perm) : null,
      gPerm: this.hasGStage ? permString(this.gPerm) : null,
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

interface Space {
  readonly key: number;
  /** Bit c set when maps[c] holds entries. */
  mask: number;
  readonly maps: Map<number, IotlbEntry>[];
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
  readonly #spaces = new Map<number, Space>();
  #count = 0;
  #head: IotlbEntry | null = null;
  #tail: IotlbEntry | null = null;
  readonly #free: IotlbEntry[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
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
    const g = (gscid + 1) * TWO21;
    let e = this.#probe(this.#spaces.get(g + pscid + 1), vpn);
    if (e === null && pscid >= 0) e = this.#probe(this.#spaces.get(g + GLOBAL_TAG), vpn);
    if (e !== null && e !== this.#head) {
      this.#unlink(e);
      this.#pushFront(e);
    }
    return e;
  }

  #probe(space: Space | undefined, vpn: number): IotlbEntry | null {
    if (space === undefined) return null;
    const mask = space.mask;
    for (let c = 0; c < CLASS_LOG2_PAGES.length; c++) {
      if ((mask & (1 << c)) === 0) continue;
      const span = 2 ** CLASS_LOG2_PAGES[c]!;
      const e = space.maps[c]!.get(vpn - (vpn % span));
      if (e !== undefined) return e;
    }
    return null;
  }

  /** Caches a translation, replacing an entry with the same tag and base. */
  insert(f: IotlbFill): void {
    const cls = classOf(f.log2Pages);
    if (cls < 0) return; // not a size this IOTLB holds
    const span = 2 ** f.log2Pages;
    const vpnBase = f.vpn - (f.vpn % span);
    const offsetPages = f.vpn - vpnBase;
    const key = (f.gscid + 1) * TWO21 + (f.global && f.pscid >= 0 ? GLOBAL_TAG : f.pscid + 1);
    const old = this.#spaces.get(key)?.maps[cls]?.get(vpnBase);
    if (old !== undefined) this.#remove(old);
    if (this.#count >= this.capacity) this.#remove(this.#tail!);
    // Looked up after the removals, which may have dropped an emptied space.
    let space = this.#spaces.get(key);
    if (space === undefined) {
      space = { key, mask: 0, maps: CLASS_LOG2_PAGES.map(() => new Map<number, IotlbEntry>()) };
      this.#spaces.set(key, space);
    }
    const e = this.#free.pop() ?? new IotlbEntry();
    e.gscid = f.gscid;
    e.pscid = f.pscid;
    e.global = f.global && f.pscid >= 0;
    e.vpnBase = vpnBase;
    e.log2Pages = f.log2Pages;
    e.ppnBase = f.ppn - offsetPages;
    e.gpaBase = f.gpa - offsetPages;
    e.gLog2Pages = f.gLog2Pages;
    e.s1Perm = f.s1Perm;
    e.gPerm = f.gPerm;
    e.pbmt = f.pbmt;
    e.hasFirstStage = f.hasFirstStage;
    e.hasGStage = f.hasGStage;
    e.space = space;
    e.cls = cls;
    space.maps[cls]!.set(vpnBase, e);
    space.mask |= 1 << cls;
    this.#pushFront(e);
    this.#count++;
  }

  /** Drops one entry (e.g. one found unusable on a hit, before re-walking). */
  drop(e: IotlbEntry): void {
    if (e.space !== null) this.#remove(e);
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
    return this.#dropWhere(
      (e) =>
        e.hasFirstStage &&
        e.gscid === gTag &&
        (!pscv || (e.pscid === pscid && !e.global)) &&
        (!av || overlaps(e.vpnBase, e.log2Pages, addr, log2Pages)),
    );
  }

  /** IOTINVAL.GVMA (`av` only matters with `gv`). */
  invalidateGvma(gv: boolean, gscid: number, av: boolean, addr: number, log2Pages: number): number {
    return this.#dropWhere(
      (e) =>
        e.hasGStage &&
        (!gv || e.gscid === gscid) &&
        (!gv || !av || overlaps(e.gpaBase, e.gLog2Pages, addr, log2Pages)),
    );
  }

  /** Drops everything (e.g. for tests); returns the number dropped. */
  invalidateAll(): number {
    return this.#dropWhere(() => true);
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

  #dropWhere(pred: (e: IotlbEntry) => boolean): number {
    let n = 0;
    for (let e = this.#head; e !== null; ) {
      const next = e.next;
      if (pred(e)) {
        this.#remove(e);
        n++;
      }
      e = next;
    }
    return n;
  }

  #remove(e: IotlbEntry): void {
    const space = e.space!;
    const map = space.maps[e.cls]!;
    map.delete(e.vpnBase);
    if (map.size === 0) {
      space.mask &= ~(1 << e.cls);
      if (space.mask === 0) this.#spaces.delete(space.key);
    }
    e.space = null;
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

/** Whether the naturally aligned 2^la pages around `a` and 2^lb pages around `b` intersect. */
function overlaps(a: number, la: number, b: number, lb: number): boolean {
  const sa = 2 ** la;
  const sb = 2 ** lb;
  const a0 = a - (a % sa);
  const b0 = b - (b % sb);
  return a0 < b0 + sb && b0 < a0 + sa;
}
