// mmap, munmap and exit_mmap for anonymous memory (mm/mmap.c, mm/vma.c, mm/util.c).
//
// Placement (generic_get_unmapped_area_topdown, the default layout): MAP_FIXED takes the
// address as given; a hint is used if [hint, hint+len) is free, at or above mmap_min_addr and
// below TASK_SIZE; otherwise the highest free gap below mmap_base (and at or above
// max(PAGE_SIZE, mmap_min_addr)) is used, its top end first; when none fits, the lowest free
// gap between TASK_UNMAPPED_BASE and TASK_SIZE (the bottom-up fallback). See layout.ts.
//
// Errors, in the kernel's order: len 0 → EINVAL; len rounding past 2^64 → ENOMEM; more than
// max_map_count VMAs → ENOMEM; len above TASK_SIZE − mmap_min_addr → ENOMEM; no room → ENOMEM;
// MAP_FIXED: end above TASK_SIZE → ENOMEM, unaligned → EINVAL, below mmap_min_addr → EPERM;
// MAP_FIXED_NOREPLACE over a mapping → EEXIST; a mapping type other than MAP_SHARED or
// MAP_PRIVATE → EINVAL; a MAP_FIXED that must split a VMA past max_map_count → ENOMEM.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { err, OK, ok, type Result } from "../base/result.js";
import {
  calcVmProtBits,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_TYPE,
  VM_ACCOUNT,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_NORESERVE,
  VM_SHARED,
  VM_WRITE,
} from "./flags.js";
import { populateVmaPageRange, unmapVmas } from "./memory.js";
import { type MmStruct, VmArea } from "./mm-types.js";
import { FLUSH_ALL_END, mmuNotifierRelease } from "./mmu-notifier.js";
import { ShmemObject } from "./shmem.js";
import { MmuGather } from "./tlb.js";
import { anonVmaCompatible, canMerge, mergeInto, removeVma, splitVma } from "./vma.js";

const SHIFT = BigInt(PAGE_SHIFT);
const PAGE = 4096n;
const U64_LIMIT = 1n << 64n;
const KNOWN_FLAGS =
  MAP_TYPE | MAP_FIXED | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE | MAP_FIXED_NOREPLACE;

/**
 * vm_mmap (the mmap system call for anonymous memory): maps `len` bytes at an address chosen
 * as described above; returns the address. MAP_ANONYMOUS is required (there are no files);
 * MAP_POPULATE faults the pages in; MAP_NORESERVE is accepted (no commit accounting here).
 */
export function vmMmap(
  mm: MmStruct,
  addr: bigint,
  len: bigint,
  prot: number,
  flags: number,
): Result<bigint> {
  checkU64(addr, "addr");
  checkU64(len, "len");
  if (mm.state !== "live") throw new SimError(`mmap on mm ${mm.id}, which has exited`);
  if (mm.kernel) throw new SimError("mmap on init_mm: kernel mappings are made with vmap");
  if ((flags & MAP_ANONYMOUS) === 0) throw new SimError("file mappings are not modelled");
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new SimError(`mmap flags 0x${(flags & ~KNOWN_FLAGS).toString(16)} are not modelled`);
  }
  const res = doMmap(mm, addr, len, prot, flags);
  if (mm.sys.ctx.trace.enabled) {
    mm.sys.ctx.trace.emit("mm:mmap", mm.track, {
      mm: mm.id,
      addr: res.ok ? res.value : addr,
      len,
      prot,
      flags,
      result: res.ok ? "ok" : res.errno,
    });
  }
  return res;
}

function doMmap(
  mm: MmStruct,
  addr0: bigint,
  len0: bigint,
  prot: number,
  flags0: number,
): Result<bigint> {
  if (len0 === 0n) return err("EINVAL");
  let flags = flags0;
  if (flags & MAP_FIXED_NOREPLACE) flags |= MAP_FIXED;
  let addr = addr0;
  if ((flags & MAP_FIXED) === 0) addr = roundHintToMin(mm, addr);
  const len = (len0 + PAGE - 1n) & ~(PAGE - 1n);
  if (len >= U64_LIMIT) return err("ENOMEM");
  if (mm.mapCount > mm.sys.maxMapCount) return err("ENOMEM");
  const area = getUnmappedArea(mm, addr, len, flags);
  if (!area.ok) return area;
  const start = area.value;
  const startPage = Number(start >> SHIFT);
  const endPage = startPage + Number(len >> SHIFT);
  if (flags & MAP_FIXED_NOREPLACE && mm.vmas.intersection(startPage, endPage) !== null) {
    return err("EEXIST");
  }
  let vmFlags = calcVmProtBits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  const type = flags & MAP_TYPE;
  if (type === MAP_SHARED) vmFlags |= VM_SHARED | VM_MAYSHARE;
  else if (type !== MAP_PRIVATE) return err("EINVAL");
  // vm.overcommit_memory is OVERCOMMIT_GUESS: MAP_NORESERVE is honoured.
  if (flags & MAP_NORESERVE) vmFlags |= VM_NORESERVE;
  // accountable_mapping: private writable memory is charged and marked VM_ACCOUNT, which (like
  // every flag) keeps it from merging with uncharged neighbours.
  if ((vmFlags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) === VM_WRITE) vmFlags |= VM_ACCOUNT;
  // mmap_region: a MAP_FIXED mapping replaces whatever it covers.
  const cleared = munmapRange(mm, startPage, endPage);
  if (!cleared.ok) return cleared;
  const vma = insertMapping(mm, startPage, endPage, vmFlags);
  if (flags & MAP_POPULATE) populateVmaPageRange(vma, startPage, endPage);
  return ok(start);
}

/** round_hint_to_min: a hint below mmap_min_addr is raised to it; hints are page aligned. */
function roundHintToMin(mm: MmStruct, hint: bigint): bigint {
  const h = hint & ~(PAGE - 1n);
  return h !== 0n && h < mm.sys.mmapMinAddr ? mm.sys.mmapMinAddr : h;
}

/**
 * __get_unmapped_area with generic_get_unmapped_area_topdown: the start of a free range of
 * `len` bytes (page aligned) for a new mapping.
 */
export function getUnmappedArea(
  mm: MmStruct,
  addr: bigint,
  len: bigint,
  flags: number,
): Result<bigint> {
  const taskSize = BigInt(mm.layout.taskSizePages) << SHIFT;
  const minAddr = mm.sys.mmapMinAddr;
  if (len > taskSize) return err("ENOMEM");
  let start: bigint;
  if (len > taskSize - minAddr) return err("ENOMEM");
  if (flags & MAP_FIXED) {
    start = addr;
  } else {
    const pages = Number(len >> SHIFT);
    const hint = (addr + PAGE - 1n) & ~(PAGE - 1n);
    if (hint !== 0n && taskSize - len >= hint && hint >= minAddr && isFree(mm, hint, pages)) {
      start = hint;
    } else {
      const low = Math.max(1, Number(minAddr >> SHIFT));
      let page = topDown(mm, pages, low, mm.layout.mmapBasePages);
      if (page < 0)
        page = bottomUp(mm, pages, mm.layout.unmappedBasePages, mm.layout.taskSizePages);
      if (page < 0) return err("ENOMEM");
      start = BigInt(page) << SHIFT;
    }
  }
  if (start > taskSize - len) return err("ENOMEM");
  if ((start & (PAGE - 1n)) !== 0n) return err("EINVAL");
  // security_mmap_addr → cap_mmap_addr: below mmap_min_addr needs CAP_SYS_RAWIO.
  if (start < minAddr) return err("EPERM");
  return ok(start);
}

function isFree(mm: MmStruct, start: bigint, pages: number): boolean {
  const s = Number(start >> SHIFT);
  return mm.vmas.intersection(s, s + pages) === null;
}

/** unmapped_area_topdown: the highest start in [low, high − pages] whose range is free. */
function topDown(mm: MmStruct, pages: number, low: number, high: number): number {
  if (high < pages || high - pages < low) return -1;
  let i = mm.vmas.indexAfter(high - 1);
  // Walk the gaps from the top: below VMA i (or below `high`) down to the previous VMA.
  for (;;) {
    const above = mm.vmas.at(i);
    const end = above === undefined ? high : Math.min(high, above.startPage);
    const below = i > 0 ? mm.vmas.at(i - 1)! : undefined;
    const gapStart = Math.max(low, below === undefined ? 0 : below.endPage);
    if (end - gapStart >= pages) return end - pages;
    if (below === undefined || below.endPage <= low) return -1;
    i--;
  }
}

/** unmapped_area: the lowest start in [low, high − pages] whose range is free. */
function bottomUp(mm: MmStruct, pages: number, low: number, high: number): number {
  let start = low;
  for (let i = mm.vmas.indexAfter(low); ; i++) {
    const v = mm.vmas.at(i);
    const end = v === undefined ? high : Math.min(high, v.startPage);
    if (end - start >= pages) return start;
    if (v === undefined || v.endPage >= high) return -1;
    start = Math.max(start, v.endPage);
  }
}

/** The new VMA for [startPage, endPage), merged with its neighbours where the rules allow. */
function insertMapping(mm: MmStruct, startPage: number, endPage: number, vmFlags: number): VmArea {
  const shared = (vmFlags & VM_SHARED) !== 0;
  // shmem_zero_setup: a shared anonymous mapping is backed by a new object from offset 0.
  const shmem = shared ? new ShmemObject(mm.sys.nextShmemId(), mm.sys.pages) : null;
  const vma = new VmArea(mm, startPage, endPage, vmFlags, shared ? 0 : startPage, shmem);
  // vma_merge_new_range: extend prev and/or next instead of adding a VMA.
  const i = mm.vmas.indexAfter(startPage);
  const prev = i > 0 ? mm.vmas.at(i - 1) : undefined;
  const next = mm.vmas.at(i);
  const left = prev !== undefined && canMerge(prev, vma);
  const right = next !== undefined && canMerge(vma, next);
  if (left) {
    prev.endPage = endPage;
    if (right && anonVmaCompatible(prev, next)) mergeInto(prev, next);
    return prev;
  }
  if (right) {
    next.startPage = startPage;
    next.pgoff = vma.pgoff;
    return next;
  }
  mm.vmas.insert(vma);
  return vma;
}

/**
 * vm_munmap: unmaps [start, start + len). EINVAL when start is unaligned, the range leaves
 * TASK_SIZE or is empty; ENOMEM when a VMA would have to be split in the middle while the mm is
 * at max_map_count. Unmapping nothing succeeds.
 */
export function vmMunmap(mm: MmStruct, start: bigint, len: bigint): Result {
  checkU64(start, "start");
  checkU64(len, "len");
  if (mm.state !== "live") throw new SimError(`munmap on mm ${mm.id}, which has exited`);
  if (mm.kernel) throw new SimError("munmap on init_mm: kernel mappings go with vunmap");
  const res = doMunmap(mm, start, len);
  if (mm.sys.ctx.trace.enabled) {
    mm.sys.ctx.trace.emit("mm:munmap", mm.track, {
      mm: mm.id,
      start,
      len,
      result: res.ok ? "ok" : res.errno,
    });
  }
  return res;
}

function doMunmap(mm: MmStruct, start: bigint, len: bigint): Result {
  const taskSize = BigInt(mm.layout.taskSizePages) << SHIFT;
  if ((start & (PAGE - 1n)) !== 0n || start > taskSize || len > taskSize - start) {
    return err("EINVAL");
  }
  const end = start + ((len + PAGE - 1n) & ~(PAGE - 1n));
  if (end === start) return err("EINVAL");
  return munmapRange(mm, Number(start >> SHIFT), Number(end >> SHIFT));
}

/**
 * do_vmi_align_munmap over pages [startPage, endPage): splits the VMAs at the ends, zaps their
 * pages inside one MMU_NOTIFY_UNMAP range, flushes once, then removes the VMAs.
 */
function munmapRange(mm: MmStruct, startPage: number, endPage: number): Result {
  const first = mm.vmas.intersection(startPage, endPage);
  if (first === null) return OK;
  if (startPage > first.startPage) {
    // Let map_count go at most one above its limit, and only if the munmap ends it.
    if (endPage < first.endPage && mm.mapCount >= mm.sys.maxMapCount) return err("ENOMEM");
    splitVma(first, startPage);
  }
  const vmas = mm.vmas.overlapping(startPage, endPage);
  const last = vmas[vmas.length - 1]!;
  if (last.endPage > endPage) splitVma(last, endPage);
  const tlb = new MmuGather(mm);
  unmapVmas(tlb, vmas, startPage, endPage, BigInt(startPage) << SHIFT, BigInt(endPage) << SHIFT);
  tlb.finish();
  for (const vma of vmas) removeVma(vma);
  return OK;
}

/**
 * exit_mmap: the last user is gone. ->release of every mmu notifier first, then every page is
 * zapped (one whole-mm flush), the page tables below the root freed, the VMAs removed. The
 * root stays until __mmdrop.
 */
export function exitMmap(mm: MmStruct): void {
  if (mm.state !== "live") throw new SimError(`exit_mmap twice on mm ${mm.id}`);
  mmuNotifierRelease(mm);
  const vmas = mm.vmas.toArray();
  if (vmas.length > 0) {
    const tlb = new MmuGather(mm, true);
    unmapVmas(tlb, vmas, 0, Number.POSITIVE_INFINITY, 0n, FLUSH_ALL_END);
    tlb.finish();
    for (const vma of vmas) removeVma(vma);
  }
  mm.state = "exited";
  mm.sys.ctx.trace.emit("mm:exit_mmap", mm.track, { mm: mm.id });
}

function checkU64(x: bigint, what: string): void {
  if (typeof x !== "bigint" || x < 0n || x >= U64_LIMIT) {
    throw new SimError(`${what} must be an unsigned 64-bit bigint, got ${String(x)}`);
  }
}
