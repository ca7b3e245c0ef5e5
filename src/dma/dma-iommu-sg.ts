// Scatterlists through dma-iommu (drivers/iommu/dma-iommu.c, v6.16): `iommu_dma_map_sg` maps a
// whole list into one IOVA range. Each entry is widened in place to whole granules, its
// sub-granule offset and length stashed in the DMA fields, and an entry that would cross the
// segment boundary pads the previous one up to it (the single range is size-aligned, so it starts
// on a boundary whenever the boundary is smaller than the range). `iommu_map_sg` maps runs of
// physically contiguous entries; `__finalise_sg` restores the entries and writes the merged DMA
// segments. Untrusted devices take the per-entry (swiotlb) path.

import type { Errno } from "../base/errno.js";
import { type Err, err, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import type { IommuDomain } from "../iommu/domain.js";
import { DMA_MAPPING_ERROR, DMA_MAPPING_ERROR_PFN, type DmaDataDirection } from "./constants.js";
import {
  devIsUntrusted,
  dmaDomainOf,
  dmaInfoToProt,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapPage,
  iommuDmaUnmap,
  iommuDmaUnmapPage,
  liveCookie,
  splitDmaAddr,
} from "./dma-iommu.js";
import { type Scatterlist, SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, sgPhys } from "./scatterlist.js";
import type { DmaState } from "./state.js";

/**
 * `iommu_map_sg`: maps the (granule-aligned) entries at `iovaPfn`, one `iommu_map` per run of
 * physically contiguous entries, skipping bus addresses; bytes mapped, or the error (after
 * unmapping what was mapped). Divergence: `iotlb_sync_map` runs per run (core.mapPfn), not once.
 */
export function iommuMapSg(
  s: DmaState,
  domain: IommuDomain,
  iovaPfn: number,
  sgl: readonly Scatterlist[],
  nents: number,
  prot: number,
): Result<number> {
  let len = 0;
  let start = 0n;
  let mapped = 0;
  let sg = sgl[0]!;
  for (let i = 0; i <= nents; ) {
    const phys = sgPhys(sg);
    if (len !== 0 && phys !== start + BigInt(len)) {
      const r = s.core.mapPfn(
        domain,
        iovaPfn + mapped / 4096,
        Number(start >> 12n),
        len / 4096,
        prot,
      );
      if (!r.ok) {
        s.core.unmapPfn(domain, iovaPfn, mapped / 4096);
        return r;
      }
      mapped += len;
      len = 0;
    }
    if ((sg.dmaFlags & SG_DMA_BUS_ADDRESS) === 0) {
      if (len !== 0) {
        len += sg.length;
      } else {
        len = sg.length;
        start = phys;
      }
    }
    if (++i < nents) sg = sgl[i]!;
  }
  return { ok: true, value: mapped };
}

/**
 * `__finalise_sg`: restores each entry's offset and length and writes the DMA segments: an entry
 * joins the previous segment when it starts on a granule, does not start a segment boundary and
 * keeps the segment within the maximum segment size. Returns the segment count.
 */
function finaliseSg(
  sgl: readonly Scatterlist[],
  nents: number,
  dmaAddr: bigint,
  maxLen: number,
  segMask: bigint,
): number {
  let cur = 0;
  let curLen = 0;
  let count = 0;
  let addr = dmaAddr;
  for (let i = 0; i < nents; i++) {
    const s = sgl[i]!;
    const sDmaAddr = s.dmaAddress;
    const sIovaOff = Number(s.dmaAddress);
    const sLength = s.dmaLength;
    const sIovaLen = s.length;
    s.dmaAddress = DMA_MAPPING_ERROR;
    s.dmaLength = 0;
    if ((s.dmaFlags & SG_DMA_BUS_ADDRESS) !== 0) {
      if (i > 0) cur++;
      s.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
      const c = sgl[cur]!;
      c.dmaAddress = sDmaAddr;
      c.dmaLength = sLength;
      c.dmaFlags |= SG_DMA_BUS_ADDRESS;
      count++;
      curLen = 0;
      continue;
    }
    s.offset += sIovaOff;
    s.length = sLength;
    if (
      curLen !== 0 &&
      sIovaOff === 0 &&
      (addr & segMask) !== 0n &&
      (maxLen - curLen) >>> 0 >= sLength
    ) {
      curLen += sLength;
    } else {
      if (i > 0) cur++;
      curLen = sLength;
      count++;
      sgl[cur]!.dmaAddress = addr + BigInt(sIovaOff);
    }
    sgl[cur]!.dmaLength = curLen;
    addr += BigInt(sIovaLen);
    if (sLength + sIovaOff < sIovaLen) curLen = 0;
  }
  return count;
}

/** The `out:` label of `iommu_dma_map_sg`: ENOMEM passes, anything else is EINVAL (EREMOTEIO
 * comes from P2PDMA pages, which are not modelled). */
function mapSgErrno(errno: Errno): Err {
  return err(errno === "ENOMEM" ? "ENOMEM" : "EINVAL");
}

/** `__invalidate_sg`: undoes the in-place layout after a failure. */
function invalidateSg(sgl: readonly Scatterlist[], nents: number): void {
  for (let i = 0; i < nents; i++) {
    const s = sgl[i]!;
    if ((s.dmaFlags & SG_DMA_BUS_ADDRESS) !== 0) {
      s.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
    } else {
      if (s.dmaAddress !== DMA_MAPPING_ERROR) s.offset += Number(s.dmaAddress);
      if (s.dmaLength !== 0) s.length = s.dmaLength;
    }
    s.dmaAddress = DMA_MAPPING_ERROR;
    s.dmaLength = 0;
  }
}

/** `iommu_dma_map_sg_swiotlb`: each entry mapped on its own (untrusted devices); EIO on failure. */
function iommuDmaMapSgSwiotlb(
  s: DmaState,
  dev: Device,
  sgl: readonly Scatterlist[],
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
  cpu: number,
): Result<number> {
  sgl[0]!.dmaFlags |= SG_DMA_SWIOTLB;
  for (let i = 0; i < nents; i++) {
    const sg = sgl[i]!;
    const [pfn, off] = splitDmaAddr(sgPhys(sg));
    const iova = iommuDmaMapPage(s, dev, pfn, off, sg.length, dir, attrs, cpu);
    if (iova === DMA_MAPPING_ERROR_PFN) {
      sg.dmaAddress = DMA_MAPPING_ERROR;
      iommuDmaUnmapSgSwiotlb(s, dev, sgl, i, cpu);
      return err("EIO");
    }
    sg.dmaAddress = (BigInt(iova) << 12n) | BigInt(off);
    sg.dmaLength = sg.length;
  }
  return { ok: true, value: nents };
}

function iommuDmaUnmapSgSwiotlb(
  s: DmaState,
  dev: Device,
  sgl: readonly Scatterlist[],
  nents: number,
  cpu: number,
): void {
  for (let i = 0; i < nents; i++) {
    const sg = sgl[i]!;
    const [pfn, off] = splitDmaAddr(sg.dmaAddress);
    iommuDmaUnmapPage(s, dev, pfn, off, sg.dmaLength, cpu);
  }
}

/**
 * `iommu_dma_map_sg`: one IOVA range for the whole list. Each entry is widened in place to whole
 * granules (its sub-granule offset and length stashed in the DMA fields); an entry that would
 * cross a segment boundary pads the previous one up to the boundary. After `iommu_map_sg`,
 * `__finalise_sg` restores the entries and writes the merged DMA segments. Errors: ENOMEM (no
 * IOVA space, or the driver's ENOMEM), EINVAL (any other mapping or deferred-attach failure), EIO
 * (an untrusted device's entry could not be mapped).
 */
export function iommuDmaMapSg(
  s: DmaState,
  dev: Device,
  sgl: readonly Scatterlist[],
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
  cpu: number,
): Result<number> {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
  const params = s.paramsOf(dev);
  const prot = dmaInfoToProt(dir, true, attrs);
  const mask = params.getSegBoundary();
  if (dev.iommu?.attachDeferred) {
    const r = s.core.deferredAttach(dev, domain);
    if (!r.ok) return mapSgErrno(r.errno);
  }
  if (devIsUntrusted(dev)) return iommuDmaMapSgSwiotlb(s, dev, sgl, nents, dir, attrs, cpu);

  let iovaLen = 0n;
  let prev: Scatterlist | null = null;
  for (let i = 0; i < nents; i++) {
    const sg = sgl[i]!;
    const sIovaOff = sg.offset & 0xfff;
    let sLength = sg.length;
    const padLen = (mask - iovaLen + 1n) & mask;
    sg.dmaAddress = BigInt(sIovaOff);
    sg.dmaLength = sLength;
    sg.offset -= sIovaOff;
    sLength = Math.ceil((sLength + sIovaOff) / 4096) * 4096;
    sg.length = sLength;
    // The single IOVA range starts on a boundary when the boundary is smaller than the range, so
    // padding by lengths alone keeps every segment inside one boundary window.
    if (padLen !== 0n && padLen < BigInt.asUintN(64, BigInt(sLength) - 1n)) {
      prev!.length += Number(padLen);
      iovaLen += padLen;
    }
    iovaLen += BigInt(sLength);
    prev = sg;
  }
  const maxLen = params.getMaxSegSize();
  if (iovaLen === 0n) return { ok: true, value: finaliseSg(sgl, nents, 0n, maxLen, mask) };

  const npages = Number(iovaLen >> 12n);
  const iova = iommuDmaAllocIova(s, c, dev, npages, params.mask.pfn, cpu);
  if (iova === 0) {
    invalidateSg(sgl, nents);
    return err("ENOMEM");
  }
  const mapped = iommuMapSg(s, domain, iova, sgl, nents, prot);
  if (!mapped.ok || mapped.value < Number(iovaLen)) {
    iommuDmaFreeIova(s, c, iova, npages, null, cpu);
    invalidateSg(sgl, nents);
    return mapSgErrno(mapped.ok ? "EINVAL" : mapped.errno);
  }
  c.maps++;
  return { ok: true, value: finaliseSg(sgl, nents, BigInt(iova) << 12n, maxLen, mask) };
}

/**
 * `iommu_dma_unmap_sg`: the list was mapped as one IOVA range from the first DMA segment's start
 * to the last one's end; unmaps it. Returns the mode, or null when nothing was mapped.
 */
export function iommuDmaUnmapSg(
  s: DmaState,
  dev: Device,
  sgl: readonly Scatterlist[],
  nents: number,
  cpu: number,
): "strict" | "lazy" | null {
  // The mark stays: scatterlist.h has no sg_dma_unmark_swiotlb.
  if ((sgl[0]!.dmaFlags & SG_DMA_SWIOTLB) !== 0) {
    iommuDmaUnmapSgSwiotlb(s, dev, sgl, nents, cpu);
    return null;
  }
  let start = 0n;
  let end = 0n;
  let i = 0;
  for (; i < nents; i++) {
    const sg = sgl[i]!;
    if ((sg.dmaFlags & SG_DMA_BUS_ADDRESS) !== 0) {
      sg.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
      continue;
    }
    if (sg.dmaLength === 0) break;
    start = sg.dmaAddress;
    break;
  }
  for (; i < nents; i++) {
    const sg = sgl[i]!;
    if ((sg.dmaFlags & SG_DMA_BUS_ADDRESS) !== 0) {
      sg.dmaFlags &= ~SG_DMA_BUS_ADDRESS;
      continue;
    }
    if (sg.dmaLength === 0) break;
    end = sg.dmaAddress + BigInt(sg.dmaLength);
  }
  if (end === 0n) return null;
  const domain = dmaDomainOf(s, dev);
  const [pfn, off] = splitDmaAddr(start);
  return iommuDmaUnmap(s, domain, liveCookie(domain), pfn, off, Number(end - start), cpu);
}
