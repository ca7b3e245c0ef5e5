// The IOVA range caches of Linux's drivers/iommu/iova.c (v6.16): per size class, per CPU a
// `loaded` and a `prev` magazine of IOVA_MAG_SIZE start pfns, over a shared depot of full
// magazines that delayed work trims back to one magazine per online CPU.
//
// A cached range stays allocated in the domain's range tree; the magazines only remember its start
// pfn, so a hit hands it out again without touching the tree. Per-CPU state is explicit: every
// call names its `cpu` (the kernel uses the current CPU). Kernel → here:
//   iova_rcache_insert / iova_rcache_get    insert(pfn, size, cpu) / get(size, limitPfn, cpu)
//   free_cpu_cached_iovas (CPU hot-unplug)  freeCpuCachedIovas(cpu)
//   free_global_cached_iovas                freeGlobalCachedIovas()
//   free_iova_rcaches                       destroy()
//   iova_depot_work_func                    a VirtualClock timer, IOVA_DEPOT_DELAY_NS after a push
// Divergences: magazine allocation (GFP_ATOMIC) never fails here, so insert() refuses only sizes
// beyond the largest class; the depot work runs when its timer fires rather than on system_wq.

import type { Timer, VirtualClock } from "../base/clock.js";

/** Number of size classes: ranges of 1, 2, 4, …, 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) pages. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** PFNs per magazine (127 makes the kernel's struct exactly 1 KiB). */
export const IOVA_MAG_SIZE = 127;
/** IOVA_DEPOT_DELAY: msecs_to_jiffies(100), in virtual nanoseconds. */
export const IOVA_DEPOT_DELAY_NS = 100_000_000;

class IovaMagazine {
  size = 0;
  // PFNs fit 53 bits; a Float64Array holds them exactly and is allocated once per magazine.
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);
}

interface IovaCpuRcache {
  loaded: IovaMagazine;
  prev: IovaMagazine;
}

interface IovaRcache {
  readonly order: number;
  /** Full magazines, last pushed on top (the kernel's singly linked depot list). */
  readonly depot: IovaMagazine[];
  readonly cpuRcaches: readonly IovaCpuRcache[];
  /** The pending depot work (delayed_work), if scheduled. */
  work: Timer | null;
}

/** Occupancy of one size class, for views and tests. */
export type IovaRcacheClassView = {
  order: number;
  pages: number;
  depot: number;
  cpus: Array<{ cpu: number; loaded: number; prev: number }>;
};

/** ceil(log2(size)) for size ≥ 1, like order_base_2(); anything above 2^31 is just "large". */
function orderBase2(size: number): number {
  if (size <= 1) return 0;
  if (size > 0x8000_0000) return 32;
  return 32 - Math.clz32(size - 1);
}

export class IovaRcaches {
  readonly #rcaches: IovaRcache[] = [];

  /**
   * @param nrCpus CPUs of the machine (possible = online here)
   * @param clock drives the depot trimming work
   * @param label names the depot timers
   * @param releasePfn returns the range starting at `pfn` to the tree (iova_magazine_free_pfns'
   *   find + remove, WARNing when absent)
   */
  constructor(
    readonly nrCpus: number,
    private readonly clock: VirtualClock,
    private readonly label: string,
    private readonly releasePfn: (pfn: number) => void,
  ) {
    for (let order = 0; order < IOVA_RANGE_CACHE_MAX_SIZE; order++) {
      const cpuRcaches: IovaCpuRcache[] = [];
      for (let cpu = 0; cpu < nrCpus; cpu++) {
        cpuRcaches.push({ loaded: new IovaMagazine(), prev: new IovaMagazine() });
      }
      this.#rcaches.push({ order, depot: [], cpuRcaches, work: null });
    }
  }

  /**
   * iova_rcache_insert: caches `pfn` in `cpu`'s magazines of the size class of `size`. False when
   * the size is too large to cache (the caller then frees the range to the tree).
   */
  insert(pfn: number, size: number, cpu: number): boolean {
    const order = orderBase2(size);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return false;
    const rcache = this.#rcaches[order]!;
    const cpuRcache = rcache.cpuRcaches[cpu]!;
    if (cpuRcache.loaded.size === IOVA_MAG_SIZE) {
      if (cpuRcache.prev.size < IOVA_MAG_SIZE) {
        const t = cpuRcache.prev;
        cpuRcache.prev = cpuRcache.loaded;
        cpuRcache.loaded = t;
      } else {
        // Both full: the loaded magazine goes to the depot and an empty one takes its place.
        rcache.depot.push(cpuRcache.loaded);
        this.#scheduleDepotWork(rcache);
        cpuRcache.loaded = new IovaMagazine();
      }
    }
    const mag = cpuRcache.loaded;
    mag.pfns[mag.size++] = pfn;
    return true;
  }

  /**
   * iova_rcache_get: a cached start pfn of a `size`-page range ending below `limitPfn`
   * (exclusive), or 0 when the class has nothing suitable for `cpu`.
   */
  get(size: number, limitPfn: number, cpu: number): number {
    const order = orderBase2(size);
    if (order >= IOVA_RANGE_CACHE_MAX_SIZE) return 0;
    const rcache = this.#rcaches[order]!;
    const cpuRcache = rcache.cpuRcaches[cpu]!;
    if (cpuRcache.loaded.size === 0) {
      if (cpuRcache.prev.size > 0) {
        const t = cpuRcache.prev;
        cpuRcache.prev = cpuRcache.loaded;
        cpuRcache.loaded = t;
      } else {
        const full = rcache.depot.pop();
        if (full === undefined) return 0;
        cpuRcache.loaded = full; // the empty loaded magazine is freed
      }
    }
    // The kernel passes limit_pfn - size as an unsigned long: a size above the limit wraps to a
    // huge bound that every cached pfn satisfies.
    const bound = limitPfn >= size ? limitPfn - size : Number.POSITIVE_INFINITY;
    return magazinePop(cpuRcache.loaded, bound);
  }

  /** free_cpu_cached_iovas: returns every range `cpu` caches, class by class, to the tree. */
  freeCpuCachedIovas(cpu: number): void {
    for (const rcache of this.#rcaches) {
      const cpuRcache = rcache.cpuRcaches[cpu]!;
      this.#freePfns(cpuRcache.loaded);
      this.#freePfns(cpuRcache.prev);
    }
  }

  /** free_global_cached_iovas: returns every depot magazine's ranges to the tree. */
  freeGlobalCachedIovas(): void {
    for (const rcache of this.#rcaches) {
      for (let mag = rcache.depot.pop(); mag !== undefined; mag = rcache.depot.pop()) {
        this.#freePfns(mag);
      }
    }
  }

  /** free_iova_rcaches: drops the magazines without returning their ranges (domain teardown). */
  destroy(): void {
    for (const rcache of this.#rcaches) {
      rcache.work?.cancel();
      rcache.work = null;
      rcache.depot.length = 0;
      for (const cpuRcache of rcache.cpuRcaches) {
        cpuRcache.loaded.size = 0;
        cpuRcache.prev.size = 0;
      }
    }
  }

  /** Calls `fn` for every cached start pfn (magazines of every CPU, then the depots). */
  forEachCachedPfn(fn: (pfn: number, order: number) => void): void {
    for (const rcache of this.#rcaches) {
      const mags: IovaMagazine[] = [];
      for (const c of rcache.cpuRcaches) mags.push(c.loaded, c.prev);
      mags.push(...rcache.depot);
      for (const mag of mags) {
        for (let i = 0; i < mag.size; i++) fn(mag.pfns[i]!, rcache.order);
      }
    }
  }

  /** Occupancy per size class. */
  view(): IovaRcacheClassView[] {
    return this.#rcaches.map((r) => ({
      order: r.order,
      pages: 2 ** r.order,
      depot: r.depot.length,
      cpus: r.cpuRcaches.map((c, cpu) => ({ cpu, loaded: c.loaded.size, prev: c.prev.size })),
    }));
  }

  /** iova_magazine_free_pfns: every pfn of `mag` back to the tree, in slot order. */
  #freePfns(mag: IovaMagazine): void {
    for (let i = 0; i < mag.size; i++) this.releasePfn(mag.pfns[i]!);
    mag.size = 0;
  }

  /** schedule_delayed_work(&rcache->work, IOVA_DEPOT_DELAY): a no-op while already pending. */
  #scheduleDepotWork(rcache: IovaRcache): void {
    if (rcache.work !== null) return;
    rcache.work = this.clock.schedule(
      IOVA_DEPOT_DELAY_NS,
      `${this.label}: iova depot work (order ${rcache.order})`,
      () => this.#depotWork(rcache),
    );
  }

  /** iova_depot_work_func: one magazine beyond num_online_cpus() goes back per run. */
  #depotWork(rcache: IovaRcache): void {
    rcache.work = null;
    if (rcache.depot.length <= this.nrCpus) return;
    this.#freePfns(rcache.depot.pop()!);
    this.#scheduleDepotWork(rcache);
  }
}

/**
 * iova_magazine_pop: the topmost pfn not above `limitPfn`, removed by moving the top entry into
 * its slot; 0 when none qualifies (then the allocation falls back to the tree).
 */
function magazinePop(mag: IovaMagazine, limitPfn: number): number {
  const pfns = mag.pfns;
  let i = mag.size - 1;
  while (pfns[i]! > limitPfn) {
    if (i === 0) return 0;
    i--;
  }
  const pfn = pfns[i]!;
  pfns[i] = pfns[--mag.size]!;
  return pfn;
}
