// `struct idxd_device` and `struct idxd_wq` (drivers/dma/idxd/device.c, init.c): what the driver
// learns from the capability registers, the device and WQ enable/disable sequences with their
// errnos, the PASID drain, and kernel DMA with PASID.
//
// Kernel DMA with PASID, the upstream way (core §6.8, idxd_enable_system_pasid in v6.16): the
// device's current domain (`iommu_get_domain_for_dev`, its DMA-API default domain) is attached at
// a global PASID (`iommu_alloc_global_pasid`, `iommu_attach_device_pasid(domain, dev, pasid,
// NULL)`), so descriptors the kernel submits with that PASID use the IOVAs `dma_map_single` hands
// out. Teardown detaches the PASID and frees it. The historical alternative (seed 003, removed in
// v6.2) bound `init_mm` with IOMMU_SVA_BIND_SUPERVISOR: descriptors then carry kernel virtual
// addresses and privileged requests; it is here only behind `supervisorSva`.
//
// The IOMMU driver, not idxd, turns on the function's PASID (at probe), ATS and PRI (when a
// translating, fault-capable domain is attached), as the Intel and RISC-V drivers do since
// IOMMU_DEV_FEAT_SVA went away (v6.16); idxd only reads the capabilities' state.

import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import { err, OK, ok, type Result } from "../../base/result.js";
import { XArray } from "../../base/xarray.js";
import { pciDisableDevice, pciEnableDevice } from "../../bus/pci.js";
import type { PciDev } from "../../bus/pci-dev.js";
import type { DmaCoherent } from "../../dma/coherent.js";
import type { DmaApi } from "../../dma/mapping.js";
import {
  CMDSTS_ACTIVE,
  CMDSTS_ERR,
  CR_SIZE,
  DSA_CMD,
  DSA_REG,
  DSA_STATE,
  DSA_WQCFG_SIZE,
  GENCAP_MAX_BATCH_SHIFT,
  GENCAP_MAX_XFER_SHIFT,
  WQCAP_HI_DEDICATED,
  WQCAP_HI_SHARED,
  WQCFG_BOF,
  WQCFG_MODE_DEDICATED,
  WQCFG_PASID_EN,
  WQCFG_PASID_SHIFT,
  WQCFG_PRIV,
} from "../../hw/endpoints/dsa-regs.js";
import type { PhysicalMemory } from "../../hw/memory.js";
import type { IoBridge } from "../../hw/pci/io-bridge.js";
import { IOMMU_PASID_INVALID } from "../../iommu/constants.js";
import type { IommuCore } from "../../iommu/core.js";
import type { IommuDomain } from "../../iommu/domain.js";
import { IOMMU_SVA_BIND_SUPERVISOR, type IommuSva } from "../../iommu/sva.js";
import { IDXD_PORTAL_LIMITED, IdxdRegs } from "./idxd-regs.js";

/** What the idxd driver reaches in the machine: the IOMMU core, the DMA API, memory, MMIO. */
export interface IdxdEnv {
  readonly core: IommuCore;
  readonly dma: DmaApi;
  readonly memory: PhysicalMemory;
  /** The root complexes' IO bridges: CPU MMIO to a function goes through its host's bridge. */
  readonly bridges: readonly IoBridge[];
}

export type IdxdWqType = "kernel" | "user";
export type IdxdWqMode = "dedicated" | "shared";

/** One WQ as the administrator configures it (accel-config writing the WQ's sysfs files). */
export interface IdxdWqConfig {
  readonly type: IdxdWqType;
  readonly mode: IdxdWqMode;
  /** WQ entries (the device's WQCAP.total_wq_size is shared by all WQs). */
  readonly size: number;
  /** `block_on_fault`: descriptors with BOF wait for page requests instead of failing. */
  readonly blockOnFault?: boolean;
  /**
   * `threshold` (shared WQs, 1..size): the entries the WQ takes through its limited portal, the
   * one idxd submits through and maps for user space. A shared WQ without one is refused.
   */
  readonly threshold?: number;
}

/** The default configuration: a dedicated WQ for the kernel, a shared WQ for user SVA. */
export const IDXD_DEFAULT_WQS: readonly IdxdWqConfig[] = [
  { type: "kernel", mode: "dedicated", size: 16 },
  { type: "user", mode: "shared", size: 16, threshold: 16, blockOnFault: true },
];

export interface IdxdOptions {
  /** The `sva` module parameter (default true): user SVA and kernel DMA with PASID. */
  readonly sva?: boolean;
  /** Historical supervisor SVA for kernel DMA (seed 003); default false. */
  readonly supervisorSva?: boolean;
  /** WQs configured and enabled at probe (default IDXD_DEFAULT_WQS). */
  readonly wqs?: readonly IdxdWqConfig[];
}

/** What a WQ knows of an open user context (`struct idxd_user_context` in `wq->upasid_xa`). */
export interface IdxdWqUser {
  readonly pasid: number;
  readonly pid: number;
  /** The device goes away under the open file: drain, unbind, forget (model choice). */
  revoke(): void;
  toJSON(): Json;
}

/** A kernel log line of the driver. */
export interface IdxdLog {
  readonly level: "err" | "warn" | "info";
  readonly message: string;
}

export class IdxdWq {
  type: IdxdWqType | "none" = "none";
  mode: IdxdWqMode = "dedicated";
  size = 0;
  /** WQCFG.wq_thresh of a shared WQ; 0 for a dedicated one. */
  threshold = 0;
  blockOnFault = false;
  enabled = false;
  /** Kernel WQ: one completion record per descriptor slot (`wq->compls`, dma_alloc_coherent). */
  compls: DmaCoherent | null = null;
  /** Kernel WQ: descriptor slots in use. */
  slots: Uint8Array = new Uint8Array(0);
  /** User WQ: open contexts by PASID (`wq->upasid_xa`), and all of them in open order. */
  readonly upasid = new XArray<IdxdWqUser>();
  readonly users: IdxdWqUser[] = [];

  constructor(
    readonly idxd: IdxdDevice,
    readonly id: number,
  ) {}

  /** `idxd_wq_refcount`. */
  get refcount(): number {
    return this.users.length;
  }

  /** Physical address of the WQ's submission portal: its limited one (`idxd_wq_map_portal`). */
  get portal(): bigint {
    return this.idxd.regs.portal(this.id, IDXD_PORTAL_LIMITED);
  }

  /** DMA address of completion record `slot` (kernel WQs). */
  complsAddr(slot: number): bigint {
    return this.compls!.dmaHandle + BigInt(slot * CR_SIZE);
  }

  toJSON(): Json {
    return {
      id: this.id,
      type: this.type,
      mode: this.mode,
      size: this.size,
      threshold: this.threshold,
      block_on_fault: this.blockOnFault,
      enabled: this.enabled,
      compls: this.compls === null ? null : jsonAddr(this.compls.dmaHandle),
      slots_in_use: this.slots.reduce((n, s) => n + s, 0),
      users: this.users.map((u) => u.toJSON()),
    };
  }
}

export class IdxdDevice {
  readonly ctx: SimContext;
  state: "disabled" | "enabled" = "disabled";
  /** IDXD_FLAG_PASID_ENABLED: kernel DMA with PASID is set up (`idxd->pasid`). */
  pasidEnabled = false;
  /** IDXD_FLAG_USER_PASID_ENABLED: user WQs bind process address spaces. */
  userPasidEnabled = false;
  /** The system PASID of kernel DMA, or IOMMU_PASID_INVALID. */
  pasid = IOMMU_PASID_INVALID;
  /** The domain attached at `pasid` (the DMA-API domain), or null. */
  pasidDomain: IommuDomain | null = null;
  /** Historical supervisor bond (seed 003), or null. */
  supervisorSva: IommuSva | null = null;
  maxWqs = 0;
  maxWqSize = 0;
  maxXferShift = 0;
  maxBatchShift = 0;
  sharedWqSupport = false;
  dedicatedWqSupport = false;
  readonly wqs: IdxdWq[] = [];
  readonly logs: IdxdLog[] = [];

  constructor(
    readonly env: IdxdEnv,
    readonly pdev: PciDev,
    readonly regs: IdxdRegs,
  ) {
    this.ctx = env.core.ctx;
  }

  get name(): string {
    return this.pdev.name;
  }

  log(level: IdxdLog["level"], message: string): void {
    this.logs.push({ level, message });
    this.ctx.trace.emit("driver:log", this.name, {
      driver: "idxd",
      level,
      device: this.name,
      message,
    });
  }

  /** `idxd_read_caps`. */
  readCaps(): void {
    const gencap = this.regs.readl(DSA_REG.GENCAP);
    this.maxXferShift = (gencap >>> GENCAP_MAX_XFER_SHIFT) & 0x1f;
    this.maxBatchShift = (gencap >>> GENCAP_MAX_BATCH_SHIFT) & 0xf;
    const wqcap = this.regs.readl(DSA_REG.WQCAP);
    const wqcapHi = this.regs.readl(DSA_REG.WQCAP + 4);
    this.maxWqSize = wqcap & 0xffff;
    this.maxWqs = (wqcap >>> 16) & 0xff;
    this.sharedWqSupport = (wqcapHi & WQCAP_HI_SHARED) !== 0;
    this.dedicatedWqSupport = (wqcapHi & WQCAP_HI_DEDICATED) !== 0;
    this.wqs.length = 0;
    for (let i = 0; i < this.maxWqs; i++) this.wqs.push(new IdxdWq(this, i));
  }

  /** `idxd_device_init_reset`: Reset Device, then wait for CMDSTS. */
  initReset(): Result {
    if ((this.regs.readl(DSA_REG.GENSTS) & 3) === DSA_STATE.halt) {
      this.log("warn", "Device is HALTED!");
      return err("ENXIO");
    }
    this.regs.exec(DSA_CMD.RESET_DEVICE);
    this.state = "disabled";
    return OK;
  }

  /** `idxd_device_enable`. */
  enable(): Result {
    if ((this.regs.readl(DSA_REG.GENSTS) & 3) === DSA_STATE.enabled) {
      this.log("info", "Device already enabled");
      return err("ENXIO");
    }
    const status = this.regs.exec(DSA_CMD.ENABLE_DEVICE);
    // If the command is successful or the device was already enabled.
    if (status !== CMDSTS_ERR.SUCCESS && status !== CMDSTS_ERR.DEV_ENABLED) {
      this.log("info", `Enable device failed: 0x${status.toString(16)}`);
      return err("ENXIO");
    }
    this.state = "enabled";
    return OK;
  }

  /** `idxd_device_disable`: drains every WQ; Disable Device of a disabled device is fine. */
  disable(): Result {
    const status = this.regs.exec(DSA_CMD.DISABLE_DEVICE);
    if (status !== CMDSTS_ERR.SUCCESS && status !== CMDSTS_ERR.DIS_DEV_EN) {
      this.log("info", `Disable device failed: 0x${status.toString(16)}`);
      return err("ENXIO");
    }
    for (const wq of this.wqs) wq.enabled = false;
    this.state = "disabled";
    return OK;
  }

  /** `idxd_device_drain_pasid`: waits until no descriptor of `pasid` is queued or running. */
  drainPasid(pasid: number): void {
    const status = this.regs.exec(DSA_CMD.DRAIN_PASID, pasid);
    if (status === CMDSTS_ACTIVE) this.log("err", `drain pasid ${pasid} did not complete`);
  }

  /**
   * `drv_enable_wq` for a WQ configured as `cfg`: WQCFG written, then Enable WQ; a kernel WQ
   * gets its completion records. ENXIO when the device or the configuration cannot take it
   * (the kernel's IDXD_SCMD_* status codes), EOPNOTSUPP for a user WQ without SVA.
   */
  enableWq(id: number, cfg: IdxdWqConfig): Result {
    const wq = this.wqs[id];
    if (wq === undefined) return err("EINVAL");
    if (this.state !== "enabled") {
      this.log("err", `Enabling while device not enabled (wq${id})`);
      return err("ENXIO");
    }
    if (wq.enabled) {
      this.log("err", `WQ ${id} already enabled`);
      return err("EBUSY");
    }
    if (!Number.isInteger(cfg.size) || cfg.size < 0 || cfg.size > 0xffff) {
      throw new SimError(`WQ size ${cfg.size} is not a 16-bit count`);
    }
    if (cfg.type === "user") {
      // User WQs need SVA: without it user space could reach physical addresses (cdev.c).
      if (!this.userPasidEnabled) {
        this.log("err", "User type WQ cannot be enabled without SVA.");
        return err("EOPNOTSUPP");
      }
      if (cfg.mode === "dedicated") {
        this.log("err", "dedicated user WQs are not modelled");
        return err("EOPNOTSUPP");
      }
    }
    // wq_shared_supported: ENQCMD and a PASID for the WQ (idxd_wqs_setup).
    if (cfg.mode === "shared" && !(this.sharedWqSupport && this.pasidUsable(cfg))) {
      this.log("warn", "No shared wq support but configured.");
      return err("EINVAL");
    }
    const threshold = cfg.mode === "shared" ? (cfg.threshold ?? 0) : 0;
    if (!Number.isInteger(threshold) || threshold < 0 || threshold > cfg.size) {
      // The sysfs store refuses it (EINVAL) before the driver ever sees it: a misuse here.
      throw new SimError(`WQ threshold ${cfg.threshold} is not within 1..${cfg.size}`);
    }
    if (cfg.mode === "shared" && threshold === 0) {
      // __drv_enable_wq: IDXD_SCMD_WQ_NO_THRESH, -ENXIO; a threshold of 0 would shut the limited
      // portal the driver and user space submit through.
      this.log("err", `wq${id}: Shared wq and threshold 0.`);
      return err("ENXIO");
    }
    wq.type = cfg.type;
    wq.mode = cfg.mode;
    wq.size = cfg.size;
    wq.threshold = threshold;
    wq.blockOnFault = cfg.blockOnFault ?? false;
    this.#writeWqcfg(wq);
    const status = this.regs.exec(DSA_CMD.ENABLE_WQ, id);
    if (status !== CMDSTS_ERR.SUCCESS && status !== CMDSTS_ERR.WQ_ENABLED) {
      this.log("err", `WQ enable failed: 0x${status.toString(16)}`);
      wq.type = "none";
      return err("ENXIO");
    }
    wq.enabled = true;
    if (wq.type === "kernel") {
      // idxd_wq_alloc_resources: one 32-byte record per descriptor, DMA-API memory.
      const compls = this.env.dma.allocCoherent(this.pdev, BigInt(wq.size * CR_SIZE));
      if (compls === null) {
        this.disableWq(wq);
        return err("ENOMEM");
      }
      wq.compls = compls;
      wq.slots = new Uint8Array(wq.size);
    }
    return OK;
  }

  /** `idxd_wq_disable` (Disable WQ drains it) and the resources of a kernel WQ. */
  disableWq(wq: IdxdWq): Result {
    let r: Result = OK;
    if (wq.enabled) {
      const operand = (1 << (wq.id % 16)) | (Math.floor(wq.id / 16) << 16);
      const status = this.regs.exec(DSA_CMD.DISABLE_WQ, operand);
      if (status !== CMDSTS_ERR.SUCCESS) {
        this.log("err", `WQ disable failed: 0x${status.toString(16)}`);
        r = err("ENXIO");
      }
      wq.enabled = false;
    }
    if (wq.compls !== null) {
      this.env.dma.freeCoherent(this.pdev, wq.compls.size, wq.compls, wq.compls.dmaHandle);
      wq.compls = null;
      wq.slots = new Uint8Array(0);
    }
    wq.type = "none";
    return r;
  }

  /**
   * `idxd_enable_system_pasid`: the device's current domain at a new global PASID (or, in the
   * historical supervisor mode, a bond to init_mm).
   */
  enableSystemPasid(supervisor: boolean): Result {
    const core = this.env.core;
    const dev = this.pdev;
    if (supervisor) {
      const sva = core.svaBindDevice(dev, null, IOMMU_SVA_BIND_SUPERVISOR);
      if (!sva.ok) {
        this.log("warn", `iommu sva bind failed: -${sva.errno}`);
        return sva;
      }
      const pasid = core.svaGetPasid(sva.value);
      if (pasid === IOMMU_PASID_INVALID) {
        core.svaUnbindDevice(sva.value);
        return err("ENODEV");
      }
      this.supervisorSva = sva.value;
      this.pasid = pasid;
      return OK;
    }
    // Attach a global PASID to the DMA domain so that ENQCMDS / a PASID WQ can submit work on
    // buffers mapped by the DMA API.
    const domain = core.getDomainForDev(dev);
    if (domain === null) return err("EPERM");
    const pasid = core.allocGlobalPasid(dev);
    if (pasid === IOMMU_PASID_INVALID) return err("ENOSPC");
    // The DMA domain is the driver's own: whatever its type (DMA, DMA-FQ, identity).
    const r = core.attachDevicePasid(domain, dev, pasid, null);
    if (!r.ok) {
      this.log("err", `failed to attach device pasid ${pasid}, domain type ${domain.type}`);
      core.freeGlobalPasid(pasid);
      return r;
    }
    this.pasid = pasid;
    this.pasidDomain = domain;
    return OK;
  }

  /** `idxd_disable_system_pasid`: detach, then free the PASID (or unbind init_mm). */
  disableSystemPasid(): void {
    const core = this.env.core;
    if (this.supervisorSva !== null) {
      core.svaUnbindDevice(this.supervisorSva);
      this.supervisorSva = null;
    } else {
      const domain = core.getDomainForDev(this.pdev);
      if (domain === null) return;
      core.detachDevicePasid(domain, this.pdev, this.pasid);
      core.freeGlobalPasid(this.pasid);
      this.pasidDomain = null;
    }
    this.pasid = IOMMU_PASID_INVALID;
    this.pasidEnabled = false;
  }

  toJSON(): Json {
    return {
      device: this.name,
      state: this.state,
      pasid_enabled: this.pasidEnabled,
      user_pasid_enabled: this.userPasidEnabled,
      pasid: this.pasid === IOMMU_PASID_INVALID ? null : this.pasid,
      pasid_domain: this.pasidDomain?.id ?? null,
      supervisor: this.supervisorSva !== null,
      max_wqs: this.maxWqs,
      max_wq_size: this.maxWqSize,
      max_xfer_bytes: 2 ** this.maxXferShift,
      max_batch_size: 2 ** this.maxBatchShift,
      wqs: this.wqs.map((w) => w.toJSON()),
      logs: this.logs.map((l) => ({ level: l.level, message: l.message })),
    };
  }

  /** `wq_pasid_enabled`: kernel WQs use the system PASID, user WQs the submitters'. */
  pasidUsable(cfg: IdxdWqConfig): boolean {
    return cfg.type === "kernel" ? this.pasidEnabled : this.userPasidEnabled;
  }

  /** `idxd_wq_config_write`: size, mode, block on fault, PASID and privilege, size limits. */
  #writeWqcfg(wq: IdxdWq): void {
    const base = DSA_REG.WQCFG + wq.id * DSA_WQCFG_SIZE;
    const cfg = { type: wq.type as IdxdWqType, mode: wq.mode, size: wq.size };
    let d2 = 0;
    if (wq.mode === "dedicated") d2 |= WQCFG_MODE_DEDICATED;
    if (wq.blockOnFault) d2 |= WQCFG_BOF;
    if (this.pasidUsable(cfg)) {
      // A dedicated kernel WQ runs with the system PASID; a shared WQ takes the PASID each
      // ENQCMD(S) carries, so its WQCFG PASID stays 0.
      const pasid = wq.mode === "dedicated" && wq.type === "kernel" ? this.pasid : 0;
      d2 |= WQCFG_PASID_EN | ((pasid & 0xf_ffff) << WQCFG_PASID_SHIFT);
      // Modern idxd gives kernel DMA user privilege; supervisor SVA needed privileged requests.
      if (wq.type === "kernel" && this.supervisorSva !== null) d2 |= WQCFG_PRIV;
    }
    this.regs.writel(base, wq.size);
    this.regs.writel(base + 4, wq.threshold);
    this.regs.writel(base + 8, d2 >>> 0);
    this.regs.writel(base + 12, this.maxXferShift | (this.maxBatchShift << 5));
  }
}

/**
 * The start of idxd_pci_probe: pci_enable_device, then the register BAR (pci_iomap: without a
 * mapping, ENOMEM and the device disabled again). The caller disables the device on any later
 * failure and at remove.
 */
export function idxdMapDevice(env: IdxdEnv, pdev: PciDev): Result<IdxdDevice> {
  const enabled = pciEnableDevice(pdev);
  if (!enabled.ok) return enabled;
  const bridge = env.bridges.find((b) => b.host === pdev.fn.host);
  if (bridge === undefined) {
    pciDisableDevice(pdev);
    return err("ENOMEM");
  }
  const regs = new IdxdRegs(env.core.ctx, bridge, pdev.fn, pdev.name);
  return ok(new IdxdDevice(env, pdev, regs));
}
