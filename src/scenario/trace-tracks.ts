// Which group a trace track belongs to in the Perfetto view: tracks are plain names chosen by the
// emitters (`iommu0`, `0000:04:00.0`, `nic0`, `group3`, `domain 12`, `mm1`, `core`, …), so the
// group is read from the events a track carries, then from its name.

import type { TraceRecord } from "../base/trace.js";

/** The track groups, in the order the viewer lists them (after the scenario's own tracks). */
export const TRACK_GROUPS = [
  "IOMMUs",
  "devices",
  "groups",
  "domains",
  "processes",
  "PCI",
  "kernel",
] as const;

export type TrackGroup = (typeof TRACK_GROUPS)[number];

/** Systems whose events sit on the track of the device they concern. */
const DEVICE_SYSTEMS = new Set(["device", "dma", "iommu", "check"]);
const PCI_FUNCTION = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/**
 * Every track of `records` with its group, listed group by group and by name within a group
 * (a trailing number compares as a number: group2 before group10).
 */
export function groupTracks(
  records: readonly TraceRecord[],
): { readonly track: string; readonly group: TrackGroup }[] {
  const systems = new Map<string, Set<string>>();
  for (const r of records) {
    let s = systems.get(r.track);
    if (s === undefined) {
      s = new Set();
      systems.set(r.track, s);
    }
    s.add(r.event.slice(0, r.event.indexOf(":")));
  }
  const rank = (g: TrackGroup) => TRACK_GROUPS.indexOf(g);
  return [...systems]
    .map(([track, s]) => ({ track, group: groupOf(track, s) }))
    .sort((a, b) => rank(a.group) - rank(b.group) || naturalCompare(a.track, b.track));
}

function groupOf(track: string, systems: ReadonlySet<string>): TrackGroup {
  if (systems.has("riscv_iommu")) return "IOMMUs";
  if (systems.has("pci")) return "PCI";
  if (systems.has("mm")) return "processes";
  if (/^group\d+$/.test(track)) return "groups";
  if (/^domain\b/.test(track)) return "domains";
  // `core` carries the kernel's map/unmap tracepoints, but is no device; `dma` is the DMA
  // layer's log when no device is named.
  if (track === "core" || track === "dma") return "kernel";
  if (PCI_FUNCTION.test(track) || [...systems].some((s) => DEVICE_SYSTEMS.has(s))) {
    return "devices";
  }
  return "kernel";
}

/**
 * Orders names by what precedes a trailing number, then by that number (group2 before group10,
 * iommu1 before iommu2); PCI functions (fixed-width hex) fall out in bus order.
 */
function naturalCompare(a: string, b: string): number {
  const [pa, na] = splitNumber(a);
  const [pb, nb] = splitNumber(b);
  if (pa !== pb) return pa < pb ? -1 : 1;
  return na - nb || (a < b ? -1 : a > b ? 1 : 0);
}

function splitNumber(name: string): [string, number] {
  const m = /^(.*?)(\d+)$/.exec(name);
  return m === null ? [name, -1] : [m[1]!, Number(m[2])];
}
