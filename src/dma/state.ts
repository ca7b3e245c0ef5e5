// What the DMA layer's files share for one machine: the IOMMU core it sits on, memory and frames
// for coherent allocations, boot options (CPUs, `iommu.forcedac`), per-device DMA parameters,
// statistics, kernel log lines and the WARN_ONCE sites already hit.

import type { SimContext } from "../base/context.js";
import type { Json } from "../base/json.js";
import type { Device } from "../bus/device.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import type { IommuCore } from "../iommu/core.js";
import { DeviceDmaParams } from "./device-dma.js";

/** A kernel log line of the DMA layer (pr_warn, dev_notice, …). */
export interface DmaLog {
  readonly level: "err" | "warn" | "notice" | "info";
  readonly device: string | null;
  readonly message: string;
}

/** Counters over every device (the views' `stats`). */
export class DmaStats {
  mapPage = 0;
  unmapPage = 0;
  mapSg = 0;
  unmapSg = 0;
  mapResource = 0;
  unmapResource = 0;
  alloc = 0;
  free = 0;
  /** Map and alloc calls that failed (DMA_MAPPING_ERROR, 0 entries, NULL). */
  mappingErrors = 0;
  bytesMapped = 0;
  bytesUnmapped = 0;
  /** Strict unmaps: `iotlb_sync` before the IOVA was freed. */
  iotlbSyncs = 0;
  /** Lazy unmaps: IOVAs queued on a flush queue. */
  queuedIovas = 0;
  /** Flush-queue flushes (`flush_iotlb_all`), by reason. */
  fqFlushFull = 0;
  fqFlushTimeout = 0;

  toJSON(): Json {
    return {
      map_page: this.mapPage,
      unmap_page: this.unmapPage,
      map_sg: this.mapSg,
      unmap_sg: this.unmapSg,
      map_resource: this.mapResource,
      unmap_resource: this.unmapResource,
      alloc: this.alloc,
      free: this.free,
      mapping_errors: this.mappingErrors,
      bytes_mapped: this.bytesMapped,
      bytes_unmapped: this.bytesUnmapped,
      iotlb_syncs: this.iotlbSyncs,
      queued_iovas: this.queuedIovas,
      fq_flushes: { full: this.fqFlushFull, timeout: this.fqFlushTimeout },
    };
  }
}

export interface DmaStateOptions {
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly nrCpus: number;
  readonly forcedac: boolean;
}

export class DmaState {
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly nrCpus: number;
  /** `iommu_dma_forcedac` (`iommu.forcedac=`): PCI devices skip the 32-bit IOVA attempt. */
  readonly forcedac: boolean;
  /** `max_pfn`: one past the last RAM page. */
  readonly maxPfn: number;
  readonly stats = new DmaStats();
  readonly logs: DmaLog[] = [];
  readonly #params = new Map<Device, DeviceDmaParams>();
  readonly #warnedOnce = new Set<string>();

  constructor(
    readonly core: IommuCore,
    options: DmaStateOptions,
  ) {
    this.ctx = core.ctx;
    this.memory = options.memory;
    this.frames = options.frames;
    this.nrCpus = options.nrCpus;
    this.forcedac = options.forcedac;
    let top = 0;
    for (const r of options.memory.regions) {
      const end = Number((r.base + r.size) >> 12n);
      if (end > top) top = end;
    }
    this.maxPfn = top;
  }

  /** The device's DMA parameters, created with its bus's defaults on first use. */
  paramsOf(dev: Device): DeviceDmaParams {
    let p = this.#params.get(dev);
    if (p === undefined) {
      p = new DeviceDmaParams(dev);
      this.#params.set(dev, p);
    }
    return p;
  }

  /** Devices the DMA layer has seen, in the order it first saw them. */
  devices(): Device[] {
    return [...this.#params.keys()];
  }

  /** `WARN_ON(cond)`: a machine warning whenever `cond` holds; returns `cond`. */
  warnOn(cond: boolean, site: string, message: string): boolean {
    return this.ctx.warnings.on(cond, site, message);
  }

  /** `WARN_ON_ONCE` / `dev_WARN_ONCE`: only the first hit of `site` warns; returns `cond`. */
  warnOnce(cond: boolean, site: string, message: string): boolean {
    if (!cond) return false;
    if (!this.#warnedOnce.has(site)) {
      this.#warnedOnce.add(site);
      this.ctx.warnings.warn(site, message);
    }
    return true;
  }

  /** A kernel log line; `once` keys a `dev_warn_once`-style line printed only the first time. */
  log(level: DmaLog["level"], dev: Device | null, message: string, once?: string): void {
    if (once !== undefined) {
      if (this.#warnedOnce.has(once)) return;
      this.#warnedOnce.add(once);
    }
    const device = dev?.name ?? null;
    this.logs.push({ level, device, message });
    this.ctx.trace.emit("dma:log", device ?? "dma", { level, device, message });
  }
}
