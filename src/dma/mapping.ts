// The DMA mapping API of one machine: kernel/dma/mapping.c (v6.16) over dma-iommu
// (dma-iommu*.ts) and dma-direct (dma-direct.ts). `installDmaApi(core, …)` installs dma-iommu's
// cookie, flush-queue and `iommu_setup_dma_ops` hooks in the IOMMU core and returns the `DmaApi`,
// whose methods are the kernel calls (docs/dma-api.md has the table):
//
//   dma_set_mask(dev, mask)                       dma.setMask(dev, mask) → Result (EIO)
//   dma_map_single_attrs(dev, ptr, size, dir, a)  dma.mapSingle(dev, paddr, size, dir, attrs)
//   dma_map_page_attrs / dma_unmap_page_attrs     dma.mapPage / dma.unmapPage
//   dma_map_sg_attrs / dma_map_sgtable            dma.mapSg → entries (0 = error) / mapSgtable
//   dma_alloc_attrs / dma_free_attrs              dma.allocAttrs → DmaCoherent | null / freeAttrs
//   dma_mapping_error(dev, addr)                  dma.mappingError(dev, addr) → Result (ENOMEM)
//
// Which path a device takes is `use_dma_iommu(dev)`: `dev.dmaIommu`, set by
// `iommu_setup_dma_ops` when the group's default domain is DMA or DMA_FQ; anything else (no
// IOMMU, IDENTITY, a failed set-up) is dma-direct. As in the kernel, a group claimed by another
// owner (VFIO, a blocking domain) keeps its DMA API pointed at the default domain: mappings
// succeed, but the device's traffic goes to the owner's domain, so it never sees them.
//
// Every call takes a trailing `cpu` (the kernel's current CPU, default 0): it picks the IOVA
// range cache and the flush-queue ring. `mapPagePfn` / `unmapPagePfn` are the BigInt-free forms
// of map/unmap (page number + offset) for hot loops.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import { domainTypeName } from "../iommu/constants.js";
import type { IommuCore } from "../iommu/core.js";
import type { DmaIommuHooks } from "../iommu/dma-cookie.js";
import type { IommuDomain } from "../iommu/domain.js";
import type { DmaCoherent } from "./coherent.js";
import {
  checkDmaDirection,
  DMA_BIDIRECTIONAL,
  DMA_MAPPING_ERROR,
  DMA_MAPPING_ERROR_PFN,
  type DmaDataDirection,
  dmaDirectionName,
  type Gfp,
} from "./constants.js";
import type { DeviceDmaParams } from "./device-dma.js";
import {
  dmaDirectAlloc,
  dmaDirectFree,
  dmaDirectMapPage,
  dmaDirectMapResource,
  dmaDirectMapSg,
  dmaDirectSupported,
  dmaDirectUnmapSg,
} from "./dma-direct.js";
import {
  cookieOf,
  type IommuDmaCookie,
  iommuDmaInitFq,
  iommuDmaMapPage,
  iommuDmaMapResource,
  iommuDmaUnmapPage,
  iommuDmaUnmapResource,
  iommuGetDmaCookie,
  iommuPutDmaCookie,
  iommuSetupDmaOps,
} from "./dma-iommu.js";
import { iommuDmaAlloc, iommuDmaFree } from "./dma-iommu-alloc.js";
import { iommuDmaMapSg, iommuDmaUnmapSg } from "./dma-iommu-sg.js";
import type { Scatterlist, SgTable } from "./scatterlist.js";
import { DmaState, type DmaStats } from "./state.js";

export interface DmaApiOptions {
  readonly memory: PhysicalMemory;
  /** Where coherent allocations come from. */
  readonly frames: FrameAllocator;
  /** CPUs (per-CPU IOVA caches and flush-queue rings); default 1. */
  readonly nrCpus?: number;
  /** `iommu.forcedac=1`: PCI devices do not try 32-bit IOVAs first. Default false. */
  readonly forcedac?: boolean;
}

/** Which `dma_map_ops` path a device takes. */
export type DmaOpsKind = "dma-iommu" | "dma-direct";

const installed = new WeakMap<IommuCore, DmaApi>();

/**
 * Installs the DMA layer on `core` (its DMA-IOMMU hooks) and returns the machine's DMA API.
 * Installing before IOMMUs register is the kernel's order. On a core that already probed devices,
 * the DMA domains' placeholder cookies are replaced and `iommu_setup_dma_ops` runs again for
 * every member of a group with a DMA default domain, as if the layer had been there at boot.
 */
export function installDmaApi(core: IommuCore, options: DmaApiOptions): DmaApi {
  if (installed.has(core)) throw new SimError("the DMA API is already installed on this core");
  const nrCpus = options.nrCpus ?? 1;
  if (!Number.isInteger(nrCpus) || nrCpus < 1 || nrCpus > 4096) {
    throw new SimError(`DMA API: nrCpus ${nrCpus} is not in [1, 4096]`);
  }
  const s = new DmaState(core, {
    memory: options.memory,
    frames: options.frames,
    nrCpus,
    forcedac: options.forcedac ?? false,
  });
  const hooks: DmaIommuHooks = {
    getDmaCookie: (domain) => iommuGetDmaCookie(domain),
    putDmaCookie: (domain) => iommuPutDmaCookie(domain),
    initFq: (domain) => iommuDmaInitFq(s, domain),
    setupDmaOps: (dev, domain, capable) => iommuSetupDmaOps(s, dev, domain, capable),
  };
  core.setDmaIommuHooks(hooks);
  adoptRunningCore(core, hooks);
  const api = new DmaApi(s);
  installed.set(core, api);
  return api;
}

/** The DMA API installed on `core`, or null. */
export function dmaApiOf(core: IommuCore): DmaApi | null {
  return installed.get(core) ?? null;
}

/** Gives already-probed DMA domains real cookies and sets their devices up again. */
function adoptRunningCore(core: IommuCore, hooks: DmaIommuHooks): void {
  for (const domain of core.domains()) {
    if (domain.cookieType !== "DMA_IOVA" || cookieOf(domain) !== null) continue;
    domain.iovaCookie = null;
    domain.cookieType = "NONE";
    hooks.getDmaCookie(domain);
  }
  for (const group of core.groups()) {
    const dd = group.defaultDomain;
    if (dd === null) continue;
    for (const gdev of group.devices) {
      hooks.setupDmaOps(gdev.dev, dd, (cap) => core.deviceIommuCapable(gdev.dev, cap as never));
    }
  }
}

function checkSize(size: bigint, fn: string): number {
  if (size <= 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SimError(`${fn}: size 0x${size.toString(16)} is not a positive size below 2^53`);
  }
  return Number(size);
}

function checkAddr(addr: bigint, fn: string): void {
  if (addr < 0n || addr > DMA_MAPPING_ERROR) {
    throw new SimError(`${fn}: address 0x${addr.toString(16)} is not a u64`);
  }
}

function checkPfnArgs(pfn: number, off: number, size: number, fn: string): void {
  if (!Number.isInteger(pfn) || pfn < 0 || pfn >= 2 ** 52) {
    throw new SimError(`${fn}: page number ${pfn} is not in [0, 2^52)`);
  }
  if (!Number.isInteger(off) || off < 0 || off > 0xfff) {
    throw new SimError(`${fn}: offset ${off} is not within a 4 KiB page`);
  }
  if (!Number.isInteger(size) || size <= 0 || size > Number.MAX_SAFE_INTEGER) {
    throw new SimError(`${fn}: size ${size} is not a positive integer`);
  }
}

function dmaAddr(pfn: number, off: number): bigint {
  return (BigInt(pfn) << 12n) | BigInt(off);
}

function checkNents(sgl: readonly Scatterlist[], nents: number, fn: string): void {
  if (!Number.isInteger(nents) || nents < 1 || nents > sgl.length) {
    throw new SimError(`${fn}: nents ${nents} for a list of ${sgl.length}`);
  }
}

/** The bytes of the first `nents` entries (their CPU-side lengths). */
function sgBytes(sgl: readonly Scatterlist[], nents: number): number {
  let bytes = 0;
  for (let i = 0; i < nents; i++) bytes += sgl[i]!.length;
  return bytes;
}

/** The `dma:map` event of one mapping of `kind` (page, resource, sg, alloc). */
function traceMap(
  s: DmaState,
  dev: Device,
  kind: string,
  iova: bigint,
  paddr: bigint,
  size: bigint,
  dir: DmaDataDirection,
  attrs: number,
): void {
  s.ctx.trace.emit("dma:map", dev.name, {
    device: dev.name,
    kind,
    iova,
    paddr,
    size,
    dir: dmaDirectionName(dir),
    attrs,
  });
}

/** The `dma:unmap` event; `mode`: strict, lazy, direct, or null when nothing was unmapped. */
function traceUnmap(
  s: DmaState,
  dev: Device,
  kind: string,
  iova: bigint,
  size: bigint,
  dir: DmaDataDirection,
  attrs: number,
  mode: string | null,
): void {
  s.ctx.trace.emit("dma:unmap", dev.name, {
    device: dev.name,
    kind,
    iova,
    size,
    dir: dmaDirectionName(dir),
    attrs,
    mode: mode ?? "none",
  });
}

/** What differs between the page and the resource streaming calls: names, paths, counters. */
interface StreamingKind {
  readonly kind: "page" | "resource";
  readonly mapFn: string;
  readonly unmapFn: string;
  readonly iommuMap: typeof iommuDmaMapPage;
  readonly directMap: typeof dmaDirectMapPage;
  readonly iommuUnmap: typeof iommuDmaUnmapPage;
  countMap(stats: DmaStats): void;
  countUnmap(stats: DmaStats): void;
}

/** dma_map_page_attrs / dma_unmap_page_attrs (and the _single forms). */
const PAGE: StreamingKind = {
  kind: "page",
  mapFn: "dma_map_page_attrs",
  unmapFn: "dma_unmap_page_attrs",
  iommuMap: iommuDmaMapPage,
  directMap: dmaDirectMapPage,
  iommuUnmap: iommuDmaUnmapPage,
  countMap: (st) => {
    st.mapPage++;
  },
  countUnmap: (st) => {
    st.unmapPage++;
  },
};

/** dma_map_resource / dma_unmap_resource: MMIO, never swiotlb. */
const RESOURCE: StreamingKind = {
  kind: "resource",
  mapFn: "dma_map_resource",
  unmapFn: "dma_unmap_resource",
  iommuMap: iommuDmaMapResource,
  directMap: dmaDirectMapResource,
  iommuUnmap: iommuDmaUnmapResource,
  countMap: (st) => {
    st.mapResource++;
  },
  countUnmap: (st) => {
    st.unmapResource++;
  },
};

export class DmaApi {
  /** @internal the state shared by the DMA layer's files. */
  readonly s: DmaState;

  /** @internal use installDmaApi. */
  constructor(s: DmaState) {
    this.s = s;
  }

  get core(): IommuCore {
    return this.s.core;
  }

  get nrCpus(): number {
    return this.s.nrCpus;
  }

  // ---------------------------------------------------------------- ops selection

  /** `use_dma_iommu(dev)`: the DMA API goes through the group's default (DMA) domain. */
  useDmaIommu(dev: Device): boolean {
    // iommu_deinit_device clears dma_iommu: a released device is direct again.
    return dev.dmaIommu;
  }

  opsKind(dev: Device): DmaOpsKind {
    return this.useDmaIommu(dev) ? "dma-iommu" : "dma-direct";
  }

  /** The DMA layer's cookie of a domain (null for non-DMA domains). */
  cookieOf(domain: IommuDomain): IommuDmaCookie | null {
    return cookieOf(domain);
  }

  // ---------------------------------------------------------------- masks and parameters

  /** `dma_supported`: dma-iommu takes any mask; dma-direct needs one that reaches its memory. */
  dmaSupported(dev: Device, mask: bigint): boolean {
    return this.useDmaIommu(dev) || dmaDirectSupported(this.s, mask);
  }

  /** `dma_set_mask`: EIO without a mask pointer or when the mask is not supported. */
  setMask(dev: Device, mask: bigint): Result {
    checkAddr(mask, "dma_set_mask");
    const p = this.s.paramsOf(dev);
    if (p.dmaMask === null || !this.dmaSupported(dev, mask)) return err("EIO");
    p.dmaMask = mask;
    return OK;
  }

  /** `dma_set_coherent_mask`: EIO when the mask is not supported. */
  setCoherentMask(dev: Device, mask: bigint): Result {
    checkAddr(mask, "dma_set_coherent_mask");
    if (!this.dmaSupported(dev, mask)) return err("EIO");
    this.s.paramsOf(dev).coherentDmaMask = mask;
    return OK;
  }

  /** `dma_set_mask_and_coherent`: the coherent mask is set only when the streaming one was. */
  setMaskAndCoherent(dev: Device, mask: bigint): Result {
    const r = this.setMask(dev, mask);
    return r.ok ? this.setCoherentMask(dev, mask) : r;
  }

  /** `dma_coerce_mask_and_coherent`: points `dma_mask` at the coherent mask, then sets both. */
  coerceMaskAndCoherent(dev: Device, mask: bigint): Result {
    this.s.paramsOf(dev).pointMaskAtCoherent();
    return this.setMaskAndCoherent(dev, mask);
  }

  /** `dma_get_mask`: the mask, or 32 bits when there is none. */
  getMask(dev: Device): bigint {
    return this.s.paramsOf(dev).getMask();
  }

  /** `dev->coherent_dma_mask`. */
  getCoherentMask(dev: Device): bigint {
    return this.s.paramsOf(dev).coherentDmaMask;
  }

  /** `dma_set_max_seg_size` (WARN and no effect without `dma_parms`). */
  setMaxSegSize(dev: Device, size: number): void {
    if (!Number.isInteger(size) || size < 0 || size > 0xffff_ffff) {
      throw new SimError(`dma_set_max_seg_size: ${size} is not an unsigned int`);
    }
    const p = this.#parms(dev, "dma_set_max_seg_size");
    if (p !== null) p.maxSegmentSize = size;
  }

  /** `dma_get_max_seg_size`. */
  getMaxSegSize(dev: Device): number {
    return this.s.paramsOf(dev).getMaxSegSize();
  }

  /** `dma_set_seg_boundary`: a mask 2^n − 1; WARN and no effect without `dma_parms`. */
  setSegBoundary(dev: Device, mask: bigint): void {
    checkAddr(mask, "dma_set_seg_boundary");
    if ((mask & (mask + 1n)) !== 0n) {
      throw new SimError(`dma_set_seg_boundary: 0x${mask.toString(16)} is not 2^n - 1`);
    }
    const p = this.#parms(dev, "dma_set_seg_boundary");
    if (p !== null) p.segmentBoundaryMask = mask;
  }

  /** The device's parameters when it has `dma_parms`; else `fn` WARNs (once) and null. */
  #parms(dev: Device, fn: string): DeviceDmaParams | null {
    const p = this.s.paramsOf(dev);
    return this.s.warnOnce(!p.hasParms, fn, `${dev.name} has no dma_parms`) ? null : p;
  }

  /** `dma_get_seg_boundary`. */
  getSegBoundary(dev: Device): bigint {
    return this.s.paramsOf(dev).getSegBoundary();
  }

  // ---------------------------------------------------------------- streaming mappings

  /**
   * `dma_map_page_attrs` with page numbers (BigInt-free): maps `size` bytes at page `pfn` +
   * `offset` (< 4096); the DMA page number (the DMA address is it << 12 | offset), or
   * DMA_MAPPING_ERROR_PFN.
   */
  mapPagePfn(
    dev: Device,
    pfn: number,
    offset: number,
    size: number,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): number {
    checkDmaDirection(dir, PAGE.mapFn);
    checkPfnArgs(pfn, offset, size, PAGE.mapFn);
    return this.#mapPfn(PAGE, dev, pfn, offset, size, dir, attrs, cpu);
  }

  /** `dma_unmap_page_attrs` with page numbers: `dmaPfn` and `offset` as `mapPagePfn` gave them. */
  unmapPagePfn(
    dev: Device,
    dmaPfn: number,
    offset: number,
    size: number,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): void {
    checkDmaDirection(dir, PAGE.unmapFn);
    checkPfnArgs(dmaPfn, offset, size, PAGE.unmapFn);
    this.#unmapPfn(PAGE, dev, dmaPfn, offset, size, dir, attrs, cpu);
  }

  /** `dma_map_page_attrs(dev, page, offset, size, dir, attrs)`; `page`: a page's address. */
  mapPage(
    dev: Device,
    page: bigint,
    offset: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): bigint {
    checkAddr(page, PAGE.mapFn);
    if ((page & 0xfffn) !== 0n) {
      throw new SimError(`dma_map_page_attrs: 0x${page.toString(16)} is not a page address`);
    }
    return this.mapSingle(dev, page + offset, size, dir, attrs, cpu);
  }

  /** `dma_map_single_attrs`: the buffer at physical address `paddr` (the kernel's `ptr`). */
  mapSingle(
    dev: Device,
    paddr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): bigint {
    return this.#mapAddr(PAGE, "dma_map_single_attrs", dev, paddr, size, dir, attrs, cpu);
  }

  /** `dma_unmap_page_attrs`. */
  unmapPage(
    dev: Device,
    addr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): void {
    this.unmapSingle(dev, addr, size, dir, attrs, cpu);
  }

  /** `dma_unmap_single_attrs`. */
  unmapSingle(
    dev: Device,
    addr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): void {
    this.#unmapAddr(PAGE, "dma_unmap_single_attrs", dev, addr, size, dir, attrs, cpu);
  }

  /** `dma_map_resource`: an MMIO range (e.g. a peer's BAR); DMA_MAPPING_ERROR on failure. */
  mapResource(
    dev: Device,
    physAddr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): bigint {
    return this.#mapAddr(RESOURCE, RESOURCE.mapFn, dev, physAddr, size, dir, attrs, cpu);
  }

  /** `dma_unmap_resource`. */
  unmapResource(
    dev: Device,
    addr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): void {
    this.#unmapAddr(RESOURCE, RESOURCE.unmapFn, dev, addr, size, dir, attrs, cpu);
  }

  /** `dma_mapping_error`: ENOMEM for DMA_MAPPING_ERROR, else OK. */
  mappingError(_dev: Device, addr: bigint): Result {
    return addr === DMA_MAPPING_ERROR ? err("ENOMEM") : OK;
  }

  // ---------------------------------------------------------------- scatterlists

  /**
   * `__dma_map_sg_attrs`: the DMA segment count, or the errno (EINVAL, ENOMEM, EIO; anything else
   * WARNs and becomes EIO). No dma_mask: WARN and 0 segments.
   */
  #mapSg(
    dev: Device,
    sgl: readonly Scatterlist[],
    nents: number,
    dir: DmaDataDirection,
    attrs: number,
    cpu: number,
  ): Result<number> {
    checkDmaDirection(dir, "dma_map_sg_attrs");
    checkNents(sgl, nents, "dma_map_sg_attrs");
    const s = this.s;
    s.stats.mapSg++;
    if (s.paramsOf(dev).dmaMask === null) {
      s.warnOnce(true, "__dma_map_sg_attrs", `${dev.name}: no dma_mask`);
      s.stats.mappingErrors++;
      return { ok: true, value: 0 };
    }
    let ents: Result<number>;
    if (this.useDmaIommu(dev)) {
      ents = iommuDmaMapSg(s, dev, sgl, nents, dir, attrs, cpu);
    } else {
      const n = dmaDirectMapSg(s, dev, sgl, nents);
      ents = n === 0 ? err("EIO") : { ok: true, value: n };
    }
    if (ents.ok && ents.value > 0) {
      s.stats.bytesMapped += sgBytes(sgl, nents);
      if (s.ctx.trace.enabled) {
        for (let i = 0; i < ents.value; i++) {
          const sg = sgl[i]!;
          const paddr = sg.page + BigInt(sg.offset);
          traceMap(s, dev, "sg", sg.dmaAddress, paddr, BigInt(sg.dmaLength), dir, attrs);
        }
      }
      return ents;
    }
    s.stats.mappingErrors++;
    if (ents.ok) {
      s.warnOnce(true, "__dma_map_sg_attrs", `${dev.name}: mapped 0 entries`);
      return err("EIO");
    }
    return ents;
  }

  /** `dma_map_sg_attrs`: the DMA segment count (≤ nents), 0 on failure. */
  mapSg(
    dev: Device,
    sgl: readonly Scatterlist[],
    nents: number,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): number {
    const r = this.#mapSg(dev, sgl, nents, dir, attrs, cpu);
    return r.ok ? r.value : 0;
  }

  /** `dma_map_sgtable`: sets `sgt.nents`; the errno on failure. */
  mapSgtable(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs = 0, cpu = 0): Result {
    const r = this.#mapSg(dev, sgt.sgl, sgt.origNents, dir, attrs, cpu);
    if (!r.ok) return r;
    sgt.nents = r.value;
    return OK;
  }

  /** `dma_unmap_sg_attrs`: `nents` is the count given to mapSg, not the one it returned. */
  unmapSg(
    dev: Device,
    sgl: readonly Scatterlist[],
    nents: number,
    dir: DmaDataDirection,
    attrs = 0,
    cpu = 0,
  ): void {
    checkDmaDirection(dir, "dma_unmap_sg_attrs");
    checkNents(sgl, nents, "dma_unmap_sg_attrs");
    const s = this.s;
    let mode: string | null = "direct";
    if (this.useDmaIommu(dev)) mode = iommuDmaUnmapSg(s, dev, sgl, nents, cpu);
    else dmaDirectUnmapSg(sgl, nents);
    const bytes = sgBytes(sgl, nents);
    s.stats.bytesUnmapped += bytes;
    s.stats.unmapSg++;
    if (s.ctx.trace.enabled) {
      traceUnmap(s, dev, "sg", sgl[0]!.dmaAddress, BigInt(bytes), dir, attrs, mode);
    }
  }

  /** `dma_unmap_sgtable`. */
  unmapSgtable(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs = 0, cpu = 0): void {
    this.unmapSg(dev, sgt.sgl, sgt.origNents, dir, attrs, cpu);
  }

  // ---------------------------------------------------------------- coherent allocations

  /**
   * `dma_alloc_attrs`: a zeroed buffer mapped for both directions below the coherent mask, or null.
   * The buffer stands for `cpu_addr`; `buf.dmaHandle` is `*dma_handle`.
   */
  allocAttrs(
    dev: Device,
    size: bigint,
    gfp: Gfp = "GFP_KERNEL",
    attrs = 0,
    cpu = 0,
  ): DmaCoherent | null {
    const n = checkSize(size, "dma_alloc_attrs");
    const s = this.s;
    const p = s.paramsOf(dev);
    s.warnOnce(p.coherentDmaMask === 0n, "dma_alloc_attrs", `${dev.name}: coherent_dma_mask is 0`);
    const buf = this.useDmaIommu(dev)
      ? iommuDmaAlloc(s, dev, n, gfp, attrs, cpu)
      : dmaDirectAlloc(s, dev, n);
    s.stats.alloc++;
    if (buf === null) s.stats.mappingErrors++;
    else s.stats.bytesMapped += n;
    if (s.ctx.trace.enabled) {
      const paddr = buf === null ? 0n : BigInt(buf.pages[0]!) << 12n;
      traceMap(s, dev, "alloc", buf?.dmaHandle ?? 0n, paddr, size, DMA_BIDIRECTIONAL, attrs);
    }
    return buf;
  }

  /** `dma_alloc_coherent(dev, size, &handle, gfp)`. */
  allocCoherent(dev: Device, size: bigint, gfp: Gfp = "GFP_KERNEL", cpu = 0): DmaCoherent | null {
    return this.allocAttrs(dev, size, gfp, 0, cpu);
  }

  /** `dma_free_attrs(dev, size, cpu_addr, dma_handle, attrs)`; a null `cpuAddr` does nothing. */
  freeAttrs(
    dev: Device,
    size: bigint,
    cpuAddr: DmaCoherent | null,
    dmaHandle: bigint,
    attrs = 0,
    cpu = 0,
  ): void {
    const s = this.s;
    if (cpuAddr === null) return;
    const n = checkSize(size, "dma_free_attrs");
    if (cpuAddr.dev !== dev || cpuAddr.size !== size) {
      throw new SimError(
        `dma_free_attrs(${dev.name}, 0x${size.toString(16)}): not the size/device of the allocation`,
      );
    }
    if (cpuAddr.freed) throw new SimError(`dma_free_attrs(${dev.name}): buffer already freed`);
    let mode = "direct";
    if (cpuAddr.kind === "direct") dmaDirectFree(s, cpuAddr);
    else mode = iommuDmaFree(s, dev, n, cpuAddr, dmaHandle, cpu);
    s.stats.free++;
    s.stats.bytesUnmapped += n;
    if (s.ctx.trace.enabled) {
      traceUnmap(s, dev, "alloc", dmaHandle, size, DMA_BIDIRECTIONAL, attrs, mode);
    }
  }

  /** `dma_free_coherent`. */
  freeCoherent(
    dev: Device,
    size: bigint,
    cpuAddr: DmaCoherent | null,
    dmaHandle: bigint,
    cpu = 0,
  ): void {
    this.freeAttrs(dev, size, cpuAddr, dmaHandle, 0, cpu);
  }

  // ---------------------------------------------------------------- views

  /** Kernel log lines of the DMA layer. */
  logs(): readonly { level: string; device: string | null; message: string }[] {
    return this.s.logs;
  }

  /** One device's DMA state: which ops, its masks and parameters, its DMA domain. */
  deviceView(dev: Device): Json {
    const iommu = this.useDmaIommu(dev);
    const domain = iommu ? this.s.core.getDmaDomain(dev) : null;
    return {
      device: dev.name,
      ops: this.opsKind(dev),
      ...(this.s.paramsOf(dev).toJSON() as { [key: string]: Json }),
      domain: domain?.id ?? null,
      domain_type: domain === null ? null : domainTypeName(domain.type),
      mode: domain === null ? null : (cookieOf(domain)?.mode ?? null),
      pci_32bit_workaround: dev.iommu?.pci32bitWorkaround ?? false,
    };
  }

  /** The cookies of live DMA domains, by domain id. */
  cookies(): IommuDmaCookie[] {
    const out: IommuDmaCookie[] = [];
    for (const d of this.s.core.domains()) {
      const c = cookieOf(d);
      if (c !== null) out.push(c);
    }
    return out;
  }

  toJSON(): Json {
    return {
      nr_cpus: this.s.nrCpus,
      forcedac: this.s.forcedac,
      stats: this.s.stats.toJSON(),
      devices: this.s.devices().map((d) => this.deviceView(d)),
      cookies: this.cookies().map((c) => c.toJSON()),
      logs: this.s.logs.map((l) => ({ level: l.level, device: l.device, message: l.message })),
    };
  }

  // ---------------------------------------------------------------- the streaming paths

  /** The bigint form of a streaming map: `fn` names the call in argument errors. */
  #mapAddr(
    k: StreamingKind,
    fn: string,
    dev: Device,
    paddr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs: number,
    cpu: number,
  ): bigint {
    checkDmaDirection(dir, k.mapFn);
    checkAddr(paddr, fn);
    const n = checkSize(size, fn);
    const off = Number(paddr & 0xfffn);
    const out = this.#mapPfn(k, dev, Number(paddr >> 12n), off, n, dir, attrs, cpu);
    return out === DMA_MAPPING_ERROR_PFN ? DMA_MAPPING_ERROR : dmaAddr(out, off);
  }

  /** The bigint form of a streaming unmap. */
  #unmapAddr(
    k: StreamingKind,
    fn: string,
    dev: Device,
    addr: bigint,
    size: bigint,
    dir: DmaDataDirection,
    attrs: number,
    cpu: number,
  ): void {
    checkDmaDirection(dir, k.unmapFn);
    checkAddr(addr, fn);
    const n = checkSize(size, fn);
    this.#unmapPfn(k, dev, Number(addr >> 12n), Number(addr & 0xfffn), n, dir, attrs, cpu);
  }

  /** A streaming map: no dma_mask is a WARN and an error; then dma-iommu or dma-direct. */
  #mapPfn(
    k: StreamingKind,
    dev: Device,
    pfn: number,
    off: number,
    size: number,
    dir: DmaDataDirection,
    attrs: number,
    cpu: number,
  ): number {
    const s = this.s;
    let out: number;
    if (s.paramsOf(dev).dmaMask === null) {
      s.warnOnce(true, k.mapFn, `${dev.name}: no dma_mask`);
      out = DMA_MAPPING_ERROR_PFN;
    } else if (this.useDmaIommu(dev)) {
      out = k.iommuMap(s, dev, pfn, off, size, dir, attrs, cpu);
    } else {
      out = k.directMap(s, dev, pfn, off, size);
    }
    if (out === DMA_MAPPING_ERROR_PFN) s.stats.mappingErrors++;
    else s.stats.bytesMapped += size;
    if (s.ctx.trace.enabled) {
      const iova = out === DMA_MAPPING_ERROR_PFN ? DMA_MAPPING_ERROR : dmaAddr(out, off);
      traceMap(s, dev, k.kind, iova, dmaAddr(pfn, off), BigInt(size), dir, attrs);
    }
    k.countMap(s.stats);
    return out;
  }

  /** A streaming unmap: dma-iommu's (null when nothing was mapped there), or dma-direct's. */
  #unmapPfn(
    k: StreamingKind,
    dev: Device,
    dmaPfn: number,
    off: number,
    size: number,
    dir: DmaDataDirection,
    attrs: number,
    cpu: number,
  ): void {
    const s = this.s;
    const mode = this.useDmaIommu(dev) ? k.iommuUnmap(s, dev, dmaPfn, off, size, cpu) : "direct";
    if (mode !== null) s.stats.bytesUnmapped += size;
    if (s.ctx.trace.enabled) {
      traceUnmap(s, dev, k.kind, dmaAddr(dmaPfn, off), BigInt(size), dir, attrs, mode);
    }
    k.countUnmap(s.stats);
  }
}
