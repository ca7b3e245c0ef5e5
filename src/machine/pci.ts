// The PCI part of a machine: the description's bridges and functions become PCIe hardware
// (src/hw/pci), firmware enumerates it, and the OS scans it into pci_devs (src/bus/pci-dev.ts).
// Each IOMMU translates its own host bridge (PCI segment): root ports are grouped into hosts by
// the IOMMU their devices use, as on machines with one IOMMU per root complex.

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import type { DeviceModel } from "../bus/driver-core.js";
import type { FirmwareDescription, FwNode } from "../bus/firmware.js";
import { pciEnableAcs } from "../bus/pci.js";
import { type PciBusType, type PciDev, pciScanHost } from "../bus/pci-dev.js";
import { DSA_MMIO_BAR_SIZE, DSA_PORTAL_STRIDE } from "../hw/endpoints/dsa-regs.js";
import { nicFunctionOptions } from "../hw/endpoints/nic.js";
import { PciHost } from "../hw/pci/host.js";
import type {
  AcsBit,
  PciEndpointOptions,
  PciFunctionOptions,
  PciPortOptions,
} from "../hw/pci/options.js";
import type { PciBridge, PciDevice, PciFunction } from "../hw/pci/topology.js";
import type {
  AcsDescription,
  MachineDescription,
  PciBridgeDescription,
  PciFunctionDescription,
} from "./description.js";

/** Where host bridges' memory apertures go: 256 MiB each from 1 GiB (below RAM at 2 GiB). */
export const PCI_MMIO_BASE = 0x4000_0000n;
export const PCI_MMIO_SIZE = 0x1000_0000n;
export const PCI_MAX_HOSTS = 4;

export class MachinePci {
  /** Host bridges with the IOMMU (description name) translating each. */
  readonly hosts: { readonly host: PciHost; readonly iommu: string | null }[] = [];
  readonly #fns = new Map<string, PciFunction>();
  readonly #descs: readonly PciFunctionDescription[];
  readonly #bridges: ReadonlyMap<string, PciBridgeDescription>;

  constructor(
    private readonly bus: PciBusType,
    desc: MachineDescription,
  ) {
    this.#descs = desc.devices.filter((d): d is PciFunctionDescription => d.bus === "pci");
    this.#bridges = new Map(desc.pci.map((b) => [b.name, b]));
  }

  /** The hardware function of a described bridge or device function (absent when unplugged). */
  fn(name: string): PciFunction | undefined {
    const f = this.#fns.get(name);
    return f?.device.bus.devices().includes(f.device) ? f : undefined;
  }

  /** The pci_dev the OS scanned for a described name, if present. */
  pciDev(name: string): PciDev | undefined {
    const f = this.fn(name);
    return f ? this.bus.pciDevOf(f) : undefined;
  }

  /** Every described name the OS currently has a pci_dev for (bridges and functions). */
  names(): string[] {
    return [...this.#fns.keys()].filter((n) => this.pciDev(n) !== undefined);
  }

  /** @internal builds the hardware of every host (before enumeration). */
  build(ctx: SimContext, desc: MachineDescription): void {
    const hostOf = new Map<string | null, PciHost>();
    const hostFor = (iommu: string | null): PciHost => {
      let h = hostOf.get(iommu);
      if (!h) {
        const i = this.hosts.length;
        h = new PciHost(ctx, {
          name: `pci${i}`,
          segment: i,
          mmio: { base: PCI_MMIO_BASE + BigInt(i) * PCI_MMIO_SIZE, size: PCI_MMIO_SIZE },
        });
        hostOf.set(iommu, h);
        this.hosts.push({ host: h, iommu });
      }
      return h;
    };
    const below = (b: string) =>
      this.#descs.filter((d) => d.parent !== undefined && rootPort(d.parent, this.#bridges) === b);
    // Root ports and integrated endpoints join the host of the IOMMU their devices use.
    const firstIommu = desc.iommus[0]?.name ?? null;
    for (const b of desc.pci) {
      if (b.type !== "root_port") continue;
      // A port with no device below goes with the first IOMMU; `iommu: null` means none.
      const dev = below(b.name)[0];
      const iommu = dev === undefined ? firstIommu : dev.iommu;
      this.#fns.set(b.name, hostFor(iommu).addRootPort(portOptions(b, this.#needsHotplug(b.name))));
    }
    for (const b of topological(desc.pci)) this.#buildBridge(b);
    for (const group of slotGroups(this.#descs)) {
      const first = group[0]!;
      if (!first.present) continue;
      if (first.parent === undefined) {
        const host = hostFor(first.iommu);
        this.#record(host.addRcEndpoint(endpointOptions(group)), group);
      } else {
        this.#plug(group);
      }
    }
    // Every host exists, even one left empty, before firmware enumerates them.
    for (const { host } of this.hosts) host.enumerate();
  }

  /**
   * @internal the OS side: ACS is enabled on every function (the IOMMU driver's
   * `pci_request_acs`, applied by `pci_acs_init` at scan), then each host is scanned, now and at
   * every hot plug, with what firmware says about each function: its `iommu-map` entry and
   * whatever `firmware` adds (reserved regions).
   */
  scan(
    model: DeviceModel,
    iommuNodes: ReadonlyMap<string, FwNode>,
    requestAcs: boolean,
    firmware: (fn: PciFunction, fw: FirmwareDescription) => void,
  ): void {
    for (const { host, iommu } of this.hosts) {
      if (requestAcs) {
        for (const f of host.functions()) pciEnableAcs(f);
        // Runs before the scan's own hot-plug listener: ACS is on before the device is probed.
        host.onHotplug((e) => {
          if (e.op === "add") for (const f of e.device.functions()) pciEnableAcs(f);
        });
      }
      pciScanHost(model, this.bus, host, {
        iommu: iommu === null ? null : (iommuNodes.get(iommu) ?? null),
        firmware: (fn, fw) => {
          iommuMapBase(host.segment, fw);
          firmware(fn, fw);
        },
      });
    }
  }
  /** The PCI segment of the host bridge a described function or bridge sits below. */
  segmentOf(name: string): number | undefined {
    const d = this.#descs.find((x) => x.name === name);
    const root = d?.parent === undefined ? undefined : rootPort(d.parent, this.#bridges);
    const fn = root === undefined ? this.#fns.get(name) : this.#fns.get(root);
    return fn?.host.segment;
  }

  /** The described functions of the device (slot) a described function belongs to. */
  slotOf(name: string): string[] {
    const first = this.#descs.find((d) => d.name === name)!;
    return this.#descs
      .filter((d) => d.parent === first.parent && d.slot === first.slot)
      .map((d) => d.name);
  }

  /** Hot-plugs the device (all functions of its slot) a described function belongs to. */
  plug(name: string): void {
    const names = this.slotOf(name);
    this.#plug(this.#descs.filter((d) => names.includes(d.name)));
  }

  /** Hot-unplugs the device a described function belongs to. */
  unplug(name: string): void {
    const f = this.#fns.get(name)!;
    const parent = f.device.bus.self;
    if (parent === null) {
      throw new SimError(`${name} is integrated in the root complex: no hot-plug slot holds it`);
    }
    parent.removeDevice(f.device);
  }

  #plug(group: readonly PciFunctionDescription[]): void {
    const parent = this.#fns.get(group[0]!.parent!) as PciBridge;
    this.#record(parent.addEndpoint(endpointOptions(group)), group);
  }

  #record(device: PciDevice, group: readonly PciFunctionDescription[]): void {
    for (const d of group) this.#fns.set(d.name, device.function(d.function)!);
  }

  #needsHotplug(port: string): boolean {
    return this.#descs.some((d) => d.parent === port && !d.present);
  }

  #buildBridge(b: PciBridgeDescription): void {
    if (b.type === "root_port" || b.type === "switch_downstream") return;
    const parent = this.#fns.get(b.parent!) as PciBridge;
    if (b.type === "switch_upstream") {
      const ports = [...this.#bridges.values()]
        .filter((x) => x.parent === b.name)
        .sort((x, y) => x.slot - y.slot || x.function - y.function);
      const sw = parent.addSwitch({
        name: b.name,
        upstream: { name: b.name },
        downstream: ports.map((p) => portOptions(p, this.#needsHotplug(p.name))),
      });
      this.#fns.set(b.name, sw.upstream);
      ports.forEach((p, i) => {
        this.#fns.set(p.name, sw.port(i));
      });
      return;
    }
    // pci_bridge: PCIe-to-PCI below a PCI Express port, PCI-to-PCI on a conventional bus.
    const parentDesc = this.#bridges.get(b.parent!)!;
    const opts = { name: b.name, slot: b.slot, ...(b.part ? { part: b.part } : {}) };
    this.#fns.set(
      b.name,
      parentDesc.type === "pci_bridge"
        ? parent.addPciBridge(opts)
        : parent.addPcieToPciBridge(opts),
    );
  }
}

/**
 * The firmware's `iommu-map` of a host bridge on segment S maps each RID to the device_id its
 * root complex sends the IOMMU: (S << 16) | RID (the IO bridge's tagging, and what the RISC-V
 * driver's ATS commands put in DSEG). The scan's link holds plain RIDs (and DMA aliases); the
 * map's base adds the segment, at boot and for hot-plugged functions alike.
 */
function iommuMapBase(segment: number, fw: FirmwareDescription): void {
  if (segment === 0 || fw.iommus === null) return;
  fw.iommus = { fwnode: fw.iommus.fwnode, ids: fw.iommus.ids.map((id) => (segment << 16) | id) };
}

function rootPort(
  name: string,
  bridges: ReadonlyMap<string, PciBridgeDescription>,
): string | undefined {
  let cur = bridges.get(name);
  while (cur && cur.type !== "root_port")
    cur = cur.parent === undefined ? undefined : bridges.get(cur.parent);
  return cur?.name;
}

/** Bridges ordered parents first (switch downstream ports come with their switch). */
function topological(pci: readonly PciBridgeDescription[]): PciBridgeDescription[] {
  const out: PciBridgeDescription[] = [];
  const done = new Set<string>();
  const visit = (b: PciBridgeDescription) => {
    if (done.has(b.name)) return;
    if (b.parent !== undefined) {
      const p = pci.find((x) => x.name === b.parent);
      if (p) visit(p);
    }
    done.add(b.name);
    out.push(b);
  };
  for (const b of pci) visit(b);
  return out;
}

/** Functions grouped by (parent, slot): each group is one PCI device. */
function slotGroups(descs: readonly PciFunctionDescription[]): PciFunctionDescription[][] {
  const groups = new Map<string, PciFunctionDescription[]>();
  for (const d of descs) {
    const key = `${d.parent ?? ""}/${d.slot}`;
    const g = groups.get(key);
    if (g) g.push(d);
    else groups.set(key, [d]);
  }
  return [...groups.values()].map((g) => g.sort((a, b) => a.function - b.function));
}

function acsBits(acs: AcsDescription | null): readonly AcsBit[] | false {
  if (acs === null) return false;
  return (["sv", "rr", "cr", "uf"] as const).filter((b) => acs[b]);
}

function portOptions(b: PciBridgeDescription, hotplug: boolean): PciPortOptions {
  return {
    name: b.name,
    slot: b.slot,
    function: b.function,
    acs: acsBits(b.acs),
    ...(b.externalFacing ? { externalFacing: true } : {}),
    ...(hotplug ? { hotplug: true } : {}),
  };
}

/** WQ portals of a DSA-like engine's BAR 1 (its four work queues). */
const DSA_WQS = 4;
/** BAR 0 of a test device: plain memory peers can DMA into. */
const TEST_BAR_SIZE = 0x4000;

/** The BARs and identity the device model behind the function needs (a catalog part keeps its IDs). */
function modelOptions(d: PciFunctionDescription): PciFunctionOptions {
  const withIds = (o: PciFunctionOptions): PciFunctionOptions =>
    d.part === undefined ? o : o.bars === undefined ? {} : { bars: o.bars };
  switch (d.endpoint) {
    case "dsa":
      return withIds({
        vendorId: 0x8086,
        deviceId: 0x0b25,
        classCode: 0x088000,
        bars: [DSA_MMIO_BAR_SIZE, DSA_PORTAL_STRIDE * DSA_WQS],
      });
    case "nic":
      return withIds(nicFunctionOptions());
    case "test":
      return { bars: [TEST_BAR_SIZE] };
    case "none":
      return {};
  }
}

function functionOptions(d: PciFunctionDescription): PciFunctionOptions {
  return {
    ...modelOptions(d),
    name: d.name,
    function: d.function,
    acs: acsBits(d.acs),
    ...(d.pasidBits > 0 ? { pasid: d.pasidBits } : {}),
    ...(d.ats ? { ats: true } : {}),
    ...(d.pri ? { pri: true } : {}),
    ...(d.dmaAliases.length > 0
      ? { dmaAliases: d.dmaAliases.map((a) => (a.slot << 3) | a.function) }
      : {}),
    ...(d.part ? { part: d.part } : {}),
  };
}

function endpointOptions(group: readonly PciFunctionDescription[]): PciEndpointOptions {
  const first = group[0]!;
  if (group.length === 1) {
    const { function: _f, ...single } = functionOptions(first);
    return { ...single, slot: first.slot };
  }
  return { name: `${first.name}-dev`, slot: first.slot, functions: group.map(functionOptions) };
}
