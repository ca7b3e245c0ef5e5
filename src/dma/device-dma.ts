// What `struct device` holds for the DMA API: `dma_mask` (a pointer the bus sets up, possibly
// NULL), `coherent_dma_mask` and `dma_parms` (maximum segment size and segment boundary, used when
// scatterlists are merged). The device model does not carry them, so the DMA layer keeps one of
// these per device, created with the bus's defaults on first use:
//   PCI (pci_setup_device): dma_mask and coherent mask 32-bit, max segment 64 KiB, boundary
//     0xffffffff;
//   platform (setup_pdev_dma_masks): masks 32-bit, dma_parms present but unset (64 KiB, ULONG_MAX);
//   other buses (the mock bus): no dma_mask pointer, coherent mask 0, no dma_parms.
// Masks are also kept as (page number, offset) pairs for the BigInt-free map path.

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { Device } from "../bus/device.js";
import { devIsPci } from "../bus/pci-dev.js";
import { DMA_BIT_MASK, DMA_DEFAULT_MAX_SEG_SIZE, DMA_DEFAULT_SEG_BOUNDARY } from "./constants.js";

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const MASK32 = 0xffff_ffffn;

/** An inclusive address limit split into its 4 KiB page number and offset. */
export class AddrLimit {
  pfn = 0;
  off = 0;

  set(limit: bigint): void {
    this.pfn = Number(limit >> 12n);
    this.off = Number(limit & 0xfffn);
  }

  /** True when the last byte (`endPfn`, `endOff`) lies at or below the limit. */
  covers(endPfn: number, endOff: number): boolean {
    return endPfn < this.pfn || (endPfn === this.pfn && endOff <= this.off);
  }
}

export class DeviceDmaParams {
  /** `*dev->dma_mask`, or null when the bus gave the device no mask pointer. */
  #dmaMask: bigint | null;
  #coherentDmaMask: bigint;
  /** `dev->dma_mask == &dev->coherent_dma_mask` (after dma_coerce_mask_and_coherent). */
  #maskIsCoherent = false;
  /** `dev->dma_parms` exists. */
  readonly hasParms: boolean;
  /** `dma_parms->max_segment_size` (0: unset). */
  maxSegmentSize = 0;
  /** `dma_parms->segment_boundary_mask` (0: unset). */
  segmentBoundaryMask = 0n;
  /** `dma_get_mask(dev)`: the mask, or 32 bits when there is none or it is 0. */
  readonly mask = new AddrLimit();
  /** `*dev->dma_mask` itself (dma-direct's `dma_capable` reads it raw). */
  readonly rawMask = new AddrLimit();
  /** `dev->coherent_dma_mask`. */
  readonly coherentMask = new AddrLimit();

  constructor(readonly dev: Device) {
    if (devIsPci(dev)) {
      this.#dmaMask = MASK32;
      this.#coherentDmaMask = MASK32;
      this.hasParms = true;
      this.maxSegmentSize = DMA_DEFAULT_MAX_SEG_SIZE;
      this.segmentBoundaryMask = MASK32;
    } else if (dev.bus.name === "platform") {
      this.#dmaMask = MASK32;
      this.#coherentDmaMask = MASK32;
      this.hasParms = true;
    } else {
      this.#dmaMask = null;
      this.#coherentDmaMask = 0n;
      this.hasParms = false;
    }
    this.#refresh();
  }

  get dmaMask(): bigint | null {
    return this.#maskIsCoherent ? this.#coherentDmaMask : this.#dmaMask;
  }

  /** `*dev->dma_mask = mask`: stores through the pointer (into the coherent mask once coerced). */
  set dmaMask(mask: bigint) {
    checkMask(mask);
    if (this.#maskIsCoherent) this.#coherentDmaMask = mask;
    else this.#dmaMask = mask;
    this.#refresh();
  }

  /**
   * `dev->dma_mask = &dev->coherent_dma_mask` (dma_coerce_mask_and_coherent): from now on the two
   * masks are one value, whichever is set.
   */
  pointMaskAtCoherent(): void {
    this.#maskIsCoherent = true;
    this.#dmaMask = null;
    this.#refresh();
  }

  get coherentDmaMask(): bigint {
    return this.#coherentDmaMask;
  }

  set coherentDmaMask(mask: bigint) {
    checkMask(mask);
    this.#coherentDmaMask = mask;
    this.#refresh();
  }

  /** `dma_get_mask`. */
  getMask(): bigint {
    const mask = this.dmaMask;
    return mask !== null && mask !== 0n ? mask : DMA_BIT_MASK(32);
  }

  /** `dma_get_max_seg_size`. */
  getMaxSegSize(): number {
    return this.hasParms && this.maxSegmentSize !== 0
      ? this.maxSegmentSize
      : DMA_DEFAULT_MAX_SEG_SIZE;
  }

  /** `dma_get_seg_boundary`. */
  getSegBoundary(): bigint {
    return this.hasParms && this.segmentBoundaryMask !== 0n
      ? this.segmentBoundaryMask
      : DMA_DEFAULT_SEG_BOUNDARY;
  }

  toJSON(): Json {
    return {
      dma_mask: this.dmaMask === null ? null : jsonAddr(this.dmaMask),
      coherent_dma_mask: jsonAddr(this.#coherentDmaMask),
      dma_parms: this.hasParms
        ? {
            max_segment_size: this.getMaxSegSize(),
            segment_boundary_mask: jsonAddr(this.getSegBoundary()),
          }
        : null,
    };
  }

  #refresh(): void {
    this.mask.set(this.getMask());
    this.rawMask.set(this.dmaMask ?? 0n);
    this.coherentMask.set(this.#coherentDmaMask);
  }
}

function checkMask(mask: bigint): void {
  if (mask < 0n || mask > U64_MAX) {
    throw new SimError(`DMA mask 0x${mask.toString(16)} is not a u64`);
  }
}
