// The user PTEs of one address space, through its PageTable (the only writer of those tables):
// set_pte_at, ptep_get, and the loops over the PTEs of a range that zap_pte_range,
// change_pte_range and copy_pte_range run. User PTEs are 4 KiB, valid or PROT_NONE (V=0, kept
// in the table); any other answer from the page table is a simulator bug.
//
// Hot paths: page numbers as numbers, a caller-owned PteCursor, nothing allocated.

import { SimError } from "../base/errors.js";
import { PT_NO_MEMORY, PT_NOT_MAPPED, PT_OK, PT_STATUS_NAMES } from "../hw/pgtable/page-table.js";
import type { PteCursor } from "../hw/pgtable/pte-cursor.js";
import type { MmStruct } from "./mm-types.js";

/** set_pte_at on an empty entry (`pte`: bits 9:0): false when no frame was left for a table. */
export function setPteAt(mm: MmStruct, vpn: number, ppn: number, pte: number): boolean {
  const rc = mm.pgtable.set4k(vpn, ppn, pte);
  if (rc === PT_OK) return true;
  if (rc === PT_NO_MEMORY) return false;
  throw new SimError(`set_pte_at 0x${vpn.toString(16)}: ${PT_STATUS_NAMES[rc]}`);
}

/** set_pte_at over a present PTE: rewritten in place, no table page touched. */
export function replacePte(mm: MmStruct, vpn: number, ppn: number, pte: number): void {
  const rc = mm.pgtable.replace4k(vpn, ppn, pte);
  if (rc !== PT_OK) throw new SimError(`set_pte_at 0x${vpn.toString(16)}: ${PT_STATUS_NAMES[rc]}`);
}

/** ptep_get: puts `cur` on page `vpn`'s PTE; false when the page has none (pte_none). */
export function ptepGet(mm: MmStruct, cur: PteCursor, vpn: number): boolean {
  const rc = mm.pgtable.seek4k(cur, vpn);
  if (rc === PT_OK) return true;
  if (rc === PT_NOT_MAPPED) return false;
  throw new SimError(`ptep_get 0x${vpn.toString(16)}: ${PT_STATUS_NAMES[rc]}`);
}

/** Starts `cur` on the PTEs of pages [startPage, endPage); `nextPte` moves it. */
export function ptesInRange(
  mm: MmStruct,
  cur: PteCursor,
  startPage: number,
  endPage: number,
): void {
  const rc = mm.pgtable.leafRange(cur, startPage, endPage);
  if (rc !== PT_OK) {
    throw new SimError(
      `PTE range [0x${startPage.toString(16)}, 0x${endPage.toString(16)}): ${PT_STATUS_NAMES[rc]}`,
    );
  }
}

/** Moves `cur` to the next PTE (present or PROT_NONE) of its range; false at the end. */
export function nextPte(mm: MmStruct, cur: PteCursor): boolean {
  if (!mm.pgtable.nextLeaf(cur)) return false;
  if (cur.pages !== 1) {
    throw new SimError(
      `a ${cur.pages * 4}-KiB leaf at page 0x${cur.vpn.toString(16)} of a user page table`,
    );
  }
  return true;
}
