// TLB flushing after page-table changes (arch/riscv/mm/tlbflush.c, asm/tlb.h, mm/mmu_gather.c).
//
// On RISC-V every flush of a user range ends in mmu_notifier_arch_invalidate_secondary_tlbs
// with the same range, so an IOMMU sharing the page table invalidates its IOTLB exactly when the
// CPU does. flush_tlb_mm covers [0, ULONG_MAX). Kernel ranges (flush_tlb_kernel_range) reach
// the CPUs only.
//
// An MmuGather (struct mmu_gather) batches one operation: it widens a range over the PTEs it
// cleared or changed, and at finish flushes once — the whole mm when the operation freed page
// tables or tears the whole mm down (riscv tlb_flush), else just the range — and only then
// frees the pages and table pages it unmapped, so no device or CPU can reach a reused frame
// through a stale TLB entry.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import type { MmStruct } from "./mm-types.js";
import { FLUSH_ALL_END, mmuNotifierArchInvalidateSecondaryTlbs } from "./mmu-notifier.js";

const SHIFT = BigInt(PAGE_SHIFT);

/** flush_tlb_range / flush_tlb_mm_range: [start, end) of `mm`. */
export function flushTlbRange(mm: MmStruct, start: bigint, end: bigint): void {
  mmuNotifierArchInvalidateSecondaryTlbs(mm, start, end);
}

/** flush_tlb_page: the one page at `addr`. */
export function flushTlbPage(mm: MmStruct, addr: bigint): void {
  const start = (addr >> SHIFT) << SHIFT;
  flushTlbRange(mm, start, start + 4096n);
}

/** flush_tlb_mm: everything of `mm`. */
export function flushTlbMm(mm: MmStruct): void {
  flushTlbRange(mm, 0n, FLUSH_ALL_END);
}

/**
 * flush_tlb_kernel_range: every CPU drops its translations of [start, end) of the kernel's
 * address space `mm` (init_mm). Unlike the user-range flushes above it calls no mmu notifier:
 * an IOMMU walking init_mm keeps what it cached. (The CPUs here have no TLB; the flush is a
 * trace event.)
 */
export function flushTlbKernelRange(mm: MmStruct, start: bigint, end: bigint): void {
  if (!mm.kernel) throw new SimError(`flush_tlb_kernel_range on mm ${mm.id}, not init_mm`);
  mm.sys.ctx.trace.emit("mm:flush_tlb_kernel_range", mm.track, { start, end });
}

export class MmuGather {
  readonly mm: MmStruct;
  /** tlb_gather_mmu_fullmm: the whole address space is going (exit_mmap). */
  readonly fullmm: boolean;
  #startPage = Number.POSITIVE_INFINITY;
  #endPage = 0;
  readonly #frames: number[] = [];

  constructor(mm: MmStruct, fullmm = false) {
    this.mm = mm;
    this.fullmm = fullmm;
  }

  /** tlb_flush_pte_range for one 4 KiB page: its PTE was cleared or changed. */
  addPage(vpn: number): void {
    if (vpn < this.#startPage) this.#startPage = vpn;
    if (vpn + 1 > this.#endPage) this.#endPage = vpn + 1;
  }

  /** tlb_remove_page: frame `ppn` is put after the flush (freed, unless pinned). */
  removeFrame(ppn: number): void {
    this.#frames.push(ppn);
  }

  /** tlb_finish_mmu: flush (if anything changed), then free the gathered frames and tables. */
  finish(): void {
    const pgtable = this.mm.pgtable;
    const freedTables = pgtable.deferredPages > 0;
    const cleared = this.#endPage > 0;
    if (freedTables || cleared) {
      if (this.fullmm || freedTables) flushTlbMm(this.mm);
      else {
        flushTlbRange(this.mm, BigInt(this.#startPage) << SHIFT, BigInt(this.#endPage) << SHIFT);
      }
    }
    const pages = this.mm.sys.pages;
    for (const ppn of this.#frames) pages.put(ppn);
    this.#frames.length = 0;
    pgtable.releaseDeferred();
    this.#startPage = Number.POSITIVE_INFINITY;
    this.#endPage = 0;
  }
}
