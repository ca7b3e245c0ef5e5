// One RISC-V IOMMU as the driver owns it (`struct riscv_iommu_device`): bring-up in the order of
// riscv_iommu_platform_probe + riscv_iommu_init and the specification's "Guidelines for
// initialization", the command queue (send, IOFENCE.C sync), interrupt dispatch, the device
// directory, and the per-instance bookkeeping (PSCIDs, device_ids, the fault log).
//
// Everything is done through the register file (read32/write32/read64/write64) and memory the
// driver allocated; nothing reaches into the hardware model.
//
// Interrupts follow request_threaded_irq: the hard handler (`handleIrq`, called by the platform
// for a vector) checks `ipsr` and queues the queue's thread on a work queue; the threads run when
// the machine settles its deferred work, or at once through the explicit drains.

import { hex } from "../../base/bits.js";
import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import { Ida } from "../../base/ida.js";
import { type Json, jsonValue } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import { Work, type WorkQueue } from "../../base/workqueue.js";
import type { Device } from "../../bus/device.js";
import type { FrameAllocator, PhysicalMemory } from "../../hw/memory.js";
import { type PagingMode, SV39, SV48, SV57 } from "../../hw/pgtable/modes.js";
import type { InterruptSink } from "../../hw/riscv-iommu/interrupts.js";
import type { RiscvIommu } from "../../hw/riscv-iommu/iommu.js";
import type { IommuCore } from "../../iommu/core.js";
import { IOMMU_PAGE_RESP_NAMES, type IommuPageResponseCode } from "../../iommu/fault.js";
import type { IopfQueue } from "../../iommu/iopf-queue.js";
import { IommuDevice } from "../../iommu/ops.js";
import { DeviceDirectory } from "./directory.js";
import {
  CAP_HI,
  CAP_LO,
  CMD_SIZE,
  DDTP_BUSY,
  DDTP_MODE,
  DDTP_MODE_MASK,
  DDTP_MODE_NAMES,
  decodeFaultRecord,
  decodePageRequest,
  type FaultRecord,
  FCTL_BE,
  FCTL_WSI,
  FQ_RECORD_SIZE,
  ICVEC_FIELD_MASK,
  IGS,
  INTR,
  INTR_COUNT,
  MSI_CFG_TBL_ADDR_MASK,
  msiCfgAddr,
  msiCfgCtrl,
  msiCfgData,
  type PageRequestRecord,
  PDTP_MODE,
  PQ_RECORD_SIZE,
  PSCID_MAX,
  ppn53Hi,
  ppn53Lo,
  ppn53Of,
  QCSR,
  RISCV_IOMMU_REG,
  RiscvIommuCommand,
} from "./iommu-bits.js";
import { RiscvIommuQueue } from "./queue.js";

/** Platform and driver parameters of one instance. */
export interface RiscvIommuOptions {
  /**
   * Wired interrupts the platform provides (platform_irq_count), used when the IOMMU signals by
   * wire; more than 4 are capped. Default 4. MSIs are always 4 vectors, one per cause
   * (platform_device_msi_init_and_alloc_irqs(dev, RISCV_IOMMU_INTR_COUNT)).
   */
  readonly irqs?: number;
  /** The platform has an MSI controller: used when capabilities.IGS allows MSIs. Default true. */
  readonly msi?: boolean;
  /** Where the platform's MSI controller receives this IOMMU's messages. Default 0x2800_0000. */
  readonly msiAddress?: bigint;
  /** Requested ring sizes in entries (powers of two). Defaults are the kernel's: 8192/4096/4096. */
  readonly cqEntries?: number;
  readonly fqEntries?: number;
  readonly pqEntries?: number;
  /** The deepest DDT to try (the kernel tries 3LVL and goes down). Default "3LVL". */
  readonly ddtMode?: "1LVL" | "2LVL" | "3LVL";
  /** PSCIDs the driver hands out: [1, 2^bits − 1]. Default 20 (all of ta.PSCID). */
  readonly pscidBits?: number;
  /** Entries kept in the fault log (older ones are dropped and counted). Default 256. */
  readonly faultLogSize?: number;
}

/** What the driver does with queue records; supplied by the driver that owns the instance. */
export interface RiscvIommuEvents {
  fault(iommu: RiscvIommuDevice, rec: FaultRecord): void;
  pageRequest(iommu: RiscvIommuDevice, rec: PageRequestRecord): void;
  /** The PQ overflowed or hit a memory fault: requests were lost (partial groups are stale). */
  pageRequestsLost(iommu: RiscvIommuDevice): void;
}

/** One decoded fault record and what the driver did with it. */
export interface FaultLogEntry {
  readonly seq: number;
  readonly ts: number;
  readonly record: FaultRecord;
  /** The device the record's device_id belongs to, if the driver knows it. */
  readonly device: string | null;
  /** The domain the fault was reported to (`report_iommu_fault`), if any. */
  readonly domain: number | null;
  /** The report's result ("0", "-ENOSYS", …) or why there was none. */
  readonly reported: string;
}

/** One page response the driver sent (ATS.PRGR): the kernel's code, and to whom. */
export interface RiscvPageResponse {
  /** The device the response went to, or null when its device_id has none (the driver answered). */
  readonly dev: string | null;
  /** The device_id (requester ID) the command carried. */
  readonly did: number;
  /** The response's PASID (`iommu_page_response.pasid`); sent only when `withPasid`. */
  readonly pasid: number;
  readonly withPasid: boolean;
  readonly grpid: number;
  readonly code: IommuPageResponseCode;
}

/** A page response as JSON: `{dev, did, pasid, with_pasid, grpid, code: SUCCESS|INVALID|FAILURE}`. */
export function pageResponseJSON(r: RiscvPageResponse): Json {
  return {
    dev: r.dev,
    did: hex(r.did),
    pasid: r.pasid,
    with_pasid: r.withPasid,
    grpid: r.grpid,
    code: IOMMU_PAGE_RESP_NAMES[r.code],
  };
}

const DEFAULT_MSI_ADDRESS = 0x2800_0000n;
const KERNEL_CQ_COUNT = 8192;
const KERNEL_FQ_COUNT = 4096;
const KERNEL_PQ_COUNT = 4096;
const TIMEOUT_MSG = "Hardware error: command execution timeout";
const ENQUEUE_MSG = "Hardware error: command enqueue failed";

export class RiscvIommuDevice extends IommuDevice {
  readonly hw: RiscvIommu;
  readonly ctx: SimContext;
  readonly core: IommuCore;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly options: RiscvIommuOptions;
  /** `capabilities` as read at probe, in halves. */
  capsLo = 0;
  capsHi = 0;
  /** `fctl` as last written/read. */
  fctl = 0;
  /** Vectors in use and `icvec` as read back. */
  irqsCount = 0;
  icvec = 0;
  /** MSIs (`fctl.WSI` = 0) or wires. */
  msi = false;
  readonly cmdq: RiscvIommuQueue;
  readonly fltq: RiscvIommuQueue;
  /** The page-request queue: only with capabilities.ATS. */
  readonly priq: RiscvIommuQueue | null;
  /** The device directory; null until `init` allocated it. */
  ddt: DeviceDirectory | null = null;
  /** `iommu->iopf_queue`: page requests of its PRI-enabled devices; set at registration. */
  iopfQueue: IopfQueue | null = null;
  /** `ddtp.iommu_mode` accepted by the hardware. */
  ddtMode: number = DDTP_MODE.OFF;
  /** The widest first-stage mode (paging domains), null when the IOMMU has none. */
  readonly pagingMode: PagingMode | null;
  /** Widest supported `pdtp.MODE` (0 = no PASID support). */
  readonly maxPdtMode: number;
  /** Test-only fault injection: skip the IOTINVAL of IOTLB syncs (never in a real driver). */
  readonly inject = { skipIotinval: false };
  /** Fault records decoded so far, newest last (bounded), and the totals. */
  readonly faultLog: FaultLogEntry[] = [];
  faultsSeen = 0;
  faultLogDropped = 0;
  /** Every page response sent (ATS.PRGR), oldest first: what the mock's `pageResponses` is. */
  readonly pageResponses: RiscvPageResponse[] = [];
  /** Queue error events cleared by the handlers (cqmf/cmd_to/cmd_ill, fqmf/fqof, pqmf/pqof). */
  readonly queueErrors = { cq: 0, fq: 0, pq: 0 };
  /** IOFENCE.C that did not complete (the kernel's "command execution timeout"). */
  syncTimeouts = 0;
  /** PSCIDs come from the driver's one space (the module-wide `riscv_iommu_pscids` IDA). */
  readonly #pscidSpace: Ida;
  /** The PSCIDs of this instance's domains, within that space. */
  readonly #pscids = new Ida();
  readonly #pscidMax: number;
  /** device_id → the device it belongs to (its own RID wins over another device's alias). */
  readonly #byDid = new Map<number, Device>();
  readonly #cmd = new RiscvIommuCommand();
  readonly #events: RiscvIommuEvents;
  readonly #irqWork: WorkQueue;
  /** The threaded handler of each queue, by interrupt cause. */
  readonly #threads: Map<number, Work>;
  #onceLogged = new Set<string>();

  constructor(
    init: {
      hw: RiscvIommu;
      ctx: SimContext;
      core: IommuCore;
      memory: PhysicalMemory;
      frames: FrameAllocator;
      options?: RiscvIommuOptions;
      /** The driver's PSCID space, shared by its instances; a private one when absent. */
      pscids?: Ida;
    },
    events: RiscvIommuEvents,
  ) {
    super(init.hw.name);
    this.hw = init.hw;
    this.ctx = init.ctx;
    this.core = init.core;
    this.memory = init.memory;
    this.frames = init.frames;
    this.options = init.options ?? {};
    this.#events = events;
    this.#pscidSpace = init.pscids ?? new Ida();
    const o = this.options;
    const bits = o.pscidBits ?? 20;
    if (!Number.isInteger(bits) || bits < 1 || bits > 20) {
      throw new SimError(`${this.name}: pscidBits ${bits} is not within [1, 20]`);
    }
    this.#pscidMax = Math.min(PSCID_MAX, 2 ** bits - 1);
    this.capsLo = this.hw.read32(RISCV_IOMMU_REG.CAPABILITIES);
    this.capsHi = this.hw.read32(RISCV_IOMMU_REG.CAPABILITIES + 4);
    this.cmdq = new RiscvIommuQueue(
      this.hw,
      this.memory,
      "cq",
      CMD_SIZE,
      ring(o.cqEntries, KERNEL_CQ_COUNT, "cqEntries"),
    );
    this.fltq = new RiscvIommuQueue(
      this.hw,
      this.memory,
      "fq",
      FQ_RECORD_SIZE,
      ring(o.fqEntries, KERNEL_FQ_COUNT, "fqEntries"),
    );
    this.priq =
      (this.capsLo & CAP_LO.ATS) !== 0
        ? new RiscvIommuQueue(
            this.hw,
            this.memory,
            "pq",
            PQ_RECORD_SIZE,
            ring(o.pqEntries, KERNEL_PQ_COUNT, "pqEntries"),
          )
        : null;
    this.pagingMode =
      (this.capsLo & CAP_LO.SV57) !== 0
        ? SV57
        : (this.capsLo & CAP_LO.SV48) !== 0
          ? SV48
          : (this.capsLo & CAP_LO.SV39) !== 0
            ? SV39
            : null;
    this.maxPdtMode =
      (this.capsHi & CAP_HI.PD20) !== 0
        ? PDTP_MODE.PD20
        : (this.capsHi & CAP_HI.PD17) !== 0
          ? PDTP_MODE.PD17
          : (this.capsHi & CAP_HI.PD8) !== 0
            ? PDTP_MODE.PD8
            : PDTP_MODE.BARE;
    this.maxPasids = [0, 2 ** 8, 2 ** 17, 2 ** 20][this.maxPdtMode]!;
    this.#irqWork = this.ctx.scheduler.createQueue(`riscv-iommu ${this.name}`);
    this.#threads = new Map([
      [INTR.CQ, new Work(`${this.name}: cmdq`, () => this.processCommandQueue())],
      [INTR.FQ, new Work(`${this.name}: fltq`, () => this.processFaultQueue())],
      [INTR.PQ, new Work(`${this.name}: priq`, () => this.processPageRequestQueue())],
    ]);
  }

  // ---------------------------------------------------------------- capabilities

  /** `capabilities.version` (major in the high nibble). */
  get version(): number {
    return this.capsLo & CAP_LO.VERSION_MASK;
  }

  hasCap(lo: number, hi = 0): boolean {
    return (this.capsLo & lo) === lo && (this.capsHi & hi) === hi;
  }

  /** The first-stage modes the IOMMU walks (SXL = 0). */
  supportsFirstStage(mode: PagingMode): boolean {
    if (mode.gStage) return false;
    const bit = mode === SV39 ? CAP_LO.SV39 : mode === SV48 ? CAP_LO.SV48 : CAP_LO.SV57;
    return (this.capsLo & bit) !== 0;
  }

  /** `pdtp.MODE` supported by the hardware. */
  supportsPdtMode(mode: number): boolean {
    const bit =
      mode === PDTP_MODE.PD8 ? CAP_HI.PD8 : mode === PDTP_MODE.PD17 ? CAP_HI.PD17 : CAP_HI.PD20;
    return mode !== PDTP_MODE.BARE && (this.capsHi & bit) !== 0;
  }

  // ---------------------------------------------------------------- bring-up

  /**
   * riscv_iommu_platform_probe's interrupt set-up and riscv_iommu_init up to (not including)
   * iommu_device_register. On failure the hardware is left Off with its queues disabled.
   */
  init(): Result {
    const hw = this.hw;
    // "Stop and report failure if capabilities.version is not supported": version 1.x.
    if (this.version >>> 4 !== 1) {
      this.#log("err", `unsupported capabilities.version ${hex(this.version)}`);
      return err("ENODEV");
    }
    this.fctl = hw.read32(RISCV_IOMMU_REG.FCTL);
    const r = this.#setupInterrupts();
    if (!r.ok) return r;
    const check = this.#initCheck();
    if (!check.ok) {
      this.#log("err", "unexpected device state");
      return check;
    }
    const dir = this.#iodirAlloc();
    if (!dir.ok) return dir;
    for (const q of this.#queues()) {
      const a = q.alloc(this.frames);
      if (!a.ok) {
        if (a.errno === "ENODEV") this.#log("err", `queue #${q.qid} allocation failed`);
        this.#teardown();
        return a;
      }
    }
    for (const q of this.#queues()) {
      const e = q.enable();
      if (!e.ok) {
        this.#log("err", `queue #${q.qid} failed to start`);
        this.#teardown();
        return e;
      }
    }
    const mode = this.iodirSetMode(ddtModeValue(this.options.ddtMode ?? "3LVL"));
    if (!mode.ok) {
      this.#teardown();
      return mode;
    }
    return OK;
  }

  /** riscv_iommu_remove after iommu_device_unregister: ddtp Off, queues off, memory freed. */
  shutdown(): void {
    this.iodirSetMode(DDTP_MODE.OFF);
    this.#teardown();
    // free_irq: no thread of this instance runs any more.
    this.ctx.scheduler.destroyQueue(this.#irqWork);
  }

  /**
   * The interrupt half of riscv_iommu_platform_probe: four MSIs when IGS and the platform allow,
   * else the platform's wires (at most four).
   */
  #setupInterrupts(): Result {
    const hw = this.hw;
    const igs = (this.capsLo >>> CAP_LO.IGS_SHIFT) & 3;
    const platformMsi = this.options.msi ?? true;
    if ((igs === IGS.MSI || igs === IGS.BOTH) && platformMsi) {
      this.irqsCount = INTR_COUNT;
      const addr = (this.options.msiAddress ?? DEFAULT_MSI_ADDRESS) & MSI_CFG_TBL_ADDR_MASK;
      for (let v = 0; v < this.irqsCount; v++) {
        hw.write64(msiCfgAddr(v), addr);
        hw.write32(msiCfgData(v), this.msiData(v));
        hw.write32(msiCfgCtrl(v), 0);
      }
      if ((this.fctl & FCTL_WSI) !== 0) {
        this.fctl ^= FCTL_WSI;
        hw.write32(RISCV_IOMMU_REG.FCTL, this.fctl);
      }
      this.msi = true;
      return OK;
    }
    if (igs === IGS.MSI) {
      this.#log("err", "unable to use wire-signaled interrupts");
      return err("ENODEV");
    }
    if (igs !== IGS.WSI && igs !== IGS.BOTH) {
      this.#log("err", "invalid IGS");
      return err("ENODEV");
    }
    const irqs = this.options.irqs ?? INTR_COUNT;
    if (!Number.isInteger(irqs) || irqs <= 0) {
      this.#log("err", "no IRQ resources provided");
      return err("ENODEV");
    }
    this.irqsCount = Math.min(irqs, INTR_COUNT);
    if ((this.fctl & FCTL_WSI) === 0) {
      this.fctl |= FCTL_WSI;
      hw.write32(RISCV_IOMMU_REG.FCTL, this.fctl);
    }
    this.msi = false;
    return OK;
  }

  /** The identity the MSI controller gives vector `v` (`msi_data`). */
  msiData(v: number): number {
    return 0x100 + v;
  }

  /** riscv_iommu_init_check: Off/Bare, little-endian structures, icvec distribution. */
  #initCheck(): Result {
    const hw = this.hw;
    const ddtp = hw.read32(RISCV_IOMMU_REG.DDTP);
    if ((ddtp & DDTP_BUSY) !== 0) return err("EBUSY");
    // Translation left enabled (by firmware or a previous kernel): not a kdump kernel, refuse.
    if ((ddtp & DDTP_MODE_MASK) > DDTP_MODE.BARE) return err("EBUSY");
    // In-memory structures in the CPU's (little-endian) byte order.
    if ((this.fctl & FCTL_BE) !== 0) {
      if (!this.hasCap(CAP_LO.END)) return err("EINVAL");
      hw.write32(RISCV_IOMMU_REG.FCTL, this.fctl ^ FCTL_BE);
      this.fctl = hw.read32(RISCV_IOMMU_REG.FCTL);
      if ((this.fctl & FCTL_BE) !== 0) return err("EINVAL");
    }
    // CIV gets vector 0; FIV, PIV and PMIV the next ones modulo the vectors there are.
    const n = this.irqsCount;
    const want = (0 | ((1 % n) << 4) | ((3 % n) << 8) | ((2 % n) << 12)) >>> 0;
    hw.write32(RISCV_IOMMU_REG.ICVEC, want);
    this.icvec = hw.read32(RISCV_IOMMU_REG.ICVEC);
    for (let c = 0; c < INTR_COUNT; c++) {
      if (this.vectorOf(c) >= n) return err("EINVAL");
    }
    return OK;
  }

  /** The vector of interrupt cause `qid` (riscv_iommu_queue_vec). */
  vectorOf(qid: number): number {
    return (this.icvec >>> (qid * 4)) & ICVEC_FIELD_MASK;
  }

  /** riscv_iommu_iodir_alloc: a fixed DDT root reported through WARL, or a zeroed page. */
  #iodirAlloc(): Result {
    const hw = this.hw;
    const lo = hw.read32(RISCV_IOMMU_REG.DDTP);
    if ((lo & DDTP_BUSY) !== 0) return err("EBUSY");
    const mode = lo & DDTP_MODE_MASK;
    let root = -1;
    if (mode === DDTP_MODE.OFF || mode === DDTP_MODE.BARE) {
      hw.write64(RISCV_IOMMU_REG.DDTP, BigInt(mode));
      const fixed = ppn53Of(hw.read32(RISCV_IOMMU_REG.DDTP), hw.read32(RISCV_IOMMU_REG.DDTP + 4));
      if (fixed !== 0 && this.memory.isRam(fixed)) {
        root = fixed;
        this.memory.zeroPage(fixed);
      }
    }
    if (root < 0) root = this.frames.alloc();
    if (root < 0) return err("ENOMEM");
    this.ddt = new DeviceDirectory(this.memory, this.frames, root, this.hasCap(CAP_LO.MSI_FLAT));
    return OK;
  }

  /**
   * riscv_iommu_iodir_set_mode: asks for `requested` and, when the WARL field reads back Off or
   * Bare, for one level less; then invalidates the directory and address caches (IODIR.INVAL_DDT,
   * IOTINVAL.VMA, IOFENCE.C). EINVAL for a change between two DDT depths or a refused mode.
   */
  iodirSetMode(requested: number): Result {
    const hw = this.hw;
    let lo = hw.read32(RISCV_IOMMU_REG.DDTP);
    if ((lo & DDTP_BUSY) !== 0) return err("EBUSY");
    const cur = lo & DDTP_MODE_MASK;
    if (cur > DDTP_MODE.BARE && requested > DDTP_MODE.BARE) return err("EINVAL");
    let rq = requested;
    let mode = cur;
    for (;;) {
      const root = this.ddt?.rootPpn ?? 0;
      const wantLo = rq > DDTP_MODE.BARE ? (ppn53Lo(root) | rq) >>> 0 : rq;
      const wantHi = rq > DDTP_MODE.BARE ? ppn53Hi(root) : 0;
      hw.write32(RISCV_IOMMU_REG.DDTP + 4, wantHi);
      hw.write32(RISCV_IOMMU_REG.DDTP, wantLo);
      lo = hw.read32(RISCV_IOMMU_REG.DDTP);
      if ((lo & DDTP_BUSY) !== 0) {
        this.#log("err", `timeout when setting ddtp (ddt mode: ${rq})`);
        return err("EBUSY");
      }
      mode = lo & DDTP_MODE_MASK;
      if (mode === rq) break;
      if (rq < DDTP_MODE.LVL1) {
        this.#log("err", `DDTP update failed hw: ${hex(lo)} vs ${hex(wantLo)}`);
        return err("EINVAL");
      }
      // WARL: an unsupported depth reads back Off/Bare; try one level less.
      if (mode < DDTP_MODE.LVL1 && rq > DDTP_MODE.LVL1) {
        rq--;
        continue;
      }
      this.#log("err", `DDTP hw mode ${mode}, failed to set ${requested}`);
      return err("EINVAL");
    }
    this.ddtMode = mode;
    if (this.ddt !== null && mode >= DDTP_MODE.LVL1) this.ddt.mode = mode;
    if (this.cmdq.active) {
      this.cmdSend(this.#cmd.iodirInvalDdt());
      this.cmdSend(this.#cmd.invalVma());
      this.cmdSync();
    }
    return OK;
  }

  *#queues(): IterableIterator<RiscvIommuQueue> {
    yield this.cmdq;
    yield this.fltq;
    if (this.priq !== null) yield this.priq;
  }

  #teardown(): void {
    for (const q of [this.priq, this.fltq, this.cmdq]) {
      if (q === null) continue;
      if (!q.disable()) this.#log("err", `fail to disable hardware queue #${q.qid}`);
      q.free(this.frames);
    }
    if (this.ddt !== null && (this.hw.read32(RISCV_IOMMU_REG.DDTP) & DDTP_MODE_MASK) <= 1) {
      this.ddt.destroy();
      this.ddt = null;
    }
  }

  // ---------------------------------------------------------------- commands

  /** riscv_iommu_cmd_send. */
  cmdSend(cmd: RiscvIommuCommand): void {
    if (this.cmdq.send(cmd) < 0) this.#logOnce("err", ENQUEUE_MSG);
  }

  /** riscv_iommu_cmd_sync: IOFENCE.C, then check that it completed. */
  cmdSync(): void {
    const idx = this.cmdq.send(this.#cmd.iofence());
    if (idx < 0) {
      this.#logOnce("err", ENQUEUE_MSG);
      return;
    }
    if (!this.cmdq.processed(idx)) {
      this.syncTimeouts++;
      this.#logOnce("err", TIMEOUT_MSG);
    }
  }

  // ---------------------------------------------------------------- device directory

  /** A device context's place for `devid`, allocating DDT levels; null when out of range. */
  dcPlace(devid: number): { ppn: number; offset: number } | null {
    return this.ddt?.dcPlace(devid) ?? null;
  }

  /** Records which device a device_id belongs to, for fault attribution. */
  claimDeviceId(devid: number, dev: Device, own: boolean): void {
    if (own || !this.#byDid.has(devid)) this.#byDid.set(devid, dev);
  }

  releaseDeviceIds(dev: Device): void {
    for (const [did, d] of [...this.#byDid]) if (d === dev) this.#byDid.delete(did);
  }

  deviceOf(devid: number): Device | null {
    return this.#byDid.get(devid) ?? null;
  }

  /** Devices with device_ids on this IOMMU, in device_id order, without repeats. */
  devices(): Device[] {
    const out: Device[] = [];
    for (const [, d] of [...this.#byDid].sort((a, b) => a[0] - b[0])) {
      if (!out.includes(d)) out.push(d);
    }
    return out;
  }

  // ---------------------------------------------------------------- PSCIDs

  /**
   * A free PSCID in [1, max] (0 is never used) of the driver's space, or −1. Like the kernel's
   * ida_alloc_range(&riscv_iommu_pscids, 1, RISCV_IOMMU_MAX_PSCID), the space is the driver's,
   * not the instance's: domains of two IOMMUs never share a PSCID.
   */
  allocPscid(): number {
    const pscid = this.#pscidSpace.alloc(1, this.#pscidMax);
    if (pscid > 0) this.#pscids.allocExact(pscid);
    return pscid;
  }

  freePscid(pscid: number): void {
    const mine = this.#pscids.free(pscid);
    if (mine) this.#pscidSpace.free(pscid);
    this.ctx.warnings.on(
      !mine,
      "riscv_iommu_free_paging_domain",
      `PSCID ${pscid} of ${this.name} was not allocated`,
    );
  }

  pscidsInUse(): number[] {
    return [...this.#pscids.ids()];
  }

  // ---------------------------------------------------------------- interrupts

  /**
   * The hard interrupt handler of vector `vector` (riscv_iommu_queue_ipsr for every queue on
   * it): queues the thread of each queue whose `ipsr` bit is set. False when none was.
   */
  handleIrq(vector: number): boolean {
    const ipsr = this.hw.read32(RISCV_IOMMU_REG.IPSR);
    let woke = false;
    for (const q of this.#queues()) {
      if (!q.active || this.vectorOf(q.qid) !== vector) continue;
      if ((ipsr & (1 << q.qid)) === 0) continue;
      this.#irqWork.queueWork(this.#threads.get(q.qid)!);
      woke = true;
    }
    return woke;
  }

  /** Runs the queued interrupt threads now (what settling the machine does). */
  runIrqThreads(): number {
    return this.#irqWork.flush();
  }

  /**
   * The platform hook-up: wires call the handler when asserted (level: it runs until `ipsr` is
   * cleared); messages to the programmed MSI address with one of our identities are claimed.
   */
  interruptSink(): InterruptSink {
    const addr = (this.options.msiAddress ?? DEFAULT_MSI_ADDRESS) & MSI_CFG_TBL_ADDR_MASK;
    return {
      setWire: (vector, asserted) => {
        if (asserted && !this.msi) this.handleIrq(vector);
      },
      message: (address, data) => {
        if (address !== addr) return false;
        const v = data - this.msiData(0);
        if (this.msi && v >= 0 && v < this.irqsCount) this.handleIrq(v);
        return true;
      },
    };
  }

  /** riscv_iommu_cmdq_process: clear the CQ error bits (reporting them) and `ipsr.cip`. */
  processCommandQueue(): void {
    const hw = this.hw;
    const ctrl = hw.read32(this.cmdq.qcr);
    const errs = QCSR.MEM_FAULT | QCSR.OVERFLOW_OR_TO | QCSR.CMD_ILL | QCSR.FENCE_W_IP;
    if ((ctrl & errs) !== 0) {
      hw.write32(this.cmdq.qcr, ctrl);
      this.queueErrors.cq++;
      this.#log(
        "warn",
        `Queue #${this.cmdq.qid} error; fault:${+((ctrl & QCSR.MEM_FAULT) !== 0)} timeout:${+((ctrl & QCSR.OVERFLOW_OR_TO) !== 0)} illegal:${+((ctrl & QCSR.CMD_ILL) !== 0)} fence_w_ip:${+((ctrl & QCSR.FENCE_W_IP) !== 0)}`,
      );
    }
    hw.write32(RISCV_IOMMU_REG.IPSR, 1 << INTR.CQ);
  }

  /**
   * riscv_iommu_fltq_process: clear `ipsr.fip`, hand every record to the driver and advance
   * `fqh`, then clear `fqmf`/`fqof` (reporting them). Returns the records processed.
   */
  processFaultQueue(): number {
    const q = this.fltq;
    if (!q.active) return 0;
    this.hw.write32(RISCV_IOMMU_REG.IPSR, 1 << INTR.FQ);
    let total = 0;
    for (;;) {
      const n = q.consume((words, at) => this.#events.fault(this, decodeFaultRecord(words, at)));
      if (n < 0) this.#logOnce("err", "Hardware error: queue access timeout");
      if (n <= 0) break;
      total += n;
    }
    this.#clearQueueErrors(q, "fq");
    return total;
  }

  /** The page-request queue's thread: like the FQ's, records go to the IOPF path. */
  processPageRequestQueue(): number {
    const q = this.priq;
    if (q === null || !q.active) return 0;
    this.hw.write32(RISCV_IOMMU_REG.IPSR, 1 << INTR.PQ);
    let total = 0;
    for (;;) {
      const n = q.consume((words, at) =>
        this.#events.pageRequest(this, decodePageRequest(words, at)),
      );
      if (n < 0) this.#logOnce("err", "Hardware error: queue access timeout");
      if (n <= 0) break;
      total += n;
    }
    if (this.#clearQueueErrors(q, "pq")) this.#events.pageRequestsLost(this);
    return total;
  }

  #clearQueueErrors(q: RiscvIommuQueue, which: "fq" | "pq"): boolean {
    const ctrl = this.hw.read32(q.qcr);
    if ((ctrl & (QCSR.MEM_FAULT | QCSR.OVERFLOW_OR_TO)) === 0) return false;
    this.hw.write32(q.qcr, ctrl);
    this.queueErrors[which]++;
    this.#log(
      "warn",
      `Queue #${q.qid} error; memory fault:${+((ctrl & QCSR.MEM_FAULT) !== 0)} overflow:${+((ctrl & QCSR.OVERFLOW_OR_TO) !== 0)}`,
    );
    return true;
  }

  /** Appends a fault-log entry (bounded). */
  logFault(entry: Omit<FaultLogEntry, "seq" | "ts">): FaultLogEntry {
    const e: FaultLogEntry = { seq: this.faultsSeen++, ts: this.ctx.clock.now, ...entry };
    this.faultLog.push(e);
    const max = this.options.faultLogSize ?? 256;
    while (this.faultLog.length > max) {
      this.faultLog.shift();
      this.faultLogDropped++;
    }
    return e;
  }

  // ---------------------------------------------------------------- logging and views

  /** dev_err / dev_warn / dev_info into the kernel log. */
  log(level: "err" | "warn" | "info", message: string): void {
    this.#log(level, message);
  }

  #log(level: "err" | "warn" | "info", message: string): void {
    this.core.s.log(level, this.hwdev, `riscv-iommu ${this.name}: ${message}`);
  }

  #logOnce(level: "err" | "warn", message: string): void {
    if (this.#onceLogged.has(message)) return;
    this.#onceLogged.add(message);
    this.#log(level, message);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return {
      driver_state: {
        version: hex(this.version),
        ddtp_mode: DDTP_MODE_NAMES[this.ddtMode] ?? this.ddtMode,
        ddt: this.ddt?.toJSON() ?? null,
        paging_mode: this.pagingMode?.name ?? null,
        pdtp_mode: ["Bare", "PD8", "PD17", "PD20"][this.maxPdtMode]!,
        interrupts: {
          kind: this.msi ? "msi" : "wsi",
          vectors: this.irqsCount,
          icvec: {
            civ: this.vectorOf(0),
            fiv: this.vectorOf(1),
            pmiv: this.vectorOf(2),
            piv: this.vectorOf(3),
          },
        },
        queues: {
          cq: this.cmdq.toJSON(),
          fq: this.fltq.toJSON(),
          pq: this.priq?.toJSON() ?? null,
        },
        pscids: this.pscidsInUse(),
        devices: this.devices().map((d) => jsonValue(d.iommu?.priv ?? d.name)),
        faults: {
          seen: this.faultsSeen,
          dropped_from_log: this.faultLogDropped,
          log: this.faultLog.map(faultLogJSON),
        },
        page_responses: this.pageResponses.map(pageResponseJSON),
        queue_errors: { ...this.queueErrors },
        sync_timeouts: this.syncTimeouts,
      },
    };
  }
}

export function faultLogJSON(e: FaultLogEntry): Json {
  const r = e.record;
  return {
    seq: e.seq,
    ts: e.ts,
    cause: r.cause,
    ttyp: r.ttyp,
    did: hex(r.did),
    device: e.device,
    pv: r.pv,
    pid: r.pid,
    priv: r.priv,
    iotval: hex(r.iotval),
    iotval2: hex(r.iotval2),
    domain: e.domain,
    reported: e.reported,
  };
}

function ring(entries: number | undefined, dflt: number, what: string): number {
  const n = entries ?? dflt;
  if (!Number.isInteger(n) || n < 2 || n > 2 ** 20 || (n & (n - 1)) !== 0) {
    throw new SimError(`riscv-iommu ${what} ${n} is not a power of two in [2, 2^20]`);
  }
  return n;
}

function ddtModeValue(name: "1LVL" | "2LVL" | "3LVL"): number {
  if (name === "1LVL") return DDTP_MODE.LVL1;
  if (name === "2LVL") return DDTP_MODE.LVL2;
  if (name === "3LVL") return DDTP_MODE.LVL3;
  throw new SimError(`riscv-iommu ddtMode "${String(name)}" is not 1LVL, 2LVL or 3LVL`);
}
