// `struct iommu_domain` (§1.4) and `struct iommu_attach_handle` (§1.8).
// Drivers create domains (subclassing IommuDomain for their own state); the core initialises
// the common fields (`iommu_domain_init`: type, owner, default ops) and gives each domain an id
// for views and traces. `iommu_domain_free` is the one free path for every domain type.

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import type { MmStruct } from "../mm/mm-types.js";
import {
  domainTypeIsDma,
  domainTypeIsPaging,
  domainTypeName,
  type IommuCookieType,
  type IommuDomainType,
} from "./constants.js";
import type { IommuFault } from "./fault.js";

/**
 * What a domain knows of the `iommu_ops` that allocated it: its identity (compared with `===`,
 * `domain_iommu_ops_compatible`) and its name. `IommuOps` (ops.ts) extends this.
 */
export interface IommuOpsIdentity {
  readonly name: string;
}

/** Out-parameter of `map_pages`: how much was mapped, even when the call fails. */
export interface MapOut {
  /** Number of 4 KiB pages mapped by this call. */
  mappedPages: number;
}

/**
 * `struct iommu_iotlb_gather`: the range `unmap_pages` removed, for the `iotlb_sync` that
 * follows. Page numbers are in 4 KiB units; `end` is exclusive. The core reuses one object.
 */
export class IotlbGather {
  start = Number.POSITIVE_INFINITY;
  end = 0;
  /** log2 of the page size the driver unmapped with (0 = unknown). */
  pgshift = 0;
  /** The invalidation was queued on a flush queue (lazy mode) instead of done now. */
  queued = false;

  /** `iommu_iotlb_gather_init`. */
  init(): void {
    this.start = Number.POSITIVE_INFINITY;
    this.end = 0;
    this.pgshift = 0;
    this.queued = false;
  }

  /** `iommu_iotlb_gather_add_range`. */
  addRange(pfn: number, npages: number): void {
    if (pfn < this.start) this.start = pfn;
    if (pfn + npages > this.end) this.end = pfn + npages;
  }

  isEmpty(): boolean {
    return this.start >= this.end;
  }
}

/**
 * `struct iommu_domain_ops` (§1.7). Addresses on the map/unmap path are page numbers in 4 KiB
 * units (plain numbers, no BigInt: this is a hot path); page sizes are log2 shifts (>= 12).
 */
export interface IommuDomainOps {
  /**
   * Make `dev` (its RID traffic) translate through `domain`; `old` is the domain it leaves.
   * `EINVAL` means incompatible (a soft failure: the caller may try another domain).
   * Re-attaching a domain that worked before must not fail.
   */
  attachDev?(domain: IommuDomain, dev: Device, old: IommuDomain | null): Result;
  /**
   * Set or replace the translation of (`dev`, `pasid`); `old` is the previous domain, null on a
   * first attach. On failure the PASID must stay on `old`. The driver's blocked domain's
   * `set_dev_pasid` is how a PASID is removed.
   */
  setDevPasid?(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Result;
  /** Map `pgcount` pages of 2^`pgshift` bytes; report what was mapped in `out`, even on error. */
  mapPages?(
    domain: IommuDomain,
    iovaPfn: number,
    paddrPfn: number,
    pgshift: number,
    pgcount: number,
    prot: number,
    out: MapOut,
  ): Result;
  /** Unmap up to `pgcount` pages of 2^`pgshift`; returns 4 KiB pages unmapped (0 = a hole). */
  unmapPages?(
    domain: IommuDomain,
    iovaPfn: number,
    pgshift: number,
    pgcount: number,
    gather: IotlbGather,
  ): number;
  flushIotlbAll?(domain: IommuDomain): void;
  /** After a map; a failure makes the core unmap the range again. */
  iotlbSyncMap?(domain: IommuDomain, iovaPfn: number, npages: number): Result;
  iotlbSync?(domain: IommuDomain, gather: IotlbGather): void;
  /** 0 when `iova` is not mapped. */
  iovaToPhys?(domain: IommuDomain, iova: bigint): bigint;
  /** iova_to_phys by 4 KiB page number, BigInt-free: the physical page, or -1 when unmapped. */
  iovaToPhysPfn?(domain: IommuDomain, iovaPfn: number): number;
  enforceCacheCoherency?(domain: IommuDomain): boolean;
  free?(domain: IommuDomain): void;
}

/** `struct iommu_domain_geometry`. */
export interface IommuDomainGeometry {
  apertureStart: bigint;
  /** Last valid IOVA (inclusive). */
  apertureEnd: bigint;
  /** DMA outside the aperture is impossible (the DMA layer must respect it). */
  forceAperture: boolean;
}

/**
 * The legacy per-domain fault handler (`iommu_fault_handler_t`) called by `report_iommu_fault`.
 * Returns 0 (handled) or an errno; `ENOSYS` asks the driver for its default behaviour.
 */
export type IommuFaultHandler = (
  domain: IommuDomain,
  dev: Device,
  iova: bigint,
  flags: number,
  token: unknown,
) => Result;

/**
 * `struct iopf_group` (§1.9) as a domain's `iopf_handler` and the checks see it: the requests of
 * one page request group, built by `iommu_report_device_fault` (io-pgfault.ts, which owns the
 * mutable state). The handler answers it once with `iopf_group_response` and releases it with
 * `iopf_free_group`.
 */
export interface IopfGroup {
  /** Simulator id (views, traces). */
  readonly id: number;
  /** The device that reported it (`fault_param->dev`). */
  readonly dev: Device;
  /** `last_fault`: the request with LAST_PAGE that completed the group. */
  readonly lastFault: IommuFault;
  /** `faults`: the partial requests of the same grpid in arrival order, then the last one. */
  readonly faults: readonly IommuFault[];
  readonly faultCount: number;
  /** `attach_handle`: the handle whose domain's handler received the group. */
  readonly attachHandle: IommuAttachHandle;
  /** `pending_node` is linked: a response is still owed to the hardware (§1.10 #8). */
  readonly pending: boolean;
  /** Responses sent for the group (simulator bookkeeping: exactly one is the contract). */
  readonly responses: number;
  /** `iopf_free_group` ran. */
  readonly freed: boolean;
}

/**
 * `domain->iopf_handler`: receives a group of I/O page faults (§7); non-null marks the domain as
 * fault-capable. On success the handler owns the group.
 */
export type IommuIopfHandler = (group: IopfGroup) => Result;

/** What an SVA domain's cookie points at: the bound address space (`domain->mm`, §6). */
export interface SvaMmLink {
  readonly id: number;
}

/**
 * The DMA-API cookie of a DMA domain (`iommu_dma_cookie`). The DMA layer owns its contents
 * (IOVA allocator, flush queue); the core only creates and drops it.
 */
export interface DmaIovaCookie {
  /** The flush queue was initialised (DMA_FQ domains). */
  fq: boolean;
  /** The DMA layer's own state, if it installed one. */
  state: unknown;
}

export interface IommuDomainInit {
  /** The type for static domains; allocated domains get theirs from the core. */
  type?: IommuDomainType;
  /** The domain's own ops; otherwise `iommu_domain_init` installs `ops.default_domain_ops`. */
  ops?: IommuDomainOps | null;
  /** Supported page sizes, bit n ⇒ 2^n bytes (paging domains). */
  pgsizeBitmap?: bigint;
  geometry?: Partial<IommuDomainGeometry>;
}

export class IommuDomain {
  /** Assigned by the core when it first sees the domain (allocation or instance registration). */
  id = -1;
  type: IommuDomainType;
  cookieType: IommuCookieType = "NONE";
  ops: IommuDomainOps | null;
  /** The `iommu_ops` that allocated it; static domains have none. */
  owner: IommuOpsIdentity | null = null;
  readonly geometry: IommuDomainGeometry;
  iopfHandler: IommuIopfHandler | null = null;
  // ---- the cookie union (which member is live is `cookieType`) ----
  iovaCookie: DmaIovaCookie | null = null;
  handler: IommuFaultHandler | null = null;
  handlerToken: unknown = null;
  /** SVA: the bound mm (the domain holds an mmgrab reference). */
  mm: MmStruct | null = null;
  /** SVA: number of device/PASID attachments using the domain. */
  users = 0;
  /** Set by `iommu_domain_free`; using a freed domain is a simulator misuse. */
  freed = false;
  #pgsizeBitmap = 0n;
  #pgShifts: number[] = [];

  constructor(init: IommuDomainInit = {}) {
    this.type = init.type ?? 0;
    this.ops = init.ops ?? null;
    this.pgsizeBitmap = init.pgsizeBitmap ?? 0n;
    this.geometry = {
      apertureStart: init.geometry?.apertureStart ?? 0n,
      apertureEnd: init.geometry?.apertureEnd ?? 0n,
      forceAperture: init.geometry?.forceAperture ?? false,
    };
  }

  get pgsizeBitmap(): bigint {
    return this.#pgsizeBitmap;
  }

  /** Supported page sizes; every size must be at least 4 KiB (the simulator's page). */
  set pgsizeBitmap(bitmap: bigint) {
    if (bitmap < 0n) throw new SimError("pgsize_bitmap is negative");
    const shifts: number[] = [];
    for (let i = 0; i < 64; i++) {
      if (((bitmap >> BigInt(i)) & 1n) === 1n) {
        if (i < 12) {
          throw new SimError(`page size 2^${i} is below the 4 KiB the simulator maps with`);
        }
        shifts.push(i);
      }
    }
    this.#pgsizeBitmap = bitmap;
    this.#pgShifts = shifts;
  }

  /** The log2 of every supported page size, ascending (for the map/unmap splitter). */
  get pgShifts(): readonly number[] {
    return this.#pgShifts;
  }

  isPaging(): boolean {
    return domainTypeIsPaging(this.type);
  }

  /** `iommu_is_dma_domain`. */
  isDma(): boolean {
    return domainTypeIsDma(this.type);
  }

  /** Throws when the domain was freed: attaching or mapping it would be a use-after-free. */
  assertLive(what: string): void {
    if (this.freed) throw new SimError(`${what}: domain ${this.id} was freed (use after free)`);
  }

  toJSON(): Json {
    return {
      id: this.id,
      type: domainTypeName(this.type),
      cookie_type: this.cookieType,
      owner: this.owner?.name ?? null,
      pgsize_bitmap: jsonAddr(this.#pgsizeBitmap),
      geometry: {
        aperture_start: jsonAddr(this.geometry.apertureStart),
        aperture_end: jsonAddr(this.geometry.apertureEnd),
        force_aperture: this.geometry.forceAperture,
      },
      iopf_capable: this.iopfHandler !== null,
      fault_handler: this.handler !== null,
      mm: this.mm?.id ?? null,
      users: this.users,
      freed: this.freed,
      ...this.extraJSON(),
    };
  }

  /** Driver-specific fields of the JSON view. */
  protected extraJSON(): { [key: string]: Json } {
    return {};
  }
}

/**
 * `struct iommu_attach_handle`: owned by the caller (SVA, iommufd), stored in the group's
 * `pasid_array` while attached; the core sets `domain` when storing it. Callers subclass it to
 * carry their own data (e.g. `struct iommu_sva`).
 */
export class IommuAttachHandle {
  domain: IommuDomain | null = null;

  constructor(readonly label = "handle") {}

  toJSON(): Json {
    return { label: this.label, domain: this.domain?.id ?? null };
  }
}
