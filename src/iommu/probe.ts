// IOMMU instance registration, device probe and release (core §2.1, §2.2, §2.7).
//
// A device is probed when its bus notifies ADD_DEVICE (hot-plug: the default domain is set up
// at once) or when an IOMMU registers and scans the buses (`bus_iommu_probe`: default-domain
// set-up is deferred per group until every device of the scan joined, so the type and the
// direct mappings account for the whole group).

import { SimError } from "../base/errors.js";
import { err, OK, ok, type Result } from "../base/result.js";
import type { BusNotifier, BusType } from "../bus/device.js";
import { DevIommu, type Device } from "../bus/device.js";
import { FwNode } from "../bus/firmware.js";
import { devIsPci } from "../bus/pci-dev.js";
import { iommuDeviceSetDomain } from "./attach.js";
import {
  iommuCreateDeviceDirectMappings,
  iommuSetupDefaultDomain,
  iommuSetupDmaOps,
} from "./default-domain.js";
import { type GroupDevice, IommuGroup } from "./group.js";
import type { IommuDevice, IommuOps } from "./ops.js";
import type { CoreState } from "./state.js";

/** The core's bus notifier: ADD_DEVICE probes, REMOVED_DEVICE releases. */
export function makeBusNotifier(s: CoreState): BusNotifier {
  return (action, dev) => {
    if (action === "ADD_DEVICE") iommuProbeDevice(s, dev);
    else if (action === "REMOVED_DEVICE") iommuReleaseDevice(s, dev);
  };
}

/** The instance whose fwnode is `fwnode` (`iommu_from_fwnode`; null matches a null fwnode). */
function iommuFromFwnode(s: CoreState, fwnode: FwNode | null): IommuDevice | null {
  return s.iommus.find((i) => i.fwnode === fwnode) ?? null;
}

function checkNewInstance(s: CoreState, iommu: IommuDevice, ops: IommuOps): void {
  if (iommu.registered || s.iommus.includes(iommu)) {
    throw new SimError(`IOMMU ${iommu.name} is already registered`);
  }
  if (s.iommus.some((i) => i.name === iommu.name)) {
    throw new SimError(`an IOMMU named ${iommu.name} is already registered`);
  }
  iommu.ops = ops;
  s.trackStaticDomains(ops);
}

/**
 * `iommu_device_register`: add the instance, then probe every IOMMU bus; the first error
 * unregisters it again. Success marks it ready and triggers deferred driver probes (standing
 * for the IOMMU driver's own successful bind, which does so in the kernel).
 */
export function iommuDeviceRegister(
  s: CoreState,
  iommu: IommuDevice,
  ops: IommuOps,
  hwdev: Device | null,
): Result {
  checkNewInstance(s, iommu, ops);
  iommu.hwdev = hwdev;
  iommu.fwnode = hwdev?.fw.node ?? null;
  s.iommus.push(iommu);
  iommu.registered = true;
  for (const bus of s.iommuBuses) {
    const r = busIommuProbe(s, bus);
    if (!r.ok) {
      iommuDeviceUnregister(s, iommu);
      return r;
    }
  }
  iommu.ready = true;
  s.model.driverDeferredProbeTrigger();
  return OK;
}

/**
 * `iommu_device_register_bus` (iommufd selftest only): register against one private bus with
 * its own notifier and a software fwnode, and probe that bus.
 */
export function iommuDeviceRegisterBus(
  s: CoreState,
  iommu: IommuDevice,
  ops: IommuOps,
  bus: BusType,
): Result {
  checkNewInstance(s, iommu, ops);
  const nb = makeBusNotifier(s);
  bus.registerNotifier(nb);
  s.busNotifiers.set(iommu, { bus, nb });
  iommu.fwnode = new FwNode(`${iommu.name}-swnode`);
  s.iommus.push(iommu);
  iommu.registered = true;
  const r = busIommuProbe(s, bus);
  if (!r.ok) {
    iommuDeviceUnregisterBus(s, iommu);
    return r;
  }
  iommu.ready = true;
  return OK;
}

/**
 * `iommu_device_unregister`: release every device of the IOMMU buses this instance claimed,
 * drop it from the list, put the singleton group.
 */
export function iommuDeviceUnregister(s: CoreState, iommu: IommuDevice): void {
  if (!iommu.registered) throw new SimError(`IOMMU ${iommu.name} is not registered`);
  for (const bus of s.iommuBuses) releaseInstanceDevices(s, bus, iommu);
  const i = s.iommus.indexOf(iommu);
  if (i >= 0) s.iommus.splice(i, 1);
  iommu.registered = false;
  iommu.ready = false;
  // Pairs with the allocation in generic_single_device_group().
  s.groupPut(iommu.singletonGroup);
  iommu.singletonGroup = null;
}

/**
 * `iommu_device_unregister_bus`. The kernel relies on the selftest having destroyed its mock
 * devices first; the model also releases any left on the private bus.
 */
export function iommuDeviceUnregisterBus(s: CoreState, iommu: IommuDevice): void {
  const reg = s.busNotifiers.get(iommu);
  if (!reg) throw new SimError(`IOMMU ${iommu.name} was not registered against a bus`);
  reg.bus.unregisterNotifier(reg.nb);
  s.busNotifiers.delete(iommu);
  releaseInstanceDevices(s, reg.bus, iommu);
  iommuDeviceUnregister(s, iommu);
}

function releaseInstanceDevices(s: CoreState, bus: BusType, iommu: IommuDevice): void {
  bus.forEachDev((dev) => {
    if (dev.iommu !== null && dev.iommu.iommuDev === iommu) iommuReleaseDevice(s, dev);
    return 0;
  });
}

/**
 * `iommu_mock_device_add`: give a mock-bus device the mock instance's fwspec, then
 * `device_add` it (the bus notifier probes it).
 */
export function iommuMockDeviceAdd(s: CoreState, dev: Device, iommu: IommuDevice): Result {
  const r = iommuFwspecInit(s, dev, iommu);
  if (!r.ok) return r;
  s.model.deviceAdd(dev);
  return OK;
}

/** `iommu_fwspec_init`: link `dev` to `iommu`'s fwnode (EPROBE_DEFER before it is ready). */
function iommuFwspecInit(
  s: CoreState,
  dev: Device,
  iommu: IommuDevice,
  ids: readonly number[] = [],
): Result {
  if (!s.iommus.includes(iommu)) return err("EPROBE_DEFER");
  if (dev.iommu === null && !iommu.ready) return err("EPROBE_DEFER");
  if (dev.iommu?.fwspec) {
    return dev.iommu.fwspec.iommuFwnode === iommu.fwnode ? OK : err("EINVAL");
  }
  dev.iommu ??= new DevIommu();
  // iommu_fwspec_init, then iommu_fwspec_add_ids (of_iommu_xlate).
  dev.iommu.fwspec = { iommuFwnode: iommu.fwnode, ids: [...ids] };
  return OK;
}

/**
 * The firmware half of `dma_configure` (`of_iommu_configure`), called by the driver core
 * before a driver probes: EPROBE_DEFER while the firmware-linked IOMMU is not registered and
 * ready; otherwise the device is probed now if it was not yet.
 */
export function iommuConfigure(s: CoreState, dev: Device): Result {
  const link = dev.fw.iommus;
  if (link === null) return OK;
  if (dev.iommuGroup !== null) return OK;
  const iommu = iommuFromFwnode(s, link.fwnode);
  if (iommu === null) return err("EPROBE_DEFER");
  const hadIommu = dev.iommu !== null;
  const r = iommuFwspecInit(s, dev, iommu, link.ids);
  if (!r.ok) return r.errno === "EPROBE_DEFER" ? r : OK;
  // Not on the iommu_probe_device() path: simulate it (errors other than defer are only logged).
  if (!hadIommu) {
    const p = iommuProbeDevice(s, dev);
    if (!p.ok && p.errno === "EPROBE_DEFER") return p;
  }
  return OK;
}

/** `iommu_probe_device`: probe one device (hot-plug path), then `probe_finalize`. */
export function iommuProbeDevice(s: CoreState, dev: Device): Result {
  const r = iommuProbeDeviceLocked(s, dev, null);
  if (!r.ok) return r;
  s.devIommuOps(dev).probeFinalize?.(dev);
  return OK;
}

/** `__iommu_probe_device`. `groupList` non-null: bus scan, defer default-domain set-up. */
function iommuProbeDeviceLocked(s: CoreState, dev: Device, groupList: IommuGroup[] | null): Result {
  // Probed already if in a group.
  if (dev.iommuGroup !== null) return OK;
  const init = iommuInitDevice(s, dev);
  if (!init.ok) return init;
  s.warnOn(
    dev.driver !== null,
    "__iommu_probe_device",
    `late IOMMU probe at driver bind of ${dev.name}, something fishy here!`,
  );

  const group = s.groupOf(dev)!;
  const gdev = iommuGroupAllocDevice(s, group, dev);
  // The gdev must be on the list before iommu_setup_default_domain().
  group.devices.push(gdev);
  s.warnOn(
    group.defaultDomain !== null && group.domain === null,
    "__iommu_probe_device",
    "group has a default domain but no domain",
  );
  if (group.defaultDomain !== null) iommuCreateDeviceDirectMappings(s, group.defaultDomain, dev);
  let r: Result = OK;
  if (group.domain !== null) {
    // A live group: join whatever domain it is on (default, blocking or a user domain).
    r = iommuDeviceSetDomain(s, group, dev, group.domain, null, 0);
  } else if (group.defaultDomain === null && groupList === null) {
    r = iommuSetupDefaultDomain(s, group, 0);
  } else if (group.defaultDomain === null && groupList !== null && !group.onProbeList) {
    group.onProbeList = true;
    groupList.push(group);
  }
  if (!r.ok) {
    group.devices.splice(group.devices.indexOf(gdev), 1);
    iommuGroupFreeDevice(s, group, gdev);
    iommuDeinitDevice(s, dev, group);
    s.groupPut(group);
    return r;
  }
  if (group.defaultDomain !== null) iommuSetupDmaOps(s, dev, group.defaultDomain);
  return OK;
}

/** `iommu_init_device`: dev->iommu, the instance (probe_device), the group, PASID width. */
function iommuInitDevice(s: CoreState, dev: Device): Result {
  dev.iommu ??= new DevIommu();
  const di = dev.iommu;
  // The firmware replay of dma_configure for a device without fwspec and driver.
  if (di.fwspec === null && dev.driver === null && dev.fw.iommus !== null) {
    const iommu = iommuFromFwnode(s, dev.fw.iommus.fwnode);
    if (iommu !== null) di.fwspec = { iommuFwnode: iommu.fwnode, ids: [...dev.fw.iommus.ids] };
  }
  const inst = iommuFromFwnode(s, di.fwspec?.iommuFwnode ?? null);
  if (inst === null || inst.ops === null) return failInit(dev, err("ENODEV"));
  const ops = inst.ops;
  const probed = ops.probeDevice(dev);
  if (!probed.ok) return failInit(dev, probed);
  if (!s.iommus.includes(probed.value)) {
    throw new SimError(`${ops.name}.probe_device(${dev.name}) returned an unregistered IOMMU`);
  }
  di.iommuDev = probed.value;
  const g = ops.deviceGroup(dev);
  let group: Result<IommuGroup>;
  if (g === null) {
    s.warnOn(true, "iommu_init_device", `${ops.name}.device_group returned NULL`);
    group = err("EINVAL");
  } else {
    group = g;
  }
  if (!group.ok) {
    ops.releaseDevice?.(dev);
    di.iommuDev = null;
    return failInit(dev, group);
  }
  if (!(group.value instanceof IommuGroup) || s.groups.get(group.value.id) !== group.value) {
    throw new SimError(`${ops.name}.device_group(${dev.name}) returned a foreign group`);
  }
  dev.iommuGroup = group.value;
  di.maxPasids = devIommuGetMaxPasids(dev, probed.value);
  di.attachDeferred = ops.isAttachDeferred?.(dev) ?? false;
  return OK;
}

function failInit<T>(dev: Device, r: Result<T>): Result {
  // dev_iommu_free
  dev.iommu = null;
  return r.ok ? OK : r;
}

/**
 * `dev_iommu_get_max_pasids`: the PCI PASID capability width, else the `pasid-num-bits`
 * property (0 bits ⇒ 1 PASID), else 0; clamped to the instance's `max_pasids` (core §1.1).
 */
function devIommuGetMaxPasids(dev: Device, iommu: IommuDevice): number {
  let maxPasids = 0;
  if (devIsPci(dev)) {
    maxPasids = dev.maxPasids;
  } else {
    const bits = dev.fw.readU32("pasid-num-bits");
    if (bits !== undefined) maxPasids = bits >= 32 ? 0 : 2 ** bits;
  }
  return Math.min(maxPasids, iommu.maxPasids);
}

/** `iommu_group_alloc_device`: link name (with a `.N` suffix on collision) and the tracepoint. */
function iommuGroupAllocDevice(s: CoreState, group: IommuGroup, dev: Device): GroupDevice {
  let name = dev.name;
  for (let i = 0; group.devices.some((g) => g.name === name); i++) name = `${dev.name}.${i}`;
  s.ctx.trace.emit("iommu:add_device_to_group", dev.name, { gid: group.id, device: dev.name });
  s.log("info", dev, `Adding to iommu group ${group.id}`);
  return { dev, name };
}

/** `__iommu_group_free_device`: tracepoint; an emptied group must be unowned and on default. */
function iommuGroupFreeDevice(s: CoreState, group: IommuGroup, gdev: GroupDevice): void {
  s.ctx.trace.emit("iommu:remove_device_from_group", gdev.dev.name, {
    gid: group.id,
    device: gdev.dev.name,
  });
  if (group.devices.length === 0) {
    s.warnOn(
      group.ownerCnt !== 0 || group.domain !== group.defaultDomain,
      "__iommu_group_free_device",
      `group ${group.id} emptied while owned or off its default domain`,
    );
  }
}

/**
 * `iommu_deinit_device`: park the device on the driver's release domain, `release_device`,
 * when the group became empty free its default and blocking domains, and clear the device's
 * `dma_iommu` (its DMA API no longer goes through a domain).
 */
function iommuDeinitDevice(s: CoreState, dev: Device, group: IommuGroup): void {
  const ops = s.devIommuOps(dev);
  const di = s.devIommu(dev);
  // v6.16 attaches the release domain whatever the device needs (even a require_direct device
  // goes to a blocked release domain; choosing identity for it came later); straight to the
  // driver, so no tracepoint.
  if (!di.attachDeferred && ops.releaseDomain) {
    const rd = ops.releaseDomain;
    rd.ops?.attachDev?.(rd, dev, group.domain);
  }
  ops.releaseDevice?.(dev);
  // The last device frees the domains before the driver may go away.
  if (group.devices.length === 0) {
    if (group.defaultDomain !== null) {
      s.domainFree(group.defaultDomain);
      group.defaultDomain = null;
    }
    if (group.blockingDomain !== null) {
      s.domainFree(group.blockingDomain);
      group.blockingDomain = null;
    }
    group.domain = null;
  }
  dev.iommuGroup = null;
  dev.iommu = null;
  // CONFIG_IOMMU_DMA: the device is dma-direct again.
  dev.dmaIommu = false;
}

/** `iommu_release_device`: leave the group (§2.7), then free `dev->iommu`. */
export function iommuReleaseDevice(s: CoreState, dev: Device): void {
  const group = s.groupOf(dev);
  if (group !== null) {
    const i = group.devices.findIndex((g) => g.dev === dev);
    if (i >= 0) {
      const [gdev] = group.devices.splice(i, 1);
      for (const set of group.pasidProgrammed.values()) set.delete(dev);
      iommuGroupFreeDevice(s, group, gdev!);
      if (s.devHasIommu(dev)) iommuDeinitDevice(s, dev, group);
      else dev.iommuGroup = null;
    }
    // Pairs with the reference taken in iommu_init_device().
    s.groupPut(group);
  }
  // Free any fwspec if no IOMMU driver ever took the device.
  dev.iommu = null;
}

/**
 * `bus_iommu_probe`: probe every device of the bus (ENODEV ignored), then set up the default
 * domain of each newly formed group, its DMA ops, and `probe_finalize` every member.
 */
export function busIommuProbe(s: CoreState, bus: BusType): Result {
  const groupList: IommuGroup[] = [];
  const r = bus.forEachDev((dev) => {
    const p = iommuProbeDeviceLocked(s, dev, groupList);
    return !p.ok && p.errno !== "ENODEV" ? p : 0;
  });
  if (r !== 0) return r;
  for (const group of groupList) {
    group.onProbeList = false;
    // Deferred so the type and the IOMMU_RESV_DIRECT set-up see the whole group.
    const d = iommuSetupDefaultDomain(s, group, 0);
    if (!d.ok) return d;
    for (const gdev of group.devices) iommuSetupDmaOps(s, gdev.dev, group.defaultDomain);
    for (const gdev of [...group.devices]) s.devIommuOps(gdev.dev).probeFinalize?.(gdev.dev);
  }
  return OK;
}

/** `generic_device_group`: a new group per device. */
export function genericDeviceGroup(s: CoreState): Result<IommuGroup> {
  return ok(s.groupAlloc());
}

/** `generic_single_device_group`: one group per IOMMU instance, shared by all its devices. */
export function genericSingleDeviceGroup(s: CoreState, dev: Device): Result<IommuGroup> {
  const iommu = s.devIommuDevice(dev);
  iommu.singletonGroup ??= s.groupAlloc();
  return ok(s.groupRefGet(iommu.singletonGroup));
}
