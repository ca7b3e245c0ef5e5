// The builder's option types (what a machine description says about each node) and their
// validation into the capability descriptions the hardware lays out. Misuse is a SimError naming
// the node and the offending option.

import { SimError } from "../../base/errors.js";
import type { AcsCapDesc, AtsCapDesc, PasidCapDesc, PriCapDesc } from "./capabilities.js";
import { isPciPartName, type PciPartName } from "./catalog.js";
import {
  PCI_ACS_CR,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
} from "./regs.js";

export type AcsBit = "sv" | "tb" | "rr" | "cr" | "uf" | "ec" | "dt";

export const ACS_BITS: Readonly<Record<AcsBit, number>> = {
  sv: PCI_ACS_SV,
  tb: PCI_ACS_TB,
  rr: PCI_ACS_RR,
  cr: PCI_ACS_CR,
  uf: PCI_ACS_UF,
  ec: PCI_ACS_EC,
  dt: PCI_ACS_DT,
};

/**
 * An ACS capability: `true` implements SV, TB, RR, CR, UF and DT; a list names the implemented
 * controls; the object form also says which controls firmware left enabled and the egress
 * control vector size. Controls start disabled unless `enabled` says otherwise.
 */
export type AcsSpec =
  | boolean
  | readonly AcsBit[]
  | {
      readonly capabilities: readonly AcsBit[];
      readonly enabled?: readonly AcsBit[];
      readonly egressVectorSize?: number;
    };

export type AtsSpec =
  | boolean
  | {
      /** Invalidate Queue Depth, 1..32 (default 32). */
      readonly queueDepth?: number;
      readonly pageAligned?: boolean;
      readonly globalInvalidate?: boolean;
    };

export type PriSpec =
  | boolean
  | {
      /** Outstanding Page Request Capacity (default 32). */
      readonly capacity?: number;
      /** PRG Response PASID Required (default true when the function has PASID). */
      readonly pasidRequired?: boolean;
    };

/** `true` or a width (0..20) or the full form; default width 20, both features supported. */
export type PasidSpec =
  | boolean
  | number
  | { readonly width?: number; readonly exec?: boolean; readonly priv?: boolean };

/** One function of an endpoint device. */
export interface PciFunctionOptions {
  readonly name?: string;
  /** Function number 0..7 (default: the next free one). */
  readonly function?: number;
  /** A known part from the catalog: sets IDs and its bus behaviour. */
  readonly part?: PciPartName;
  readonly vendorId?: number;
  readonly deviceId?: number;
  /** 24-bit class code (base class, subclass, programming interface). */
  readonly classCode?: number;
  readonly revision?: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  /** Sizes of 32-bit memory BARs: powers of two from 4 KiB; firmware assigns the addresses. */
  readonly bars?: readonly (bigint | number)[];
  readonly acs?: AcsSpec;
  readonly ats?: AtsSpec;
  readonly pri?: PriSpec;
  readonly pasid?: PasidSpec;
  /** End-End TLP Prefix support (`true` = 4 prefixes); default: supported when PASID is. */
  readonly eePrefix?: boolean | number;
  /** Other devfns on this bus that the function also tags its requests with (hardware bug). */
  readonly dmaAliases?: readonly number[];
}

/** An endpoint device: one function (the top-level fields) or several (`functions`). */
export interface PciEndpointOptions extends PciFunctionOptions {
  /** Device number 0..31 (on a PCIe link it must be 0; default: lowest free, from 1 on the root bus). */
  readonly slot?: number;
  /** A PCI Express Legacy Endpoint instead of an Endpoint. */
  readonly legacy?: boolean;
  /** The functions of a multi-function device; function 0 is required. */
  readonly functions?: readonly PciFunctionOptions[];
}

export interface PciHotplugSpec {
  /** Bus numbers firmware reserves below the port for hot-added bridges (default 8). */
  readonly buses?: number;
  /** Memory window firmware reserves below the port for hot-added BARs (default 32 MiB). */
  readonly mmio?: bigint;
}

/** A root port or a switch downstream port. */
export interface PciPortOptions {
  readonly name?: string;
  readonly slot?: number;
  readonly function?: number;
  readonly vendorId?: number;
  readonly deviceId?: number;
  readonly acs?: AcsSpec;
  /** End-End TLP Prefix support (`true` = 4 prefixes); default true. */
  readonly eePrefix?: boolean | number;
  /** A hot-plug capable slot, with what firmware reserves for it. */
  readonly hotplug?: boolean | PciHotplugSpec;
  /** Firmware marks the root port external-facing (ACPI ExternalFacingPort); root ports only. */
  readonly externalFacing?: boolean;
}

export interface PciSwitchOptions {
  readonly name?: string;
  readonly upstream?: {
    readonly name?: string;
    readonly vendorId?: number;
    readonly deviceId?: number;
    readonly eePrefix?: boolean | number;
  };
  /** Number of downstream ports (default 2) or their descriptions. */
  readonly downstream?: number | readonly PciPortOptions[];
}

/** A PCIe-to-PCI bridge (on a PCIe link) or a conventional PCI-to-PCI bridge (on a PCI bus). */
export interface PciBridgeOptions {
  readonly name?: string;
  readonly slot?: number;
  readonly part?: PciPartName;
  readonly vendorId?: number;
  readonly deviceId?: number;
  /** PCIe-to-PCI bridges only: false models a part that hides its PCI Express capability. */
  readonly pcieCapability?: boolean;
}

export interface PciHostOptions {
  readonly name?: string;
  readonly segment?: number;
  /** Root bus number (default 0). */
  readonly rootBus?: number;
  /** The memory aperture firmware assigns BARs and bridge windows from (32-bit). */
  readonly mmio?: { readonly base: bigint; readonly size: bigint };
  /** Physical base of the ECAM window (for the views; default 0x3000_0000). */
  readonly ecamBase?: bigint;
  /** The root complex routes requests peer-to-peer between root ports (subject to their ACS). */
  readonly peerToPeer?: boolean;
}

/** Throws if `obj` has keys outside `allowed`. */
export function checkKeys(obj: object, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new SimError(`${where}: unknown option "${k}" (expected one of ${allowed.join(", ")})`);
    }
  }
}

export function checkInt(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new SimError(`${what} ${v} is not an integer in [${min}, ${max}]`);
  }
  return v;
}

export function checkPart(part: string | undefined, where: string): PciPartName | undefined {
  if (part === undefined) return undefined;
  if (!isPciPartName(part)) throw new SimError(`${where}: unknown part "${part}"`);
  return part;
}

function acsMask(bits: readonly AcsBit[], where: string): number {
  let m = 0;
  for (const b of bits) {
    const v = ACS_BITS[b];
    if (v === undefined) throw new SimError(`${where}: unknown ACS control "${b}"`);
    m |= v;
  }
  return m;
}

export function acsDesc(spec: AcsSpec | undefined, where: string): AcsCapDesc | null {
  if (spec === undefined || spec === false) return null;
  if (spec === true) {
    return {
      capabilities: PCI_ACS_SV | PCI_ACS_TB | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF | PCI_ACS_DT,
      control: 0,
      egressVectorSize: 0,
    };
  }
  if (Array.isArray(spec)) {
    const caps = acsMask(spec as readonly AcsBit[], where);
    return { capabilities: caps, control: 0, egressVectorSize: caps & PCI_ACS_EC ? 32 : 0 };
  }
  const o = spec as Exclude<AcsSpec, boolean | readonly AcsBit[]>;
  checkKeys(o, ["capabilities", "enabled", "egressVectorSize"], `${where} acs`);
  const caps = acsMask(o.capabilities, where);
  const ctrl = acsMask(o.enabled ?? [], where);
  if ((ctrl & ~caps) !== 0) {
    throw new SimError(`${where}: ACS controls enabled that the capability does not implement`);
  }
  let vec = 0;
  if (caps & PCI_ACS_EC)
    vec = checkInt(o.egressVectorSize ?? 32, 1, 32, `${where} ACS egress vector size`);
  else if (o.egressVectorSize !== undefined) {
    throw new SimError(`${where}: egressVectorSize needs the "ec" ACS capability`);
  }
  return { capabilities: caps, control: ctrl, egressVectorSize: vec };
}

export function atsDesc(spec: AtsSpec | undefined, where: string): AtsCapDesc | null {
  if (spec === undefined || spec === false) return null;
  const o = spec === true ? {} : spec;
  checkKeys(o, ["queueDepth", "pageAligned", "globalInvalidate"], `${where} ats`);
  return {
    queueDepth: checkInt(o.queueDepth ?? 32, 1, 32, `${where} ATS invalidate queue depth`),
    pageAligned: o.pageAligned ?? true,
    globalInvalidate: o.globalInvalidate ?? false,
  };
}

export function priDesc(
  spec: PriSpec | undefined,
  hasPasid: boolean,
  where: string,
): PriCapDesc | null {
  if (spec === undefined || spec === false) return null;
  const o = spec === true ? {} : spec;
  checkKeys(o, ["capacity", "pasidRequired"], `${where} pri`);
  return {
    capacity: checkInt(o.capacity ?? 32, 0, 0xffff_ffff, `${where} PRI capacity`),
    pasidRequired: o.pasidRequired ?? hasPasid,
  };
}

export function pasidDesc(spec: PasidSpec | undefined, where: string): PasidCapDesc | null {
  if (spec === undefined || spec === false) return null;
  if (spec === true) return { width: 20, exec: true, priv: true };
  if (typeof spec === "number") {
    return { width: checkInt(spec, 0, 20, `${where} PASID width`), exec: true, priv: true };
  }
  checkKeys(spec, ["width", "exec", "priv"], `${where} pasid`);
  return {
    width: checkInt(spec.width ?? 20, 0, 20, `${where} PASID width`),
    exec: spec.exec ?? true,
    priv: spec.priv ?? true,
  };
}

/** Max End-End TLP Prefixes (0 = unsupported). */
export function eePrefixMax(
  spec: boolean | number | undefined,
  dflt: boolean,
  where: string,
): number {
  const v = spec ?? dflt;
  if (v === true) return 4;
  if (v === false) return 0;
  return checkInt(v, 0, 4, `${where} End-End TLP prefixes`);
}

/** BAR sizes as numbers: powers of two from 4 KiB to 1 GiB (32-bit memory BARs). */
export function barSizes(bars: readonly (bigint | number)[] | undefined, where: string): number[] {
  const out: number[] = [];
  for (const b of bars ?? []) {
    const n = typeof b === "bigint" ? Number(b) : b;
    if (!Number.isInteger(n) || n < 4096 || n > 1 << 30 || (n & (n - 1)) !== 0) {
      throw new SimError(`${where}: BAR size ${b} is not a power of two from 4 KiB to 1 GiB`);
    }
    out.push(n);
  }
  if (out.length > 6) throw new SimError(`${where}: ${out.length} BARs (at most 6)`);
  return out;
}
