// The descriptor rings of the e1000-like driver (drivers/net/ethernet/intel/e1000/e1000_main.c,
// reduced): each ring is one dma_alloc_coherent buffer of 16-byte legacy descriptors that the
// CPU reads and writes through its physical pages, plus the driver's per-descriptor buffer info
// (the DMA address, length and backing pages of the skb data the descriptor points at).

import type { DmaCoherent } from "../../dma/coherent.js";
import type { PhysicalMemory } from "../../hw/memory.js";

/** `struct e1000_tx_buffer` / `e1000_rx_buffer`: one mapped data buffer. */
export interface E1000Buffer {
  /** DMA address from dma_map_single. */
  readonly dma: bigint;
  /** Mapped length. */
  readonly length: number;
  /** First physical page of the data and how many pages it spans. */
  readonly ppn: number;
  readonly pages: number;
}

export const E1000_DESC_BYTES = 16;

/** `struct e1000_tx_ring` / `e1000_rx_ring`. */
export class E1000Ring {
  nextToUse = 0;
  nextToClean = 0;
  readonly buffers: (E1000Buffer | null)[];
  readonly #scratch = new Uint8Array(E1000_DESC_BYTES);

  constructor(
    readonly memory: PhysicalMemory,
    readonly desc: DmaCoherent,
    readonly count: number,
  ) {
    this.buffers = new Array<E1000Buffer | null>(count).fill(null);
  }

  /** `E1000_DESC_UNUSED`: descriptors software may fill (one always stays empty). */
  get unused(): number {
    return (
      (this.nextToClean > this.nextToUse ? 0 : this.count) + this.nextToClean - this.nextToUse - 1
    );
  }

  /** The CPU's view of descriptor `i` (read from the coherent ring). */
  read(i: number): Uint8Array {
    return this.memory.readBytes(this.desc.phys(BigInt(i * E1000_DESC_BYTES)), E1000_DESC_BYTES);
  }

  /** Writes descriptor `i`: buffer address, length, command (TX) and a cleared status. */
  write(i: number, addr: bigint, length: number, cmd: number): void {
    const d = this.#scratch;
    d.fill(0);
    for (let k = 0; k < 8; k++) d[k] = Number((addr >> BigInt(8 * k)) & 0xffn);
    d[8] = length & 0xff;
    d[9] = (length >>> 8) & 0xff;
    d[11] = cmd;
    this.memory.writeBytes(this.desc.phys(BigInt(i * E1000_DESC_BYTES)), d);
  }

  /** Zeroes descriptor `i` (after cleaning). */
  clear(i: number): void {
    this.#scratch.fill(0);
    this.memory.writeBytes(this.desc.phys(BigInt(i * E1000_DESC_BYTES)), this.#scratch);
  }

  next(i: number): number {
    return i + 1 === this.count ? 0 : i + 1;
  }
}
