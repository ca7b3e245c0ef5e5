// The mock driver's domains. Paging: no page tables, a map from each mapped 4 KiB IOVA page to
// its physical page, with the start/last markers of the `map_pages` call that created it (like
// the selftest mock's pfn xarray), so unmaps that split a mapping can be noticed.

import { type Json, jsonAddr } from "../../base/json.js";
import { IommuDomain, type IommuDomainInit } from "../../iommu/domain.js";

/** One mapped 4 KiB IOVA page. */
export interface MockPte {
  readonly paddrPfn: number;
  readonly prot: number;
  /** First page of a `map_pages` call. */
  readonly start: boolean;
  /** Last page of a `map_pages` call. */
  readonly last: boolean;
  /** Mapped with a page size above the smallest. */
  readonly huge: boolean;
}

export class MockPagingDomain extends IommuDomain {
  /** IOVA page number → mapping. */
  readonly pfns = new Map<number, MockPte>();
  /** Allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING (the mock has dirty ops then). */
  readonly dirtyTracking: boolean;
  /** The IOMMU_HWPT_ALLOC_* flags it was allocated with. */
  readonly allocFlags: number;

  constructor(init: IommuDomainInit & { dirtyTracking?: boolean; allocFlags?: number }) {
    super(init);
    this.dirtyTracking = init.dirtyTracking ?? false;
    this.allocFlags = init.allocFlags ?? 0;
  }

  /** The physical address `iova` maps to, or 0n. */
  lookup(iova: bigint): bigint {
    const pte = this.pfns.get(Number(iova >> 12n));
    if (!pte) return 0n;
    return (BigInt(pte.paddrPfn) << 12n) | (iova & 0xfffn);
  }

  /** Mapped runs, merged when IOVA and PA stay contiguous, in IOVA order. */
  mappings(): Array<{ iova: bigint; paddr: bigint; size: bigint; prot: number }> {
    const keys = [...this.pfns.keys()].sort((a, b) => a - b);
    const out: Array<{ iova: bigint; paddr: bigint; size: bigint; prot: number }> = [];
    let runStart = -1;
    let runPa = -1;
    let runLen = 0;
    let runProt = 0;
    const flush = () => {
      if (runLen > 0) {
        out.push({
          iova: BigInt(runStart) << 12n,
          paddr: BigInt(runPa) << 12n,
          size: BigInt(runLen) << 12n,
          prot: runProt,
        });
      }
    };
    for (const k of keys) {
      const pte = this.pfns.get(k)!;
      if (
        runLen > 0 &&
        k === runStart + runLen &&
        pte.paddrPfn === runPa + runLen &&
        pte.prot === runProt
      ) {
        runLen++;
        continue;
      }
      flush();
      runStart = k;
      runPa = pte.paddrPfn;
      runLen = 1;
      runProt = pte.prot;
    }
    flush();
    return out;
  }

  protected override extraJSON(): { [key: string]: Json } {
    return {
      dirty_tracking: this.dirtyTracking,
      mapped_pages: this.pfns.size,
      mappings: this.mappings().map((m) => ({
        iova: jsonAddr(m.iova),
        paddr: jsonAddr(m.paddr),
        size: jsonAddr(m.size),
        prot: m.prot,
      })),
    };
  }
}

/**
 * The mock driver's SVA domain: no tables of its own (the mm's are the tables), tied to the
 * instance it was allocated for, like a real driver's PSCID/ASID; supervisor ones come from the
 * historical supervisor bind.
 */
export class MockSvaDomain extends IommuDomain {
  constructor(
    init: IommuDomainInit,
    /** Name of the instance it belongs to (another instance refuses it with EINVAL). */
    readonly instance: string,
    readonly supervisor: boolean,
  ) {
    super(init);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return { instance: this.instance, supervisor: this.supervisor };
  }
}
