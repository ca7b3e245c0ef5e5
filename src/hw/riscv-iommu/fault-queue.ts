// The fault/event queue ("Fault/Event-Queue (FQ)"): the IOMMU writes 32-byte fault records at
// `fqt`; software consumes from `fqh`. Full queue → `fqcsr.fqof`, record dropped; access fault
// writing a record → `fqcsr.fqmf`, record dropped; while either is set every record is dropped.
// A new record, or an error bit, raises `ipsr.fip` when `fqcsr.fie` is 1.

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";
import { faultOfCause } from "./faults.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import { nextIndex, QueueBase } from "./queue-base.js";
import { IPSR, QCSR } from "./registers.js";

const RECORD_SIZE = 32;

/** One fault record's fields; iotval/iotval2 as 32-bit halves. Reused by its owner. */
export class FaultRecord {
  cause = 0;
  ttyp = 0;
  did = 0;
  pid = 0;
  pv = false;
  priv = false;
  iotvalLo = 0;
  iotvalHi = 0;
  iotval2Lo = 0;
  iotval2Hi = 0;

  clear(): this {
    this.cause = 0;
    this.ttyp = 0;
    this.did = 0;
    this.pid = 0;
    this.pv = false;
    this.priv = false;
    this.iotvalLo = 0;
    this.iotvalHi = 0;
    this.iotval2Lo = 0;
    this.iotval2Hi = 0;
    return this;
  }

  /** Sets iotval from a page number and offset. */
  setIotval(page: number, offset: number): this {
    this.iotvalLo = (((page % 0x10_0000) * 4096) | offset) >>> 0;
    this.iotvalHi = Math.floor(page / 0x10_0000) >>> 0;
    return this;
  }

  /** Sets iotval2 from a guest page, offset (bits 1:0 replaced) and the implicit-access flags. */
  setIotval2(page: number, offset: number, implicit: boolean, implicitWrite: boolean): this {
    const flags = implicit ? 1 | (implicitWrite ? 2 : 0) : 0;
    this.iotval2Lo = (((page % 0x10_0000) * 4096) | (offset & 0xffc) | flags) >>> 0;
    this.iotval2Hi = Math.floor(page / 0x10_0000) >>> 0;
    return this;
  }

  get iotval(): bigint {
    return (BigInt(this.iotvalHi) << 32n) | BigInt(this.iotvalLo);
  }

  get iotval2(): bigint {
    return (BigInt(this.iotval2Hi) << 32n) | BigInt(this.iotval2Lo);
  }

  toJSON(): Json {
    return {
      cause: this.cause,
      code: faultOfCause(this.cause)?.code ?? null,
      ttyp: this.ttyp,
      did: this.did,
      pid: this.pid,
      pv: this.pv,
      priv: this.priv,
      iotval: hex(this.iotval),
      iotval2: hex(this.iotval2),
    };
  }
}

/** What happened to a record handed to the queue. */
export type FaultQueueOutcome = "queued" | "off" | "dropped" | "overflow" | "memory-fault";

export class FaultQueue {
  readonly base: QueueBase;
  fqh = 0;
  fqt = 0;
  fqcsr = 0;
  /** Records queued, and dropped (off, error state, overflow, memory fault). */
  queued = 0;
  dropped = 0;
  readonly #mem: ImplicitMemory;
  readonly #be: () => boolean;
  readonly #raise: (bits: number) => void;

  constructor(pasBits: number, mem: ImplicitMemory, be: () => boolean, raise: (b: number) => void) {
    this.base = new QueueBase(pasBits);
    this.#mem = mem;
    this.#be = be;
    this.#raise = raise;
  }

  get on(): boolean {
    return (this.fqcsr & QCSR.on) !== 0;
  }

  /** `ipsr.fip` conditions that persist (error bits with `fie`). */
  get conditions(): number {
    return (this.fqcsr & QCSR.ie) !== 0 && (this.fqcsr & (QCSR.mf | QCSR.bit9)) !== 0
      ? IPSR.fip
      : 0;
  }

  /** Queues a record (written in the spec's format at `fqt`). */
  report(r: FaultRecord): FaultQueueOutcome {
    if (!this.on) {
      this.dropped++;
      return "off";
    }
    if ((this.fqcsr & (QCSR.mf | QCSR.bit9)) !== 0) {
      this.dropped++;
      return "dropped";
    }
    const entries = this.base.entries;
    const next = nextIndex(this.fqt, entries);
    if (next === this.fqh) {
      this.fqcsr |= QCSR.bit9; // fqof
      this.dropped++;
      this.#raise(this.conditions);
      return "overflow";
    }
    const ppn = this.base.pageOf(this.fqt, RECORD_SIZE);
    const off = this.base.offsetOf(this.fqt, RECORD_SIZE);
    const be = this.#be();
    const lo0 = (r.cause & 0xfff) | ((r.pid & 0xf_ffff) << 12);
    const hi0 =
      (r.pv ? 1 : 0) | (r.priv ? 2 : 0) | ((r.ttyp & 0x3f) << 2) | ((r.did & 0xff_ffff) << 8);
    const ok =
      this.#mem.store64(ppn, off, lo0 >>> 0, hi0 >>> 0, be) &&
      this.#mem.store64(ppn, off + 8, 0, 0, be) &&
      this.#mem.store64(ppn, off + 16, r.iotvalLo, r.iotvalHi, be) &&
      this.#mem.store64(ppn, off + 24, r.iotval2Lo, r.iotval2Hi, be);
    if (!ok) {
      this.fqcsr |= QCSR.mf; // fqmf
      this.dropped++;
      this.#raise(this.conditions);
      return "memory-fault";
    }
    this.fqt = next;
    this.queued++;
    if ((this.fqcsr & QCSR.ie) !== 0) this.#raise(IPSR.fip);
    return "queued";
  }

  writeBase(half: 0 | 1, value: number): void {
    if ((this.fqcsr & (QCSR.on | QCSR.busy)) !== 0) return; // UNSPECIFIED while on: ignored
    this.base.write(half, value);
    this.fqh &= this.base.indexMask;
    this.fqt &= this.base.indexMask;
  }

  writeHead(value: number): void {
    this.fqh = (value & this.base.indexMask) >>> 0;
  }

  writeCsr(value: number): void {
    const wasEn = (this.fqcsr & QCSR.en) !== 0;
    const en = (value & QCSR.en) !== 0;
    let csr = this.fqcsr & ~(QCSR.en | QCSR.ie);
    csr |= value & (QCSR.en | QCSR.ie);
    csr &= ~(value & (QCSR.mf | QCSR.bit9)); // fqmf, fqof: RW1C
    if (en && !wasEn) {
      this.fqt = 0;
      csr &= ~(QCSR.mf | QCSR.bit9);
      csr |= QCSR.on;
    } else if (!en && wasEn) {
      csr &= ~QCSR.on;
    }
    this.fqcsr = csr >>> 0;
    this.#raise(this.conditions);
  }

  toJSON(): Json {
    return {
      fqb: this.base.toJSON(),
      fqh: this.fqh,
      fqt: this.fqt,
      fqcsr: {
        fqen: (this.fqcsr & QCSR.en) !== 0,
        fie: (this.fqcsr & QCSR.ie) !== 0,
        fqmf: (this.fqcsr & QCSR.mf) !== 0,
        fqof: (this.fqcsr & QCSR.bit9) !== 0,
        fqon: this.on,
        busy: false,
      },
      queued: this.queued,
      dropped: this.dropped,
    };
  }
}
