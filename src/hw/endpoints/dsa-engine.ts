// The DSA-like engine's descriptor processing: one descriptor at a time, resumable.
//
// What it models (a simplified but honest DSA):
// - Opcodes noop, drain, memmove (overlap-safe: a destination above an overlapping source is
//   copied downward, and a partial completion then reports Result = 1), memfill (8-byte pattern),
//   compare (Result 0/1, Bytes Completed = offset of the first difference; with Check Result a
//   Result other than Expected Result completes as Success with False Predicate), compval
//   (against an 8-byte pattern), and batch (2..max descriptors from a 64-byte aligned list, each
//   with its own completion record, the batch's PASID; a fenced descriptor after a failed one
//   ends the batch, which then completes with Batch Fail; a batch inside a batch is a bad opcode).
// - Data moves in chunks that never cross a page of either buffer; each chunk's reads and writes
//   go through the device's DMA front end (ATC/ATS when enabled, else Untranslated requests).
// - Page faults: with Block On Fault (descriptor flag, allowed by the WQ, PRI usable) the engine
//   sends a Page Request for the faulting page and waits; Success → the chunk is retried;
//   Invalid Request / Response Failure → partial completion "page fault, invalid response"
//   (status 0x04). Without Block On Fault the descriptor ends at once with a partial completion
//   (status 0x03). Both carry Bytes Completed and the fault address, and status bit 7 for a
//   write. A fault reading a batch's descriptor list is Batch Page Fault (0x06).
// - Aborts that paging cannot fix: Translation Fail (0x22) when the IOMMU refused (CA/UR to a
//   request or a Translation Request), Hardware Error (0x20) for fabric errors.
// - Completion records (32 bytes, 32-byte aligned) are written through the IOMMU with the
//   descriptor's PASID when Request Completion Record is set, or on any error when the address is
//   valid; a record that cannot be written (or a misaligned address) goes to SWERR instead.
// Not modelled: engines and groups (one engine serves all WQs in turn), traffic classes, cache
// control (a hint), interrupt handles (a completion interrupt is counted), DIF, CRC, delta ops.

import { PAGE_SIZE } from "../../base/bits.js";
import type { TraceBus } from "../../base/trace.js";
import type { DeviceDma } from "./device-dma.js";
import {
  CR,
  CR_SIZE,
  DESC,
  DESC_SIZE,
  DSA_COMP,
  DSA_COMP_STATUS_WRITE,
  DSA_OPCODE,
  DSA_OPCODE_NAMES,
  IDXD_OP_FLAG,
  SUPPORTED_FLAGS,
} from "./dsa-regs.js";
import type { PageRequestInterface, PrgOutcome } from "./pri.js";

const TWO20 = 0x10_0000;
const TWO32 = 0x1_0000_0000;

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** A submitted descriptor and its progress. */
export class DsaJob {
  readonly wq: number;
  readonly pasidValid: boolean;
  readonly pasid: number;
  readonly priv: boolean;
  readonly desc: Uint8Array;
  readonly opcode: number;
  readonly flags: number;
  /** The batch this descriptor belongs to, or null. */
  readonly parent: DsaJob | null;
  /** Index in the parent batch. */
  readonly batchIndex: number;
  // ---- progress ----
  /** "execute" the operation, then write the "completion" record. */
  stage: "execute" | "completion" = "execute";
  checked = false;
  progress = 0;
  descending = false;
  status: number = DSA_COMP.NONE;
  result = 0;
  bytes = 0;
  invalidFlags = 0;
  faultPage = 0;
  faultOffset = 0;
  faultWrite = false;
  /** The fault was reading a batch's descriptor list. */
  listFault = false;
  /** Waiting for a PRG Response; the outcome once it arrived. */
  waiting = false;
  outcome: PrgOutcome | null = null;
  /** Aborted: late responses are ignored and no record is written. */
  abandoned = false;
  // ---- batch ----
  next = 0;
  failed = false;
  sub: DsaJob | null = null;

  constructor(
    wq: number,
    pasidValid: boolean,
    pasid: number,
    priv: boolean,
    desc: Uint8Array,
    parent: DsaJob | null = null,
    batchIndex = 0,
  ) {
    this.wq = wq;
    this.pasidValid = pasidValid;
    this.pasid = pasidValid ? pasid : 0;
    this.priv = priv;
    this.desc = desc;
    const fo = u32(desc, DESC.FLAGS_OPCODE);
    this.flags = fo & 0xff_ffff;
    this.opcode = fo >>> 24;
    this.parent = parent;
    this.batchIndex = batchIndex;
  }

  get opcodeName(): string {
    return DSA_OPCODE_NAMES[this.opcode] ?? `0x${this.opcode.toString(16)}`;
  }

  /** Low and high halves of the 64-bit field at `at`. */
  lo(at: number): number {
    return u32(this.desc, at);
  }

  hi(at: number): number {
    return u32(this.desc, at + 4);
  }

  /** Page number and offset of the address field at `at`, plus `delta` bytes. */
  page(at: number, delta = 0): number {
    const lo = this.lo(at);
    return this.hi(at) * TWO20 + (lo >>> 12) + Math.floor(((lo & 0xfff) + delta) / PAGE_SIZE);
  }

  offset(at: number, delta = 0): number {
    return ((this.lo(at) & 0xfff) + delta) % PAGE_SIZE;
  }

  address(at: number): bigint {
    return (BigInt(this.hi(at)) << 32n) | BigInt(this.lo(at));
  }

  get size(): number {
    return this.lo(DESC.SIZE);
  }

  get faultAddress(): bigint {
    return (BigInt(this.faultPage) << 12n) | BigInt(this.faultOffset);
  }
}

/** What the engine needs from its device. */
export interface DsaEngineEnv {
  readonly name: string;
  readonly trace: TraceBus;
  readonly dma: DeviceDma;
  readonly pri: PageRequestInterface | null;
  /** WQCFG.bof of `wq`. */
  wqBlockOnFault(wq: number): boolean;
  /** PRS allowed for `wq` (not WQCFG.wq_prs_disable). */
  wqPageRequests(wq: number): boolean;
  wqMaxTransfer(wq: number): number;
  wqMaxBatch(wq: number): number;
  /** PASID capability: Privileged Mode Enable. */
  privilegedAllowed(): boolean;
  /** Reports an error that no completion record can carry. */
  softwareError(job: DsaJob, error: number, faultWrite: boolean, faultAddress: bigint): void;
  /** Schedules the engine (a PRG Response arrived). */
  kick(): void;
  completionInterrupt(job: DsaJob): void;
}

export type StepResult = "done" | "blocked";

export class DsaEngine {
  readonly #env: DsaEngineEnv;
  readonly #a = new Uint8Array(PAGE_SIZE);
  readonly #b = new Uint8Array(PAGE_SIZE);
  readonly #record = new Uint8Array(CR_SIZE);
  pageRequests = 0;
  pageFaults = 0;

  constructor(env: DsaEngineEnv) {
    this.#env = env;
  }

  /** Advances `job` as far as it can go: to its end, or until it waits for a PRG Response. */
  run(job: DsaJob): StepResult {
    if (job.waiting) {
      if (job.outcome === null) return "blocked";
      const outcome = job.outcome;
      job.waiting = false;
      job.outcome = null;
      if (outcome !== "success") {
        if (job.stage === "completion") {
          // The record's page could not be made present.
          this.#env.softwareError(job, DSA_COMP.CRA_XLAT, true, job.faultAddress);
          return "done";
        }
        this.#pageFaultCompletion(
          job,
          job.listFault ? DSA_COMP.BATCH_PAGE_FAULT : DSA_COMP.PAGE_FAULT_IR,
        );
      }
    }
    if (job.stage === "execute") {
      if (this.#execute(job) === "blocked") return "blocked";
      job.stage = "completion";
    }
    return this.#complete(job);
  }

  // ---------------------------------------------------------------- operations

  #execute(job: DsaJob): StepResult {
    if (job.status !== DSA_COMP.NONE) return "done"; // settled by a failed page request
    if (!job.checked) {
      job.checked = true;
      const bad = this.#check(job);
      if (bad !== DSA_COMP.NONE) {
        job.status = bad;
        return "done";
      }
    }
    switch (job.opcode) {
      case DSA_OPCODE.NOOP:
      case DSA_OPCODE.DRAIN:
        // One engine completes descriptors in order: earlier ones are done already.
        job.status = DSA_COMP.SUCCESS;
        return "done";
      case DSA_OPCODE.MEMMOVE:
        return this.#memmove(job);
      case DSA_OPCODE.MEMFILL:
        return this.#memfill(job);
      case DSA_OPCODE.COMPARE:
      case DSA_OPCODE.COMPVAL:
        return this.#compare(job);
      default:
        return this.#batch(job);
    }
  }

  /** Descriptor checks before execution; the status of the first failing one, or NONE. */
  #check(job: DsaJob): number {
    const env = this.#env;
    if (job.pasidValid && job.priv && !env.privilegedAllowed()) return DSA_COMP.PRIV_BAD;
    const op = job.opcode;
    if (op > DSA_OPCODE.COMPVAL || (op === DSA_OPCODE.BATCH && job.parent !== null)) {
      return DSA_COMP.BAD_OPCODE;
    }
    let invalid = job.flags & ~SUPPORTED_FLAGS;
    if (job.flags & IDXD_OP_FLAG.RCR && !(job.flags & IDXD_OP_FLAG.CRAV))
      invalid |= IDXD_OP_FLAG.RCR;
    if (job.flags & IDXD_OP_FLAG.BOF && !env.wqBlockOnFault(job.wq)) invalid |= IDXD_OP_FLAG.BOF;
    if (invalid !== 0) {
      job.invalidFlags = invalid;
      return DSA_COMP.INVALID_FLAGS;
    }
    if (op === DSA_OPCODE.BATCH) {
      if (job.size < 2 || job.size > env.wqMaxBatch(job.wq)) return DSA_COMP.DESC_CNT_ERANGE;
      if (job.lo(DESC.ADDR1) % DESC_SIZE !== 0) return DSA_COMP.DESCLIST_ALIGN;
    } else if (op >= DSA_OPCODE.MEMMOVE) {
      if (job.size === 0 || job.size > env.wqMaxTransfer(job.wq)) return DSA_COMP.XFER_ERANGE;
    }
    if (op === DSA_OPCODE.MEMMOVE) {
      // dst - src in (0, size): the destination starts inside the source. From the 32-bit
      // halves: exact while the high halves differ by at most 2^20, and beyond that far larger
      // than any size with the right sign.
      const diff =
        (job.hi(DESC.ADDR2) - job.hi(DESC.ADDR1)) * TWO32 +
        (job.lo(DESC.ADDR2) - job.lo(DESC.ADDR1));
      job.descending = diff > 0 && diff < job.size;
    }
    return DSA_COMP.NONE;
  }

  #memmove(job: DsaJob): StepResult {
    const size = job.size;
    const buf = this.#a;
    while (job.progress < size) {
      let pos: number;
      let n: number;
      if (!job.descending) {
        pos = job.progress;
        n = Math.min(
          size - pos,
          PAGE_SIZE - job.offset(DESC.ADDR1, pos),
          PAGE_SIZE - job.offset(DESC.ADDR2, pos),
        );
      } else {
        const end = size - job.progress;
        n = Math.min(
          end,
          backRoom(job.offset(DESC.ADDR1, end)),
          backRoom(job.offset(DESC.ADDR2, end)),
        );
        pos = end - n;
      }
      if (
        !this.#dma(job, false, DESC.ADDR1, pos, buf, n) ||
        !this.#dma(job, true, DESC.ADDR2, pos, buf, n)
      ) {
        job.result = job.descending ? 1 : 0;
        return this.#fault(job);
      }
      job.progress += n;
    }
    job.status = DSA_COMP.SUCCESS;
    return "done";
  }

  #memfill(job: DsaJob): StepResult {
    const size = job.size;
    const buf = this.#a;
    const pattern = job.desc.subarray(DESC.ADDR1, DESC.ADDR1 + 8);
    while (job.progress < size) {
      const pos = job.progress;
      const n = Math.min(size - pos, PAGE_SIZE - job.offset(DESC.ADDR2, pos));
      for (let i = 0; i < n; i++) buf[i] = pattern[(pos + i) & 7]!;
      if (!this.#dma(job, true, DESC.ADDR2, pos, buf, n)) {
        return this.#fault(job);
      }
      job.progress += n;
    }
    job.status = DSA_COMP.SUCCESS;
    return "done";
  }

  /** compare (source 1 against source 2) and compval (source against an 8-byte pattern). */
  #compare(job: DsaJob): StepResult {
    const size = job.size;
    const a = this.#a;
    const b = this.#b;
    const val = job.opcode === DSA_OPCODE.COMPVAL;
    const pattern = job.desc.subarray(DESC.ADDR2, DESC.ADDR2 + 8);
    while (job.progress < size) {
      const pos = job.progress;
      let n = Math.min(size - pos, PAGE_SIZE - job.offset(DESC.ADDR1, pos));
      if (!val) n = Math.min(n, PAGE_SIZE - job.offset(DESC.ADDR2, pos));
      if (!this.#dma(job, false, DESC.ADDR1, pos, a, n)) {
        return this.#fault(job);
      }
      if (val) {
        for (let i = 0; i < n; i++) b[i] = pattern[(pos + i) & 7]!;
      } else if (!this.#dma(job, false, DESC.ADDR2, pos, b, n)) {
        return this.#fault(job);
      }
      for (let i = 0; i < n; i++) {
        if (a[i] !== b[i]) {
          job.result = 1;
          job.bytes = pos + i;
          return this.#compareDone(job);
        }
      }
      job.progress += n;
    }
    job.result = 0;
    job.bytes = 0;
    return this.#compareDone(job);
  }

  #compareDone(job: DsaJob): StepResult {
    const check = (job.flags & IDXD_OP_FLAG.CR) !== 0;
    job.status =
      check && job.result !== job.desc[DESC.EXPECTED_RES]!
        ? DSA_COMP.SUCCESS_PRED
        : DSA_COMP.SUCCESS;
    return "done";
  }

  #batch(job: DsaJob): StepResult {
    const count = job.size;
    while (job.next < count) {
      if (job.sub === null) {
        const desc = new Uint8Array(DESC_SIZE);
        const at = job.next * DESC_SIZE;
        if (!this.#dma(job, false, DESC.ADDR1, at, desc, DESC_SIZE)) {
          return this.#fault(job, DSA_COMP.BATCH_PAGE_FAULT);
        }
        const sub = new DsaJob(job.wq, job.pasidValid, job.pasid, job.priv, desc, job, job.next);
        if (sub.flags & IDXD_OP_FLAG.FENCE && job.failed) break; // the rest is abandoned
        job.sub = sub;
      }
      if (this.run(job.sub) === "blocked") return "blocked";
      if (job.sub.status !== DSA_COMP.SUCCESS) job.failed = true;
      job.sub = null;
      job.next++;
    }
    job.bytes = job.next;
    job.status = job.failed ? DSA_COMP.BATCH_FAIL : DSA_COMP.SUCCESS;
    return "done";
  }

  /**
   * Moves `n` bytes between `buf` and the address in `job`'s descriptor field `field` plus `at`,
   * as `job`'s requester (its PASID and privilege); false on failure (see `DeviceDma.fault*`).
   */
  #dma(
    job: DsaJob,
    write: boolean,
    field: number,
    at: number,
    buf: Uint8Array,
    n: number,
  ): boolean {
    const page = job.page(field, at);
    const offset = job.offset(field, at);
    return this.#env.dma.access(
      write,
      job.pasidValid,
      job.pasid,
      job.priv,
      page,
      offset,
      buf,
      0,
      n,
    );
  }

  // ---------------------------------------------------------------- faults

  /**
   * The DMA front end failed: wait for PRI, or end the descriptor. `pageFaultStatus` is the
   * status of a page fault that is not waited for (Batch Page Fault for a descriptor list).
   */
  #fault(job: DsaJob, pageFaultStatus: number = DSA_COMP.PAGE_FAULT_NOBOF): StepResult {
    const dma = this.#env.dma;
    job.listFault = pageFaultStatus === DSA_COMP.BATCH_PAGE_FAULT;
    job.faultPage = dma.faultPage;
    job.faultOffset = dma.faultOffset;
    job.faultWrite = dma.faultWrite;
    if (dma.faultKind === "page-fault") {
      this.pageFaults++;
      if (this.#requestPage(job)) return "blocked";
      this.#pageFaultCompletion(job, pageFaultStatus);
      return "done";
    }
    job.status = dma.faultByIommu ? DSA_COMP.TRANSLATION_FAIL : DSA_COMP.HW_ERR1;
    job.bytes = pageFaultStatus === DSA_COMP.BATCH_PAGE_FAULT ? job.next : job.progress;
    return "done";
  }

  /** Sends a Page Request when Block On Fault applies; true when the job now waits. */
  #requestPage(job: DsaJob): boolean {
    const env = this.#env;
    const pri = env.pri;
    if (!(job.flags & IDXD_OP_FLAG.BOF) || pri === null || !env.wqPageRequests(job.wq)) {
      return false;
    }
    job.waiting = true;
    job.outcome = null;
    const sent = pri.request({
      pasidValid: job.pasidValid,
      pasid: job.pasid,
      privileged: job.priv,
      page: job.faultPage,
      read: true,
      write: job.faultWrite,
      execute: false,
      done: (outcome) => {
        if (job.abandoned) return;
        job.outcome = outcome;
        env.kick();
      },
    });
    if (sent === "unavailable") {
      job.waiting = false;
      return false;
    }
    this.pageRequests++;
    return true;
  }

  #pageFaultCompletion(job: DsaJob, status: number): void {
    job.status = status | (job.faultWrite ? DSA_COMP_STATUS_WRITE : 0);
    job.bytes = job.listFault ? job.next : job.progress;
  }

  // ---------------------------------------------------------------- completion

  /** Writes the completion record if one is due; may wait on a page request for its page. */
  #complete(job: DsaJob): StepResult {
    const env = this.#env;
    const status = job.status;
    const success = status === DSA_COMP.SUCCESS || status === DSA_COMP.SUCCESS_PRED;
    // A privilege the device may not use cannot write the record either.
    const crav = (job.flags & IDXD_OP_FLAG.CRAV) !== 0 && status !== DSA_COMP.PRIV_BAD;
    const wanted = crav && ((job.flags & IDXD_OP_FLAG.RCR) !== 0 || !success);
    if (wanted) {
      if (job.lo(DESC.COMPLETION_ADDR) % CR_SIZE !== 0) {
        env.softwareError(job, DSA_COMP.CRA_ALIGN, false, 0n);
      } else if (!this.#writeRecord(job)) {
        const dma = env.dma;
        job.faultPage = dma.faultPage;
        job.faultOffset = dma.faultOffset;
        job.faultWrite = true;
        if (dma.faultKind === "page-fault" && this.#requestPage(job)) return "blocked";
        env.softwareError(job, DSA_COMP.CRA_XLAT, true, job.faultAddress);
      }
    } else if (!success) {
      // An error with nowhere to report it.
      env.softwareError(job, status, job.faultWrite, job.faultAddress);
    }
    if (job.flags & IDXD_OP_FLAG.RCI) env.completionInterrupt(job);
    if (env.trace.enabled) {
      const pf =
        (status & 0x7f) === DSA_COMP.PAGE_FAULT_NOBOF || (status & 0x7f) === DSA_COMP.PAGE_FAULT_IR;
      env.trace.emit("device:descriptor", env.name, {
        wq: job.wq,
        opcode: job.opcodeName,
        pasid: job.pasidValid ? job.pasid : null,
        status,
        bytes: job.bytes,
        fault_addr: pf || (status & 0x7f) === DSA_COMP.BATCH_PAGE_FAULT ? job.faultAddress : null,
      });
    }
    return "done";
  }

  #writeRecord(job: DsaJob): boolean {
    const r = this.#record;
    r.fill(0);
    const status = job.status;
    r[CR.STATUS] = status;
    r[CR.RESULT] = job.result;
    putU32(r, CR.BYTES_COMPLETED, job.bytes);
    const code = status & 0x7f;
    if (
      code === DSA_COMP.PAGE_FAULT_NOBOF ||
      code === DSA_COMP.PAGE_FAULT_IR ||
      code === DSA_COMP.BATCH_PAGE_FAULT
    ) {
      const hi = Math.floor(job.faultPage / TWO20);
      const lo = ((job.faultPage % TWO20) * PAGE_SIZE + job.faultOffset) >>> 0;
      putU32(r, CR.FAULT_ADDR, lo);
      putU32(r, CR.FAULT_ADDR + 4, hi);
    }
    putU32(r, CR.INVALID_FLAGS, job.invalidFlags);
    return this.#dma(job, true, DESC.COMPLETION_ADDR, 0, r, CR_SIZE);
  }
}

/** Bytes available going down from offset `o` (exclusive end) within its page. */
function backRoom(o: number): number {
  return o === 0 ? PAGE_SIZE : o;
}

function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}
