// The page-request queue ("Page-Request-Queue (PQ)"): 16-byte records of PCIe "Page Request"
// and "Stop Marker" messages, written at `pqt`. Full queue → `pqcsr.pqof`; access fault writing
// a record → `pqcsr.pqmf`; while either is set every message is discarded. A new record, or an
// error bit, raises `ipsr.pip` when `pqcsr.pie` is 1. What the IOMMU answers the device on
// failure is decided by the caller from the returned outcome ("PCIe ATS Page Request handling").

import type { Json } from "../../base/json.js";
import type { PageRequestMessage } from "../pci/translation-agent.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import { OutputQueue } from "./output-queue.js";
import { IPSR, QCSR } from "./registers.js";

const RECORD_SIZE = 16;

/**
 * - "queued": written;
 * - "off": the queue is not enabled/on (response failure);
 * - "memory-fault": `pqmf` is set, by this message or before (response failure);
 * - "overflow": `pqof` is set, by this message or before (success).
 */
export type PageRequestOutcome = "queued" | "off" | "memory-fault" | "overflow";

export class PageRequestQueue extends OutputQueue<PageRequestMessage> {
  queued = 0;
  discarded = 0;

  constructor(pasBits: number, mem: ImplicitMemory, be: () => boolean, raise: (b: number) => void) {
    super(pasBits, RECORD_SIZE, IPSR.pip, mem, be, raise);
  }

  /** Writes the record of `msg` (the caller has located the DC and checked EN_PRI). */
  enqueue(msg: PageRequestMessage): PageRequestOutcome {
    if (!this.on) {
      this.discarded++;
      return "off";
    }
    if ((this.csr & QCSR.mf) !== 0) {
      this.discarded++;
      return "memory-fault";
    }
    if ((this.csr & QCSR.bit9) !== 0) {
      this.discarded++;
      return "overflow";
    }
    const outcome = this.push(msg);
    if (outcome === "queued") this.queued++;
    else this.discarded++;
    return outcome;
  }

  protected writeRecord(msg: PageRequestMessage, ppn: number, off: number, be: boolean): boolean {
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
    return (
      this.mem.store64(ppn, off, lo0 >>> 0, hi0 >>> 0, be) &&
      this.mem.store64(ppn, off + 8, lo1 >>> 0, hi1 >>> 0, be)
    );
  }

  toJSON(): Json {
    return {
      pqb: this.base.toJSON(),
      pqh: this.head,
      pqt: this.tail,
      pqcsr: {
        pqen: (this.csr & QCSR.en) !== 0,
        pie: (this.csr & QCSR.ie) !== 0,
        pqmf: (this.csr & QCSR.mf) !== 0,
        pqof: (this.csr & QCSR.bit9) !== 0,
        pqon: this.on,
        busy: false,
      },
      queued: this.queued,
      discarded: this.discarded,
    };
  }
}
