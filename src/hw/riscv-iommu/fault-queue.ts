// The fault/event queue ("Fault/Event-Queue (FQ)"): the IOMMU writes 32-byte fault records at
// `fqt`; software consumes from `fqh`. Full queue → `fqcsr.fqof`, record dropped; access fault
// writing a record → `fqcsr.fqmf`, record dropped; while either is set every record is dropped.
// A new record, or an error bit, raises `ipsr.fip` when `fqcsr.fie` is 1.

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";
import { faultOfCause } from "./faults.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import { OutputQueue } from "./output-queue.js";
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

export class FaultQueue extends OutputQueue<FaultRecord> {
  /** Records queued, and dropped (off, error state, overflow, memory fault). */
  queued = 0;
  dropped = 0;

  constructor(pasBits: number, mem: ImplicitMemory, be: () => boolean, raise: (b: number) => void) {
    super(pasBits, RECORD_SIZE, IPSR.fip, mem, be, raise);
  }

  /** Queues a record (written in the spec's format at `fqt`). */
  report(r: FaultRecord): FaultQueueOutcome {
    if (!this.on) {
      this.dropped++;
      return "off";
    }
    if ((this.csr & (QCSR.mf | QCSR.bit9)) !== 0) {
      this.dropped++;
      return "dropped";
    }
    const outcome = this.push(r);
    if (outcome === "queued") this.queued++;
    else this.dropped++;
    return outcome;
  }

  protected writeRecord(r: FaultRecord, ppn: number, off: number, be: boolean): boolean {
    const lo0 = (r.cause & 0xfff) | ((r.pid & 0xf_ffff) << 12);
    const hi0 =
      (r.pv ? 1 : 0) | (r.priv ? 2 : 0) | ((r.ttyp & 0x3f) << 2) | ((r.did & 0xff_ffff) << 8);
    return (
      this.mem.store64(ppn, off, lo0 >>> 0, hi0 >>> 0, be) &&
      this.mem.store64(ppn, off + 8, 0, 0, be) &&
      this.mem.store64(ppn, off + 16, r.iotvalLo, r.iotvalHi, be) &&
      this.mem.store64(ppn, off + 24, r.iotval2Lo, r.iotval2Hi, be)
    );
  }

  toJSON(): Json {
    return {
      fqb: this.base.toJSON(),
      fqh: this.head,
      fqt: this.tail,
      fqcsr: {
        fqen: (this.csr & QCSR.en) !== 0,
        fie: (this.csr & QCSR.ie) !== 0,
        fqmf: (this.csr & QCSR.mf) !== 0,
        fqof: (this.csr & QCSR.bit9) !== 0,
        fqon: this.on,
        busy: false,
      },
      queued: this.queued,
      dropped: this.dropped,
    };
  }
}
