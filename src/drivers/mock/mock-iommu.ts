// A mock IOMMU driver modelled on the kernel's iommufd selftest mock (drivers/iommu/iommufd/
// selftest.c, core §9.1): paging domains with a mapping store instead of page tables, a static
// blocked domain that is also the default domain, PASID-capable mock devices, the PASID-1024
// replace-failure quirk — and, for the simulator, a configurable shape (page sizes, aperture,
// PASID width, static/dynamic identity, def_domain_type, group strategy: one for every device,
// or by bus like real drivers) plus fault injection on every op, so every rollback path of the
// core can run.
//
// SVA and I/O page faults, like the selftest mock: `domain_alloc_sva` (domains tied to their
// instance), IOPF enabled on the device (`mock-iopfq`, refcounted) while a fault-capable domain
// is attached to its RID or one of its PASIDs, `TRIGGER_IOPF`-style fault injection, and every
// `page_response` recorded. Before a fault-capable PASID is removed the driver flushes the IOPF
// queue (core §7.5; the selftest mock, whose faults go to user space, has no need to). The
// historical supervisor SVA op can be configured in. It implements the same `IommuOps` a
// real driver does and records what it programmed (RID and PASID domains per device) so checks
// can compare the core's view with the "hardware".
//
// Deviation from the kernel mock: its smallest IO page is PAGE_SIZE/2; the simulator maps in
// 4 KiB pages, so MOCK_IO_PAGE_SIZE is 4 KiB here.

import type { Errno } from "../../base/errno.js";
import { SimError } from "../../base/errors.js";
import { Ida } from "../../base/ida.js";
import type { Json } from "../../base/json.js";
import { err, OK, ok, type Result } from "../../base/result.js";
import type { BusType } from "../../bus/device.js";
import { Device } from "../../bus/device.js";
import { FirmwareDescription, FwNode, type IommuResvRegion } from "../../bus/firmware.js";
import { devIsPci } from "../../bus/pci-dev.js";
import {
  IOMMU_CAP,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  type IommuCap,
  type IommuDomainType,
} from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import {
  IommuDomain,
  type IommuDomainOps,
  type IommuDomain as IommuDomainT,
  type IotlbGather,
  type MapOut,
} from "../../iommu/domain.js";
import {
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  type IommuFault,
  type IommuPageResponse,
  type IommuPageResponseCode,
} from "../../iommu/fault.js";
import type { IommuGroup } from "../../iommu/group.js";
import type { IopfQueue } from "../../iommu/iopf-queue.js";
import { IommuDevice, type IommuOps } from "../../iommu/ops.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { type MockCallInfo, MockFaultInjector, type MockOp } from "./fault-inject.js";
import { MockPagingDomain, MockSvaDomain } from "./mock-domain.js";

/** Mock device flags (`MOCK_FLAGS_DEVICE_*`, iommufd_test.h). */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
const MOCK_FLAGS_ALL =
  MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA | MOCK_FLAGS_DEVICE_PASID;

export const MOCK_PASID_WIDTH = 20;
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const MOCK_IO_PAGE_SIZE = 4096n;
export const MOCK_HUGE_PAGE_SIZE = 512n * MOCK_IO_PAGE_SIZE;

/** A device on the mock bus (`struct mock_dev`). */
export class MockDevice extends Device {
  constructor(
    name: string,
    bus: BusType,
    readonly flags: number,
    fw: FirmwareDescription,
  ) {
    super(name, bus, fw);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return { mock_flags: this.flags };
  }
}

type StaticChoice = "blocked" | "identity" | "none";

export interface MockIommuConfig {
  /** Driver name (`iommu_ops` identity in views). Default "mock". */
  readonly name?: string;
  /** Page sizes of paging domains. Default MOCK_IO_PAGE_SIZE. */
  readonly pgsizeBitmap?: bigint;
  /** Added to the page sizes for devices with MOCK_FLAGS_DEVICE_HUGE_IOVA. */
  readonly hugePageSize?: bigint;
  /** Paging-domain aperture, inclusive. Default [MOCK_APERTURE_START, MOCK_APERTURE_LAST]. */
  readonly aperture?: { readonly start: bigint; readonly last: bigint };
  /** `max_pasids` of each instance. Default 1 << MOCK_PASID_WIDTH. */
  readonly maxPasids?: number;
  /** A static blocked domain (`ops.blocked_domain`). Default true. */
  readonly staticBlocked?: boolean;
  /** A static identity domain (`ops.identity_domain`). Default false. */
  readonly staticIdentity?: boolean;
  /** Implement `domain_alloc_identity` (v6.16). Default false. */
  readonly allocIdentity?: boolean;
  /** Static `ops.default_domain`. Default "blocked", like the selftest mock. */
  readonly defaultDomain?: StaticChoice;
  /** Static `ops.release_domain`. Default "none". */
  readonly releaseDomain?: StaticChoice;
  /** `def_domain_type`: a constant or a per-device function; absent = no op. */
  readonly defDomainType?: IommuDomainType | ((dev: Device) => IommuDomainType);
  /**
   * `device_group` strategy. Default "generic". "bus" is what real drivers do (e.g.
   * riscv_iommu_device_group): `pci_device_group` for PCI devices, `generic_device_group` for
   * the others, so one instance can translate both kinds.
   */
  readonly deviceGroup?: "generic" | "single" | "pci" | "bus";
  /** Which paging allocators the driver implements. Default "flags". */
  readonly pagingOp?: "flags" | "paging" | "both" | "none";
  /** `capable()` answers (DIRTY_TRACKING is added per device unless NO_DIRTY). */
  readonly capabilities?: readonly IommuCap[];
  /** `probe_device` accepts only devices on this bus; null: any bus. Default "iommufd_mock". */
  readonly claimBus?: string | null;
  /** `is_attach_deferred`. */
  readonly attachDeferred?: boolean | ((dev: Device) => boolean);
  /** Reserved regions the driver adds to the firmware ones (e.g. an SW_MSI window). */
  readonly extraResvRegions?: readonly IommuResvRegion[];
  /** The selftest's PASID-1024 fake error (default true). */
  readonly pasid1024Quirk?: boolean;
  /** Runs inside `probe_finalize` (after the group's default domain set-up). */
  readonly onProbeFinalize?: (dev: Device) => void;
  /** Seed 002's vendor PASID range callback; absent = no op. */
  readonly pasidRange?: { readonly min: number; readonly max: number };
  /** Implement `domain_alloc_sva`. Default true. */
  readonly sva?: boolean;
  /** Implement the historical supervisor SVA op (seed 003). Default false. */
  readonly svaSupervisor?: boolean;
  /** Implement `page_response` (required for IOPF queues). Default true. */
  readonly pageResponse?: boolean;
  /** Allocate the `mock-iopfq` IOPF queue at init (without it IOPF enabling fails). Default true. */
  readonly iopfQueue?: boolean;
}

/** A page response the driver was asked to send (`page_response`). */
export interface MockPageResponse {
  readonly dev: string;
  readonly pasid: number;
  readonly grpid: number;
  readonly code: IommuPageResponseCode;
  /** The request's flags (whether it wanted the PASID back). */
  readonly flags: number;
}

/** `IOMMU_TEST_OP_TRIGGER_IOPF` arguments (plus `last`/`needsPasid` for partial groups). */
export interface MockTriggerIopf {
  readonly pasid: number;
  readonly grpid: number;
  readonly perm: number;
  readonly addr: bigint;
  /** LAST_PAGE (default true: the selftest only sends last requests). */
  readonly last?: boolean;
  readonly needsPasid?: boolean;
}

/** One mock IOMMU hardware instance. */
export class MockIommu extends IommuDevice {
  constructor(
    name: string,
    maxPasids: number,
    readonly driver: MockIommuDriver,
  ) {
    super(name, maxPasids);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return { mock: true };
  }
}

export class MockIommuDriver {
  readonly ops: IommuOps;
  readonly faults = new MockFaultInjector();
  readonly config: MockIommuConfig;
  readonly blockedDomain: IommuDomain | null;
  readonly identityDomain: IommuDomain | null;
  readonly instances: MockIommu[] = [];
  /** What the driver programmed for RID traffic, per device. */
  readonly #rid = new Map<Device, IommuDomainT>();
  /** What the driver programmed per (device, PASID); removal deletes. */
  readonly #pasids = new Map<Device, Map<number, IommuDomainT>>();
  /** Devices whose PASID-1024 fake error is armed. */
  readonly #pasid1024 = new Set<Device>();
  readonly #devIda = new Ida();
  /** Every op call, in order (`op dev [pasid] [domain]`), for tests that check the sequence. */
  readonly log: string[] = [];
  /** `mock_iommu_iopf_queue` ("mock-iopfq"), null when configured out. */
  readonly iopfQueue: IopfQueue | null;
  /** Every page response sent, in order. */
  readonly pageResponses: MockPageResponse[] = [];
  /** `mdev->iopf_refcount`: fault-capable domains attached per device (RID and PASIDs). */
  readonly #iopfRefs = new Map<Device, number>();
  #bus: BusType | null = null;
  readonly #domainOps: IommuDomainOps;
  readonly #svaOps: IommuDomainOps;

  constructor(
    readonly core: IommuCore,
    config: MockIommuConfig = {},
  ) {
    this.config = config;
    this.#domainOps = {
      attachDev: (d, dev, old) => this.#attachDev(d, dev, old),
      setDevPasid: (d, dev, pasid, old) => this.#setDevPasid(d, dev, pasid, old),
      mapPages: (d, iova, pa, shift, count, prot, out) =>
        this.#mapPages(d, iova, pa, shift, count, prot, out),
      unmapPages: (d, iova, shift, count, gather) =>
        this.#unmapPages(d, iova, shift, count, gather),
      iotlbSyncMap: (d, iova, n) => this.#iotlbSyncMap(d, iova, n),
      iotlbSync: (d, gather) => {
        this.log.push(
          gather.isEmpty()
            ? `iotlb_sync ${d.id} empty`
            : `iotlb_sync ${d.id} 0x${gather.start.toString(16)} 0x${gather.end.toString(16)}`,
        );
      },
      iovaToPhys: (d, iova) => (d instanceof MockPagingDomain ? d.lookup(iova) : 0n),
      free: (d) => {
        if (d instanceof MockPagingDomain) d.pfns.clear();
      },
    };
    const staticOps: IommuDomainOps = {
      attachDev: this.#domainOps.attachDev!,
      setDevPasid: this.#domainOps.setDevPasid!,
    };
    this.blockedDomain =
      (config.staticBlocked ?? true)
        ? new IommuDomain({ type: IOMMU_DOMAIN_BLOCKED, ops: staticOps })
        : null;
    this.identityDomain = config.staticIdentity
      ? new IommuDomain({ type: IOMMU_DOMAIN_IDENTITY, ops: staticOps })
      : null;
    this.#svaOps = {
      setDevPasid: this.#domainOps.setDevPasid!,
      free: () => {},
    };
    this.ops = this.#buildOps();
    this.iopfQueue = (config.iopfQueue ?? true) ? core.iopfQueueAlloc("mock-iopfq") : null;
  }

  #pick(choice: StaticChoice | undefined, dflt: StaticChoice): IommuDomain | undefined {
    const c = choice ?? dflt;
    if (c === "none") return undefined;
    const d = c === "blocked" ? this.blockedDomain : this.identityDomain;
    if (d === null) throw new SimError(`mock: ${c} domain requested but not configured`);
    return d;
  }

  #buildOps(): IommuOps {
    const c = this.config;
    const pagingOp = c.pagingOp ?? "flags";
    const ops: {
      -readonly [K in keyof IommuOps]: IommuOps[K];
    } = {
      name: c.name ?? "mock",
      defaultDomainOps: this.#domainOps,
      probeDevice: (dev) => this.#probeDevice(dev),
      releaseDevice: (dev) => this.#releaseDevice(dev),
      probeFinalize: (dev) => {
        this.log.push(`probe_finalize ${dev.name}`);
        c.onProbeFinalize?.(dev);
      },
      deviceGroup: (dev) => this.#deviceGroup(dev),
      capable: (dev, cap) => this.#capable(dev, cap),
      getResvRegions: (dev) => [...dev.fw.resvRegions(), ...(c.extraResvRegions ?? [])],
      userPasidTable: true,
    };
    // The selftest mock's page_response does nothing; this one records what it was asked.
    if (c.pageResponse ?? true) {
      ops.pageResponse = (dev, evt, msg) => this.#pageResponse(dev, evt, msg);
    }
    if (c.sva ?? true) ops.domainAllocSva = (dev, mm) => this.#allocSva(dev, mm, false);
    if (c.svaSupervisor) {
      ops.domainAllocSvaSupervisor = (dev, mm) => this.#allocSva(dev, mm, true);
    }
    if (this.blockedDomain) ops.blockedDomain = this.blockedDomain;
    if (this.identityDomain) ops.identityDomain = this.identityDomain;
    const def = this.#pick(c.defaultDomain, "blocked");
    if (def) ops.defaultDomain = def;
    const rel = this.#pick(c.releaseDomain, "none");
    if (rel) ops.releaseDomain = rel;
    if (pagingOp === "flags" || pagingOp === "both") {
      ops.domainAllocPagingFlags = (dev, flags, userData) =>
        this.#allocPaging(dev, flags, userData);
    }
    if (pagingOp === "paging" || pagingOp === "both") {
      ops.domainAllocPaging = (dev) => this.#allocPaging(dev, 0, null);
    }
    if (c.allocIdentity) ops.domainAllocIdentity = (dev) => this.#allocIdentity(dev);
    const ddt = c.defDomainType;
    if (ddt !== undefined) ops.defDomainType = typeof ddt === "function" ? ddt : () => ddt;
    const ad = c.attachDeferred;
    if (ad !== undefined) ops.isAttachDeferred = typeof ad === "function" ? ad : () => ad;
    if (c.pasidRange) {
      const range = c.pasidRange;
      ops.pasidRange = () => range;
    }
    return ops;
  }

  // ---------------------------------------------------------------- registration

  /**
   * Registers one instance against a private bus, selftest style (`iommu_device_register_bus`).
   * Devices are then created with `mockDevCreate`.
   */
  registerBus(bus: BusType, name = "iommufd_mock_iommu"): Result<MockIommu> {
    if (this.#bus !== null) throw new SimError("mock driver already registered against a bus");
    const inst = new MockIommu(name, this.config.maxPasids ?? 1 << MOCK_PASID_WIDTH, this);
    this.instances.push(inst);
    const r = this.core.deviceRegisterBus(inst, this.ops, bus);
    if (!r.ok) {
      this.instances.pop();
      return r;
    }
    this.#bus = bus;
    return ok(inst);
  }

  /**
   * Registers one instance the ordinary way (`iommu_device_register`), claiming devices whose
   * firmware `iommus` link points at `hwdev`'s node.
   */
  registerInstance(name: string, hwdev: Device | null, maxPasids?: number): Result<MockIommu> {
    const inst = new MockIommu(
      name,
      maxPasids ?? this.config.maxPasids ?? 1 << MOCK_PASID_WIDTH,
      this,
    );
    this.instances.push(inst);
    const r = this.core.deviceRegister(inst, this.ops, hwdev);
    if (!r.ok) {
      this.instances.splice(this.instances.indexOf(inst), 1);
      return r;
    }
    return ok(inst);
  }

  /** `iommu_device_unregister` (or `_bus`) of one instance. */
  unregister(inst: MockIommu): void {
    if (inst === this.instances[0] && this.#bus !== null) {
      this.core.deviceUnregisterBus(inst);
      this.#bus = null;
    } else {
      this.core.deviceUnregister(inst);
    }
    this.instances.splice(this.instances.indexOf(inst), 1);
  }

  /**
   * `mock_dev_create(dev_flags)`: a device on the private bus with `pasid-num-bits` 20 (PASID
   * flag) or 0 (so max_pasids = 1), added through `iommu_mock_device_add`.
   */
  mockDevCreate(flags = 0): Result<MockDevice> {
    if ((flags & ~MOCK_FLAGS_ALL) !== 0) return err("EINVAL");
    const bus = this.#bus;
    const inst = this.instances[0];
    if (bus === null || inst === undefined)
      throw new SimError("mock driver is not registered against a bus");
    const id = this.#devIda.alloc();
    const name = `iommufd_mock${id}`;
    const fw = new FirmwareDescription({
      node: new FwNode(name),
      properties: { "pasid-num-bits": flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0 },
    });
    const dev = new MockDevice(name, bus, flags, fw);
    const r = this.core.mockDeviceAdd(dev, inst);
    if (!r.ok) {
      this.#devIda.free(id);
      return r;
    }
    return ok(dev);
  }

  /**
   * `IOMMU_TEST_OP_TRIGGER_IOPF`: a page request (PASID_VALID iff `pasid` != 0, LAST_PAGE unless
   * `last` is false) reported with `iommu_report_device_fault`; the core's answer.
   */
  triggerIopf(dev: Device, t: MockTriggerIopf): Result {
    let flags = 0;
    if (t.pasid !== 0) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
    if (t.last ?? true) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
    if (t.needsPasid) flags |= IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
    const evt: IommuFault = {
      type: IOMMU_FAULT_PAGE_REQ,
      prm: {
        flags,
        pasid: t.pasid,
        grpid: t.grpid,
        perm: t.perm,
        addr: t.addr,
        privateData: [0n, 0n],
      },
    };
    this.log.push(`trigger_iopf ${dev.name} ${t.pasid} ${t.grpid}`);
    return this.core.reportDeviceFault(dev, evt);
  }

  /** `mdev->iopf_refcount` of `dev`. */
  iopfRefcount(dev: Device): number {
    return this.#iopfRefs.get(dev) ?? 0;
  }

  /** `mock_dev_destroy`: `device_unregister`. */
  mockDevDestroy(dev: MockDevice): void {
    this.core.s.model.deviceDel(dev);
    const id = Number(dev.name.slice("iommufd_mock".length));
    if (Number.isInteger(id)) this.#devIda.free(id);
  }

  // ---------------------------------------------------------------- programming state

  /** The domain the driver last programmed for `dev`'s RID traffic (undefined: never). */
  ridDomain(dev: Device): IommuDomainT | undefined {
    return this.#rid.get(dev);
  }

  /** The domain programmed at (`dev`, `pasid`), undefined when blocked / never set. */
  pasidDomain(dev: Device, pasid: number): IommuDomainT | undefined {
    return this.#pasids.get(dev)?.get(pasid);
  }

  /** PASIDs programmed with a non-blocked domain on `dev`, ascending. */
  programmedPasids(dev: Device): number[] {
    return [...(this.#pasids.get(dev)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** Devices the driver currently holds state for (probed and not released). */
  programmedDevices(): Device[] {
    const all = new Set<Device>([...this.#rid.keys(), ...this.#pasids.keys()]);
    return [...all];
  }

  toJSON(): Json {
    return {
      name: this.ops.name,
      instances: this.instances.map((i) => i.name),
      rid: [...this.#rid].map(([d, dom]) => ({ device: d.name, domain: dom.id })),
      pasids: [...this.#pasids].map(([d, m]) => ({
        device: d.name,
        pasids: [...m].map(([p, dom]) => ({ pasid: p, domain: dom.id })),
      })),
      faults: this.faults.toJSON(),
    };
  }

  // ---------------------------------------------------------------- ops

  #inject(op: MockOp, info: MockCallInfo): Errno | null {
    return this.faults.check(op, info)?.errno ?? null;
  }

  #probeDevice(dev: Device): Result<IommuDevice> {
    this.log.push(`probe_device ${dev.name}`);
    const e = this.#inject("probe_device", { dev });
    if (e) return err(e);
    const claim = this.config.claimBus === undefined ? "iommufd_mock" : this.config.claimBus;
    if (claim !== null && dev.bus.name !== claim) return err("ENODEV");
    const fwnode = dev.iommu?.fwspec?.iommuFwnode ?? null;
    const inst = this.instances.find((i) => i.fwnode === fwnode && i.registered);
    return inst ? ok(inst) : err("ENODEV");
  }

  #releaseDevice(dev: Device): void {
    this.log.push(`release_device ${dev.name}`);
    // PASIDs left attached at release keep no fault path open.
    if (this.#iopfRefs.has(dev) && this.iopfQueue !== null) {
      this.#iopfRefs.delete(dev);
      this.core.iopfQueueRemoveDevice(this.iopfQueue, dev);
    }
    this.#rid.delete(dev);
    this.#pasids.delete(dev);
    this.#pasid1024.delete(dev);
  }

  #deviceGroup(dev: Device): Result<IommuGroup> {
    const e = this.#inject("device_group", { dev });
    if (e) return err(e);
    switch (this.config.deviceGroup ?? "generic") {
      case "single":
        return this.core.genericSingleDeviceGroup(dev);
      case "pci":
        return this.core.pciDeviceGroup(dev);
      case "bus":
        return devIsPci(dev) ? this.core.pciDeviceGroup(dev) : this.core.genericDeviceGroup(dev);
      default:
        return this.core.genericDeviceGroup(dev);
    }
  }

  #capable(dev: Device, cap: IommuCap): boolean {
    if (cap === IOMMU_CAP.DIRTY_TRACKING) {
      return !(dev instanceof MockDevice && (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0);
    }
    return (this.config.capabilities ?? [IOMMU_CAP.CACHE_COHERENCY]).includes(cap);
  }

  #allocPaging(dev: Device, flags: number, userData: unknown): Result<IommuDomain> {
    const e = this.#inject("domain_alloc_paging", { dev }) ?? this.#inject("alloc", { dev });
    if (e) return err(e);
    const allowed =
      IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID;
    const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
    const noDirty = dev instanceof MockDevice && (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
    if (
      (flags & ~allowed) !== 0 ||
      (dirty && noDirty) ||
      (userData !== null && userData !== undefined)
    ) {
      return err("EOPNOTSUPP");
    }
    let pg = this.config.pgsizeBitmap ?? MOCK_IO_PAGE_SIZE;
    if (dev instanceof MockDevice && (dev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0) {
      pg |= this.config.hugePageSize ?? MOCK_HUGE_PAGE_SIZE;
    }
    const ap = this.config.aperture ?? { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST };
    return ok(
      new MockPagingDomain({
        pgsizeBitmap: pg,
        geometry: { apertureStart: ap.start, apertureEnd: ap.last, forceAperture: true },
        dirtyTracking: dirty,
        allocFlags: flags,
      }),
    );
  }

  #allocIdentity(dev: Device): Result<IommuDomain> {
    const e = this.#inject("domain_alloc_identity", { dev }) ?? this.#inject("alloc", { dev });
    if (e) return err(e);
    return ok(
      new IommuDomain({
        ops: { attachDev: this.#domainOps.attachDev!, setDevPasid: this.#domainOps.setDevPasid! },
      }),
    );
  }

  #attachDev(domain: IommuDomain, dev: Device, _old: IommuDomain | null): Result {
    this.log.push(`attach_dev ${dev.name} ${domain.id}`);
    const e = this.#inject("attach_dev", { dev, domain });
    if (e) return err(e);
    if (domain instanceof MockPagingDomain && domain.dirtyTracking) {
      if (dev instanceof MockDevice && (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0)
        return err("EINVAL");
    }
    const r = this.#enableIopf(dev, domain);
    if (!r.ok) return r;
    // Like the selftest's mdev->domain: the domain the device is really on, which a failed
    // must-succeed transition may have left different from what the core passes as old.
    this.#disableIopf(dev, this.#rid.get(dev) ?? null);
    this.#rid.set(dev, domain);
    return OK;
  }

  /** `mock_dev_enable_iopf`: the first fault-capable domain puts the device on the queue. */
  #enableIopf(dev: Device, domain: IommuDomain): Result {
    if (domain.iopfHandler === null) return OK;
    if (this.iopfQueue === null) return err("EINVAL");
    const n = this.#iopfRefs.get(dev) ?? 0;
    if (n === 0) {
      const r = this.core.iopfQueueAddDevice(this.iopfQueue, dev);
      if (!r.ok) return r;
    }
    this.#iopfRefs.set(dev, n + 1);
    return OK;
  }

  /** `mock_dev_disable_iopf`: the last one takes it off. */
  #disableIopf(dev: Device, domain: IommuDomain | null): void {
    if (domain === null || domain.iopfHandler === null || this.iopfQueue === null) return;
    const n = this.#iopfRefs.get(dev) ?? 0;
    if (n <= 0) return;
    if (n > 1) {
      this.#iopfRefs.set(dev, n - 1);
      return;
    }
    this.#iopfRefs.delete(dev);
    this.core.iopfQueueRemoveDevice(this.iopfQueue, dev);
  }

  #allocSva(dev: Device, _mm: MmStruct, supervisor: boolean): Result<IommuDomain> {
    const op = supervisor ? "domain_alloc_sva_supervisor" : "domain_alloc_sva";
    this.log.push(`${op} ${dev.name}`);
    const e = this.#inject("domain_alloc_sva", { dev }) ?? this.#inject("alloc", { dev });
    if (e) return err(e);
    const inst = dev.iommu?.iommuDev;
    if (!(inst instanceof MockIommu)) return err("ENODEV");
    return ok(new MockSvaDomain({ ops: this.#svaOps }, inst.name, supervisor));
  }

  #pageResponse(dev: Device, evt: IommuFault, msg: IommuPageResponse): void {
    this.log.push(`page_response ${dev.name} ${msg.pasid} ${msg.grpid} ${msg.code}`);
    this.pageResponses.push({
      dev: dev.name,
      pasid: msg.pasid,
      grpid: msg.grpid,
      code: msg.code,
      flags: evt.prm.flags,
    });
  }

  #setDevPasid(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): Result {
    this.log.push(`set_dev_pasid ${dev.name} ${pasid} ${domain.id} old=${old?.id ?? "null"}`);
    const e = this.#inject("set_dev_pasid", { dev, domain, pasid });
    if (e) return err(e);
    const blocked = domain.type === IOMMU_DOMAIN_BLOCKED;
    // An SVA domain belongs to its instance (its tables and tags are that hardware's).
    if (domain instanceof MockSvaDomain && domain.instance !== dev.iommu?.iommuDev?.name) {
      return err("EINVAL");
    }
    // The first non-blocked set at PASID 1024 arms a fake error for the next one, so the core's
    // replace rollback can be tested; a blocked set disarms it.
    if ((this.config.pasid1024Quirk ?? true) && pasid === 1024) {
      if (blocked) {
        this.#pasid1024.delete(dev);
      } else if (this.#pasid1024.has(dev)) {
        this.#pasid1024.delete(dev);
        return err("ENOMEM");
      } else {
        this.#pasid1024.add(dev);
      }
    }
    if (blocked && old?.iopfHandler != null && this.#iopfRefs.has(dev)) {
      // Core §7.5: faults of the PASID already queued are handled before it goes.
      this.core.iopfQueueFlushDev(dev);
    }
    const r = this.#enableIopf(dev, domain);
    if (!r.ok) return r;
    this.#disableIopf(dev, old);
    let m = this.#pasids.get(dev);
    if (blocked) {
      m?.delete(pasid);
      if (m?.size === 0) this.#pasids.delete(dev);
      return OK;
    }
    if (!m) {
      m = new Map();
      this.#pasids.set(dev, m);
    }
    m.set(pasid, domain);
    return OK;
  }

  #mapPages(
    domain: IommuDomain,
    iovaPfn: number,
    paddrPfn: number,
    pgshift: number,
    pgcount: number,
    prot: number,
    out: MapOut,
  ): Result {
    const d = toMock(domain);
    this.log.push(
      `map_pages ${domain.id} 0x${iovaPfn.toString(16)} 0x${paddrPfn.toString(16)} ${pgshift} ${pgcount}`,
    );
    const fired = this.faults.check("map_pages", { domain });
    const per = 2 ** (pgshift - 12);
    const total = per * pgcount;
    const limit = fired ? Math.min(fired.rule.partialPages ?? 0, total) : total;
    const huge = pgshift > (domain.pgShifts[0] ?? 12);
    for (let i = 0; i < limit; i++) {
      const old = d.pfns.get(iovaPfn + i);
      this.core.ctx.warnings.on(
        old !== undefined,
        "mock_domain_map_pages",
        `IOVA page 0x${(iovaPfn + i).toString(16)} already mapped`,
      );
      d.pfns.set(iovaPfn + i, {
        paddrPfn: paddrPfn + i,
        prot,
        start: i === 0,
        last: i === total - 1,
        huge,
      });
      out.mappedPages++;
    }
    return fired ? err(fired.errno) : OK;
  }

  #unmapPages(
    domain: IommuDomain,
    iovaPfn: number,
    pgshift: number,
    pgcount: number,
    _gather: IotlbGather,
  ): number {
    const d = toMock(domain);
    const total = 2 ** (pgshift - 12) * pgcount;
    // With one page size the core never splits a range by itself, so every unmap must start
    // and end where a map_pages call did (the selftest mock's START/LAST check).
    const check = domain.pgShifts.length === 1;
    let n = 0;
    for (; n < total; n++) {
      const pte = d.pfns.get(iovaPfn + n);
      if (!pte) break;
      if (check && n === 0) {
        this.core.ctx.warnings.on(
          !pte.start,
          "mock_domain_unmap_pages",
          "unmap starts inside a mapping",
        );
      }
      if (check && n === total - 1) {
        this.core.ctx.warnings.on(
          !pte.last,
          "mock_domain_unmap_pages",
          "unmap ends inside a mapping",
        );
      }
      d.pfns.delete(iovaPfn + n);
    }
    this.log.push(
      `unmap_pages ${domain.id} 0x${iovaPfn.toString(16)} ${pgshift} ${pgcount} -> ${n}`,
    );
    return n;
  }

  #iotlbSyncMap(domain: IommuDomain, iovaPfn: number, npages: number): Result {
    this.log.push(`iotlb_sync_map ${domain.id} 0x${iovaPfn.toString(16)} ${npages}`);
    const e = this.#inject("iotlb_sync_map", { domain });
    return e ? err(e) : OK;
  }
}

function toMock(domain: IommuDomain): MockPagingDomain {
  if (!(domain instanceof MockPagingDomain)) {
    throw new SimError(`domain ${domain.id} is not a mock paging domain`);
  }
  return domain;
}
