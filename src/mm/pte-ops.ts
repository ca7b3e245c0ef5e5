// Reading and writing one user PTE through the address space's PageTable (the only writer of
// those tables): set_pte_at, pte_clear, ptep_set_access_flags / pte_modify, ptep_get.
// A page table write that fails in a way the mm's own bookkeeping rules out is a simulator bug.

import { PAGE_SHIFT } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { PT_NO_MEMORY, PT_OK, PT_STATUS_NAMES } from "../hw/pgtable/page-table.js";
import { PTE_PERM_MASK } from "../hw/pgtable/pte.js";
import type { MmStruct } from "./mm-types.js";

const SHIFT = BigInt(PAGE_SHIFT);

/** ptep_get: PTE bits 7:0 of page `vpn` (V R W X U G A D), or 0 when nothing is mapped. */
export function pteBits(mm: MmStruct, vpn: number): number {
  const m = mm.pgtable.lookup(BigInt(vpn) << SHIFT);
  return m === null ? 0 : m.perm;
}

/** set_pte_at on an empty slot: false when no frame was left for a page table. */
export function setPte(mm: MmStruct, vpn: number, ppn: number, bits: number): boolean {
  const rc = mm.pgtable.map4k(vpn, ppn, bits & PTE_PERM_MASK);
  if (rc === PT_OK) return true;
  if (rc === PT_NO_MEMORY) return false;
  throw new SimError(`set_pte_at 0x${vpn.toString(16)}: ${PT_STATUS_NAMES[rc]}`);
}

/** pte_clear / ptep_get_and_clear of a mapped page. */
export function clearPte(mm: MmStruct, vpn: number): void {
  const rc = mm.pgtable.unmap4k(vpn);
  if (rc !== PT_OK) throw new SimError(`pte_clear 0x${vpn.toString(16)}: ${PT_STATUS_NAMES[rc]}`);
}

/** Rewrites the bits of `mask` of a mapped page's PTE (PFN kept). */
export function updatePte(mm: MmStruct, vpn: number, bits: number, mask: number): void {
  const status = mm.pgtable.protect(BigInt(vpn) << SHIFT, 4096n, bits & mask, mask);
  if (status !== "ok") throw new SimError(`pte update 0x${vpn.toString(16)}: ${status}`);
}
