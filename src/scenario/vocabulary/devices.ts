// Devices, IOMMU instances and boot policy (core §2.1, §2.2, §2.4, §2.7).

import type { BusType, Device } from "../../bus/device.js";
import { resvRegionJSON } from "../../bus/firmware.js";
import type { IommuCap } from "../../iommu/constants.js";
import type { Machine, MachineIommu } from "../../machine/machine.js";
import { CAP, DEV } from "./kinds.js";
import {
  BOOL,
  type FunctionSpec,
  JSON_VALUE,
  object,
  param,
  returnsResult,
  returnsValue,
  VOID,
} from "./types.js";

export const DEVICES: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_probe_device",
    area: "devices",
    params: { dev: DEV },
    returns: returnsResult("void"),
    ts: "core.probeDevice(dev)",
    doc: "Probes a device (hot-plug path: group, then the current or a new default domain). 0 if already probed; ENODEV if no IOMMU claims it.",
    call: (m, a) => m.core.probeDevice(a.dev as Device),
  },
  {
    name: "iommu_release_device",
    area: "devices",
    params: { dev: DEV },
    returns: VOID,
    ts: "core.releaseDevice(dev)",
    doc: "Removes the device from its group; the last device out frees the group's default and blocking domains.",
    call: (m, a) => m.core.releaseDevice(a.dev as Device),
  },
  {
    name: "bus_iommu_probe",
    area: "devices",
    params: { bus: param(object("bus"), { doc: "platform or pci" }) },
    returns: returnsResult("void"),
    ts: "core.busIommuProbe(bus)",
    doc: "Probes every device of a bus, then sets up each new group's default domain.",
    call: (m, a) => m.core.busIommuProbe(a.bus as BusType),
  },
  {
    name: "iommu_device_unregister",
    area: "devices",
    params: { iommu: param(object("iommu"), { doc: "struct iommu_device *iommu" }) },
    returns: VOID,
    ts: "core.deviceUnregister(iommu)",
    doc: "Unregisters an IOMMU instance, releasing every device it claimed.",
    call: (m, a) => m.core.deviceUnregister((a.iommu as MachineIommu).instance),
  },
  {
    name: "device_iommu_capable",
    area: "devices",
    params: { dev: DEV, cap: param(CAP, { doc: "enum iommu_cap" }) },
    returns: returnsValue(BOOL),
    ts: "core.deviceIommuCapable(dev, cap)",
    doc: "Whether the device's IOMMU has the capability (false without an IOMMU).",
    call: (m, a) => m.core.deviceIommuCapable(a.dev as Device, a.cap as IommuCap),
  },
  {
    name: "iommu_get_resv_regions",
    area: "devices",
    params: { dev: DEV },
    returns: returnsValue(JSON_VALUE),
    ts: "core.getResvRegions(dev)",
    doc: "The device's reserved regions (firmware and driver), as {start, end, type, prot}.",
    call: (m, a) => m.core.getResvRegions(a.dev as Device).map(resvRegionJSON),
  },
  {
    name: "iommu_set_dma_strict",
    area: "devices",
    params: {},
    returns: VOID,
    ts: "core.setDmaStrict()",
    doc: "Forces strict invalidation; a global DMA_FQ default becomes DMA.",
    call: (m) => m.core.setDmaStrict(),
  },
  {
    name: "iommu_default_passthrough",
    area: "devices",
    params: {},
    returns: returnsValue(BOOL),
    ts: "core.defaultPassthrough()",
    doc: "Whether the global default domain type is IDENTITY.",
    call: (m) => m.core.defaultPassthrough(),
  },
  {
    name: "iommu_set_default_passthrough",
    area: "devices",
    params: { cmd_line: param(BOOL) },
    returns: VOID,
    ts: "core.setDefaultPassthrough(cmd_line)",
    doc: "Makes IDENTITY the global default domain type.",
    call: (m, a) => m.core.setDefaultPassthrough(a.cmd_line as boolean),
  },
  {
    name: "iommu_set_default_translated",
    area: "devices",
    params: { cmd_line: param(BOOL) },
    returns: VOID,
    ts: "core.setDefaultTranslated(cmd_line)",
    doc: "Makes DMA the global default domain type.",
    call: (m, a) => m.core.setDefaultTranslated(a.cmd_line as boolean),
  },
];
