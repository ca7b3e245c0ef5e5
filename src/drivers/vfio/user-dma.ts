// The user DMA mappings of one IOVA space — VFIO type1's `vfio_dma` list, iommufd's IOAS areas —
// and the paging domains that carry them. A mapping pins the process's pages (pin.ts) and maps
// them with `iommu_map` at the user's IOVA in every domain; a domain added later gets every
// mapping replayed (vfio_iommu_replay, iopt_table_add_domain); removing a mapping unmaps it from
// every domain (`iommu_unmap`, whose iotlb_sync invalidates the IOMMU) before the pages are
// unpinned. The pins keep the frames allocated while mapped, even after the process unmaps the
// memory or exits. Each mapping holds a reference on the mm (mmgrab), like `vfio_dma.mm`.
// The front ends (type1.ts, iommufd.ts) check their arguments with their own errnos first.

import { type Json, jsonAddr } from "../../base/json.js";
import { OK, ok, type Result } from "../../base/result.js";
import { IOMMU_WRITE } from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import type { IommuDomain } from "../../iommu/domain.js";
import { mmdrop, mmgrab } from "../../mm/mm-refs.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { pinUserDmaPages, unpinUserDmaPages } from "./pin.js";

/** One user mapping: [iova, iova + length) ← the pinned pages of `mm` at `vaddr`. */
export interface UserDmaArea {
  readonly iova: bigint;
  readonly length: bigint;
  readonly vaddr: bigint;
  readonly mm: MmStruct;
  /** `IOMMU_READ | IOMMU_WRITE | …`. */
  readonly prot: number;
  /** The pinned physical pages, in IOVA order. */
  readonly ppns: readonly number[];
}

/** The `driver:vfio_dma` event of one map or unmap of a VFIO container or iommufd context. */
export function traceVfioDma(
  core: IommuCore,
  owner: string,
  op: string,
  iova: bigint,
  size: bigint,
  vaddr: bigint | null,
  r: Result<unknown>,
): void {
  core.ctx.trace.emit("driver:vfio_dma", owner, {
    owner,
    op,
    iova,
    size,
    vaddr,
    result: r.ok ? "ok" : r.errno,
  });
}

export class UserDmaSpace {
  /** Mappings in ascending IOVA order. */
  readonly areas: UserDmaArea[] = [];
  /** The paging domains the mappings live in. */
  readonly domains: IommuDomain[] = [];

  constructor(readonly core: IommuCore) {}

  /** The first mapping overlapping [iova, last], or null. */
  overlapping(iova: bigint, last: bigint): UserDmaArea | null {
    for (const a of this.areas) {
      if (a.iova <= last && a.iova + a.length - 1n >= iova) return a;
    }
    return null;
  }

  /** The mapping containing `iova`, or null. */
  at(iova: bigint): UserDmaArea | null {
    return this.overlapping(iova, iova);
  }

  /**
   * Pins [vaddr, vaddr + length) of `mm` and maps it at `iova` in every domain. On failure
   * nothing stays mapped or pinned: the pin's or the map's errno.
   */
  map(
    mm: MmStruct,
    vaddr: bigint,
    iova: bigint,
    length: bigint,
    prot: number,
  ): Result<UserDmaArea> {
    const pages = Number(length >> 12n);
    const pinned = pinUserDmaPages(mm, vaddr, pages, (prot & IOMMU_WRITE) !== 0);
    if (!pinned.ok) return pinned;
    mmgrab(mm);
    const area: UserDmaArea = { iova, length, vaddr, mm, prot, ppns: pinned.value };
    const done: IommuDomain[] = [];
    for (const d of this.domains) {
      const r = this.#mapInto(d, area);
      if (!r.ok) {
        for (const m of done) this.#unmapFrom(m, area);
        unpinUserDmaPages(mm, area.ppns);
        mmdrop(mm);
        return r;
      }
      done.push(d);
    }
    const i = this.areas.findIndex((a) => a.iova > iova);
    this.areas.splice(i < 0 ? this.areas.length : i, 0, area);
    return ok(area);
  }

  /** Unmaps `area` from every domain, unpins it and drops its mm reference. */
  remove(area: UserDmaArea): void {
    const i = this.areas.indexOf(area);
    if (i < 0) return;
    for (const d of this.domains) this.#unmapFrom(d, area);
    this.areas.splice(i, 1);
    unpinUserDmaPages(area.mm, area.ppns);
    mmdrop(area.mm);
  }

  /** Every mapping goes away (the container or IOAS is released). */
  removeAll(): void {
    for (const a of [...this.areas]) this.remove(a);
  }

  /** A new domain gets every mapping; on failure it is left empty and not added. */
  addDomain(domain: IommuDomain): Result {
    const done: UserDmaArea[] = [];
    for (const a of this.areas) {
      const r = this.#mapInto(domain, a);
      if (!r.ok) {
        for (const m of done) this.#unmapFrom(domain, m);
        return r;
      }
      done.push(a);
    }
    this.domains.push(domain);
    return OK;
  }

  /** Takes `domain` out, unmapping every mapping from it. */
  removeDomain(domain: IommuDomain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    for (const a of this.areas) this.#unmapFrom(domain, a);
    this.domains.splice(i, 1);
  }

  toJSON(): Json {
    return {
      domains: this.domains.map((d) => d.id),
      mappings: this.areas.map((a) => ({
        iova: jsonAddr(a.iova),
        length: jsonAddr(a.length),
        vaddr: jsonAddr(a.vaddr),
        mm: a.mm.id,
        prot: a.prot,
      })),
    };
  }

  /** `iommu_map` of the area, one call per run of physically contiguous pages. */
  #mapInto(domain: IommuDomain, a: UserDmaArea): Result {
    const iovaPfn = Number(a.iova >> 12n);
    let i = 0;
    while (i < a.ppns.length) {
      let n = 1;
      while (i + n < a.ppns.length && a.ppns[i + n] === a.ppns[i]! + n) n++;
      const r = this.core.mapPfn(domain, iovaPfn + i, a.ppns[i]!, n, a.prot);
      if (!r.ok) {
        if (i > 0) this.core.unmapPfn(domain, iovaPfn, i);
        return r;
      }
      i += n;
    }
    return OK;
  }

  #unmapFrom(domain: IommuDomain, a: UserDmaArea): void {
    this.core.unmapPfn(domain, Number(a.iova >> 12n), a.ppns.length);
  }
}
