// The direct DMA path: kernel/dma/direct.c (v6.16) for devices whose DMA does not go through an
// IOMMU domain (no IOMMU, an IDENTITY default domain, or a failed dma-iommu set-up). DMA
// addresses are physical addresses (no bus offsets are modelled); a buffer beyond the device's
// mask would need swiotlb, which is not active here, so the kernel's "DMA addr overflow" WARN and
// DMA_MAPPING_ERROR follow. Coherent allocations are zeroed blocks of 2^order frames below the
// coherent mask.

import type { Device } from "../bus/device.js";
import { allocPages, DmaCoherent, getOrder } from "./coherent.js";
import { DMA_MAPPING_ERROR, DMA_MAPPING_ERROR_PFN } from "./constants.js";
import type { AddrLimit } from "./device-dma.js";
import { type Scatterlist, SG_DMA_BUS_ADDRESS } from "./scatterlist.js";
import type { DmaState } from "./state.js";

/**
 * `dma_capable` for `size` bytes at page `pfn` + `off`: the last byte lies at or below the mask
 * (`min_not_zero(*dev->dma_mask, bus_dma_limit)`; no bus limit is modelled).
 */
function dmaCapable(limit: AddrLimit, pfn: number, off: number, size: number): boolean {
  const last = off + size - 1;
  const endPfn = pfn + Math.floor(last / 4096);
  const endOff = last - Math.floor(last / 4096) * 4096;
  return limit.covers(endPfn, endOff);
}

/** The kernel's "DMA addr %pad+%zu overflow" of a mapping the mask does not reach. */
function overflow(pfn: number, off: number, size: number): string {
  return `DMA addr 0x${((BigInt(pfn) << 12n) | BigInt(off)).toString(16)}+${size} overflow`;
}

/** `dma_direct_map_page`: the physical page, or DMA_MAPPING_ERROR_PFN when beyond the mask. */
export function dmaDirectMapPage(
  s: DmaState,
  dev: Device,
  pfn: number,
  off: number,
  size: number,
): number {
  if (!dmaCapable(s.paramsOf(dev).rawMask, pfn, off, size)) {
    // No swiotlb to bounce through.
    const mask = s.paramsOf(dev).dmaMask ?? 0n;
    s.warnOnce(
      true,
      "dma_direct_map_page",
      `${dev.name}: ${overflow(pfn, off, size)} (mask ${mask.toString(16)}, bus limit 0).`,
    );
    return DMA_MAPPING_ERROR_PFN;
  }
  return pfn;
}

/**
 * `dma_direct_map_resource`: an MMIO range is its own bus address when the mask reaches it; else
 * dev_err_once, WARN_ON_ONCE and DMA_MAPPING_ERROR.
 */
export function dmaDirectMapResource(
  s: DmaState,
  dev: Device,
  pfn: number,
  off: number,
  size: number,
): number {
  if (!dmaCapable(s.paramsOf(dev).rawMask, pfn, off, size)) {
    // dev_err_once, then WARN_ON_ONCE(1) at the same site.
    s.log("err", dev, overflow(pfn, off, size), "dma_direct_map_resource:err");
    s.warnOnce(true, "dma_direct_map_resource", `${dev.name}: ${overflow(pfn, off, size)}`);
    return DMA_MAPPING_ERROR_PFN;
  }
  return pfn;
}

/**
 * `dma_direct_map_sg`: every entry mapped on its own (no merging); on a failure the entries
 * mapped so far are unmapped and the call fails with -EIO (returned as 0 entries here).
 */
export function dmaDirectMapSg(
  s: DmaState,
  dev: Device,
  sgl: readonly Scatterlist[],
  nents: number,
): number {
  for (let i = 0; i < nents; i++) {
    const sg = sgl[i]!;
    const phys = sg.page + BigInt(sg.offset);
    const pfn = Number(phys >> 12n);
    const off = Number(phys & 0xfffn);
    if (dmaDirectMapPage(s, dev, pfn, off, sg.length) === DMA_MAPPING_ERROR_PFN) {
      sg.dmaAddress = DMA_MAPPING_ERROR;
      dmaDirectUnmapSg(sgl, i);
      return 0;
    }
    sg.dmaAddress = phys;
    sg.dmaLength = sg.length;
  }
  return nents;
}

/** `dma_direct_unmap_sg`: nothing to undo for coherent RAM but the bus-address marks. */
export function dmaDirectUnmapSg(sgl: readonly Scatterlist[], nents: number): void {
  for (let i = 0; i < nents; i++) sgl[i]!.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
}

/**
 * `dma_direct_alloc`: 2^get_order(size) zeroed contiguous frames whose range fits the coherent
 * mask (`dma_coherent_ok`), or null. The frame allocator hands out the lowest frames first, so the
 * kernel's GFP_DMA32/GFP_DMA retries would find nothing lower: they are not modelled.
 */
export function dmaDirectAlloc(s: DmaState, dev: Device, size: number): DmaCoherent | null {
  const npages = Math.ceil(size / 4096);
  const order = getOrder(BigInt(size));
  const ppn = allocPages(s.frames, order);
  if (ppn < 0) return null;
  const lastPfn = ppn + npages - 1;
  if (!s.paramsOf(dev).coherentMask.covers(lastPfn, 0xfff)) {
    s.frames.free(ppn, 2 ** order);
    return null;
  }
  return DmaCoherent.fromBlock(dev, size, BigInt(ppn) << 12n, "direct", ppn, order);
}

/** `dma_direct_free`. */
export function dmaDirectFree(s: DmaState, buf: DmaCoherent): void {
  buf.releaseFrames(s.frames);
}

/**
 * `dma_direct_supported`: 32-bit and wider masks always work (ZONE_DMA32); a narrower one must
 * reach min(the last RAM page, 4 GiB).
 */
export function dmaDirectSupported(s: DmaState, mask: bigint): boolean {
  if (mask >= 0xffff_ffffn) return true;
  let minMask = BigInt(s.maxPfn - 1) << 12n;
  if (minMask > 0xffff_ffffn) minMask = 0xffff_ffffn;
  return mask >= minMask;
}
