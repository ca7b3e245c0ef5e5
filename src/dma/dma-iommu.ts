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
// return the DMA page number, or DMA_MAPPING_ERROR_PFN. Scatterlists are in dma-iommu-sg.ts,
// coherent allocations in dma-iommu-alloc.ts; both build on the exports here.
//
// Modelled choices: every device is DMA-coherent (IOMMU_CACHE, no cache maintenance); swiotlb is
// not active (no bounce buffers, as on a RISC-V machine whose RAM lies below 4 GiB), so an
// untrusted device's sub-page mapping fails the way the kernel fails it; no P2PDMA pages and no
// dma_range_map / bus_dma_limit.

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import { err, OK, type Result } from "../base/result.js";
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
import {
  DMA_ATTR_PRIVILEGED,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR_PFN,
  DMA_TO_DEVICE,
  type DmaDataDirection,
} from "./constants.js";
import {
  type FqFlushReason,
  type IommuDmaOptions,
  IovaFlushQueue,
  iommuDmaInitOptions,
} from "./flush-queue.js";
import { IovaDomain } from "./iova.js";
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

/** The cookie of a DMA domain the DMA layer initialised (anything else is a simulator bug). */
export function liveCookie(domain: IommuDomain): IommuDmaCookie {
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
export function iommuDmaAllocIova(
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
export function iommuDmaFreeIova(
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
export function iommuDmaMap(
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
export function iommuDmaUnmap(
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
  if (devIsUntrusted(dev) && (off | (size % 4096)) !== 0) {
    s.log(
      "warn",
      dev,
      "DMA bounce buffers are inactive, unable to map unaligned transaction.",
      "iommu_dma_map_page:swiotlb",
    );
    return DMA_MAPPING_ERROR_PFN;
  }
  return iommuDmaMapBelowMask(s, dev, pfn, off, size, dmaInfoToProt(dir, true, attrs), cpu);
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
  if (s.core.iovaToPhysPfn(domain, dmaPfn) < 0) {
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
  const prot = dmaInfoToProt(dir, false, attrs) | IOMMU_MMIO;
  return iommuDmaMapBelowMask(s, dev, pfn, off, size, prot, cpu);
}

/** `__iommu_dma_map(dev, phys, size, prot, dma_get_mask(dev))` in the device's DMA domain. */
function iommuDmaMapBelowMask(
  s: DmaState,
  dev: Device,
  pfn: number,
  off: number,
  size: number,
  prot: number,
  cpu: number,
): number {
  const domain = dmaDomainOf(s, dev);
  const c = liveCookie(domain);
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

/** The page number and offset of a bigint DMA address. */
export function splitDmaAddr(addr: bigint): [number, number] {
  return [Number(addr >> 12n), Number(addr & 0xfffn)];
}
