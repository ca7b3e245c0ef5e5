// Shared Virtual Addressing (drivers/iommu/iommu-sva.c, core §6, v6.16 semantics): binding a
// process address space to a device at the mm's one system-wide PASID, bonds found again through
// the group's attach handles (seed 001), SVA domains shared by the devices of one IOMMU instance,
// the mm's PASID freed only at its final mmdrop, and the SVA I/O page fault handler, which
// resolves each request through the mm on the IOPF queue's work queue.
//
// Also the historical supervisor bind (seed 003, §6.8; removed in v6.2): `IOMMU_SVA_BIND_SUPERVISOR`
// binds the kernel address space (`init_mm` of the mm subsystem, mm/init-mm.ts) through a driver
// op that accepts privileged requests. Kernel mappings get no IOTLB flush: vunmap's
// flush_tlb_kernel_range reaches the CPUs only, never an mmu notifier, so nothing tells the
// IOMMU when the kernel unmaps.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { err, formatResult, ok, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import {
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  VM_EXEC,
  VM_FAULT_ERROR,
  VM_READ,
  VM_WRITE,
} from "../mm/flags.js";
import { mmput } from "../mm/fork.js";
import { initMm } from "../mm/init-mm.js";
import { handleMmFault } from "../mm/memory.js";
import { mmgetNotZero, mmgrab } from "../mm/mm-refs.js";
import type { MmStruct } from "../mm/mm-types.js";
import { IOMMU_DOMAIN_SVA, IOMMU_PASID_INVALID } from "./constants.js";
import { IommuAttachHandle, type IommuDomain, type IopfGroup } from "./domain.js";
import {
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFault,
  type IommuPageResponseCode,
} from "./fault.js";
import { iopfFreeGroup, iopfGroupQueueWork, iopfGroupResponse } from "./io-pgfault.js";
import {
  iommuAllocGlobalPasid,
  iommuAttachDevicePasid,
  iommuAttachHandleGet,
  iommuDetachDevicePasid,
  iommuFreeGlobalPasid,
} from "./pasid.js";
import type { CoreState } from "./state.js";

/** Historical `iommu_sva_bind_device` flag (2021 proposal, seed 003): bind the kernel's mm. */
export const IOMMU_SVA_BIND_SUPERVISOR = 1 << 0;

/** `struct iommu_mm_data` (`mm->iommu_mm`): the mm's PASID and its SVA domains. */
export class IommuMmData {
  /** SVA domains of the mm, newest first; one per IOMMU instance it is bound through. */
  readonly svaDomains: IommuDomain[] = [];

  constructor(readonly pasid: number) {}

  toJSON(): Json {
    return { pasid: this.pasid, sva_domains: this.svaDomains.map((d) => d.id) };
  }
}

/** `struct iommu_sva`: the bond of one (device, mm), embedding the attach handle. */
export class IommuSva extends IommuAttachHandle {
  /** The bound device, set when the bind succeeds. */
  dev: Device | null = null;
  /** Unbalanced binds of this (device, mm) (§1.10 #7); 0 once the bond is released. */
  users = 0;

  override toJSON(): Json {
    return {
      label: this.label,
      domain: this.domain?.id ?? null,
      dev: this.dev?.name ?? null,
      users: this.users,
      mm: this.domain?.mm?.id ?? null,
      pasid: this.domain === null ? null : iommuSvaGetPasid(this),
    };
  }
}

/** `mm->iommu_mm` as the core's data, or null. */
export function iommuMmOf(mm: MmStruct): IommuMmData | null {
  const d = mm.iommuMm;
  if (d === null) return null;
  if (!(d instanceof IommuMmData)) throw new SimError(`mm ${mm.id}: iommu_mm is foreign`);
  return d;
}

/**
 * `&init_mm`: the kernel address space of the installed mm subsystem (created on first use when
 * `create`), or null without one.
 */
export function svaInitMm(s: CoreState, create: boolean): MmStruct | null {
  const sys = s.sva.mmSys;
  if (sys === null) return null;
  return create ? initMm(sys) : sys.kernelMm;
}

/**
 * `iommu_alloc_mm_data`: the mm's PASID data, created on first bind with a PASID from the global
 * allocator (ENOSPC when none is left); EBUSY when the architecture forbids DMA on the mm's
 * tables; EOVERFLOW when the mm's PASID is beyond what `dev` can send.
 */
function iommuAllocMmData(s: CoreState, mm: MmStruct, dev: Device): Result<IommuMmData> {
  if (!s.sva.archPgtableDmaCompat(mm)) return err("EBUSY");
  const existing = iommuMmOf(mm);
  if (existing !== null) {
    if (existing.pasid >= s.devIommu(dev).maxPasids) return err("EOVERFLOW");
    return ok(existing);
  }
  const pasid = iommuAllocGlobalPasid(s, dev);
  if (pasid === IOMMU_PASID_INVALID) return err("ENOSPC");
  const data = new IommuMmData(pasid);
  mm.iommuMm = data;
  s.sva.mms.add(mm);
  // mm_pasid_drop runs in __mmdrop, not at exit: the PASID lives as long as the mm structure.
  mm.onFinalDrop((m) => mmPasidDrop(s, m));
  return ok(data);
}

/** `mm_pasid_drop` (at the mm's final mmdrop): the PASID returns to the global allocator. */
function mmPasidDrop(s: CoreState, mm: MmStruct): void {
  const data = iommuMmOf(mm);
  if (data === null) return;
  iommuFreeGlobalPasid(s, data.pasid);
  mm.iommuMm = null;
  s.sva.mms.delete(mm);
}

/**
 * `iommu_sva_bind_device(dev, mm)` (core §6.2), plus the historical `flags` argument:
 * `IOMMU_SVA_BIND_SUPERVISOR` binds the kernel's `init_mm` (then `mm` must be null: EINVAL) and
 * needs the driver's supervisor SVA op (EOPNOTSUPP).
 */
export function iommuSvaBindDevice(
  s: CoreState,
  dev: Device,
  mm: MmStruct | null,
  flags: number,
): Result<IommuSva> {
  const r = svaBindDevice(s, dev, mm, flags);
  const bound = r.ok ? r.value.domain!.mm! : (mm ?? svaInitMm(s, false));
  s.ctx.trace.emit("iommu_core:sva_bind", dev.name, {
    device: dev.name,
    mm: bound?.id ?? -1,
    pasid: bound === null ? IOMMU_PASID_INVALID : (iommuMmOf(bound)?.pasid ?? IOMMU_PASID_INVALID),
    result: formatResult(r),
  });
  return r;
}

function svaBindDevice(
  s: CoreState,
  dev: Device,
  mmArg: MmStruct | null,
  flags: number,
): Result<IommuSva> {
  if ((flags & ~IOMMU_SVA_BIND_SUPERVISOR) !== 0) {
    throw new SimError(`iommu_sva_bind_device: unknown flags 0x${flags.toString(16)}`);
  }
  const supervisor = flags !== 0;
  const group = s.groupOf(dev);
  if (group === null) return err("ENODEV");
  let mm: MmStruct;
  if (supervisor) {
    // Historical Intel behaviour: the capability first, then "no user mm with this flag".
    if (!s.devIommuOps(dev).domainAllocSvaSupervisor) {
      s.log("err", dev, "Supervisor PASID not supported");
      return err("EOPNOTSUPP");
    }
    if (mmArg !== null) {
      s.log("err", dev, "Supervisor PASID with user provided mm");
      return err("EINVAL");
    }
    const kernel = svaInitMm(s, true);
    if (kernel === null) {
      throw new SimError(
        "IOMMU_SVA_BIND_SUPERVISOR: the core has no init_mm (install the mm subsystem: setMmSubsystem)",
      );
    }
    mm = kernel;
  } else {
    if (mmArg === null) throw new SimError("iommu_sva_bind_device: mm is NULL");
    mm = mmArg;
  }
  if (mm.users <= 0) throw new SimError(`iommu_sva_bind_device: mm ${mm.id} has no users`);

  const made = iommuAllocMmData(s, mm, dev);
  if (!made.ok) return made;
  const data = made.value;

  // A bond of this (device, mm) already exists: one more reference to the same bond.
  const h = iommuAttachHandleGet(group, data.pasid, IOMMU_DOMAIN_SVA);
  if (h.ok) {
    const bond = asBond(h.value);
    if (bond.domain!.mm !== mm) return err("EBUSY");
    bond.users++;
    return ok(bond);
  }
  // A handle of another domain type holds the PASID. (A domain-tagged entry reads as ENOENT:
  // the attaches below then fail with EBUSY.)
  if (h.errno !== "ENOENT") return h;

  const bond = new IommuSva(`sva:${dev.name}:mm${mm.id}`);
  // Reuse a domain of this mm that the device's IOMMU accepts; refusals (another instance or
  // driver: EINVAL) just move on.
  for (const domain of data.svaDomains) {
    if (iommuAttachDevicePasid(s, domain, dev, data.pasid, bond).ok) {
      domain.users++;
      return bound(bond, dev);
    }
  }
  const alloc = iommuSvaDomainAlloc(s, dev, mm, supervisor);
  if (!alloc.ok) return alloc;
  const domain = alloc.value;
  const r = iommuAttachDevicePasid(s, domain, dev, data.pasid, bond);
  if (!r.ok) {
    s.domainFree(domain);
    return r;
  }
  domain.users = 1;
  data.svaDomains.unshift(domain);
  return bound(bond, dev);
}

function bound(bond: IommuSva, dev: Device): Result<IommuSva> {
  bond.users = 1;
  bond.dev = dev;
  return ok(bond);
}

function asBond(h: IommuAttachHandle): IommuSva {
  if (!(h instanceof IommuSva)) {
    throw new SimError(`SVA domain attached with a handle that is not an iommu_sva (${h.label})`);
  }
  return h;
}

/**
 * `iommu_sva_domain_alloc`: the driver's SVA domain for `mm` (EOPNOTSUPP without the op), made
 * an SVA domain holding an mmgrab on `mm`, with the SVA fault handler.
 */
function iommuSvaDomainAlloc(
  s: CoreState,
  dev: Device,
  mm: MmStruct,
  supervisor: boolean,
): Result<IommuDomain> {
  const ops = s.devIommuOps(dev);
  const alloc = supervisor ? ops.domainAllocSvaSupervisor : ops.domainAllocSva;
  if (!alloc) return err("EOPNOTSUPP");
  const r = alloc.call(ops, dev, mm);
  if (!r.ok) return r;
  const domain = r.value;
  domain.type = IOMMU_DOMAIN_SVA;
  domain.cookieType = "SVA";
  mmgrab(mm);
  domain.mm = mm;
  domain.owner = ops;
  domain.iopfHandler = (group) => iommuSvaIopfHandler(s, group);
  s.trackDomain(domain);
  s.ctx.trace.emit("iommu_core:domain_alloc", "core", {
    domain: domain.id,
    type: "SVA",
    device: dev.name,
  });
  return ok(domain);
}

/**
 * `iommu_sva_unbind_device(handle)` (core §6.3): one reference less; the last one detaches the
 * PASID and, when no device uses the domain any more, frees it (dropping its mm reference).
 * The PASID stays with the mm.
 */
export function iommuSvaUnbindDevice(s: CoreState, bond: IommuSva): void {
  if (bond.users <= 0 || bond.dev === null || bond.domain === null) {
    throw new SimError(`iommu_sva_unbind_device: bond ${bond.label} is not bound`);
  }
  const domain = bond.domain;
  const dev = bond.dev;
  const mm = domain.mm!;
  const data = iommuMmOf(mm)!;
  if (--bond.users > 0) return;
  iommuDetachDevicePasid(s, domain, dev, data.pasid);
  if (--domain.users === 0) {
    data.svaDomains.splice(data.svaDomains.indexOf(domain), 1);
    s.domainFree(domain);
  }
  s.ctx.trace.emit("iommu_core:sva_unbind", dev.name, {
    device: dev.name,
    mm: mm.id,
    pasid: data.pasid,
  });
}

/** `iommu_sva_get_pasid(handle)`: the mm's PASID, or IOMMU_PASID_INVALID without one. */
export function iommuSvaGetPasid(bond: IommuSva): number {
  const mm = bond.domain?.mm ?? null;
  return mm === null ? IOMMU_PASID_INVALID : (iommuMmOf(mm)?.pasid ?? IOMMU_PASID_INVALID);
}

/** `iommu_sva_iopf_handler`: the group's work goes on the IOPF queue (EBUSY if already queued). */
function iommuSvaIopfHandler(s: CoreState, group: IopfGroup): Result {
  const queued = iopfGroupQueueWork(s, group, `iommu_sva_handle_iopf ${group.dev.name}`, () =>
    iommuSvaHandleIopf(s, group),
  );
  return queued ? ok(undefined) : err("EBUSY");
}

/**
 * The work (`iommu_sva_handle_iopf`): each request of the group in order through the mm, stopping
 * at the first that is not SUCCESS (errors are sticky), then one response and the group freed.
 */
function iommuSvaHandleIopf(s: CoreState, group: IopfGroup): void {
  // iopf_queue_remove_device freed the group under its queued work: a kernel use-after-free.
  if (s.warnOn(group.freed, "iommu_sva_handle_iopf", `fault work of freed group ${group.id}`)) {
    return;
  }
  const domain = group.attachHandle.domain;
  let status: IommuPageResponseCode = IOMMU_PAGE_RESP_SUCCESS;
  if (domain === null || domain.freed || domain.mm === null) {
    // Core §7.5: the domain must outlive its queued faults (flush before free). The kernel
    // would read freed memory here; the model answers INVALID.
    s.warnOn(true, "iommu_sva_handle_iopf", `fault work of group ${group.id} after its domain`);
    status = IOMMU_PAGE_RESP_INVALID;
  } else {
    for (const fault of group.faults) {
      if (status !== IOMMU_PAGE_RESP_SUCCESS) break;
      status = iommuSvaHandleMm(fault, domain.mm);
    }
  }
  iopfGroupResponse(s, group, status);
  iopfFreeGroup(s, group);
}

/** `iommu_sva_handle_mm`: one request resolved as a remote fault of the bound mm. */
function iommuSvaHandleMm(fault: IommuFault, mm: MmStruct): IommuPageResponseCode {
  const prm = fault.prm;
  if ((prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) === 0) return IOMMU_PAGE_RESP_INVALID;
  // The process may have exited with the device still bound.
  if (!mmgetNotZero(mm)) return IOMMU_PAGE_RESP_INVALID;
  let status: IommuPageResponseCode = IOMMU_PAGE_RESP_INVALID;
  const vma = mm.vmaLookup(prm.addr);
  if (vma !== null) {
    let access = 0;
    let faultFlags = FAULT_FLAG_REMOTE;
    if (prm.perm & IOMMU_FAULT_PERM_READ) access |= VM_READ;
    if (prm.perm & IOMMU_FAULT_PERM_WRITE) {
      access |= VM_WRITE;
      faultFlags |= FAULT_FLAG_WRITE;
    }
    if (prm.perm & IOMMU_FAULT_PERM_EXEC) {
      access |= VM_EXEC;
      faultFlags |= FAULT_FLAG_INSTRUCTION;
    }
    if ((prm.perm & IOMMU_FAULT_PERM_PRIV) === 0) faultFlags |= FAULT_FLAG_USER;
    if ((access & ~vma.flags) === 0) {
      const ret = handleMmFault(vma, prm.addr, faultFlags, null);
      status = ret & VM_FAULT_ERROR ? IOMMU_PAGE_RESP_INVALID : IOMMU_PAGE_RESP_SUCCESS;
    }
  }
  mmput(mm);
  return status;
}
