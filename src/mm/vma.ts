// VMA surgery (mm/vma.c): splitting, merging and removing VMAs of one address space.
//
// Merging follows the kernel's rules for anonymous memory: two adjacent VMAs merge when their
// flags are equal, they map the same object contiguously (private memory: page offsets follow
// on; shared memory: the same shmem object at following offsets), and their anon_vmas are
// compatible — equal, or one of them has none and the other's chain is its own alone (a VMA
// copied by fork, whose chain holds its parent's anon_vma too, never takes a VMA without one).

import { SimError } from "../base/errors.js";
import { type MmStruct, VmArea } from "./mm-types.js";

/**
 * __split_vma: cuts `vma` at page `at` (strictly inside it). The original keeps [start, at);
 * the new VMA, returned, gets [at, end) with the same flags, object reference and anon_vma.
 * No map-count check here (split_vma's check is the caller's).
 */
export function splitVma(vma: VmArea, at: number): VmArea {
  if (!(at > vma.startPage && at < vma.endPage)) {
    throw new SimError(`split of VMA [${vma.startPage}, ${vma.endPage}) at ${at}`);
  }
  const mm = vma.mm;
  const upper = vmaDup(vma, mm, at, vma.endPage);
  vma.endPage = at;
  mm.vmas.insert(upper);
  return upper;
}

/** Whether `a` (directly below) and `b` can become one VMA, with `b` given flags `bFlags`. */
export function canMerge(a: VmArea, b: VmArea, bFlags = b.flags): boolean {
  if (a.endPage !== b.startPage || a.flags !== bFlags) return false;
  if (a.shmem !== b.shmem) return false;
  if (a.pgoff + (a.endPage - a.startPage) !== b.pgoff) return false;
  return anonVmaCompatible(a, b);
}

/** is_mergeable_anon_vma: whether the anon_vmas of `a` and `b` allow one VMA. */
export function anonVmaCompatible(a: VmArea, b: VmArea): boolean {
  if (a.anonVma === 0 && b.anonVma === 0) return true;
  if (a.anonVma !== 0 && b.anonVma !== 0) return a.anonVma === b.anonVma;
  const owner = a.anonVma !== 0 ? a : b;
  return !owner.anonVmaForked;
}

/** Folds `b` (directly above `a`, mergeable) into `a`, which grows; `b` is removed. */
export function mergeInto(a: VmArea, b: VmArea): void {
  removeVma(b);
  a.endPage = b.endPage;
  if (a.anonVma === 0) {
    a.anonVma = b.anonVma;
    a.anonVmaForked = b.anonVmaForked;
  }
}

/**
 * Merges `vma` with its neighbours where the rules allow (prev first, then next); returns the
 * VMA that now covers `vma`'s range.
 */
export function mergeAround(vma: VmArea): VmArea {
  const mm = vma.mm;
  const i = mm.vmas.indexOf(vma);
  let cur = vma;
  const prev = i > 0 ? mm.vmas.at(i - 1) : undefined;
  if (prev !== undefined && canMerge(prev, cur)) {
    mergeInto(prev, cur);
    cur = prev;
  }
  const next = mm.vmas.at(mm.vmas.indexOf(cur) + 1);
  if (next !== undefined && canMerge(cur, next)) mergeInto(cur, next);
  return cur;
}

/** remove_vma: takes the VMA out of its mm and drops its object reference. */
export function removeVma(vma: VmArea): void {
  vma.mm.vmas.remove(vma);
  vma.detached = true;
  vma.shmem?.put();
}

/**
 * vm_area_dup: a VMA of `mm` over [startPage, endPage) with `src`'s flags, object (one more
 * reference) and anon_vma, its page offset moved along with the start.
 */
export function vmaDup(src: VmArea, mm: MmStruct, startPage: number, endPage: number): VmArea {
  const copy = new VmArea(
    mm,
    startPage,
    endPage,
    src.flags,
    src.pgoff + (startPage - src.startPage),
    src.shmem === null ? null : src.shmem.get(),
  );
  copy.anonVma = src.anonVma;
  copy.anonVmaForked = src.anonVmaForked;
  return copy;
}
