// What firmware does before the OS runs: a depth-first walk that numbers buses (writing each
// bridge's primary/secondary/subordinate registers), assigns BAR addresses and bridge memory
// windows from the host's aperture, and turns on memory decoding and bus mastering. Hot-added
// devices get numbers and addresses from what firmware reserved below their slot.

import { SimError } from "../../base/errors.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MEMORY_BASE,
  PCI_MEMORY_LIMIT,
  PCI_PRIMARY_BUS,
  PCI_SECONDARY_BUS,
  PCI_SUBORDINATE_BUS,
} from "./regs.js";
import { PciBridge, type PciBus, type PciDevice, type PciFunction } from "./topology.js";

/** Pages in 1 MiB, the granularity of bridge memory windows. */
const WINDOW_PAGES = 256;

/** A range of page numbers [first, end). */
export interface PageRange {
  readonly first: number;
  readonly end: number;
}

/** Numbers every bus below `root` and assigns memory from `mmio`; returns the last bus number. */
export function enumerateHierarchy(root: PciBus, mmio: PageRange): number {
  const last = numberBuses(root.functions(), root.number, 255);
  assignMemory(root.functions(), mmio.first, mmio.end, root.host.name);
  enableDecoding(root.functions());
  return last;
}

/** Gives a device hot-added below `port` bus numbers and addresses from the port's reserve. */
export function assignHotAdded(port: PciBridge, device: PciDevice): void {
  const fns = device.functions();
  numberBuses(fns, port.secondaryBusNumber, port.subordinateBusNumber, port.name);
  if (needsMemory(fns)) {
    const w = port.windowPages();
    if (!w)
      throw new SimError(`${device.name}: ${port.name} has no memory window reserved for hot-plug`);
    assignMemory(fns, w.first, w.last + 1, port.name);
  }
  enableDecoding(fns);
}

function numberBuses(
  fns: readonly PciFunction[],
  busNumber: number,
  maxBus: number,
  where = "bus numbering",
): number {
  let max = busNumber;
  for (const fn of fns) {
    if (!(fn instanceof PciBridge)) continue;
    max++;
    if (max > maxBus) {
      throw new SimError(`${where}: no bus number left for ${fn.name} (limit ${maxBus})`);
    }
    const cs = fn.config;
    cs.write(PCI_PRIMARY_BUS, 1, busNumber);
    cs.write(PCI_SECONDARY_BUS, 1, max);
    cs.write(PCI_SUBORDINATE_BUS, 1, 0xff);
    max = numberBuses(fn.secondary.functions(), max, maxBus, where);
    if (fn.hotplug) max += fn.hotplug.buses;
    if (max > maxBus) {
      throw new SimError(`${where}: not enough bus numbers for the hot-plug reserve of ${fn.name}`);
    }
    cs.write(PCI_SUBORDINATE_BUS, 1, max);
  }
  return max;
}

function needsMemory(fns: readonly PciFunction[]): boolean {
  for (const fn of fns) {
    if (fn instanceof PciBridge) {
      if (fn.hotplug && fn.hotplug.mmio > 0n) return true;
      if (needsMemory(fn.secondary.functions())) return true;
    } else if (fn.barCount > 0) return true;
  }
  return false;
}

function alignUp(page: number, align: number): number {
  return Math.ceil(page / align) * align;
}

/** Assigns BARs and windows from page `cursor` up to `end`; returns the next free page. */
function assignMemory(
  fns: readonly PciFunction[],
  cursor: number,
  end: number,
  where: string,
): number {
  for (const fn of fns) {
    if (fn instanceof PciBridge) {
      cursor = alignUp(cursor, WINDOW_PAGES);
      const start = cursor;
      cursor = assignMemory(fn.secondary.functions(), cursor, end, where);
      if (fn.hotplug) cursor += Number(fn.hotplug.mmio >> 12n);
      cursor = alignUp(cursor, WINDOW_PAGES);
      if (cursor > end) throw new SimError(`${where}: memory aperture exhausted at ${fn.name}`);
      if (cursor > start) {
        fn.config.write(PCI_MEMORY_BASE, 2, (start >>> 8) << 4);
        fn.config.write(PCI_MEMORY_LIMIT, 2, ((cursor - 1) >>> 8) << 4);
      } else {
        // Base above limit: the window decodes nothing.
        fn.config.write(PCI_MEMORY_BASE, 2, 0xfff0);
        fn.config.write(PCI_MEMORY_LIMIT, 2, 0);
      }
      continue;
    }
    for (let i = 0; i < fn.barCount; i++) {
      const pages = fn.barSize(i) / 4096;
      cursor = alignUp(cursor, pages);
      if (cursor + pages > end)
        throw new SimError(`${where}: memory aperture exhausted at ${fn.name} BAR ${i}`);
      fn.config.write(PCI_BASE_ADDRESS_0 + 4 * i, 4, (cursor * 4096) >>> 0);
      cursor += pages;
    }
  }
  return cursor;
}

function enableDecoding(fns: readonly PciFunction[]): void {
  for (const fn of fns) {
    const cmd = fn.config.read(PCI_COMMAND, 2);
    fn.config.write(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    if (fn instanceof PciBridge) enableDecoding(fn.secondary.functions());
  }
}
