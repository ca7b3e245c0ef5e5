// Pinning user pages for DMA (mm/gup.c: pin_user_pages_remote, unpin_user_pages).
//
// pin_user_pages_remote(mm, start, nr_pages, gup_flags) walks the pages one by one
// (__get_user_pages): the VMA must hold the address (no VMA: EFAULT) and allow the access
// (check_vma_flags: FOLL_WRITE needs VM_WRITE, a read needs VM_READ; else EFAULT); then the page
// is looked up (follow_page_pte) and faulted in as a remote fault (faultin_page) when it is
// missing, when FOLL_WRITE finds it without W (copy-on-write of the zero page, or a clean
// page made writable), or when a read-only FOLL_LONGTERM pin finds the zero page in a private
// writable ("COW") mapping (gup_must_unshare: a FAULT_FLAG_UNSHARE fault gives the process a
// private copy first, so the device and the process keep seeing the same page). A fault's
// VM_FAULT_OOM is ENOMEM, any other error EFAULT (vm_fault_to_errno); FOLL_NOFAULT turns a
// needed fault into EFAULT. Like the kernel it returns the pages pinned before a failure, and
// the error only when none was.
//
// A pin (FOLL_PIN) is a reference on the frame (page-ref.ts): munmap, exit_mmap or the last
// put of a shmem object take the page out of the process but leave the frame to its pins,
// and the last unpin_user_page frees it. A pin is not a mapping: after munmap the process no
// longer reaches the frame, and a new mapping gets another one.
//
// Flags: is_valid_gup_args refuses the internal flags and FOLL_GET (a WARN_ON_ONCE and
// EINVAL). FOLL_WRITE, FOLL_LONGTERM and FOLL_NOFAULT are modelled; FOLL_LONGTERM's migration
// of movable pages (check_and_migrate_movable_pages) has nothing to move here. Other flags
// (FOLL_FORCE, FOLL_DUMP, …) are not modelled and are refused as a simulator misuse.

import { PAGE_SHIFT } from "../base/bits.js";
import type { Errno } from "../base/errno.js";
import { SimError } from "../base/errors.js";
import { err, ok, type Result } from "../base/result.js";
import { PTE_W } from "../hw/pgtable/pte.js";
import { PteCursor } from "../hw/pgtable/pte-cursor.js";
import {
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_WRITE,
  FOLL_GET,
  FOLL_LONGTERM,
  FOLL_NOFAULT,
  FOLL_WRITE,
  INTERNAL_GUP_FLAGS,
  VM_FAULT_OOM,
  VM_MAYWRITE,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
} from "./flags.js";
import { handleMmFault } from "./memory.js";
import type { MmStruct, MmSubsystem, VmArea } from "./mm-types.js";
import { pteSpecial } from "./pgprot.js";
import { ptepGet } from "./pte-ops.js";

const SHIFT = BigInt(PAGE_SHIFT);
const MODELLED_FLAGS = FOLL_WRITE | FOLL_LONGTERM | FOLL_NOFAULT;
/** The cursor follow_page_pte looks with (allocated once). */
const gupPte = new PteCursor();

/**
 * pin_user_pages_remote: pins `nrPages` pages of `mm` from page-aligned `start` and returns
 * their frames in order — fewer than asked when a page after the first failed, the errno when
 * the first did. Release them with `unpinUserPages`.
 */
export function pinUserPagesRemote(
  mm: MmStruct,
  start: bigint,
  nrPages: number,
  gupFlags: number,
): Result<number[]> {
  if (typeof start !== "bigint" || start < 0n || (start & 0xfffn) !== 0n) {
    throw new SimError(`pin_user_pages_remote: start ${String(start)} is not a page address`);
  }
  if (!Number.isInteger(nrPages) || nrPages < 0) {
    throw new SimError(`pin_user_pages_remote: nr_pages ${nrPages} is not a count`);
  }
  if (mm.state !== "live")
    throw new SimError(`pin_user_pages_remote on mm ${mm.id}, which has exited`);
  const warnings = mm.sys.ctx.warnings;
  // is_valid_gup_args
  const bad = gupFlags & (INTERNAL_GUP_FLAGS | FOLL_GET);
  if (warnings.on(bad !== 0, "is_valid_gup_args", "internal or FOLL_GET gup flag", { bad })) {
    return err("EINVAL");
  }
  if ((gupFlags & ~MODELLED_FLAGS) !== 0) {
    throw new SimError(
      `pin_user_pages_remote: gup flags 0x${(gupFlags & ~MODELLED_FLAGS).toString(16)} are not modelled`,
    );
  }
  const pages: number[] = [];
  const first = Number(start >> SHIFT);
  for (let i = 0; i < nrPages; i++) {
    const got = pinOne(mm, first + i, gupFlags);
    if (typeof got === "string") return pages.length > 0 ? ok(pages) : err(got);
    pages.push(got);
  }
  return ok(pages);
}

/** unpin_user_pages: drops one pin on each frame (the last pin on a freed page frees it). */
export function unpinUserPages(sys: MmSubsystem, pages: readonly number[]): void {
  for (const ppn of pages) sys.pages.unpin(ppn);
}

/** unpin_user_page. */
export function unpinUserPage(sys: MmSubsystem, ppn: number): void {
  sys.pages.unpin(ppn);
}

/** folio_maybe_dma_pinned: frame `ppn` holds a pin. */
export function folioMaybeDmaPinned(sys: MmSubsystem, ppn: number): boolean {
  return sys.pages.pinCount(ppn) > 0;
}

/** One page of __get_user_pages: the pinned frame, or the errno. */
function pinOne(mm: MmStruct, vpn: number, gupFlags: number): number | Errno {
  const addr = BigInt(vpn) << SHIFT;
  const vma = mm.vmaLookup(addr);
  if (vma === null) return "EFAULT";
  const write = (gupFlags & FOLL_WRITE) !== 0;
  // check_vma_flags (no FOLL_FORCE).
  if ((vma.flags & (write ? VM_WRITE : VM_READ)) === 0) return "EFAULT";
  // follow_page_pte, then faultin_page and again; a missing zero page needing an unshare takes
  // two faults (the read that maps the zero page, the unshare that replaces it).
  for (let tries = 0; tries < 3; tries++) {
    const need = faultNeeded(vma, vpn, gupFlags);
    if (need < 0) {
      mm.sys.pages.pin(gupPte.ppn);
      return gupPte.ppn;
    }
    if (gupFlags & FOLL_NOFAULT) return "EFAULT";
    const ret = handleMmFault(vma, addr, need | FAULT_FLAG_REMOTE, null);
    if (ret & VM_FAULT_OOM) return "ENOMEM";
    if (ret !== 0) return "EFAULT";
  }
  throw new SimError(`get_user_pages: page 0x${vpn.toString(16)} still unusable after its faults`);
}

/**
 * follow_page_pte: -1 when the page can be pinned as it is (gupPte on its PTE), else the fault
 * flags that make it so.
 */
function faultNeeded(vma: VmArea, vpn: number, gupFlags: number): number {
  if (!ptepGet(vma.mm, gupPte, vpn) || !gupPte.valid)
    return gupFlags & FOLL_WRITE ? FAULT_FLAG_WRITE : 0;
  const pte = gupPte.flags;
  if (gupFlags & FOLL_WRITE) return pte & PTE_W ? -1 : FAULT_FLAG_WRITE;
  // gup_must_unshare: a R/O long-term pin of a page that is not the process's anonymous page
  // (here the zero page) in a COW mapping.
  const cow = (vma.flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
  if (gupFlags & FOLL_LONGTERM && pteSpecial(pte) && (pte & PTE_W) === 0 && cow)
    return FAULT_FLAG_UNSHARE;
  return -1;
}
