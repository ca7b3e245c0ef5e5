// DMA ownership (core §4): kernel DMA-API users against user-space owners.

import type { Device } from "../../bus/device.js";
import type { IommuDmaOwner } from "../../iommu/dma-owner-compat.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DMA_OWNER_TYPE, GROUP } from "./kinds.js";
import {
  BOOL,
  type FunctionSpec,
  object,
  param,
  returnsResult,
  returnsValue,
  VOID,
} from "./types.js";

const OWNER = param(object("owner"), {
  nullable: true,
  doc: "void *owner (a new name is a new cookie)",
});

export const OWNERSHIP: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_device_use_default_domain",
    area: "ownership",
    params: { dev: DEV },
    returns: returnsResult("void"),
    ts: "core.deviceUseDefaultDomain(dev)",
    doc: "A kernel driver will use the DMA API (owner_cnt++). EPROBE_DEFER before the default domain exists; EBUSY if the shared group is owned, off its default domain, or has PASIDs.",
    call: (m, a) => m.core.deviceUseDefaultDomain(a.dev as Device),
  },
  {
    name: "iommu_device_unuse_default_domain",
    area: "ownership",
    params: { dev: DEV },
    returns: VOID,
    ts: "core.deviceUnuseDefaultDomain(dev)",
    doc: "Undoes use_default_domain; WARNs and does nothing if unbalanced or PASIDs are attached.",
    call: (m, a) => m.core.deviceUnuseDefaultDomain(a.dev as Device),
  },
  {
    name: "iommu_group_claim_dma_owner",
    area: "ownership",
    params: { group: GROUP, owner: OWNER },
    returns: returnsResult("void"),
    ts: "core.groupClaimDmaOwner(group, owner)",
    doc: "User-space ownership of a whole group (VFIO): the group moves to its blocking domain. EINVAL null owner, EPERM if used or owned, EBUSY off a core domain or with PASIDs.",
    call: (m, a) => m.core.groupClaimDmaOwner(a.group as IommuGroup, a.owner as string | null),
  },
  {
    name: "iommu_device_claim_dma_owner",
    area: "ownership",
    params: { dev: DEV, owner: OWNER },
    returns: returnsResult("void"),
    ts: "core.deviceClaimDmaOwner(dev, owner)",
    doc: "Device-centric ownership (iommufd): the same owner may claim several devices of a group. EINVAL, ENODEV, EPERM (other owner or kernel users), EBUSY.",
    call: (m, a) => m.core.deviceClaimDmaOwner(a.dev as Device, a.owner as string | null),
  },
  {
    name: "iommu_group_release_dma_owner",
    area: "ownership",
    params: { group: GROUP },
    returns: VOID,
    ts: "core.groupReleaseDmaOwner(group)",
    doc: "Releases group ownership (back to the default domain); WARNs if not owned or PASIDs are attached.",
    call: (m, a) => m.core.groupReleaseDmaOwner(a.group as IommuGroup),
  },
  {
    name: "iommu_device_release_dma_owner",
    area: "ownership",
    params: {
      dev: DEV,
      owner: param(DMA_OWNER_TYPE, {
        optional: true,
        doc: "seed 004's typed release (the Dec 2021 series' two-argument form)",
      }),
    },
    returns: VOID,
    ts: "core.deviceReleaseDmaOwner(dev) / core.dmaOwnerCompat.deviceReleaseDmaOwner(dev, owner)",
    doc: "Drops one device claim; the last one releases the group. With owner (seed 004): drops one reference of iommu_device_set_dma_owner's typed owner (WARN if the group is not owned with that type); the last one returns the group to DMA_OWNER_NONE.",
    call: (m, a) =>
      a.owner === undefined
        ? m.core.deviceReleaseDmaOwner(a.dev as Device)
        : m.core.dmaOwnerCompat.deviceReleaseDmaOwner(a.dev as Device, a.owner as IommuDmaOwner),
  },
  {
    name: "iommu_group_dma_owner_claimed",
    area: "ownership",
    params: { group: GROUP },
    returns: returnsValue(BOOL),
    ts: "core.groupDmaOwnerClaimed(group)",
    doc: "owner_cnt != 0 (true for kernel users too).",
    call: (m, a) => m.core.groupDmaOwnerClaimed(a.group as IommuGroup),
  },
];
