// Construction of the hierarchy: validates builder options into function specs, creates
// devices, functions, bridges and switches, and plugs or unplugs them (a hot-add or hot-remove
// once the host is running). Bridges reach these operations through their host's `builder`.

import { SimError } from "../../base/errors.js";
import { slotPresenceChanged } from "./capabilities.js";
import { PCI_PARTS } from "./catalog.js";
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
import { pciDevfn } from "./regs.js";
import {
  isBridgeKind,
  PciBridge,
  type PciBuilder,
  type PciBus,
  PciDevice,
  PciFunction,
  type PciFunctionKind,
  type PciFunctionSpec,
  PciSwitch,
} from "./topology.js";

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
): PciFunctionSpec {
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

function requireLink(parent: PciBridge, what: string): void {
  if (parent.secondary.kind !== "link") {
    throw new SimError(
      `${parent.name}: ${what} needs a PCI Express link (below a root or downstream port)`,
    );
  }
}

function pcieToPciBridge(parent: PciBridge, opts: PciBridgeOptions): PciBridge {
  requireLink(parent, "a PCIe-to-PCI bridge");
  checkKeys(opts, ["name", "slot", "part", "vendorId", "deviceId", "pcieCapability"], parent.name);
  const name = opts.name ?? parent.host.defaultName("pcibr");
  const part = checkPart(opts.part, name);
  const hides =
    opts.pcieCapability === false ||
    (part !== undefined && PCI_PARTS[part].takesOwnership === true);
  if (hides && opts.pcieCapability === true) {
    throw new SimError(`${name}: part ${part} has no PCI Express capability`);
  }
  const bus = parent.secondary;
  const device = newDevice(bus, slotFor(bus, opts.slot, name), name);
  const spec = functionSpec(
    device,
    "pcie-to-pci-bridge",
    { name, ...pick(opts, ["part", "vendorId", "deviceId"]) },
    { pcie: !hides },
  );
  const br = new PciBridge(device, spec, {
    takesOwnership: hides,
    externalFacing: false,
    hotplug: null,
  });
  attach(device, [br], parent);
  return br;
}

function pciBridge(parent: PciBridge, opts: PciBridgeOptions): PciBridge {
  const bus = parent.secondary;
  if (bus.kind !== "conventional") {
    throw new SimError(
      `${parent.name}: conventional PCI-to-PCI bridges go on a conventional PCI bus`,
    );
  }
  checkKeys(opts, ["name", "slot", "part", "vendorId", "deviceId"], parent.name);
  const name = opts.name ?? parent.host.defaultName("ppb");
  const part = checkPart(opts.part, name);
  if (part !== undefined && PCI_PARTS[part].takesOwnership) {
    throw new SimError(
      `${name}: part ${part} is a PCIe-to-PCI bridge; plug it below a PCI Express port`,
    );
  }
  const device = newDevice(bus, slotFor(bus, opts.slot, name), name);
  const spec = functionSpec(
    device,
    "pci-bridge",
    { name, ...pick(opts, ["part", "vendorId", "deviceId"]) },
    { pcie: false },
  );
  const br = new PciBridge(device, spec, {
    takesOwnership: false,
    externalFacing: false,
    hotplug: null,
  });
  attach(device, [br], parent);
  return br;
}

function endpointBelow(parent: PciBridge, opts: PciEndpointOptions): PciDevice {
  const bus = parent.secondary;
  if (bus.kind === "internal") {
    throw new SimError(`${parent.name}: endpoints go below a switch's downstream ports`);
  }
  const kind: PciFunctionKind =
    bus.kind === "conventional" ? "pci-endpoint" : opts.legacy ? "legacy-endpoint" : "endpoint";
  return buildEndpoint(bus, kind, opts, parent);
}

function remove(parent: PciBridge, device: PciDevice | string): void {
  const bus = parent.secondary;
  const d = typeof device === "string" ? bus.devices().find((x) => x.name === device) : device;
  if (!d || d.bus !== bus) {
    throw new SimError(
      `${parent.name}: no device ${typeof device === "string" ? device : device.name} below it`,
    );
  }
  const host = parent.host;
  if (host.enumerated) {
    if (!parent.hotplug) throw new SimError(`${parent.name} is not a hot-plug capable slot`);
    host.hotRemoving(parent, d);
  }
  detach(d);
  if (host.enumerated && parent.caps.pcie)
    slotPresenceChanged(parent.config, parent.caps.pcie, false);
}

/** The operations bridges delegate to. */
export const PCI_BUILDER: PciBuilder = {
  endpoint: endpointBelow,
  switch: (parent, opts) => {
    requireLink(parent, "a switch");
    return buildSwitch(parent, opts);
  },
  pcieToPciBridge,
  pciBridge,
  remove,
};
