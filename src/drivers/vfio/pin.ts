// Pinning a process's pages for user DMA, as VFIO type1 (vaddr_get_pfns) and iommufd (the
// iopt_pages pinner) do: pin_user_pages_remote with FOLL_LONGTERM, and FOLL_WRITE when the
// device may write. The mm's GUP faults the pages in (copy-on-write of the zero page for a
// write pin, an unshare for a read-only one) and keeps every pinned frame allocated until it is
// unpinned, whatever the process does meanwhile (munmap, exit): the IOMMU never maps a freed
// frame. A short count is pinned on from where it stopped; a failure part-way unpins what was
// pinned and returns the errno (EFAULT: no VMA or not allowed; ENOMEM).

import { err, ok, type Result } from "../../base/result.js";
import { FOLL_LONGTERM, FOLL_WRITE } from "../../mm/flags.js";
import { pinUserPagesRemote, unpinUserPages } from "../../mm/gup.js";
import type { MmStruct } from "../../mm/mm-types.js";

/**
 * Pins `npages` pages of `mm` from page-aligned `vaddr`; returns their physical page numbers in
 * order. `write`: the device will write.
 */
export function pinUserDmaPages(
  mm: MmStruct,
  vaddr: bigint,
  npages: number,
  write: boolean,
): Result<number[]> {
  const flags = FOLL_LONGTERM | (write ? FOLL_WRITE : 0);
  const out: number[] = [];
  while (out.length < npages) {
    const start = vaddr + (BigInt(out.length) << 12n);
    const got = pinUserPagesRemote(mm, start, npages - out.length, flags);
    if (!got.ok) {
      unpinUserPages(mm.sys, out);
      return err(got.errno);
    }
    for (const ppn of got.value) out.push(ppn);
  }
  return ok(out);
}

/** The pins of `pinUserDmaPages` go (unpin_user_pages_dirty_lock; no writeback to dirty here). */
export function unpinUserDmaPages(mm: MmStruct, ppns: readonly number[]): void {
  unpinUserPages(mm.sys, ppns);
}
