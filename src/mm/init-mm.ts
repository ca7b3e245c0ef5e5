// init_mm (mm/init-mm.c): the kernel's own address space, one per machine, created on first
// use. Its page table holds kernel mappings only — supervisor (U = 0) and global (G = 1) PTEs
// made by vmap (vmalloc.ts) — and no VMAs: the kernel's mappings are not VMAs, so a device
// fault on init_mm has nothing to resolve. As in the kernel, mm_users starts at 2 and mm_count
// at 1, so no mmput/mmdrop balance ever tears it down (doing so is a simulator misuse); its id
// is 0 (user address spaces start at 1) and it has no owner. Kernel page-table pages are never
// freed: vunmap leaves empty tables in place (reclaim "keep").
//
// The kernel's virtual layout (arch/riscv/include/asm/pgtable.h, page.h): the vmalloc area is
// [PAGE_OFFSET − VMALLOC_SIZE, PAGE_OFFSET), VMALLOC_SIZE = KERN_VIRT_SIZE / 2 and
// KERN_VIRT_SIZE = (PTRS_PER_PGD / 2 × PGDIR_SIZE) / 2, with PAGE_OFFSET 0xffffffd600000000
// (Sv39), 0xffffaf8000000000 (Sv48), 0xff60000000000000 (Sv57).

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { Work, WorkQueue } from "../base/workqueue.js";
import { levelShift, type PagingMode } from "../hw/pgtable/modes.js";
import { PageTable } from "../hw/pgtable/page-table.js";
import { mmLayout } from "./layout.js";
import { MmStruct, type MmSubsystem } from "./mm-types.js";

const SHIFT = BigInt(PAGE_SHIFT);

/** PAGE_OFFSET of each first-stage mode: the start of the linear map, the end of vmalloc. */
const PAGE_OFFSET: Readonly<Record<string, bigint>> = {
  Sv39: 0xffff_ffd6_0000_0000n,
  Sv48: 0xffff_af80_0000_0000n,
  Sv57: 0xff60_0000_0000_0000n,
};

/** [VMALLOC_START, VMALLOC_END) of a first-stage mode, in bytes. */
export function vmallocRange(mode: PagingMode): { readonly start: bigint; readonly end: bigint } {
  const end = PAGE_OFFSET[mode.name];
  if (end === undefined || mode.gStage) {
    throw new SimError(`${mode.name} is not a kernel paging mode`);
  }
  const pgdirSize = 1n << BigInt(levelShift(mode.levels - 1));
  const kernVirtSize = (256n * pgdirSize) / 2n;
  return { start: end - kernVirtSize / 2n, end };
}

/** `struct vmap_area` with its `vm_struct`: one vmap, its guard page included. */
export interface VmapArea {
  /** va_start as a page number (full-VA, sign-extended). */
  readonly startPage: number;
  /** Pages mapped (the area spans one more: the guard page). */
  readonly pages: number;
  /** PTE bits 9:0 of the mapping. */
  readonly prot: number;
}

/** The kernel's address space: an mm_struct plus the vmalloc allocator's state. */
export class KernelMm extends MmStruct {
  readonly vmallocStartPage: number;
  readonly vmallocEndPage: number;
  /** Busy vmap areas, by address. */
  readonly areas: VmapArea[] = [];
  /** Areas vunmapped whose TLB flush and address range wait for the lazy purge, in order. */
  readonly purgeList: VmapArea[] = [];
  /** vmap_lazy_nr: pages (guards included) on the purge list. */
  lazyPages = 0;
  /** drain_vmap_work and its queue, once a purge was first scheduled. */
  drain: { readonly queue: WorkQueue; readonly work: Work } | null = null;

  constructor(sys: MmSubsystem, pgtable: PageTable) {
    super(sys, 0, pgtable, mmLayout(pgtable.mode, sys.stackRlimit));
    // init_mm: .mm_users = 2, .mm_count = 1.
    this.users = 2;
    const range = vmallocRange(pgtable.mode);
    this.vmallocStartPage = Number(range.start >> SHIFT);
    this.vmallocEndPage = Number(range.end >> SHIFT);
  }

  override get kernel(): boolean {
    return true;
  }

  /** The busy area starting at page `startPage`, or undefined. */
  findArea(startPage: number): VmapArea | undefined {
    return this.areas.find((a) => a.startPage === startPage);
  }

  override toJSON(): Json {
    const area = (a: VmapArea): Json => ({
      addr: jsonAddr(BigInt(a.startPage) << SHIFT),
      pages: a.pages,
      prot: a.prot,
    });
    return {
      ...(super.toJSON() as { [key: string]: Json }),
      kernel: true,
      vmalloc: {
        start: jsonAddr(BigInt(this.vmallocStartPage) << SHIFT),
        end: jsonAddr(BigInt(this.vmallocEndPage) << SHIFT),
      },
      vmap_areas: this.areas.map(area),
      lazily_freed: this.purgeList.map(area),
      vmap_lazy_nr: this.lazyPages,
    };
  }
}

/** `&init_mm` of the machine, created on first use in `sys.kernelMode`; throws without memory. */
export function initMm(sys: MmSubsystem): KernelMm {
  const existing = sys.kernelMm;
  if (existing !== null) {
    if (!(existing instanceof KernelMm)) throw new SimError("the machine's init_mm is foreign");
    return existing;
  }
  const pgtable = PageTable.create(sys.memory, sys.frames, sys.kernelMode, { reclaim: "keep" });
  if (pgtable === null) throw new SimError("init_mm: no frame for the kernel's page table");
  const mm = new KernelMm(sys, pgtable);
  sys.kernelMm = mm;
  sys.addLive(mm);
  return mm;
}
