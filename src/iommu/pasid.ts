// PASIDs (core §5): the global PASID IDA, attaching/replacing/detaching a domain at a PASID of
// every PASID-capable device of a group, and attach-handle lookup in the group's pasid_array.

import { SimError } from "../base/errors.js";
import { err, formatResult, OK, ok, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { domainIommuOpsCompatible, makePasidArrayEntry } from "./attach.js";
import { IOMMU_FIRST_GLOBAL_PASID, IOMMU_NO_PASID, IOMMU_PASID_INVALID } from "./constants.js";
import type { IommuAttachHandle, IommuDomain } from "./domain.js";
import { type IommuGroup, pasidArrayEntryToDomain } from "./group.js";
import type { CoreState } from "./state.js";

/** `iommu_alloc_global_pasid`: lowest free in [1, max_pasids − 1], else IOMMU_PASID_INVALID. */
export function iommuAllocGlobalPasid(s: CoreState, dev: Device): number {
  const maxPasids = s.devIommu(dev).maxPasids;
  // max_pasids == 0: the device does not support PASID.
  if (!maxPasids) return IOMMU_PASID_INVALID;
  // max_pasids counts PASIDs, the IDA range is inclusive.
  if (maxPasids - 1 < IOMMU_FIRST_GLOBAL_PASID) return IOMMU_PASID_INVALID;
  const id = s.globalPasidIda.alloc(IOMMU_FIRST_GLOBAL_PASID, maxPasids - 1);
  if (id < 0) return IOMMU_PASID_INVALID;
  s.ctx.trace.emit("iommu_core:pasid_alloc", dev.name, { pasid: id, device: dev.name });
  return id;
}

/** `iommu_free_global_pasid`: WARN on IOMMU_PASID_INVALID; `ida_free` WARNs on a free id. */
export function iommuFreeGlobalPasid(s: CoreState, pasid: number): void {
  if (s.warnOn(pasid === IOMMU_PASID_INVALID, "iommu_free_global_pasid", "IOMMU_PASID_INVALID"))
    return;
  if (
    s.warnOn(
      !s.globalPasidIda.free(pasid),
      "ida_free",
      `ida_free called for id=${pasid} which is not allocated`,
    )
  ) {
    return;
  }
  s.ctx.trace.emit("iommu_core:pasid_free", "core", { pasid });
}

/** The members a PASID attach programs: those with PASID support. */
function pasidDevices(s: CoreState, group: IommuGroup): Set<Device> {
  return new Set(group.devices.map((g) => g.dev).filter((d) => s.devIommu(d).maxPasids > 0));
}

/** `iommu_remove_dev_pasid`: attach the driver's blocked domain to the PASID (WARN on failure). */
function iommuRemoveDevPasid(s: CoreState, dev: Device, pasid: number, domain: IommuDomain): void {
  const blocked = s.devIommuOps(dev).blockedDomain!;
  const r = blocked.ops!.setDevPasid!(blocked, dev, pasid, domain);
  s.warnOn(!r.ok, "iommu_remove_dev_pasid", `blocking PASID ${pasid} of ${dev.name} failed`);
}

/**
 * `__iommu_set_group_pasid`: program `domain` at `pasid` on every device with PASID support;
 * on failure revert the devices already done to `old` (or block them when there is no old).
 */
function iommuSetGroupPasid(
  s: CoreState,
  domain: IommuDomain,
  group: IommuGroup,
  pasid: number,
  old: IommuDomain | null,
): Result {
  const set = domain.ops!.setDevPasid!;
  let failedAt = -1;
  let ret: Result = OK;
  for (let i = 0; i < group.devices.length; i++) {
    const dev = group.devices[i]!.dev;
    if (s.devIommu(dev).maxPasids > 0) {
      ret = set.call(domain.ops, domain, dev, pasid, old);
      if (!ret.ok) {
        failedAt = i;
        break;
      }
    }
  }
  if (failedAt < 0) return OK;
  for (let i = 0; i < failedAt; i++) {
    const dev = group.devices[i]!.dev;
    if (s.devIommu(dev).maxPasids === 0) continue;
    // Failing to re-attach a previously good domain is a driver bug: block the PASID then.
    if (old === null) {
      iommuRemoveDevPasid(s, dev, pasid, domain);
    } else {
      const back = old.ops!.setDevPasid!(old, dev, pasid, domain);
      if (
        s.warnOn(
          !back.ok,
          "__iommu_set_group_pasid",
          `rollback of PASID ${pasid} on ${dev.name} failed`,
        )
      ) {
        iommuRemoveDevPasid(s, dev, pasid, domain);
      }
    }
  }
  return ret;
}

/** `iommu_attach_device_pasid` (core §5.6). */
export function iommuAttachDevicePasid(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  handle: IommuAttachHandle | null,
): Result {
  const r = attachDevicePasid(s, domain, dev, pasid, handle);
  return tracePasidAttach(s, "iommu_core:attach_device_pasid", domain, dev, pasid, r);
}

/** The tracepoint of an attach or replace at a PASID, with its result; returns the result. */
function tracePasidAttach(
  s: CoreState,
  event: "iommu_core:attach_device_pasid" | "iommu_core:replace_device_pasid",
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  r: Result,
): Result {
  s.ctx.trace.emit(event, dev.name, {
    device: dev.name,
    pasid,
    domain: domain.id,
    result: formatResult(r),
  });
  return r;
}

function attachDevicePasid(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  handle: IommuAttachHandle | null,
): Result {
  domain.assertLive("iommu_attach_device_pasid");
  const group = s.groupOf(dev);
  if (group === null) return err("ENODEV");
  const ops = s.devIommuOps(dev);
  if (!domain.ops?.setDevPasid || !ops.blockedDomain?.ops?.setDevPasid) {
    return err("EOPNOTSUPP");
  }
  if (!domainIommuOpsCompatible(ops, domain) || pasid === IOMMU_NO_PASID) return err("EINVAL");
  // v6.15+: devices without PASID support (max_pasids == 0) are skipped.
  for (const gdev of group.devices) {
    const max = s.devIommu(gdev.dev).maxPasids;
    if (max > 0 && pasid >= max) return err("EINVAL");
  }
  const entry = makePasidArrayEntry(domain, handle);
  // An entry already present is a failure: insert a reservation.
  if (!group.pasidArray.reserve(pasid)) return err("EBUSY");
  const r = iommuSetGroupPasid(s, domain, group, pasid, null);
  if (!r.ok) {
    group.pasidArray.release(pasid);
    return r;
  }
  // The new domain becomes visible only once every device is programmed.
  group.pasidArray.store(pasid, entry);
  group.pasidProgrammed.set(pasid, pasidDevices(s, group));
  return OK;
}

/** `iommu_replace_device_pasid` (core §5.7, iommufd-internal). */
export function iommuReplaceDevicePasid(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  handle: IommuAttachHandle | null,
): Result {
  const r = replaceDevicePasid(s, domain, dev, pasid, handle);
  return tracePasidAttach(s, "iommu_core:replace_device_pasid", domain, dev, pasid, r);
}

function replaceDevicePasid(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  handle: IommuAttachHandle | null,
): Result {
  domain.assertLive("iommu_replace_device_pasid");
  const group = s.groupOf(dev);
  if (group === null) return err("ENODEV");
  if (!domain.ops?.setDevPasid) return err("EOPNOTSUPP");
  if (
    !domainIommuOpsCompatible(s.devIommuOps(dev), domain) ||
    pasid === IOMMU_NO_PASID ||
    handle === null
  ) {
    return err("EINVAL");
  }
  const entry = makePasidArrayEntry(domain, handle);
  const curr = group.pasidArray.load(pasid);
  // No domain (with or without handle) attached: not a replace.
  if (curr === undefined) return err("EINVAL");
  // Reusing the handle is forbidden: paths read it without the lock.
  if (curr.kind === "handle" && curr.handle === handle) {
    s.warnOn(true, "iommu_replace_device_pasid", "attach handle reused");
    return err("EINVAL");
  }
  const currDomain = pasidArrayEntryToDomain(curr);
  if (currDomain !== domain) {
    const r = iommuSetGroupPasid(s, domain, group, pasid, currDomain);
    if (!r.ok) return r;
    group.pasidProgrammed.set(pasid, pasidDevices(s, group));
  }
  group.pasidArray.store(pasid, entry);
  return OK;
}

/** `iommu_detach_device_pasid` (core §5.8): block the PASID on every PASID device, erase. */
export function iommuDetachDevicePasid(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  pasid: number,
): void {
  const group = s.groupOf(dev);
  if (group === null) {
    throw new SimError(`iommu_detach_device_pasid(${dev.name}): no group (kernel NULL deref)`);
  }
  for (const gdev of group.devices) {
    if (s.devIommu(gdev.dev).maxPasids > 0) iommuRemoveDevPasid(s, gdev.dev, pasid, domain);
  }
  group.pasidArray.erase(pasid);
  group.pasidProgrammed.delete(pasid);
  s.ctx.trace.emit("iommu_core:detach_device_pasid", dev.name, {
    device: dev.name,
    pasid,
    domain: domain.id,
  });
}

/**
 * `iommu_attach_handle_get` (seed 001): ENOENT when the slot is empty or holds a domain-tagged
 * entry, EBUSY when `type` is given and the handle's domain has another type.
 */
export function iommuAttachHandleGet(
  group: IommuGroup,
  pasid: number,
  type: number,
): Result<IommuAttachHandle> {
  const entry = group.pasidArray.load(pasid);
  if (entry === undefined || entry.kind !== "handle") return err("ENOENT");
  if (type && entry.handle.domain!.type !== type) return err("EBUSY");
  return ok(entry.handle);
}
