// Setting a group's domain and the attach/detach API (core §3.3–§3.4).
//
// Every RID-domain change goes through `__iommu_group_set_domain_internal`: it calls the
// driver's `attach_dev` for each member in list order. Normally the first failure re-attaches
// the old domain to every device processed so far, the failing one included (must-succeed), and
// leaves `group.domain` unchanged; in MUST_SUCCEED mode (core transitions) it keeps going, parks failing devices on
// the blocking domain and still sets `group.domain`.

import { err, formatResult, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_DOMAIN_BLOCKED, IOMMU_NO_PASID } from "./constants.js";
import type { IommuAttachHandle, IommuDomain } from "./domain.js";
import type { IommuGroup, PasidArrayEntry } from "./group.js";
import type { IommuOps } from "./ops.js";
import type { CoreState } from "./state.js";

export const IOMMU_SET_DOMAIN_MUST_SUCCEED = 1 << 0;

/** `__iommu_attach_device`: the driver's `attach_dev`, then clear the deferral and trace. */
export function iommuAttachDeviceRaw(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  old: IommuDomain | null,
): Result {
  domain.assertLive("attach_dev");
  const attach = domain.ops?.attachDev;
  if (!attach) return err("ENODEV");
  const r = attach.call(domain.ops, domain, dev, old);
  if (!r.ok) return r;
  s.devIommu(dev).attachDeferred = false;
  s.ctx.trace.emit("iommu:attach_device_to_domain", dev.name, { device: dev.name });
  return OK;
}

/** `__iommu_device_set_domain`. */
export function iommuDeviceSetDomain(
  s: CoreState,
  group: IommuGroup,
  dev: Device,
  newDomain: IommuDomain,
  oldDomain: IommuDomain | null,
  flags: number,
): Result {
  const di = s.devIommu(dev);
  // A blocking domain lacks the firmware-required 1:1 mappings: this keeps such devices away
  // from VFIO and iommufd (core §3.3 step 1).
  if (
    di.requireDirect &&
    (newDomain.type === IOMMU_DOMAIN_BLOCKED || newDomain === group.blockingDomain)
  ) {
    s.log(
      "warn",
      dev,
      "Firmware has requested this device have a 1:1 IOMMU mapping, rejecting configuring the device without a 1:1 mapping. Contact your platform vendor.",
    );
    return err("EINVAL");
  }
  if (di.attachDeferred) {
    if (newDomain === group.defaultDomain) return OK;
    di.attachDeferred = false;
  }
  const r = iommuAttachDeviceRaw(s, newDomain, dev, oldDomain);
  if (!r.ok) {
    // Try the blocking domain in hopes of avoiding a use-after-free of the old domain.
    if (
      (flags & IOMMU_SET_DOMAIN_MUST_SUCCEED) !== 0 &&
      group.blockingDomain !== null &&
      group.blockingDomain !== newDomain
    ) {
      iommuAttachDeviceRaw(s, group.blockingDomain, dev, oldDomain);
    }
    return r;
  }
  return OK;
}

/** `__iommu_group_set_domain_internal`. */
export function iommuGroupSetDomainInternal(
  s: CoreState,
  group: IommuGroup,
  newDomain: IommuDomain | null,
  flags: number,
): Result {
  if (group.domain === newDomain) return OK;
  if (s.warnOn(newDomain === null, "__iommu_group_set_domain_internal", "NULL new domain")) {
    return err("EINVAL");
  }
  const nd = newDomain as IommuDomain;
  nd.assertLive("__iommu_group_set_domain_internal");
  let result: Result = OK;
  let failedAt = -1;
  for (let i = 0; i < group.devices.length; i++) {
    const r = iommuDeviceSetDomain(s, group, group.devices[i]!.dev, nd, group.domain, flags);
    if (!r.ok) {
      result = r;
      // Keep trying the other devices in MUST_SUCCEED mode.
      if ((flags & IOMMU_SET_DOMAIN_MUST_SUCCEED) !== 0) continue;
      failedAt = i;
      break;
    }
  }
  if (failedAt < 0) {
    group.domain = nd;
    traceSetDomain(s, group, nd, result);
    return result;
  }
  // err_revert: a well-behaved driver always re-accepts a domain that was attached. Every device
  // processed so far goes back, the failing one included (v6.16 breaks after it, not before).
  for (let i = 0; i <= failedAt; i++) {
    // A NULL group domain only happens on first probe: leave it for release to clean up.
    if (group.domain !== null) {
      const back = iommuDeviceSetDomain(
        s,
        group,
        group.devices[i]!.dev,
        group.domain,
        // The failing device never left the old domain (attach_dev failures keep it there).
        i === failedAt ? group.domain : nd,
        IOMMU_SET_DOMAIN_MUST_SUCCEED,
      );
      s.warnOn(
        !back.ok,
        "__iommu_group_set_domain_internal",
        `re-attaching domain ${group.domain.id} to ${group.devices[i]!.dev.name} failed`,
      );
    }
  }
  traceSetDomain(s, group, nd, result);
  return result;
}

function traceSetDomain(s: CoreState, group: IommuGroup, d: IommuDomain, r: Result): void {
  s.ctx.trace.emit("iommu_core:group_set_domain", `group${group.id}`, {
    gid: group.id,
    domain: d.id,
    result: formatResult(r),
  });
}

/** `__iommu_group_set_domain`: normal mode (rolls back on failure). */
export function iommuGroupSetDomain(s: CoreState, group: IommuGroup, d: IommuDomain): Result {
  return iommuGroupSetDomainInternal(s, group, d, 0);
}

/** `__iommu_group_set_domain_nofail`: MUST_SUCCEED, a failure WARNs. */
export function iommuGroupSetDomainNofail(
  s: CoreState,
  group: IommuGroup,
  d: IommuDomain | null,
): void {
  const r = iommuGroupSetDomainInternal(s, group, d, IOMMU_SET_DOMAIN_MUST_SUCCEED);
  s.warnOn(
    !r.ok,
    "__iommu_group_set_domain_nofail",
    `setting the core domain failed: ${formatResult(r)}`,
  );
}

/** `__iommu_group_set_core_domain`: blocking when owned, else the default domain. */
export function iommuGroupSetCoreDomain(s: CoreState, group: IommuGroup): void {
  iommuGroupSetDomainNofail(
    s,
    group,
    group.owner !== null ? group.blockingDomain : group.defaultDomain,
  );
}

/** `domain_iommu_ops_compatible`. */
export function domainIommuOpsCompatible(ops: IommuOps, domain: IommuDomain): boolean {
  if (domain.owner === ops) return true;
  // Static domains have no owner.
  return domain === ops.blockedDomain || domain === ops.identityDomain;
}

/** `__iommu_attach_group`. */
export function iommuAttachGroupLocked(
  s: CoreState,
  domain: IommuDomain,
  group: IommuGroup,
): Result {
  if (
    group.domain !== null &&
    group.domain !== group.defaultDomain &&
    group.domain !== group.blockingDomain
  ) {
    return err("EBUSY");
  }
  const dev = group.firstDev();
  if (!s.devHasIommu(dev) || !domainIommuOpsCompatible(s.devIommuOps(dev), domain)) {
    return err("EINVAL");
  }
  return iommuGroupSetDomain(s, group, domain);
}

/** `iommu_attach_device`: only for a group of exactly one device (else EINVAL). */
export function iommuAttachDevice(s: CoreState, domain: IommuDomain, dev: Device): Result {
  const group = s.groupOf(dev);
  if (group === null) return err("ENODEV");
  if (group.devices.length !== 1) return err("EINVAL");
  return iommuAttachGroupLocked(s, domain, group);
}

/** `iommu_detach_device`: back to the core domain; WARNs on a mismatch. */
export function iommuDetachDevice(s: CoreState, domain: IommuDomain, dev: Device): void {
  const group = s.groupOf(dev);
  if (group === null) return;
  if (
    s.warnOn(domain !== group.domain, "iommu_detach_device", "domain is not the group's domain")
  ) {
    return;
  }
  if (
    s.warnOn(group.devices.length !== 1, "iommu_detach_device", "group has more than one device")
  ) {
    return;
  }
  iommuGroupSetCoreDomain(s, group);
}

/** `iommu_detach_group`: the domain argument is ignored. */
export function iommuDetachGroup(s: CoreState, group: IommuGroup): void {
  iommuGroupSetCoreDomain(s, group);
}

/** `iommu_deferred_attach`. */
export function iommuDeferredAttach(s: CoreState, dev: Device, domain: IommuDomain): Result {
  if (dev.iommu === null || !dev.iommu.attachDeferred) return OK;
  return iommuAttachDeviceRaw(s, domain, dev, null);
}

/** `iommu_make_pasid_array_entry`: also sets `handle.domain`, as the kernel does. */
export function makePasidArrayEntry(
  domain: IommuDomain,
  handle: IommuAttachHandle | null,
): PasidArrayEntry {
  if (handle !== null) {
    handle.domain = domain;
    return { kind: "handle", handle };
  }
  return { kind: "domain", domain };
}

/** `iommu_attach_group_handle` (iommufd-internal). */
export function iommuAttachGroupHandle(
  s: CoreState,
  domain: IommuDomain,
  group: IommuGroup,
  handle: IommuAttachHandle | null,
): Result {
  if (handle === null) return err("EINVAL");
  const entry = makePasidArrayEntry(domain, handle);
  if (!group.pasidArray.reserve(IOMMU_NO_PASID)) return err("EBUSY");
  const r = iommuAttachGroupLocked(s, domain, group);
  if (!r.ok) {
    group.pasidArray.release(IOMMU_NO_PASID);
    return r;
  }
  group.pasidArray.store(IOMMU_NO_PASID, entry);
  return OK;
}

/** `iommu_detach_group_handle`. */
export function iommuDetachGroupHandle(s: CoreState, group: IommuGroup): void {
  iommuGroupSetCoreDomain(s, group);
  group.pasidArray.erase(IOMMU_NO_PASID);
}

/**
 * `iommu_replace_group_handle`: no EBUSY check, so it can switch directly between two non-core
 * domains; on failure only a fresh reservation is dropped (a stored handle stays).
 */
export function iommuReplaceGroupHandle(
  s: CoreState,
  group: IommuGroup,
  newDomain: IommuDomain | null,
  handle: IommuAttachHandle | null,
): Result {
  if (newDomain === null || handle === null) return err("EINVAL");
  const entry = makePasidArrayEntry(newDomain, handle);
  // xa_reserve succeeds on an occupied slot too.
  group.pasidArray.reserve(IOMMU_NO_PASID);
  const r = iommuGroupSetDomain(s, group, newDomain);
  if (!r.ok) {
    group.pasidArray.release(IOMMU_NO_PASID);
    return r;
  }
  group.pasidArray.store(IOMMU_NO_PASID, entry);
  return OK;
}
