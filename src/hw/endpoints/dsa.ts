// A DSA-like SVA copy engine: the register file (BAR 0), work-queue portals (BAR 1), commands,
// and work queues feeding one engine (dsa-engine.ts does the descriptors).
//
// Submission: a dedicated WQ takes 64-byte posted writes to its portal (MOVDIR64B) and runs them
// with the PASID and privilege its WQCFG holds (or without a PASID: the DMA API path); a shared
// WQ takes Deferrable Memory Writes (ENQCMD/ENQCMDS) and runs each with the PASID the submission
// carried, answering Retry when it is full or not enabled; through a limited portal (the one idxd
// maps for user space and uses itself) a shared WQ is full at WQCFG.wq_thresh entries, through an
// unlimited one at its size. A posted write to a shared WQ, a
// deferrable one to a dedicated WQ, or any write to a full dedicated WQ is dropped (counted).
//
// Commands (CMD/CMDSTS, idxd command codes) take effect when written; drain-type commands
// (Drain All/WQ/PASID, Disable WQ/Device) stay active in CMDSTS until the descriptors they wait
// for have completed, which the engine's work advances. Abort commands drop queued descriptors
// and abandon the one in progress; aborting a PASID with page requests outstanding sends a
// Stop Marker. Register writes the model does not implement are ignored; WQCFG is writable only
// while its WQ is disabled. Sub-dword register writes are dropped. WQCFG max_xfer_shift and
// max_batch_shift reset to the device's maxima (a simplification: idxd programs them anyway).
//
// Timing: see endpoint.ts. Submissions queue the engine's work item; each run completes one
// descriptor (or leaves it waiting for a PRG Response).

import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import type { Work } from "../../base/workqueue.js";
import type { IoBridge } from "../pci/io-bridge.js";
import { PCI_PASID_CTRL, PCI_PASID_CTRL_PRIV } from "../pci/regs.js";
import type { PciFunction } from "../pci/topology.js";
import { DsaEngine, type DsaEngineEnv, DsaJob } from "./dsa-engine.js";
import {
  CMD_INT_REQ,
  CMDSTS_ACTIVE,
  CMDSTS_ERR,
  DESC_SIZE,
  DSA_CMD,
  DSA_MMIO_BAR,
  DSA_MMIO_BAR_SIZE,
  DSA_PORTAL_BAR,
  DSA_PORTAL_LIMITED,
  DSA_PORTAL_STRIDE,
  DSA_REG,
  DSA_STATE,
  DSA_VERSION,
  DSA_WQCFG_SIZE,
  GENCAP_BLOCK_ON_FAULT,
  GENCAP_MAX_BATCH_SHIFT,
  GENCAP_MAX_XFER_SHIFT,
  GENCAP_OVERLAP_COPY,
  INTC_CMD,
  INTC_ERR,
  SWERR_BATCH,
  SWERR_DESC_VALID,
  SWERR_FAULT_RW,
  SWERR_OVERFLOW,
  SWERR_PRIV,
  SWERR_VALID,
  SWERR_WQ_IDX_VALID,
  WQCAP_HI_ATS,
  WQCAP_HI_DEDICATED,
  WQCAP_HI_PRS,
  WQCAP_HI_SHARED,
  WQCFG_ATS_DISABLE,
  WQCFG_BOF,
  WQCFG_MODE_DEDICATED,
  WQCFG_PASID_EN,
  WQCFG_PASID_SHIFT,
  WQCFG_PRIV,
  WQCFG_PRS_DISABLE,
} from "./dsa-regs.js";
import { Endpoint, type EndpointOptions } from "./endpoint.js";

/** 2^i for the 5-bit WQCFG shift fields (checked on every descriptor). */
const POW2: readonly number[] = Array.from({ length: 32 }, (_, i) => 2 ** i);

export interface DsaOptions extends EndpointOptions {
  /** Work queues (default 4); BAR 1 must hold their portals. */
  readonly wqs?: number;
  /** WQ entries shared by all WQs (WQCAP.total_wq_size, default 64). */
  readonly totalWqSize?: number;
  /** log2 of the largest transfer (default 21: 2 MiB). */
  readonly maxTransferShift?: number;
  /** log2 of the largest batch (default 5: 32 descriptors). */
  readonly maxBatchShift?: number;
}

/** One work queue: its WQCFG and the descriptors waiting in it. */
class DsaWq {
  size = 0;
  threshold = 0;
  dedicated = false;
  bof = false;
  atsDisable = false;
  prsDisable = false;
  priority = 0;
  pasid = 0;
  pasidEnable = false;
  priv = false;
  maxXferShift: number;
  maxBatchShift: number;
  enabled = false;
  /** Cleared by Disable WQ before the WQ drains. */
  accepting = false;
  readonly queue: DsaJob[] = [];
  submitted = 0;
  dropped = 0;
  retries = 0;

  constructor(
    readonly index: number,
    readonly maxXfer: number,
    readonly maxBatch: number,
  ) {
    this.maxXferShift = maxXfer;
    this.maxBatchShift = maxBatch;
  }

  reset(): void {
    this.size = this.threshold = this.priority = this.pasid = 0;
    this.dedicated = this.bof = this.atsDisable = this.prsDisable = false;
    this.pasidEnable = this.priv = this.enabled = this.accepting = false;
    this.maxXferShift = this.maxXfer;
    this.maxBatchShift = this.maxBatch;
  }

  dword(d: number): number {
    switch (d) {
      case 0:
        return this.size;
      case 1:
        return this.threshold;
      case 2:
        return (
          ((this.dedicated ? WQCFG_MODE_DEDICATED : 0) |
            (this.bof ? WQCFG_BOF : 0) |
            (this.atsDisable ? WQCFG_ATS_DISABLE : 0) |
            (this.prsDisable ? WQCFG_PRS_DISABLE : 0) |
            (this.priority << 4) |
            (this.pasid << WQCFG_PASID_SHIFT) |
            (this.pasidEnable ? WQCFG_PASID_EN : 0) |
            (this.priv ? WQCFG_PRIV : 0)) >>>
          0
        );
      case 3:
        return this.maxXferShift | (this.maxBatchShift << 5);
      case 6:
        // occupancy 15:0, wq_state 31:30
        return ((Math.min(this.queue.length, 0xffff) | ((this.enabled ? 1 : 0) << 30)) >>> 0) >>> 0;
      default:
        return 0;
    }
  }

  writeDword(d: number, v: number): void {
    switch (d) {
      case 0:
        this.size = v & 0xffff;
        return;
      case 1:
        this.threshold = v & 0xffff;
        return;
      case 2:
        this.dedicated = (v & WQCFG_MODE_DEDICATED) !== 0;
        this.bof = (v & WQCFG_BOF) !== 0;
        this.atsDisable = (v & WQCFG_ATS_DISABLE) !== 0;
        this.prsDisable = (v & WQCFG_PRS_DISABLE) !== 0;
        this.priority = (v >>> 4) & 0xf;
        this.pasid = (v >>> WQCFG_PASID_SHIFT) & 0xf_ffff;
        this.pasidEnable = (v & WQCFG_PASID_EN) !== 0;
        this.priv = (v & WQCFG_PRIV) !== 0;
        return;
      case 3:
        this.maxXferShift = v & 0x1f;
        this.maxBatchShift = (v >>> 5) & 0xf;
        return;
      default:
      // occupancy and state are read-only; the rest is reserved
    }
  }

  toJSON(): Json {
    return {
      index: this.index,
      mode: this.dedicated ? "dedicated" : "shared",
      size: this.size,
      enabled: this.enabled,
      pasid: this.pasidEnable ? this.pasid : null,
      priv: this.priv,
      block_on_fault: this.bof,
      ats_disable: this.atsDisable,
      prs_disable: this.prsDisable,
      max_xfer_shift: this.maxXferShift,
      max_batch_shift: this.maxBatchShift,
      occupancy: this.queue.length,
      submitted: this.submitted,
      dropped: this.dropped,
      retries: this.retries,
    };
  }
}

/** A drain-type command waiting for descriptors to complete. */
interface PendingCommand {
  readonly cmd: number;
  readonly intReq: boolean;
  /** Whether `job` is one the command waits for. */
  readonly covers: (job: DsaJob) => boolean;
  /** Runs once nothing it covers is left. */
  readonly finish: () => void;
}

export class DsaDevice extends Endpoint {
  readonly wqs: readonly DsaWq[];
  readonly totalWqSize: number;
  readonly maxTransferShift: number;
  readonly maxBatchShift: number;
  readonly #engine: DsaEngine;
  readonly #work: Work;
  #enabled = false;
  #gencfg = 0;
  #genctrl = 0;
  #intcause = 0;
  #cmd = 0;
  #cmdsts = 0;
  #pending: PendingCommand | null = null;
  readonly #swerr = new Uint32Array(8);
  #current: DsaJob | null = null;
  #rr = 0;
  completed = 0;
  aborted = 0;
  interrupts = 0;

  constructor(bridge: IoBridge, fn: PciFunction, opts: DsaOptions = {}) {
    const n = opts.wqs ?? 4;
    if (!Number.isInteger(n) || n < 1 || n > 16) throw new SimError(`DSA: ${n} WQs (1 to 16)`);
    if (fn.barCount < 2 || fn.barSize(DSA_MMIO_BAR) < DSA_MMIO_BAR_SIZE) {
      throw new SimError(`${fn.name}: a DSA needs BAR 0 of 64 KiB and BAR 1 for portals`);
    }
    if (fn.barSize(DSA_PORTAL_BAR) < n * DSA_PORTAL_STRIDE) {
      throw new SimError(`${fn.name}: BAR 1 is too small for ${n} WQ portals`);
    }
    super(bridge, fn, opts);
    this.totalWqSize = opts.totalWqSize ?? 64;
    this.maxTransferShift = opts.maxTransferShift ?? 21;
    this.maxBatchShift = opts.maxBatchShift ?? 5;
    if (this.maxTransferShift < 12 || this.maxTransferShift > 31) {
      throw new SimError(`DSA: max transfer shift ${this.maxTransferShift} (12 to 31)`);
    }
    if (this.maxBatchShift < 1 || this.maxBatchShift > 10) {
      throw new SimError(`DSA: max batch shift ${this.maxBatchShift} (1 to 10)`);
    }
    this.wqs = Array.from(
      { length: n },
      (_, i) => new DsaWq(i, this.maxTransferShift, this.maxBatchShift),
    );
    this.#engine = new DsaEngine(this.#engineEnv());
    this.#work = this.newWork("engine", () => this.#process());
  }

  // ---------------------------------------------------------------- software's view

  /** Physical address of WQ `wq`'s portal (BAR 1). */
  portalAddress(wq: number): bigint {
    if (!this.wqs[wq]) throw new SimError(`${this.name} has no WQ ${wq}`);
    return this.fn.barAddress(DSA_PORTAL_BAR) + BigInt(wq * DSA_PORTAL_STRIDE);
  }

  /** Physical address of register `offset` (BAR 0). */
  registerAddress(offset: number): bigint {
    return this.fn.barAddress(DSA_MMIO_BAR) + BigInt(offset);
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** The descriptor in progress (waiting for a PRG Response, or between work items). */
  get current(): DsaJob | null {
    return this.#current;
  }

  // ---------------------------------------------------------------- BARs

  barRead(bar: number, offset: number, out: Uint8Array): void {
    if (bar !== DSA_MMIO_BAR) {
      out.fill(0);
      return;
    }
    for (let i = 0; i < out.length; i++) {
      const at = offset + i;
      out[i] = (this.#read32(at & ~3) >>> (8 * (at & 3))) & 0xff;
    }
  }

  barWrite(bar: number, offset: number, data: Uint8Array): void {
    if (bar === DSA_PORTAL_BAR) {
      this.#portalWrite(offset, data, false, 0, false);
      return;
    }
    if (bar !== DSA_MMIO_BAR || (data.length !== 4 && data.length !== 8) || offset % 4 !== 0) {
      return;
    }
    for (let at = 0; at < data.length; at += 4) {
      const v =
        (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0;
      this.#write32(offset + at, v);
    }
  }

  barDeferrableWrite(
    bar: number,
    offset: number,
    data: Uint8Array,
    pasid: number,
    privileged: boolean,
  ): boolean {
    if (bar !== DSA_PORTAL_BAR) return false;
    return this.#portalWrite(offset, data, true, pasid, privileged);
  }

  // ---------------------------------------------------------------- registers

  #read32(off: number): number {
    switch (off) {
      case DSA_REG.VER:
        return DSA_VERSION;
      case DSA_REG.GENCAP:
        return (
          (GENCAP_BLOCK_ON_FAULT |
            GENCAP_OVERLAP_COPY |
            (this.maxTransferShift << GENCAP_MAX_XFER_SHIFT) |
            (this.maxBatchShift << GENCAP_MAX_BATCH_SHIFT)) >>>
          0
        );
      case DSA_REG.WQCAP:
        return this.totalWqSize | (this.wqs.length << 16);
      case DSA_REG.WQCAP + 4:
        return (
          (WQCAP_HI_SHARED |
            WQCAP_HI_DEDICATED |
            (this.atc !== null ? WQCAP_HI_ATS : 0) |
            (this.pri !== null ? WQCAP_HI_PRS : 0)) >>>
          0
        );
      case DSA_REG.GRPCAP:
        return 1;
      case DSA_REG.ENGCAP:
        return 1;
      case DSA_REG.OPCAP:
        return 0x7f; // noop, batch, drain, memmove, memfill, compare, compval
      case DSA_REG.TABLE_OFFSET:
        return (DSA_REG.WQCFG / 0x100) << 16;
      case DSA_REG.GENCFG:
        return this.#gencfg;
      case DSA_REG.GENCTRL:
        return this.#genctrl;
      case DSA_REG.GENSTS:
        return this.#enabled ? DSA_STATE.enabled : DSA_STATE.disabled;
      case DSA_REG.INTCAUSE:
        return this.#intcause;
      case DSA_REG.CMD:
        return this.#cmd;
      case DSA_REG.CMDSTS:
        return this.#cmdsts;
      default:
        if (off >= DSA_REG.SWERR && off < DSA_REG.SWERR + 32) {
          return this.#swerr[(off - DSA_REG.SWERR) >>> 2]!;
        }
        if (off >= DSA_REG.WQCFG && off < DSA_REG.WQCFG + this.wqs.length * DSA_WQCFG_SIZE) {
          const rel = off - DSA_REG.WQCFG;
          return this.wqs[Math.floor(rel / DSA_WQCFG_SIZE)]!.dword((rel % DSA_WQCFG_SIZE) >>> 2);
        }
        return 0;
    }
  }

  #write32(off: number, v: number): void {
    switch (off) {
      case DSA_REG.GENCFG:
        this.#gencfg = v;
        return;
      case DSA_REG.GENCTRL:
        this.#genctrl = v & 0x7;
        return;
      case DSA_REG.INTCAUSE:
        this.#intcause = (this.#intcause & ~v) >>> 0;
        return;
      case DSA_REG.CMD:
        this.#command(v);
        return;
      case DSA_REG.SWERR:
        // Writing 1 to Valid/Overflow acknowledges the error.
        this.#swerr[0] = (this.#swerr[0]! & ~(v & (SWERR_VALID | SWERR_OVERFLOW))) >>> 0;
        return;
      default:
        if (off >= DSA_REG.WQCFG && off < DSA_REG.WQCFG + this.wqs.length * DSA_WQCFG_SIZE) {
          const rel = off - DSA_REG.WQCFG;
          const wq = this.wqs[Math.floor(rel / DSA_WQCFG_SIZE)]!;
          if (!wq.enabled) wq.writeDword((rel % DSA_WQCFG_SIZE) >>> 2, v);
        }
    }
  }

  // ---------------------------------------------------------------- submission

  #portalWrite(
    offset: number,
    data: Uint8Array,
    deferrable: boolean,
    pasid: number,
    privileged: boolean,
  ): boolean {
    const wq = this.wqs[Math.floor(offset / DSA_PORTAL_STRIDE)];
    if (!wq || data.length !== DESC_SIZE || offset % DESC_SIZE !== 0) return false;
    const limited = !wq.dedicated && (offset & DSA_PORTAL_LIMITED) !== 0;
    const ok =
      this.#enabled &&
      wq.enabled &&
      wq.accepting &&
      wq.dedicated !== deferrable &&
      wq.queue.length < (limited ? Math.min(wq.threshold, wq.size) : wq.size);
    if (!ok) {
      if (deferrable) wq.retries++;
      else wq.dropped++;
      return false;
    }
    const desc = data.slice();
    const job = deferrable
      ? new DsaJob(wq.index, true, pasid, privileged, desc)
      : new DsaJob(wq.index, wq.pasidEnable, wq.pasid, wq.priv, desc);
    wq.queue.push(job);
    wq.submitted++;
    this.kick(this.#work);
    return true;
  }

  // ---------------------------------------------------------------- the engine

  #engineEnv(): DsaEngineEnv {
    return {
      name: this.name,
      trace: this.ctx.trace,
      dma: this.dma,
      pri: this.pri,
      wqBlockOnFault: (wq) => this.wqs[wq]!.bof,
      wqPageRequests: (wq) => !this.wqs[wq]!.prsDisable,
      wqMaxTransfer: (wq) => POW2[this.wqs[wq]!.maxXferShift]!,
      wqMaxBatch: (wq) => POW2[this.wqs[wq]!.maxBatchShift]!,
      privilegedAllowed: () =>
        this.fn.caps.pasid !== 0 &&
        (this.fn.config.peek(this.fn.caps.pasid + PCI_PASID_CTRL, 2) & PCI_PASID_CTRL_PRIV) !== 0,
      softwareError: (job, error, write, addr) => this.#softwareError(job, error, write, addr),
      kick: () => this.kick(this.#work),
      completionInterrupt: () => {
        this.interrupts++;
      },
    };
  }

  /** One work item: dispatch or resume a descriptor and run it as far as it goes. */
  #process(): void {
    if (!this.#enabled) return;
    let job = this.#current;
    if (job === null) {
      job = this.#dispatch();
      if (job === null) {
        this.#settleCommand();
        return;
      }
      this.#current = job;
    }
    this.dma.allowAts = !this.wqs[job.wq]!.atsDisable;
    if (this.#engine.run(job) === "blocked") return;
    this.#current = null;
    this.completed++;
    this.#settleCommand();
    if (this.wqs.some((w) => w.enabled && w.queue.length > 0)) this.kick(this.#work);
  }

  /** The next descriptor, taking enabled WQs in turn. */
  #dispatch(): DsaJob | null {
    const n = this.wqs.length;
    for (let k = 0; k < n; k++) {
      const wq = this.wqs[(this.#rr + k) % n]!;
      if (wq.enabled && wq.queue.length > 0) {
        this.#rr = (wq.index + 1) % n;
        return wq.queue.shift()!;
      }
    }
    return null;
  }

  #softwareError(job: DsaJob, error: number, write: boolean, addr: bigint): void {
    const e = this.#swerr;
    if ((e[0]! & SWERR_VALID) !== 0) {
      e[0] = (e[0]! | SWERR_OVERFLOW) >>> 0;
    } else {
      const top = job.parent ?? job;
      e[0] =
        (SWERR_VALID |
          SWERR_DESC_VALID |
          SWERR_WQ_IDX_VALID |
          (job.parent ? SWERR_BATCH : 0) |
          (write ? SWERR_FAULT_RW : 0) |
          (job.priv ? SWERR_PRIV : 0) |
          ((error & 0xff) << 8) |
          (top.wq << 16)) >>>
        0;
      e[1] = (job.opcode | (job.pasid << 8)) >>> 0; // operation 39:32, pasid 59:40
      e[2] = job.parent ? job.batchIndex : 0;
      e[3] = job.invalidFlags;
      e[4] = Number(addr & 0xffff_ffffn);
      e[5] = Number(addr >> 32n);
    }
    this.#intcause |= INTC_ERR;
  }

  // ---------------------------------------------------------------- commands

  #command(v: number): void {
    this.#cmd = v >>> 0;
    if ((this.#cmdsts & CMDSTS_ACTIVE) !== 0) return; // one command at a time
    const cmd = (v >>> 20) & 0x1f;
    const operand = v & 0xf_ffff;
    const intReq = (v & CMD_INT_REQ) !== 0;
    const E = CMDSTS_ERR;
    let err: number = E.SUCCESS;
    /** A drain-type command: what it waits for, and what it does then. */
    let wait: { covers: (job: DsaJob) => boolean; finish: () => void } | null = null;
    const all = () => true;
    switch (cmd) {
      case DSA_CMD.ENABLE_DEVICE:
        if (this.#enabled) err = E.DEV_ENABLED;
        else if (!this.fn.busMasterEnabled) err = E.BUSMASTER_EN;
        else if (this.wqs.reduce((s, w) => s + w.size, 0) > this.totalWqSize) {
          err = E.WQ_SIZE_ERANGE;
        } else this.#enabled = true;
        break;
      case DSA_CMD.DISABLE_DEVICE:
        if (!this.#enabled) err = E.DIS_DEV_EN;
        else {
          for (const w of this.wqs) w.accepting = false;
          wait = {
            covers: all,
            finish: () => {
              for (const w of this.wqs) w.enabled = false;
              this.#enabled = false;
            },
          };
        }
        break;
      case DSA_CMD.DRAIN_ALL:
        if (!this.#enabled) err = E.DEV_NOT_EN;
        else wait = { covers: all, finish: () => {} };
        break;
      case DSA_CMD.ABORT_ALL:
        if (!this.#enabled) err = E.DEV_NOT_EN;
        else this.#abort(all, null);
        break;
      case DSA_CMD.RESET_DEVICE:
        this.#abort(all, null);
        this.#enabled = false;
        for (const w of this.wqs) w.reset();
        this.#swerr.fill(0);
        this.#intcause = 0;
        this.atc?.clear();
        break;
      case DSA_CMD.ENABLE_WQ:
        err = this.#enableWq(operand);
        break;
      case DSA_CMD.DISABLE_WQ:
      case DSA_CMD.DRAIN_WQ:
      case DSA_CMD.ABORT_WQ:
      case DSA_CMD.RESET_WQ: {
        const set = this.#wqSet(operand);
        if (set === null) err = E.INVAL_WQIDX;
        else if (!this.#enabled) err = E.DEV_NOT_EN;
        else {
          const covers = (j: DsaJob) => set.includes(this.wqs[j.wq]!);
          if (cmd === DSA_CMD.ABORT_WQ || cmd === DSA_CMD.RESET_WQ) {
            this.#abort(covers, null);
            if (cmd === DSA_CMD.RESET_WQ) for (const w of set) w.reset();
          } else if (cmd === DSA_CMD.DRAIN_WQ) {
            wait = { covers, finish: () => {} };
          } else {
            for (const w of set) w.accepting = false;
            wait = {
              covers,
              finish: () => {
                for (const w of set) w.enabled = false;
              },
            };
          }
        }
        break;
      }
      case DSA_CMD.DRAIN_PASID:
        if (!this.#enabled) err = E.DEV_NOT_EN;
        else wait = { covers: (j) => j.pasidValid && j.pasid === operand, finish: () => {} };
        break;
      case DSA_CMD.ABORT_PASID:
        if (!this.#enabled) err = E.DEV_NOT_EN;
        else this.#abort((j) => j.pasidValid && j.pasid === operand, operand);
        break;
      default:
        err = E.INVAL_CMD;
    }
    if (wait === null) {
      this.#finishCommand(err, intReq);
      return;
    }
    this.#cmdsts = CMDSTS_ACTIVE;
    this.#pending = { cmd, intReq, ...wait };
    this.#settleCommand();
    if (this.#pending !== null) this.kick(this.#work);
  }

  /** The WQs a WQ command's operand names: WQ index / 16 in 19:16, a bit per WQ in 15:0. */
  #wqSet(operand: number): DsaWq[] | null {
    const base = (operand >>> 16) * 16;
    const out: DsaWq[] = [];
    for (let b = 0; b < 16; b++) {
      if ((operand & (1 << b)) === 0) continue;
      const wq = this.wqs[base + b];
      if (!wq) return null;
      out.push(wq);
    }
    return out;
  }

  #enableWq(id: number): number {
    const E = CMDSTS_ERR;
    const wq = this.wqs[id];
    if (!wq) return E.INVAL_WQIDX;
    if (!this.#enabled) return E.DEV_NOTEN;
    if (wq.enabled) return E.WQ_ENABLED;
    if (wq.size === 0) return E.WQ_SIZE;
    // A shared WQ takes ENQCMD submissions, which carry a PASID.
    if (!wq.dedicated && !this.fn.pasidEnabled) return E.WQ_MODE;
    if (wq.dedicated && wq.pasidEnable && !this.fn.pasidEnabled) return E.PASID_EN;
    if (wq.bof && this.pri === null) return E.BOF_EN;
    if (wq.maxXferShift > this.maxTransferShift) return E.MAX_XFER_SIZE;
    if (wq.maxBatchShift > this.maxBatchShift) return E.MAX_BATCH_SIZE;
    wq.enabled = true;
    wq.accepting = true;
    return E.SUCCESS;
  }

  #settleCommand(): void {
    const p = this.#pending;
    if (p === null) return;
    if (this.#current !== null && p.covers(this.#current)) return;
    for (const w of this.wqs) if (w.queue.some(p.covers)) return;
    this.#pending = null;
    p.finish();
    this.#finishCommand(CMDSTS_ERR.SUCCESS, p.intReq);
  }

  #finishCommand(err: number, intReq: boolean): void {
    this.#cmdsts = err;
    if (intReq) this.#intcause |= INTC_CMD;
  }

  /** Drops the covered descriptors, queued or in progress; `pasid` also stops that PASID's PRI. */
  #abort(covers: (job: DsaJob) => boolean, pasid: number | null): void {
    for (const w of this.wqs) {
      for (let i = w.queue.length - 1; i >= 0; i--) {
        if (covers(w.queue[i]!)) {
          w.queue.splice(i, 1);
          this.aborted++;
        }
      }
    }
    const cur = this.#current;
    if (cur !== null && covers(cur)) {
      for (let j: DsaJob | null = cur; j !== null; j = j.sub) j.abandoned = true;
      this.#current = null;
      this.aborted++;
    }
    if (pasid !== null) this.pri?.stopPasid(pasid);
    this.#settleCommand();
    if (this.wqs.some((w) => w.enabled && w.queue.length > 0)) this.kick(this.#work);
  }

  // ---------------------------------------------------------------- views

  /** SWERR as software reads it. */
  get swerr(): {
    valid: boolean;
    overflow: boolean;
    error: number;
    wq: number;
    operation: number;
    pasid: number;
    batch: boolean;
    batchIndex: number;
    write: boolean;
    invalidFlags: number;
    faultAddress: bigint;
  } {
    const e = this.#swerr;
    return {
      valid: (e[0]! & SWERR_VALID) !== 0,
      overflow: (e[0]! & SWERR_OVERFLOW) !== 0,
      error: (e[0]! >>> 8) & 0xff,
      wq: (e[0]! >>> 16) & 0xff,
      operation: e[1]! & 0xff,
      pasid: (e[1]! >>> 8) & 0xf_ffff,
      batch: (e[0]! & SWERR_BATCH) !== 0,
      batchIndex: e[2]! & 0xffff,
      write: (e[0]! & SWERR_FAULT_RW) !== 0,
      invalidFlags: e[3]!,
      faultAddress: (BigInt(e[5]!) << 32n) | BigInt(e[4]!),
    };
  }

  toJSON(): Json {
    const sw = this.swerr;
    const cur = this.#current;
    return {
      ...this.endpointJSON("dsa"),
      registers: {
        GENSTS: this.#enabled ? "enabled" : "disabled",
        INTCAUSE: this.#intcause,
        CMD: this.#cmd,
        CMDSTS: { active: (this.#cmdsts & CMDSTS_ACTIVE) !== 0, err: this.#cmdsts & 0xff },
        SWERR: sw.valid
          ? {
              error: sw.error,
              wq: sw.wq,
              operation: sw.operation,
              pasid: sw.pasid,
              overflow: sw.overflow,
              fault_addr: jsonAddr(sw.faultAddress),
            }
          : null,
      },
      wqs: this.wqs.map((w) => w.toJSON()),
      current:
        cur === null
          ? null
          : {
              wq: cur.wq,
              opcode: cur.opcodeName,
              pasid: cur.pasidValid ? cur.pasid : null,
              progress: cur.progress,
              waiting_for_page: cur.waiting ? jsonAddr(cur.faultAddress) : null,
            },
      counters: {
        completed: this.completed,
        aborted: this.aborted,
        interrupts: this.interrupts,
        page_faults: this.#engine.pageFaults,
        page_requests: this.#engine.pageRequests,
      },
    };
  }
}
