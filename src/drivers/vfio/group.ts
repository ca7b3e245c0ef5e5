// The VFIO group path (drivers/vfio/group.c, container.c): a group file per IOMMU group with
// vfio-pci devices, and a container that holds groups and one IOMMU backend (type1).
//
//   open /dev/vfio/N         → EBUSY while the group is open, or one of its devices is used
//                              through its cdev (iommufd path);
//   VFIO_GROUP_GET_STATUS    → viable unless someone owns DMA of the group (`owner_cnt != 0`);
//   VFIO_GROUP_SET_CONTAINER → `iommu_group_claim_dma_owner(group, vfio_group)`: EPERM while a
//                              kernel driver uses the group, EBUSY when it is on a non-core
//                              domain or has PASIDs attached, EINVAL for firmware direct
//                              mappings (the blocking domain is refused); the group now blocks
//                              all DMA; with the container's backend set, the group is attached
//                              to it (failure releases the ownership again);
//   VFIO_SET_IOMMU           → type1 on every group of the container;
//   VFIO_GROUP_UNSET_CONTAINER / close → detach from the backend (blocking domain), then
//                              `iommu_group_release_dma_owner` (the default domain is back).

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { IommuCore } from "../../iommu/core.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Process } from "../../mm/process.js";
import { VfioIommuType1 } from "./type1.js";
import { traceVfioDma } from "./user-dma.js";

/** `VFIO_TYPE1v2_IOMMU`, the only backend modelled. */
export const VFIO_TYPE1v2_IOMMU = 3;

/** `struct vfio_group`: also the DMA-owner cookie of its IOMMU group. */
export class VfioGroup {
  readonly name: string;
  /** The group file is open (one opener at a time). */
  opened = false;
  container: VfioContainer | null = null;
  /** Devices of the group opened through their cdev (`cdev_device_open_cnt`). */
  cdevOpenCount = 0;

  constructor(
    readonly core: IommuCore,
    readonly iommuGroup: IommuGroup,
  ) {
    this.name = `vfio-group-${iommuGroup.id}`;
  }

  /** `vfio_group_fops_open`. */
  open(): Result {
    if (this.opened || this.cdevOpenCount > 0) return err("EBUSY");
    this.opened = true;
    return OK;
  }

  /** VFIO_GROUP_GET_STATUS. */
  status(): { viable: boolean; containerSet: boolean } {
    if (this.container?.iommu != null) return { viable: true, containerSet: true };
    return {
      viable: !this.core.groupDmaOwnerClaimed(this.iommuGroup),
      containerSet: this.container !== null,
    };
  }

  /** VFIO_GROUP_SET_CONTAINER (`vfio_container_attach_group`). */
  setContainer(container: VfioContainer): Result {
    this.#checkOpen();
    if (this.container !== null) return err("EINVAL");
    if (this.cdevOpenCount > 0) return err("EBUSY");
    const claim = this.core.groupClaimDmaOwner(this.iommuGroup, this);
    if (!claim.ok) return claim;
    if (container.iommu !== null) {
      const r = container.iommu.attachGroup(this.iommuGroup);
      if (!r.ok) {
        this.core.groupReleaseDmaOwner(this.iommuGroup);
        return r;
      }
    }
    this.container = container;
    container.groups.push(this);
    return OK;
  }

  /** VFIO_GROUP_UNSET_CONTAINER (`vfio_container_detach_group`). */
  unsetContainer(): Result {
    this.#checkOpen();
    const container = this.container;
    if (container === null) return err("EINVAL");
    container.iommu?.detachGroup(this.iommuGroup);
    this.core.groupReleaseDmaOwner(this.iommuGroup);
    container.groups.splice(container.groups.indexOf(this), 1);
    this.container = null;
    // The last group gone: the container's backend goes too.
    if (container.groups.length === 0) container.releaseIommu();
    return OK;
  }

  /** Closing the group file unsets its container. */
  close(): void {
    if (!this.opened) return;
    if (this.container !== null) this.unsetContainer();
    this.opened = false;
  }

  toJSON(): Json {
    return {
      name: this.name,
      iommu_group: this.iommuGroup.id,
      opened: this.opened,
      container: this.container?.name ?? null,
      cdev_open: this.cdevOpenCount,
    };
  }

  #checkOpen(): void {
    if (!this.opened) throw new SimError(`${this.name} is not open`);
  }
}

/** `struct vfio_container` (/dev/vfio/vfio). */
export class VfioContainer {
  readonly groups: VfioGroup[] = [];
  iommu: VfioIommuType1 | null = null;

  constructor(
    readonly core: IommuCore,
    readonly name: string,
  ) {}

  /** VFIO_SET_IOMMU: EINVAL without groups, with a backend already set, or another type. */
  setIommu(type: number): Result {
    if (type !== VFIO_TYPE1v2_IOMMU) return err("EINVAL");
    if (this.groups.length === 0 || this.iommu !== null) return err("EINVAL");
    const iommu = new VfioIommuType1(this.core, this.name);
    const done: VfioGroup[] = [];
    for (const g of this.groups) {
      const r = iommu.attachGroup(g.iommuGroup);
      if (!r.ok) {
        for (const d of done) iommu.detachGroup(d.iommuGroup);
        return r;
      }
      done.push(g);
    }
    this.iommu = iommu;
    return OK;
  }

  /** VFIO_IOMMU_MAP_DMA by `task` (its mm is pinned): EINVAL without a backend. */
  mapDma(task: Process, vaddr: bigint, iova: bigint, size: bigint, flags: number): Result {
    const mm = task.mm;
    if (mm === null) throw new SimError(`pid ${task.pid} has exited`);
    const iommu = this.iommu;
    const r = iommu === null ? err("EINVAL") : iommu.mapDma(mm, vaddr, iova, size, flags);
    traceVfioDma(this.core, this.name, "map", iova, size, vaddr, r);
    return r;
  }

  /** VFIO_IOMMU_UNMAP_DMA → bytes unmapped (EINVAL without a backend). */
  unmapDma(iova: bigint, size: bigint): Result<bigint> {
    const iommu = this.iommu;
    const r = iommu === null ? err("EINVAL") : iommu.unmapDma(iova, size);
    traceVfioDma(this.core, this.name, "unmap", iova, size, null, r);
    return r;
  }

  /** Closing the container: every group leaves it. */
  close(): void {
    for (const g of [...this.groups]) g.unsetContainer();
    this.releaseIommu();
  }

  /** @internal the backend goes with the last group. */
  releaseIommu(): void {
    this.iommu?.release();
    this.iommu = null;
  }

  toJSON(): Json {
    return {
      name: this.name,
      groups: this.groups.map((g) => g.iommuGroup.id),
      iommu: this.iommu?.toJSON() ?? null,
    };
  }
}
