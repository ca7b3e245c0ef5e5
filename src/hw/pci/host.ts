// The host bridge: one PCI segment with its root bus, ECAM configuration access by
// bus/device/function, firmware enumeration, the builder entry points for what sits on the root
// bus, name lookup, upstream request routing, and hot-plug notification.
//
// Building a machine:
//   const pci = new PciHost(ctx, { segment: 0 });
//   const rp = pci.addRootPort({ acs: true, hotplug: true });
//   const sw = rp.addSwitch({ downstream: [{ acs: true }, { acs: true }] });
//   sw.port(0).addEndpoint({ name: "dsa0", bars: [0x10000], ats: true, pri: true, pasid: 20 });
//   sw.port(1).addEndpoint({ name: "nic0", functions: [{ bars: [0x4000] }, { bars: [0x4000] }] });
//   pci.addRootPort().addPcieToPciBridge().addEndpoint({ name: "legacy0" });
//   pci.enumerate();                       // bus numbers, BARs, windows: as firmware does
//   pci.function("dsa0").upstreamRequesterId();   // the RID the IOMMU sees
// Adding below a hot-plug capable port after enumerate() is a hot-add; removeDevice() a hot-remove.

import { hex } from "../../base/bits.js";
import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { buildEndpoint, buildPort, PCI_BUILDER } from "./build.js";
import { slotPresenceChanged } from "./capabilities.js";
import type { ConfigAccessSize } from "./config-space.js";
import { assignHotAdded, enumerateHierarchy } from "./enumerate.js";
import {
  checkInt,
  checkKeys,
  type PciEndpointOptions,
  type PciHostOptions,
  type PciPortOptions,
} from "./options.js";
import { formatRid, pciDevfn } from "./regs.js";
import { ridHops, rootRequesterId, routeUpstreamCached } from "./router.js";
import {
  PciBridge,
  PciBus,
  type PciDevice,
  type PciFabric,
  type PciFunction,
  type PciHotplugEvent,
  type PciRoute,
  PciSwitch,
} from "./topology.js";
import type { TranslationAgent } from "./translation-agent.js";

type NameKind = "function" | "device" | "switch";

const DEFAULT_MMIO = { base: 0x4000_0000n, size: 0x4000_0000n };

export class PciHost implements PciFabric {
  readonly ctx: SimContext;
  readonly name: string;
  readonly segment: number;
  readonly rootBusNumber: number;
  readonly peerToPeer: boolean;
  readonly mmio: { readonly base: bigint; readonly size: bigint };
  readonly ecamBase: bigint;
  readonly rootBus: PciBus;
  readonly builder = PCI_BUILDER;
  #enumerated = false;
  #generation = 0;
  #rootPorts = 0;
  readonly #names: Record<NameKind, Map<string, object>> = {
    function: new Map(),
    device: new Map(),
    switch: new Map(),
  };
  readonly #listeners: Array<(e: PciHotplugEvent) => void> = [];
  #agent: TranslationAgent | null = null;

  constructor(ctx: SimContext, opts: PciHostOptions = {}) {
    checkKeys(
      opts,
      ["name", "segment", "rootBus", "mmio", "ecamBase", "peerToPeer"],
      "PCI host bridge",
    );
    this.ctx = ctx;
    this.name = opts.name ?? "pci0";
    this.segment = checkInt(opts.segment ?? 0, 0, 0xffff, `${this.name}: segment`);
    this.rootBusNumber = checkInt(opts.rootBus ?? 0, 0, 255, `${this.name}: root bus number`);
    this.peerToPeer = opts.peerToPeer ?? false;
    const mmio = opts.mmio ?? DEFAULT_MMIO;
    if (
      mmio.base % (1n << 20n) !== 0n ||
      mmio.size <= 0n ||
      mmio.size % (1n << 20n) !== 0n ||
      mmio.base + mmio.size > 1n << 32n
    ) {
      throw new SimError(
        `${this.name}: MMIO aperture ${hex(mmio.base)}+${hex(mmio.size)} must be 1 MiB aligned below 4 GiB`,
      );
    }
    this.mmio = mmio;
    this.ecamBase = opts.ecamBase ?? 0x3000_0000n;
    this.rootBus = new PciBus(this, "root", null);
  }

  get enumerated(): boolean {
    return this.#enumerated;
  }

  get generation(): number {
    return this.#generation;
  }

  changed(): void {
    this.#generation++;
  }

  // ---- names ----

  claimName(kind: NameKind, name: string, owner: object): void {
    if (typeof name !== "string" || !/^[A-Za-z_][\w.-]*$/.test(name)) {
      throw new SimError(`${this.name}: bad ${kind} name ${JSON.stringify(name)}`);
    }
    const map = this.#names[kind];
    if (map.has(name)) throw new SimError(`${this.name}: two ${kind}s named "${name}"`);
    map.set(name, owner);
  }

  releaseName(kind: NameKind, name: string): void {
    this.#names[kind].delete(name);
  }

  defaultName(prefix: string): string {
    for (let i = 0; ; i++) {
      const n = `${prefix}${i}`;
      if (!this.#names.function.has(n) && !this.#names.device.has(n) && !this.#names.switch.has(n))
        return n;
    }
  }

  // ---- builder: the root bus ----

  /** Adds a root port to the root bus (several may share a slot as functions of one device). */
  addRootPort(opts: PciPortOptions = {}): PciBridge {
    this.#beforeEnumeration("root port");
    return buildPort(this.rootBus, "root-port", opts, ++this.#rootPorts);
  }

  /** Adds a root-complex integrated endpoint (one or several functions) to the root bus. */
  addRcEndpoint(opts: PciEndpointOptions = {}): PciDevice {
    this.#beforeEnumeration("root-complex integrated endpoint");
    if (opts.legacy)
      throw new SimError("root-complex integrated endpoints are never legacy endpoints");
    return buildEndpoint(this.rootBus, "rc-endpoint", opts, null);
  }

  #beforeEnumeration(what: string): void {
    if (this.#enumerated)
      throw new SimError(`${this.name}: a ${what} cannot be added after enumeration`);
  }

  /** Firmware enumeration: numbers buses depth-first, assigns BARs and windows, enables decoding. */
  enumerate(): void {
    if (this.#enumerated) throw new SimError(`${this.name} is already enumerated`);
    const first = Number(this.mmio.base >> 12n);
    enumerateHierarchy(this.rootBus, { first, end: first + Number(this.mmio.size >> 12n) });
    this.#enumerated = true;
    this.changed();
  }

  // ---- lookup ----

  /** The function named `name`; throws if there is none. */
  function(name: string): PciFunction {
    const f = this.#names.function.get(name);
    if (!f) throw new SimError(`${this.name}: no PCI function named "${name}"`);
    return f as PciFunction;
  }

  findFunction(name: string): PciFunction | undefined {
    return this.#names.function.get(name) as PciFunction | undefined;
  }

  device(name: string): PciDevice {
    const d = this.#names.device.get(name);
    if (!d) throw new SimError(`${this.name}: no PCI device named "${name}"`);
    return d as PciDevice;
  }

  /** The switch named `name` (its upstream port and current downstream ports). */
  switch(name: string): PciSwitch {
    const up = this.#names.switch.get(name);
    if (!up) throw new SimError(`${this.name}: no switch named "${name}"`);
    const upstream = up as PciBridge;
    const downstream = upstream.secondary
      .functions()
      .filter((f): f is PciBridge => f instanceof PciBridge);
    return new PciSwitch(name, upstream, downstream);
  }

  /** Every function, depth first in devfn order (the order firmware enumerates them). */
  functions(): PciFunction[] {
    const out: PciFunction[] = [];
    const walk = (bus: PciBus): void => {
      for (const f of bus.functions()) {
        out.push(f);
        if (f instanceof PciBridge) walk(f.secondary);
      }
    };
    walk(this.rootBus);
    return out;
  }

  /** The bus numbered `bus`, found the way type 1 configuration requests are routed. */
  busByNumber(bus: number): PciBus | undefined {
    let cur = this.rootBus;
    if (bus === this.rootBusNumber) return cur;
    for (;;) {
      const br = cur
        .functions()
        .find((f): f is PciBridge => f instanceof PciBridge && f.decodesBus(bus));
      if (!br) return undefined;
      if (br.secondaryBusNumber === bus) return br.secondary;
      cur = br.secondary;
    }
  }

  /** The function at bus/devfn, or undefined (a configuration read would master-abort). */
  functionAt(bus: number, devfn: number): PciFunction | undefined {
    checkInt(bus, 0, 255, "bus number");
    checkInt(devfn, 0, 255, "devfn");
    return this.busByNumber(bus)?.functionAt(devfn);
  }

  /** A configuration read; all ones when no function answers. */
  configRead(bus: number, devfn: number, offset: number, size: ConfigAccessSize): number {
    const f = this.functionAt(bus, devfn);
    if (!f) return size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    return f.config.read(offset, size);
  }

  /** A configuration write; dropped when no function answers. */
  configWrite(
    bus: number,
    devfn: number,
    offset: number,
    size: ConfigAccessSize,
    value: number,
  ): void {
    this.functionAt(bus, devfn)?.config.write(offset, size, value);
  }

  /** An access at `offset` in the ECAM window (bus << 20 | device << 15 | function << 12 | register). */
  ecamRead(offset: number, size: ConfigAccessSize): number {
    const { bus, devfn, reg } = decodeEcam(offset);
    return this.configRead(bus, devfn, reg, size);
  }

  ecamWrite(offset: number, size: ConfigAccessSize, value: number): void {
    const { bus, devfn, reg } = decodeEcam(offset);
    this.configWrite(bus, devfn, reg, size, value);
  }

  // ---- requests ----

  /**
   * The IOMMU that translates this segment's inbound requests (its IO bridge asks it), or null:
   * no translation, device addresses are physical addresses.
   */
  get translationAgent(): TranslationAgent | null {
    return this.#agent;
  }

  setTranslationAgent(agent: TranslationAgent | null): void {
    this.#agent = agent;
  }

  /**
   * Routes a memory request for `page` that `fn` issues: to the root complex (out.rid is then
   * what the IOMMU sees), to a peer whose BAR claims it, or blocked. `flags`: PCI_REQ_TRANSLATED,
   * PCI_REQ_PASID. `sourceDevfn` picks one of the function's DMA source devfns (default its own).
   */
  routeUpstream(
    fn: PciFunction,
    page: number,
    out: PciRoute,
    flags = 0,
    sourceDevfn = -1,
  ): PciRoute {
    this.#own(fn);
    routeUpstreamCached(fn, page, out, flags, sourceDevfn, this.peerToPeer, this.#generation);
    if (out.kind !== "root-complex" && this.ctx.trace.enabled) {
      this.ctx.trace.emit("pci:route", this.name, {
        device: fn.name,
        rid: out.rid,
        addr: BigInt(page) << 12n,
        kind: out.kind,
        target: out.target?.name ?? null,
        via: out.via?.name ?? null,
        reason: out.reason,
      });
    }
    return out;
  }

  /** The requester ID the root complex sees for `fn`'s requests (tagged with `sourceDevfn`). */
  upstreamRequesterId(fn: PciFunction, sourceDevfn = -1): number {
    this.#own(fn);
    return rootRequesterId(fn, sourceDevfn < 0 ? fn.devfn : sourceDevfn);
  }

  /** Every requester ID `fn`'s upstream requests can carry on any hop, ascending. */
  requesterIdsOnPath(fn: PciFunction): number[] {
    this.#own(fn);
    const out = new Set<number>();
    for (const src of fn.dmaSourceDevfns()) for (const rid of ridHops(fn, src)) out.add(rid);
    return [...out].sort((a, b) => a - b);
  }

  #own(fn: PciFunction): void {
    if (fn.host !== this) throw new SimError(`${fn.name} is not a function of ${this.name}`);
  }

  // ---- hot plug ----

  /** Listens for slot presence changes; returns the unsubscribe function. */
  onHotplug(listener: (e: PciHotplugEvent) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  hotAdded(port: PciBridge, device: PciDevice): void {
    assignHotAdded(port, device);
    this.changed();
    if (port.caps.pcie) slotPresenceChanged(port.config, port.caps.pcie, true);
    this.#notify({ op: "add", port, device });
  }

  hotRemoving(port: PciBridge, device: PciDevice): void {
    this.#notify({ op: "remove", port, device });
  }

  #notify(e: PciHotplugEvent): void {
    this.ctx.trace.emit("pci:hotplug", this.name, {
      op: e.op,
      port: e.port.name,
      device: e.device.name,
    });
    for (const l of [...this.#listeners]) l(e);
  }

  // ---- views ----

  toJSON(): Json {
    return {
      name: this.name,
      segment: this.segment,
      root_bus: this.rootBusNumber,
      ecam: hex(this.ecamBase),
      mmio: { base: hex(this.mmio.base), size: hex(this.mmio.size) },
      enumerated: this.#enumerated,
      peer_to_peer: this.peerToPeer,
      tree: busView(this.rootBus),
    };
  }
}

function decodeEcam(offset: number): { bus: number; devfn: number; reg: number } {
  checkInt(offset, 0, 0x0fff_ffff, "ECAM offset");
  return {
    bus: (offset >>> 20) & 0xff,
    devfn: pciDevfn((offset >>> 15) & 0x1f, (offset >>> 12) & 7),
    reg: offset & 0xfff,
  };
}

function busView(bus: PciBus): Json {
  return {
    number: bus.number,
    kind: bus.kind,
    devices: bus.devices().map((d) => ({
      name: d.name,
      slot: d.slot,
      multifunction: d.isMultifunction,
      functions: d.functions().map(functionNode),
    })),
  };
}

function functionNode(f: PciFunction): Json {
  const caps = Object.entries(f.caps)
    .filter(([, at]) => at !== 0)
    .map(([k]) => k);
  const node: { [key: string]: Json } = { name: f.name, kind: f.kind, bdf: f.bdf, caps };
  if (f.part) node.part = f.part;
  if (f.dmaAliasDevfns.length)
    node.dma_aliases = f.dmaAliasDevfns.map((d) => formatRid((f.busNumber << 8) | d));
  if (f instanceof PciBridge) {
    const w = f.windowPages();
    node.secondary = f.secondaryBusNumber;
    node.subordinate = f.subordinateBusNumber;
    node.window = w
      ? { base: hex(BigInt(w.first) << 12n), limit: hex((BigInt(w.last) << 12n) | 0xfffn) }
      : null;
    if (f.hotplug) node.hotplug = { buses: f.hotplug.buses, mmio: hex(f.hotplug.mmio) };
    if (f.externalFacing) node.external_facing = true;
    if (f.takesOwnership) node.takes_ownership = true;
    node.bus = busView(f.secondary);
  }
  return node;
}
