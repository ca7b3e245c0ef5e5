// What a machine has done so far, in numbers, read from the layers' own views: the DMA API's
// counters, per IOMMU instance its caches' hit rates, its three hardware queues and what they
// carried (fault records by cause, page requests and the responses its driver sent), and the
// isolation oracle's verdict. The demo's report, `inspect` and their JSON forms use it.

import type { Json } from "../base/json.js";
import { FAULT_CAUSE_NAMES } from "../drivers/riscv/iommu-bits.js";
import type { Machine, MachineIommu } from "./machine.js";

/** Hits and misses of one cache. */
export interface CacheStats {
  readonly hits: number;
  readonly misses: number;
  /** hits / (hits + misses), or null before any lookup. */
  readonly hitRate: number | null;
  readonly entries: number;
  readonly capacity: number;
}

/** One hardware queue: its head and tail indexes and what passed through it. */
export interface QueueStats {
  readonly head: number;
  readonly tail: number;
  /** Commands executed (CQ) or records queued (FQ, PQ). */
  readonly records: number;
}

export interface IommuStats {
  readonly name: string;
  readonly driver: string;
  /** RISC-V hardware only (the mock has no caches or queues). */
  readonly iotlb: CacheStats | null;
  readonly ddtCache: CacheStats | null;
  readonly pdtCache: CacheStats | null;
  readonly queues: {
    readonly cq: QueueStats;
    readonly fq: QueueStats;
    readonly pq: QueueStats;
  } | null;
  /**
   * The ATCs of the devices behind the IOMMU (ATS: they cache translations themselves, so their
   * hits never reach the IOTLB), by device name.
   */
  readonly atcs: readonly (CacheStats & {
    readonly device: string;
    readonly invalidated: number;
  })[];
  /** Fault records the driver took, by cause name (sorted). */
  readonly faultsByCause: Readonly<Record<string, number>>;
  readonly faults: number;
  readonly pageRequests: number;
  /** Page responses the driver sent, by code (SUCCESS, INVALID, FAILURE). */
  readonly pageResponses: Readonly<Record<string, number>>;
}

export interface DmaStats {
  readonly maps: number;
  readonly unmaps: number;
  readonly bytesMapped: bigint;
  readonly bytesUnmapped: bigint;
  readonly mappingErrors: number;
  readonly strictSyncs: number;
  readonly lazyQueued: number;
  readonly flushes: { readonly full: number; readonly timeout: number };
}

export interface MachineStatistics {
  readonly dma: DmaStats;
  readonly iommus: readonly IommuStats[];
}

const RESPONSE_CODES = ["SUCCESS", "INVALID", "FAILURE"] as const;

export function machineStatistics(m: Machine): MachineStatistics {
  return { dma: dmaStats(m), iommus: m.iommus().map((i) => iommuStats(m, i)) };
}

function atcStats(m: Machine, iommu: string): IommuStats["atcs"] {
  const hosts = new Set<object>(m.pci.hosts.filter((h) => h.iommu === iommu).map((h) => h.host));
  return m.endpoints.models().flatMap((e) => {
    if (e.atc === null || !hosts.has(e.fn.host)) return [];
    const a = e.atc;
    const total = a.hits + a.misses;
    return [
      {
        device: e.name,
        hits: a.hits,
        misses: a.misses,
        hitRate: total === 0 ? null : a.hits / total,
        entries: a.entries().length,
        capacity: a.capacity,
        invalidated: a.invalidated,
      },
    ];
  });
}

function dmaStats(m: Machine): DmaStats {
  const s = (m.dma.toJSON() as { stats: Record<string, Json> }).stats;
  const n = (k: string) => (s[k] as number | undefined) ?? 0;
  const fq = (s.fq_flushes as { full: number; timeout: number } | undefined) ?? {
    full: 0,
    timeout: 0,
  };
  return {
    maps: n("map_page") + n("map_sg") + n("map_resource") + n("alloc"),
    unmaps: n("unmap_page") + n("unmap_sg") + n("unmap_resource") + n("free"),
    bytesMapped: BigInt(n("bytes_mapped")),
    bytesUnmapped: BigInt(n("bytes_unmapped")),
    mappingErrors: n("mapping_errors"),
    strictSyncs: n("iotlb_syncs"),
    lazyQueued: n("queued_iovas"),
    flushes: { full: fq.full, timeout: fq.timeout },
  };
}

function cache(v: Json | undefined): CacheStats | null {
  if (v === null || v === undefined || typeof v !== "object" || Array.isArray(v)) return null;
  const c = v as { hits: number; misses: number; capacity: number; size?: number; entries: Json[] };
  const total = c.hits + c.misses;
  return {
    hits: c.hits,
    misses: c.misses,
    hitRate: total === 0 ? null : c.hits / total,
    entries: c.size ?? c.entries.length,
    capacity: c.capacity,
  };
}

function iommuStats(m: Machine, i: MachineIommu): IommuStats {
  const hw = i.riscv?.hardware.toJSON() as
    | { caches: Record<string, Json>; queues: Record<string, Record<string, number>> }
    | undefined;
  const byCause = new Map<string, number>();
  for (const e of i.riscv?.iommu.faultLog ?? []) {
    const name = FAULT_CAUSE_NAMES[e.record.cause] ?? `cause ${e.record.cause}`;
    byCause.set(name, (byCause.get(name) ?? 0) + 1);
  }
  const responses: Record<string, number> = {};
  for (const r of i.riscv?.iommu.pageResponses ?? i.mock?.pageResponses ?? []) {
    const code = RESPONSE_CODES[r.code] ?? String(r.code);
    responses[code] = (responses[code] ?? 0) + 1;
  }
  const q = hw?.queues;
  return {
    name: i.name,
    driver: i.description.driver,
    iotlb: cache(hw?.caches.iotlb),
    ddtCache: cache(hw?.caches.ddt),
    pdtCache: cache(hw?.caches.pdt),
    queues: q
      ? {
          cq: { head: q.cq!.cqh!, tail: q.cq!.cqt!, records: q.cq!.executed ?? 0 },
          fq: { head: q.fq!.fqh!, tail: q.fq!.fqt!, records: q.fq!.queued ?? 0 },
          pq: { head: q.pq!.pqh!, tail: q.pq!.pqt!, records: q.pq!.queued ?? 0 },
        }
      : null,
    atcs: atcStats(m, i.name),
    faultsByCause: Object.fromEntries([...byCause].sort(([a], [b]) => (a < b ? -1 : 1))),
    faults: i.riscv?.iommu.faultsSeen ?? 0,
    pageRequests: q
      ? (q.pq!.queued ?? 0)
      : (i.mock?.log.filter((l) => l.startsWith("trigger_iopf ")).length ?? 0),
    pageResponses: responses,
  };
}

function cacheJSON(c: CacheStats | null): Json {
  return c === null
    ? null
    : {
        hits: c.hits,
        misses: c.misses,
        hit_rate: c.hitRate === null ? null : Math.round(c.hitRate * 10000) / 10000,
        entries: c.entries,
        capacity: c.capacity,
      };
}

export function statisticsJSON(s: MachineStatistics): Json {
  const d = s.dma;
  return {
    dma: {
      maps: d.maps,
      unmaps: d.unmaps,
      bytes_mapped: d.bytesMapped.toString(),
      bytes_unmapped: d.bytesUnmapped.toString(),
      mapping_errors: d.mappingErrors,
      strict_syncs: d.strictSyncs,
      lazy_queued: d.lazyQueued,
      flush_queue_flushes: { full: d.flushes.full, timeout: d.flushes.timeout },
    },
    iommus: s.iommus.map((i) => ({
      name: i.name,
      driver: i.driver,
      iotlb: cacheJSON(i.iotlb),
      ddt_cache: cacheJSON(i.ddtCache),
      pdt_cache: cacheJSON(i.pdtCache),
      queues:
        i.queues === null
          ? null
          : {
              cq: { ...i.queues.cq },
              fq: { ...i.queues.fq },
              pq: { ...i.queues.pq },
            },
      device_atcs: i.atcs.map((a) => ({
        device: a.device,
        ...(cacheJSON(a) as { [k: string]: Json }),
        invalidated: a.invalidated,
      })),
      faults: i.faults,
      faults_by_cause: { ...i.faultsByCause },
      page_requests: i.pageRequests,
      page_responses: { ...i.pageResponses },
    })),
  };
}
