// The page-request queue ("Page-Request-Queue (PQ)"): 16-byte records of PCIe "Page Request"
// and "Stop Marker" messages, written at `pqt`. Full queue → `pqcsr.pqof`; access fault writing
// a record → `pqcsr.pqmf`; while either is set every message is discarded. A new record, or an
// error bit, raises `ipsr.pip` when `pqcsr.pie` is 1. What the IOMMU answers the device on
// failure is decided by the caller from the returned outcome ("PCIe ATS Page Request handling").

import type { Json } from "../../base/json.js";
import type { PageRequestMessage } from "../pci/translation-agent.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import { nextIndex, QueueBase } from "./queue-base.js";
import { IPSR, QCSR } from "./registers.js";

const RECORD_SIZE = 16;

/**
 * - "queued": written;
 * - "off": the queue is not enabled/on (response failure);
 * - "memory-fault": `pqmf` is set, by this message or before (response failure);
 * - "overflow": `pqof` is set, by this message or before (success).
 */
export type PageRequestOutcome = "queued" | "off" | "memory-fault" | "overflow";

export class PageRequestQueue {
  readonly base: QueueBase;
  pqh = 0;
  pqt = 0;
  pqcsr = 0;
  queued = 0;
  discarded = 0;
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
    return (this.pqcsr & QCSR.on) !== 0 && (this.pqcsr & QCSR.en) !== 0;
  }

  get conditions(): number {
    return (this.pqcsr & QCSR.ie) !== 0 && (this.pqcsr & (QCSR.mf | QCSR.bit9)) !== 0
      ? IPSR.pip
      : 0;
  }

  /** Writes the record of `msg` (the caller has located the DC and checked EN_PRI). */
  enqueue(msg: PageRequestMessage): PageRequestOutcome {
    if (!this.on) {
      this.discarded++;
      return "off";
    }
    if ((this.pqcsr & QCSR.mf) !== 0) {
      this.discarded++;
      return "memory-fault";
    }
    if ((this.pqcsr & QCSR.bit9) !== 0) {
      this.discarded++;
      return "overflow";
    }
    const next = nextIndex(this.pqt, this.base.entries);
    if (next === this.pqh) {
      this.pqcsr |= QCSR.bit9; // pqof
      this.discarded++;
      this.#raise(this.conditions);
      return "overflow";
    }
    // Header: PID 31:12, PV 32, PRIV 33, EXEC 34, DID 63:40. PRIV and EXEC are 0 without PASID.
    const pv = msg.pasidValid;
    const lo0 = pv ? (msg.pasid & 0xf_ffff) << 12 : 0;
    const hi0 =
      (pv ? 1 : 0) |
      (pv && msg.privileged ? 2 : 0) |
      (pv && msg.execute ? 4 : 0) |
      ((msg.deviceId & 0xff_ffff) << 8);
    // Payload: R 0, W 1, L 2, PRGI 11:3, page address 63:12.
    const lo1 =
      (msg.read ? 1 : 0) |
      (msg.write ? 2 : 0) |
      (msg.last ? 4 : 0) |
      ((msg.prgIndex & 0x1ff) << 3) |
      ((msg.page % 0x10_0000) << 12);
    const hi1 = Math.floor(msg.page / 0x10_0000);
    const ppn = this.base.pageOf(this.pqt, RECORD_SIZE);
    const off = this.base.offsetOf(this.pqt, RECORD_SIZE);
    const be = this.#be();
    const ok =
      this.#mem.store64(ppn, off, lo0 >>> 0, hi0 >>> 0, be) &&
      this.#mem.store64(ppn, off + 8, lo1 >>> 0, hi1 >>> 0, be);
    if (!ok) {
      this.pqcsr |= QCSR.mf; // pqmf
      this.discarded++;
      this.#raise(this.conditions);
      return "memory-fault";
    }
    this.pqt = next;
    this.queued++;
    if ((this.pqcsr & QCSR.ie) !== 0) this.#raise(IPSR.pip);
    return "queued";
  }

  writeBase(half: 0 | 1, value: number): void {
    if ((this.pqcsr & (QCSR.on | QCSR.busy)) !== 0) return; // UNSPECIFIED while on: ignored
    this.base.write(half, value);
    this.pqh &= this.base.indexMask;
    this.pqt &= this.base.indexMask;
  }

  writeHead(value: number): void {
    this.pqh = (value & this.base.indexMask) >>> 0;
  }

  writeCsr(value: number): void {
    const wasEn = (this.pqcsr & QCSR.en) !== 0;
    const en = (value & QCSR.en) !== 0;
    let csr = this.pqcsr & ~(QCSR.en | QCSR.ie);
    csr |= value & (QCSR.en | QCSR.ie);
    csr &= ~(value & (QCSR.mf | QCSR.bit9)); // pqmf, pqof: RW1C
    if (en && !wasEn) {
      this.pqt = 0;
      csr &= ~(QCSR.mf | QCSR.bit9);
      csr |= QCSR.on;
    } else if (!en && wasEn) {
      csr &= ~QCSR.on;
    }
    this.pqcsr = csr >>> 0;
    this.#raise(this.conditions);
  }

  toJSON(): Json {
    return {
      pqb: this.base.toJSON(),
      pqh: this.pqh,
      pqt: this.pqt,
      pqcsr: {
        pqen: (this.pqcsr & QCSR.en) !== 0,
        pie: (this.pqcsr & QCSR.ie) !== 0,
        pqmf: (this.pqcsr & QCSR.mf) !== 0,
        pqof: (this.pqcsr & QCSR.bit9) !== 0,
        pqon: (this.pqcsr & QCSR.on) !== 0,
        busy: false,
      },
      queued: this.queued,
      discarded: this.discarded,
    };
  }
}
