// The PCI Express hierarchy as hardware: buses, devices (slots), functions with their
// configuration spaces, bridges and switches, plus the builder methods that grow the tree.
// Bus numbers, BARs and bridge windows live only in configuration space: the tree knows who is
// plugged where, the registers say how it is numbered and decoded, exactly as in a real system.

import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import {
  CapabilityLayout,
  type CapOffsets,
  capabilitiesView,
  slotPresenceChanged,
} from "./capabilities.js";
import { PCI_PARTS, type PciPart } from "./catalog.js";
import { ConfigSpace } from "./config-space.js";
import {
  acsDesc,
  atsDesc,
  barSizes,
  checkInt,
  checkKeys,
  checkPart,
  eePrefixMax,
  type PciBridgeOptions,
  type PciEndpointOptions,
  type PciFunctionOptions,
  type PciHotplugSpec,
  type PciPortOptions,
  type PciSwitchOptions,
  pasidDesc,
  priDesc,
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
  /** Bumped whenever decoding may have changed (BARs, windows, bus numbers, topology). */
  readonly generation: number;
  changed(): void;
  claimName(kind: "function" | "device" | "switch", name: string, owner: object): void;
  releaseName(kind: "function" | "device" | "switch", name: string): void;
  defaultName(prefix: string): string;
  /** A device was plugged in below `port` after enumeration. */
  hotAdded(port: PciBridge, device: PciDevice): void;
  /** A device below `port` is about to be unplugged. */
  hotRemoving(port: PciBridge, device: PciDevice): void;
  routeUpstream(
    fn: PciFunction,
    page: number,
    out: PciRoute,
    flags: number,
    source: number,
  ): PciRoute;
  upstreamRequesterId(fn: PciFunction, source: number): number;
}

const DEFAULT_IDS: Readonly<Record<PciFunctionKind, readonly [number, number, number]>> = {
  endpoint: [0x1b36, 0x0005, 0xff0000],
  "legacy-endpoint": [0x1b36, 0x0005, 0xff0000],
  "rc-endpoint": [0x1b36, 0x0005, 0xff0000],
  "pci-endpoint": [0x1b36, 0x0005, 0xff0000],
  "root-port": [0x1b36, 0x000c, 0x060400],
  "upstream-port": [0x104c, 0x8232, 0x060400],
  "downstream-port": [0x104c, 0x8233, 0x060400],
  "pcie-to-pci-bridge": [0x1b36, 0x000e, 0x060400],
  "pci-bridge": [0x1b36, 0x0001, 0x060400],
};

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

/** Everything a function is built from, after validation. */
interface FunctionSpec {
  readonly name: string;
  readonly kind: PciFunctionKind;
  readonly number: number;
  readonly part: PciPart | null;
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
  readonly acs: ReturnType<typeof acsDesc>;
  readonly ats: ReturnType<typeof atsDesc>;
  readonly pri: ReturnType<typeof priDesc>;
  readonly pasid: ReturnType<typeof pasidDesc>;
  readonly dmaAliases: readonly number[];
}

// ------------------------------------------------------------------------------------------------

/** A PCI bus segment. Its number is its bridge's Secondary Bus Number register. */
export class PciBus {
  readonly #devices: Array<PciDevice | undefined> = new Array(32);

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

  /** Devices on this bus in slot order. */
  devices(): PciDevice[] {
    return this.#devices.filter((d): d is PciDevice => d !== undefined);
  }

  /** Functions on this bus in devfn order. */
  functions(): PciFunction[] {
    const out: PciFunction[] = [];
    for (const d of this.#devices) if (d) out.push(...d.functions());
    return out;
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
  }

  /** @internal builder */
  unplug(device: PciDevice): void {
    if (this.#devices[device.slot] === device) this.#devices[device.slot] = undefined;
  }

  describe(): string {
    return this.self ? `bus below ${this.self.name}` : `root bus of ${this.host.name}`;
  }
}

/** A physical device: one slot (device number) on a bus with one to eight functions. */
export class PciDevice {
  readonly #functions: Array<PciFunction | undefined> = new Array(8);

  constructor(
    readonly bus: PciBus,
    readonly slot: number,
    readonly name: string,
  ) {}

  function(n: number): PciFunction | undefined {
    return this.#functions[n];
  }

  functions(): PciFunction[] {
    return this.#functions.filter((f): f is PciFunction => f !== undefined);
  }

  /** More than one function: the Multi-Function Device bit is set in their Header Type. */
  get isMultifunction(): boolean {
    return this.functions().length > 1;
  }

  /** @internal builder */
  addFunction(fn: PciFunction): void {
    if (this.#functions[fn.number]) {
      throw new SimError(
        `${this.name}: two functions at ${formatRid(pciDevid(this.bus.number, pciDevfn(this.slot, fn.number)))} (${this.#functions[fn.number]!.name} and ${fn.name})`,
      );
    }
    this.#functions[fn.number] = fn;
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
  readonly #barSizes: readonly number[];
  readonly #pri: PriEngine | null;

  /** @internal use the builder methods */
  constructor(device: PciDevice, spec: FunctionSpec) {
    this.host = device.bus.host;
    this.device = device;
    this.name = spec.name;
    this.kind = spec.kind;
    this.number = spec.number;
    this.part = spec.partName;
    this.dmaAliasDevfns = spec.dmaAliases;
    this.#barSizes = spec.bars;
    const bridge = isBridgeKind(spec.kind);
    const cs = new ConfigSpace(spec.pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE);
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
    // Decoding registers (command, BARs, bus numbers, windows) change routing.
    cs.onWrite(0, 0x40, () => this.host.changed());
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
    this.barSize(i);
    return BigInt(this.config.peek(PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BASE_ADDRESS_MEM_MASK);
  }

  /** The BAR's first page number and page count (hot path: plain numbers). */
  barPages(i: number): { first: number; count: number } {
    const size = this.barSize(i);
    const base = this.config.peek(PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BASE_ADDRESS_MEM_MASK;
    return { first: base >>> 12, count: size >>> 12 };
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
      vendorId: cs.peek(PCI_VENDOR_ID, 2),
      deviceId: cs.peek(PCI_DEVICE_ID, 2),
      classCode: cs.peek(PCI_CLASS_PROG, 1) | (cs.peek(PCI_CLASS_PROG + 1, 2) << 8),
      headerType: cs.peek(PCI_HEADER_TYPE, 1),
      part: this.part,
      bars,
      dmaAliases: this.dmaAliasDevfns.map((d) => formatRid(pciDevid(this.busNumber, d))),
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
  constructor(
    device: PciDevice,
    spec: FunctionSpec,
    extra: {
      takesOwnership: boolean;
      externalFacing: boolean;
      hotplug: Required<PciHotplugSpec> | null;
    },
  ) {
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
    const bus = this.secondary;
    if (bus.kind === "internal") {
      throw new SimError(`${this.name}: endpoints go below a switch's downstream ports`);
    }
    const kind: PciFunctionKind =
      bus.kind === "conventional" ? "pci-endpoint" : opts.legacy ? "legacy-endpoint" : "endpoint";
    return buildEndpoint(bus, kind, opts, this);
  }

  /** Plugs a switch (upstream port, internal bus, downstream ports) into this port's link. */
  addSwitch(opts: PciSwitchOptions = {}): PciSwitch {
    this.#requireLink("a switch");
    return buildSwitch(this, opts);
  }

  /** Plugs a PCIe-to-PCI bridge into this port's link; its secondary is a conventional bus. */
  addPcieToPciBridge(opts: PciBridgeOptions = {}): PciBridge {
    this.#requireLink("a PCIe-to-PCI bridge");
    checkKeys(opts, ["name", "slot", "part", "vendorId", "deviceId", "pcieCapability"], this.name);
    const part = checkPart(opts.part, this.name);
    const hides =
      opts.pcieCapability === false ||
      (part !== undefined && PCI_PARTS[part].takesOwnership === true);
    if (hides && opts.pcieCapability === true) {
      throw new SimError(`${this.name}: part ${part} has no PCI Express capability`);
    }
    const name = this.host.defaultName("pcibr");
    const finalName = opts.name ?? name;
    const device = newDevice(
      this.secondary,
      slotFor(this.secondary, opts.slot, finalName),
      finalName,
    );
    const spec = functionSpec(
      device,
      "pcie-to-pci-bridge",
      { name: finalName, ...pick(opts, ["part", "vendorId", "deviceId"]) },
      {
        pcie: !hides,
      },
    );
    const br = new PciBridge(device, spec, {
      takesOwnership: hides,
      externalFacing: false,
      hotplug: null,
    });
    attach(device, [br], this);
    return br;
  }

  /** Plugs a conventional PCI-to-PCI bridge into this bridge's conventional bus. */
  addPciBridge(opts: PciBridgeOptions = {}): PciBridge {
    if (this.secondary.kind !== "conventional") {
      throw new SimError(
        `${this.name}: conventional PCI-to-PCI bridges go on a conventional PCI bus`,
      );
    }
    checkKeys(opts, ["name", "slot", "part", "vendorId", "deviceId"], this.name);
    const finalName = opts.name ?? this.host.defaultName("ppb");
    const device = newDevice(
      this.secondary,
      slotFor(this.secondary, opts.slot, finalName),
      finalName,
    );
    const spec = functionSpec(
      device,
      "pci-bridge",
      { name: finalName, ...pick(opts, ["part", "vendorId", "deviceId"]) },
      { pcie: false },
    );
    const part = checkPart(opts.part, finalName);
    if (part !== undefined && PCI_PARTS[part].takesOwnership) {
      throw new SimError(
        `${finalName}: part ${part} is a PCIe-to-PCI bridge; plug it below a PCI Express port`,
      );
    }
    const br = new PciBridge(device, spec, {
      takesOwnership: false,
      externalFacing: false,
      hotplug: null,
    });
    attach(device, [br], this);
    return br;
  }

  /** Unplugs a device (and everything below it) from the secondary bus. */
  removeDevice(device: PciDevice | string): void {
    const d =
      typeof device === "string" ? this.secondary.devices().find((x) => x.name === device) : device;
    if (!d || d.bus !== this.secondary) {
      throw new SimError(
        `${this.name}: no device ${typeof device === "string" ? device : device.name} below it`,
      );
    }
    if (this.host.enumerated) {
      if (!this.hotplug) throw new SimError(`${this.name} is not a hot-plug capable slot`);
      this.host.hotRemoving(this, d);
    }
    detach(d);
    if (this.host.enumerated && this.caps.pcie)
      slotPresenceChanged(this.config, this.caps.pcie, false);
  }

  #requireLink(what: string): void {
    if (this.secondary.kind !== "link") {
      throw new SimError(
        `${this.name}: ${what} needs a PCI Express link (below a root or downstream port)`,
      );
    }
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

// ---- construction ------------------------------------------------------------------------------

function isBridgeKind(kind: PciFunctionKind): boolean {
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

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function slotFor(bus: PciBus, slot: number | undefined, name: string): number {
  if (bus.kind === "link") {
    // Only device 0 exists on a PCI Express link.
    if (slot !== undefined && slot !== 0) {
      throw new SimError(
        `${name}: slot ${slot} on a PCI Express link (only device 0 exists there)`,
      );
    }
    if (bus.device(0))
      throw new SimError(
        `${name}: the link below ${bus.self!.name} already holds ${bus.device(0)!.name}`,
      );
    return 0;
  }
  if (slot === undefined) {
    const s = bus.freeSlot(bus.isRoot ? 1 : 0);
    if (s < 0) throw new SimError(`${name}: no free slot on the ${bus.describe()}`);
    return s;
  }
  return checkInt(slot, 0, 31, `${name}: device number`);
}

function newDevice(bus: PciBus, slot: number, name: string): PciDevice {
  const d = new PciDevice(bus, slot, name);
  if (bus.device(slot))
    throw new SimError(
      `${name}: slot ${slot} on the ${bus.describe()} is taken by ${bus.device(slot)!.name}`,
    );
  return d;
}

/**
 * Registers names and plugs the device into its bus. `parent` is the bridge it is plugged
 * below (null on the root bus, or for parts of a switch that is not plugged in yet); when the
 * host already runs, plugging below a bridge is a hot-add.
 */
function attach(
  device: PciDevice,
  fns: readonly PciFunction[],
  parent: PciBridge | null,
  hot = true,
): void {
  const host = device.bus.host;
  if (host.enumerated && hot) {
    if (!parent)
      throw new SimError(`${device.name}: the root bus cannot take devices after enumeration`);
    if (!parent.hotplug)
      throw new SimError(`${device.name}: ${parent.name} is not a hot-plug capable slot`);
  }
  host.claimName("device", device.name, device);
  const claimed: string[] = [];
  try {
    for (const f of fns) {
      host.claimName("function", f.name, f);
      claimed.push(f.name);
    }
    for (const f of fns) device.addFunction(f);
  } catch (e) {
    for (const n of claimed) host.releaseName("function", n);
    host.releaseName("device", device.name);
    throw e;
  }
  if (device.function(0) === undefined) {
    for (const n of claimed) host.releaseName("function", n);
    host.releaseName("device", device.name);
    throw new SimError(`${device.name}: function 0 is required`);
  }
  device.bus.plug(device);
  host.changed();
  if (host.enumerated && hot && parent) {
    try {
      host.hotAdded(parent, device);
    } catch (e) {
      detach(device);
      throw e;
    }
  }
}

function detach(device: PciDevice): void {
  const host = device.bus.host;
  for (const f of device.functions()) {
    if (f instanceof PciBridge) for (const d of f.secondary.devices()) detach(d);
    if (f.kind === "upstream-port") host.releaseName("switch", device.name);
    host.releaseName("function", f.name);
  }
  host.releaseName("device", device.name);
  device.bus.unplug(device);
  host.changed();
}

function functionSpec(
  device: PciDevice,
  kind: PciFunctionKind,
  o: PciFunctionOptions & { readonly name: string },
  extra: {
    number?: number;
    pcie?: boolean;
    slotImplemented?: boolean;
    hotplug?: boolean;
    portNumber?: number;
    eeDefault?: boolean;
    acs?: PciFunctionOptions["acs"];
  } = {},
): FunctionSpec {
  const where = o.name;
  const part = checkPart(o.part, where);
  const p = part ? PCI_PARTS[part] : null;
  const [dv, dd, dc] = DEFAULT_IDS[kind];
  const pcie = extra.pcie ?? (kind !== "pci-endpoint" && kind !== "pci-bridge");
  const pasid = pasidDesc(o.pasid, where);
  const ats = atsDesc(o.ats, where);
  const pri = priDesc(o.pri, pasid !== null, where);
  const acs = acsDesc(extra.acs ?? o.acs, where);
  if (!pcie && (pasid || ats || pri || acs)) {
    throw new SimError(
      `${where}: a conventional PCI function has no extended capabilities (ACS/ATS/PRI/PASID)`,
    );
  }
  if (kind === "pcie-to-pci-bridge" && acs) {
    throw new SimError(`${where}: PCIe-to-PCI bridges never implement ACS`);
  }
  const number = extra.number ?? 0;
  const slot = device.slot;
  const aliases = o.dmaAliases ?? p?.dmaAliases?.(pciDevfn(slot, number)) ?? [];
  for (const a of aliases) checkInt(a, 0, 255, `${where}: DMA alias devfn`);
  return {
    name: o.name,
    kind,
    number,
    part: p,
    partName: part ?? null,
    vendorId: checkInt(o.vendorId ?? p?.vendorId ?? dv, 0, 0xfffe, `${where}: vendor ID`),
    deviceId: checkInt(o.deviceId ?? p?.deviceId ?? dd, 0, 0xffff, `${where}: device ID`),
    classCode: checkInt(o.classCode ?? p?.classCode ?? dc, 0, 0xff_ffff, `${where}: class code`),
    revision: checkInt(o.revision ?? 0, 0, 0xff, `${where}: revision`),
    subsystemVendorId: checkInt(
      o.subsystemVendorId ?? p?.subsystemVendorId ?? 0,
      0,
      0xffff,
      `${where}: subsystem vendor ID`,
    ),
    subsystemId: checkInt(
      o.subsystemId ?? p?.subsystemId ?? 0,
      0,
      0xffff,
      `${where}: subsystem ID`,
    ),
    pcie,
    slotImplemented: extra.slotImplemented ?? false,
    hotplug: extra.hotplug ?? false,
    portNumber: extra.portNumber ?? 0,
    eePrefixMax: pcie ? eePrefixMax(o.eePrefix, extra.eeDefault ?? pasid !== null, where) : 0,
    bars: isBridgeKind(kind) ? [] : barSizes(o.bars, where),
    acs,
    ats,
    pri,
    pasid,
    dmaAliases: [...aliases],
  };
}

const FUNCTION_KEYS = [
  "name",
  "function",
  "part",
  "vendorId",
  "deviceId",
  "classCode",
  "revision",
  "subsystemVendorId",
  "subsystemId",
  "bars",
  "acs",
  "ats",
  "pri",
  "pasid",
  "eePrefix",
  "dmaAliases",
] as const;

/** @internal builds an endpoint device on `bus` (used by bridges and the host). */
export function buildEndpoint(
  bus: PciBus,
  kind: PciFunctionKind,
  opts: PciEndpointOptions,
  parent: PciBridge | null,
): PciDevice {
  const host = bus.host;
  const multi = opts.functions !== undefined;
  checkKeys(
    opts,
    multi ? ["name", "slot", "legacy", "functions"] : [...FUNCTION_KEYS, "slot", "legacy"],
    opts.name ?? "endpoint",
  );
  const prefix = kind === "rc-endpoint" ? "rciep" : "ep";
  const name = opts.name ?? host.defaultName(prefix);
  const device = newDevice(bus, slotFor(bus, opts.slot, name), name);
  const { slot: _slot, legacy: _legacy, functions: _functions, ...single } = opts;
  const fopts: readonly PciFunctionOptions[] = multi ? opts.functions! : [single];
  if (fopts.length === 0 || fopts.length > 8)
    throw new SimError(`${name}: ${fopts.length} functions (1 to 8)`);
  const used = new Set<number>();
  const fns: PciFunction[] = [];
  fopts.forEach((f, i) => {
    checkKeys(f, FUNCTION_KEYS, `${name} function ${i}`);
    const number = checkInt(f.function ?? nextFree(used), 0, 7, `${name}: function number`);
    if (used.has(number)) throw new SimError(`${name}: two functions numbered ${number}`);
    used.add(number);
    const fname = multi ? (f.name ?? `${name}.${number}`) : name;
    const spec = functionSpec(device, kind, { ...f, name: fname }, { number });
    fns.push(new PciFunction(device, spec));
  });
  attach(device, fns, parent);
  return device;
}

function nextFree(used: Set<number>): number {
  for (let i = 0; i < 8; i++) if (!used.has(i)) return i;
  return 8;
}

const PORT_KEYS = [
  "name",
  "slot",
  "function",
  "vendorId",
  "deviceId",
  "acs",
  "eePrefix",
  "hotplug",
  "externalFacing",
] as const;

function hotplugSpec(h: PciPortOptions["hotplug"], where: string): Required<PciHotplugSpec> | null {
  if (h === undefined || h === false) return null;
  const o = h === true ? {} : h;
  checkKeys(o, ["buses", "mmio"], `${where} hotplug`);
  const mmio = o.mmio ?? 32n << 20n;
  if (mmio < 0n || mmio % (1n << 20n) !== 0n || mmio > 1n << 30n) {
    throw new SimError(`${where}: hot-plug window ${mmio} is not a multiple of 1 MiB up to 1 GiB`);
  }
  return { buses: checkInt(o.buses ?? 8, 0, 254, `${where}: hot-plug bus reserve`), mmio };
}

/**
 * @internal builds a root port (root bus) or a downstream port (the internal bus of a switch
 * that is being built, hence never a hot-add by itself).
 */
export function buildPort(
  bus: PciBus,
  kind: "root-port" | "downstream-port",
  opts: PciPortOptions,
  portNumber: number,
): PciBridge {
  const host = bus.host;
  checkKeys(opts, PORT_KEYS, opts.name ?? kind);
  const name = opts.name ?? host.defaultName(kind === "root-port" ? "rp" : "dp");
  if (opts.externalFacing && kind !== "root-port") {
    throw new SimError(`${name}: only root ports are marked external-facing by firmware`);
  }
  const number = checkInt(opts.function ?? 0, 0, 7, `${name}: function number`);
  const existing =
    opts.slot !== undefined
      ? bus.device(checkInt(opts.slot, 0, 31, `${name}: device number`))
      : undefined;
  const device = existing ?? newDevice(bus, slotFor(bus, opts.slot, name), name);
  const hotplug = hotplugSpec(opts.hotplug, name);
  const spec = functionSpec(
    device,
    kind,
    { name, ...pick(opts, ["vendorId", "deviceId", "eePrefix"]) },
    {
      number,
      slotImplemented: true,
      hotplug: hotplug !== null,
      portNumber,
      eeDefault: true,
      acs: opts.acs,
    },
  );
  const port = new PciBridge(device, spec, {
    takesOwnership: false,
    externalFacing: opts.externalFacing ?? false,
    hotplug,
  });
  if (existing) addToDevice(device, port);
  else attach(device, [port], null, kind === "root-port");
  return port;
}

/** Adds another function to an existing device (multi-function root complex devices). */
function addToDevice(device: PciDevice, fn: PciFunction): void {
  const host = device.bus.host;
  if (host.enumerated)
    throw new SimError(`${fn.name}: functions cannot be added after enumeration`);
  host.claimName("function", fn.name, fn);
  try {
    device.addFunction(fn);
  } catch (e) {
    host.releaseName("function", fn.name);
    throw e;
  }
  host.changed();
}

function buildSwitch(port: PciBridge, opts: PciSwitchOptions): PciSwitch {
  const host = port.host;
  checkKeys(opts, ["name", "upstream", "downstream"], opts.name ?? "switch");
  const name = opts.name ?? host.defaultName("sw");
  const up = opts.upstream ?? {};
  checkKeys(up, ["name", "vendorId", "deviceId", "eePrefix"], `${name} upstream port`);
  const upName = up.name ?? `${name}.up`;
  const device = newDevice(port.secondary, slotFor(port.secondary, undefined, name), name);
  const upSpec = functionSpec(
    device,
    "upstream-port",
    { name: upName, ...pick(up, ["vendorId", "deviceId", "eePrefix"]) },
    { eeDefault: true },
  );
  const upstream = new PciBridge(device, upSpec, {
    takesOwnership: false,
    externalFacing: false,
    hotplug: null,
  });
  const dsOpts: readonly PciPortOptions[] =
    typeof opts.downstream === "number" || opts.downstream === undefined
      ? Array.from(
          { length: checkInt(opts.downstream ?? 2, 1, 32, `${name}: downstream port count`) },
          () => ({}),
        )
      : opts.downstream;
  if (dsOpts.length === 0 || dsOpts.length > 32)
    throw new SimError(`${name}: ${dsOpts.length} downstream ports (1 to 32)`);
  // Downstream ports exist before the switch is plugged in, so a hot-added switch arrives whole.
  const downstream: PciBridge[] = [];
  host.claimName("switch", name, upstream);
  try {
    dsOpts.forEach((o, i) => {
      const named: PciPortOptions = { ...o, name: o.name ?? `${name}.dp${i}` };
      downstream.push(buildDownstreamPort(upstream.secondary, named, i + 1));
    });
    attach(device, [upstream], port);
  } catch (e) {
    for (const d of upstream.secondary.devices()) detach(d);
    host.releaseName("switch", name);
    throw e;
  }
  return new PciSwitch(name, upstream, downstream);
}

function buildDownstreamPort(
  internal: PciBus,
  opts: PciPortOptions,
  portNumber: number,
): PciBridge {
  return buildPort(internal, "downstream-port", opts, portNumber);
}
