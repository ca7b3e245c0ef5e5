// Constants of include/linux/dma-mapping.h and dma-direction.h with their kernel values: the
// mapping-error sentinel, DMA_BIT_MASK, transfer directions, DMA attributes and the two gfp modes
// the DMA layer distinguishes (may the allocation sleep or not).

import { SimError } from "../base/errors.js";

/** `DMA_MAPPING_ERROR`: `~(dma_addr_t)0`, what a failed map returns. */
export const DMA_MAPPING_ERROR = 0xffff_ffff_ffff_ffffn;
/** The page-number form of DMA_MAPPING_ERROR returned by the BigInt-free calls. */
export const DMA_MAPPING_ERROR_PFN = -1;

/** `DMA_BIT_MASK(n)`: the n low bits set (n in [0, 64]). */
export function DMA_BIT_MASK(n: number): bigint {
  if (!Number.isInteger(n) || n < 0 || n > 64) {
    throw new SimError(`DMA_BIT_MASK(${n}): n must be an integer in [0, 64]`);
  }
  return (1n << BigInt(n)) - 1n;
}

/** `enum dma_data_direction`. */
export const DMA_BIDIRECTIONAL = 0;
export const DMA_TO_DEVICE = 1;
export const DMA_FROM_DEVICE = 2;
export const DMA_NONE = 3;
export type DmaDataDirection = number;

const DIR_NAMES = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE", "NONE"] as const;

/** The direction as include/trace/events/dma.h prints it (`"TO_DEVICE"`, …). */
export function dmaDirectionName(dir: DmaDataDirection): string {
  return DIR_NAMES[dir] ?? `0x${dir.toString(16)}`;
}

/** `valid_dma_direction`: map and unmap calls BUG_ON anything else (DMA_NONE included). */
export function checkDmaDirection(dir: DmaDataDirection, fn: string): void {
  if (dir !== DMA_BIDIRECTIONAL && dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
    throw new SimError(`${fn}: invalid DMA direction ${dir} (BUG_ON(!valid_dma_direction))`);
  }
}

/** DMA attributes (`DMA_ATTR_*`, unsigned long bits). */
export const DMA_ATTR_WEAK_ORDERING = 1 << 1;
export const DMA_ATTR_WRITE_COMBINE = 1 << 2;
export const DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4;
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
export const DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6;
export const DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7;
export const DMA_ATTR_NO_WARN = 1 << 8;
export const DMA_ATTR_PRIVILEGED = 1 << 9;

/**
 * The gfp flags of a coherent allocation, reduced to what the DMA layer looks at:
 * `gfpflags_allow_blocking` (GFP_KERNEL may sleep, GFP_ATOMIC may not).
 */
export type Gfp = "GFP_KERNEL" | "GFP_ATOMIC";

/** `SZ_64K`: `dma_get_max_seg_size` without a device setting. */
export const DMA_DEFAULT_MAX_SEG_SIZE = 0x1_0000;
/** `ULONG_MAX`: `dma_get_seg_boundary` without a device setting. */
export const DMA_DEFAULT_SEG_BOUNDARY = 0xffff_ffff_ffff_ffffn;
/** `MAX_PAGE_ORDER` (the buddy allocator's largest block: 4 MiB). */
export const MAX_PAGE_ORDER = 10;
