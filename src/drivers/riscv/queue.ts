// The driver side of the three in-memory queues (riscv_iommu_queue_* of drivers/iommu/riscv/
// iommu.c): discovering the supported size through the WARL base register, allocating the
// ring, programming `xqb`, enabling with the interrupt enable and waiting for `xqon`, producing
// commands at `cqt` and consuming records from `fqh` / `pqh`.
//
// The hardware processes the command queue inside the `cqt` write, so "waiting" for a command is
// one read of `cqh`; a command still pending afterwards is what the kernel reports as a timeout.
// Hot path (a command per map/unmap): no BigInt, no allocation.

import { hex } from "../../base/bits.js";
import { err, OK, type Result } from "../../base/result.js";
import type { FrameAllocator, PhysicalMemory } from "../../hw/memory.js";
import type { RiscvIommu } from "../../hw/riscv-iommu/iommu.js";
import {
  CMD_SIZE,
  ppn53Lo,
  Q_HEAD_OFFSET,
  Q_TAIL_OFFSET,
  QCSR,
  QUEUE_LOG2SZ_MASK,
  RISCV_IOMMU_REG,
  type RiscvIommuCommand,
} from "./iommu-bits.js";

export type QueueName = "cq" | "fq" | "pq";

const SETUP: Record<QueueName, { qid: number; qbr: number; qcr: number }> = {
  cq: { qid: 0, qbr: RISCV_IOMMU_REG.CQB, qcr: RISCV_IOMMU_REG.CQCSR },
  fq: { qid: 1, qbr: RISCV_IOMMU_REG.FQB, qcr: RISCV_IOMMU_REG.FQCSR },
  pq: { qid: 3, qbr: RISCV_IOMMU_REG.PQB, qcr: RISCV_IOMMU_REG.PQCSR },
};

export class RiscvIommuQueue {
  readonly name: QueueName;
  /** Interrupt cause index (`ipsr` bit, `icvec` field). */
  readonly qid: number;
  /** Base and CSR register offsets. */
  readonly qbr: number;
  readonly qcr: number;
  readonly entrySize: number;
  /** Entries − 1 (a power of two minus one) once allocated; the requested size before. */
  mask: number;
  /** First page of the ring (−1 before allocation) and its page count. */
  ppn = -1;
  pages = 0;
  /** Producer index (CQ) or consumer index (FQ, PQ), in [0, mask]. */
  index = 0;
  /** Enabled and owned by the driver (`queue->iommu` in the kernel). */
  active = false;
  /** Entries produced or consumed since enable. */
  count = 0;
  readonly #hw: RiscvIommu;
  readonly #memory: PhysicalMemory;

  constructor(
    hw: RiscvIommu,
    memory: PhysicalMemory,
    name: QueueName,
    entrySize: number,
    entries: number,
  ) {
    this.#hw = hw;
    this.#memory = memory;
    this.name = name;
    const s = SETUP[name];
    this.qid = s.qid;
    this.qbr = s.qbr;
    this.qcr = s.qcr;
    this.entrySize = entrySize;
    this.mask = entries - 1;
  }

  get entries(): number {
    return this.mask + 1;
  }

  /**
   * riscv_iommu_queue_alloc: the supported LOG2SZ through the WARL base register, a naturally
   * aligned ring (smaller ones when memory is short), `xqb` programmed and read back.
   * ENOMEM without memory, ENODEV when the hardware does not keep the base.
   */
  alloc(frames: FrameAllocator): Result {
    const hw = this.#hw;
    hw.write64(this.qbr, BigInt(QUEUE_LOG2SZ_MASK));
    const probe = hw.read32(this.qbr);
    let logsz = Math.min(31 - Math.clz32(this.mask), probe & QUEUE_LOG2SZ_MASK);
    let ppn = -1;
    let pages = 0;
    for (;;) {
      const bytes = this.entrySize * 2 ** (logsz + 1);
      pages = Math.max(1, Math.ceil(bytes / 4096));
      ppn = frames.allocContiguous(pages, pages);
      if (ppn >= 0 || logsz === 0) break;
      logsz--;
    }
    if (ppn < 0) return err("ENOMEM");
    const lo = (ppn53Lo(ppn) | logsz) >>> 0;
    const hi = Math.floor(ppn / 0x40_0000) >>> 0;
    hw.write32(this.qbr + 4, hi);
    hw.write32(this.qbr, lo);
    if (hw.read32(this.qbr) !== lo || hw.read32(this.qbr + 4) !== hi) {
      frames.free(ppn, pages);
      return err("ENODEV");
    }
    this.ppn = ppn;
    this.pages = pages;
    this.mask = 2 ** (logsz + 1) - 1;
    return OK;
  }

  /** Frees the ring (after the queue is disabled). */
  free(frames: FrameAllocator): void {
    if (this.ppn < 0) return;
    frames.free(this.ppn, this.pages);
    this.ppn = -1;
    this.pages = 0;
  }

  /**
   * riscv_iommu_queue_enable: `xqh`/`xqt` = 0, then `xqen` with interrupts and the memory-fault
   * bit cleared, and the CSR must show the queue on, not busy, without fault. EBUSY otherwise.
   */
  enable(): Result {
    const hw = this.#hw;
    if (this.active) return err("EBUSY");
    // "Guidelines for initialization": cqt = 0 / fqh = 0 / pqh = 0 before enabling.
    hw.write32(this.qbr + (this.name === "cq" ? Q_TAIL_OFFSET : Q_HEAD_OFFSET), 0);
    hw.write32(this.qcr, QCSR.ENABLE | QCSR.INTR_ENABLE | QCSR.MEM_FAULT);
    const csr = hw.read32(this.qcr);
    if ((csr & (QCSR.ACTIVE | QCSR.BUSY | QCSR.MEM_FAULT)) !== QCSR.ACTIVE) {
      hw.write32(this.qcr, 0);
      return err("EBUSY");
    }
    this.index = 0;
    this.count = 0;
    this.active = true;
    // Clear any pending interrupt of this queue.
    hw.write32(RISCV_IOMMU_REG.IPSR, 1 << this.qid);
    return OK;
  }

  /** riscv_iommu_queue_disable: false when the queue would not turn off. */
  disable(): boolean {
    if (!this.active) return true;
    this.active = false;
    this.#hw.write32(this.qcr, 0);
    return (this.#hw.read32(this.qcr) & (QCSR.ACTIVE | QCSR.BUSY)) === 0;
  }

  // ---------------------------------------------------------------- command queue (producer)

  /**
   * riscv_iommu_queue_send: writes `cmd` at the producer index and rings `cqt`. Returns the
   * index the command took, or −1 when the queue stayed full (the kernel's "command enqueue
   * failed": the command is lost).
   */
  send(cmd: RiscvIommuCommand): number {
    const hw = this.#hw;
    const prod = this.index;
    const next = (prod + 1) & this.mask;
    if (next === (hw.read32(this.qbr + Q_HEAD_OFFSET) & this.mask)) return -1;
    const byte = prod * CMD_SIZE;
    const words = this.#memory.writablePageU32(this.ppn + (byte >>> 12))!;
    const w = (byte & 0xfff) >>> 2;
    words[w] = cmd.lo0;
    words[w + 1] = cmd.hi0;
    words[w + 2] = cmd.lo1;
    words[w + 3] = cmd.hi1;
    this.index = next;
    this.count++;
    hw.write32(this.qbr + Q_TAIL_OFFSET, next);
    return prod;
  }

  /** True once the command at `index` has been fetched and completed (`cqh` moved past it). */
  processed(index: number): boolean {
    const head = this.#hw.read32(this.qbr + Q_HEAD_OFFSET) & this.mask;
    const pending = (this.index - head) & this.mask;
    return ((index - head) & this.mask) >= pending;
  }

  // ---------------------------------------------------------------- FQ / PQ (consumer)

  /**
   * riscv_iommu_queue_consume + release: hands every record between the consumer index and
   * the hardware's tail to `fn` (the ring's words and the record's first word), then advances
   * the head register. Returns the number of records. A tail with bits beyond the queue size is
   * a hardware error: nothing is consumed (−1).
   */
  consume(fn: (words: Uint32Array, at: number) => void): number {
    const hw = this.#hw;
    const tail = hw.read32(this.qbr + Q_TAIL_OFFSET);
    if ((tail & ~this.mask) !== 0) return -1;
    let n = 0;
    while (this.index !== tail) {
      const byte = this.index * this.entrySize;
      const words = this.#memory.pageU32(this.ppn + (byte >>> 12))!;
      fn(words, (byte & 0xfff) >>> 2);
      this.index = (this.index + 1) & this.mask;
      n++;
    }
    if (n > 0) {
      this.count += n;
      hw.write32(this.qbr + Q_HEAD_OFFSET, this.index);
    }
    return n;
  }

  toJSON(): { [key: string]: string | number | boolean | null } {
    return {
      entries: this.entries,
      entry_size: this.entrySize,
      base: this.ppn < 0 ? null : hex(this.ppn * 4096),
      index: this.index,
      active: this.active,
      count: this.count,
    };
  }
}
