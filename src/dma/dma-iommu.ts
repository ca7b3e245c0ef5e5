// The DMA API over an IOMMU domain: drivers/iommu/dma-iommu.c (v6.16 semantics).
//
// A DMA (or DMA_FQ) default domain carries an IOVA cookie (`iommu_get_dma_cookie`). When a device
// is set up on it (`iommu_setup_dma_ops` → `iommu_dma_init_domain`), the cookie's IOVA domain is
// created with the smallest IOMMU page as granule and the aperture start as base (never pfn 0),
// the reserved regions are kept out of it (PCI host-bridge windows, RESERVED, MSI, DIRECT…; not
// SW_MSI), and a DMA_FQ domain gets its flush queue — or becomes DMA when the IOMMU lacks
// IOMMU_CAP_DEFERRED_FLUSH.
//
// Map: allocate an IOVA range below min(DMA mask, aperture end) — for PCI devices first below
// 4 GiB (`pci_32bit_workaround`, off with `iommu.forcedac` or after the first 32-bit failure) —
// then `iommu_map`. Unmap: `iommu_unmap_fast` into a gather; strict domains `iotlb_sync` and free
// the IOVA at once, lazy ones queue it on the flush queue (flush-queue.ts).
//
// The streaming calls work on 4 KiB page numbers and offsets (plain numbers, no allocation) and
// return the DMA page number, or DMA_MAPPING_ERROR_PFN. Modelled choices: every device is
// DMA-coherent (IOMMU_CACHE, no cache maintenance); swiotlb is not active (no bounce buffers, as on
// a RISC-V machine whose RAM lies below 4 GiB), so an untrusted device's sub-page mapping fails
// the way the kernel fails it; no P2PDMA pages and no dma_range_map / bus_dma_limit.

import type { Errno } from "../base/errno.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import { type Err, err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_RESV } from "../bus/firmware.js";
import { devIsPci } from "../bus/pci-dev.js";
import { PciHost } from "../hw/pci/host.js";
import {
  IOMMU_CACHE,
  IOMMU_CAP,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_MMIO,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../iommu/constants.js";
import { type IommuDomain, IotlbGather } from "../iommu/domain.js";
import { DmaCoherent, getOrder } from "./coherent.js";
import {
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_PRIVILEGED,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_MAPPING_ERROR_PFN,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  type Gfp,
  MAX_PAGE_ORDER,
} from "./constants.js";
import {
  type FqFlushReason,
  type IommuDmaOptions,
  IovaFlushQueue,
  iommuDmaInitOptions,
} from "./flush-queue.js";
import { IovaDomain } from "./iova.js";
import {
  Scatterlist,
  SG_DMA_BUS_ADDRESS,
  SG_DMA_SWIOTLB,
  sgPhys,
  sgSetPage,
} from "./scatterlist.js";
import type { DmaState } from "./state.js";

/** DMA_BIT_MASK(32) >> 12: the last page below 4 GiB. */
const DMA32_PFN = 0xfffff;

/** `struct iommu_dma_cookie` of a DMA domain: what `domain.iovaCookie.state` holds. */
export class IommuDmaCookie {
  /** `cookie->iovad`: null until `iommu_dma_init_domain` (granule 0 in the kernel). */
  iovad: IovaDomain | null = null;
  options: IommuDmaOptions = iommuDmaInitOptions(false);
  /** Non-null exactly when `cookie->fq_domain` is set: lazy invalidation. */
  fq: IovaFlushQueue | null = null;
  /** `msi_page_list` of hardware MSI regions (identity: iova = phys). */
  readonly msiPages: bigint[] = [];
  /** The gather of the unmap path (the kernel's on-stack `iotlb_gather`), reused. */
  readonly gather = new IotlbGather();
  /** `aperture_end >> shift` when the aperture is forced, else +∞. */
  apertureLimitPfn = Number.POSITIVE_INFINITY;
  /** Streaming and coherent maps/unmaps through this domain. */
  maps = 0;
  unmaps = 0;

  constructor(readonly domain: IommuDomain) {}

  /** Lazy (flush queue) or strict invalidation. */
  get mode(): "lazy" | "strict" {
    return this.fq === null ? "strict" : "lazy";
  }

  toJSON(): Json {
    return {
      domain: this.domain.id,
      mode: this.mode,
      granule: this.iovad?.granule ?? 0,
      start_pfn: this.iovad === null ? null : jsonAddr(this.iovad.startPfn),
      aperture_limit_pfn: Number.isFinite(this.apertureLimitPfn)
        ? jsonAddr(this.apertureLimitPfn)
        : null,
      options: {
        qt: this.options.qt,
        fq_size: this.options.fqSize,
        fq_timeout_ms: this.options.fqTimeout,
      },
      maps: this.maps,
      unmaps: this.unmaps,
      msi_pages: this.msiPages.map(jsonAddr),
      fq: this.fq?.toJSON() ?? null,
      iovad: this.iovad?.toJSON() ?? null,
    };
  }
}

/** The DMA layer's cookie of `domain`, or null (no DMA_IOVA cookie, or someone else's). */
export function cookieOf(domain: IommuDomain): IommuDmaCookie | null {
  if (domain.cookieType !== "DMA_IOVA") return null;
  const state = domain.iovaCookie?.state;
  return state instanceof IommuDmaCookie ? state : null;
}

/** `dev_is_untrusted`. */
export function devIsUntrusted(dev: Device): boolean {
  return devIsPci(dev) && dev.untrusted;
}

/** `dma_info_to_prot`: IOMMU prot bits for a direction (0 for DMA_NONE). */
export function dmaInfoToProt(dir: DmaDataDirection, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if ((attrs & DMA_ATTR_PRIVILEGED) !== 0) prot |= IOMMU_PRIV;
  switch (dir) {
    case DMA_BIDIRECTIONAL:
      return prot | IOMMU_READ | IOMMU_WRITE;
    case DMA_TO_DEVICE:
      return prot | IOMMU_READ;
    case DMA_FROM_DEVICE:
      return prot | IOMMU_WRITE;
    default:
      return 0;
  }
}

// ------------------------------------------------------------------ cookie and domain set-up

/** `iommu_get_dma_cookie`. */
export function iommuGetDmaCookie(domain: IommuDomain): Result {
  if (domain.cookieType !== "NONE") return err("EEXIST");
  domain.cookieType = "DMA_IOVA";
  domain.iovaCookie = { fq: false, state: new IommuDmaCookie(domain) };
  return OK;
}

/** `iommu_put_dma_cookie`: the flush queue (timer stopped) and the IOVA domain go. */
export function iommuPutDmaCookie(domain: IommuDomain): void {
  const c = cookieOf(domain);
  if (c?.iovad) {
    c.fq?.destroy();
    c.iovad.putIovaDomain();
  }
  domain.iovaCookie = null;
  domain.cookieType = "NONE";
}

/** `iommu_dma_init_fq`: bring up the flush queue (once). */
export function iommuDmaInitFq(s: DmaState, domain: IommuDomain): Result {
  const c = cookieOf(domain);
  if (c === null) return err("EINVAL");
  if (c.fq !== null) return OK;
  c.fq = new IovaFlushQueue(c.options, s.nrCpus, s.ctx.clock, `domain ${domain.id}`, {
    flushIotlbAll: () => {
      const flush = domain.ops?.flushIotlbAll;
      // The kernel calls it unconditionally: IOMMU_CAP_DEFERRED_FLUSH implies the op.
      if (!flush) throw new SimError(`domain ${domain.id}: flush queue without flush_iotlb_all`);
      flush(domain);
    },
    freeIova: (pfn, pages, cpu) => c.iovad!.freeIovaFast(pfn, pages, cpu),
    flushed: (reason, freed) => fqFlushed(s, c, reason, freed),
  });
  domain.iovaCookie!.fq = true;
  return OK;
}

function fqFlushed(s: DmaState, c: IommuDmaCookie, reason: FqFlushReason, freed: number): void {
  if (reason === "full") s.stats.fqFlushFull++;
  else s.stats.fqFlushTimeout++;
  if (s.ctx.trace.enabled) {
    s.ctx.trace.emit("dma:flush_queue", `domain ${c.domain.id}`, {
      domain: c.domain.id,
      reason,
      entries: freed,
      pending: c.fq!.pending,
      flush_cnt: c.fq!.finishCnt,
    });
  }
}

/**
 * `iommu_dma_init_domain`: the IOVA domain (granule = smallest IOMMU page, base = aperture start,
 * at least pfn 1), range caches, options, the flush queue of a DMA_FQ domain (else it becomes
 * DMA), reserved regions. A second device on an initialised cookie only checks compatibility.
 */
export function iommuDmaInitDomain(
  s: DmaState,
  domain: IommuDomain,
  dev: Device,
  capable: (cap: number) => boolean,
): Result {
  const c = cookieOf(domain);
  if (c === null) return err("EINVAL");
  const order = domain.pgShifts[0];
  if (order === undefined) throw new SimError(`DMA domain ${domain.id} has no page sizes`);
  // No dma_range_map (bus offsets) is modelled: only the aperture moves the base.
  const basePfn = Math.max(1, Number(domain.geometry.apertureStart >> BigInt(order)));
  if (c.iovad !== null) {
    if (2 ** order !== c.iovad.granule || basePfn !== c.iovad.startPfn) {
      s.log("warn", null, "Incompatible range for DMA domain");
      return err("EFAULT");
    }
    return OK;
  }
  const iovad = new IovaDomain(s.ctx, 2 ** order, basePfn, {
    nrCpus: s.nrCpus,
    name: `domain ${domain.id}`,
  });
  iovad.initRcaches();
  c.iovad = iovad;
  c.options = iommuDmaInitOptions(dev.iommu?.shadowOnFlush ?? false);
  c.apertureLimitPfn = domain.geometry.forceAperture
    ? Number(domain.geometry.apertureEnd >> BigInt(order))
    : Number.POSITIVE_INFINITY;
  // If the flush queue cannot be used, fall back to strict invalidation.
  if (
    domain.type === IOMMU_DOMAIN_DMA_FQ &&
    (!capable(IOMMU_CAP.DEFERRED_FLUSH) || !iommuDmaInitFq(s, domain).ok)
  ) {
    domain.type = IOMMU_DOMAIN_DMA;
  }
  iovaReserveIommuRegions(s, dev, c, iovad);
  return OK;
}

/**
 * `iova_reserve_iommu_regions`: the PCI host bridge's memory windows (peer addresses the bridge
 * would route elsewhere), then every reserved region but SW_MSI (the DMA layer maps those itself);
 * hardware MSI windows are remembered as identity MSI pages.
 */
function iovaReserveIommuRegions(
  s: DmaState,
  dev: Device,
  c: IommuDmaCookie,
  iovad: IovaDomain,
): void {
  if (devIsPci(dev)) {
    const host = dev.fn.host;
    // iova_reserve_pci_windows: bridge->windows (no dma_ranges are modelled).
    if (host instanceof PciHost) {
      const { base, size } = host.mmio;
      iovad.reserveIova(iovad.iovaPfn(base), iovad.iovaPfn(base + size - 1n));
    }
  }
  for (const region of s.core.getResvRegions(dev)) {
    if (region.type === IOMMU_RESV.SW_MSI) continue;
    const lo = iovad.iovaPfn(region.start);
    const hi = iovad.iovaPfn(region.start + region.length - 1n);
    iovad.reserveIova(lo, hi);
    if (region.type === IOMMU_RESV.MSI) {
      // cookie_init_hw_msi_region
      const g = BigInt(iovad.granule);
      const end = region.start + region.length;
      for (let a = region.start - (region.start % g); a < end; a += g) c.msiPages.push(a);
    }
  }
}

/**
 * `iommu_setup_dma_ops(dev, domain)`: PCI devices start with the 32-bit IOVA workaround (unless
 * `iommu.forcedac`); a DMA domain routes the DMA API through dma-iommu, unless initialising it
 * fails (then the device keeps dma-direct).
 */
export function iommuSetupDmaOps(
  s: DmaState,
  dev: Device,
  domain: IommuDomain,
  capable: (cap: number) => boolean,
): void {
  if (devIsPci(dev) && dev.iommu !== null) dev.iommu.pci32bitWorkaround = !s.forcedac;
  dev.dmaIommu = domain.isDma();
  if (dev.dmaIommu && !iommuDmaInitDomain(s, domain, dev, capable).ok) {
    s.log(
      "warn",
      null,
      `Failed to set up IOMMU for device ${dev.name}; retaining platform DMA ops`,
    );
    dev.dmaIommu = false;
  }
}

// ------------------------------------------------------------------ IOVA allocation

/** `iommu_get_dma_domain` and its cookie, for a device whose DMA API goes through the IOMMU. */
export function dmaDomainOf(s: DmaState, dev: Device): IommuDomain {
  const domain = s.core.getDmaDomain(dev);
  if (domain === null) throw new SimError(`${dev.name}: dma-iommu without a default domain`);
  return domain;
}

function liveCookie(domain: IommuDomain): IommuDmaCookie {
  const c = cookieOf(domain);
  if (c === null || c.iovad === null) {
    throw new SimError(`DMA domain ${domain.id} has no initialised IOVA cookie of this DMA layer`);
  }
  return c;
}

/** Bit length of a positive integer below 2^53. */
function bitLength(x: number): number {
  let b = 0;
  while (2 ** b <= x) b++;
  return b;
}

/**
 * `iommu_dma_alloc_iova`: `npages` granules at or below `limitPfn` (and the forced aperture);
 * PCI devices try below 4 GiB first until that fails once. Returns the first pfn, or 0.
 */
function iommuDmaAllocIova(
  s: DmaState,
  c: IommuDmaCookie,
  dev: Device,
  npages: number,
  limitPfn: number,
  cpu: number,
): number {
  const iovad = c.iovad!;
  const limit = limitPfn < c.apertureLimitPfn ? limitPfn : c.apertureLimitPfn;
  const di = dev.iommu;
  if (limit > DMA32_PFN && di !== null && di.pci32bitWorkaround) {
    const pfn = iovad.allocIovaFast(npages, DMA32_PFN, false, cpu);
    if (pfn !== 0) return pfn;
    di.pci32bitWorkaround = false;
    s.log("notice", dev, `Using ${bitLength(limit) + iovad.shift}-bit DMA addresses`);
  }
  return iovad.allocIovaFast(npages, limit, true, cpu);
}

/** `iommu_dma_free_iova`: onto the flush queue for a queued (lazy) gather, else freed now. */
function iommuDmaFreeIova(
  s: DmaState,
  c: IommuDmaCookie,
  pfn: number,
  npages: number,
  gather: IotlbGather | null,
  cpu: number,
): void {
  if (gather?.queued) {
    c.fq!.queueIova(pfn, npages, cpu);
    s.stats.queuedIovas++;
  } else {
    c.iovad!.freeIovaFast(pfn, npages, cpu);
  }
}

// ------------------------------------------------------------------ map and unmap

/**
 * `__iommu_dma_map`: maps `size` bytes from page `pfn` + `off` (off < 4096) below `limitPfn`;
 * the DMA page number (its offset is `off`), or DMA_MAPPING_ERROR_PFN.
 */
function iommuDmaMap(
  s: DmaState,
  dev: Device,
  domain: IommuDomain,
  c: IommuDmaCookie,
  pfn: number,
  off: number,
  size: number,
  prot: number,
  limitPfn: number,
  cpu: number,
): number {
  if (dev.iommu?.attachDeferred && !s.core.deferredAttach(dev, domain).ok) {
    return DMA_MAPPING_ERROR_PFN;
  }
  // iova_align(size + iova_off) in granules (the granule is the 4 KiB page here).
  const npages = Math.ceil((off + size) / 4096);
  const iova = iommuDmaAllocIova(s, c, dev, npages, limitPfn, cpu);
  if (iova === 0) return DMA_MAPPING_ERROR_PFN;
  if (!s.core.mapPfn(domain, iova, pfn, npages, prot).ok) {
    iommuDmaFreeIova(s, c, iova, npages, null, cpu);
    return DMA_MAPPING_ERROR_PFN;
  }
  c.maps++;
  return iova;
}

/**
 * `__iommu_dma_unmap`: `iommu_unmap_fast`, then either `iotlb_sync` and free the IOVA (strict)
 * or queue it until the next flush (lazy). Returns the mode used.
 */
function iommuDmaUnmap(
  s: DmaState,
  domain: IommuDomain,
  c: IommuDmaCookie,
  dmaPfn: number,
  off: number,
  size: number,
  cpu: number,
): "strict" | "lazy" {
  const npages = Math.ceil((off + size) / 4096);
  const gather = c.gather;
  gather.init();
  gather.queued = c.fq !== null;
  const unmapped = s.core.unmapFastPfn(domain, dmaPfn, npages, gather);
  if (unmapped !== npages) {
    s.warnOn(true, "__iommu_dma_unmap", `unmapped ${unmapped} of ${npages} pages at pfn ${dmaPfn}`);
  }
  const lazy = gather.queued;
  if (!lazy) {
    // iommu_iotlb_sync
    domain.ops?.iotlbSync?.(domain, gather);
    gather.init();
    s.stats.iotlbSyncs++;
  }
  iommuDmaFreeIova(s, c, dmaPfn, npages, gather, cpu);
  gather.init();
  c.unmaps++;
  return lazy ? "lazy" : "strict";
}

/**
 * `iommu_dma_map_page` for page `pfn` + `off`: an untrusted device's mapping that does not
 * cover whole granules would need a bounce buffer, and swiotlb is inactive: it fails.
 */
export function iommuDmaMapPage(
  s: DmaState,
  dev: Device,
  pfn: number,
  off: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
  cpu: number,
): number {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
  const prot = dmaInfoToProt(dir, true, attrs);
  if (devIsUntrusted(dev) && (off | (size % 4096)) !== 0) {
    s.log(
      "warn",
      dev,
      "DMA bounce buffers are inactive, unable to map unaligned transaction.",
      "iommu_dma_map_page:swiotlb",
    );
    return DMA_MAPPING_ERROR_PFN;
  }
  return iommuDmaMap(s, dev, domain, c, pfn, off, size, prot, s.paramsOf(dev).mask.pfn, cpu);
}

/**
 * `iommu_dma_unmap_page`: WARNs and does nothing when the address is not mapped; returns the
 * invalidation mode, or null.
 */
export function iommuDmaUnmapPage(
  s: DmaState,
  dev: Device,
  dmaPfn: number,
  off: number,
  size: number,
  cpu: number,
): "strict" | "lazy" | null {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
  const phys = s.core.iovaToPhys(domain, (BigInt(dmaPfn) << 12n) | BigInt(off));
  if (phys === 0n) {
    s.warnOn(true, "iommu_dma_unmap_page", `${dev.name}: unmapping an unmapped IOVA`);
    return null;
  }
  return iommuDmaUnmap(s, domain, c, dmaPfn, off, size, cpu);
}

/** `iommu_dma_map_resource`: an MMIO range (IOMMU_MMIO, never IOMMU_CACHE). */
export function iommuDmaMapResource(
  s: DmaState,
  dev: Device,
  pfn: number,
  off: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
  cpu: number,
): number {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
  const prot = dmaInfoToProt(dir, false, attrs) | IOMMU_MMIO;
  return iommuDmaMap(s, dev, domain, c, pfn, off, size, prot, s.paramsOf(dev).mask.pfn, cpu);
}

/** `iommu_dma_unmap_resource`. */
export function iommuDmaUnmapResource(
  s: DmaState,
  dev: Device,
  dmaPfn: number,
  off: number,
  size: number,
  cpu: number,
): "strict" | "lazy" {
  const domain = dmaDomainOf(s, dev);
  return iommuDmaUnmap(s, domain, liveCookie(domain), dmaPfn, off, size, cpu);
}

// ------------------------------------------------------------------ scatterlists

/**
 * `iommu_map_sg`: maps the (granule-aligned) entries at `iovaPfn`, one `iommu_map` per run of
 * physically contiguous entries, skipping bus addresses; bytes mapped, or the error (after
 * unmapping what was mapped). Divergence: `iotlb_sync_map` runs per run (core.mapPfn), not once.
 */
function iommuMapSg(
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

/** The page number and offset of a bigint DMA address. */
function splitAddr(addr: bigint): [number, number] {
  return [Number(addr >> 12n), Number(addr & 0xfffn)];
}

/** `iommu_dma_map_sg_swiotlb`: each entry mapped on its own (untrusted devices); -EIO on failure. */
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
    const [pfn, off] = splitAddr(sgPhys(sg));
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
    const [pfn, off] = splitAddr(sg.dmaAddress);
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
  if ((sgl[0]!.dmaFlags & SG_DMA_SWIOTLB) !== 0) {
    sgl[0]!.dmaFlags &= ~SG_DMA_SWIOTLB;
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
  const [pfn, off] = splitAddr(start);
  return iommuDmaUnmap(s, domain, liveCookie(domain), pfn, off, Number(end - start), cpu);
}

// ------------------------------------------------------------------ coherent allocations

/** One naturally aligned block of 2^order zeroed frames (alloc_pages), or -1. */
function allocPages(s: DmaState, order: number): number {
  return order === 0 ? s.frames.alloc() : s.frames.allocContiguous(2 ** order, 2 ** order);
}

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
      got = allocPages(s, order);
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
  const ppn = allocPages(s, order);
  if (ppn < 0) return null;
  const iova = iommuDmaMap(s, dev, domain, c, ppn, 0, size, prot, limit, cpu);
  if (iova === DMA_MAPPING_ERROR_PFN) {
    s.frames.free(ppn, 2 ** order);
    return null;
  }
  const pages: number[] = [];
  for (let k = 0; k < Math.ceil(size / 4096); k++) pages.push(ppn + k);
  return new DmaCoherent(dev, BigInt(size), BigInt(iova) << 12n, "contiguous", pages, order);
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
  const [pfn, off] = splitAddr(handle);
  const mode = iommuDmaUnmap(s, domain, liveCookie(domain), pfn, off, size, cpu);
  buf.releaseFrames(s.frames);
  return mode;
}
