// A coherent DMA buffer (what `dma_alloc_coherent` returns as `cpu_addr`, with `*dma_handle`).
// The simulator has no kernel virtual addresses: the buffer is its list of physical pages in CPU
// order, and `phys(offset)` is where the CPU's byte `offset` lives. Pages come from the machine's
// FrameAllocator (zeroed) either as one naturally aligned block of 2^order frames (dma-direct,
// and dma-iommu's atomic or DMA_ATTR_FORCE_CONTIGUOUS path) or as separately freeable pages
// mapped contiguously in IOVA space (dma-iommu's remap path).

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { Device } from "../bus/device.js";
import type { FrameAllocator } from "../hw/memory.js";

/** How the pages were obtained (and so how they are given back). */
export type DmaCoherentKind = "direct" | "contiguous" | "remap";

export class DmaCoherent {
  /** The CPU side is gone (`dma_free_coherent` ran); using it again is a bug. */
  freed = false;

  /**
   * @param pages page numbers backing the buffer, in CPU order
   * @param order for one 2^order block (direct, contiguous): its order; -1 for separate pages
   */
  constructor(
    readonly dev: Device,
    readonly size: bigint,
    readonly dmaHandle: bigint,
    readonly kind: DmaCoherentKind,
    readonly pages: readonly number[],
    readonly order: number,
  ) {}

  /**
   * A buffer of `size` bytes at the start of the 2^`order` block from page `ppn`, reached by the
   * device at `dmaHandle`.
   */
  static fromBlock(
    dev: Device,
    size: number,
    dmaHandle: bigint,
    kind: "direct" | "contiguous",
    ppn: number,
    order: number,
  ): DmaCoherent {
    const pages: number[] = [];
    for (let k = 0; k < Math.ceil(size / 4096); k++) pages.push(ppn + k);
    return new DmaCoherent(dev, BigInt(size), dmaHandle, kind, pages, order);
  }

  /** Physical address of the buffer's byte `offset` (the CPU's view of it). */
  phys(offset = 0n): bigint {
    if (this.freed) throw new SimError(`coherent buffer of ${this.dev.name} used after free`);
    if (offset < 0n || offset >= this.size) {
      throw new SimError(
        `offset 0x${offset.toString(16)} outside a 0x${this.size.toString(16)}-byte buffer`,
      );
    }
    const page = this.pages[Number(offset >> 12n)]!;
    return (BigInt(page) << 12n) | (offset & 0xfffn);
  }

  /** @internal gives the frames back (free_pages / __iommu_dma_free_pages). */
  releaseFrames(frames: FrameAllocator): void {
    if (this.freed) throw new SimError(`coherent buffer of ${this.dev.name} freed twice`);
    this.freed = true;
    if (this.order >= 0) frames.free(this.pages[0]!, 2 ** this.order);
    else for (const p of this.pages) frames.free(p);
  }

  toJSON(): Json {
    return {
      device: this.dev.name,
      size: jsonAddr(this.size),
      dma_handle: jsonAddr(this.dmaHandle),
      kind: this.kind,
      order: this.order,
      pages: this.pages.map((p) => jsonAddr(BigInt(p) << 12n)),
      freed: this.freed,
    };
  }
}

/** `get_order`: the smallest order whose block of 4 KiB pages holds `size` bytes. */
export function getOrder(size: bigint): number {
  let order = 0;
  while (BigInt(4096) << BigInt(order) < size) order++;
  return order;
}

/** `alloc_pages`: one naturally aligned block of 2^order zeroed frames, or -1. */
export function allocPages(frames: FrameAllocator, order: number): number {
  return order === 0 ? frames.alloc() : frames.allocContiguous(2 ** order, 2 ** order);
}
