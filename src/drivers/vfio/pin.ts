// Pinning a process's pages for user DMA (pin_user_pages_remote with FOLL_LONGTERM, as VFIO type1
// and iommufd do): every page of the range is looked up in the process's page table and faulted
// in when it is absent or not writable enough (a write pin breaks copy-on-write and replaces the
// zero page), so the physical pages are the process's own and can be given to the IOMMU.
//
// Errors as GUP returns them: EFAULT when no VMA covers a page or the VMA does not allow the
// access (check_vma_flags: a write pin needs VM_WRITE, a read pin VM_READ), ENOMEM when memory
// ran out. A failure part-way pins nothing (the caller's unpin_user_pages of what was pinned).
//
// Model limit: the mm layer keeps no page reference counts, so a pin does not keep the page:
// munmap of a pinned range frees the frames while the IOMMU still maps them. The kernel's
// FOLL_PIN would keep them until the unpin. Users of this module must unmap before munmap.

import { PAGE_SHIFT } from "../../base/bits.js";
import { err, ok, type Result } from "../../base/result.js";
import { PTE_V, PTE_W } from "../../hw/pgtable/pte.js";
import { PteCursor } from "../../hw/pgtable/pte-cursor.js";
import { FAULT_FLAG_WRITE, VM_READ, VM_WRITE } from "../../mm/flags.js";
import { fixupUserFault } from "../../mm/memory.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { ptepGet } from "../../mm/pte-ops.js";

const cursor = new PteCursor();

/**
 * Pins `npages` pages of `mm` from page-aligned `vaddr`; returns their physical page numbers in
 * order. `write`: FOLL_WRITE (the device will write).
 */
export function pinUserPages(
  mm: MmStruct,
  vaddr: bigint,
  npages: number,
  write: boolean,
): Result<number[]> {
  const out: number[] = [];
  const first = Number(vaddr >> BigInt(PAGE_SHIFT));
  for (let i = 0; i < npages; i++) {
    const vpn = first + i;
    const addr = BigInt(vpn) << BigInt(PAGE_SHIFT);
    const vma = mm.vmaLookup(addr);
    if (vma === null) return err("EFAULT");
    if ((vma.flags & (write ? VM_WRITE : VM_READ)) === 0) return err("EFAULT");
    if (!usable(mm, vpn, write)) {
      const r = fixupUserFault(mm, addr, write ? FAULT_FLAG_WRITE : 0);
      if (!r.ok) return r;
    }
    const ppn = mm.pgtable.lookupPpn(vpn);
    if (ppn < 0) return err("EFAULT");
    out.push(ppn);
  }
  return ok(out);
}

/** follow_page: present, and writable when the pin writes. */
function usable(mm: MmStruct, vpn: number, write: boolean): boolean {
  if (!ptepGet(mm, cursor, vpn)) return false;
  const flags = cursor.flags;
  return (flags & PTE_V) !== 0 && (!write || (flags & PTE_W) !== 0);
}
