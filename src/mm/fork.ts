// Address-space creation, teardown and duplication (kernel/fork.c: mm_alloc, mmput, dup_mm).
//
// mmput dropping mm_users to 0 runs exit_mmap (notifier ->release first, then every page and
// page table below the root goes) and then drops the users' mm_count reference; the structure,
// its page-table root and iommuMm live on until the last mmdrop (__mmdrop, mm-refs.ts), which
// is where mm_pasid_drop belongs.
//
// fork (dup_mm / dup_mmap): the child gets a copy of every VMA (VM_DONTCOPY ones excepted), a
// fresh anon_vma where the parent had one, its own references to shared objects, no mmu
// notifiers and iommuMm = null (mm_pasid_init). Pages:
// - shared VMAs copy no PTEs: the child faults the shared object's pages in on use;
// - private VMAs that have pages are copied eagerly, with no copy-on-write: every private
//   page (PROT_NONE ones too) gets a new frame with the same contents, mapped as
//   copy_present_page maps the copy of a page that must not be shared (vm_page_prot, dirty,
//   writable if the VMA is). Zero-page PTEs (special, no page to copy) are copied as they are,
//   made old (A=0) like copy_present_pte does, so the child's first access sets A by a fault.
// copy_page_range brackets the copy of a COW VMA (private, may be writable) with an
// MMU_NOTIFY_PROTECTION_PAGE range over the whole VMA on the parent, where the kernel
// write-protects the parent's PTEs; the range is sent here too, though the eager copy changes
// no parent PTE. dup_mmap ends with flush_tlb_mm of the parent: a secondary MMU bound to the
// parent sees a whole-mm invalidation at every fork.

import { SimError } from "../base/errors.js";
import { err, ok, type Result } from "../base/result.js";
import { type PagingMode, SV48 } from "../hw/pgtable/modes.js";
import { PageTable } from "../hw/pgtable/page-table.js";
import { PTE_A, PTE_D } from "../hw/pgtable/pte.js";
import { PteCursor } from "../hw/pgtable/pte-cursor.js";
import { VM_DONTCOPY, VM_MAYWRITE, VM_SHARED } from "./flags.js";
import { mmLayout } from "./layout.js";
import { mmdrop } from "./mm-refs.js";
import { MmStruct, type MmSubsystem, type VmArea } from "./mm-types.js";
import { exitMmap } from "./mmap.js";
import { mmuNotifierInvalidateRangeEnd, mmuNotifierInvalidateRangeStart } from "./mmu-notifier.js";
import { maybeMkwrite, pteSpecial } from "./pgprot.js";
import { nextPte, ptesInRange, setPteAt } from "./pte-ops.js";
import { flushTlbMm } from "./tlb.js";
import { vmaDup } from "./vma.js";

export interface MmAllocOptions {
  /** Sv39, Sv48 (default) or Sv57. */
  readonly mode?: PagingMode;
}

/** mm_alloc: a new empty address space with one user; ENOMEM when no frame for the root. */
export function mmAlloc(sys: MmSubsystem, options: MmAllocOptions = {}): Result<MmStruct> {
  const mode = options.mode ?? SV48;
  if (mode.gStage) throw new SimError(`${mode.name} is not a first-stage mode for a process`);
  const pgtable = PageTable.create(sys.memory, sys.frames, mode, { reclaim: "defer" });
  if (pgtable === null) return err("ENOMEM");
  const mm = new MmStruct(sys, sys.allocMmId(), pgtable, mmLayout(mode, sys.stackRlimit));
  sys.addLive(mm);
  return ok(mm);
}

/** mmput: drops a user; the last one runs exit_mmap, then drops the users' mm_count. */
export function mmput(mm: MmStruct): void {
  if (mm.users <= 0) throw new SimError(`mmput on mm ${mm.id} whose users are gone`);
  // init_mm's two static users are nobody's to put.
  if (mm.kernel && mm.users <= 2) throw new SimError("mmput of init_mm's own users");
  if (--mm.users > 0) return;
  exitMmap(mm);
  mmdrop(mm);
}

/** dup_mm: the fork child's address space (see above); ENOMEM when memory runs out. */
export function dupMm(oldMm: MmStruct): Result<MmStruct> {
  if (oldMm.state !== "live") throw new SimError(`fork of mm ${oldMm.id}, which has exited`);
  const made = mmAlloc(oldMm.sys, { mode: oldMm.pgtable.mode });
  if (!made.ok) return made;
  const mm = made.value;
  let failed = false;
  for (const vma of oldMm.vmas) {
    if (vma.flags & VM_DONTCOPY) continue;
    const tmp = vmaDup(vma, mm, vma.startPage, vma.endPage);
    if (vma.anonVma !== 0) {
      // anon_vma_fork: a new anon_vma whose chain also holds the parent's.
      tmp.anonVma = mm.newAnonVma();
      tmp.anonVmaForked = true;
    }
    mm.vmas.insert(tmp);
    if (vma.anonVma !== 0 && !copyPageRange(tmp, vma)) {
      failed = true;
      break;
    }
  }
  flushTlbMm(oldMm);
  oldMm.sys.ctx.trace.emit("mm:fork", oldMm.track, {
    parent: oldMm.id,
    child: mm.id,
    result: failed ? "ENOMEM" : "ok",
  });
  if (failed) {
    mmput(mm);
    return err("ENOMEM");
  }
  return made;
}

/** The cursor copy_page_range walks the parent's PTEs with (allocated once). */
const copyPte = new PteCursor();

/** copy_page_range for one VMA with an anon_vma; false when a frame or table page ran out. */
function copyPageRange(dst: VmArea, src: VmArea): boolean {
  // is_cow_mapping: the parent's PTEs would be write-protected; secondary MMUs hear of it.
  if ((src.flags & (VM_SHARED | VM_MAYWRITE)) !== VM_MAYWRITE) return copyPtes(dst, src);
  const range = mmuNotifierInvalidateRangeStart(
    src.mm,
    "MMU_NOTIFY_PROTECTION_PAGE",
    src.start,
    src.end,
  );
  const copied = copyPtes(dst, src);
  mmuNotifierInvalidateRangeEnd(range);
  return copied;
}

/** copy_pte_range over the whole VMA: each private page copied into a new frame. */
function copyPtes(dst: VmArea, src: VmArea): boolean {
  const mm = dst.mm;
  const sys = mm.sys;
  const cur = copyPte;
  ptesInRange(src.mm, cur, src.startPage, src.endPage);
  while (nextPte(src.mm, cur)) {
    const pte = cur.flags;
    const ppn = cur.ppn;
    if (pteSpecial(pte)) {
      if (!setPteAt(mm, cur.vpn, ppn, pte & ~PTE_A)) return false;
      continue;
    }
    const copy = sys.frames.alloc();
    if (copy < 0) return false;
    sys.memory.writablePageU8(copy)!.set(sys.memory.pageU8(ppn)!);
    if (!setPteAt(mm, cur.vpn, copy, maybeMkwrite(dst.pageProt | PTE_D, dst.flags))) {
      sys.frames.free(copy);
      return false;
    }
    mm.rssAnon++;
  }
  return true;
}
