// The VFIO type1 IOMMU backend (drivers/vfio/vfio_iommu_type1.c, v6.16 semantics, reduced): the
// container's paging domains and its user DMA mappings.
//
// attach_group: a paging domain for the group's first device (`iommu_paging_domain_alloc`),
//   attached with `iommu_attach_group`; if a domain already in the container comes from the same
//   IOMMU driver the group moves onto it (`iommu_detach_group`, `iommu_attach_group`) and the new
//   domain is freed — a driver refusing (another IOMMU instance: -EINVAL) keeps the new one, into
//   which every mapping is replayed. The IOVA ranges every domain can take (aperture, minus the
//   groups' reserved regions but DIRECT_RELAXABLE) must still hold every mapping (-EINVAL).
// detach_group: `iommu_detach_group` (the group is back on its blocking domain while owned); a
//   domain without groups is freed, and with the last one every mapping is unmapped and unpinned.
// MAP_DMA / UNMAP_DMA: the checks and errnos of vfio_dma_do_map / vfio_dma_do_unmap.

import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import { err, OK, ok, type Result } from "../../base/result.js";
import { IOMMU_RESV } from "../../bus/firmware.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import type { IommuDomain } from "../../iommu/domain.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { UserDmaSpace } from "./user-dma.js";

/** `VFIO_DMA_MAP_FLAG_*`: READ and WRITE from the device's point of view. */
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
/** `dma_entry_limit`: mappings a container may hold. */
export const VFIO_DMA_ENTRY_LIMIT = 65535;

const U64_LIMIT = 1n << 64n;

/** `struct vfio_domain`: one paging domain and the groups attached to it. */
export class VfioDomain {
  readonly groups: IommuGroup[] = [];

  constructor(readonly domain: IommuDomain) {}
}

/** `struct vfio_iommu`. */
export class VfioIommuType1 {
  readonly domains: VfioDomain[] = [];
  readonly dma: UserDmaSpace;
  dmaAvail = VFIO_DMA_ENTRY_LIMIT;

  constructor(
    readonly core: IommuCore,
    readonly label: string,
  ) {
    this.dma = new UserDmaSpace(core);
  }

  /** `vfio_iommu_type1_attach_group`. */
  attachGroup(group: IommuGroup): Result {
    const core = this.core;
    if (this.domains.some((d) => d.groups.includes(group))) return err("EINVAL");
    const first = group.devices[0]?.dev;
    if (first === undefined) return err("ENODEV");
    const alloc = core.pagingDomainAlloc(first);
    if (!alloc.ok) return alloc;
    const domain = alloc.value;
    const attached = core.attachGroup(domain, group);
    if (!attached.ok) {
      core.domainFree(domain);
      return attached;
    }
    // The IOVA ranges must still fit every mapping with this group's domain and regions.
    if (!this.#rangesHold([...this.domains.map((d) => d.domain), domain], [group])) {
      core.detachGroup(domain, group);
      core.domainFree(domain);
      return err("EINVAL");
    }
    // Try to share a domain of the same driver (vfio_iommu_type1_attach_group's domain_list loop).
    for (const d of this.domains) {
      if (d.domain.owner !== domain.owner) continue;
      core.detachGroup(domain, group);
      if (core.attachGroup(d.domain, group).ok) {
        d.groups.push(group);
        core.domainFree(domain);
        return OK;
      }
      const back = core.attachGroup(domain, group);
      if (!back.ok) {
        core.domainFree(domain);
        return back;
      }
    }
    // vfio_iommu_replay: the container's mappings into the new domain.
    const replay = this.dma.addDomain(domain);
    if (!replay.ok) {
      core.detachGroup(domain, group);
      core.domainFree(domain);
      return replay;
    }
    const vd = new VfioDomain(domain);
    vd.groups.push(group);
    this.domains.push(vd);
    return OK;
  }

  /** `vfio_iommu_type1_detach_group`. */
  detachGroup(group: IommuGroup): void {
    const vd = this.domains.find((d) => d.groups.includes(group));
    if (vd === undefined) return;
    this.core.detachGroup(vd.domain, group);
    vd.groups.splice(vd.groups.indexOf(group), 1);
    if (vd.groups.length > 0) return;
    // The last domain going: every mapping is unmapped and unpinned first.
    if (this.domains.length === 1) this.#removeAllDma();
    this.dma.removeDomain(vd.domain);
    this.domains.splice(this.domains.indexOf(vd), 1);
    this.core.domainFree(vd.domain);
  }

  /** `vfio_iommu_type1_release`: what is left of the container goes. */
  release(): void {
    for (const vd of [...this.domains]) for (const g of [...vd.groups]) this.detachGroup(g);
    this.#removeAllDma();
  }

  /**
   * VFIO_IOMMU_MAP_DMA: maps [vaddr, vaddr + size) of `mm` at `iova`. EINVAL (size 0, not
   * aligned to the smallest IOMMU page, outside the IOVA ranges), EOVERFLOW (wraps), EEXIST
   * (overlaps a mapping), ENOSPC (dma_entry_limit), then the pin's and iommu_map's errnos.
   */
  mapDma(mm: MmStruct, vaddr: bigint, iova: bigint, size: bigint, flags: number): Result {
    checkU64(vaddr, iova, size);
    if (size === 0n) return err("EINVAL");
    if (iova + size - 1n >= U64_LIMIT || vaddr + size - 1n >= U64_LIMIT) return err("EOVERFLOW");
    let prot = 0;
    if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
    if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
    const pgsize = this.#minPageSize();
    if (((size | iova | vaddr) & (pgsize - 1n)) !== 0n) return err("EINVAL");
    if (this.dma.overlapping(iova, iova + size - 1n) !== null) return err("EEXIST");
    if (this.dmaAvail === 0) return err("ENOSPC");
    if (!this.#iovaValid(iova, iova + size - 1n)) return err("EINVAL");
    const r = this.dma.map(mm, vaddr, iova, size, prot);
    if (!r.ok) return r;
    this.dmaAvail--;
    return OK;
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA: unmaps every mapping inside [iova, iova + size) and returns the bytes
   * unmapped. EINVAL (size 0 or not page aligned, or the range cuts a mapping in two),
   * EOVERFLOW (wraps).
   */
  unmapDma(iova: bigint, size: bigint): Result<bigint> {
    checkU64(iova, size);
    const pgsize = this.#minPageSize();
    if (((iova | size) & (pgsize - 1n)) !== 0n || size === 0n) return err("EINVAL");
    const last = iova + size - 1n;
    if (last >= U64_LIMIT) return err("EOVERFLOW");
    // A range may not bisect a mapping at either end.
    const head = this.dma.at(iova);
    if (head !== null && head.iova !== iova) return err("EINVAL");
    const tail = this.dma.at(last);
    if (tail !== null && tail.iova + tail.length !== iova + size) return err("EINVAL");
    let unmapped = 0n;
    for (const a of [...this.dma.areas]) {
      if (a.iova >= iova && a.iova + a.length - 1n <= last) {
        this.dma.remove(a);
        this.dmaAvail++;
        unmapped += a.length;
      }
    }
    return ok(unmapped);
  }

  toJSON(): Json {
    return {
      label: this.label,
      domains: this.domains.map((d) => ({
        domain: d.domain.id,
        groups: d.groups.map((g) => g.id),
      })),
      dma: this.dma.toJSON(),
      dma_avail: this.dmaAvail,
      iova_ranges: this.#iovaRanges(
        this.domains.map((d) => d.domain),
        this.domains.flatMap((d) => d.groups),
      ).map(([a, b]) => ({ start: jsonAddr(a), last: jsonAddr(b) })),
    };
  }

  #removeAllDma(): void {
    this.dmaAvail += this.dma.areas.length;
    this.dma.removeAll();
  }

  /** The smallest page size every domain supports (`iommu->pgsize_bitmap`), 4 KiB at least. */
  #minPageSize(): bigint {
    let bitmap = ~0xfffn;
    for (const d of this.domains) bitmap &= d.domain.pgsizeBitmap;
    if (bitmap <= 0n) return 4096n;
    return bitmap & -bitmap;
  }

  /** `iommu->iova_list`: the apertures' intersection minus the groups' reserved regions. */
  #iovaRanges(domains: readonly IommuDomain[], groups: readonly IommuGroup[]): [bigint, bigint][] {
    let start = 0n;
    let end = U64_LIMIT - 1n;
    for (const d of domains) {
      if (!d.geometry.forceAperture && d.geometry.apertureEnd === 0n) continue;
      if (d.geometry.apertureStart > start) start = d.geometry.apertureStart;
      if (d.geometry.apertureEnd < end) end = d.geometry.apertureEnd;
    }
    let ranges: [bigint, bigint][] = start <= end ? [[start, end]] : [];
    for (const g of groups) {
      for (const r of this.core.getGroupResvRegions(g)) {
        if (r.type === IOMMU_RESV.DIRECT_RELAXABLE) continue;
        const rs = r.start;
        const re = r.start + r.length - 1n;
        ranges = ranges.flatMap(([a, b]): [bigint, bigint][] => {
          if (re < a || rs > b) return [[a, b]];
          const out: [bigint, bigint][] = [];
          if (rs > a) out.push([a, rs - 1n]);
          if (re < b) out.push([re + 1n, b]);
          return out;
        });
      }
    }
    return ranges;
  }

  /** `vfio_iommu_iova_dma_valid`: [start, last] lies inside one IOVA range. */
  #iovaValid(start: bigint, last: bigint): boolean {
    const ranges = this.#iovaRanges(
      this.domains.map((d) => d.domain),
      this.domains.flatMap((d) => d.groups),
    );
    return ranges.some(([a, b]) => start >= a && last <= b);
  }

  /** Every mapping still fits the ranges of `domains` with the container's groups and `extra`. */
  #rangesHold(domains: readonly IommuDomain[], extra: readonly IommuGroup[]): boolean {
    const ranges = this.#iovaRanges(domains, [...this.domains.flatMap((d) => d.groups), ...extra]);
    return this.dma.areas.every((a) =>
      ranges.some(([s, e]) => a.iova >= s && a.iova + a.length - 1n <= e),
    );
  }
}

function checkU64(...values: bigint[]): void {
  for (const v of values) {
    if (typeof v !== "bigint" || v < 0n || v >= U64_LIMIT) {
      throw new SimError(`VFIO ioctl argument ${String(v)} is not a u64`);
    }
  }
}
