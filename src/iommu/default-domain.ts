// Default domains (core §2.4–§2.6): choosing the type for a group, allocating it through the
// group's own IOMMU instance, creating the firmware direct mappings, installing it, and changing
// it at run time through sysfs `iommu_groups/<id>/type`.

import { SimError } from "../base/errors.js";
import { err, OK, ok, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_RESV } from "../bus/firmware.js";
import { devIsPci } from "../bus/pci-dev.js";
import {
  IOMMU_SET_DOMAIN_MUST_SUCCEED,
  iommuGroupSetDomain,
  iommuGroupSetDomainInternal,
} from "./attach.js";
import {
  __IOMMU_DOMAIN_PAGING,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_PASID,
  type IommuDomainType,
  iommuDomainTypeStr,
} from "./constants.js";
import type { IommuDomain } from "./domain.js";
import type { IommuGroup } from "./group.js";
import { iommuIovaToPhys, iommuMap } from "./map.js";
import type { CoreState } from "./state.js";

/** `iommu_get_def_domain_type`: combine one device's driver preference with `curType`. */
function iommuGetDefDomainType(
  s: CoreState,
  group: IommuGroup,
  dev: Device,
  curType: IommuDomainType,
): IommuDomainType {
  const ops = s.devIommuOps(dev);
  let type: IommuDomainType;
  if (ops.defaultDomain) {
    // A driver with a static default domain always chooses it.
    type = ops.defaultDomain.type;
  } else if (ops.defDomainType) {
    type = ops.defDomainType(dev);
  } else {
    return curType;
  }
  if (!type || curType === type) return curType;
  if (!curType) return type;
  s.log(
    "err",
    dev,
    `IOMMU driver error, requesting conflicting def_domain_type, ${iommuDomainTypeStr(curType)} and ${iommuDomainTypeStr(type)}, for devices in group ${group.id}.`,
  );
  // Drivers may force IDENTITY or DMA; IDENTITY takes precedence.
  return type === IOMMU_DOMAIN_IDENTITY ? type : curType;
}

/**
 * `iommu_get_default_domain_type`: the type the group's devices require, `target` if it agrees,
 * 0 for "use the global default", or -1 when the requirements cannot be met.
 */
export function iommuGetDefaultDomainType(
  s: CoreState,
  group: IommuGroup,
  target: IommuDomainType,
): IommuDomainType {
  let driverType: IommuDomainType = 0;
  let untrusted: Device | null = null;
  for (const gdev of group.devices) {
    driverType = iommuGetDefDomainType(s, group, gdev.dev, driverType);
    if (devIsPci(gdev.dev) && gdev.dev.untrusted) untrusted = gdev.dev;
  }
  // Without CONFIG_IOMMU_DMA the DMA API cannot use a DMA domain at all.
  if (!s.policy.iommuDma) {
    if (
      s.warnOn(
        driverType === IOMMU_DOMAIN_DMA,
        "iommu_get_default_domain_type",
        "DMA domain without IOMMU_DMA",
      )
    ) {
      return -1;
    }
    if (!driverType) driverType = IOMMU_DOMAIN_IDENTITY;
  }
  if (untrusted !== null) {
    if (driverType && driverType !== IOMMU_DOMAIN_DMA) {
      s.log(
        "err",
        untrusted,
        `Device is not trusted, but driver is overriding group ${group.id} to ${iommuDomainTypeStr(driverType)}, refusing to probe.`,
      );
      return -1;
    }
    driverType = IOMMU_DOMAIN_DMA;
  }
  if (target) {
    if (driverType && target !== driverType) return -1;
    return target;
  }
  return driverType;
}

/** `__iommu_paging_domain_alloc_flags`: through the device's own instance (seed 000). */
export function iommuPagingDomainAllocFlagsTyped(
  s: CoreState,
  dev: Device,
  type: IommuDomainType,
  flags: number,
): Result<IommuDomain> {
  if (!s.devHasIommu(dev)) return err("ENODEV");
  const ops = s.devIommuOps(dev);
  let r: Result<IommuDomain> | null;
  if (ops.domainAllocPaging && !flags) r = ops.domainAllocPaging(dev);
  else if (ops.domainAllocPagingFlags) r = ops.domainAllocPagingFlags(dev, flags, null);
  else return err("EOPNOTSUPP");
  if (r === null) return err("ENOMEM");
  if (!r.ok) return r;
  s.domainInit(r.value, type, ops, dev);
  return r;
}

/** `__iommu_alloc_identity_domain`: the static identity domain, else `domain_alloc_identity`. */
export function iommuAllocIdentityDomain(s: CoreState, dev: Device): Result<IommuDomain> {
  const ops = s.devIommuOps(dev);
  if (ops.identityDomain) return ok(ops.identityDomain);
  if (!ops.domainAllocIdentity) return err("EOPNOTSUPP");
  const r = ops.domainAllocIdentity(dev);
  if (!r.ok) return r;
  s.domainInit(r.value, IOMMU_DOMAIN_IDENTITY, ops, dev);
  return r;
}

/** `__iommu_group_alloc_default_domain`: reuse a matching default, else allocate `req`. */
function allocDefaultOfType(
  s: CoreState,
  group: IommuGroup,
  req: IommuDomainType,
): Result<IommuDomain> {
  const dev = group.firstDev();
  if (group.defaultDomain !== null && group.defaultDomain.type === req) {
    return ok(group.defaultDomain);
  }
  if ((req & __IOMMU_DOMAIN_PAGING) !== 0) {
    // Assume the DMA API will use PASIDs: make the RID domain PASID compatible.
    const flags = s.devIommu(dev).maxPasids ? IOMMU_HWPT_ALLOC_PASID : 0;
    let r = iommuPagingDomainAllocFlagsTyped(s, dev, req, flags);
    if (!r.ok && r.errno === "EOPNOTSUPP") r = iommuPagingDomainAllocFlagsTyped(s, dev, req, 0);
    return r;
  }
  if (req === IOMMU_DOMAIN_IDENTITY) return iommuAllocIdentityDomain(s, dev);
  return err("EINVAL");
}

/** `iommu_group_alloc_default_domain`: `req` 0 means the global default, falling back to DMA. */
function iommuGroupAllocDefaultDomain(
  s: CoreState,
  group: IommuGroup,
  req: IommuDomainType,
): Result<IommuDomain> {
  const ops = s.devIommuOps(group.firstDev());
  // Legacy drivers' static default domain (IDENTITY/BLOCKED/PLATFORM): no negotiation.
  if (ops.defaultDomain) {
    if (req !== ops.defaultDomain.type) return err("EINVAL");
    return ok(ops.defaultDomain);
  }
  if (req) return allocDefaultOfType(s, group, req);
  const def = s.policy.defDomainType;
  const dom = allocDefaultOfType(s, group, def);
  if (dom.ok) return dom;
  // IDENTITY and DMA_FQ defaults fall back to DMA.
  if (def === IOMMU_DOMAIN_DMA) return err("EINVAL");
  const dma = allocDefaultOfType(s, group, IOMMU_DOMAIN_DMA);
  if (!dma.ok) return dma;
  s.log(
    "warn",
    null,
    `Failed to allocate default IOMMU domain of type ${def} for group ${group.name ?? group.id} - Falling back to IOMMU_DOMAIN_DMA`,
  );
  return dma;
}

/**
 * `iommu_create_device_direct_mappings`: identity-map the device's DIRECT and
 * DIRECT_RELAXABLE regions into a DMA-API domain (pages not already mapped, in runs); any
 * DIRECT region marks the device `require_direct` whatever the domain type.
 */
export function iommuCreateDeviceDirectMappings(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
): Result {
  const shift = domain.pgShifts[0];
  const pgSize = shift === undefined ? 0n : 1n << BigInt(shift);
  if (
    s.warnOn(
      domain.isDma() && pgSize === 0n,
      "iommu_create_device_direct_mappings",
      "DMA domain without page sizes",
    )
  ) {
    return err("EINVAL");
  }
  const regions = s.devIommuOps(dev).getResvRegions?.(dev) ?? [];
  for (const entry of regions) {
    if (entry.type === IOMMU_RESV.DIRECT) s.devIommu(dev).requireDirect = true;
    if (
      (entry.type !== IOMMU_RESV.DIRECT && entry.type !== IOMMU_RESV.DIRECT_RELAXABLE) ||
      !domain.isDma()
    ) {
      continue;
    }
    const start = alignUp(entry.start, pgSize);
    const end = alignUp(entry.start + entry.length, pgSize);
    let mapSize = 0n;
    for (let addr = start; addr <= end; addr += pgSize) {
      // iova_to_phys answers 0 both for "unmapped" and "mapped at 0": ask for address 1.
      if (addr !== end && iommuIovaToPhys(s, domain, addr === 0n ? 1n : addr) === 0n) {
        mapSize += pgSize;
        continue;
      }
      if (mapSize > 0n) {
        const r = iommuMap(s, domain, addr - mapSize, addr - mapSize, mapSize, entry.prot);
        if (!r.ok) return r;
        mapSize = 0n;
      }
    }
  }
  return OK;
}

function alignUp(x: bigint, a: bigint): bigint {
  return ((x + a - 1n) / a) * a;
}

/**
 * `iommu_setup_default_domain`: allocate (or re-type) the group's default domain and attach it.
 * First set-up (no current domain) must succeed; a run-time change rolls back on failure.
 */
export function iommuSetupDefaultDomain(
  s: CoreState,
  group: IommuGroup,
  target: IommuDomainType,
): Result {
  const oldDom = group.defaultDomain;
  const req = iommuGetDefaultDomainType(s, group, target);
  if (req < 0) return err("EINVAL");
  const alloc = iommuGroupAllocDefaultDomain(s, group, req);
  if (!alloc.ok) return alloc;
  const dom = alloc.value;
  if (group.defaultDomain === dom) return OK;

  if (dom.isDma()) {
    const c = s.dma.getDmaCookie(dom);
    if (!c.ok) {
      s.domainFree(dom);
      return c;
    }
  }

  // DIRECT regions must be mapped before their device attaches, for continuity with firmware.
  let directFailed = false;
  for (const gdev of group.devices) {
    if (!iommuCreateDeviceDirectMappings(s, dom, gdev.dev).ok) {
      directFailed = true;
      s.log(
        "warn",
        gdev.dev,
        "IOMMU driver was not able to establish FW requested direct mapping.",
      );
    }
  }

  // default_domain is set early for __iommu_device_set_domain.
  group.defaultDomain = dom;
  let ret: Result;
  if (group.domain === null) {
    // Drivers may not fail the first attach; recovery is releasing the device.
    ret = iommuGroupSetDomainInternal(s, group, dom, IOMMU_SET_DOMAIN_MUST_SUCCEED);
    if (s.warnOn(!ret.ok, "iommu_setup_default_domain", "first default domain attach failed")) {
      if (oldDom !== null) s.domainFree(oldDom);
      return ret;
    }
  } else {
    ret = iommuGroupSetDomain(s, group, dom);
    if (!ret.ok) {
      restoreDefault(s, group, oldDom, dom);
      return ret;
    }
  }

  // Some drivers refuse mappings before attach: retry them now.
  if (directFailed) {
    for (const gdev of group.devices) {
      ret = iommuCreateDeviceDirectMappings(s, dom, gdev.dev);
      if (!ret.ok) {
        if (oldDom !== null) {
          iommuGroupSetDomainInternal(s, group, oldDom, IOMMU_SET_DOMAIN_MUST_SUCCEED);
        }
        restoreDefault(s, group, oldDom, dom);
        return ret;
      }
    }
  }
  if (oldDom !== null) s.domainFree(oldDom);
  return ret;
}

/** err_restore_def_domain: only a type change (with an old default) restores. */
function restoreDefault(
  s: CoreState,
  group: IommuGroup,
  oldDom: IommuDomain | null,
  dom: IommuDomain,
): void {
  if (oldDom === null) return;
  s.domainFree(dom);
  group.defaultDomain = oldDom;
}

/** Capabilities of the writer of a sysfs file (`capable()`). */
export interface SysfsCaps {
  readonly sysAdmin: boolean;
  readonly sysRawio: boolean;
}

/** `sysfs_streq`: equal, ignoring one trailing newline on either side. */
function sysfsStreq(a: string, b: string): boolean {
  const strip = (x: string) => (x.endsWith("\n") ? x.slice(0, -1) : x);
  return strip(a) === strip(b);
}

/**
 * `iommu_group_store_type`: sysfs `iommu_groups/<id>/type` write. DMA → DMA-FQ flips in place
 * even with drivers bound; anything else needs an unowned, non-empty group (core §2.6).
 */
export function iommuGroupStoreType(
  s: CoreState,
  group: IommuGroup,
  buf: string,
  caps: SysfsCaps,
): Result {
  if (!caps.sysAdmin || !caps.sysRawio) return err("EACCES");
  if (group.defaultDomain === null) return err("EINVAL");
  let req: IommuDomainType;
  if (sysfsStreq(buf, "identity")) req = IOMMU_DOMAIN_IDENTITY;
  else if (sysfsStreq(buf, "DMA")) req = IOMMU_DOMAIN_DMA;
  else if (sysfsStreq(buf, "DMA-FQ")) req = IOMMU_DOMAIN_DMA_FQ;
  else if (sysfsStreq(buf, "auto")) req = 0;
  else return err("EINVAL");

  // A flush queue can come up without tearing the domain down.
  if (req === IOMMU_DOMAIN_DMA_FQ && group.defaultDomain.type === IOMMU_DOMAIN_DMA) {
    const r = s.dma.initFq(group.defaultDomain);
    if (!r.ok) return r;
    group.defaultDomain.type = IOMMU_DOMAIN_DMA_FQ;
    return OK;
  }
  // Otherwise the group must have devices and no driver bound / owner.
  if (group.devices.length === 0 || group.ownerCnt > 0) return err("EPERM");
  const r = iommuSetupDefaultDomain(s, group, req);
  if (!r.ok) return r;
  for (const gdev of group.devices) iommuSetupDmaOps(s, gdev.dev, group.defaultDomain);
  return OK;
}

/** `iommu_setup_dma_ops` for a device whose group has a default domain. */
export function iommuSetupDmaOps(s: CoreState, dev: Device, domain: IommuDomain | null): void {
  if (domain === null)
    throw new SimError(`iommu_setup_dma_ops(${dev.name}) without a default domain`);
  const ops = s.devIommuOps(dev);
  s.dma.setupDmaOps(dev, domain, (cap) => ops.capable?.(dev, cap as never) ?? false);
}
