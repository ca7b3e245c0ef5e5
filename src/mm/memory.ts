// Demand paging and page-range teardown (mm/memory.c, mm/gup.c, shmem_fault).
//
// handle_mm_fault(vma, address, flags, regs) returns a vm_fault_t: 0 when the fault was handled
// (the access can be retried), else VM_FAULT_* bits (VM_FAULT_SIGSEGV, VM_FAULT_OOM, …) as values.
//
// - Not-present page, private VMA (do_anonymous_page): a read or exec fault maps the shared zero
//   page read-only and special (pte_mkspecial: RSW=1); a write fault allocates a zeroed frame
//   and maps it with vm_page_prot plus W and D (pte_mkwrite(pte_mkdirty())). V=1 and A=1 come
//   from vm_page_prot (_PAGE_BASE).
// - Not-present page, shared VMA (shmem_fault + finish_fault): the shmem object's page at the
//   VMA's offset (allocated and zeroed on first use) mapped with vm_page_prot, D on a write.
// - Present page, write without W (do_wp_page): the zero page — the special PTE, which
//   vm_normal_page has no page for — is copied (wp_page_copy: a new zeroed frame replaces it in
//   the same PTE, with an MMU_NOTIFY_CLEAR range and a flush of that page alone, so a secondary
//   MMU drops the zero page; no table page is freed); any other page is reused in place
//   (wp_page_reuse). An unshare fault (FAULT_FLAG_UNSHARE, from GUP's read-only long-term pin)
//   copies the zero page the same way but maps the copy read-only and clean.
// - Present page otherwise (the Svade path of handle_pte_fault): A, and D for a write, are set
//   in the PTE (ptep_set_access_flags). This is how a store to a clean writable page marks it
//   dirty, and how a CPU or IOMMU walking with A/D faults (Svade / SADE=0) makes progress.
// - A PROT_NONE PTE in a VMA that allows access (do_numa_page's case) never occurs: mprotect
//   rewrites every PTE of its range in place, so it is a simulator bug here.
//
// sanitize_fault_flags: an unshare fault that is also a write is a caller bug (WARN_ON_ONCE)
// and VM_FAULT_SIGSEGV. Access checks: the architecture's fault handler (access_error) and the IOPF handler check the
// VMA's permissions before calling handle_mm_fault; here the same check is part of the call, so
// a write to a non-writable VMA, an exec of a non-executable one, a read of one with neither
// VM_READ nor VM_WRITE, or an address outside the VMA is VM_FAULT_SIGSEGV. (Linux's FOLL_FORCE
// writes into read-only private mappings, used by ptrace, are not modelled.)
//
// Accounting (mm_account_fault): every fault counts as a PGFAULT event, failed ones included;
// only a fault that succeeded counts in the task's min_flt, or maj_flt when it was VM_FAULT_MAJOR
// or a retry (FAULT_FLAG_TRIED). The kernel charges `current`; here `regs` stands for the task
// whose counters those are, and a remote fault (IOPF work, get_user_pages on another mm) passes
// null: the task that would be `current` (a kworker, the pinning caller) is not modelled.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { err, OK, type Result } from "../base/result.js";
import { PTE_A, PTE_D, PTE_W } from "../hw/pgtable/pte.js";
import { PteCursor } from "../hw/pgtable/pte-cursor.js";
import {
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_TRIED,
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_WRITE,
  faultFlagsString,
  VM_EXEC,
  VM_FAULT_ERROR,
  VM_FAULT_MAJOR,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VM_READ,
  VM_WRITE,
  vmFaultString,
} from "./flags.js";
import type { FaultCounters, MmStruct, VmArea } from "./mm-types.js";
import { mmuNotifierInvalidateRangeEnd, mmuNotifierInvalidateRangeStart } from "./mmu-notifier.js";
import { maybeMkwrite, PAGE_NONE, PAGE_SPECIAL, pteProtnone, pteSpecial } from "./pgprot.js";
import { nextPte, ptepGet, ptesInRange, replacePte, setPteAt } from "./pte-ops.js";
import { flushTlbPage, type MmuGather } from "./tlb.js";

const SHIFT = BigInt(PAGE_SHIFT);
/** Cursors of the fault path, of MAP_POPULATE and of zap: allocated once, one per use. */
const faultPte = new PteCursor();
const populatePte = new PteCursor();
const zapPte = new PteCursor();

/** handle_mm_fault. `regs`: the faulting task's counters, or null for a remote fault. */
export function handleMmFault(
  vma: VmArea,
  address: bigint,
  flags: number,
  regs: FaultCounters | null = null,
): number {
  if (vma.detached) throw new SimError("handle_mm_fault on a VMA that was unmapped");
  const mm = vma.mm;
  const vpn = Number(address >> SHIFT);
  let ret: number;
  if (
    mm.sys.ctx.warnings.on(
      (flags & (FAULT_FLAG_UNSHARE | FAULT_FLAG_WRITE)) === (FAULT_FLAG_UNSHARE | FAULT_FLAG_WRITE),
      "sanitize_fault_flags",
      "FAULT_FLAG_UNSHARE with FAULT_FLAG_WRITE",
    )
  ) {
    ret = VM_FAULT_SIGSEGV;
  } else if (address < 0n || vpn < vma.startPage || vpn >= vma.endPage) {
    mm.sys.ctx.warnings.warn("handle_mm_fault", "address outside the VMA", {
      mm: mm.id,
      address,
    });
    ret = VM_FAULT_SIGSEGV;
  } else if (!accessPermitted(vma.flags, flags)) {
    ret = VM_FAULT_SIGSEGV;
  } else {
    ret = handlePteFault(vma, vpn, flags);
  }
  // mm_account_fault
  mm.sys.pgfault++;
  if (regs !== null && (ret & VM_FAULT_ERROR) === 0) {
    if (ret & VM_FAULT_MAJOR || flags & FAULT_FLAG_TRIED) regs.majFlt++;
    else regs.minFlt++;
  }
  if (mm.sys.ctx.trace.enabled) {
    mm.sys.ctx.trace.emit("mm:fault", mm.track, {
      mm: mm.id,
      addr: address,
      flags: faultFlagsString(flags),
      result: vmFaultString(ret),
    });
  }
  return ret;
}

/** access_error of arch/riscv/mm/fault.c: write needs VM_WRITE, exec VM_EXEC, read R or W. */
function accessPermitted(vmFlags: number, faultFlags: number): boolean {
  if (faultFlags & FAULT_FLAG_WRITE) return (vmFlags & VM_WRITE) !== 0;
  if (faultFlags & FAULT_FLAG_INSTRUCTION) return (vmFlags & VM_EXEC) !== 0;
  return (vmFlags & (VM_READ | VM_WRITE)) !== 0;
}

/**
 * fixup_user_fault: faults `address` of `mm` in as the caller's kernel code would (no task
 * accounting). EFAULT when no VMA holds the address or the VMA does not permit the access
 * (vma_permits_fault: a write needs VM_WRITE, anything else VM_READ); ENOMEM on VM_FAULT_OOM;
 * EFAULT on any other VM_FAULT error.
 */
export function fixupUserFault(mm: MmStruct, address: bigint, faultFlags: number): Result {
  const vma = mm.vmaLookup(address);
  if (vma === null) return err("EFAULT");
  const need = faultFlags & FAULT_FLAG_WRITE ? VM_WRITE : VM_READ;
  if ((vma.flags & need) === 0) return err("EFAULT");
  const ret = handleMmFault(vma, address, faultFlags, null);
  if (ret & VM_FAULT_OOM) return err("ENOMEM");
  if (ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return err("EFAULT");
  return OK;
}

/**
 * populate_vma_page_range (MAP_POPULATE): faults in every page of [startPage, endPage) of the
 * VMA the way get_user_pages does with FOLL_FORCE — a write fault for private writable memory
 * (no zero page), a read fault otherwise; pages already present are left alone. Stops at the
 * first failure; like mm_populate, the caller ignores it.
 */
export function populateVmaPageRange(vma: VmArea, startPage: number, endPage: number): void {
  if (vma.pageProt === PAGE_NONE) return;
  const write = (vma.flags & VM_WRITE) !== 0 && !vma.isShared;
  const flags = write ? FAULT_FLAG_WRITE : 0;
  for (let vpn = startPage; vpn < endPage; vpn++) {
    if (ptepGet(vma.mm, populatePte, vpn) && (!write || populatePte.lo & PTE_W)) continue;
    if (handlePteFault(vma, vpn, flags) !== 0) return;
  }
}

/** __handle_mm_fault / handle_pte_fault for a permitted access. */
function handlePteFault(vma: VmArea, vpn: number, flags: number): number {
  const mm = vma.mm;
  const write = (flags & FAULT_FLAG_WRITE) !== 0;
  if (!ptepGet(mm, faultPte, vpn)) {
    // An unshare fault on a missing page is a read fault: GUP comes back for the zero page.
    return vma.isShared ? shmemFault(vma, vpn, write) : doAnonymousPage(vma, vpn, write);
  }
  const pte = faultPte.flags;
  if (pteProtnone(pte)) {
    throw new SimError(`PROT_NONE PTE at page 0x${vpn.toString(16)} of a VMA that allows access`);
  }
  let next = pte | PTE_A;
  if (write || flags & FAULT_FLAG_UNSHARE) {
    if ((pte & PTE_W) === 0) return doWpPage(vma, vpn, pte, write);
    if (write) next |= PTE_D;
  }
  // ptep_set_access_flags: only A/D can change here; no flush is needed for an upgrade.
  if (next !== pte) mm.pgtable.updateAt(faultPte, next, 0);
  return 0;
}

/** do_anonymous_page. */
function doAnonymousPage(vma: VmArea, vpn: number, write: boolean): number {
  const mm = vma.mm;
  const prot = vma.pageProt;
  if (!write) {
    // The zero page, read-only whatever the VMA allows (vm_page_prot has no W for private).
    return setPteAt(mm, vpn, mm.sys.zeroPfn, prot | PAGE_SPECIAL) ? 0 : VM_FAULT_OOM;
  }
  anonVmaPrepare(vma);
  const ppn = mm.sys.frames.alloc();
  if (ppn < 0) return VM_FAULT_OOM;
  if (!setPteAt(mm, vpn, ppn, maybeMkwrite(prot | PTE_D, vma.flags))) {
    mm.sys.frames.free(ppn);
    return VM_FAULT_OOM;
  }
  mm.rssAnon++;
  return 0;
}

/** shmem_fault + finish_fault: the shared object's page, mapped with vm_page_prot. */
function shmemFault(vma: VmArea, vpn: number, write: boolean): number {
  const mm = vma.mm;
  const shmem = vma.shmem;
  if (shmem === null) throw new SimError("shared VMA without a backing object");
  const ppn = shmem.getOrAlloc(vma.pgoff + (vpn - vma.startPage));
  if (ppn < 0) return VM_FAULT_OOM;
  const pte = write ? maybeMkwrite(vma.pageProt | PTE_D, vma.flags) : vma.pageProt;
  if (!setPteAt(mm, vpn, ppn, pte)) return VM_FAULT_OOM;
  mm.rssShmem++;
  return 0;
}

/**
 * do_wp_page: a write (or, `write` false, an unshare: FAULT_FLAG_UNSHARE) to a present PTE
 * `pte` (at faultPte) without W. An unshare needs nothing for the process's own page and
 * replaces the zero page by a private copy mapped read-only (wp_page_copy with unshare: no
 * pte_mkwrite, no pte_mkdirty), so a read-only long-term pin holds the page the process will
 * go on seeing.
 */
function doWpPage(vma: VmArea, vpn: number, pte: number, write: boolean): number {
  const mm = vma.mm;
  if (!pteSpecial(pte)) {
    // The page is this mm's own (anonymous and exclusive, or shared): wp_page_reuse for a write.
    if (write) mm.pgtable.updateAt(faultPte, maybeMkwrite(PTE_A | PTE_D, vma.flags), 0);
    return 0;
  }
  // wp_page_copy of the zero page: a fresh zeroed page (no copy needed) replaces it.
  anonVmaPrepare(vma);
  const fresh = mm.sys.frames.alloc();
  if (fresh < 0) return VM_FAULT_OOM;
  const start = BigInt(vpn) << SHIFT;
  const range = mmuNotifierInvalidateRangeStart(mm, "MMU_NOTIFY_CLEAR", start, start + 4096n);
  // ptep_clear_flush then set_pte_at_notify: one PTE rewritten in place (looked up again, as
  // the notifiers ran in between), then that page flushed.
  const prot = write ? maybeMkwrite(vma.pageProt | PTE_D, vma.flags) : vma.pageProt;
  replacePte(mm, vpn, fresh, prot);
  flushTlbPage(mm, start);
  mm.rssAnon++;
  mmuNotifierInvalidateRangeEnd(range);
  return 0;
}

/** anon_vma_prepare: the VMA's first allocated page gives it an anon_vma. */
function anonVmaPrepare(vma: VmArea): void {
  if (vma.anonVma === 0) vma.anonVma = vma.mm.newAnonVma();
}

/**
 * zap_pte_range over [startPage, endPage) of one VMA: clears every PTE (PROT_NONE ones too),
 * widens the gather's flush range, and hands anonymous frames to the gather to free after the
 * flush. Shared pages stay in their object; the zero page (special) is never freed. Page tables
 * left empty are detached (reclaim "defer") for the gather to free after a whole-mm flush.
 */
export function zapVmaRange(tlb: MmuGather, vma: VmArea, startPage: number, endPage: number): void {
  const mm = vma.mm;
  const pt = mm.pgtable;
  ptesInRange(mm, zapPte, startPage, endPage);
  while (nextPte(mm, zapPte)) {
    const special = pteSpecial(zapPte.lo);
    const ppn = zapPte.ppn;
    tlb.addPage(zapPte.vpn);
    pt.clearAt(zapPte);
    if (special) continue;
    if (vma.shmem !== null) {
      mm.rssShmem--;
    } else {
      mm.rssAnon--;
      tlb.removeFrame(ppn);
    }
  }
}

/**
 * unmap_vmas: zaps [start, end) (page numbers) of each VMA inside an MMU_NOTIFY_UNMAP range.
 * `rangeStart`/`rangeEnd` are the addresses the notifiers see.
 */
export function unmapVmas(
  tlb: MmuGather,
  vmas: readonly VmArea[],
  startPage: number,
  endPage: number,
  rangeStart: bigint,
  rangeEnd: bigint,
): void {
  if (vmas.length === 0) return;
  const mm = tlb.mm;
  const range = mmuNotifierInvalidateRangeStart(mm, "MMU_NOTIFY_UNMAP", rangeStart, rangeEnd);
  for (const vma of vmas) {
    zapVmaRange(tlb, vma, Math.max(startPage, vma.startPage), Math.min(endPage, vma.endPage));
  }
  mmuNotifierInvalidateRangeEnd(range);
}
