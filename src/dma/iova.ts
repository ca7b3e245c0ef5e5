// The IOVA allocator of Linux's drivers/iommu/iova.c (v6.16 semantics): an IOVA domain hands out
// ranges of granule-sized pages top-down below a limit, with per-CPU range caches on top
// (iova-rcache.ts). The DMA API layer (dma-iommu) allocates through allocIovaFast/freeIovaFast.
//
// Kernel → TypeScript (PFNs and sizes are plain numbers in granule units, below 2^53):
//   init_iova_domain(iovad, granule, start_pfn)     new IovaDomain(ctx, granule, startPfn, opts)
//   iova_domain_init_rcaches(iovad) → 0             domain.initRcaches(): Result
//   alloc_iova(iovad, size, limit_pfn, size_aligned) domain.allocIova(size, limitPfn, sizeAligned)
//                                                    → Iova | null
//   alloc_iova_fast(iovad, size, limit_pfn, flush)   domain.allocIovaFast(size, limitPfn,
//                                                    flushRcache, cpu = 0) → pfn, 0 on failure
//   free_iova_fast(iovad, pfn, size)                 domain.freeIovaFast(pfn, size, cpu = 0)
//   find_iova(iovad, pfn)                            domain.findIova(pfn) → Iova | null
//   free_iova(iovad, pfn)                            domain.freeIova(pfn)
//   reserve_iova(iovad, pfn_lo, pfn_hi)              domain.reserveIova(pfnLo, pfnHi) → Iova | null
//   put_iova_domain(iovad)                           domain.putIovaDomain()
//   free_cpu_cached_iovas (cpuhp dead callback)      domain.freeCpuCachedIovas(cpu)
//   iova_shift/iova_offset/iova_align/iova_dma_addr/iova_pfn   domain.shift, iovaOffset(addr), …
//   iova_rcache_range()                              iovaRcacheRange() → 128 KiB
//   iova_size(iova)                                  iovaSize(iova)
// `cpu` stands for the kernel's current CPU: the caller names it, so runs are deterministic. The
// depot trimming work runs on ctx.clock. Views: toJSON() (ranges with their kind, cached nodes,
// max32_alloc_size, rcache occupancy), ranges(), rcacheView().
//
// Allocation reproduces the kernel's addresses. Linux keeps the ranges in an rbtree with an anchor
// node at pfn ~0 and walks backwards from a cached node (cached32_node for limits at or below
// 4 GiB, cached_node above) to the first gap that fits, retrying once from the top over the part
// above the cached node. Here the ranges sit in an AVL tree augmented with the largest gap below
// each range, so the walk jumps straight to gaps of at least `size` pages: a gap smaller than
// `size` never fits, and the walk's failure test is monotone, so skipping them cannot change the
// answer (see #walk). Ranges are also threaded in address order (rb_prev/rb_next in O(1)).
// Documented divergences: Linux would retry forever when its cached 32-bit node ends right below
// start_pfn; here the retry happens once. alloc_iova_fast returns 0 both for failure and for a range
// at pfn 0 (as in Linux: keep start_pfn ≥ 1, like dma-iommu does).

import { PAGE_SIZE } from "../base/bits.js";
import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import { OK, type Result } from "../base/result.js";
import { IOVA_RANGE_CACHE_MAX_SIZE, type IovaRcacheClassView, IovaRcaches } from "./iova-rcache.js";

/** An allocated or reserved range of pfns, both ends inclusive (struct iova). */
export interface Iova {
  readonly pfnLo: number;
  readonly pfnHi: number;
}

/** iova_size: pages in the range. */
export function iovaSize(iova: Iova): number {
  return iova.pfnHi - iova.pfnLo + 1;
}

/** iova_rcache_range: bytes of the largest cached range, PAGE_SIZE << (MAX_SIZE - 1). */
export function iovaRcacheRange(): bigint {
  return BigInt(PAGE_SIZE) << BigInt(IOVA_RANGE_CACHE_MAX_SIZE - 1);
}

export interface IovaDomainOptions {
  /** CPUs whose range caches exist (for_each_possible_cpu); default 1. */
  readonly nrCpus?: number;
  /** Names the domain in views and timer labels. */
  readonly name?: string;
}

/** One range of the JSON view. */
export type IovaRangeView = {
  pfn_lo: string;
  pfn_hi: string;
  iova: string;
  size: string;
  /** `cached`: allocated in the tree but held free by a range-cache magazine. */
  kind: "allocated" | "reserved" | "cached";
};

class IovaNode implements Iova {
  pfnLo: number;
  pfnHi: number;
  /** Made by reserveIova (the kernel does not tell them apart; the view does). */
  readonly reserved: boolean;
  left: IovaNode | null = null;
  right: IovaNode | null = null;
  height = 1;
  /** Free pfns between the previous range (or pfn 0) and this one. */
  gap = 0;
  /** Largest `gap` in this subtree. */
  maxGap = 0;
  prev: IovaNode | null = null;
  next: IovaNode | null = null;

  constructor(pfnLo: number, pfnHi: number, reserved: boolean) {
    this.pfnLo = pfnLo;
    this.pfnHi = pfnHi;
    this.reserved = reserved;
  }
}

/** IOVA_ANCHOR: the kernel's ~0UL. Above every real pfn; its gap is unbounded. */
const ANCHOR_PFN = Number.POSITIVE_INFINITY;
const MAX_PFN = Number.MAX_SAFE_INTEGER - 1;
/** Sizes below this are rounded up to a power of two by alloc_iova_fast (cacheable sizes). */
const FAST_ROUNDUP_LIMIT = 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1);

/** Scratch path for #refresh; grows once to the tree height, then is reused. */
const PATH: IovaNode[] = [];

export class IovaDomain {
  readonly granule: number;
  readonly startPfn: number;
  /** iova_shift: log2(granule). */
  readonly shift: number;
  /** First pfn at or above 4 GiB: limits at or below it use cached32_node. */
  readonly dma32bitPfn: number;
  readonly nrCpus: number;
  readonly name: string;
  readonly #ctx: SimContext;
  readonly #anchor: IovaNode;
  #root: IovaNode;
  #cachedNode: IovaNode;
  #cached32Node: IovaNode;
  #max32AllocSize: number;
  #rcaches: IovaRcaches | null = null;
  #count = 0;
  #dead = false;
  /** The range right above the gap #walk found (the new range's successor). */
  #hit: IovaNode;

  /** init_iova_domain. `granule` in bytes (a power of two ≤ PAGE_SIZE); `startPfn` in granules. */
  constructor(ctx: SimContext, granule: number, startPfn: number, options: IovaDomainOptions = {}) {
    if (!Number.isInteger(granule) || granule < 1 || granule > PAGE_SIZE) {
      throw new SimError(`init_iova_domain: granule ${granule} is not in [1, PAGE_SIZE]`);
    }
    if ((granule & (granule - 1)) !== 0) {
      throw new SimError(`init_iova_domain: granule ${granule} is not a power of two`);
    }
    checkPfn(startPfn, "init_iova_domain: start_pfn");
    const nrCpus = options.nrCpus ?? 1;
    if (!Number.isInteger(nrCpus) || nrCpus < 1 || nrCpus > 4096) {
      throw new SimError(`IovaDomain: nrCpus ${nrCpus} is not in [1, 4096]`);
    }
    this.#ctx = ctx;
    this.granule = granule;
    this.startPfn = startPfn;
    this.shift = 31 - Math.clz32(granule);
    this.dma32bitPfn = 2 ** (32 - this.shift);
    this.#max32AllocSize = this.dma32bitPfn;
    this.nrCpus = nrCpus;
    this.name = options.name ?? "iova";
    const anchor = new IovaNode(ANCHOR_PFN, ANCHOR_PFN, false);
    anchor.gap = anchor.maxGap = ANCHOR_PFN;
    this.#anchor = this.#root = this.#cachedNode = this.#cached32Node = this.#hit = anchor;
  }

  /** Ranges in the tree (allocated, reserved and rcache-held), the anchor excluded. */
  get count(): number {
    return this.#count;
  }

  /** The size of the last failed allocation, until a range below 4 GiB is freed. */
  get max32AllocSize(): number {
    return this.#max32AllocSize;
  }

  /** iova_domain_init_rcaches. Always 0 here (no -ENOMEM); calling it twice is misuse. */
  initRcaches(): Result {
    this.#live();
    if (this.#rcaches !== null) throw new SimError(`${this.name}: rcaches already initialised`);
    this.#rcaches = new IovaRcaches(this.nrCpus, this.#ctx.clock, this.name, (pfn) =>
      this.#releaseCachedPfn(pfn),
    );
    return OK;
  }

  get hasRcaches(): boolean {
    return this.#rcaches !== null;
  }

  /**
   * alloc_iova: `size` pages at or below `limitPfn` (inclusive), as high as the walk finds room,
   * aligned to roundup_pow_of_two(size) when `sizeAligned`. Null when nothing fits.
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): Iova | null {
    this.#live();
    checkSize(size, "alloc_iova");
    checkPfn(limitPfn, "alloc_iova: limit_pfn");
    return this.#allocAndInsertRange(size, limitPfn + 1, sizeAligned ? roundupPowOfTwo(size) : 1);
  }

  /**
   * alloc_iova_fast: a size-aligned range of `size` pages (rounded up to a power of two when
   * cacheable) at or below `limitPfn`, from `cpu`'s range cache first, then the tree; on failure,
   * when `flushRcache`, every cache is returned to the tree and the tree tried once more.
   * Returns the start pfn, or 0.
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean, cpu = 0): number {
    const rcaches = this.#rcachesFor("alloc_iova_fast", cpu);
    checkSize(size, "alloc_iova_fast");
    checkPfn(limitPfn, "alloc_iova_fast: limit_pfn");
    // Non-power-of-two sizes freed into the caches would be handed out for the rounded size.
    const n = size < FAST_ROUNDUP_LIMIT ? roundupPowOfTwo(size) : size;
    const cached = rcaches.get(n, limitPfn + 1, cpu);
    if (cached !== 0) return cached;
    const align = roundupPowOfTwo(n);
    let iova = this.#allocAndInsertRange(n, limitPfn + 1, align);
    if (iova === null && flushRcache) {
      for (let c = 0; c < this.nrCpus; c++) rcaches.freeCpuCachedIovas(c);
      rcaches.freeGlobalCachedIovas();
      iova = this.#allocAndInsertRange(n, limitPfn + 1, align);
    }
    return iova === null ? 0 : iova.pfnLo;
  }

  /**
   * free_iova_fast: caches the range starting at `pfn` in `cpu`'s magazines for its size class;
   * ranges too large to cache are freed to the tree. Like the kernel, the pfn is not checked here.
   */
  freeIovaFast(pfn: number, size: number, cpu = 0): void {
    const rcaches = this.#rcachesFor("free_iova_fast", cpu);
    checkSize(size, "free_iova_fast");
    if (!rcaches.insert(pfn, size, cpu)) this.freeIova(pfn);
  }

  /** find_iova: the range containing `pfn`, or null. */
  findIova(pfn: number): Iova | null {
    this.#live();
    return this.#find(pfn);
  }

  /** free_iova: frees the range containing `pfn`; nothing happens when there is none. */
  freeIova(pfn: number): void {
    this.#live();
    const node = this.#find(pfn);
    if (node !== null) this.#removeIova(node);
  }

  /**
   * reserve_iova: keeps [pfnLo, pfnHi] out of allocation. Ranges it overlaps are widened to absorb
   * it (the kernel edits them in place) and the rest becomes a new range; returns the range that
   * covers the end of the request. Null (with a WARN) when a pfn would overflow a 64-bit address.
   */
  reserveIova(pfnLo: number, pfnHi: number): Iova | null {
    this.#live();
    checkPfn(pfnLo, "reserve_iova: pfn_lo");
    checkPfn(pfnHi, "reserve_iova: pfn_hi");
    if (pfnLo > pfnHi) throw new SimError(`reserve_iova: pfn_lo ${pfnLo} > pfn_hi ${pfnHi}`);
    const maxPfn = 2 ** (64 - this.shift) - 1;
    if (
      this.#ctx.warnings.on(pfnHi > maxPfn, "reserve_iova", "pfn beyond a 64-bit address", {
        pfn_lo: pfnLo,
        pfn_hi: pfnHi,
      })
    ) {
      return null;
    }
    let lo = pfnLo;
    let overlap = false;
    // The kernel scans from rb_first; ranges ending below pfnLo cannot overlap and are skipped
    // there too, so the scan may start at the first range ending at or above it.
    for (let node: IovaNode | null = this.#firstEndingAtOrAbove(lo); node; node = node.next) {
      if (lo <= node.pfnHi && pfnHi >= node.pfnLo) {
        if (lo < node.pfnLo) {
          node.pfnLo = lo;
          node.gap = gapOf(node);
          this.#refresh(node);
        }
        if (pfnHi > node.pfnHi) lo = node.pfnHi + 1;
        if (lo >= node.pfnLo && pfnHi <= node.pfnHi) return node;
        overlap = true;
      } else if (overlap) {
        break;
      }
    }
    const node = new IovaNode(lo, pfnHi, true);
    this.#insert(node, this.#firstStartingAbove(lo));
    return node;
  }

  /** free_cpu_cached_iovas (the CPU hot-unplug callback): `cpu`'s cached ranges back to the tree. */
  freeCpuCachedIovas(cpu: number): void {
    this.#rcachesFor("free_cpu_cached_iovas", cpu).freeCpuCachedIovas(cpu);
  }

  /** free_global_cached_iovas: the depots' ranges back to the tree. */
  freeGlobalCachedIovas(): void {
    this.#rcachesFor("free_global_cached_iovas", 0).freeGlobalCachedIovas();
  }

  /** put_iova_domain: drops the caches (cancelling depot work) and every range. */
  putIovaDomain(): void {
    this.#live();
    this.#rcaches?.destroy();
    this.#rcaches = null;
    this.#root = this.#cachedNode = this.#cached32Node = this.#hit = this.#anchor;
    this.#anchor.prev = this.#anchor.left = this.#anchor.right = null;
    this.#count = 0;
    this.#dead = true;
  }

  /** iova_offset: the offset of `addr` within its granule. */
  iovaOffset(addr: bigint): number {
    return Number(addr & BigInt(this.granule - 1));
  }

  /** iova_align: `size` rounded up to the granule. */
  iovaAlign(size: bigint): bigint {
    const mask = BigInt(this.granule - 1);
    return (size + mask) & ~mask;
  }

  /** iova_align_down: `size` rounded down to the granule. */
  iovaAlignDown(size: bigint): bigint {
    return size & ~BigInt(this.granule - 1);
  }

  /** iova_dma_addr: the bus address of a range's first byte. */
  iovaDmaAddr(iova: Iova): bigint {
    return BigInt(iova.pfnLo) << BigInt(this.shift);
  }

  /** iova_pfn: the pfn of a bus address. */
  iovaPfn(addr: bigint): number {
    return Number(addr >> BigInt(this.shift));
  }

  /** Ranges in address order (allocated, reserved and rcache-held alike). */
  ranges(): Iova[] {
    const out: Iova[] = [];
    for (let n = this.#first(); n !== this.#anchor; n = n.next!) out.push(n);
    return out;
  }

  /** Range-cache occupancy per size class, or null before initRcaches. */
  rcacheView(): IovaRcacheClassView[] | null {
    return this.#rcaches?.view() ?? null;
  }

  toJSON(): Json {
    const cached = new Set<number>();
    this.#rcaches?.forEachCachedPfn((pfn) => cached.add(pfn));
    const shift = BigInt(this.shift);
    const ranges: IovaRangeView[] = [];
    for (let n = this.#first(); n !== this.#anchor; n = n.next!) {
      const kind = n.reserved ? "reserved" : cached.has(n.pfnLo) ? "cached" : "allocated";
      ranges.push({
        pfn_lo: jsonAddr(n.pfnLo),
        pfn_hi: jsonAddr(n.pfnHi),
        iova: jsonAddr(BigInt(n.pfnLo) << shift),
        size: jsonAddr(BigInt(iovaSize(n)) << shift),
        kind,
      });
    }
    const nodeRef = (n: IovaNode) => (n === this.#anchor ? "anchor" : jsonAddr(n.pfnLo));
    return {
      name: this.name,
      granule: this.granule,
      start_pfn: jsonAddr(this.startPfn),
      dma_32bit_pfn: jsonAddr(this.dma32bitPfn),
      max32_alloc_size: this.#max32AllocSize,
      cached_node: nodeRef(this.#cachedNode),
      cached32_node: nodeRef(this.#cached32Node),
      ranges,
      rcache: this.#rcaches ? this.#rcaches.view() : null,
    };
  }

  // ---- __alloc_and_insert_iova_range and its walk ----

  /** `limit` is exclusive (alloc_iova passes limit_pfn + 1); `align` a power of two. */
  #allocAndInsertRange(size: number, limit: number, align: number): IovaNode | null {
    const is32 = limit <= this.dma32bitPfn;
    if (is32 && size >= this.#max32AllocSize) return null;
    const start = is32 ? this.#cached32Node : this.#cachedNode;
    const retryPfn = start.pfnHi;
    let newPfn = this.#walk(start.pfnLo, limit, this.startPfn, size, align);
    if (newPfn < 0 && retryPfn < limit) {
      // The kernel retries over the space above the cached node, walking down from the first
      // range at or above the limit (iova_find_limit); the anchor gives the same walk.
      newPfn = this.#walk(ANCHOR_PFN, limit, retryPfn + 1, size, align);
    }
    if (newPfn < 0) {
      // Set on any failure, 64-bit ones included, exactly like the kernel.
      this.#max32AllocSize = size;
      return null;
    }
    const node = new IovaNode(newPfn, newPfn + size - 1, false);
    this.#insert(node, this.#hit);
    // __cached_rbnode_insert_update
    if (node.pfnHi < this.dma32bitPfn) this.#cached32Node = node;
    else this.#cachedNode = node;
    return node;
  }

  /**
   * The kernel's backwards walk from the range keyed `startKey`: at each range R (going down),
   * high = min(limit, R.pfn_lo) and new = align_down(high - size); it stops at the first R whose
   * predecessor ends below `new` (success), or once high < size or new < low (failure). A range
   * whose gap is below `size` can never stop it with success, and the failure test only gets truer
   * further down, so only ranges with gap ≥ size need visiting. Returns the pfn or -1, and leaves
   * the range above the gap in #hit.
   */
  #walk(startKey: number, limit: number, low: number, size: number, align: number): number {
    let node = this.#lastWithGap(startKey, false, size);
    while (node !== null) {
      const high = node.pfnLo < limit ? node.pfnLo : limit;
      if (high < size) return -1; // the kernel's unsigned high - size wraps: failure
      const raw = high - size;
      const newPfn = align === 1 ? raw : raw - (raw % align);
      if (newPfn < low) return -1;
      const pred = node.prev;
      if (pred === null || newPfn > pred.pfnHi) {
        this.#hit = node;
        return newPfn;
      }
      node = this.#lastWithGap(node.pfnLo, true, size);
    }
    return -1;
  }

  /** The highest range keyed at or below `bound` (strictly below when `strict`) with gap ≥ size. */
  #lastWithGap(bound: number, strict: boolean, size: number): IovaNode | null {
    let best: IovaNode | null = null;
    let bestSubtree: IovaNode | null = null;
    let n: IovaNode | null = this.#root;
    while (n !== null) {
      if (n.pfnLo > bound || (strict && n.pfnLo === bound)) {
        n = n.left;
        continue;
      }
      // Everything in n's right subtree that qualifies beats n, which beats its left subtree.
      if (n.gap >= size) {
        best = n;
        bestSubtree = null;
      } else if (n.left !== null && n.left.maxGap >= size) {
        best = null;
        bestSubtree = n.left;
      }
      n = n.right;
    }
    if (best !== null || bestSubtree === null) return best;
    n = bestSubtree;
    for (;;) {
      if (n.right !== null && n.right.maxGap >= size) n = n.right;
      else if (n.gap >= size) return n;
      else n = n.left!;
    }
  }

  // ---- tree maintenance ----

  /** private_find_iova: the range containing `pfn`. */
  #find(pfn: number): IovaNode | null {
    let n: IovaNode | null = this.#root;
    while (n !== null) {
      if (pfn < n.pfnLo) n = n.left;
      else if (pfn > n.pfnHi) n = n.right;
      else return n;
    }
    return null;
  }

  /** The lowest range; the anchor when there is none. */
  #first(): IovaNode {
    let n = this.#root;
    while (n.left !== null) n = n.left;
    return n;
  }

  /** The first range (in address order) with pfnHi ≥ pfn; the anchor at worst. */
  #firstEndingAtOrAbove(pfn: number): IovaNode {
    let found = this.#anchor;
    for (let n: IovaNode | null = this.#root; n !== null; ) {
      if (n.pfnHi >= pfn) {
        found = n;
        n = n.left;
      } else {
        n = n.right;
      }
    }
    return found;
  }

  /** The first range with pfnLo > pfn; the anchor at worst. */
  #firstStartingAbove(pfn: number): IovaNode {
    let found = this.#anchor;
    for (let n: IovaNode | null = this.#root; n !== null; ) {
      if (n.pfnLo > pfn) {
        found = n;
        n = n.left;
      } else {
        n = n.right;
      }
    }
    return found;
  }

  /** iova_insert_rbtree: links `node` right below `next` and adds it to the tree. */
  #insert(node: IovaNode, next: IovaNode): void {
    const prev = next.prev;
    if (
      this.#ctx.warnings.on(prev?.pfnLo === node.pfnLo, "iova_insert_rbtree", "duplicate pfn_lo", {
        pfn_lo: node.pfnLo,
      })
    ) {
      return;
    }
    node.prev = prev;
    node.next = next;
    if (prev !== null) prev.next = node;
    next.prev = node;
    node.gap = node.maxGap = gapOf(node);
    next.gap = gapOf(next);
    this.#root = insertAt(this.#root, node);
    this.#refresh(next);
    this.#count++;
  }

  /** remove_iova: __cached_rbnode_delete_update, then rb_erase. */
  #removeIova(node: IovaNode): void {
    const next = node.next!; // never the anchor, so there is always a next
    const c32 = this.#cached32Node;
    if (node === c32 || (node.pfnHi < this.dma32bitPfn && node.pfnLo >= c32.pfnLo)) {
      this.#cached32Node = next;
    }
    if (node.pfnLo < this.dma32bitPfn) this.#max32AllocSize = this.dma32bitPfn;
    if (node.pfnLo >= this.#cachedNode.pfnLo) this.#cachedNode = next;

    const prev = node.prev;
    next.prev = prev;
    if (prev !== null) prev.next = next;
    next.gap = gapOf(next);
    this.#root = removeAt(this.#root, node)!;
    this.#refresh(next);
    node.prev = node.next = node.left = node.right = null;
    this.#count--;
  }

  /** iova_magazine_free_pfns for one pfn: the range must still be in the tree. */
  #releaseCachedPfn(pfn: number): void {
    const node = this.#find(pfn);
    if (
      this.#ctx.warnings.on(node === null, "iova_magazine_free_pfns", "cached pfn not in tree", {
        pfn,
      })
    ) {
      return;
    }
    this.#removeIova(node!);
  }

  /** Recomputes maxGap from `target` up to the root after its gap changed. */
  #refresh(target: IovaNode): void {
    let depth = 0;
    let n = this.#root;
    while (n !== target) {
      PATH[depth++] = n;
      n = target.pfnLo < n.pfnLo ? n.left! : n.right!;
    }
    updateMaxGap(target);
    while (depth > 0) updateMaxGap(PATH[--depth]!);
  }

  #rcachesFor(fn: string, cpu: number): IovaRcaches {
    this.#live();
    if (this.#rcaches === null) throw new SimError(`${fn}: ${this.name} has no rcaches`);
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.nrCpus) {
      throw new SimError(`${fn}: cpu ${cpu} is not in [0, ${this.nrCpus - 1}]`);
    }
    return this.#rcaches;
  }

  #live(): void {
    if (this.#dead) throw new SimError(`${this.name}: IOVA domain used after put_iova_domain`);
  }
}

function checkPfn(pfn: number, what: string): void {
  if (!Number.isInteger(pfn) || pfn < 0 || pfn > MAX_PFN) {
    throw new SimError(`${what} ${pfn} is not an integer pfn in [0, 2^53-2]`);
  }
}

function checkSize(size: number, what: string): void {
  if (!Number.isInteger(size) || size < 1 || size > MAX_PFN) {
    throw new SimError(`${what}: size ${size} is not a positive integer page count`);
  }
}

/** roundup_pow_of_two (also 1 << fls_long(size - 1), the size-aligned allocation's alignment). */
function roundupPowOfTwo(size: number): number {
  if (size <= 0x4000_0000) return size <= 1 ? 1 : 2 ** (32 - Math.clz32(size - 1));
  let p = 0x8000_0000;
  while (p < size) p *= 2;
  return p;
}

function gapOf(n: IovaNode): number {
  return n.pfnLo - (n.prev === null ? 0 : n.prev.pfnHi + 1);
}

// ---- AVL tree keyed by pfnLo; nodes keep their identity (the cached nodes point at them) ----

function heightOf(n: IovaNode | null): number {
  return n === null ? 0 : n.height;
}

function updateMaxGap(n: IovaNode): void {
  let m = n.gap;
  if (n.left !== null && n.left.maxGap > m) m = n.left.maxGap;
  if (n.right !== null && n.right.maxGap > m) m = n.right.maxGap;
  n.maxGap = m;
}

function update(n: IovaNode): void {
  const l = heightOf(n.left);
  const r = heightOf(n.right);
  n.height = (l > r ? l : r) + 1;
  updateMaxGap(n);
}

function rotateRight(t: IovaNode): IovaNode {
  const l = t.left!;
  t.left = l.right;
  l.right = t;
  update(t);
  update(l);
  return l;
}

function rotateLeft(t: IovaNode): IovaNode {
  const r = t.right!;
  t.right = r.left;
  r.left = t;
  update(t);
  update(r);
  return r;
}

function rebalance(t: IovaNode): IovaNode {
  update(t);
  const bf = heightOf(t.left) - heightOf(t.right);
  if (bf > 1) {
    const l = t.left!;
    if (heightOf(l.left) < heightOf(l.right)) t.left = rotateLeft(l);
    return rotateRight(t);
  }
  if (bf < -1) {
    const r = t.right!;
    if (heightOf(r.right) < heightOf(r.left)) t.right = rotateRight(r);
    return rotateLeft(t);
  }
  return t;
}

function insertAt(t: IovaNode | null, x: IovaNode): IovaNode {
  if (t === null) return x;
  if (x.pfnLo < t.pfnLo) t.left = insertAt(t.left, x);
  else t.right = insertAt(t.right, x);
  return rebalance(t);
}

function removeAt(t: IovaNode, x: IovaNode): IovaNode | null {
  if (x.pfnLo < t.pfnLo) {
    t.left = removeAt(t.left!, x);
  } else if (x.pfnLo > t.pfnLo) {
    t.right = removeAt(t.right!, x);
  } else {
    if (t.left === null) return t.right;
    if (t.right === null) return t.left;
    // Two children: the successor node itself takes x's place (no key copying).
    let m = t.right;
    while (m.left !== null) m = m.left;
    m.right = removeMin(t.right);
    m.left = t.left;
    return rebalance(m);
  }
  return rebalance(t);
}

function removeMin(t: IovaNode): IovaNode | null {
  if (t.left === null) return t.right;
  t.left = removeMin(t.left);
  return rebalance(t);
}
