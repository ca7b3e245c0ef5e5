// Coherent allocations through dma-iommu (drivers/iommu/dma-iommu.c, v6.16): `iommu_dma_alloc`
// and `iommu_dma_free`. A blocking allocation takes separately freeable pages — as large as the
// IOMMU's page sizes allow when a free block exists — and maps them contiguously in IOVA space
// (`iommu_dma_alloc_remap`); an atomic or DMA_ATTR_FORCE_CONTIGUOUS one takes one naturally
// aligned block (`iommu_dma_alloc_pages`). The IOVA lies below the coherent DMA mask.

import type { Device } from "../bus/device.js";
import type { IommuDomain } from "../iommu/domain.js";
import { allocPages, DmaCoherent, getOrder } from "./coherent.js";
import {
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_BIDIRECTIONAL,
  DMA_MAPPING_ERROR_PFN,
  type Gfp,
  MAX_PAGE_ORDER,
} from "./constants.js";
import {
  dmaDomainOf,
  dmaInfoToProt,
  type IommuDmaCookie,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMap,
  iommuDmaUnmap,
  liveCookie,
  splitDmaAddr,
} from "./dma-iommu.js";
import { iommuMapSg } from "./dma-iommu-sg.js";
import { Scatterlist, sgSetPage } from "./scatterlist.js";
import type { DmaState } from "./state.js";

/**
 * `__iommu_dma_alloc_pages`: `count` pages, each run as large as `orderMask` (bit n = order n)
 * allows and the remaining count fits, falling back to smaller orders when a large block is not
 * free (an order that failed is not tried again); null when order 0 fails too.
 */
function iommuDmaAllocPages(s: DmaState, count: number, orderMask: number): number[] | null {
  let mask = orderMask & ((2 << MAX_PAGE_ORDER) - 1);
  if (mask === 0) return null;
  const pages: number[] = [];
  let left = count;
  while (left > 0) {
    let got = -1;
    let orderSize = 0;
    for (mask &= (2 << (31 - Math.clz32(left))) - 1; mask !== 0; mask &= ~orderSize) {
      const order = 31 - Math.clz32(mask);
      orderSize = 1 << order;
      got = allocPages(s.frames, order);
      if (got >= 0) break;
    }
    if (got < 0) {
      for (const p of pages) s.frames.free(p);
      return null;
    }
    // split_page: each page is freed on its own later.
    for (let k = 0; k < orderSize; k++) pages.push(got + k);
    left -= orderSize;
  }
  return pages;
}

/** Scatterlist entries over `pages`, contiguous pages merged (`sg_alloc_table_from_pages`). */
function sgFromPages(pages: readonly number[], size: number): Scatterlist[] {
  const out: Scatterlist[] = [];
  let left = size;
  for (let i = 0; i < pages.length; ) {
    let j = i + 1;
    while (j < pages.length && pages[j] === pages[j - 1]! + 1) j++;
    const len = Math.min((j - i) * 4096, left);
    const sg = new Scatterlist();
    sgSetPage(sg, BigInt(pages[i]!) << 12n, len, 0);
    out.push(sg);
    left -= len;
    i = j;
  }
  return out;
}

/**
 * `iommu_dma_alloc`: a blocking allocation without DMA_ATTR_FORCE_CONTIGUOUS takes separate pages
 * (large runs when the IOMMU page sizes allow) mapped contiguously in IOVA space
 * (`iommu_dma_alloc_remap`); otherwise one contiguous block (`iommu_dma_alloc_pages`). The IOVA
 * lies below the coherent DMA mask. Null on failure.
 */
export function iommuDmaAlloc(
  s: DmaState,
  dev: Device,
  size: number,
  gfp: Gfp,
  attrs: number,
  cpu: number,
): DmaCoherent | null {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
  const prot = dmaInfoToProt(DMA_BIDIRECTIONAL, true, attrs);
  const limit = s.paramsOf(dev).coherentMask.pfn;
  if (gfp === "GFP_KERNEL" && (attrs & DMA_ATTR_FORCE_CONTIGUOUS) === 0) {
    return iommuDmaAllocRemap(s, dev, domain, c, size, prot, attrs, limit, cpu);
  }
  const order = getOrder(BigInt(size));
  const ppn = allocPages(s.frames, order);
  if (ppn < 0) return null;
  const iova = iommuDmaMap(s, dev, domain, c, ppn, 0, size, prot, limit, cpu);
  if (iova === DMA_MAPPING_ERROR_PFN) {
    s.frames.free(ppn, 2 ** order);
    return null;
  }
  return DmaCoherent.fromBlock(dev, size, BigInt(iova) << 12n, "contiguous", ppn, order);
}

/** `iommu_dma_alloc_remap` (`__iommu_dma_alloc_noncontiguous`). */
function iommuDmaAllocRemap(
  s: DmaState,
  dev: Device,
  domain: IommuDomain,
  c: IommuDmaCookie,
  size0: number,
  prot: number,
  attrs: number,
  limitPfn: number,
  cpu: number,
): DmaCoherent | null {
  if (dev.iommu?.attachDeferred && !s.core.deferredAttach(dev, domain).ok) return null;
  // The smallest IOMMU page is at least PAGE_SIZE here: the size is aligned to it.
  const minPages = 2 ** (domain.pgShifts[0]! - 12);
  let orderMask = 0;
  for (const shift of domain.pgShifts) if (shift - 12 < 31) orderMask |= 1 << (shift - 12);
  if ((attrs & DMA_ATTR_ALLOC_SINGLE_PAGES) !== 0) orderMask = minPages;
  const count = Math.ceil(size0 / (minPages * 4096)) * minPages;
  const size = count * 4096;
  const pages = iommuDmaAllocPages(s, count, orderMask);
  if (pages === null) return null;
  const free = () => {
    for (const p of pages) s.frames.free(p);
  };
  const iova = iommuDmaAllocIova(s, c, dev, count, limitPfn, cpu);
  if (iova === 0) {
    free();
    return null;
  }
  const sgl = sgFromPages(pages, size);
  const mapped = iommuMapSg(s, domain, iova, sgl, sgl.length, prot);
  if (!mapped.ok || mapped.value < size) {
    iommuDmaFreeIova(s, c, iova, count, null, cpu);
    free();
    return null;
  }
  c.maps++;
  return new DmaCoherent(dev, BigInt(size0), BigInt(iova) << 12n, "remap", pages, -1);
}

/** `iommu_dma_free`: unmap the handle (strict or lazy), then give the pages back. */
export function iommuDmaFree(
  s: DmaState,
  dev: Device,
  size: number,
  buf: DmaCoherent,
  handle: bigint,
  cpu: number,
): "strict" | "lazy" {
  const domain = dmaDomainOf(s, dev);
  const [pfn, off] = splitDmaAddr(handle);
  const mode = iommuDmaUnmap(s, domain, liveCookie(domain), pfn, off, size, cpu);
  buf.releaseFrames(s.frames);
  return mode;
}
