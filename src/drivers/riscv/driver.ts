// The RISC-V IOMMU driver (drivers/iommu/riscv/iommu.c): one driver per IOMMU core, like the
// kernel module, with one `iommu_ops` shared by every instance and the static identity and
// blocking domains; instances are probed and registered one by one.
//
// A paging or SVA domain belongs to the instance it was allocated for (its PSCID, its table
// format): attaching it to a device of another instance is refused with EINVAL, the "domain
// incompatible" answer the core treats as soft (SVA binds then allocate a new domain).
//
// Deviations, by choice: `get_resv_regions` returns the firmware's regions (what drivers get
// from iommu_dma_get_resv_regions; the upstream RISC-V driver has no such op yet), and
// map_pages refuses with EEXIST to replace a live mapping (upstream overwrites it).

import { SimError } from "../../base/errors.js";
import { Ida } from "../../base/ida.js";
import { err, ok, type Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import { devIsPci } from "../../bus/pci-dev.js";
import { PageTable } from "../../hw/pgtable/page-table.js";
import { IOMMU_CAP, IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY } from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import { IommuDomain, type IommuDomainOps, type SvaMmLink } from "../../iommu/domain.js";
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_PAGE_RESP_INVALID,
  type IommuFault,
  type IommuPageResponse,
} from "../../iommu/fault.js";
import type { IommuOps } from "../../iommu/ops.js";
import { MmStruct } from "../../mm/mm-types.js";
import {
  attachRid,
  type PasidTarget,
  probeInfo,
  type RidTarget,
  RiscvIommuInfo,
  releaseInfo,
  setPasid,
} from "./context.js";
import { pagingGeometry, RiscvFirstStageDomain, RiscvPagingDomain } from "./domain.js";
import {
  handleFaultRecord,
  infoOf,
  type PendingPageRequest,
  pageRequestEvent,
  pageResponse,
  Ratelimit,
  sendPrgResponse,
} from "./fault.js";
import type { RiscvIommuDevice, RiscvIommuEvents } from "./iommu.js";
import { CAP_LO, DDTP_MODE, type PageRequestRecord } from "./iommu-bits.js";
import { RiscvSvaDomain } from "./sva.js";

const DRIVERS = new WeakMap<IommuCore, RiscvIommuDriver>();

export class RiscvIommuDriver {
  readonly core: IommuCore;
  readonly ops: IommuOps;
  readonly identityDomain: IommuDomain;
  readonly blockedDomain: IommuDomain;
  /** Instances probed by this driver, registered or not, in probe order. */
  readonly instances: RiscvIommuDevice[] = [];
  /**
   * Where page requests go: the core's `iommu_report_device_fault` (the default); while null,
   * they wait in `pageRequests` (driver-level tests).
   */
  reportDeviceFault: ((dev: Device, evt: IommuFault) => Result) | null;
  /** Page requests delivered to no IOPF entry point yet, oldest first. */
  readonly pageRequests: PendingPageRequest[] = [];
  /** Stop Markers seen (discarded). */
  stopMarkers = 0;
  /** `riscv_iommu_pscids`: one PSCID space for every instance of the driver. */
  readonly pscids = new Ida();
  readonly events: RiscvIommuEvents;
  readonly #limits = new Map<RiscvIommuDevice, Ratelimit>();
  readonly #pagingOps: IommuDomainOps;
  readonly #svaOps: IommuDomainOps;

  /** The driver of `core` (one per core, like a module), created on first use. */
  static of(core: IommuCore): RiscvIommuDriver {
    let d = DRIVERS.get(core);
    if (d === undefined) {
      d = new RiscvIommuDriver(core);
      DRIVERS.set(core, d);
    }
    return d;
  }

  private constructor(core: IommuCore) {
    this.core = core;
    this.reportDeviceFault = (dev, evt) => core.reportDeviceFault(dev, evt);
    this.#pagingOps = {
      attachDev: (d, dev) => this.#attachDomain(d, dev),
      setDevPasid: (d, dev, pasid) => this.#setDevPasid(d, dev, pasid),
      mapPages: (d, iova, pa, shift, count, prot, out) =>
        paging(d).mapPages(iova, pa, shift, count, prot, out),
      unmapPages: (d, iova, shift, count, gather) =>
        paging(d).unmapPages(iova, shift, count, gather),
      iotlbSync: (d, gather) => paging(d).iotlbSync(gather),
      flushIotlbAll: (d) => paging(d).flushIotlbAll(),
      iovaToPhys: (d, iova) => paging(d).iovaToPhys(iova),
      iovaToPhysPfn: (d, iovaPfn) => paging(d).iovaToPhysPfn(iovaPfn),
      free: (d) => paging(d).free(),
    };
    this.#svaOps = {
      setDevPasid: (d, dev, pasid) => this.#setDevPasid(d, dev, pasid),
      free: (d) => (d as RiscvSvaDomain).free(),
    };
    this.identityDomain = new IommuDomain({
      type: IOMMU_DOMAIN_IDENTITY,
      ops: {
        attachDev: (_d, dev) => this.#withInfo(dev, (info) => attachRid(info, "identity")),
        setDevPasid: (_d, dev, pasid) => this.#setDevPasid("identity", dev, pasid),
      },
    });
    this.blockedDomain = new IommuDomain({
      type: IOMMU_DOMAIN_BLOCKED,
      ops: {
        attachDev: (_d, dev) => this.#withInfo(dev, (info) => attachRid(info, "blocked")),
        setDevPasid: (_d, dev, pasid) =>
          this.#withInfo(dev, (info) => setPasid(info, pasid, "blocked")),
      },
    });
    this.ops = {
      name: "riscv-iommu",
      capable: (_dev, cap) => cap === IOMMU_CAP.CACHE_COHERENCY || cap === IOMMU_CAP.DEFERRED_FLUSH,
      domainAllocPaging: (dev) => this.#allocPaging(dev),
      domainAllocSva: (dev, mm) => this.#allocSva(dev, mm, false),
      // Historical supervisor SVA (seed 003): PC.ta.ENS lets privileged requests walk init_mm.
      domainAllocSvaSupervisor: (dev, mm) => this.#allocSva(dev, mm, true),
      probeDevice: (dev) => this.#probeDevice(dev),
      releaseDevice: (dev) => this.#releaseDevice(dev),
      deviceGroup: (dev) =>
        devIsPci(dev) ? this.core.pciDeviceGroup(dev) : this.core.genericDeviceGroup(dev),
      getResvRegions: (dev) => [...dev.fw.resvRegions()],
      pageResponse: (dev, evt, msg) => this.#pageResponse(dev, evt, msg),
      defaultDomainOps: this.#pagingOps,
      identityDomain: this.identityDomain,
      blockedDomain: this.blockedDomain,
      releaseDomain: this.blockedDomain,
    };
    this.events = {
      fault: (iommu, rec) =>
        handleFaultRecord(
          iommu,
          rec,
          { identity: this.identityDomain, blocked: this.blockedDomain },
          this.#limit(iommu),
        ),
      pageRequest: (iommu, rec) => this.#pageRequest(iommu, rec),
      pageRequestsLost: (iommu) => this.#discardPartial(iommu),
    };
  }

  // ---------------------------------------------------------------- instances

  /**
   * Brings `iommu` up and registers it with the core (riscv_iommu_init's tail:
   * iommu_device_register). On failure the hardware is turned off again.
   */
  register(iommu: RiscvIommuDevice, hwdev: Device | null): Result {
    if (!this.instances.includes(iommu)) this.instances.push(iommu);
    const r = iommu.init();
    if (!r.ok) return r;
    // iopf_queue_alloc(name) before devices are probed (they may enable PRI at once).
    if (iommu.priq !== null && iommu.iopfQueue === null) {
      iommu.iopfQueue = this.core.iopfQueueAlloc(iommu.name);
    }
    const reg = this.core.deviceRegister(iommu, this.ops, hwdev);
    if (!reg.ok) {
      iommu.log("err", "cannot register iommu interface");
      iommu.shutdown();
      return reg;
    }
    return r;
  }

  /** riscv_iommu_remove: unregister, then ddtp Off and the queues off. */
  remove(iommu: RiscvIommuDevice): void {
    if (iommu.registered) this.core.deviceUnregister(iommu);
    this.core.iopfQueueFree(iommu.iopfQueue);
    iommu.iopfQueue = null;
    iommu.shutdown();
    const i = this.instances.indexOf(iommu);
    if (i >= 0) this.instances.splice(i, 1);
  }

  /** The instance whose firmware node `dev`'s fwspec names. */
  #instanceOf(dev: Device): RiscvIommuDevice | null {
    const fwspec = dev.iommu?.fwspec ?? null;
    if (fwspec === null) return null;
    return this.instances.find((i) => i.registered && i.fwnode === fwspec.iommuFwnode) ?? null;
  }

  // ---------------------------------------------------------------- programming view

  /** The domain the driver programmed for `dev`'s RID traffic (undefined: not probed by it). */
  ridDomain(dev: Device): IommuDomain | undefined {
    const info = infoOf(dev);
    return info === null ? undefined : this.#domainOf(info.ridTarget);
  }

  /** The domain programmed at (`dev`, `pasid`) (undefined: none, i.e. blocked). */
  pasidDomain(dev: Device, pasid: number): IommuDomain | undefined {
    const t = infoOf(dev)?.pasids.get(pasid);
    return t === undefined ? undefined : this.#domainOf(t);
  }

  /** PASIDs programmed with a non-blocked domain, ascending. */
  programmedPasids(dev: Device): number[] {
    return [...(infoOf(dev)?.pasids.keys() ?? [])].sort((a, b) => a - b);
  }

  #domainOf(t: RidTarget | PasidTarget): IommuDomain {
    return t === "identity" ? this.identityDomain : t === "blocked" ? this.blockedDomain : t;
  }

  // ---------------------------------------------------------------- ops

  /** riscv_iommu_probe_device. */
  #probeDevice(dev: Device): Result<RiscvIommuDevice> {
    const iommu = this.#instanceOf(dev);
    if (iommu === null) return err("ENODEV");
    // A Bare-mode IOMMU passes everything through anyway.
    if (iommu.ddtMode <= DDTP_MODE.BARE) return err("ENODEV");
    // The device IDs are the fwspec's (of_iommu_xlate / IORT: the RID and its DMA aliases).
    const ids = dev.iommu!.fwspec!.ids;
    if (ids.length === 0) return err("ENODEV");
    const r = probeInfo(iommu, dev, [...ids]);
    if (!r.ok) return r;
    dev.iommu!.priv = r.value;
    return ok(iommu);
  }

  /** riscv_iommu_release_device (after the core attached the release domain). */
  #releaseDevice(dev: Device): void {
    const info = infoOf(dev);
    if (info === null) return;
    releaseInfo(info);
    dev.iommu!.priv = null;
  }

  #withInfo(dev: Device, fn: (info: RiscvIommuInfo) => Result): Result {
    const info = infoOf(dev);
    if (!(info instanceof RiscvIommuInfo)) return err("ENODEV");
    return fn(info);
  }

  /** attach_dev of a paging domain (riscv_iommu_attach_paging_domain). */
  #attachDomain(d: IommuDomain, dev: Device): Result {
    return this.#withInfo(dev, (info) => {
      const domain = firstStage(d);
      // Another instance's domain: its table format and PSCID belong to that IOMMU.
      if (domain.iommu !== info.iommu) return err("EINVAL");
      return attachRid(info, domain as RidTarget);
    });
  }

  /** set_dev_pasid of a paging, SVA or identity domain. */
  #setDevPasid(d: IommuDomain | "identity", dev: Device, pasid: number): Result {
    return this.#withInfo(dev, (info) => {
      if (info.iommu.maxPdtMode === 0 || !info.pasidEnabled) return err("EOPNOTSUPP");
      if (d === "identity") return setPasid(info, pasid, "identity");
      const domain = firstStage(d);
      if (domain.iommu !== info.iommu) return err("EINVAL");
      return setPasid(info, pasid, domain as PasidTarget);
    });
  }

  /** riscv_iommu_alloc_paging_domain. */
  #allocPaging(dev: Device): Result<IommuDomain> {
    const info = infoOf(dev);
    if (info === null) return err("ENODEV");
    const iommu = info.iommu;
    const mode = iommu.pagingMode;
    if (mode === null) {
      iommu.log("err", `${dev.name}: cannot find supported page table mode`);
      return err("ENODEV");
    }
    const pgtable = PageTable.create(iommu.memory, iommu.frames, mode, { reclaim: "keep" });
    if (pgtable === null) return err("ENOMEM");
    const pscid = iommu.allocPscid();
    if (pscid < 0) {
      pgtable.destroy();
      return err("ENOMEM");
    }
    const g = pagingGeometry(mode);
    return ok(
      new RiscvPagingDomain(iommu, pscid, pgtable, iommu.hasCap(CAP_LO.AMO_HWAD), {
        ops: this.#pagingOps,
        pgsizeBitmap: g.pgsizeBitmap,
        geometry: { apertureStart: 0n, apertureEnd: g.apertureEnd, forceAperture: true },
      }),
    );
  }

  /**
   * domain_alloc_sva: EOPNOTSUPP unless the IOMMU and the device do PASIDs and the IOMMU walks
   * the mm's page-table format; ENOMEM without a PSCID.
   */
  #allocSva(dev: Device, mm: SvaMmLink, supervisor: boolean): Result<IommuDomain> {
    if (!(mm instanceof MmStruct)) {
      throw new SimError(`domain_alloc_sva(${dev.name}): not an mm_struct of this simulator`);
    }
    const info = infoOf(dev);
    if (info === null) return err("ENODEV");
    const iommu = info.iommu;
    if (iommu.maxPdtMode === 0 || !info.pasidEnabled) return err("EOPNOTSUPP");
    if (!iommu.supportsFirstStage(mm.pgtable.mode)) return err("EOPNOTSUPP");
    const pscid = iommu.allocPscid();
    if (pscid < 0) return err("ENOMEM");
    return ok(new RiscvSvaDomain(iommu, pscid, mm, this.#svaOps, supervisor));
  }

  /** page_response: ATS.PRGR (+ IOFENCE.C) to the device. */
  #pageResponse(dev: Device, evt: IommuFault, msg: IommuPageResponse): void {
    const info = infoOf(dev);
    if (info === null) return;
    pageResponse(dev, info, evt, msg);
  }

  // ---------------------------------------------------------------- queue records

  #limit(iommu: RiscvIommuDevice): Ratelimit {
    let l = this.#limits.get(iommu);
    if (l === undefined) {
      l = new Ratelimit();
      this.#limits.set(iommu, l);
    }
    return l;
  }

  #pageRequest(iommu: RiscvIommuDevice, rec: PageRequestRecord): void {
    const dev = iommu.deviceOf(rec.did);
    const info = infoOf(dev);
    const evt = pageRequestEvent(rec, info?.prgResponseNeedsPasid ?? false);
    if (evt === null) {
      this.stopMarkers++;
      return;
    }
    if (dev === null || info === null) {
      // Nobody to handle it: a group's last request is answered at once.
      if (rec.last) {
        sendPrgResponse(iommu, dev, rec.did, rec.pid, false, rec.prgi, IOMMU_PAGE_RESP_INVALID);
      }
      return;
    }
    if (this.reportDeviceFault !== null) {
      this.reportDeviceFault(dev, evt);
      return;
    }
    this.pageRequests.push({ iommu: iommu.name, dev, fault: evt });
  }

  /** After a PQ overflow: requests of unfinished groups are stale (iopf_queue_discard_partial). */
  #discardPartial(iommu: RiscvIommuDevice): void {
    if (iommu.iopfQueue !== null) this.core.iopfQueueDiscardPartial(iommu.iopfQueue);
    for (let i = this.pageRequests.length - 1; i >= 0; i--) {
      const p = this.pageRequests[i]!;
      if (p.iommu === iommu.name && (p.fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) === 0)
        this.pageRequests.splice(i, 1);
    }
  }
}

function firstStage(d: IommuDomain): RiscvFirstStageDomain {
  if (!(d instanceof RiscvFirstStageDomain)) {
    throw new SimError(`domain ${d.id} is not a RISC-V IOMMU paging or SVA domain`);
  }
  return d;
}

function paging(d: IommuDomain): RiscvPagingDomain {
  if (!(d instanceof RiscvPagingDomain)) {
    throw new SimError(`domain ${d.id} is not a RISC-V IOMMU paging domain`);
  }
  return d;
}
