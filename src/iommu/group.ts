// `struct iommu_group` (§1.3) and its `pasid_array` entries (§5.5). Groups are created by the
// core (`iommu_group_alloc`, id from an IDA) and live while referenced: each member device holds
// a reference, a driver may hold more (`singleton_group`); the id returns to the IDA when the
// last reference goes.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { XArray } from "../base/xarray.js";
import type { Device, IommuGroupLink } from "../bus/device.js";
import type { IommuAttachHandle, IommuDomain } from "./domain.js";

/**
 * A DMA owner cookie (`group->owner`): compared by identity. VFIO passes its group, iommufd its
 * context; scenarios usually pass a string.
 */
export type DmaOwnerCookie = string | object;

/** A stable label for an owner cookie in views and traces. */
export function ownerLabel(owner: DmaOwnerCookie | null): string | null {
  if (owner === null) return null;
  if (typeof owner === "string") return owner;
  const name = (owner as { name?: unknown }).name;
  return typeof name === "string" ? name : "cookie";
}

/**
 * A `pasid_array` entry (v6.14+ tagged pointer): the domain attached at that PASID, either
 * directly (attach without handle) or through the caller's attach handle.
 */
export type PasidArrayEntry =
  | { readonly kind: "domain"; readonly domain: IommuDomain }
  | { readonly kind: "handle"; readonly handle: IommuAttachHandle };

/** `pasid_array_entry_to_domain`. */
export function pasidArrayEntryToDomain(entry: PasidArrayEntry): IommuDomain {
  if (entry.kind === "domain") return entry.domain;
  const d = entry.handle.domain;
  if (d === null) throw new SimError("attach handle in pasid_array without a domain");
  return d;
}

/** `struct group_device`: a member device and its link name in the group's `devices/`. */
export interface GroupDevice {
  readonly dev: Device;
  readonly name: string;
}

export class IommuGroup implements IommuGroupLink {
  /** Member devices in probe order. */
  readonly devices: GroupDevice[] = [];
  /** The kernel's own domain: DMA / DMA_FQ / IDENTITY, or a driver's static default. */
  defaultDomain: IommuDomain | null = null;
  /** Lazily created domain blocking all DMA (driver's static one, else an empty paging domain). */
  blockingDomain: IommuDomain | null = null;
  /** The domain attached to every member for RID (no-PASID) traffic. */
  domain: IommuDomain | null = null;
  /** DMA-ownership count (§4). */
  ownerCnt = 0;
  /** Owner cookie; null = kernel DMA-API users. */
  owner: DmaOwnerCookie | null = null;
  /** PASID → entry; slot 0 (IOMMU_NO_PASID) holds group attach handles. */
  readonly pasidArray = new XArray<PasidArrayEntry>();
  /**
   * Simulator bookkeeping, not a kernel field: which members the core programmed at each PASID
   * (the PASID-capable devices present at attach/replace time). A device that joins the group
   * later is not programmed for PASIDs already attached — the kernel only attaches the RID
   * domain at probe — and the checker needs to tell the two apart.
   */
  readonly pasidProgrammed = new Map<number, Set<Device>>();
  /** `iommu_group_set_name`. */
  name: string | null = null;
  /** `iommu_group_set_iommudata`. */
  iommuData: unknown = null;
  /** Reference count (the kernel's devices_kobj kref). */
  refs = 1;
  /** On a bus-probe list waiting for its default domain (`group->entry` non-empty). */
  onProbeList = false;
  /** The last reference went and the id was returned. */
  released = false;

  constructor(readonly id: number) {}

  /** `iommu_group_first_dev`. */
  firstDev(): Device {
    const g = this.devices[0];
    if (!g) throw new SimError(`iommu group ${this.id} has no device`);
    return g.dev;
  }

  hasDevice(dev: Device): boolean {
    return this.devices.some((g) => g.dev === dev);
  }

  toJSON(): Json {
    return {
      id: this.id,
      name: this.name,
      devices: this.devices.map((g) => g.name),
      default_domain: this.defaultDomain?.id ?? null,
      blocking_domain: this.blockingDomain?.id ?? null,
      domain: this.domain?.id ?? null,
      owner_cnt: this.ownerCnt,
      owner: ownerLabel(this.owner),
      pasid_array: this.pasidArray.entries().map(([pasid, e]) =>
        e.kind === "domain"
          ? { pasid, kind: "domain", domain: e.domain.id }
          : {
              pasid,
              kind: "handle",
              handle: e.handle.label,
              domain: e.handle.domain?.id ?? null,
            },
      ),
      pasid_reserved: this.pasidArray.reservations(),
      refs: this.refs,
    };
  }
}
