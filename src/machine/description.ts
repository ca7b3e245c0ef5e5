// The machine description: plain data (YAML, JSON or a TS object) saying what hardware a machine
// has and how it boots. `readDescription` validates it completely, reporting every problem with
// its field path (and file:line:column for YAML), and returns the normalised form the builder
// consumes. A description may `extends:` a built-in machine and override parts of it.

import type { InputLocation } from "../base/errors.js";
import { type PciPartName, pciPartNames } from "../hw/pci/catalog.js";
import { Diagnostics } from "./input/diagnostics.js";
import { childPath, entry, type InputNode, mergeNodes } from "./input/node.js";
import {
  boolean,
  checkKeys,
  integer,
  listOf,
  type Named,
  name,
  namedMap,
  nullable,
  oneOf,
  optional,
  type Reader,
  refine,
  required,
  type StructOf,
  struct,
  suggest,
  u64,
} from "./input/schema.js";
import { type IommuDriverOptions, readIommuOptions } from "./iommu-options.js";

/** RAM starts here on the RISC-V `virt` machine; a description giving only a size gets it. */
export const DEFAULT_RAM_BASE = 0x8000_0000n;

export interface RamRegionDescription {
  readonly base: bigint;
  readonly size: bigint;
}

/** Kernel command line and Kconfig choices that shape the IOMMU core at boot (core §2.4). */
export interface BootOptions {
  /** `iommu.passthrough=` on the command line; undefined = not given (Kconfig decides). */
  readonly passthrough: boolean | undefined;
  /** `iommu.strict=`; undefined = not given. */
  readonly strict: boolean | undefined;
  /** `CONFIG_IOMMU_DEFAULT_PASSTHROUGH` (else DMA translation by default). */
  readonly configDefaultPassthrough: boolean;
  /** `CONFIG_IOMMU_DEFAULT_DMA_STRICT` (else lazy invalidation, DMA-FQ). */
  readonly configDefaultDmaStrict: boolean;
  /** `iommu.forcedac=`: PCI devices do not try 32-bit IOVAs first. */
  readonly forcedac: boolean;
}

export const IOMMU_DRIVER_NAMES = ["mock", "riscv"] as const;
export type IommuDriverName = (typeof IOMMU_DRIVER_NAMES)[number];

/** Where a named entry and each of its fields came from, for messages about cross-references. */
export interface Located {
  readonly name: string;
  /** Where the entry's name is written. */
  readonly loc: InputLocation;
  readonly fieldLocs: Readonly<Record<string, InputLocation>>;
}

export interface IommuDescription extends Located {
  readonly driver: IommuDriverName;
  /** `iommu_device.max_pasids = 1 << pasid_bits`; 0 bits = no PASID support. */
  readonly pasidBits: number;
  /** Page sizes the instance supports (`pgsize_bitmap`), ascending. */
  readonly pageSizes: readonly bigint[];
  /** `page_sizes` was written (not the default): only the mock driver can honour it. */
  readonly pageSizesGiven: boolean;
  /** The validated driver-specific options. */
  readonly options: IommuDriverOptions;
  /** The options as written, to validate again when a run replaces the driver. */
  readonly optionsNode: InputNode | undefined;
}

export const PCI_BRIDGE_TYPES = [
  "root_port",
  "switch_upstream",
  "switch_downstream",
  "pci_bridge",
] as const;
export type PciBridgeType = (typeof PCI_BRIDGE_TYPES)[number];

/** The ACS controls the kernel requires for isolation: Source Validation, Request Redirect, … */
export interface AcsDescription {
  readonly sv: boolean;
  readonly rr: boolean;
  readonly cr: boolean;
  readonly uf: boolean;
}

export interface PciBridgeDescription extends Located {
  readonly type: PciBridgeType;
  /** The bridge above (absent for a root port: it sits on the host bridge, bus 0). */
  readonly parent: string | undefined;
  /** Device number on the parent's secondary bus (assigned when the description omits it). */
  readonly slot: number;
  readonly function: number;
  /** ACS capability with these controls enabled, or null for no ACS capability. */
  readonly acs: AcsDescription | null;
  /** Firmware marks the root port external-facing (Thunderbolt): devices below are untrusted. */
  readonly externalFacing: boolean;
  /** A known bridge part (e.g. a PCIe-to-PCI bridge hiding its PCIe capability). */
  readonly part: PciPartName | undefined;
}

export const RESV_TYPES = ["direct", "direct_relaxable", "reserved"] as const;
export type ResvTypeName = (typeof RESV_TYPES)[number];

export const PROT_NAMES = ["read", "write", "cache", "noexec", "mmio", "priv"] as const;
export type ProtName = (typeof PROT_NAMES)[number];

export interface ReservedRegionDescription {
  readonly type: ResvTypeName;
  readonly start: bigint;
  readonly size: bigint;
  readonly prot: readonly ProtName[];
}

export interface DriverBinding {
  readonly name: string;
  /** The driver manages DMA itself: binding does not call `iommu_device_use_default_domain`. */
  readonly driverManagedDma: boolean;
}

/**
 * The device drivers the machine has (src/drivers): the device model each one drives and
 * whether it manages DMA itself. Any other name is a name-only driver (a DMA-API user that does
 * nothing but bind).
 */
export const DEVICE_DRIVERS: Readonly<
  Record<string, { readonly endpoint: EndpointModel | null; readonly driverManagedDma: boolean }>
> = {
  /** drivers/dma/idxd: the DSA-like engine (src/drivers/dsa). */
  idxd: { endpoint: "dsa", driverManagedDma: false },
  /** The e1000-like NIC driver (src/drivers/nic). */
  nic: { endpoint: "nic", driverManagedDma: false },
  /** vfio-pci (src/drivers/vfio): any PCI endpoint, handed to user space. */
  "vfio-pci": { endpoint: null, driverManagedDma: true },
};

export const ENDPOINT_MODELS = ["none", "test", "nic", "dsa"] as const;
export type EndpointModel = (typeof ENDPOINT_MODELS)[number];

interface DeviceCommon extends Located {
  /** The IOMMU instance translating the device (default: the first one); null = none. */
  readonly iommu: string | null;
  readonly reservedRegions: readonly ReservedRegionDescription[];
  /** Driver bound at boot, if any. */
  readonly driver: DriverBinding | null;
  /** The DMA engine model behind the device. */
  readonly endpoint: EndpointModel;
  /** Present at boot; false = plugged in later by a `hot_add` step. */
  readonly present: boolean;
}

export interface PciFunctionDescription extends DeviceCommon {
  readonly bus: "pci";
  /** The bridge the function sits below; undefined = root-complex integrated, on bus 0. */
  readonly parent: string | undefined;
  readonly slot: number;
  readonly function: number;
  /** PASID capability width in bits (0 = no PASID capability). */
  readonly pasidBits: number;
  readonly pri: boolean;
  readonly ats: boolean;
  /** Function-level ACS of a multifunction device (null = no ACS capability). */
  readonly acs: AcsDescription | null;
  /**
   * Hardware DMA aliases: `slot.function`s on the same bus the function also tags requests with.
   * Linux learns aliases only from its quirk table (a known `part`), not from the hardware.
   */
  readonly dmaAliases: readonly { readonly slot: number; readonly function: number }[];
  /** A known part (hw/pci catalog): its IDs and bus behaviour, which Linux quirks recognise. */
  readonly part: PciPartName | undefined;
}

export interface PlatformDeviceDescription extends DeviceCommon {
  readonly bus: "platform";
  /** Firmware `pasid-num-bits`, or undefined when the property is absent. */
  readonly pasidNumBits: number | undefined;
}

export type DeviceDescription = PciFunctionDescription | PlatformDeviceDescription;

export interface MachineDescription {
  readonly name: string;
  /** CPUs (harts): the DMA API's per-CPU IOVA caches and flush-queue rings. */
  readonly cpus: number;
  readonly ram: readonly RamRegionDescription[];
  readonly boot: BootOptions;
  readonly iommus: readonly IommuDescription[];
  readonly pci: readonly PciBridgeDescription[];
  readonly devices: readonly DeviceDescription[];
}

/** How `extends:` and bare names find the built-in machines. */
export interface BuiltinResolver {
  /** The node of a built-in machine, or undefined for an unknown name. */
  readonly resolveBuiltin: (name: string) => InputNode | undefined;
  /** Every built-in machine's name, for messages. */
  readonly builtinNames: readonly string[];
}

/** Reads a description node; `resolveBuiltin` supplies the nodes of built-in machines for `extends:`. */
export function readDescription(node: InputNode, opts: BuiltinResolver): MachineDescription {
  const d = new Diagnostics();
  const desc = readDescriptionInto(node, "", d, opts);
  d.throwIfAny();
  return desc!;
}

/** Like readDescription, but reports into `d` under `path` (scenario files embed descriptions). */
export function readDescriptionInto(
  node: InputNode,
  path: string,
  d: Diagnostics,
  opts: BuiltinResolver,
): MachineDescription | undefined {
  const own = new Diagnostics();
  const desc = readExpanded(node, path, own, opts);
  // Built-ins are valid on their own: a problem in one of their entries comes from what this
  // description changed (a removed IOMMU or bridge still named). The built-in's entries have no
  // line to show, so the problem is reported at this description's `extends:`.
  const ext = node.kind === "map" ? entry(node, "extends")?.value : undefined;
  for (const e of own.errors) {
    if (ext && e.location.line === undefined && e.location.file?.startsWith("<builtin ")) {
      d.error(ext.loc, "", `${e.message} (in the built-in machine ${toPlainName(ext)} it extends)`);
    } else {
      d.absorb(e);
    }
  }
  return desc;
}

function toPlainName(node: InputNode): string {
  return node.kind === "scalar" ? JSON.stringify(node.value) : "";
}

function readExpanded(
  node: InputNode,
  path: string,
  d: Diagnostics,
  opts: BuiltinResolver,
): MachineDescription | undefined {
  const full = expandExtends(node, path, d, opts, []);
  if (!full) return undefined;
  if (full.kind !== "map") {
    d.error(full.loc, path, "expected a machine description (a map) or a built-in machine name");
    return undefined;
  }
  checkKeys(full, path, TOP_FIELDS, d);
  const get = (k: string) => entry(full, k)?.value;

  const descName = optionalField(get("name"), childPath(path, "name"), d, name(), "machine");
  const cpus = optionalField(
    get("cpus"),
    childPath(path, "cpus"),
    d,
    integer({ min: 1, max: 64 }),
    1,
  );
  const ram = readMemory(get("memory"), childPath(path, "memory"), d);
  const boot = readBoot(get("boot"), childPath(path, "boot"), d);
  const iommus = readList(get("iommus"), childPath(path, "iommus"), d, readIommu);
  const pciRead = readList(get("pci"), childPath(path, "pci"), d, readBridge);
  const devicesRead = readList(get("devices"), childPath(path, "devices"), d, readDevice);
  const devices = devicesRead && iommus && resolveIommus(devicesRead, iommus);

  const before = d.count;
  const pci = pciRead && assignSlots(pciRead);
  if (iommus && pci && devices) crossCheck(path, d, iommus, pci, devices);
  if (
    descName === undefined ||
    cpus === undefined ||
    !ram ||
    !boot ||
    !iommus ||
    !pci ||
    !devices ||
    d.count > before
  ) {
    return undefined;
  }
  return { name: descName, cpus, ram, boot, iommus, pci, devices };
}

const TOP_FIELDS = ["extends", "name", "cpus", "memory", "boot", "iommus", "pci", "devices"];

/** Replaces `extends: <built-in>` by the built-in's node with this one laid over it. */
function expandExtends(
  node: InputNode,
  path: string,
  d: Diagnostics,
  opts: BuiltinResolver,
  chain: string[],
): InputNode | undefined {
  if (node.kind === "scalar" && typeof node.value === "string") {
    return builtin(node.value, node.loc, path, d, opts, chain);
  }
  if (node.kind !== "map") return node;
  const ext = entry(node, "extends");
  if (!ext) return node;
  if (ext.value.kind !== "scalar" || typeof ext.value.value !== "string") {
    d.error(ext.value.loc, childPath(path, "extends"), "expected the name of a built-in machine");
    return undefined;
  }
  const base = builtin(ext.value.value, ext.value.loc, childPath(path, "extends"), d, opts, chain);
  if (!base) return undefined;
  const over = { ...node, entries: node.entries.filter((e) => e.key !== "extends") };
  return mergeNodes(base, over);
}

function builtin(
  id: string,
  loc: InputLocation,
  path: string,
  d: Diagnostics,
  opts: BuiltinResolver,
  chain: string[],
): InputNode | undefined {
  if (chain.includes(id)) {
    d.error(loc, path, `built-in machine "${id}" extends itself`);
    return undefined;
  }
  const base = opts.resolveBuiltin(id);
  if (!base) {
    d.error(
      loc,
      path,
      `unknown built-in machine "${id}"${suggest(id, opts.builtinNames)}; built-in machines: ${opts.builtinNames.join(", ")}`,
    );
    return undefined;
  }
  return expandExtends(base, path, d, opts, [...chain, id]);
}

function optionalField<T>(
  node: InputNode | undefined,
  path: string,
  d: Diagnostics,
  read: Reader<T>,
  fallback: T,
): T | undefined {
  return node === undefined ? fallback : read(node, path, d);
}

function readList<T>(
  node: InputNode | undefined,
  path: string,
  d: Diagnostics,
  item: (n: Named<InputNode>, path: string, d: Diagnostics) => T | undefined,
): T[] | undefined {
  if (node === undefined) return [];
  const named = namedMap<InputNode>((n) => n)(node, path, d);
  if (!named) return undefined;
  const out: T[] = [];
  let bad = false;
  for (const n of named) {
    const v = item(n, childPath(path, n.name), d);
    if (v === undefined) bad = true;
    else out.push(v);
  }
  return bad ? undefined : out;
}

// ---- memory ----

const PAGE_ALIGNED = (v: bigint) => ((v & 0xfffn) === 0n ? undefined : "must be 4 KiB aligned");

const regionFields = struct({
  base: required(refine(u64(), PAGE_ALIGNED)),
  size: required(refine(u64({ sizes: true, nonZero: true }), PAGE_ALIGNED)),
});

const readRegion = refine(regionFields, (r) =>
  r.base + r.size > 1n << 56n ? "RAM must lie below 2^56 (56-bit physical addresses)" : undefined,
);

const memoryFields = struct({
  size: optional(refine(u64({ sizes: true, nonZero: true }), PAGE_ALIGNED)),
  regions: optional(listOf(readRegion)),
});

function readMemory(
  node: InputNode | undefined,
  path: string,
  d: Diagnostics,
): RamRegionDescription[] | undefined {
  if (node === undefined) return [{ base: DEFAULT_RAM_BASE, size: 256n << 20n }];
  const m = memoryFields(node, path, d);
  if (!m) return undefined;
  if ((m.size === undefined) === (m.regions === undefined)) {
    d.error(
      node.loc,
      path,
      'give either "size" (RAM at 0x80000000) or "regions", not both or neither',
    );
    return undefined;
  }
  const regions = m.regions ?? [{ base: DEFAULT_RAM_BASE, size: m.size! }];
  let good = true;
  const sorted = [...regions].sort((a, b) => (a.base < b.base ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.base < sorted[i - 1]!.base + sorted[i - 1]!.size) {
      d.error(node.loc, childPath(path, "regions"), "RAM regions overlap");
      good = false;
    }
  }
  return good ? regions : undefined;
}

// ---- boot ----

/** Kernel parameters are 0/1 (or on/off); YAML booleans are accepted too. */
function kernelBool(): Reader<boolean> {
  return (node, path, d) => {
    if (node.kind === "scalar") {
      const v = node.value;
      if (typeof v === "boolean") return v;
      if (v === 0n || v === 0 || v === "0" || v === "off" || v === "n") return false;
      if (v === 1n || v === 1 || v === "1" || v === "on" || v === "y") return true;
    }
    return boolean()(node, path, d);
  };
}

const bootFields = struct({
  "iommu.passthrough": optional(kernelBool()),
  "iommu.strict": optional(kernelBool()),
  CONFIG_IOMMU_DEFAULT_PASSTHROUGH: optional(kernelBool(), false),
  CONFIG_IOMMU_DEFAULT_DMA_STRICT: optional(kernelBool(), true),
  "iommu.forcedac": optional(kernelBool(), false),
});

function readBoot(
  node: InputNode | undefined,
  path: string,
  d: Diagnostics,
): BootOptions | undefined {
  const b = bootFields(node ?? { kind: "map", loc: {}, entries: [] }, path, d);
  if (!b) return undefined;
  return {
    passthrough: b["iommu.passthrough"],
    strict: b["iommu.strict"],
    configDefaultPassthrough: b.CONFIG_IOMMU_DEFAULT_PASSTHROUGH,
    configDefaultDmaStrict: b.CONFIG_IOMMU_DEFAULT_DMA_STRICT,
    forcedac: b["iommu.forcedac"],
  };
}

// ---- IOMMUs ----

const readIommuFields = struct({
  driver: required(oneOf(IOMMU_DRIVER_NAMES)),
  pasid_bits: optional(integer({ min: 0, max: 20 }), 20),
  page_sizes: optional(
    listOf(
      refine(u64({ sizes: true, nonZero: true }), (s) =>
        (s & (s - 1n)) !== 0n || s < 4096n
          ? `page size ${s} is not a power of two ≥ 4096`
          : undefined,
      ),
    ),
  ),
  options: optional<InputNode>((n) => n),
});

function readIommu(
  n: Named<InputNode>,
  path: string,
  d: Diagnostics,
): IommuDescription | undefined {
  const f = readIommuFields(n.value, path, d);
  if (!f) return undefined;
  const driverLoc =
    n.value.kind === "map" ? (entry(n.value, "driver")?.value.loc ?? n.keyLoc) : n.keyLoc;
  const options = readIommuOptions(f.driver, f.options, childPath(path, "options"), d, driverLoc);
  const fieldLoc = (k: string) =>
    n.value.kind === "map" ? (entry(n.value, k)?.value.loc ?? n.keyLoc) : n.keyLoc;
  const fits = fitsDriver(f.driver, f.pasid_bits, f.page_sizes !== undefined, fieldLoc, path, d);
  if (!options || !fits) return undefined;
  const sizes = [...new Set(f.page_sizes ?? [4096n, 2n << 20n, 1n << 30n])].sort((a, b) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  return {
    name: n.name,
    loc: n.keyLoc,
    fieldLocs: fieldLocs(n.value),
    driver: f.driver,
    pasidBits: f.pasid_bits,
    pageSizes: sizes,
    pageSizesGiven: f.page_sizes !== undefined,
    options,
    optionsNode: f.options,
  };
}

/**
 * What the driver's hardware can be: a RISC-V IOMMU has 8-, 17- or 20-bit process directories
 * (PD8/PD17/PD20) and the page sizes of its paging modes, so other settings are the mock's.
 */
function fitsDriver(
  driver: string,
  pasidBits: number,
  pageSizesGiven: boolean,
  loc: (field: string) => InputLocation,
  path: string,
  d: Diagnostics,
): boolean {
  if (driver !== "riscv") return true;
  let good = true;
  if (![0, 8, 17, 20].includes(pasidBits)) {
    d.error(
      loc("pasid_bits"),
      childPath(path, "pasid_bits"),
      `a RISC-V IOMMU supports 0, 8, 17 or 20 PASID bits (PD8/PD17/PD20), not ${pasidBits}`,
    );
    good = false;
  }
  if (pageSizesGiven) {
    d.error(
      loc("page_sizes"),
      childPath(path, "page_sizes"),
      "a RISC-V IOMMU's page sizes follow its paging modes (options.capabilities), not page_sizes",
    );
    good = false;
  }
  return good;
}

// ---- PCI bridges ----

const acsFields = struct({
  sv: optional(boolean(), false),
  rr: optional(boolean(), false),
  cr: optional(boolean(), false),
  uf: optional(boolean(), false),
});

function acs(): Reader<AcsDescription | null> {
  const all = { sv: true, rr: true, cr: true, uf: true };
  const fields = acsFields;
  return (node, path, d) => {
    if (node.kind === "scalar" && typeof node.value === "boolean") return node.value ? all : null;
    if (node.kind === "scalar" && node.value === null) return null;
    if (node.kind === "map") return fields(node, path, d);
    d.error(
      node.loc,
      path,
      "expected true (all of SV, RR, CR, UF), false (no ACS) or a map {sv, rr, cr, uf}",
    );
    return undefined;
  };
}

/** A bridge whose slot the description left out; `assignSlots` gives it one. */
const AUTO_SLOT = -1;

const readBridgeFields = struct({
  type: required(oneOf(PCI_BRIDGE_TYPES)),
  parent: optional(name()),
  slot: optional(integer({ min: 0, max: 31 })),
  function: optional(integer({ min: 0, max: 7 }), 0),
  acs: optional(acs(), null),
  external_facing: optional(boolean(), false),
  part: optional(oneOf(pciPartNames())),
});

function readBridge(
  n: Named<InputNode>,
  path: string,
  d: Diagnostics,
): PciBridgeDescription | undefined {
  const f = readBridgeFields(n.value, path, d);
  if (!f) return undefined;
  return {
    name: n.name,
    loc: n.keyLoc,
    fieldLocs: fieldLocs(n.value),
    type: f.type,
    parent: f.parent,
    slot: f.slot ?? AUTO_SLOT,
    function: f.function,
    acs: f.acs,
    externalFacing: f.external_facing,
    part: f.part,
  };
}

// ---- devices ----

const resvFields = struct({
  type: required(oneOf(RESV_TYPES)),
  start: required(refine(u64(), PAGE_ALIGNED)),
  size: required(refine(u64({ sizes: true, nonZero: true }), PAGE_ALIGNED)),
  prot: optional(listOf(oneOf(PROT_NAMES), { single: true }), ["read", "write"] as ProtName[]),
});

const readResv = refine(resvFields, (r) =>
  r.start + r.size > 1n << 64n ? "region runs past the 64-bit address space" : undefined,
);

const driverFields = struct({
  name: required(name()),
  driver_managed_dma: optional(boolean()),
});

/** A driver binding; the machine's own drivers bring their own driver_managed_dma. */
function readDriverBinding(): Reader<DriverBinding | null> {
  const fields = driverFields;
  return (node, path, d) => {
    if (node.kind === "scalar" && node.value === null) return null;
    if (node.kind === "scalar") {
      const n = name()(node, path, d);
      return n === undefined ? undefined : { name: n, driverManagedDma: knownDma(n) ?? false };
    }
    const f = fields(node, path, d);
    if (!f) return undefined;
    const known = knownDma(f.name);
    if (
      known !== undefined &&
      f.driver_managed_dma !== undefined &&
      f.driver_managed_dma !== known
    ) {
      d.error(
        node.loc,
        childPath(path, "driver_managed_dma"),
        `the ${f.name} driver ${known ? "manages DMA itself" : "uses the DMA API"}: driver_managed_dma is ${known}`,
      );
      return undefined;
    }
    return { name: f.name, driverManagedDma: f.driver_managed_dma ?? known ?? false };
  };
}

function knownDma(driver: string): boolean | undefined {
  return Object.hasOwn(DEVICE_DRIVERS, driver)
    ? DEVICE_DRIVERS[driver]!.driverManagedDma
    : undefined;
}

const DEVFN = /^([0-9a-f]{1,2})\.([0-7])$/i;

function devfn(): Reader<{ slot: number; function: number }> {
  return (node, path, d) => {
    if (node.kind === "scalar" && typeof node.value === "string") {
      const m = DEVFN.exec(node.value);
      if (m && Number.parseInt(m[1]!, 16) < 32) {
        return { slot: Number.parseInt(m[1]!, 16), function: Number(m[2]) };
      }
    }
    d.error(
      node.loc,
      path,
      'expected a "slot.function" on the same bus, e.g. "00.1" (hex slot 00..1f)',
    );
    return undefined;
  };
}

const COMMON_DEVICE_FIELDS = {
  iommu: optional(nullable(name())),
  reserved_regions: optional(listOf(readResv), []),
  driver: optional(readDriverBinding(), null),
  endpoint: optional(oneOf(ENDPOINT_MODELS), "none" as EndpointModel),
  present: optional(boolean(), true),
};

const readPciFields = struct({
  bus: optional(oneOf(["pci", "platform"] as const), "pci" as const),
  ...COMMON_DEVICE_FIELDS,
  parent: optional(name()),
  slot: optional(integer({ min: 0, max: 31 }), 0),
  function: optional(integer({ min: 0, max: 7 }), 0),
  pasid_bits: optional(integer({ min: 0, max: 20 }), 0),
  pri: optional(boolean(), false),
  ats: optional(boolean(), false),
  acs: optional(acs(), null),
  dma_alias: optional(listOf(devfn(), { single: true }), []),
  part: optional(oneOf(pciPartNames())),
});

const readPlatformFields = struct({
  bus: required(oneOf(["pci", "platform"] as const)),
  ...COMMON_DEVICE_FIELDS,
  pasid_num_bits: optional(integer({ min: 0, max: 20 })),
});

/** Devices whose `iommu` was omitted; filled in once the IOMMU list is known. */
const UNSET_IOMMU = "\0unset";

function readDevice(
  n: Named<InputNode>,
  path: string,
  d: Diagnostics,
): DeviceDescription | undefined {
  const node = n.value;
  const busNode = node.kind === "map" ? entry(node, "bus")?.value : undefined;
  const isPlatform = busNode?.kind === "scalar" && busNode.value === "platform";
  if (isPlatform) {
    const f = readPlatformFields(node, path, d);
    if (!f) return undefined;
    return { bus: "platform", ...deviceCommon(n, f), pasidNumBits: f.pasid_num_bits };
  }
  const f = readPciFields(node, path, d);
  if (!f) return undefined;
  return {
    bus: "pci",
    ...deviceCommon(n, f),
    parent: f.parent,
    slot: f.slot,
    function: f.function,
    pasidBits: f.pasid_bits,
    pri: f.pri,
    ats: f.ats,
    acs: f.acs,
    dmaAliases: f.dma_alias,
    part: f.part,
  };
}

/** The fields of either bus's device that `COMMON_DEVICE_FIELDS` read. */
function deviceCommon(n: Named<InputNode>, f: StructOf<typeof COMMON_DEVICE_FIELDS>): DeviceCommon {
  return {
    name: n.name,
    loc: n.keyLoc,
    fieldLocs: fieldLocs(n.value),
    iommu: f.iommu === undefined ? UNSET_IOMMU : f.iommu,
    reservedRegions: f.reserved_regions,
    driver: f.driver,
    endpoint: f.endpoint,
    present: f.present,
  };
}

function fieldLocs(node: InputNode): Record<string, InputLocation> {
  const out: Record<string, InputLocation> = {};
  if (node.kind === "map") for (const e of node.entries) out[e.key] = e.value.loc;
  return out;
}

/** Location of `field` of a named entry, else of the entry itself. */
function at(x: Located, field: string): InputLocation {
  return x.fieldLocs[field] ?? x.loc;
}

function resolveIommus(
  devices: readonly DeviceDescription[],
  iommus: readonly IommuDescription[],
): DeviceDescription[] {
  return devices.map((dev) =>
    dev.iommu === UNSET_IOMMU ? { ...dev, iommu: iommus[0]?.name ?? null } : dev,
  );
}

/**
 * Gives bridges without a `slot` the lowest free device number on their parent's bus: from 1 on
 * the host bridge (slot 0 is the root complex itself), 0 below a downstream port, else from 0.
 */
function assignSlots(pci: readonly PciBridgeDescription[]): PciBridgeDescription[] {
  const used = new Map<string, Set<number>>();
  const usedOn = (bus: string) => {
    let s = used.get(bus);
    if (!s) {
      s = new Set();
      used.set(bus, s);
    }
    return s;
  };
  for (const b of pci) if (b.slot !== AUTO_SLOT) usedOn(b.parent ?? "").add(b.slot);
  const byName = new Map(pci.map((b) => [b.name, b]));
  return pci.map((b) => {
    if (b.slot !== AUTO_SLOT) return b;
    const parentType = b.parent === undefined ? undefined : byName.get(b.parent)?.type;
    if (parentType === "root_port" || parentType === "switch_downstream") return { ...b, slot: 0 };
    const taken = usedOn(b.parent ?? "");
    let slot = b.parent === undefined ? 1 : 0;
    while (taken.has(slot) && slot < 31) slot++;
    taken.add(slot);
    return { ...b, slot };
  });
}

// ---- cross-references ----

/** What may sit directly below each kind of parent (undefined = the host bridge, bus 0). */
const BRIDGE_PARENTS: Record<PciBridgeType, readonly (PciBridgeType | undefined)[]> = {
  root_port: [undefined],
  switch_upstream: ["root_port", "switch_downstream"],
  switch_downstream: ["switch_upstream"],
  pci_bridge: ["root_port", "switch_downstream", "pci_bridge"],
};

function crossCheck(
  path: string,
  d: Diagnostics,
  iommus: readonly IommuDescription[],
  pci: readonly PciBridgeDescription[],
  devices: readonly DeviceDescription[],
): void {
  const names = new Map<string, string>();
  const claim = (n: string, what: string, loc: InputLocation, p: string) => {
    const prev = names.get(n);
    if (prev) d.error(loc, p, `the name "${n}" is already used by ${prev}`);
    else names.set(n, what);
  };
  for (const i of iommus)
    claim(i.name, "an IOMMU", i.loc, childPath(childPath(path, "iommus"), i.name));
  for (const b of pci)
    claim(b.name, "a PCI bridge", b.loc, childPath(childPath(path, "pci"), b.name));
  for (const dev of devices) {
    claim(dev.name, "a device", dev.loc, childPath(childPath(path, "devices"), dev.name));
  }

  const bridges = new Map(pci.map((b) => [b.name, b]));
  const bridgeNames = pci.map((b) => b.name);
  /** The bridge `x` sits below (undefined: the host bridge); null, reported, for an unknown name. */
  const parentOf = (
    x: Located & { readonly parent: string | undefined },
    p: string,
  ): PciBridgeDescription | undefined | null => {
    if (x.parent === undefined) return undefined;
    const parent = bridges.get(x.parent);
    if (parent !== undefined) return parent;
    d.error(
      at(x, "parent"),
      childPath(p, "parent"),
      `unknown PCI bridge "${x.parent}"${suggest(x.parent, bridgeNames)}`,
    );
    return null;
  };
  // Occupied (slot, function) per secondary bus; "" is bus 0 of the host bridge.
  const occupied = new Map<string, Map<string, string>>();
  const place = (
    bus: string,
    slot: number,
    fn: number,
    who: string,
    loc: InputLocation,
    p: string,
  ) => {
    let m = occupied.get(bus);
    if (!m) {
      m = new Map();
      occupied.set(bus, m);
    }
    const key = `${slot}.${fn}`;
    const prev = m.get(key);
    if (prev)
      d.error(
        loc,
        p,
        `slot ${slot} function ${fn} on ${bus || "bus 0"} is already taken by ${prev}`,
      );
    else m.set(key, who);
  };

  const placeable: PciBridgeDescription[] = [];
  for (const b of pci) {
    const p = childPath(childPath(path, "pci"), b.name);
    const parent = parentOf(b, p);
    if (parent === null) continue;
    if (!BRIDGE_PARENTS[b.type].includes(parent?.type)) {
      const allowed = BRIDGE_PARENTS[b.type]
        .map((t) => t ?? "the host bridge (no parent)")
        .join(" or ");
      d.error(b.loc, p, `a ${b.type} must sit below ${allowed}`);
      continue;
    }
    if (parent && (parent.type === "root_port" || parent.type === "switch_downstream")) {
      // A PCIe downstream port's link leads to exactly one device number: 0.
      if (b.slot !== 0) {
        d.error(at(b, "slot"), childPath(p, "slot"), `below a ${parent.type} only slot 0 exists`);
        continue;
      }
    }
    if (b.acs && b.type === "switch_upstream") {
      d.error(
        at(b, "acs"),
        childPath(p, "acs"),
        "a switch upstream port has no ACS capability (ACS is on downstream ports)",
      );
    }
    if (b.part !== undefined && b.type !== "pci_bridge") {
      d.error(at(b, "part"), childPath(p, "part"), "only pci_bridge entries can name a part");
    }
    if (b.externalFacing && b.type !== "root_port") {
      d.error(
        at(b, "external_facing"),
        childPath(p, "external_facing"),
        "only root ports are marked external-facing by firmware",
      );
    }
    placeable.push(b);
  }
  // A device always has a function 0: root ports sharing a slot are functions of one device.
  const bridgeSlots = new Map<string, PciBridgeDescription[]>();
  for (const b of placeable) {
    const key = `${b.parent ?? ""}/${b.slot}`;
    bridgeSlots.set(key, [...(bridgeSlots.get(key) ?? []), b]);
  }
  for (const fns of bridgeSlots.values()) {
    if (!fns.some((b) => b.function === 0)) {
      const b = fns[0]!;
      d.error(
        at(b, "function"),
        childPath(childPath(childPath(path, "pci"), b.name), "function"),
        `slot ${b.slot} below ${b.parent ?? "the host bridge"} has no function 0 (a PCI device always has one)`,
      );
    }
  }
  for (const b of placeable) {
    place(
      b.parent ?? "",
      b.slot,
      b.function,
      `bridge ${b.name}`,
      b.loc,
      childPath(childPath(path, "pci"), b.name),
    );
  }
  if (detectBridgeCycle(pci, d, path)) return;

  const iommuNames = iommus.map((i) => i.name);
  const rootPortIommu = new Map<string, { iommu: string | null; dev: string }>();
  for (const dev of devices) {
    const p = childPath(childPath(path, "devices"), dev.name);
    if (dev.iommu !== null && !iommuNames.includes(dev.iommu)) {
      d.error(
        at(dev, "iommu"),
        childPath(p, "iommu"),
        `unknown IOMMU "${dev.iommu}"${suggest(dev.iommu, iommuNames)}`,
      );
    }
    if (dev.bus === "platform") {
      if (dev.endpoint !== "none") {
        d.error(
          at(dev, "endpoint"),
          childPath(p, "endpoint"),
          "device models sit on PCI functions (their DMA goes through a PCI IO bridge); a platform device has none",
        );
      }
      continue;
    }
    const parent = parentOf(dev, p);
    if (parent === null) continue;
    if (parent?.type === "switch_upstream") {
      d.error(
        at(dev, "parent"),
        childPath(p, "parent"),
        "devices sit below switch downstream ports, not the upstream port",
      );
      continue;
    }
    if (
      parent &&
      (parent.type === "root_port" || parent.type === "switch_downstream") &&
      dev.slot !== 0
    ) {
      d.error(at(dev, "slot"), childPath(p, "slot"), `below a ${parent.type} only slot 0 exists`);
    }
    place(dev.parent ?? "", dev.slot, dev.function, `device ${dev.name}`, dev.loc, p);
    if (dev.pri && !dev.ats)
      d.error(
        at(dev, "pri"),
        childPath(p, "pri"),
        "PRI needs ATS (page requests follow ATS translation failures)",
      );
    // All functions below one root port reach the same IOMMU (it sits behind the root complex).
    const rp = rootPortOf(dev.parent, bridges);
    if (rp !== undefined) {
      const prev = rootPortIommu.get(rp);
      if (prev && prev.iommu !== dev.iommu) {
        d.error(
          at(dev, "iommu"),
          childPath(p, "iommu"),
          `every device below root port ${rp} must use the same IOMMU (${prev.dev} uses ${prev.iommu ?? "none"})`,
        );
      } else if (!prev) rootPortIommu.set(rp, { iommu: dev.iommu, dev: dev.name });
    }
  }
  // A DMA alias names a devfn on the same bus (it need not exist: quirks alias to phantom functions).
  for (const dev of devices) {
    if (dev.bus !== "pci") continue;
    const p = childPath(childPath(path, "devices"), dev.name);
    dev.dmaAliases.forEach((a, i) => {
      if (a.slot === dev.slot && a.function === dev.function) {
        d.error(
          at(dev, "dma_alias"),
          childPath(childPath(p, "dma_alias"), i),
          "a device cannot be its own DMA alias",
        );
      }
    });
    const parent = dev.parent === undefined ? undefined : bridges.get(dev.parent);
    if (parent?.type === "pci_bridge") {
      // Below a PCIe-to-PCI bridge the bus is conventional PCI: no PCI Express capabilities.
      for (const [field, on] of [
        ["pasid_bits", dev.pasidBits > 0],
        ["ats", dev.ats],
        ["pri", dev.pri],
        ["acs", dev.acs !== null],
      ] as const) {
        if (on)
          d.error(
            at(dev, field),
            childPath(p, field),
            "a conventional PCI device (below a pci_bridge) has no PCI Express capabilities",
          );
      }
    }
    if (!dev.present && parent?.type !== "root_port" && parent?.type !== "switch_downstream") {
      d.error(
        at(dev, "present"),
        childPath(p, "present"),
        "only a device below a root port or switch downstream port can be hot-plugged",
      );
    }
  }
  checkSlots(path, d, devices);
  checkDrivers(path, d, devices);
  for (const i of iommus) {
    if (i.options.driver !== "mock") continue;
    i.options.mock.faultInjection.forEach((f, n) => {
      if (f.dev !== undefined && !devices.some((x) => x.name === f.dev)) {
        const p = childPath(
          childPath(childPath(childPath(path, "iommus"), i.name), "options"),
          "fault_injection",
        );
        d.error(
          at(i, "options"),
          childPath(childPath(p, n), "dev"),
          `unknown device "${f.dev}"${suggest(
            f.dev,
            devices.map((x) => x.name),
          )}`,
        );
      }
    });
  }
}

/** The functions of one PCI slot form one device: function 0 exists, all share presence and IOMMU. */
function checkSlots(path: string, d: Diagnostics, devices: readonly DeviceDescription[]): void {
  const slots = new Map<string, PciFunctionDescription[]>();
  for (const dev of devices) {
    if (dev.bus !== "pci") continue;
    const key = `${dev.parent ?? ""}/${dev.slot}`;
    const list = slots.get(key);
    if (list) list.push(dev);
    else slots.set(key, [dev]);
  }
  for (const fns of slots.values()) {
    const first = fns[0]!;
    const p = (x: PciFunctionDescription) => childPath(childPath(path, "devices"), x.name);
    if (!fns.some((f) => f.function === 0)) {
      d.error(
        at(first, "function"),
        childPath(p(first), "function"),
        `slot ${first.slot} below ${first.parent ?? "the host bridge"} has no function 0 (a PCI device always has one)`,
      );
    }
    for (const f of fns.slice(1)) {
      if (f.present !== first.present) {
        d.error(
          at(f, "present"),
          childPath(p(f), "present"),
          `the functions of one device are plugged together (${first.name} is ${first.present ? "" : "not "}present)`,
        );
      }
      if (f.iommu !== first.iommu) {
        d.error(
          at(f, "iommu"),
          childPath(p(f), "iommu"),
          `the functions of one device share an IOMMU (${first.name} uses ${first.iommu ?? "none"})`,
        );
      }
    }
  }
}

/** A driver name means one driver: every device naming it agrees on driver_managed_dma. */
function checkDrivers(path: string, d: Diagnostics, devices: readonly DeviceDescription[]): void {
  const seen = new Map<string, DeviceDescription>();
  for (const dev of devices) {
    if (dev.driver === null) continue;
    const known = Object.hasOwn(DEVICE_DRIVERS, dev.driver.name)
      ? DEVICE_DRIVERS[dev.driver.name]!
      : undefined;
    const where = childPath(childPath(childPath(path, "devices"), dev.name), "driver");
    if (known !== undefined && dev.bus !== "pci") {
      d.error(at(dev, "driver"), where, `${dev.driver.name} is a PCI driver`);
    } else if (known?.endpoint != null && dev.endpoint !== known.endpoint) {
      d.error(
        at(dev, "driver"),
        where,
        `the ${dev.driver.name} driver drives an "endpoint: ${known.endpoint}" device (${dev.name} has "${dev.endpoint}")`,
      );
    }
    const key = `${dev.bus}/${dev.driver.name}`;
    const prev = seen.get(key);
    if (!prev) seen.set(key, dev);
    else if (prev.driver!.driverManagedDma !== dev.driver.driverManagedDma) {
      d.error(
        at(dev, "driver"),
        childPath(childPath(childPath(path, "devices"), dev.name), "driver"),
        `driver ${dev.driver.name} is declared with driver_managed_dma ${prev.driver!.driverManagedDma} by ${prev.name}`,
      );
    }
  }
}

function rootPortOf(
  parent: string | undefined,
  bridges: ReadonlyMap<string, PciBridgeDescription>,
): string | undefined {
  let cur = parent === undefined ? undefined : bridges.get(parent);
  while (cur) {
    if (cur.type === "root_port") return cur.name;
    cur = cur.parent === undefined ? undefined : bridges.get(cur.parent);
  }
  return undefined;
}

function detectBridgeCycle(
  pci: readonly PciBridgeDescription[],
  d: Diagnostics,
  path: string,
): boolean {
  const byName = new Map(pci.map((b) => [b.name, b]));
  for (const b of pci) {
    const seen = new Set<string>([b.name]);
    let cur = b.parent === undefined ? undefined : byName.get(b.parent);
    while (cur) {
      if (seen.has(cur.name)) {
        d.error(
          b.loc,
          childPath(childPath(path, "pci"), b.name),
          "the bridges' parents form a loop",
        );
        return true;
      }
      seen.add(cur.name);
      cur = cur.parent === undefined ? undefined : byName.get(cur.parent);
    }
  }
  return false;
}

/**
 * The description with every IOMMU instance running `driver`; the instances' options are read
 * again for that driver (options written for another driver are an error).
 */
export function withIommuDriver(desc: MachineDescription, driver: string): MachineDescription {
  const d = new Diagnostics();
  const iommus = desc.iommus.map((i) => {
    if (i.driver === driver) return i;
    const path = childPath("iommus", i.name);
    const options = readIommuOptions(
      driver,
      i.optionsNode,
      childPath(path, "options"),
      d,
      at(i, "driver"),
    );
    const fits = fitsDriver(driver, i.pasidBits, i.pageSizesGiven, (k) => at(i, k), path, d);
    return options && fits ? { ...i, driver: driver as IommuDriverName, options } : i;
  });
  d.throwIfAny();
  return { ...desc, iommus };
}

/** Field names of every part of a description (docs/machine-description.md must cover them). */
export const DESCRIPTION_FIELDS: Readonly<Record<string, readonly string[]>> = {
  machine: TOP_FIELDS,
  memory: memoryFields.fields,
  "memory.regions[]": regionFields.fields,
  boot: bootFields.fields,
  "iommus.<name>": readIommuFields.fields,
  "pci.<name>": readBridgeFields.fields,
  acs: acsFields.fields,
  "devices.<name> (pci)": readPciFields.fields,
  "devices.<name> (platform)": readPlatformFields.fields,
  "reserved_regions[]": resvFields.fields,
  driver: driverFields.fields,
};
