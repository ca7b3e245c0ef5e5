// The PCI Express hierarchy as hardware: buses, devices (slots), functions with their
// configuration spaces, bridges and switches. Bridges offer the builder methods that grow the
// tree; the construction itself lives in build.ts.
// Bus numbers, BARs and bridge windows live only in configuration space: the tree knows who is
// plugged where, the registers say how it is numbered and decoded, exactly as in a real system.

import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import {
  type AcsCapDesc,
  type AtsCapDesc,
  CapabilityLayout,
  type CapOffsets,
  capabilitiesView,
  type PasidCapDesc,
  type PriCapDesc,
} from "./capabilities.js";
import { ConfigSpace } from "./config-space.js";
import type {
  PciBridgeOptions,
  PciEndpointOptions,
  PciHotplugSpec,
  PciSwitchOptions,
} from "./options.js";
import {
  formatRid,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_MASK,
  PCI_BRIDGE_CONTROL,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_TYPE_DOWNSTREAM,
  PCI_EXP_TYPE_ENDPOINT,
  PCI_EXP_TYPE_LEG_END,
  PCI_EXP_TYPE_PCI_BRIDGE,
  PCI_EXP_TYPE_RC_END,
  PCI_EXP_TYPE_ROOT_PORT,
  PCI_EXP_TYPE_UPSTREAM,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_HEADER_TYPE_MFD,
  PCI_HEADER_TYPE_NORMAL,
  PCI_MEMORY_BASE,
  PCI_MEMORY_LIMIT,
  PCI_MEMORY_RANGE_MASK,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
  PCI_PRIMARY_BUS,
  PCI_REVISION_ID,
  PCI_SECONDARY_BUS,
  PCI_STATUS,
  PCI_SUBORDINATE_BUS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  pciDevfn,
  pciDevid,
  pciSlot,
} from "./regs.js";

export type PciFunctionKind =
  | "endpoint"
  | "legacy-endpoint"
  | "rc-endpoint"
  | "pci-endpoint"
  | "root-port"
  | "upstream-port"
  | "downstream-port"
  | "pcie-to-pci-bridge"
  | "pci-bridge";

/**
 * What a bus is physically: the root complex's internal bus, a PCI Express link below a root or
 * downstream port (one device), a switch's internal bus, or a shared conventional PCI bus.
 */
export type PciBusKind = "root" | "link" | "internal" | "conventional";

/** Request attributes for `routeUpstream`. */
export const PCI_REQ_TRANSLATED = 0x1;
export const PCI_REQ_PASID = 0x2;

export type PciRouteKind = "root-complex" | "peer" | "blocked";

export type PciBlockReason =
  | "bus-master-disabled"
  | "acs-translation-blocking"
  | "acs-egress-control"
  | "tlp-prefix-blocked"
  | "unsupported-request";

/** Where an upstream memory request from a function ends up. Reused across calls. */
export interface PciRoute {
  kind: PciRouteKind;
  /** The requester ID the request carries where it ends (at the root complex: what the IOMMU sees). */
  rid: number;
  /** The function whose BAR claimed a peer-to-peer request. */
  target: PciFunction | null;
  /** The BAR index of `target` that claimed it. */
  bar: number;
  /** Where the request turned back down (peer) or was stopped (blocked). */
  via: PciFunction | null;
  reason: PciBlockReason | null;
}

export function newPciRoute(): PciRoute {
  return { kind: "root-complex", rid: 0, target: null, bar: -1, via: null, reason: null };
}

/**
 * @internal What the router derived from one function's upstream path for requests with `flags`
 * tagged with `sourceDevfn` (router.ts fills it; it holds while the host's `generation` does):
 * how a request ends when no BAR or window on the buses it crosses decodes its page, and the
 * pages those BARs and windows cover, where the request is routed in full.
 */
export class UpstreamPath {
  generation = -1;
  sourceDevfn = -1;
  kind: PciRouteKind = "root-complex";
  rid = 0;
  via: PciFunction | null = null;
  reason: PciBlockReason | null = null;
  /** Decoded page ranges on the path as [first, last] pairs, and their overall bounds. */
  readonly ranges: number[] = [];
  lowest = 0;
  highest = -1;
}

/** A hot-plug event on a slot, as its presence-detect logic signals it. */
export interface PciHotplugEvent {
  readonly op: "add" | "remove";
  readonly port: PciBridge;
  readonly device: PciDevice;
}

/** The host bridge as the tree sees it (implemented by PciHost). */
export interface PciFabric {
  readonly ctx: SimContext;
  readonly name: string;
  readonly segment: number;
  readonly rootBusNumber: number;
  readonly rootBus: PciBus;
  readonly peerToPeer: boolean;
  readonly enumerated: boolean;
  /**
   * Bumped whenever decoding or routing may have changed: any configuration register of any
   * function, or the topology.
   */
  readonly generation: number;
  changed(): void;
  claimName(kind: "function" | "device" | "switch", name: string, owner: object): void;
  releaseName(kind: "function" | "device" | "switch", name: string): void;
  defaultName(prefix: string): string;
  /** A device was plugged in below `port` after enumeration. */
  hotAdded(port: PciBridge, device: PciDevice): void;
  /** A device below `port` is about to be unplugged. */
  hotRemoving(port: PciBridge, device: PciDevice): void;
  /** Builds and removes what bridges hold (build.ts); bridges delegate to it. */
  readonly builder: PciBuilder;
  routeUpstream(
    fn: PciFunction,
    page: number,
    out: PciRoute,
    flags: number,
    source: number,
  ): PciRoute;
  upstreamRequesterId(fn: PciFunction, source: number): number;
}

/** Bridge properties beyond its configuration space. */
export interface PciBridgeTraits {
  readonly takesOwnership: boolean;
  readonly externalFacing: boolean;
  readonly hotplug: Required<PciHotplugSpec> | null;
}

/** @internal The construction operations bridges delegate to (implemented in build.ts). */
export interface PciBuilder {
  endpoint(parent: PciBridge, opts: PciEndpointOptions): PciDevice;
  switch(parent: PciBridge, opts: PciSwitchOptions): PciSwitch;
  pcieToPciBridge(parent: PciBridge, opts: PciBridgeOptions): PciBridge;
  pciBridge(parent: PciBridge, opts: PciBridgeOptions): PciBridge;
  remove(parent: PciBridge, device: PciDevice | string): void;
}

const PCIE_TYPE: Readonly<Record<PciFunctionKind, number>> = {
  endpoint: PCI_EXP_TYPE_ENDPOINT,
  "legacy-endpoint": PCI_EXP_TYPE_LEG_END,
  "rc-endpoint": PCI_EXP_TYPE_RC_END,
  "pci-endpoint": -1,
  "root-port": PCI_EXP_TYPE_ROOT_PORT,
  "upstream-port": PCI_EXP_TYPE_UPSTREAM,
  "downstream-port": PCI_EXP_TYPE_DOWNSTREAM,
  "pcie-to-pci-bridge": PCI_EXP_TYPE_PCI_BRIDGE,
  "pci-bridge": -1,
};

/** @internal Everything a function is built from, after validation (see build.ts). */
export interface PciFunctionSpec {
  readonly name: string;
  readonly kind: PciFunctionKind;
  readonly number: number;
  readonly partName: string | null;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly classCode: number;
  readonly revision: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** False for conventional PCI functions and for bridges hiding their PCIe capability. */
  readonly pcie: boolean;
  readonly slotImplemented: boolean;
  readonly hotplug: boolean;
  readonly portNumber: number;
  readonly eePrefixMax: number;
  readonly bars: readonly number[];
  readonly acs: AcsCapDesc | null;
  readonly ats: AtsCapDesc | null;
  readonly pri: PriCapDesc | null;
  readonly pasid: PasidCapDesc | null;
  readonly dmaAliases: readonly number[];
}

// ------------------------------------------------------------------------------------------------

/** A PCI bus segment. Its number is its bridge's Secondary Bus Number register. */
export class PciBus {
  readonly #devices: Array<PciDevice | undefined> = new Array(32);
  #deviceList: PciDevice[] | null = null;
  #functionList: PciFunction[] | null = null;

  constructor(
    readonly host: PciFabric,
    readonly kind: PciBusKind,
    /** The bridge whose secondary side this bus is (`bus->self`); null for the root bus. */
    readonly self: PciBridge | null,
  ) {}

  get number(): number {
    return this.self ? this.self.secondaryBusNumber : this.host.rootBusNumber;
  }

  get isRoot(): boolean {
    return this.self === null;
  }

  /** The bus the bridge of this bus sits on. */
  get parent(): PciBus | null {
    return this.self ? this.self.bus : null;
  }

  device(slot: number): PciDevice | undefined {
    return this.#devices[slot];
  }

  /** Devices on this bus in slot order (the same array until the bus changes). */
  devices(): readonly PciDevice[] {
    this.#deviceList ??= this.#devices.filter((d): d is PciDevice => d !== undefined);
    return this.#deviceList;
  }

  /** Functions on this bus in devfn order (the same array until the bus changes). */
  functions(): readonly PciFunction[] {
    this.#functionList ??= this.devices().flatMap((d) => d.functions());
    return this.#functionList;
  }

  /**
   * The function on this bus that claims a memory request for `page` going downstream: a bridge
   * whose window decodes it (the request goes on to its secondary bus) or an endpoint with a BAR
   * for it; null when none does. `skip`, a peer-to-peer request's own requester, is passed over.
   */
  claimant(page: number, skip: PciFunction | null = null): PciFunction | null {
    for (const f of this.functions()) {
      if (f === skip) continue;
      if (f instanceof PciBridge ? f.windowDecodes(page) : f.barForPage(page) >= 0) return f;
    }
    return null;
  }

  /** @internal a device or function came or went */
  invalidate(): void {
    this.#deviceList = null;
    this.#functionList = null;
    this.host.changed();
  }

  functionAt(devfn: number): PciFunction | undefined {
    return this.#devices[pciSlot(devfn)]?.function(devfn & 7);
  }

  /** The lowest free slot from `from`, or -1. */
  freeSlot(from = 0): number {
    for (let s = from; s < 32; s++) if (!this.#devices[s]) return s;
    return -1;
  }

  /** @internal builder */
  plug(device: PciDevice): void {
    if (this.#devices[device.slot]) {
      throw new SimError(
        `${this.describe()}: slot ${device.slot} is taken by ${this.#devices[device.slot]!.name}`,
      );
    }
    this.#devices[device.slot] = device;
    this.invalidate();
  }

  /** @internal builder */
  unplug(device: PciDevice): void {
    if (this.#devices[device.slot] === device) this.#devices[device.slot] = undefined;
    this.invalidate();
  }

  describe(): string {
    return this.self ? `bus below ${this.self.name}` : `root bus of ${this.host.name}`;
  }
}

/** A physical device: one slot (device number) on a bus with one to eight functions. */
export class PciDevice {
  readonly #functions: Array<PciFunction | undefined> = new Array(8);
  #list: PciFunction[] = [];

  constructor(
    readonly bus: PciBus,
    readonly slot: number,
    readonly name: string,
  ) {}

  function(n: number): PciFunction | undefined {
    return this.#functions[n];
  }

  /** Functions in function-number order (the same array until one is added). */
  functions(): readonly PciFunction[] {
    return this.#list;
  }

  /** More than one function: the Multi-Function Device bit is set in their Header Type. */
  get isMultifunction(): boolean {
    return this.#list.length > 1;
  }

  /** @internal builder */
  addFunction(fn: PciFunction): void {
    if (this.#functions[fn.number]) {
      throw new SimError(
        `${this.name}: two functions at ${formatRid(pciDevid(this.bus.number, pciDevfn(this.slot, fn.number)))} (${this.#functions[fn.number]!.name} and ${fn.name})`,
      );
    }
    this.#functions[fn.number] = fn;
    this.#list = this.#functions.filter((f): f is PciFunction => f !== undefined);
    this.bus.invalidate();
    const mf = this.isMultifunction;
    for (const f of this.functions()) f.config.setBits(PCI_HEADER_TYPE, 1, PCI_HEADER_TYPE_MFD, mf);
  }

  toJSON(): Json {
    return {
      name: this.name,
      slot: this.slot,
      multifunction: this.isMultifunction,
      functions: this.functions().map((f) => f.toJSON()),
    };
  }
}

/** Page-request state a PRI-capable function keeps (PCIe "Page Request Interface"). */
interface PriEngine {
  outstanding: number;
  readonly groups: Map<number, number>;
}

/** One PCI function: a configuration space and the behaviour of the silicon behind it. */
export class PciFunction {
  readonly host: PciFabric;
  readonly name: string;
  readonly kind: PciFunctionKind;
  readonly device: PciDevice;
  /** Function number 0..7. */
  readonly number: number;
  readonly config: ConfigSpace;
  /** Where each modelled capability sits in configuration space (0 when absent). */
  readonly caps: Readonly<CapOffsets>;
  /** The catalog part this function is, if any. */
  readonly part: string | null;
  /** Devfns other than its own that this function (really) tags its requests with. */
  readonly dmaAliasDevfns: readonly number[];
  /** @internal the router's summaries of the upstream path, one per request flags value */
  readonly upstreamPaths: UpstreamPath[] = [];
  readonly #barSizes: readonly number[];
  readonly #pri: PriEngine | null;

  /** @internal use the builder methods */
  constructor(device: PciDevice, spec: PciFunctionSpec) {
    this.host = device.bus.host;
    this.device = device;
    this.name = spec.name;
    this.kind = spec.kind;
    this.number = spec.number;
    this.part = spec.partName;
    this.dmaAliasDevfns = spec.dmaAliases;
    this.#barSizes = spec.bars;
    const bridge = isBridgeKind(spec.kind);
    // Any register change may change decoding or routing (BARs, windows, bus numbers, enables,
    // ACS controls): the host's generation moves on.
    const cs = new ConfigSpace(spec.pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE, () =>
      this.host.changed(),
    );
    this.config = cs;
    cs.init(PCI_VENDOR_ID, 2, spec.vendorId);
    cs.init(PCI_DEVICE_ID, 2, spec.deviceId);
    cs.writable(PCI_COMMAND, 2, 0x0547);
    cs.writeOneToClear(PCI_STATUS, 2, 0xf900);
    cs.init(PCI_REVISION_ID, 1, spec.revision);
    cs.init(PCI_CLASS_PROG, 1, spec.classCode & 0xff);
    cs.init(PCI_CLASS_PROG + 1, 2, (spec.classCode >>> 8) & 0xffff);
    cs.init(PCI_HEADER_TYPE, 1, bridge ? PCI_HEADER_TYPE_BRIDGE : PCI_HEADER_TYPE_NORMAL);
    if (bridge) {
      cs.writable(PCI_PRIMARY_BUS, 4, 0xff_ffffff);
      cs.writable(PCI_MEMORY_BASE, 2, PCI_MEMORY_RANGE_MASK);
      cs.writable(PCI_MEMORY_LIMIT, 2, PCI_MEMORY_RANGE_MASK);
      cs.init(PCI_MEMORY_BASE, 2, PCI_MEMORY_RANGE_MASK);
      cs.writable(PCI_BRIDGE_CONTROL, 2, 0x0fff);
    } else {
      cs.init(PCI_SUBSYSTEM_VENDOR_ID, 2, spec.subsystemVendorId);
      cs.init(PCI_SUBSYSTEM_ID, 2, spec.subsystemId);
      spec.bars.forEach((size, i) => {
        // 32-bit non-prefetchable memory BAR: the address bits below the size read as 0.
        cs.writable(PCI_BASE_ADDRESS_0 + 4 * i, 4, ~(size - 1) & PCI_BASE_ADDRESS_MEM_MASK);
      });
    }
    const layout = new CapabilityLayout(cs);
    if (spec.pcie) {
      layout.pcie({
        type: PCIE_TYPE[spec.kind],
        slot: spec.slotImplemented,
        hotplug: spec.hotplug,
        portNumber: spec.portNumber,
        eePrefixMax: spec.eePrefixMax,
      });
    }
    if (spec.acs) layout.acs(spec.acs);
    if (spec.ats) layout.ats(spec.ats);
    if (spec.pri) layout.pri(spec.pri);
    if (spec.pasid) layout.pasid(spec.pasid);
    this.caps = layout.offsets;
    this.#pri = spec.pri ? { outstanding: 0, groups: new Map() } : null;
    if (this.caps.pri) {
      const ctrlAt = this.caps.pri + PCI_PRI_CTRL;
      cs.onWrite(ctrlAt, 2, (offset, _size, value) => {
        // Reset (bit 1 of the control register's low byte) is write-only.
        const low = offset <= ctrlAt ? (value >>> ((ctrlAt - offset) * 8)) & 0xff : 0;
        this.#priControlWritten((low & PCI_PRI_CTRL_RESET) !== 0);
      });
    }
  }

  get bus(): PciBus {
    return this.device.bus;
  }

  get devfn(): number {
    return pciDevfn(this.device.slot, this.number);
  }

  /** The bus number this function is on (its bridge's Secondary Bus Number). */
  get busNumber(): number {
    return this.device.bus.number;
  }

  /** The function's own requester ID (bus << 8 | devfn). */
  get rid(): number {
    return pciDevid(this.busNumber, this.devfn);
  }

  /** `ssss:bb:dd.f`, like the kernel's `pci_name`. */
  get bdf(): string {
    return `${this.host.segment.toString(16).padStart(4, "0")}:${formatRid(this.rid)}`;
  }

  get isPcie(): boolean {
    return this.caps.pcie !== 0;
  }

  get isBridge(): boolean {
    return false;
  }

  /** Devfns this function's requests can carry: its own, then its alias devfns. */
  dmaSourceDevfns(): number[] {
    return [this.devfn, ...this.dmaAliasDevfns];
  }

  /** Memory Space Enable and Bus Master Enable, as software left them in the Command register. */
  get memorySpaceEnabled(): boolean {
    return (this.config.peek(PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) !== 0;
  }

  get busMasterEnabled(): boolean {
    return (this.config.peek(PCI_COMMAND, 2) & PCI_COMMAND_MASTER) !== 0;
  }

  get barCount(): number {
    return this.#barSizes.length;
  }

  barSize(i: number): number {
    const s = this.#barSizes[i];
    if (s === undefined) throw new SimError(`${this.name} has no BAR ${i}`);
    return s;
  }

  /** The BAR's address as programmed (32-bit memory BAR). */
  barAddress(i: number): bigint {
    return BigInt(this.barBase(i));
  }

  /** The BAR's address as programmed, as a number (hot path). */
  barBase(i: number): number {
    this.barSize(i);
    return (this.config.peek(PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BASE_ADDRESS_MEM_MASK) >>> 0;
  }

  /** The BAR's first page number and page count. */
  barPages(i: number): { first: number; count: number } {
    const size = this.barSize(i);
    return { first: this.barBase(i) >>> 12, count: size >>> 12 };
  }

  /** Index of the BAR that decodes `page` (Memory Space Enable honoured), or -1. */
  barForPage(page: number): number {
    if (!this.memorySpaceEnabled) return -1;
    for (let i = 0; i < this.#barSizes.length; i++) {
      const base = this.config.peek(PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BASE_ADDRESS_MEM_MASK;
      if (base === 0) continue;
      const first = base >>> 12;
      if (page >= first && page < first + (this.#barSizes[i]! >>> 12)) return i;
    }
    return -1;
  }

  /** Routes a memory request this function issues for `page` (see PciHost.routeUpstream). */
  routeUpstream(page: number, out: PciRoute, flags = 0, sourceDevfn = -1): PciRoute {
    return this.host.routeUpstream(this, page, out, flags, sourceDevfn);
  }

  /** The requester ID the root complex sees for this function's requests. */
  upstreamRequesterId(sourceDevfn = -1): number {
    return this.host.upstreamRequesterId(this, sourceDevfn);
  }

  // ---- enables the function's own logic obeys (read from its registers) ----

  get atsEnabled(): boolean {
    return (
      this.caps.ats !== 0 &&
      (this.config.peek(this.caps.ats + PCI_ATS_CTRL, 2) & PCI_ATS_CTRL_ENABLE) !== 0
    );
  }

  get pasidEnabled(): boolean {
    return (
      this.caps.pasid !== 0 &&
      (this.config.peek(this.caps.pasid + PCI_PASID_CTRL, 2) & PCI_PASID_CTRL_ENABLE) !== 0
    );
  }

  get priEnabled(): boolean {
    return (
      this.caps.pri !== 0 &&
      (this.config.peek(this.caps.pri + PCI_PRI_CTRL, 2) & PCI_PRI_CTRL_ENABLE) !== 0
    );
  }

  /** Outstanding page requests (PRI). */
  get priOutstanding(): number {
    return this.#pri?.outstanding ?? 0;
  }

  /**
   * The function sends a Page Request in group `prgi`. False when PRI does not allow it: not
   * enabled, a Response Failure is latched, or the allocated outstanding requests are used up.
   */
  priRequest(prgi: number): boolean {
    const pri = this.#pri;
    if (!pri || !this.priEnabled) return false;
    const sta = this.config.peek(this.caps.pri + PCI_PRI_STATUS, 2);
    if (sta & PCI_PRI_STATUS_RF) return false;
    const alloc = this.config.peek(this.caps.pri + PCI_PRI_ALLOC_REQ, 4);
    if (pri.outstanding >= alloc) return false;
    pri.outstanding++;
    pri.groups.set(prgi, (pri.groups.get(prgi) ?? 0) + 1);
    return true;
  }

  /**
   * A PRG Response arrives for group `prgi`. An unknown group sets Unexpected PRG Index; a
   * failure response sets Response Failure. Either way the group's requests are retired.
   */
  priResponse(prgi: number, code: "success" | "invalid" | "failure"): void {
    const pri = this.#pri;
    if (!pri) throw new SimError(`${this.name} has no PRI capability`);
    const at = this.caps.pri + PCI_PRI_STATUS;
    const n = pri.groups.get(prgi);
    if (n === undefined) {
      this.config.setBits(at, 2, PCI_PRI_STATUS_UPRGI, true);
      return;
    }
    pri.groups.delete(prgi);
    pri.outstanding -= n;
    if (code === "failure") this.config.setBits(at, 2, PCI_PRI_STATUS_RF, true);
    this.#priUpdateStopped();
  }

  #priControlWritten(reset: boolean): void {
    const pri = this.#pri!;
    // Reset clears the outstanding-request state, and only while PRI is disabled.
    if (reset && !this.priEnabled) {
      pri.outstanding = 0;
      pri.groups.clear();
    }
    this.#priUpdateStopped();
  }

  #priUpdateStopped(): void {
    const pri = this.#pri!;
    const stopped = !this.priEnabled && pri.outstanding === 0;
    this.config.setBits(this.caps.pri + PCI_PRI_STATUS, 2, PCI_PRI_STATUS_STOPPED, stopped);
  }

  capabilitiesJSON(): Json {
    return capabilitiesView(this.config, this.caps);
  }

  toJSON(): Json {
    const bars: Json[] = [];
    for (let i = 0; i < this.#barSizes.length; i++) {
      bars.push({
        index: i,
        address: `0x${this.barAddress(i).toString(16)}`,
        size: this.#barSizes[i]!,
      });
    }
    const cs = this.config;
    return {
      name: this.name,
      kind: this.kind,
      bdf: this.bdf,
      rid: this.rid,
      vendor_id: cs.peek(PCI_VENDOR_ID, 2),
      device_id: cs.peek(PCI_DEVICE_ID, 2),
      class_code: cs.peek(PCI_CLASS_PROG, 1) | (cs.peek(PCI_CLASS_PROG + 1, 2) << 8),
      header_type: cs.peek(PCI_HEADER_TYPE, 1),
      part: this.part,
      bars,
      dma_aliases: this.dmaAliasDevfns.map((d) => formatRid(pciDevid(this.busNumber, d))),
      capabilities: this.capabilitiesJSON(),
    };
  }
}

/** A function with a type 1 header: root port, switch port, or PCI bridge. */
export class PciBridge extends PciFunction {
  /** The bus on the bridge's secondary side. */
  readonly secondary: PciBus;
  /** A bridge without a PCIe capability that re-issues requests as (secondary bus, 00.0). */
  readonly takesOwnership: boolean;
  /** Firmware's external-facing mark (ACPI "ExternalFacingPort"); root ports only. */
  readonly externalFacing: boolean;
  /** Bus numbers and window firmware reserves for hot-plug, or null for a fixed slot. */
  readonly hotplug: Readonly<Required<PciHotplugSpec>> | null;

  /** @internal use the builder methods */
  constructor(device: PciDevice, spec: PciFunctionSpec, extra: PciBridgeTraits) {
    super(device, spec);
    this.takesOwnership = extra.takesOwnership;
    this.externalFacing = extra.externalFacing;
    this.hotplug = extra.hotplug;
    this.secondary = new PciBus(this.host, secondaryKind(spec.kind), this);
  }

  override get isBridge(): boolean {
    return true;
  }

  get primaryBusNumber(): number {
    return this.config.peek(PCI_PRIMARY_BUS, 1);
  }

  get secondaryBusNumber(): number {
    return this.config.peek(PCI_SECONDARY_BUS, 1);
  }

  get subordinateBusNumber(): number {
    return this.config.peek(PCI_SUBORDINATE_BUS, 1);
  }

  /** True when `busNumber` is decoded below this bridge ([secondary, subordinate]). */
  decodesBus(busNumber: number): boolean {
    const sec = this.secondaryBusNumber;
    return sec !== 0 && busNumber >= sec && busNumber <= this.subordinateBusNumber;
  }

  /** The memory window as page numbers [first, last], or null when it decodes nothing. */
  windowPages(): { first: number; last: number } | null {
    const base = this.config.peek(PCI_MEMORY_BASE, 2) & PCI_MEMORY_RANGE_MASK;
    const limit = this.config.peek(PCI_MEMORY_LIMIT, 2) & PCI_MEMORY_RANGE_MASK;
    if (base > limit) return null;
    return { first: base << 4, last: (limit << 4) | 0xff };
  }

  /** Whether the bridge forwards `page` downstream (window hit and Memory Space Enable). */
  windowDecodes(page: number): boolean {
    if (!this.memorySpaceEnabled) return false;
    const base = this.config.peek(PCI_MEMORY_BASE, 2) & PCI_MEMORY_RANGE_MASK;
    const limit = this.config.peek(PCI_MEMORY_LIMIT, 2) & PCI_MEMORY_RANGE_MASK;
    return base <= limit && page >= base << 4 && page <= ((limit << 4) | 0xff);
  }

  // ---- builder: what may be plugged below this bridge ----

  /** Plugs an endpoint device (one or several functions) into the secondary bus. */
  addEndpoint(opts: PciEndpointOptions = {}): PciDevice {
    return this.host.builder.endpoint(this, opts);
  }

  /** Plugs a switch (upstream port, internal bus, downstream ports) into this port's link. */
  addSwitch(opts: PciSwitchOptions = {}): PciSwitch {
    return this.host.builder.switch(this, opts);
  }

  /** Plugs a PCIe-to-PCI bridge into this port's link; its secondary is a conventional bus. */
  addPcieToPciBridge(opts: PciBridgeOptions = {}): PciBridge {
    return this.host.builder.pcieToPciBridge(this, opts);
  }

  /** Plugs a conventional PCI-to-PCI bridge into this bridge's conventional bus. */
  addPciBridge(opts: PciBridgeOptions = {}): PciBridge {
    return this.host.builder.pciBridge(this, opts);
  }

  /** Unplugs a device (and everything below it) from the secondary bus: a hot-remove once running. */
  removeDevice(device: PciDevice | string): void {
    this.host.builder.remove(this, device);
  }
}

/** A PCI Express switch: an upstream port, its internal bus, and downstream ports on it. */
export class PciSwitch {
  constructor(
    readonly name: string,
    readonly upstream: PciBridge,
    readonly downstream: readonly PciBridge[],
  ) {}

  get internalBus(): PciBus {
    return this.upstream.secondary;
  }

  /** Downstream port `i` (in slot order). */
  port(i: number): PciBridge {
    const p = this.downstream[i];
    if (!p) throw new SimError(`switch ${this.name} has no downstream port ${i}`);
    return p;
  }

  toJSON(): Json {
    return {
      name: this.name,
      upstream: this.upstream.name,
      downstream: this.downstream.map((p) => p.name),
    };
  }
}

/** @internal */
export function isBridgeKind(kind: PciFunctionKind): boolean {
  return (
    kind === "root-port" ||
    kind === "upstream-port" ||
    kind === "downstream-port" ||
    kind === "pcie-to-pci-bridge" ||
    kind === "pci-bridge"
  );
}

function secondaryKind(kind: PciFunctionKind): PciBusKind {
  if (kind === "root-port" || kind === "downstream-port") return "link";
  if (kind === "upstream-port") return "internal";
  return "conventional";
}
