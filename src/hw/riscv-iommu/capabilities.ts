// The `capabilities` register, chosen per IOMMU instance at construction, and the
// implementation parameters the specification leaves to the implementation (cache sizes,
// vectors, QoS ID widths, the ATS invalidation timeout).

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { PA_BITS } from "../memory.js";

/** Fields of `capabilities`, named as the specification names them. */
export interface IommuCapabilities {
  /** Major version in the high nibble, minor in the low one: 0x10 is version 1.0. */
  readonly version: number;
  readonly Sv39: boolean;
  readonly Sv48: boolean;
  readonly Sv57: boolean;
  readonly Svrsw60t59b: boolean;
  readonly Svpbmt: boolean;
  readonly Sv39x4: boolean;
  readonly Sv48x4: boolean;
  readonly Sv57x4: boolean;
  /** Extended-format (64-byte) device contexts with MSI page-table fields. */
  readonly MSI_FLAT: boolean;
  readonly AMO_HWAD: boolean;
  /** PCIe ATS and PRI; also gives the page-request queue. */
  readonly ATS: boolean;
  readonly T2GPA: boolean;
  /** Both endiannesses (`fctl.BE` writable); when false the IOMMU is little-endian only. */
  readonly END: boolean;
  readonly IGS: "MSI" | "WSI" | "BOTH";
  readonly DBG: boolean;
  /** Physical address size in bits. */
  readonly PAS: number;
  readonly PD8: boolean;
  readonly PD17: boolean;
  readonly PD20: boolean;
  readonly QOSID: boolean;
  /** Non-leaf PTE invalidation extension (`NL` operand of IOTINVAL). */
  readonly NL: boolean;
  /** Address range invalidation extension (`S` operand of IOTINVAL). */
  readonly S: boolean;
}

/**
 * Not modelled and always 0: Sv32, Sv32x4 (so `fctl.GXL` is read-only 0), AMO_MRIF, MSI_MRIF
 * and HPM.
 */
export const DEFAULT_CAPABILITIES: IommuCapabilities = Object.freeze({
  version: 0x10,
  Sv39: true,
  Sv48: true,
  Sv57: true,
  Svrsw60t59b: false,
  Svpbmt: true,
  Sv39x4: true,
  Sv48x4: true,
  Sv57x4: true,
  MSI_FLAT: false,
  AMO_HWAD: true,
  ATS: true,
  T2GPA: true,
  END: false,
  IGS: "BOTH",
  DBG: true,
  PAS: 56,
  PD8: true,
  PD17: true,
  PD20: true,
  QOSID: false,
  NL: false,
  S: false,
});

export interface IommuConfig {
  readonly capabilities?: Partial<IommuCapabilities>;
  /** Interrupt vectors (1, 2, 4, 8 or 16): the writable width of each `icvec` field. */
  readonly vectors?: number;
  /** IOTLB entries (default 4096). */
  readonly iotlbEntries?: number;
  /** Device-context cache entries (default 256). */
  readonly ddtCacheEntries?: number;
  /** Process-context cache entries (default 1024). */
  readonly pdtCacheEntries?: number;
  /** Virtual time after which an ATS invalidation without completion times out (PCIe: 1 min). */
  readonly atsInvalidationTimeoutNs?: number;
  /** Widths of RCID and MCID when QOSID is 1 (default 12 each). */
  readonly rcidBits?: number;
  readonly mcidBits?: number;
}

/** A configuration with every default filled in and checked. */
export interface ResolvedIommuConfig {
  readonly caps: IommuCapabilities;
  readonly vectors: number;
  readonly iotlbEntries: number;
  readonly ddtCacheEntries: number;
  readonly pdtCacheEntries: number;
  readonly atsInvalidationTimeoutNs: number;
  readonly rcidBits: number;
  readonly mcidBits: number;
}

export function resolveConfig(config: IommuConfig = {}): ResolvedIommuConfig {
  const given = config.capabilities ?? {};
  for (const key of Object.keys(given)) {
    if (!(key in DEFAULT_CAPABILITIES)) {
      throw new SimError(`unknown or unmodelled RISC-V IOMMU capability "${key}"`);
    }
  }
  const caps: IommuCapabilities = Object.freeze({ ...DEFAULT_CAPABILITIES, ...given });
  if (!Number.isInteger(caps.version) || caps.version < 0 || caps.version > 0xff) {
    throw new SimError(`capabilities.version ${caps.version} is not an 8-bit value`);
  }
  if (caps.Sv48 && !caps.Sv39) throw new SimError("capabilities: Sv48 requires Sv39");
  if (caps.Sv57 && !caps.Sv48) throw new SimError("capabilities: Sv57 requires Sv48");
  if (!Number.isInteger(caps.PAS) || caps.PAS < 32 || caps.PAS > PA_BITS) {
    throw new SimError(`capabilities.PAS ${caps.PAS} is not within [32, ${PA_BITS}]`);
  }
  if (!["MSI", "WSI", "BOTH"].includes(caps.IGS)) {
    throw new SimError(`capabilities.IGS "${caps.IGS}" is not MSI, WSI or BOTH`);
  }
  if (caps.T2GPA && !caps.ATS) throw new SimError("capabilities: T2GPA requires ATS");
  const vectors = config.vectors ?? 16;
  if (![1, 2, 4, 8, 16].includes(vectors)) {
    throw new SimError(`vectors ${vectors} is not 1, 2, 4, 8 or 16`);
  }
  const resolved: ResolvedIommuConfig = {
    caps,
    vectors,
    iotlbEntries: positive(config.iotlbEntries ?? 4096, "iotlbEntries"),
    ddtCacheEntries: positive(config.ddtCacheEntries ?? 256, "ddtCacheEntries"),
    pdtCacheEntries: positive(config.pdtCacheEntries ?? 1024, "pdtCacheEntries"),
    atsInvalidationTimeoutNs: positive(
      config.atsInvalidationTimeoutNs ?? 60_000_000_000,
      "atsInvalidationTimeoutNs",
    ),
    rcidBits: width(config.rcidBits ?? 12, "rcidBits"),
    mcidBits: width(config.mcidBits ?? 12, "mcidBits"),
  };
  return Object.freeze(resolved);
}

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new SimError(`${what} ${n} is not a positive integer`);
  return n;
}

function width(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 12) throw new SimError(`${what} ${n} is not in [0, 12]`);
  return n;
}

const IGS_ENCODING = { MSI: 0, WSI: 1, BOTH: 2 } as const;

/** The register's value as low and high 32-bit halves. */
export function encodeCapabilities(c: IommuCapabilities): { lo: number; hi: number } {
  let lo = c.version & 0xff;
  lo |= (c.Sv39 ? 1 : 0) << 9;
  lo |= (c.Sv48 ? 1 : 0) << 10;
  lo |= (c.Sv57 ? 1 : 0) << 11;
  lo |= (c.Svrsw60t59b ? 1 : 0) << 14;
  lo |= (c.Svpbmt ? 1 : 0) << 15;
  lo |= (c.Sv39x4 ? 1 : 0) << 17;
  lo |= (c.Sv48x4 ? 1 : 0) << 18;
  lo |= (c.Sv57x4 ? 1 : 0) << 19;
  lo |= (c.MSI_FLAT ? 1 : 0) << 22;
  lo |= (c.AMO_HWAD ? 1 : 0) << 24;
  lo |= (c.ATS ? 1 : 0) << 25;
  lo |= (c.T2GPA ? 1 : 0) << 26;
  lo |= (c.END ? 1 : 0) << 27;
  lo |= IGS_ENCODING[c.IGS] << 28;
  lo |= (c.DBG ? 1 : 0) << 31;
  let hi = c.PAS & 0x3f;
  hi |= (c.PD8 ? 1 : 0) << 6;
  hi |= (c.PD17 ? 1 : 0) << 7;
  hi |= (c.PD20 ? 1 : 0) << 8;
  hi |= (c.QOSID ? 1 : 0) << 9;
  hi |= (c.NL ? 1 : 0) << 10;
  hi |= (c.S ? 1 : 0) << 11;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

export function capabilitiesJson(c: IommuCapabilities): Json {
  return { ...c };
}
