// `struct iommu_ops` (§1.6) — what an IOMMU driver implements — and `struct iommu_device`
// (§1.2), one registered hardware instance. Several instances, possibly of different drivers,
// coexist; every device-based call resolves the driver through the device's own instance
// (`dev->iommu->iommu_dev->ops`), never through its bus (seed 000).

import type { Json } from "../base/json.js";
import type { Result } from "../base/result.js";
import type { Device, IommuInstanceLink } from "../bus/device.js";
import type { FwNode, IommuResvRegion } from "../bus/firmware.js";
import type { MmStruct } from "../mm/mm-types.js";
import type { IommuCap, IommuDomainType } from "./constants.js";
import type { IommuDomain, IommuDomainOps, IommuOpsIdentity } from "./domain.js";
import type { IommuFault, IommuPageResponse } from "./fault.js";
import type { IommuGroup } from "./group.js";

/** `struct iommu_ops`. Optional members are callbacks a driver may leave out. */
export interface IommuOps extends IommuOpsIdentity {
  /** Driver name (views, warnings). */
  readonly name: string;
  capable?(dev: Device, cap: IommuCap): boolean;
  /** v6.16: a dynamic identity domain (prefer a static `identityDomain`). */
  domainAllocIdentity?(dev: Device): Result<IommuDomain>;
  /** A paging domain for `dev` (flags 0). Returning null means -ENOMEM. */
  domainAllocPaging?(dev: Device): Result<IommuDomain> | null;
  /** A paging domain honouring `IOMMU_HWPT_ALLOC_*` flags; must fail with an errno. */
  domainAllocPagingFlags?(dev: Device, flags: number, userData: unknown): Result<IommuDomain>;
  /** An SVA domain sharing `mm` (§6): a first stage walking the mm's page table. */
  domainAllocSva?(dev: Device, mm: MmStruct): Result<IommuDomain>;
  /**
   * Historical (seed 003, removed in v6.2): an SVA domain for the kernel address space `mm`
   * that accepts supervisor (privileged) requests, for `IOMMU_SVA_BIND_SUPERVISOR`. Leave it
   * out (or answer EOPNOTSUPP) when the hardware cannot. Kernel mappings get no automatic
   * IOTLB flush: nothing notifies the domain when the kernel unmaps.
   */
  domainAllocSvaSupervisor?(dev: Device, mm: MmStruct): Result<IommuDomain>;
  /** Claim the device: its instance, or `ENODEV` when it is not this driver's. */
  probeDevice(dev: Device): Result<IommuDevice>;
  /** Stop using any domain on the device. */
  releaseDevice?(dev: Device): void;
  /** After group and default domain setup. */
  probeFinalize?(dev: Device): void;
  /** The device's group, holding a reference for it (a new one or an existing one). */
  deviceGroup(dev: Device): Result<IommuGroup> | null;
  /** Reserved regions (firmware ones and the driver's MSI windows). */
  getResvRegions?(dev: Device): IommuResvRegion[];
  isAttachDeferred?(dev: Device): boolean;
  /** Send a page response to the hardware (required for IOPF queues, §7). */
  pageResponse?(dev: Device, evt: IommuFault, msg: IommuPageResponse): void;
  /** 0 (no preference), `IOMMU_DOMAIN_IDENTITY` or `IOMMU_DOMAIN_DMA`. */
  defDomainType?(dev: Device): IommuDomainType;
  /**
   * The PASID range the hardware imposes on PASID consumers (seed 002's `iommu_pasid_init`
   * callback; historical API, argument shape ours).
   */
  pasidRange?(dev: Device): { readonly min: number; readonly max: number };
  /** Ops installed into domains that bring none of their own. */
  readonly defaultDomainOps: IommuDomainOps;
  /** Static, always attachable domains. */
  readonly identityDomain?: IommuDomain;
  readonly blockedDomain?: IommuDomain;
  /** Attached before `release_device`. */
  readonly releaseDomain?: IommuDomain;
  /** Legacy static default domain (IDENTITY / BLOCKED / PLATFORM). */
  readonly defaultDomain?: IommuDomain;
  /** Faults for any PASID go through the NESTED domain attached to the RID. */
  readonly userPasidTable?: boolean;
}

/** `struct iommu_device`: one registered IOMMU hardware instance. Drivers may subclass it. */
export class IommuDevice implements IommuInstanceLink {
  /** Set by `iommu_device_register`. */
  ops: IommuOps | null = null;
  /** The firmware node devices' `iommus` links point at (null: matches devices without one). */
  fwnode: FwNode | null = null;
  /** The IOMMU's own device (`hwdev`), if any. */
  hwdev: Device | null = null;
  /** Shared group of `generic_single_device_group`. */
  singletonGroup: IommuGroup | null = null;
  /** Probing of the buses finished (`iommu_device_register` succeeded). */
  ready = false;
  /** On the core's instance list. */
  registered = false;

  constructor(
    readonly name: string,
    /** PASIDs the hardware supports (devices are clamped to it). */
    public maxPasids = 0,
  ) {}

  toJSON(): Json {
    return {
      name: this.name,
      driver: this.ops?.name ?? null,
      fwnode: this.fwnode?.name ?? null,
      max_pasids: this.maxPasids,
      ready: this.ready,
      registered: this.registered,
      singleton_group: this.singletonGroup?.id ?? null,
      ...this.extraJSON(),
    };
  }

  /** Driver-specific fields of the JSON view. */
  protected extraJSON(): { [key: string]: Json } {
    return {};
  }
}
