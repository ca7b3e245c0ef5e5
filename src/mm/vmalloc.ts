// Kernel virtual mappings of init_mm (mm/vmalloc.c): vmap maps physical pages at kernel virtual
// addresses, vunmap removes them.
//
// - vmap(pages, count, VM_MAP, prot): a vmap area of count pages plus one guard page, at the
//   lowest free address of [VMALLOC_START, VMALLOC_END) (alloc_vmap_area), then one PTE per
//   page with `prot` (PAGE_KERNEL: global, supervisor-only). NULL when count is 0, when no range
//   is free even after purging the lazily freed ones, or when a page table cannot be allocated
//   (the partly mapped area is vunmapped again).
// - vunmap(addr): the busy area containing `addr` loses its PTEs at once (vunmap_range_noflush)
//   but the TLB flush is lazy, as in the kernel: the area goes to the purge list, and its
//   address range stays reserved until a purge runs flush_tlb_kernel_range over the lazily freed
//   areas and releases them — when vmap_lazy_nr exceeds lazy_max_pages (drain_vmap_work, on a
//   work queue), when an allocation finds no room, or on vm_unmap_aliases.
//
// Nothing here reaches mmu notifiers: flush_tlb_kernel_range is for CPU TLBs only, so an IOMMU
// that caches translations of init_mm (a historical supervisor SVA bind, seed 003) is never
// told that a kernel mapping went away.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { Work } from "../base/workqueue.js";
import { PT_NO_MEMORY, PT_OK, PT_STATUS_NAMES } from "../hw/pgtable/page-table.js";
import { PTE_U, PTE_V } from "../hw/pgtable/pte.js";
import { initMm, type KernelMm, type VmapArea } from "./init-mm.js";
import type { MmSubsystem } from "./mm-types.js";
import { PAGE_KERNEL } from "./pgprot.js";
import { flushTlbKernelRange } from "./tlb.js";

const SHIFT = BigInt(PAGE_SHIFT);
/** 32 MiB of pages: lazy_max_pages() per fls(num_online_cpus()). */
const LAZY_PAGES_PER_CPU_ORDER = (32 * 2 ** 20) / 4096;

/** lazy_max_pages(): fls(num_online_cpus()) × 32 MiB of pages. */
export function lazyMaxPages(sys: MmSubsystem): number {
  return (32 - Math.clz32(sys.nrCpus)) * LAZY_PAGES_PER_CPU_ORDER;
}

/**
 * `vmap(pages, count, VM_MAP, prot)`: maps the frames `pfns` (its length is `count`) in order
 * at a new kernel virtual address of init_mm and returns it, or null (NULL). `prot` must be a kernel protection
 * (V = 1, U = 0); PAGE_KERNEL by default.
 */
export function vmap(sys: MmSubsystem, pfns: ArrayLike<number>, prot = PAGE_KERNEL): bigint | null {
  if ((prot & PTE_V) === 0 || (prot & PTE_U) !== 0 || (prot & ~0x3ff) !== 0) {
    throw new SimError(`vmap: prot 0x${prot.toString(16)} is not a kernel protection (V=1, U=0)`);
  }
  const mm = initMm(sys);
  const addr = vmapPages(mm, pfns, prot);
  if (sys.ctx.trace.enabled) {
    sys.ctx.trace.emit("mm:vmap", mm.track, { addr, pages: pfns.length });
  }
  return addr;
}

function vmapPages(mm: KernelMm, pfns: ArrayLike<number>, prot: number): bigint | null {
  if (pfns.length === 0) return null;
  let start = lowestFreeRange(mm, pfns.length + 1);
  if (start < 0 && mm.purgeList.length > 0) {
    // reclaim_and_purge_vmap_areas, then one more try.
    purgeVmapAreaLazy(mm);
    start = lowestFreeRange(mm, pfns.length + 1);
  }
  if (start < 0) return null;
  const area: VmapArea = { startPage: start, pages: pfns.length, prot };
  insertSorted(mm.areas, area);
  for (let i = 0; i < pfns.length; i++) {
    const rc = mm.pgtable.map4k(start + i, pfns[i]!, prot);
    if (rc === PT_OK) continue;
    if (rc !== PT_NO_MEMORY) {
      throw new SimError(
        `vmap: page ${i} at 0x${(start + i).toString(16)}: ${PT_STATUS_NAMES[rc]}`,
      );
    }
    // vmap_pages_range failed: vunmap(area->addr), then NULL.
    freeUnmapVmapArea(mm, area, i);
    return null;
  }
  return BigInt(start) << SHIFT;
}

/**
 * `vunmap(addr)`: unmaps the vmap area containing `addr` (its PTEs at once, the TLB flush
 * lazily). Null does nothing; an address in no busy area WARNs ("Trying to vunmap()
 * nonexistent vm area"), after a second WARN when it is not page aligned.
 */
export function vunmap(sys: MmSubsystem, addr: bigint | null): void {
  if (addr === null || addr === 0n) return;
  const mm = initMm(sys);
  const warnings = sys.ctx.warnings;
  let area: VmapArea | undefined;
  // remove_vm_area: a page-aligned address inside a busy area (guard page included).
  if (!warnings.on((addr & 0xfffn) !== 0n, "remove_vm_area", "Trying to vfree() bad address")) {
    const page = Number(addr >> SHIFT);
    area = mm.areas.find((a) => page >= a.startPage && page <= a.startPage + a.pages);
  }
  if (area === undefined) {
    warnings.warn("vunmap", "Trying to vunmap() nonexistent vm area", { addr });
    return;
  }
  freeUnmapVmapArea(mm, area, area.pages);
  if (sys.ctx.trace.enabled) {
    sys.ctx.trace.emit("mm:vunmap", mm.track, {
      addr: BigInt(area.startPage) << SHIFT,
      pages: area.pages,
    });
  }
}

/**
 * `vm_unmap_aliases()`: purges the lazily freed areas now — one flush_tlb_kernel_range over
 * them — so no CPU keeps a translation of a page the caller is about to reuse.
 */
export function vmUnmapAliases(sys: MmSubsystem): void {
  purgeVmapAreaLazy(initMm(sys));
}

/**
 * free_unmap_vmap_area: the first `mapped` pages lose their PTEs (vunmap_range_noflush), the
 * area moves to the purge list (free_vmap_area_noflush), and past lazy_max_pages the purge is
 * scheduled (drain_vmap_work).
 */
function freeUnmapVmapArea(mm: KernelMm, area: VmapArea, mapped: number): void {
  mm.areas.splice(mm.areas.indexOf(area), 1);
  for (let i = 0; i < mapped; i++) {
    const rc = mm.pgtable.unmap4k(area.startPage + i);
    if (rc !== PT_OK) {
      throw new SimError(
        `vunmap: page 0x${(area.startPage + i).toString(16)}: ${PT_STATUS_NAMES[rc]}`,
      );
    }
  }
  insertSorted(mm.purgeList, area);
  mm.lazyPages += area.pages + 1;
  if (mm.lazyPages > lazyMaxPages(mm.sys)) {
    // schedule_work(&drain_vmap_work): a no-op while it is pending.
    mm.drain ??= {
      queue: mm.sys.ctx.scheduler.createQueue("drain_vmap_work"),
      work: new Work("drain_vmap_area_work", () => purgeVmapAreaLazy(mm)),
    };
    mm.drain.queue.queueWork(mm.drain.work);
  }
}

/**
 * __purge_vmap_area_lazy: one flush_tlb_kernel_range over [lowest start, highest end) of the
 * lazily freed areas, whose address ranges then become free.
 */
function purgeVmapAreaLazy(mm: KernelMm): void {
  const list = mm.purgeList;
  if (list.length === 0) return;
  let start = list[0]!.startPage;
  let end = 0;
  for (const a of list) {
    if (a.startPage < start) start = a.startPage;
    if (a.startPage + a.pages + 1 > end) end = a.startPage + a.pages + 1;
  }
  flushTlbKernelRange(mm, BigInt(start) << SHIFT, BigInt(end) << SHIFT);
  list.length = 0;
  mm.lazyPages = 0;
}

/** find_vmap_lowest_match: the lowest start page of `span` free pages, or -1. */
function lowestFreeRange(mm: KernelMm, span: number): number {
  const taken = [...mm.areas, ...mm.purgeList].sort((a, b) => a.startPage - b.startPage);
  let at = mm.vmallocStartPage;
  for (const a of taken) {
    if (a.startPage - at >= span) break;
    at = Math.max(at, a.startPage + a.pages + 1);
  }
  return mm.vmallocEndPage - at >= span ? at : -1;
}

function insertSorted(list: VmapArea[], area: VmapArea): void {
  let i = list.length;
  while (i > 0 && list[i - 1]!.startPage > area.startPage) i--;
  list.splice(i, 0, area);
}
