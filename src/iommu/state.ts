// The global state of drivers/iommu/iommu.c for one machine (the kernel's file-scope statics:
// instance list, group IDA, global PASID IDA, default-domain policy) and the small helpers every
// part of the core shares: device → group / ops resolution, domain bookkeeping (ids, the one
// free path), warnings and kernel log lines.

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import { Ida } from "../base/ida.js";
import type { BusNotifier, BusType, DevIommu, Device } from "../bus/device.js";
import type { DeviceModel } from "../bus/driver-core.js";
import { mmdrop } from "../mm/mm-refs.js";
import type { MmStruct, MmSubsystem } from "../mm/mm-types.js";
import { domainTypeName, type IommuDomainType } from "./constants.js";
import { type DmaIommuHooks, defaultDmaIommuHooks } from "./dma-cookie.js";
import { type IommuDomain, IotlbGather, type MapOut } from "./domain.js";
import { IommuGroup } from "./group.js";
import { IopfState } from "./iopf-queue.js";
import type { IommuDevice, IommuOps } from "./ops.js";

/** Boot-time policy (`iommu_subsys_init`, Kconfig and command line). */
export interface CorePolicy {
  /** `iommu_def_domain_type`: IDENTITY, DMA or DMA_FQ. */
  defDomainType: IommuDomainType;
  /** `iommu_dma_strict`. */
  dmaStrict: boolean;
  /** `IOMMU_CMD_LINE_DMA_API`: the default type came from `iommu.passthrough=`. */
  cmdLineDmaApi: boolean;
  /** `IOMMU_CMD_LINE_STRICT`: strictness came from `iommu.strict=`. */
  cmdLineStrict: boolean;
  /** `CONFIG_IOMMU_DMA`: the DMA API can use IOMMU domains. */
  iommuDma: boolean;
}

/** The globals of iommu-sva.c and the architecture hooks SVA consults. */
export interface SvaGlobals {
  /**
   * `arch_pgtable_dma_compat(mm)`: whether a device may walk the mm's page tables (false e.g.
   * for x86 LAM). Default: always.
   */
  archPgtableDmaCompat: (mm: MmStruct) => boolean;
  /** The machine's CPU side: supervisor binds (seed 003) use its `init_mm`. */
  mmSys: MmSubsystem | null;
  /** Address spaces whose `iommu_mm` exists, in creation order (until their final mmdrop). */
  readonly mms: Set<MmStruct>;
}

/** A kernel log line the core printed (dev_err, pr_warn, …), kept for views and tests. */
export interface KernelLog {
  readonly level: "err" | "warn" | "info";
  readonly device: string | null;
  readonly message: string;
}

export class CoreState {
  /** `iommu_device_list`, registration order. */
  readonly iommus: IommuDevice[] = [];
  /** `iommu_group_ida`. */
  readonly groupIda = new Ida();
  /** Live groups by id. */
  readonly groups = new Map<number, IommuGroup>();
  /** `iommu_global_pasid_ida`. */
  readonly globalPasidIda = new Ida();
  /** Every domain the core has seen and not freed (static ones included), by id. */
  readonly domains = new Map<number, IommuDomain>();
  /** Domains that belong to a driver's ops (identity/blocked/release/default): never freed. */
  readonly staticDomains = new Set<IommuDomain>();
  /** Buses whose notifier chain carries the core (`iommu_buses` present on this machine). */
  readonly iommuBuses: BusType[] = [];
  /** Notifiers registered by `iommu_device_register_bus`, per instance. */
  readonly busNotifiers = new Map<IommuDevice, { bus: BusType; nb: BusNotifier }>();
  readonly logs: KernelLog[] = [];
  /** I/O page fault queues and groups (io-pgfault.c). */
  readonly iopf = new IopfState();
  readonly sva: SvaGlobals = {
    archPgtableDmaCompat: () => true,
    mmSys: null,
    mms: new Set(),
  };
  dma: DmaIommuHooks = defaultDmaIommuHooks;
  /** Preallocated out-parameters of the map/unmap path. */
  readonly mapOut: MapOut = { mappedPages: 0 };
  readonly gather = new IotlbGather();
  /** Second result of `iommu_pgsize` (how many pages of the chosen size). */
  pgsizeCount = 0;
  #lastUnmapPages = 0;
  #lastUnmapBytes = 0n;
  #nextDomainId = 0;

  constructor(
    readonly ctx: SimContext,
    readonly model: DeviceModel,
    readonly policy: CorePolicy,
  ) {}

  /**
   * `pages` 4 KiB pages as bytes. `iommu_unmap` returns the same size call after call: reusing
   * the last (immutable) bigint keeps that path allocation-free.
   */
  pagesToBytes(pages: number): bigint {
    if (pages !== this.#lastUnmapPages) {
      this.#lastUnmapPages = pages;
      this.#lastUnmapBytes = BigInt(pages) << 12n;
    }
    return this.#lastUnmapBytes;
  }

  /** Kernel `WARN_ON(cond)`: a machine warning when `cond` holds; returns `cond`. */
  warnOn(cond: boolean, site: string, message: string): boolean {
    return this.ctx.warnings.on(cond, site, message);
  }

  /** A kernel log line (not a WARN): kept in `logs`. */
  log(level: KernelLog["level"], dev: Device | null, message: string): void {
    const device = dev?.name ?? null;
    this.logs.push({ level, device, message });
    this.ctx.trace.emit("iommu_core:log", device ?? "core", { level, device, message });
  }

  /** `dev->iommu_group` as the core's group object (checked: it came from this core). */
  groupOf(dev: Device): IommuGroup | null {
    const g = dev.iommuGroup;
    if (g === null) return null;
    if (!(g instanceof IommuGroup) || this.groups.get(g.id) !== g) {
      throw new SimError(`device ${dev.name} has a foreign or released iommu group`);
    }
    return g;
  }

  /** `dev_has_iommu`: probed by an IOMMU driver (not merely in a VFIO-only group). */
  devHasIommu(dev: Device): boolean {
    return dev.iommu !== null && dev.iommu.iommuDev !== null;
  }

  /** `dev->iommu`, which the caller knows exists. */
  devIommu(dev: Device): DevIommu {
    if (dev.iommu === null) throw new SimError(`device ${dev.name} has no dev->iommu`);
    return dev.iommu;
  }

  /** `dev_iommu_ops`: the ops of the instance that claimed the device. */
  devIommuOps(dev: Device): IommuOps {
    const inst = this.devIommuDevice(dev);
    if (inst.ops === null) throw new SimError(`IOMMU ${inst.name} of ${dev.name} has no ops`);
    return inst.ops;
  }

  /** `dev->iommu->iommu_dev`. */
  devIommuDevice(dev: Device): IommuDevice {
    const inst = dev.iommu?.iommuDev ?? null;
    if (inst === null) throw new SimError(`device ${dev.name} is not probed by an IOMMU`);
    return inst as IommuDevice;
  }

  /** Gives a domain its id the first time the core sees it. */
  trackDomain(domain: IommuDomain): void {
    if (domain.id < 0) domain.id = this.#nextDomainId++;
    if (!domain.freed) this.domains.set(domain.id, domain);
  }

  /** Records the static domains of a driver's ops (they are shared and never freed). */
  trackStaticDomains(ops: IommuOps): void {
    for (const d of [ops.identityDomain, ops.blockedDomain, ops.releaseDomain, ops.defaultDomain]) {
      if (d) {
        this.staticDomains.add(d);
        this.trackDomain(d);
      }
    }
  }

  /** `iommu_domain_init`: common fields of a freshly allocated domain. */
  domainInit(domain: IommuDomain, type: IommuDomainType, ops: IommuOps, dev: Device): void {
    domain.type = type;
    domain.owner = ops;
    if (domain.ops === null) domain.ops = ops.defaultDomainOps;
    this.trackDomain(domain);
    this.ctx.trace.emit("iommu_core:domain_alloc", "core", {
      domain: domain.id,
      type: domainTypeName(type),
      device: dev.name,
    });
  }

  /**
   * `iommu_domain_free`: drops the live cookie, then the driver's `free`. Static domains run the
   * same path (their ops usually have no `free`) but stay usable.
   */
  domainFree(domain: IommuDomain): void {
    domain.assertLive("iommu_domain_free");
    switch (domain.cookieType) {
      case "DMA_IOVA":
        this.dma.putDmaCookie(domain);
        break;
      case "SVA":
        // The domain's mmgrab (iommu_sva_domain_alloc) goes; this may be the mm's final drop.
        if (domain.mm !== null) mmdrop(domain.mm);
        domain.cookieType = "NONE";
        break;
      default:
        break;
    }
    domain.ops?.free?.(domain);
    if (this.staticDomains.has(domain)) return;
    domain.freed = true;
    this.domains.delete(domain.id);
    this.ctx.trace.emit("iommu_core:domain_free", "core", {
      domain: domain.id,
      type: domainTypeName(domain.type),
    });
  }

  /** `iommu_group_alloc`: a new group with one reference and the lowest free id. */
  groupAlloc(): IommuGroup {
    const id = this.groupIda.alloc(0, 0x7fff_ffff);
    if (id < 0) throw new SimError("iommu group ids exhausted");
    const g = new IommuGroup(id);
    this.groups.set(id, g);
    return g;
  }

  /** `iommu_group_ref_get`. */
  groupRefGet(group: IommuGroup): IommuGroup {
    if (group.released) throw new SimError(`iommu group ${group.id} was released`);
    group.refs++;
    return group;
  }

  /** `iommu_group_put`: the last reference releases the group and its id. */
  groupPut(group: IommuGroup | null): void {
    if (group === null) return;
    if (group.released || group.refs <= 0) {
      throw new SimError(`iommu group ${group.id}: reference count underflow`);
    }
    if (--group.refs > 0) return;
    // iommu_group_release: domains are freed when the last device leaves, not here.
    this.warnOn(group.defaultDomain !== null, "iommu_group_release", "default_domain still set");
    this.warnOn(group.blockingDomain !== null, "iommu_group_release", "blocking_domain still set");
    group.released = true;
    this.groups.delete(group.id);
    this.groupIda.free(group.id);
  }
}
