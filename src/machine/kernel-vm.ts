// Kernel mappings in init_mm, the way vmap/vunmap make them: the kernel's page table changes and
// the CPU TLB is flushed (flush_tlb_kernel_range), which tells no secondary MMU. Nothing here
// calls mmu notifiers: an IOMMU walking init_mm for a device (historical supervisor SVA, seed
// 003) keeps whatever it cached of a kernel range after that range is unmapped.

import { err, OK, type Result } from "../base/result.js";
import { PTE_A, PTE_D, PTE_G, PTE_R, PTE_W } from "../hw/pgtable/pte.js";
import type { MmStruct } from "../mm/mm-types.js";

/** Kernel data pages: supervisor read/write, global, accessed and dirty (PAGE_KERNEL). */
const PAGE_KERNEL = PTE_R | PTE_W | PTE_A | PTE_D | PTE_G;

/** Maps `len` bytes of physical memory at `pa` at kernel address `va` of `initMm`. */
export function kernelMap(initMm: MmStruct, va: bigint, pa: bigint, len: bigint): Result {
  const s = initMm.pgtable.map(va, pa, len, PAGE_KERNEL);
  if (s === "ok") return OK;
  if (s === "exists") return err("EEXIST");
  if (s === "no-memory") return err("ENOMEM");
  return err("EINVAL");
}

/** Unmaps a kernel range (vunmap): page table only; returns the bytes unmapped. */
export function kernelUnmap(initMm: MmStruct, va: bigint, len: bigint): bigint {
  return initMm.pgtable.unmap(va, len).unmapped;
}
