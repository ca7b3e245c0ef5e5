// mprotect (mm/mprotect.c do_mprotect_pkey, mprotect_fixup, change_protection).
//
// Errors, in the kernel's order: PROT_GROWSDOWN with PROT_GROWSUP → EINVAL; start unaligned →
// EINVAL; len 0 → success, nothing done; start + len past 2^64 → ENOMEM; prot bits other than
// READ/WRITE/EXEC/SEM → EINVAL; no VMA at start → ENOMEM; PROT_GROWSDOWN/UP on a VMA that does
// not grow that way (no simulated VMA does) → EINVAL; a hole inside the range → ENOMEM; a new
// permission the VMA may not take (VM_MAYx clear) → EACCES; a split past max_map_count →
// ENOMEM. Like the kernel, VMAs before the failing one keep their new protection.
//
// A private VMA made writable for the first time is charged (VM_ACCOUNT, kept afterwards; not
// for VM_NORESERVE or shared memory), as mprotect_fixup does; the flag takes part in merging.
// Each VMA changed is merged with its neighbours when the rules allow, else split; then every
// PTE of the range (present or PROT_NONE) is rewritten in place with pte_modify(old, new
// vm_page_prot) — PFN, A, D and the software bits kept — and for private writable VMAs W
// directly when the page is the process's own (not the special zero page), as
// MM_CP_TRY_CHANGE_WRITABLE does. To PROT_NONE, a PTE keeps its frame with V=0 (PAGE_NONE), so
// the hardware sees it invalid; back to an accessible protection it needs no memory. One TLB
// flush (and secondary-TLB invalidation) covers every changed PTE.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { err, OK, type Result } from "../base/result.js";
import { PTE_FLAGS_MASK, PTE_V, PTE_W } from "../hw/pgtable/pte.js";
import { PteCursor } from "../hw/pgtable/pte-cursor.js";
import {
  calcVmProtBits,
  PROT_EXEC,
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_READ,
  PROT_SEM,
  PROT_WRITE,
  VM_ACCESS_FLAGS,
  VM_ACCOUNT,
  VM_NORESERVE,
  VM_SHARED,
  VM_WRITE,
} from "./flags.js";
import type { MmStruct, VmArea } from "./mm-types.js";
import { mmuNotifierInvalidateRangeEnd, mmuNotifierInvalidateRangeStart } from "./mmu-notifier.js";
import { pteModify, pteSpecial, vmGetPageProt } from "./pgprot.js";
import { nextPte, ptesInRange } from "./pte-ops.js";
import { MmuGather } from "./tlb.js";
import { anonVmaCompatible, canMerge, mergeInto, splitVma } from "./vma.js";

const SHIFT = BigInt(PAGE_SHIFT);
const PAGE = 4096n;
const U64_LIMIT = 1n << 64n;
/** The cursor change_protection walks the PTEs with (allocated once). */
const protPte = new PteCursor();

/** mprotect(start, len, prot) on `mm`. */
export function doMprotect(mm: MmStruct, start: bigint, len: bigint, prot: number): Result {
  if (typeof start !== "bigint" || start < 0n || start >= U64_LIMIT) {
    throw new SimError(`start must be an unsigned 64-bit bigint, got ${String(start)}`);
  }
  if (typeof len !== "bigint" || len < 0n || len >= U64_LIMIT) {
    throw new SimError(`len must be an unsigned 64-bit bigint, got ${String(len)}`);
  }
  if (mm.state !== "live") throw new SimError(`mprotect on mm ${mm.id}, which has exited`);
  if (mm.kernel) throw new SimError("mprotect on init_mm: it has no VMAs");
  const res = mprotect(mm, start, len, prot);
  if (mm.sys.ctx.trace.enabled) {
    mm.sys.ctx.trace.emit("mm:mprotect", mm.track, {
      mm: mm.id,
      start,
      len,
      prot,
      result: res.ok ? "ok" : res.errno,
    });
  }
  return res;
}

function mprotect(mm: MmStruct, start: bigint, len0: bigint, prot0: number): Result {
  const grows = prot0 & (PROT_GROWSDOWN | PROT_GROWSUP);
  const prot = prot0 & ~grows;
  if (grows === (PROT_GROWSDOWN | PROT_GROWSUP)) return err("EINVAL");
  if ((start & (PAGE - 1n)) !== 0n) return err("EINVAL");
  if (len0 === 0n) return OK;
  const end = start + ((len0 + PAGE - 1n) & ~(PAGE - 1n));
  if (end >= U64_LIMIT || end <= start) return err("ENOMEM");
  if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) !== 0) return err("EINVAL");
  const startPage = Number(start >> SHIFT);
  const endPage = Number(end >> SHIFT);
  const first = mm.vmas.intersection(startPage, endPage);
  if (first === null) return err("ENOMEM");
  // No simulated VMA grows down, and RISC-V has no VM_GROWSUP at all.
  if (grows & PROT_GROWSDOWN) return err("EINVAL");
  if (first.startPage > startPage) return err("ENOMEM");
  if (grows & PROT_GROWSUP) return err("EINVAL");

  const tlb = new MmuGather(mm);
  let error: Result = OK;
  let tmp = first.startPage;
  let nstart = startPage;
  for (const vma of mm.vmas.overlapping(startPage, endPage)) {
    // Already covered: merged away, or grown over by the previous step's merge.
    if (vma.detached || vma.endPage <= tmp) continue;
    if (vma.startPage !== tmp) {
      error = err("ENOMEM");
      break;
    }
    const newFlags = calcVmProtBits(prot) | (vma.flags & ~VM_ACCESS_FLAGS);
    // newflags >> 4 puts VM_MAYx where VM_x is.
    if (newFlags & ~(newFlags >> 4) & VM_ACCESS_FLAGS) {
      error = err("EACCES");
      break;
    }
    tmp = Math.min(vma.endPage, endPage);
    const fixed = mprotectFixup(tlb, vma, nstart, tmp, newFlags);
    if (!fixed.ok) {
      error = fixed;
      break;
    }
    tmp = fixed.value;
    nstart = tmp;
  }
  tlb.finish();
  if (error.ok && tmp < endPage) return err("ENOMEM");
  return error;
}

/**
 * mprotect_fixup for [start, end) of `vma`: merge or split, set the flags, change the PTEs.
 * Returns the end of the VMA now covering the range (vma_iter_end).
 */
function mprotectFixup(
  tlb: MmuGather,
  vma: VmArea,
  start: number,
  end: number,
  newFlags: number,
): Result<number> {
  const oldFlags = vma.flags;
  if (newFlags === oldFlags) return { ok: true, value: vma.endPage };
  let flags = newFlags;
  // Private memory becoming writable is charged now (no commit limit is modelled).
  if (flags & VM_WRITE && !(oldFlags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE))) {
    flags |= VM_ACCOUNT;
  }
  const target = vmaModifyFlags(vma, start, end, flags);
  if (!target.ok) return target;
  changeProtection(tlb, target.value, start, end);
  return { ok: true, value: target.value.endPage };
}

/**
 * vma_modify_flags: a VMA covering exactly-or-more [start, end) with `newFlags`, made by merging
 * the range into prev/next when possible (vma_merge_existing_range), else by splitting `vma`
 * (split_vma, ENOMEM at max_map_count).
 */
function vmaModifyFlags(vma: VmArea, start: number, end: number, newFlags: number): Result<VmArea> {
  const mm = vma.mm;
  const i = mm.vmas.indexOf(vma);
  const prev = i > 0 ? mm.vmas.at(i - 1) : undefined;
  const next = mm.vmas.at(i + 1);
  const whole = start === vma.startPage && end === vma.endPage;
  const left =
    prev !== undefined &&
    start === vma.startPage &&
    prev.endPage === start &&
    prev.flags === newFlags &&
    canMergeAs(prev, vma, newFlags);
  const right =
    next !== undefined &&
    end === vma.endPage &&
    next.startPage === end &&
    next.flags === newFlags &&
    canMergeAs(vma, next, newFlags);
  if (whole && (left || right)) {
    vma.flags = newFlags;
    let cur = vma;
    if (left) {
      mergeInto(prev, vma);
      cur = prev;
    }
    if (right && anonVmaCompatible(cur, next)) mergeInto(cur, next);
    return { ok: true, value: cur };
  }
  if (left) {
    // The head of vma joins prev.
    prev.endPage = end;
    vma.pgoff += end - vma.startPage;
    vma.startPage = end;
    inheritAnonVma(prev, vma);
    return { ok: true, value: prev };
  }
  if (right) {
    // The tail of vma joins next.
    next.pgoff -= next.startPage - start;
    next.startPage = start;
    vma.endPage = start;
    inheritAnonVma(next, vma);
    return { ok: true, value: next };
  }
  let target = vma;
  if (vma.startPage < start) {
    if (mm.mapCount >= mm.sys.maxMapCount) return err("ENOMEM");
    target = splitVma(vma, start);
  }
  if (target.endPage > end) {
    if (mm.mapCount >= mm.sys.maxMapCount) return err("ENOMEM");
    splitVma(target, end);
  }
  target.flags = newFlags;
  return { ok: true, value: target };
}

/** Whether `a` and `b` (adjacent) could be one VMA once their flags are `flags`. */
function canMergeAs(a: VmArea, b: VmArea, flags: number): boolean {
  const saveA = a.flags;
  const saveB = b.flags;
  a.flags = flags;
  b.flags = flags;
  const yes = canMerge(a, b);
  a.flags = saveA;
  b.flags = saveB;
  return yes;
}

function inheritAnonVma(dst: VmArea, src: VmArea): void {
  if (dst.anonVma === 0 && src.anonVma !== 0) {
    dst.anonVma = src.anonVma;
    dst.anonVmaForked = src.anonVmaForked;
  }
}

/** change_protection over [start, end) of `vma` (whose flags are already the new ones). */
function changeProtection(tlb: MmuGather, vma: VmArea, start: number, end: number): void {
  const mm = vma.mm;
  const pt = mm.pgtable;
  const cur = protPte;
  ptesInRange(mm, cur, start, end);
  if (!nextPte(mm, cur)) return;
  const newProt = vmGetPageProt(vma.flags);
  const tryWritable = !vma.isShared && (vma.flags & VM_WRITE) !== 0;
  const range = mmuNotifierInvalidateRangeStart(
    mm,
    "MMU_NOTIFY_PROTECTION_VMA",
    BigInt(start) << SHIFT,
    BigInt(end) << SHIFT,
  );
  // From the first PTE again: the notifiers may have done anything meanwhile.
  ptesInRange(mm, cur, cur.vpn, end);
  while (nextPte(mm, cur)) {
    const old = cur.flags;
    let pte = pteModify(old, newProt);
    // can_change_pte_writable: the process's own anonymous page (never the special zero page).
    if (tryWritable && (pte & (PTE_V | PTE_W)) === PTE_V && !pteSpecial(old)) pte |= PTE_W;
    tlb.addPage(cur.vpn);
    if (pte !== old) pt.updateAt(cur, pte, PTE_FLAGS_MASK);
  }
  mmuNotifierInvalidateRangeEnd(range);
}
