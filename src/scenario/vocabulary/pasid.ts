// PASIDs (core §5): the global PASID allocator and PASID attachments with attach handles.

import type { Device } from "../../bus/device.js";
import type { IommuAttachHandle, IommuDomain } from "../../iommu/domain.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, DOMAIN, DOMAIN_TYPE, GROUP, HANDLE, PASID } from "./kinds.js";
import {
  type FunctionSpec,
  object,
  param,
  returnsResult,
  returnsValue,
  U32,
  VOID,
} from "./types.js";

export const PASIDS: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_alloc_global_pasid",
    area: "pasid",
    params: { dev: DEV },
    returns: returnsValue(U32),
    ts: "core.allocGlobalPasid(dev)",
    doc: "The lowest free PASID in [1, max_pasids - 1], or IOMMU_PASID_INVALID (0xffffffff).",
    call: (m, a) => m.core.allocGlobalPasid(a.dev as Device),
  },
  {
    name: "iommu_free_global_pasid",
    area: "pasid",
    params: { pasid: PASID },
    returns: VOID,
    ts: "core.freeGlobalPasid(pasid)",
    doc: "Returns a PASID to the global allocator; WARNs on IOMMU_PASID_INVALID.",
    call: (m, a) => m.core.freeGlobalPasid(a.pasid as number),
  },
  {
    name: "iommu_attach_device_pasid",
    area: "pasid",
    params: { domain: DOMAIN, dev: DEV, pasid: PASID, handle: { ...HANDLE, optional: true } },
    returns: returnsResult("void"),
    ts: "core.attachDevicePasid(domain, dev, pasid, handle)",
    doc: "Attaches a domain at a PASID of every PASID-capable device of the group. ENODEV, EOPNOTSUPP, EINVAL (foreign domain, PASID 0, out of range), EBUSY (slot taken); driver errors are rolled back.",
    call: (m, a) =>
      m.core.attachDevicePasid(
        a.domain as IommuDomain,
        a.dev as Device,
        a.pasid as number,
        (a.handle as IommuAttachHandle | null | undefined) ?? null,
      ),
  },
  {
    name: "iommu_replace_device_pasid",
    area: "pasid",
    params: { domain: DOMAIN, dev: DEV, pasid: PASID, handle: HANDLE },
    returns: returnsResult("void"),
    ts: "core.replaceDevicePasid(domain, dev, pasid, handle)",
    doc: "Replaces the domain at an attached PASID (iommufd). EINVAL if nothing is attached, the handle is null or reused; on a driver error the old entry stays.",
    call: (m, a) =>
      m.core.replaceDevicePasid(
        a.domain as IommuDomain,
        a.dev as Device,
        a.pasid as number,
        a.handle as IommuAttachHandle | null,
      ),
  },
  {
    name: "iommu_detach_device_pasid",
    area: "pasid",
    params: { domain: DOMAIN, dev: DEV, pasid: PASID },
    returns: VOID,
    ts: "core.detachDevicePasid(domain, dev, pasid)",
    doc: "Blocks the PASID on every PASID-capable device of the group and erases the slot.",
    call: (m, a) =>
      m.core.detachDevicePasid(a.domain as IommuDomain, a.dev as Device, a.pasid as number),
  },
  {
    name: "iommu_attach_handle_get",
    area: "pasid",
    params: { group: GROUP, pasid: PASID, type: param(DOMAIN_TYPE, { doc: "0 = any type" }) },
    returns: returnsResult(object("handle")),
    ts: "core.attachHandleGet(group, pasid, type)",
    doc: "The handle attached at a PASID. ENOENT if none (or attached without a handle), EBUSY if its domain has another type.",
    call: (m, a) =>
      m.core.attachHandleGet(a.group as IommuGroup, a.pasid as number, a.type as number),
  },
];
