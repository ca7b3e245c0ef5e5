// The tracks of the trace exports. Tracks are plain names chosen by the emitters (`iommu0`,
// `group3`, `domain 12`, `mm1`, `core`, …), and a device has two: the IOMMU core and the DMA
// layer name it by its kernel name (a PCI function's `0000:04:00.0`, as the kernel's
// tracepoints do), its device model and the IO bridge by the machine description's (`nic0`).
// Given the run's device names, both become one track, `nic0 (0000:04:00.0)`; the events keep
// their tracks and fields. The Perfetto view's group of a track is read from the events it
// carries, then from its name.

import type { TraceRecord } from "../base/trace.js";
import { describedName, Machine } from "../machine/machine.js";
import type { ScenarioMachine } from "./host.js";

/**
 * A run's devices whose kernel name (`dev_name`) is not their description name: kernel name →
 * description name (`0000:04:00.0` → `nic0`).
 */
export type DeviceNames = ReadonlyMap<string, string>;

/**
 * Adds to `names` the kernel name of every device `m` has now (PCI functions and bridges) with
 * its description name. A hot-plugged device has a kernel name only while present: call this
 * at boot and after each step. Machines of other hosts (test fakes) add nothing.
 */
export function addDeviceNames(m: ScenarioMachine, names: Map<string, string>): void {
  if (!(m instanceof Machine)) return;
  const described = [
    ...m.description.devices.map((d) => d.name),
    ...m.description.pci.map((b) => b.name),
  ];
  for (const name of described) {
    const dev = m.device(name);
    if (dev !== undefined && dev.name !== name && !names.has(dev.name)) {
      names.set(dev.name, describedName(dev));
    }
  }
}

/**
 * How the exports name each track: a device of `devices` (by either name) as its description
 * name with its kernel name alongside, `nic0 (0000:04:00.0)` (several kernel names, if it was
 * re-plugged elsewhere, joined by `, `); any other track as it is.
 */
export function trackNamer(devices?: DeviceNames): (track: string) => string {
  if (devices === undefined || devices.size === 0) return (track) => track;
  const kernelNames = new Map<string, string[]>();
  for (const [kernel, described] of devices) {
    if (kernel === described) continue;
    const list = kernelNames.get(described);
    if (list === undefined) kernelNames.set(described, [kernel]);
    else list.push(kernel);
  }
  const names = new Map<string, string>();
  return (track) => {
    let name = names.get(track);
    if (name === undefined) {
      const described = devices.get(track) ?? track;
      const kernel = kernelNames.get(described);
      name = kernel === undefined ? track : `${described} (${kernel.join(", ")})`;
      names.set(track, name);
    }
    return name;
  };
}

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
 * Every track of `records`, named by `trackNamer(devices)` (a device's two tracks are one),
 * with its group, listed group by group and by name within a group (a trailing number compares
 * as a number: group2 before group10; a device by its description name).
 */
export function groupTracks(
  records: readonly TraceRecord[],
  devices?: DeviceNames,
): { readonly track: string; readonly group: TrackGroup }[] {
  const nameOf = trackNamer(devices);
  const tracks = new Map<string, { sortKey: string; names: Set<string>; systems: Set<string> }>();
  for (const r of records) {
    const name = nameOf(r.track);
    let t = tracks.get(name);
    if (t === undefined) {
      t = { sortKey: devices?.get(r.track) ?? r.track, names: new Set(), systems: new Set() };
      tracks.set(name, t);
    }
    t.names.add(r.track);
    t.systems.add(r.event.slice(0, r.event.indexOf(":")));
  }
  const rank = (g: TrackGroup) => TRACK_GROUPS.indexOf(g);
  return [...tracks]
    .map(([track, t]) => ({ track, sortKey: t.sortKey, group: groupOf(t.names, t.systems) }))
    .sort(
      (a, b) =>
        rank(a.group) - rank(b.group) ||
        naturalCompare(a.sortKey, b.sortKey) ||
        naturalCompare(a.track, b.track),
    )
    .map(({ track, group }) => ({ track, group }));
}

/** The group of a track known by `names` (one, or a device's two) that carries `systems`. */
function groupOf(names: ReadonlySet<string>, systems: ReadonlySet<string>): TrackGroup {
  if (systems.has("riscv_iommu")) return "IOMMUs";
  if (systems.has("pci")) return "PCI";
  if (systems.has("mm")) return "processes";
  const named = (re: RegExp) => [...names].some((n) => re.test(n));
  if (named(/^group\d+$/)) return "groups";
  if (named(/^domain\b/)) return "domains";
  // `core` carries the kernel's map/unmap tracepoints, but is no device; `dma` is the DMA
  // layer's log when no device is named.
  if (names.has("core") || names.has("dma")) return "kernel";
  if (named(PCI_FUNCTION) || [...systems].some((s) => DEVICE_SYSTEMS.has(s))) return "devices";
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
