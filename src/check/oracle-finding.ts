// What the isolation oracle reports: one finding per device access (page) whose outcome the OS
// view does not explain, as plain values with a JSON view, and the counts the verdict sums up.

import { type Json, jsonAddr } from "../base/json.js";
import type { DmaPageKind } from "../hw/pci/io-bridge.js";
import { formatRid } from "../hw/pci/regs.js";

/**
 * - "stale": the access succeeded through a translation the OS no longer has, but once had;
 * - "wrong-target": it reached a page the OS never mapped there (or never with this permission);
 * - "unexpected-fault": it faulted although the OS has the page mapped for it;
 * - "p2p-bypass": the fabric routed it to a peer's BAR: no IOMMU ever saw it.
 */
export type FindingKind = "stale" | "wrong-target" | "unexpected-fault" | "p2p-bypass";

/** Why a stale translation was still there. */
export type StaleCause =
  /** Lazy (DMA_FQ) unmap: the IOVA waits on the flush queue for its IOTLB flush. */
  | "lazy flush window"
  /** No flush is pending: an invalidation the software owed was never done. */
  | "missed invalidation"
  /** Supervisor SVA: the kernel unmapped, and nothing tells the IOMMU about kernel mappings. */
  | "kernel mapping not flushed"
  /** The translation belongs to the address space the device was attached to before. */
  | "previous domain";

/** Which cache served a stale access: the IOMMU's (IOTLB, context caches) or the device's ATC. */
export type StaleVia = "iotlb" | "atc";

export interface IsolationFinding {
  readonly kind: FindingKind;
  /** `stale-<via>: <cause>` for stale accesses, else the kind. */
  readonly category: string;
  /** The device (its PCI function's name). */
  readonly device: string;
  /** Requester ID the IOMMU saw, segment in bits 23:16 (the function's own when none saw it). */
  readonly rid: number;
  readonly pasid: number | null;
  readonly privileged: boolean;
  readonly access: "read" | "write";
  readonly request: DmaPageKind;
  /** Served from the device's ATC (a Translated request). */
  readonly fromAtc: boolean;
  /** The untranslated page's address (IOVA or virtual address). */
  readonly iova: bigint;
  /** The physical page the access reached (null: none, e.g. it faulted). */
  readonly pa: bigint | null;
  /** The physical page the OS maps there (null: none). */
  readonly expected: bigint | null;
  /** The domain the OS has for the access, and the bound mm of an SVA domain. */
  readonly domain: number | null;
  readonly mm: number | null;
  /** The IOMMU's fault code (unexpected faults). */
  readonly fault: string | null;
  /** The peer whose BAR was reached. */
  readonly peer: string | null;
  /** Virtual time (ns) and, when a trace was being recorded, the seq of its check:isolation record. */
  readonly time: number;
  readonly traceSeq: number | null;
  /** One line saying what happened. */
  readonly detail: string;
}

export function findingJSON(f: IsolationFinding): Json {
  return {
    kind: f.kind,
    category: f.category,
    device: f.device,
    rid: ridString(f.rid),
    pasid: f.pasid,
    privileged: f.privileged,
    access: f.access,
    request: f.request,
    from_atc: f.fromAtc,
    iova: jsonAddr(f.iova),
    pa: f.pa === null ? null : jsonAddr(f.pa),
    expected: f.expected === null ? null : jsonAddr(f.expected),
    domain: f.domain,
    mm: f.mm,
    fault: f.fault,
    peer: f.peer,
    time: f.time,
    trace_seq: f.traceSeq,
    detail: f.detail,
  };
}

/** `0000:01:00.0` of a requester ID with its segment. */
export function ridString(id: number): string {
  return `${(id >>> 16).toString(16).padStart(4, "0")}:${formatRid(id & 0xffff)}`;
}

/** Finding counts by kind, by category and by device, each in sorted key order. */
export interface IsolationCounts {
  readonly byKind: Readonly<Record<string, number>>;
  readonly byCategory: Readonly<Record<string, number>>;
  readonly byDevice: Readonly<Record<string, number>>;
}

/** Counts of keys, as an object with sorted keys (stable JSON). */
export function sortedCounts(counts: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of [...counts.keys()].sort()) out[k] = counts.get(k)!;
  return out;
}
