// The flush queue of a lazy (DMA_FQ) domain, as drivers/iommu/dma-iommu.c (v6.16) keeps it.
//
// A lazy unmap clears the page table but sends no IOTLB invalidation: the IOVA range goes on a
// ring (`queue_iova`) tagged with the flush-start counter of the moment. `fq_flush_iotlb` bumps
// the start counter, invalidates the whole domain (`flush_iotlb_all`) and bumps the finish
// counter; an entry whose tag is below the finish counter was unmapped before a complete flush,
// so its IOVA may be reused and is handed back to the allocator (`fq_ring_free`). Until then the
// hardware may still translate the old IOVA from its IOTLB: that window is the point of lazy mode.
//
// A flush happens when the caller's ring is full (`fq_full`, before adding), and on a timer armed
// by the first queued entry (`fq_flush_timeout`, IOVA_DEFAULT_FQ_TIMEOUT ms of virtual time).
// Rings are per CPU (`IOMMU_DMA_OPTS_PER_CPU_QUEUE`, 256 entries) unless the device's IOMMU
// shadows its flushes (`dev_iommu.shadow_on_flush`, e.g. an emulated IOMMU), which gets one large
// shared ring (`IOMMU_DMA_OPTS_SINGLE_QUEUE`, 32768 entries, 1 s). A ring of N slots holds N − 1
// entries (full when tail + 1 == head). The CPU is the caller's `cpu` (deterministic); the timer
// runs on the CPU that armed it, so its frees go to that CPU's range cache.

import type { Timer, VirtualClock } from "../base/clock.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";

export const IOVA_DEFAULT_FQ_SIZE = 256;
export const IOVA_SINGLE_FQ_SIZE = 32768;
/** Milliseconds after the first queued entry before the queue flushes. */
export const IOVA_DEFAULT_FQ_TIMEOUT = 10;
export const IOVA_SINGLE_FQ_TIMEOUT = 1000;

/** `enum iommu_dma_queue_type`. */
export type IommuDmaQueueType = "per-cpu" | "single";

/** `struct iommu_dma_options`. */
export interface IommuDmaOptions {
  readonly qt: IommuDmaQueueType;
  /** Ring slots (a power of two). */
  readonly fqSize: number;
  /** Timeout in milliseconds. */
  readonly fqTimeout: number;
}

/** `iommu_dma_init_options`: a single large queue for shadowing IOMMUs, else per-CPU rings. */
export function iommuDmaInitOptions(shadowOnFlush: boolean): IommuDmaOptions {
  return shadowOnFlush
    ? { qt: "single", fqSize: IOVA_SINGLE_FQ_SIZE, fqTimeout: IOVA_SINGLE_FQ_TIMEOUT }
    : { qt: "per-cpu", fqSize: IOVA_DEFAULT_FQ_SIZE, fqTimeout: IOVA_DEFAULT_FQ_TIMEOUT };
}

/** Why the queue flushed. */
export type FqFlushReason = "full" | "timeout";

/** What the flush queue needs from its cookie. */
export interface FlushQueueOwner {
  /** `cookie->fq_domain->ops->flush_iotlb_all(fq_domain)`. */
  flushIotlbAll(): void;
  /** `free_iova_fast(&cookie->iovad, pfn, pages)` on `cpu`'s range cache. */
  freeIova(pfn: number, pages: number, cpu: number): void;
  /** A flush and the ring free after it are done (for traces and statistics). */
  flushed(reason: FqFlushReason, freed: number): void;
}

/** `struct iova_fq`: a ring of (pfn, pages, counter) entries. */
class IovaFq {
  head = 0;
  tail = 0;
  readonly modMask: number;
  readonly pfns: Float64Array;
  readonly pages: Float64Array;
  readonly counters: Float64Array;

  constructor(size: number) {
    this.modMask = size - 1;
    this.pfns = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counters = new Float64Array(size);
  }

  get length(): number {
    return (this.tail - this.head) & this.modMask;
  }

  /** `fq_full`. */
  full(): boolean {
    return ((this.tail + 1) & this.modMask) === this.head;
  }
}

export class IovaFlushQueue {
  /** `fq_flush_start_cnt`, `fq_flush_finish_cnt`. */
  startCnt = 0;
  finishCnt = 0;
  /** Flushes by reason, entries queued and entries freed since the queue came up. */
  readonly flushes = { full: 0, timeout: 0 };
  queued = 0;
  freed = 0;
  readonly options: IommuDmaOptions;
  readonly #rings: IovaFq[] = [];
  readonly #owner: FlushQueueOwner;
  readonly #clock: VirtualClock;
  readonly #label: string;
  /** `fq_timer` while armed (`fq_timer_on`), and the CPU that armed it. */
  #timer: Timer | null = null;
  #timerCpu = 0;
  #dead = false;

  /** `iommu_dma_init_fq`: one ring per CPU, or one shared ring. */
  constructor(
    options: IommuDmaOptions,
    readonly nrCpus: number,
    clock: VirtualClock,
    label: string,
    owner: FlushQueueOwner,
  ) {
    const size = options.fqSize;
    if (!Number.isInteger(size) || size < 2 || (size & (size - 1)) !== 0) {
      throw new SimError(`flush queue size ${size} is not a power of two ≥ 2`);
    }
    this.options = options;
    this.#clock = clock;
    this.#label = label;
    this.#owner = owner;
    const rings = options.qt === "single" ? 1 : nrCpus;
    for (let i = 0; i < rings; i++) this.#rings.push(new IovaFq(size));
  }

  /** Entries waiting for a flush, over every ring. */
  get pending(): number {
    let n = 0;
    for (const fq of this.#rings) n += fq.length;
    return n;
  }

  /**
   * Whether any IOVA page in [firstPfn, lastPfn] (granule units) waits on the queue for a flush
   * that has not finished yet: the lazy window in which the IOTLB may still translate it.
   */
  awaitsFlush(firstPfn: number, lastPfn: number): boolean {
    for (const fq of this.#rings) {
      for (let idx = fq.head; idx !== fq.tail; idx = (idx + 1) & fq.modMask) {
        if (fq.counters[idx]! < this.finishCnt) continue;
        const pfn = fq.pfns[idx]!;
        if (pfn <= lastPfn && firstPfn < pfn + fq.pages[idx]!) return true;
      }
    }
    return false;
  }

  /** The flush timer is armed. */
  get timerPending(): boolean {
    return this.#timer !== null;
  }

  /**
   * `queue_iova`: the range [pfn, pfn + pages) waits for the next flush. Entries already flushed
   * are freed first; a full ring is flushed before the entry goes in.
   */
  queueIova(pfn: number, pages: number, cpu: number): void {
    if (this.#dead) throw new SimError(`${this.#label}: flush queue used after it was freed`);
    const fq = this.#ringOf(cpu);
    this.#ringFree(fq, cpu);
    if (fq.full()) {
      this.#flushIotlb();
      const freed = this.#ringFree(fq, cpu);
      this.flushes.full++;
      this.#owner.flushed("full", freed);
    }
    const idx = fq.tail;
    fq.tail = (idx + 1) & fq.modMask;
    fq.pfns[idx] = pfn;
    fq.pages[idx] = pages;
    fq.counters[idx] = this.startCnt;
    this.queued++;
    if (this.#timer === null) this.#armTimer(cpu);
  }

  /** `iommu_dma_free_fq`: stops the timer; queued IOVAs go with the IOVA domain. */
  destroy(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#dead = true;
  }

  toJSON(): Json {
    return {
      queue_type: this.options.qt,
      fq_size: this.options.fqSize,
      fq_timeout_ms: this.options.fqTimeout,
      fq_flush_start_cnt: this.startCnt,
      fq_flush_finish_cnt: this.finishCnt,
      timer: this.#timer === null ? null : { at: this.#timer.at, cpu: this.#timerCpu },
      flushes: { ...this.flushes },
      queued: this.queued,
      freed: this.freed,
      pending: this.pending,
      rings: this.#rings.map((fq, i) => {
        const entries: Json[] = [];
        for (let idx = fq.head; idx !== fq.tail; idx = (idx + 1) & fq.modMask) {
          entries.push({
            iova_pfn: jsonAddr(fq.pfns[idx]!),
            pages: fq.pages[idx]!,
            counter: fq.counters[idx]!,
          });
        }
        return {
          cpu: this.options.qt === "single" ? null : i,
          head: fq.head,
          tail: fq.tail,
          entries,
        };
      }),
    };
  }

  #ringOf(cpu: number): IovaFq {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.nrCpus) {
      throw new SimError(`${this.#label}: cpu ${cpu} is not in [0, ${this.nrCpus - 1}]`);
    }
    return this.#rings[this.options.qt === "single" ? 0 : cpu]!;
  }

  /** `fq_flush_iotlb`. */
  #flushIotlb(): void {
    this.startCnt++;
    this.#owner.flushIotlbAll();
    this.finishCnt++;
  }

  /** `fq_ring_free_locked`: frees the entries a completed flush covers, oldest first. */
  #ringFree(fq: IovaFq, cpu: number): number {
    const counter = this.finishCnt;
    let n = 0;
    while (fq.head !== fq.tail) {
      const idx = fq.head;
      if (fq.counters[idx]! >= counter) break;
      this.#owner.freeIova(fq.pfns[idx]!, fq.pages[idx]!, cpu);
      fq.head = (idx + 1) & fq.modMask;
      n++;
    }
    this.freed += n;
    return n;
  }

  /**
   * `mod_timer(&cookie->fq_timer, …)` on `cpu`. Its own method: a closure inside queueIova would
   * make every call allocate a context for `this`, armed or not.
   */
  #armTimer(cpu: number): void {
    this.#timerCpu = cpu;
    this.#timer = this.#clock.schedule(
      this.options.fqTimeout * 1_000_000,
      `${this.#label}: fq_flush_timeout`,
      () => this.#flushTimeout(),
    );
  }

  /** `fq_flush_timeout`: one flush, then every ring frees what it covers. */
  #flushTimeout(): void {
    this.#timer = null;
    this.#flushIotlb();
    let freed = 0;
    for (const fq of this.#rings) freed += this.#ringFree(fq, this.#timerCpu);
    this.flushes.timeout++;
    this.#owner.flushed("timeout", freed);
  }
}
