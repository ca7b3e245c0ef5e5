// The IOMMU's side of the two in-memory queues it writes records into, the fault queue
// ("Fault/Event-Queue (FQ)") and the page-request queue ("Page-Request-Queue (PQ)"): records go
// at the tail (`fqt`/`pqt`), software consumes from the head (`fqh`/`pqh`). A full queue sets the
// overflow bit (`fqof`/`pqof`) and a record write that faults sets the memory-fault bit
// (`fqmf`/`pqmf`); either drops the record. A record written, or an error bit set, raises the
// queue's `ipsr` bit (`fip`/`pip`) when its interrupt enable (`fie`/`pie`) is 1.
//
// The queues differ only in their record format and in what they tell the caller about a record
// refused while an error bit is set: each subclass writes its own record (`writeRecord`) and
// checks the error bits itself before `push`.

import type { ImplicitMemory } from "./implicit-memory.js";
import { nextIndex, QueueBase } from "./queue-base.js";
import { QCSR } from "./registers.js";

/** The error bits of `fqcsr`/`pqcsr`: memory fault and overflow. */
const ERRORS = QCSR.mf | QCSR.bit9;

export abstract class OutputQueue<R> {
  readonly base: QueueBase;
  /** `fqh`/`pqh`: written by software. */
  head = 0;
  /** `fqt`/`pqt`: read-only to software. */
  tail = 0;
  /** `fqcsr`/`pqcsr`, bits as in `QCSR`; written only through `writeCsr`. */
  csr = 0;
  protected readonly mem: ImplicitMemory;
  readonly #recordSize: number;
  readonly #ipsrBit: number;
  readonly #be: () => boolean;
  readonly #raise: (bits: number) => void;

  constructor(
    pasBits: number,
    recordSize: number,
    ipsrBit: number,
    mem: ImplicitMemory,
    be: () => boolean,
    raise: (bits: number) => void,
  ) {
    this.base = new QueueBase(pasBits);
    this.mem = mem;
    this.#recordSize = recordSize;
    this.#ipsrBit = ipsrBit;
    this.#be = be;
    this.#raise = raise;
  }

  get on(): boolean {
    return (this.csr & QCSR.on) !== 0;
  }

  /** The queue's `ipsr` bit if it persists (an error bit with the interrupt enable). */
  get conditions(): number {
    return (this.csr & QCSR.ie) !== 0 && (this.csr & ERRORS) !== 0 ? this.#ipsrBit : 0;
  }

  /** Writes the record of `r` at `ppn`/`off` in the byte order `be`; false on an access fault. */
  protected abstract writeRecord(r: R, ppn: number, off: number, be: boolean): boolean;

  /** Writes `r` at the tail; the caller has checked that the queue is on with no error bit. */
  protected push(r: R): "queued" | "overflow" | "memory-fault" {
    const next = nextIndex(this.tail, this.base.entries);
    if (next === this.head) {
      this.csr |= QCSR.bit9; // fqof / pqof
      this.#raise(this.conditions);
      return "overflow";
    }
    const size = this.#recordSize;
    const ppn = this.base.pageOf(this.tail, size);
    const off = this.base.offsetOf(this.tail, size);
    if (!this.writeRecord(r, ppn, off, this.#be())) {
      this.csr |= QCSR.mf; // fqmf / pqmf
      this.#raise(this.conditions);
      return "memory-fault";
    }
    this.tail = next;
    if ((this.csr & QCSR.ie) !== 0) this.#raise(this.#ipsrBit);
    return "queued";
  }

  writeBase(half: 0 | 1, value: number): void {
    if ((this.csr & (QCSR.on | QCSR.busy)) !== 0) return; // UNSPECIFIED while on: ignored
    this.base.write(half, value);
    this.head &= this.base.indexMask;
    this.tail &= this.base.indexMask;
  }

  writeHead(value: number): void {
    this.head = (value & this.base.indexMask) >>> 0;
  }

  writeCsr(value: number): void {
    const wasEn = (this.csr & QCSR.en) !== 0;
    const en = (value & QCSR.en) !== 0;
    let csr = this.csr & ~(QCSR.en | QCSR.ie);
    csr |= value & (QCSR.en | QCSR.ie);
    csr &= ~(value & ERRORS); // RW1C
    if (en && !wasEn) {
      this.tail = 0;
      csr &= ~ERRORS;
      csr |= QCSR.on;
    } else if (!en && wasEn) {
      csr &= ~QCSR.on;
    }
    this.csr = csr >>> 0;
    this.#raise(this.conditions);
  }
}
