// A caller-owned position on one entry of a PageTable: what `seek4k` and `leafRange` +
// `nextLeaf` fill, and what `replaceAt` / `updateAt` / `clearAt` rewrite in place. Allocated
// once by its owner (like WalkResult) and reused, so reading or rewriting PTEs, one page or a
// whole range, allocates nothing.
//
//   const cur = new PteCursor();
//   if (pt.leafRange(cur, startVpn, endVpn) === PT_OK)
//     while (pt.nextLeaf(cur)) if (cur.valid) pt.updateAt(cur, 0, PTE_W);

import { NAPOT_64K_PPN_BITS, PTE_FLAGS_MASK, PTE_HI_N, PTE_V, ptePbmt, ptePpn } from "./pte.js";

export class PteCursor {
  /** Input page number (full VA or GPA page, as the walker takes) of the entry's first page. */
  vpn = 0;
  /** Level of the entry: 0 for 4 KiB and 64 KiB NAPOT leaves. */
  level = 0;
  /** 4 KiB pages the entry covers: 1, 16 (NAPOT), 512^level for a superpage. */
  pages = 0;
  /** The PTE as it sits in memory: bits 31:0 and 63:32. Both 0 for an empty entry. */
  lo = 0;
  hi = 0;

  /** V=1: the hardware translates through this leaf. */
  get valid(): boolean {
    return (this.lo & PTE_V) !== 0;
  }

  /** All-zero: nothing there, neither a leaf nor a software PTE. */
  get empty(): boolean {
    return (this.lo | this.hi) === 0;
  }

  /** Bits 9:0: V, R W X U G A D and RSW. */
  get flags(): number {
    return this.lo & PTE_FLAGS_MASK;
  }

  /** Page number of the entry's first 4 KiB frame (a NAPOT PTE's ppn[3:0] encoding removed). */
  get ppn(): number {
    const ppn = ptePpn(this.lo, this.hi);
    return this.pages === 16 && (this.hi & PTE_HI_N) !== 0 ? ppn - NAPOT_64K_PPN_BITS : ppn;
  }

  /** Svpbmt memory type (bits 62:61). */
  get pbmt(): number {
    return ptePbmt(this.hi);
  }

  // ---- where the entry is: kept by the PageTable that filled the cursor, not for callers ----
  /** The table that filled the cursor (an opaque identity), or null before first use. */
  owner: object | null = null;
  /** The owner's table generation when `words` was taken; stale once tables were reclaimed. */
  gen = -1;
  /** Words of the level-0 table holding the entry, or null (superpage, or no such table). */
  words: Uint32Array | null = null;
  /** Tree page number covered by entry 0 of that table, and the entry's index in it. */
  tableBase = 0;
  index = -1;
  /** Depth of that table (0 = root) and the table page / entry index visited at each depth. */
  depth = 0;
  readonly pathPage = new Float64Array(8);
  readonly pathIdx = new Int32Array(8);
  /** Iteration: next tree page to look at, and the end (exclusive) of the range. */
  next = 0;
  end = 0;
}
