// iommufd's device path (drivers/iommu/iommufd/device.c, hw_pagetable.c, ioas.c, v6.16,
// reduced): a context (/dev/iommu), devices bound to it, IOAS objects holding user mappings, and
// the automatic paging HWPTs that carry an IOAS into the IOMMU.
//
//   bind    (iommufd_device_bind): EINVAL without IOMMU_CAP_CACHE_COHERENCY, ENODEV without a
//           group, then `iommu_device_claim_dma_owner(dev, ictx)` — devices of one group may all
//           be bound to the same context (owner_cnt counts them); another owner → EPERM;
//   attach  (iommufd_device_attach, IOMMU_NO_PASID, pt = an IOAS): an existing automatic HWPT of
//           the IOAS is tried first (EINVAL = incompatible, try the next); else a new one:
//           `iommu_paging_domain_alloc_flags(dev, 0)`, attached with `iommu_attach_group_handle`
//           (the first device of the group attaches the group), then filled with the IOAS's
//           mappings (iopt_table_add_domain). All devices of a group share one HWPT (EINVAL);
//   detach  (iommufd_device_detach): the last device of the group detaches it
//           (`iommu_detach_group_handle`: back to the blocking domain), an unused automatic HWPT
//           is destroyed (unmapped, `iommu_domain_free`);
//   unbind  (iommufd_device_unbind): `iommu_device_release_dma_owner(dev)`;
//   IOAS map/unmap: IOMMU_IOAS_MAP with a fixed IOVA (iopt_check_iova's EINVAL/EOVERFLOW/EEXIST,
//           EINVAL without READABLE or WRITEABLE), IOMMU_IOAS_UNMAP (ENOENT unless the range
//           covers whole mappings and at least one).
// Reserved IOVA ranges of attached devices are refused for new mappings (EINVAL); an attach whose
// reserved ranges hit an existing mapping (the kernel's EADDRINUSE) is not modelled.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, OK, ok, type Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import { IOMMU_RESV } from "../../bus/firmware.js";
import { IOMMU_CACHE, IOMMU_CAP, IOMMU_READ, IOMMU_WRITE } from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import { IommuAttachHandle, type IommuDomain } from "../../iommu/domain.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { Process } from "../../mm/process.js";
import { traceVfioDma, UserDmaSpace } from "./user-dma.js";

/** `enum iommufd_ioas_map_flags`. */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

const U64_LIMIT = 1n << 64n;

/** `struct iommufd_hwpt_paging` of an IOAS (automatic domains only). */
export class IommufdHwpt {
  /** Groups attached through this HWPT. */
  readonly groups: IommufdGroup[] = [];

  constructor(
    readonly id: number,
    readonly ioas: IommufdIoas,
    readonly domain: IommuDomain,
  ) {}
}

/** `struct iommufd_ioas`. */
export class IommufdIoas {
  readonly space: UserDmaSpace;
  readonly hwpts: IommufdHwpt[] = [];

  constructor(
    readonly id: number,
    core: IommuCore,
  ) {
    this.space = new UserDmaSpace(core);
  }
}

/** `struct iommufd_group`: the context's view of an IOMMU group. */
export class IommufdGroup {
  hwpt: IommufdHwpt | null = null;
  /** Bound devices of the group attached to `hwpt`. */
  readonly attached: IommufdDevice[] = [];
  /** The handle the group is attached with (slot 0 of its pasid_array). */
  readonly handle = new IommuAttachHandle("iommufd");

  constructor(readonly group: IommuGroup) {}
}

/** `struct iommufd_device`. */
export class IommufdDevice {
  bound = true;

  constructor(
    readonly ictx: IommufdCtx,
    readonly dev: Device,
    readonly igroup: IommufdGroup,
  ) {}

  /** iommufd_device_attach(idev, IOMMU_NO_PASID, ioas). */
  attach(ioas: IommufdIoas): Result {
    return this.ictx.deviceAttach(this, ioas);
  }

  /** iommufd_device_detach(idev, IOMMU_NO_PASID). */
  detach(): void {
    this.ictx.deviceDetach(this);
  }

  /** iommufd_device_unbind. */
  unbind(): void {
    this.ictx.deviceUnbind(this);
  }

  get hwpt(): IommufdHwpt | null {
    return this.igroup.attached.includes(this) ? this.igroup.hwpt : null;
  }
}

/** `struct iommufd_ctx`: also the DMA-owner cookie of its devices. */
export class IommufdCtx {
  readonly name: string;
  readonly devices: IommufdDevice[] = [];
  readonly ioases: IommufdIoas[] = [];
  readonly #groups = new Map<IommuGroup, IommufdGroup>();
  #nextId = 1;

  constructor(
    readonly core: IommuCore,
    name = "iommufd",
  ) {
    this.name = name;
  }

  /** `iommufd_device_bind`. */
  bind(dev: Device): Result<IommufdDevice> {
    const core = this.core;
    // iommufd always maps with IOMMU_CACHE: it offers no way to restore coherency.
    if (!core.deviceIommuCapable(dev, IOMMU_CAP.CACHE_COHERENCY)) return err("EINVAL");
    const group = core.groupOf(dev);
    if (group === null) return err("ENODEV");
    if (this.devices.some((d) => d.dev === dev)) {
      throw new SimError(`${dev.name} is already bound to ${this.name}`);
    }
    const claim = core.deviceClaimDmaOwner(dev, this);
    if (!claim.ok) return claim;
    let igroup = this.#groups.get(group);
    if (igroup === undefined) {
      igroup = new IommufdGroup(group);
      this.#groups.set(group, igroup);
    }
    const idev = new IommufdDevice(this, dev, igroup);
    this.devices.push(idev);
    return ok(idev);
  }

  /** IOMMU_IOAS_ALLOC. */
  ioasAlloc(): IommufdIoas {
    const ioas = new IommufdIoas(this.#nextId++, this.core);
    this.ioases.push(ioas);
    return ioas;
  }

  /** IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA: `task`'s [vaddr, +length) at `iova`. */
  ioasMap(
    ioas: IommufdIoas,
    task: Process,
    vaddr: bigint,
    iova: bigint,
    length: bigint,
    flags: number,
  ): Result {
    const r = this.#ioasMap(ioas, task, vaddr, iova, length, flags);
    traceVfioDma(this.core, this.name, "map", iova, length, vaddr, r);
    return r;
  }

  /** IOMMU_IOAS_UNMAP → bytes unmapped. */
  ioasUnmap(ioas: IommufdIoas, iova: bigint, length: bigint): Result<bigint> {
    const r = this.#ioasUnmap(ioas, iova, length);
    traceVfioDma(this.core, this.name, "unmap", iova, length, null, r);
    return r;
  }

  /** @internal IommufdDevice.attach. */
  deviceAttach(idev: IommufdDevice, ioas: IommufdIoas): Result {
    this.#checkBound(idev);
    if (!this.ioases.includes(ioas)) throw new SimError(`IOAS ${ioas.id} is not of ${this.name}`);
    const igroup = idev.igroup;
    if (igroup.attached.includes(idev)) return err("EINVAL");
    // All devices of a group share the group's HWPT.
    if (igroup.hwpt !== null) {
      if (igroup.hwpt.ioas !== ioas) return err("EINVAL");
      igroup.attached.push(idev);
      return OK;
    }
    for (const hwpt of ioas.hwpts) {
      const r = this.#attachGroup(igroup, hwpt);
      if (r.ok) {
        igroup.attached.push(idev);
        return OK;
      }
      if (r.errno !== "EINVAL") return r;
    }
    // A new automatic HWPT: allocate, attach (immediate_attach), then fill from the IOAS.
    const alloc = this.core.pagingDomainAllocFlags(idev.dev, 0);
    if (!alloc.ok) return alloc;
    const hwpt = new IommufdHwpt(this.#nextId++, ioas, alloc.value);
    const attached = this.#attachGroup(igroup, hwpt);
    if (!attached.ok) {
      this.core.domainFree(hwpt.domain);
      return attached;
    }
    const filled = ioas.space.addDomain(hwpt.domain);
    if (!filled.ok) {
      this.#detachGroup(igroup);
      this.core.domainFree(hwpt.domain);
      return filled;
    }
    ioas.hwpts.push(hwpt);
    igroup.attached.push(idev);
    return OK;
  }

  /** @internal IommufdDevice.detach. */
  deviceDetach(idev: IommufdDevice): void {
    const igroup = idev.igroup;
    const i = igroup.attached.indexOf(idev);
    if (i < 0) return;
    igroup.attached.splice(i, 1);
    if (igroup.attached.length > 0) return;
    const hwpt = igroup.hwpt!;
    this.#detachGroup(igroup);
    if (hwpt.groups.length === 0) {
      // An automatic HWPT nobody uses is destroyed: its domain emptied, then freed.
      hwpt.ioas.space.removeDomain(hwpt.domain);
      hwpt.ioas.hwpts.splice(hwpt.ioas.hwpts.indexOf(hwpt), 1);
      this.core.domainFree(hwpt.domain);
    }
  }

  /** @internal IommufdDevice.unbind. */
  deviceUnbind(idev: IommufdDevice): void {
    if (!idev.bound) return;
    // The kernel WARNs when a device is unbound attached; VFIO detaches first.
    this.deviceDetach(idev);
    this.core.deviceReleaseDmaOwner(idev.dev);
    idev.bound = false;
    this.devices.splice(this.devices.indexOf(idev), 1);
  }

  /** Closing /dev/iommu: devices detached and unbound, every IOAS emptied. */
  close(): void {
    for (const idev of [...this.devices]) this.deviceUnbind(idev);
    for (const ioas of this.ioases) ioas.space.removeAll();
    this.ioases.length = 0;
  }

  toJSON(): Json {
    return {
      name: this.name,
      devices: this.devices.map((d) => ({ device: d.dev.name, hwpt: d.hwpt?.id ?? null })),
      ioas: this.ioases.map((a) => ({
        id: a.id,
        hwpts: a.hwpts.map((h) => ({
          id: h.id,
          domain: h.domain.id,
          groups: h.groups.map((g) => g.group.id),
        })),
        ...(a.space.toJSON() as { [k: string]: Json }),
      })),
    };
  }

  #attachGroup(igroup: IommufdGroup, hwpt: IommufdHwpt): Result {
    const r = this.core.attachGroupHandle(hwpt.domain, igroup.group, igroup.handle);
    if (!r.ok) return r;
    igroup.hwpt = hwpt;
    hwpt.groups.push(igroup);
    return OK;
  }

  #detachGroup(igroup: IommufdGroup): void {
    const hwpt = igroup.hwpt!;
    this.core.detachGroupHandle(hwpt.domain, igroup.group);
    hwpt.groups.splice(hwpt.groups.indexOf(igroup), 1);
    igroup.hwpt = null;
  }

  #ioasMap(
    ioas: IommufdIoas,
    task: Process,
    vaddr: bigint,
    iova: bigint,
    length: bigint,
    flags: number,
  ): Result {
    const mm = task.mm;
    if (mm === null) throw new SimError(`pid ${task.pid} has exited`);
    if ((flags & IOMMU_IOAS_MAP_FIXED_IOVA) === 0) {
      throw new SimError("IOMMU_IOAS_MAP without a fixed IOVA is not modelled");
    }
    if ((vaddr & 0xfffn) !== 0n) throw new SimError("sub-page user pointers are not modelled");
    if (iova >= U64_LIMIT - 1n || length >= U64_LIMIT - 1n) return err("EOVERFLOW");
    if ((flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) === 0) return err("EINVAL");
    // iopt_check_iova: alignment, wrap, reserved ranges, existing mappings.
    if (((iova | length) & (this.#alignment(ioas) - 1n)) !== 0n || length === 0n) {
      return err("EINVAL");
    }
    const last = iova + length - 1n;
    if (last >= U64_LIMIT) return err("EOVERFLOW");
    if (this.#reserved(ioas, iova, last)) return err("EINVAL");
    if (ioas.space.overlapping(iova, last) !== null) return err("EEXIST");
    let prot = IOMMU_CACHE;
    if (flags & IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
    if (flags & IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
    const r = ioas.space.map(mm, vaddr, iova, length, prot);
    return r.ok ? OK : r;
  }

  #ioasUnmap(ioas: IommufdIoas, iova: bigint, length: bigint): Result<bigint> {
    if (iova >= U64_LIMIT || length >= U64_LIMIT || length === 0n) return err("EINVAL");
    const last = iova + length - 1n;
    if (last >= U64_LIMIT) return err("EOVERFLOW");
    const inside = ioas.space.areas.filter((a) => a.iova >= iova && a.iova + a.length - 1n <= last);
    // iopt_unmap_iova_range: a mapping cut by the range, or nothing at all, is ENOENT.
    const cut = ioas.space.areas.some(
      (a) => a.iova <= last && a.iova + a.length - 1n >= iova && !inside.includes(a),
    );
    if (cut || inside.length === 0) return err("ENOENT");
    let unmapped = 0n;
    for (const a of inside) {
      ioas.space.remove(a);
      unmapped += a.length;
    }
    return ok(unmapped);
  }

  /** `iopt->iova_alignment`: the largest smallest-page of the IOAS's domains, 4 KiB at least. */
  #alignment(ioas: IommufdIoas): bigint {
    let align = 4096n;
    for (const h of ioas.hwpts) {
      const b = h.domain.pgsizeBitmap;
      const min = b & -b;
      if (min > align) align = min;
    }
    return align;
  }

  /** The reserved ranges of attached devices, and what the domains' apertures exclude. */
  #reserved(ioas: IommufdIoas, iova: bigint, last: bigint): boolean {
    for (const h of ioas.hwpts) {
      const g = h.domain.geometry;
      if (g.forceAperture && (iova < g.apertureStart || last > g.apertureEnd)) return true;
      for (const ig of h.groups) {
        for (const r of this.core.getGroupResvRegions(ig.group)) {
          if (r.type === IOMMU_RESV.DIRECT_RELAXABLE || r.type === IOMMU_RESV.SW_MSI) continue;
          if (r.start <= last && r.start + r.length - 1n >= iova) return true;
        }
      }
    }
    return false;
  }

  #checkBound(idev: IommufdDevice): void {
    if (!idev.bound || idev.ictx !== this) throw new SimError(`${idev.dev.name} is not bound`);
  }
}
