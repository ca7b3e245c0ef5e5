// Groups (core §2.3): references, ids, names, and the drivers' group-formation helpers.

import type { Device } from "../../bus/device.js";
import { resvRegionJSON } from "../../bus/firmware.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Machine } from "../../machine/machine.js";
import { DEV, GROUP } from "./kinds.js";
import {
  type FunctionSpec,
  int,
  JSON_VALUE,
  object,
  param,
  returnsResult,
  returnsValue,
  TEXT,
  VOID,
} from "./types.js";

const GROUP_ID = int(0, 0x7fff_ffff, "a group id");

export const GROUPS: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_group_alloc",
    area: "groups",
    params: {},
    returns: returnsResult(object("group")),
    ts: "core.groupAlloc()",
    doc: "A new empty group holding one reference, with the lowest free id.",
    call: (m) => m.core.groupAlloc(),
  },
  {
    name: "iommu_group_get",
    area: "groups",
    params: { dev: DEV },
    returns: returnsValue(object("group")),
    ts: "core.groupGet(dev)",
    doc: "The device's group with a new reference, or null.",
    call: (m, a) => m.core.groupGet(a.dev as Device),
  },
  {
    name: "iommu_group_ref_get",
    area: "groups",
    params: { group: GROUP },
    returns: returnsValue(object("group")),
    ts: "core.groupRefGet(group)",
    doc: "Takes another reference on the group.",
    call: (m, a) => m.core.groupRefGet(a.group as IommuGroup),
  },
  {
    name: "iommu_group_put",
    area: "groups",
    params: { group: param(object("group"), { nullable: true }) },
    returns: VOID,
    ts: "core.groupPut(group)",
    doc: "Drops a group reference; the last one releases the group and its id.",
    call: (m, a) => m.core.groupPut(a.group as IommuGroup | null),
  },
  {
    name: "iommu_group_get_by_id",
    area: "groups",
    params: { id: param(GROUP_ID) },
    returns: returnsValue(object("group")),
    ts: "core.groupRefGet(core.groupById(id))",
    doc: "The group with that id, with a new reference, or null.",
    call: (m, a) => {
      const g = m.core.groupById(a.id as number);
      return g === null ? null : m.core.groupRefGet(g);
    },
  },
  {
    name: "iommu_group_id",
    area: "groups",
    params: { group: GROUP },
    returns: returnsValue(GROUP_ID),
    ts: "core.groupId(group)",
    doc: "The group's id (/sys/kernel/iommu_groups/<id>).",
    call: (m, a) => m.core.groupId(a.group as IommuGroup),
  },
  {
    name: "iommu_group_set_name",
    area: "groups",
    params: { group: GROUP, name: param(TEXT, { nullable: true }) },
    returns: returnsResult("void"),
    ts: "core.groupSetName(group, name)",
    doc: "Names the group (sysfs name).",
    call: (m, a) => m.core.groupSetName(a.group as IommuGroup, a.name as string | null),
  },
  {
    name: "iommu_get_group_resv_regions",
    area: "groups",
    params: { group: GROUP },
    returns: returnsValue(JSON_VALUE),
    ts: "core.getGroupResvRegions(group)",
    doc: "The reserved regions of every member, merged, as {start, end, type, prot} (sysfs reserved_regions).",
    call: (m, a) => m.core.getGroupResvRegions(a.group as IommuGroup).map(resvRegionJSON),
  },
  {
    name: "generic_device_group",
    area: "groups",
    params: { dev: DEV },
    returns: returnsResult(object("group")),
    ts: "core.genericDeviceGroup(dev)",
    doc: "A driver's device_group helper: always a new group (the caller owns the reference).",
    call: (m, a) => m.core.genericDeviceGroup(a.dev as Device),
  },
  {
    name: "generic_single_device_group",
    area: "groups",
    params: { dev: DEV },
    returns: returnsResult(object("group")),
    ts: "core.genericSingleDeviceGroup(dev)",
    doc: "A driver's device_group helper: the one group of the device's IOMMU instance.",
    call: (m, a) => m.core.genericSingleDeviceGroup(a.dev as Device),
  },
  {
    name: "pci_device_group",
    area: "groups",
    params: { dev: DEV },
    returns: returnsResult(object("group")),
    ts: "core.pciDeviceGroup(dev)",
    doc: "A driver's device_group helper for PCI: the group of a DMA alias or of a function not isolated by ACS, else a new one.",
    call: (m, a) => m.core.pciDeviceGroup(a.dev as Device),
  },
];
