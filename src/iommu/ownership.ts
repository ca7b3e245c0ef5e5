// DMA ownership (core §4): kernel DMA-API users counted by `owner_cnt` with a null owner, or
// one exclusive user-space owner (a cookie) whose group sits on the blocking domain or on a
// domain it attached. Attached PASIDs (a non-empty `pasid_array`) freeze the state: claims fail
// with EBUSY, a shared group refuses new kernel users, releases WARN and do nothing.

import { SimError } from "../base/errors.js";
import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { iommuGroupSetDomain, iommuGroupSetDomainNofail } from "./attach.js";
import { IOMMU_DOMAIN_UNMANAGED } from "./constants.js";
import { iommuPagingDomainAllocFlagsTyped } from "./default-domain.js";
import { type DmaOwnerCookie, type IommuGroup, ownerLabel } from "./group.js";
import type { CoreState } from "./state.js";

function traceOwner(s: CoreState, group: IommuGroup, op: string): void {
  s.ctx.trace.emit("iommu_core:dma_owner", `group${group.id}`, {
    gid: group.id,
    op,
    owner_cnt: group.ownerCnt,
    owner: ownerLabel(group.owner),
  });
}

/** `iommu_device_use_default_domain`: the driver core, before a DMA-API driver's probe. */
export function iommuDeviceUseDefaultDomain(s: CoreState, dev: Device): Result {
  const group = s.groupOf(dev);
  if (group === null) return OK;
  // We may race with bus_iommu_probe() finalising the group.
  if (group.defaultDomain === null) return err("EPROBE_DEFER");
  if (group.ownerCnt > 0) {
    if (
      group.domain !== group.defaultDomain ||
      group.owner !== null ||
      !group.pasidArray.isEmpty()
    ) {
      return err("EBUSY");
    }
  }
  group.ownerCnt++;
  traceOwner(s, group, "use_default_domain");
  return OK;
}

/** `iommu_device_unuse_default_domain`: WARNs (and does nothing) when unbalanced. */
export function iommuDeviceUnuseDefaultDomain(s: CoreState, dev: Device): void {
  const group = s.groupOf(dev);
  if (group === null) return;
  if (
    s.warnOn(
      group.ownerCnt === 0 || !group.pasidArray.isEmpty(),
      "iommu_device_unuse_default_domain",
      group.ownerCnt === 0 ? "owner_cnt is 0" : "PASIDs still attached",
    )
  ) {
    return;
  }
  group.ownerCnt--;
  traceOwner(s, group, "unuse_default_domain");
}

/**
 * `__iommu_group_alloc_blocking_domain`: the driver's static blocked domain, else an empty
 * paging domain from the first device (for drivers without IOMMU_DOMAIN_BLOCKED).
 */
export function iommuGroupAllocBlockingDomain(s: CoreState, group: IommuGroup): Result {
  if (group.blockingDomain !== null) return OK;
  const dev = group.firstDev();
  const ops = s.devIommuOps(dev);
  if (ops.blockedDomain) {
    group.blockingDomain = ops.blockedDomain;
    return OK;
  }
  const d = iommuPagingDomainAllocFlagsTyped(s, dev, IOMMU_DOMAIN_UNMANAGED, 0);
  if (!d.ok) return d;
  group.blockingDomain = d.value;
  return OK;
}

/** `__iommu_take_dma_ownership`. */
function takeDmaOwnership(s: CoreState, group: IommuGroup, owner: DmaOwnerCookie): Result {
  if (
    (group.domain !== null && group.domain !== group.defaultDomain) ||
    !group.pasidArray.isEmpty()
  ) {
    return err("EBUSY");
  }
  const b = iommuGroupAllocBlockingDomain(s, group);
  if (!b.ok) return b;
  const r = iommuGroupSetDomain(s, group, group.blockingDomain!);
  if (!r.ok) return r;
  group.owner = owner;
  group.ownerCnt++;
  return OK;
}

/** `iommu_group_claim_dma_owner`: exclusive; EPERM while anyone (kernel included) uses it. */
export function iommuGroupClaimDmaOwner(
  s: CoreState,
  group: IommuGroup,
  owner: DmaOwnerCookie | null,
): Result {
  if (s.warnOn(owner === null, "iommu_group_claim_dma_owner", "NULL owner")) return err("EINVAL");
  if (group.ownerCnt > 0) return err("EPERM");
  const r = takeDmaOwnership(s, group, owner!);
  if (r.ok) traceOwner(s, group, "claim_group");
  return r;
}

/** `iommu_device_claim_dma_owner`: devices of one group may share the same owner cookie. */
export function iommuDeviceClaimDmaOwner(
  s: CoreState,
  dev: Device,
  owner: DmaOwnerCookie | null,
): Result {
  if (s.warnOn(owner === null, "iommu_device_claim_dma_owner", "NULL owner")) return err("EINVAL");
  const group = s.groupOf(dev);
  if (group === null) return err("ENODEV");
  if (group.ownerCnt > 0) {
    if (group.owner !== owner) return err("EPERM");
    group.ownerCnt++;
    traceOwner(s, group, "claim_device");
    return OK;
  }
  const r = takeDmaOwnership(s, group, owner!);
  if (r.ok) traceOwner(s, group, "claim_device");
  return r;
}

/** `__iommu_release_dma_ownership`: WARNs and does nothing unless owned and PASID-free. */
function releaseDmaOwnership(s: CoreState, group: IommuGroup): void {
  if (
    s.warnOn(
      group.ownerCnt === 0 || group.owner === null || !group.pasidArray.isEmpty(),
      "__iommu_release_dma_ownership",
      group.ownerCnt === 0
        ? "owner_cnt is 0"
        : group.owner === null
          ? "no owner"
          : "PASIDs still attached",
    )
  ) {
    return;
  }
  group.ownerCnt = 0;
  group.owner = null;
  iommuGroupSetDomainNofail(s, group, group.defaultDomain);
}

/** `iommu_group_release_dma_owner`: full release whatever the count. */
export function iommuGroupReleaseDmaOwner(s: CoreState, group: IommuGroup): void {
  releaseDmaOwnership(s, group);
  traceOwner(s, group, "release_group");
}

/** `iommu_device_release_dma_owner`. */
export function iommuDeviceReleaseDmaOwner(s: CoreState, dev: Device): void {
  const group = s.groupOf(dev);
  if (group === null) {
    throw new SimError(`iommu_device_release_dma_owner(${dev.name}): no group (kernel NULL deref)`);
  }
  if (group.ownerCnt > 1) group.ownerCnt--;
  else releaseDmaOwnership(s, group);
  traceOwner(s, group, "release_device");
}

/** `iommu_group_dma_owner_claimed`: `owner_cnt != 0` (true in KERNEL state too). */
export function iommuGroupDmaOwnerClaimed(group: IommuGroup): boolean {
  return group.ownerCnt !== 0;
}
