// What firmware (device tree / ACPI) says about a device, as far as the IOMMU cares: which IOMMU
// translates it (the `iommus` link that becomes the fwspec), its properties (`pasid-num-bits`)
// and the memory regions the IOMMU must keep 1:1 or untouched (DT `memory-region` with
// `iommu-addresses`, ACPI IORT RMR). The IOMMU layer reads these; the device model only holds them.

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";

/** A firmware node handle (`struct fwnode_handle`): compared by identity, named for views. */
export class FwNode {
  constructor(readonly name: string) {}

  toJSON(): Json {
    return this.name;
  }
}

/**
 * `enum iommu_resv_type` (include/linux/iommu.h), values in kernel order. It lives here because
 * firmware is what declares DIRECT / DIRECT_RELAXABLE / RESERVED regions; the IOMMU layer and its
 * drivers add MSI / SW_MSI ones.
 */
export const IOMMU_RESV = {
  /** Memory that must stay mapped 1:1 (firmware keeps DMAing to it). */
  DIRECT: 0,
  /** Like DIRECT, but the mapping may be dropped once the OS owns the device (e.g. USB, GFX). */
  DIRECT_RELAXABLE: 1,
  /** An IOVA range that must never be mapped. */
  RESERVED: 2,
  /** A hardware MSI doorbell window (translated by the IOMMU's own rules). */
  MSI: 3,
  /** A software-managed MSI window the OS maps itself. */
  SW_MSI: 4,
} as const;

export type IommuResvType = (typeof IOMMU_RESV)[keyof typeof IOMMU_RESV];

const RESV_NAMES: Record<IommuResvType, string> = {
  0: "direct",
  1: "direct-relaxable",
  2: "reserved",
  3: "msi",
  4: "msi",
};

/** The sysfs `reserved_regions` name of a region type ("direct", …; both MSI kinds print "msi"). */
export function resvTypeName(type: IommuResvType): string {
  return RESV_NAMES[type];
}

/** `struct iommu_resv_region`: `[start, start + length)` with IOMMU_READ/WRITE/… prot bits. */
export interface IommuResvRegion {
  readonly start: bigint;
  readonly length: bigint;
  readonly prot: number;
  readonly type: IommuResvType;
}

export function resvRegionJSON(r: IommuResvRegion): Json {
  return {
    start: jsonAddr(r.start),
    end: jsonAddr(r.start + r.length - 1n),
    type: resvTypeName(r.type),
    prot: r.prot,
  };
}

/** The firmware `iommus` link: the IOMMU's fwnode and this device's stream/requester IDs. */
export interface FwIommuLink {
  readonly fwnode: FwNode;
  readonly ids: readonly number[];
}

/** A firmware property value (`device_property_read_u32` and friends). */
export type FwPropertyValue = number | string | boolean;

/** Everything firmware describes about one device. */
export class FirmwareDescription {
  /** The device's own firmware node (what an IOMMU's `iommus` links of other devices point at). */
  readonly node: FwNode;
  readonly #properties = new Map<string, FwPropertyValue>();
  readonly #resvRegions: IommuResvRegion[] = [];
  iommus: FwIommuLink | null = null;

  constructor(
    init: {
      node?: FwNode;
      properties?: Readonly<Record<string, FwPropertyValue>>;
      resvRegions?: readonly IommuResvRegion[];
      iommus?: FwIommuLink | null;
    } = {},
  ) {
    this.node = init.node ?? new FwNode("(anonymous)");
    for (const [k, v] of Object.entries(init.properties ?? {})) this.#properties.set(k, v);
    for (const r of init.resvRegions ?? []) this.addResvRegion(r);
    this.iommus = init.iommus ?? null;
  }

  /** `device_property_read_u32`: the value, or undefined when absent or not a number. */
  readU32(name: string): number | undefined {
    const v = this.#properties.get(name);
    return typeof v === "number" ? v : undefined;
  }

  property(name: string): FwPropertyValue | undefined {
    return this.#properties.get(name);
  }

  setProperty(name: string, value: FwPropertyValue): void {
    this.#properties.set(name, value);
  }

  deleteProperty(name: string): void {
    this.#properties.delete(name);
  }

  /** Firmware reserved regions of the device, in declaration order. */
  resvRegions(): readonly IommuResvRegion[] {
    return this.#resvRegions;
  }

  addResvRegion(r: IommuResvRegion): void {
    if (r.length <= 0n || r.start < 0n) {
      throw new SimError(`reserved region ${jsonAddr(r.start)}+${jsonAddr(r.length)} is empty`);
    }
    this.#resvRegions.push(r);
  }

  toJSON(): Json {
    const props: { [k: string]: Json } = {};
    for (const [k, v] of [...this.#properties].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      props[k] = v;
    }
    return {
      node: this.node.name,
      properties: props,
      iommus: this.iommus ? { fwnode: this.iommus.fwnode.name, ids: [...this.iommus.ids] } : null,
      resv_regions: this.#resvRegions.map(resvRegionJSON),
    };
  }
}
