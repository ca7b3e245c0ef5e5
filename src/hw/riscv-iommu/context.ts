// Device contexts (DC) and process contexts (PC): their formats, the configuration checks of
// "Device-context configuration checks" and "Process-context configuration checks", and the
// walks of the device-directory table ("Process to locate the Device-context") and of the
// process-directory table ("Process to locate the Process-context").

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";
import type { IommuCapabilities } from "./capabilities.js";
import { FAULTS, type IommuFault } from "./faults.js";
import { ACCESS_CORRUPT, ACCESS_OK, type ImplicitMemory } from "./implicit-memory.js";

const TWO32 = 0x1_0000_0000;

/** `iosatp.MODE` / `PC.fsc.MODE` / `iohgatp.MODE` encodings used here (SXL = GXL = 0). */
export const ATP_MODE = { Bare: 0, Sv39: 8, Sv48: 9, Sv57: 10 } as const;
export const IOHGATP_MODE = { Bare: 0, Sv39x4: 8, Sv48x4: 9, Sv57x4: 10 } as const;
export const PDTP_MODE = { Bare: 0, PD8: 1, PD17: 2, PD20: 3 } as const;
export const MSIPTP_MODE = { Off: 0, Flat: 1 } as const;

const ATP_NAMES: Record<number, string> = { 0: "Bare", 8: "Sv39", 9: "Sv48", 10: "Sv57" };
const IOHGATP_NAMES: Record<number, string> = { 0: "Bare", 8: "Sv39x4", 9: "Sv48x4", 10: "Sv57x4" };
const PDTP_NAMES: Record<number, string> = { 0: "Bare", 1: "PD8", 2: "PD17", 3: "PD20" };

/** A PPN field at bits 43:0 of a doubleword held as halves. */
function ppn44(lo: number, hi: number): number {
  return lo + (hi & 0xfff) * TWO32;
}

/** A PPN field at bits 53:10 of a doubleword (directory entries). */
function ppn53(lo: number, hi: number): number {
  return (lo >>> 10) + (hi & 0x3f_ffff) * 0x40_0000;
}

/** A decoded, checked device context as the IOMMU caches it. */
export class DeviceContext {
  readonly deviceId: number;
  // tc
  readonly V: boolean;
  readonly EN_ATS: boolean;
  readonly EN_PRI: boolean;
  readonly T2GPA: boolean;
  readonly DTF: boolean;
  readonly PDTV: boolean;
  readonly PRPR: boolean;
  readonly GADE: boolean;
  readonly SADE: boolean;
  readonly DPE: boolean;
  readonly SBE: boolean;
  readonly SXL: boolean;
  // iohgatp
  readonly iohgatpMode: number;
  readonly gscid: number;
  readonly iohgatpPpn: number;
  // ta
  readonly pscid: number;
  readonly rcid: number;
  readonly mcid: number;
  // fsc: iosatp when PDTV is 0, pdtp when it is 1
  readonly fscMode: number;
  readonly fscPpn: number;
  // extended format
  readonly msiptpMode: number;
  readonly msiptpPpn: number;
  /** msi_addr_mask and msi_addr_pattern (52-bit page-number fields). */
  readonly msiAddrMask: number;
  readonly msiAddrPattern: number;
  /** The raw doublewords as 32-bit halves (lo, hi, lo, hi, …). */
  readonly raw: readonly number[];

  constructor(deviceId: number, w: ArrayLike<number>, extended: boolean) {
    this.deviceId = deviceId;
    const tc = w[0]!;
    this.V = (tc & 1) !== 0;
    this.EN_ATS = (tc & 2) !== 0;
    this.EN_PRI = (tc & 4) !== 0;
    this.T2GPA = (tc & 8) !== 0;
    this.DTF = (tc & 0x10) !== 0;
    this.PDTV = (tc & 0x20) !== 0;
    this.PRPR = (tc & 0x40) !== 0;
    this.GADE = (tc & 0x80) !== 0;
    this.SADE = (tc & 0x100) !== 0;
    this.DPE = (tc & 0x200) !== 0;
    this.SBE = (tc & 0x400) !== 0;
    this.SXL = (tc & 0x800) !== 0;
    this.iohgatpPpn = ppn44(w[2]!, w[3]!);
    this.gscid = (w[3]! >>> 12) & 0xffff;
    this.iohgatpMode = w[3]! >>> 28;
    this.pscid = (w[4]! >>> 12) & 0xf_ffff;
    this.rcid = (w[5]! >>> 8) & 0xfff;
    this.mcid = (w[5]! >>> 20) & 0xfff;
    this.fscPpn = ppn44(w[6]!, w[7]!);
    this.fscMode = w[7]! >>> 28;
    this.msiptpPpn = extended ? ppn44(w[8]!, w[9]!) : 0;
    this.msiptpMode = extended ? w[9]! >>> 28 : 0;
    this.msiAddrMask = extended ? w[10]! + (w[11]! & 0xf_ffff) * TWO32 : 0;
    this.msiAddrPattern = extended ? w[12]! + (w[13]! & 0xf_ffff) * TWO32 : 0;
    this.raw = Array.from({ length: extended ? 16 : 8 }, (_, i) => w[i]! >>> 0);
  }

  /** True when second-stage translation is not Bare. */
  get gStage(): boolean {
    return this.iohgatpMode !== 0;
  }

  toJSON(): Json {
    const dw = (i: number) =>
      hex((BigInt(this.raw[2 * i + 1]!) << 32n) | BigInt(this.raw[2 * i]!), 16);
    const out: { [k: string]: Json } = {
      device_id: this.deviceId,
      tc: {
        V: this.V,
        EN_ATS: this.EN_ATS,
        EN_PRI: this.EN_PRI,
        T2GPA: this.T2GPA,
        DTF: this.DTF,
        PDTV: this.PDTV,
        PRPR: this.PRPR,
        GADE: this.GADE,
        SADE: this.SADE,
        DPE: this.DPE,
        SBE: this.SBE,
        SXL: this.SXL,
      },
      iohgatp: {
        MODE: IOHGATP_NAMES[this.iohgatpMode] ?? this.iohgatpMode,
        GSCID: this.gscid,
        PPN: hex(this.iohgatpPpn),
      },
      ta: { PSCID: this.pscid, RCID: this.rcid, MCID: this.mcid },
      fsc: this.PDTV
        ? { pdtp: { MODE: PDTP_NAMES[this.fscMode] ?? this.fscMode, PPN: hex(this.fscPpn) } }
        : { iosatp: { MODE: ATP_NAMES[this.fscMode] ?? this.fscMode, PPN: hex(this.fscPpn) } },
      raw: Array.from({ length: this.raw.length / 2 }, (_, i) => dw(i)),
    };
    if (this.raw.length > 8) {
      out.msiptp = { MODE: this.msiptpMode, PPN: hex(this.msiptpPpn) };
      out.msi_addr_mask = hex(this.msiAddrMask);
      out.msi_addr_pattern = hex(this.msiAddrPattern);
    }
    return out;
  }
}

/** A decoded, checked process context. */
export class ProcessContext {
  readonly deviceId: number;
  readonly processId: number;
  readonly V: boolean;
  readonly ENS: boolean;
  readonly SUM: boolean;
  readonly pscid: number;
  readonly fscMode: number;
  readonly fscPpn: number;
  readonly raw: readonly number[];

  constructor(deviceId: number, processId: number, w: ArrayLike<number>) {
    this.deviceId = deviceId;
    this.processId = processId;
    this.V = (w[0]! & 1) !== 0;
    this.ENS = (w[0]! & 2) !== 0;
    this.SUM = (w[0]! & 4) !== 0;
    this.pscid = (w[0]! >>> 12) & 0xf_ffff;
    this.fscPpn = ppn44(w[2]!, w[3]!);
    this.fscMode = w[3]! >>> 28;
    this.raw = [w[0]! >>> 0, w[1]! >>> 0, w[2]! >>> 0, w[3]! >>> 0];
  }

  toJSON(): Json {
    return {
      device_id: this.deviceId,
      process_id: this.processId,
      ta: { V: this.V, ENS: this.ENS, SUM: this.SUM, PSCID: this.pscid },
      fsc: { MODE: ATP_NAMES[this.fscMode] ?? this.fscMode, PPN: hex(this.fscPpn) },
    };
  }
}

/** What the checks and walks read from the IOMMU's configuration. */
export interface ContextEnv {
  readonly caps: IommuCapabilities;
  readonly mem: ImplicitMemory;
  /** `fctl.BE` */
  readonly be: boolean;
  /** `fctl.GXL` */
  readonly gxl: boolean;
  readonly rcidBits: number;
  readonly mcidBits: number;
}

function firstStageModeSupported(caps: IommuCapabilities, sxl: boolean, mode: number): boolean {
  // "Encodings of iosatp.MODE": with SXL=1 only Bare and Sv32 exist, and Sv32 is not modelled.
  if (mode === ATP_MODE.Bare) return true;
  if (sxl) return false;
  return (
    (mode === ATP_MODE.Sv39 && caps.Sv39) ||
    (mode === ATP_MODE.Sv48 && caps.Sv48) ||
    (mode === ATP_MODE.Sv57 && caps.Sv57)
  );
}

function gStageModeSupported(caps: IommuCapabilities, gxl: boolean, mode: number): boolean {
  if (mode === IOHGATP_MODE.Bare) return true;
  if (gxl) return false; // Sv32x4 is not modelled
  return (
    (mode === IOHGATP_MODE.Sv39x4 && caps.Sv39x4) ||
    (mode === IOHGATP_MODE.Sv48x4 && caps.Sv48x4) ||
    (mode === IOHGATP_MODE.Sv57x4 && caps.Sv57x4)
  );
}

/** Largest guest physical address width (MGPAW) of "MSI address mask and pattern". */
function mgpaw(caps: IommuCapabilities): number {
  if (caps.Sv57x4) return 59;
  if (caps.Sv48x4) return 50;
  if (caps.Sv39x4) return 41;
  return caps.PAS;
}

/**
 * The first failed rule of "Device-context configuration checks" for a DC with V=1, as a short
 * reason, or null when the DC is well configured. `w` holds the doublewords as halves.
 */
export function dcMisconfiguration(
  dc: DeviceContext,
  w: ArrayLike<number>,
  env: ContextEnv,
): string | null {
  const caps = env.caps;
  // 1. Reserved bits and encodings.
  if ((w[0]! & 0x00ff_f000) !== 0 || w[1]! !== 0) return "tc reserved bits set";
  if ((w[4]! & 0xfff) !== 0 || (w[5]! & 0xff) !== 0) return "ta reserved bits set";
  if (!caps.QOSID && (w[5]! & 0xffff_ff00) !== 0) return "ta.RCID/MCID set without QOSID";
  if ((w[7]! & 0x0fff_f000) !== 0) return "fsc reserved bits set";
  if (caps.MSI_FLAT) {
    if ((w[9]! & 0x0fff_f000) !== 0) return "msiptp reserved bits set";
    const top = mgpaw(caps) - 12; // page-number bits that may be set
    const hiBits = top >= 52 ? 0xf_ffff : 2 ** Math.max(0, top - 32) - 1;
    if (top < 32 ? w[10]! >>> top !== 0 || w[11]! !== 0 : (w[11]! & ~hiBits) !== 0) {
      return "msi_addr_mask reserved bits set";
    }
    if (top < 32 ? w[12]! >>> top !== 0 || w[13]! !== 0 : (w[13]! & ~hiBits) !== 0) {
      return "msi_addr_pattern reserved bits set";
    }
    if (w[14]! !== 0 || w[15]! !== 0) return "reserved doubleword set";
  }
  // 2.-7. ATS, PRI and T2GPA.
  if (!caps.ATS && (dc.EN_ATS || dc.EN_PRI || dc.PRPR)) return "EN_ATS/EN_PRI/PRPR without ATS";
  if (!dc.EN_ATS && dc.T2GPA) return "T2GPA without EN_ATS";
  if (!dc.EN_ATS && dc.EN_PRI) return "EN_PRI without EN_ATS";
  if (!dc.EN_PRI && dc.PRPR) return "PRPR without EN_PRI";
  if (!caps.T2GPA && dc.T2GPA) return "T2GPA not supported";
  if (dc.T2GPA && dc.iohgatpMode === IOHGATP_MODE.Bare) return "T2GPA with Bare iohgatp";
  // 8.-12. First-stage context.
  if (dc.PDTV) {
    const m = dc.fscMode;
    const ok =
      m === PDTP_MODE.Bare ||
      (m === PDTP_MODE.PD8 && caps.PD8) ||
      (m === PDTP_MODE.PD17 && caps.PD17) ||
      (m === PDTP_MODE.PD20 && caps.PD20);
    if (!ok) return `pdtp.MODE ${m} not supported`;
  } else {
    if (!firstStageModeSupported(caps, dc.SXL, dc.fscMode)) {
      return `iosatp.MODE ${dc.fscMode} not supported`;
    }
    if (dc.DPE) return "DPE with PDTV=0";
  }
  // 13.-15. Second stage.
  if (!gStageModeSupported(caps, env.gxl, dc.iohgatpMode)) {
    return `iohgatp.MODE ${dc.iohgatpMode} not supported`;
  }
  // 16. MSI page table pointer; and Off is required with a Bare iohgatp (recommended check).
  if (caps.MSI_FLAT) {
    if (dc.msiptpMode !== MSIPTP_MODE.Off && dc.msiptpMode !== MSIPTP_MODE.Flat) {
      return `msiptp.MODE ${dc.msiptpMode} not supported`;
    }
    if (dc.iohgatpMode === IOHGATP_MODE.Bare && dc.msiptpMode !== MSIPTP_MODE.Off) {
      return "msiptp.MODE not Off with Bare iohgatp";
    }
  }
  // 17. The second-stage root is 16 KiB and 16 KiB aligned.
  if (dc.iohgatpMode !== IOHGATP_MODE.Bare && dc.iohgatpPpn % 4 !== 0) {
    return "iohgatp.PPN not 16-KiB aligned";
  }
  // 18. Hardware A/D updating.
  if (!caps.AMO_HWAD && (dc.SADE || dc.GADE)) return "SADE/GADE without AMO_HWAD";
  // 19./21. SBE: with one endianness it must equal fctl.BE.
  if (!caps.END && dc.SBE !== env.be) return "SBE differs from fctl.BE";
  // 20. SXL: fctl.GXL is read-only 0 here, so SXL must be 0.
  if (env.gxl ? !dc.SXL : dc.SXL) return "SXL not a legal value";
  // 22. QoS ID widths.
  if (caps.QOSID && (dc.rcid >= 2 ** env.rcidBits || dc.mcid >= 2 ** env.mcidBits)) {
    return "RCID/MCID wider than supported";
  }
  return null;
}

/** "Process-context configuration checks" for a PC with V=1. */
export function pcMisconfiguration(
  pc: ProcessContext,
  w: ArrayLike<number>,
  dc: DeviceContext,
  caps: IommuCapabilities,
): string | null {
  if ((w[0]! & 0xff8) !== 0 || w[1]! !== 0) return "ta reserved bits set";
  if ((w[3]! & 0x0fff_f000) !== 0) return "fsc reserved bits set";
  if (!firstStageModeSupported(caps, dc.SXL, pc.fscMode)) {
    return `fsc.MODE ${pc.fscMode} not supported`;
  }
  return null;
}

/** Number of DDT levels of a `ddtp.iommu_mode` (2 = 1LVL … 4 = 3LVL). */
export function ddtLevels(mode: number): number {
  return mode - 1;
}

/**
 * True when `deviceId` is wider than the DDT of `mode` can index (step 5 of "Process to
 * translate an IOVA").
 */
export function deviceIdTooWide(deviceId: number, mode: number, extended: boolean): boolean {
  const ddi0Bits = extended ? 6 : 7;
  const levels = ddtLevels(mode);
  const bits = levels === 1 ? ddi0Bits : levels === 2 ? ddi0Bits + 9 : 24;
  return deviceId >>> bits !== 0;
}

/** Result of a directory walk: the context, or the fault that stopped it and why. */
export class WalkOutcome {
  fault: IommuFault | null = null;
  /** Why a misconfiguration was reported (for traces and tests). */
  reason = "";
  /** For a guest-page fault while reading the PDT: the faulting guest page and byte offset. */
  gpaPage = 0;
  gpaOffset = 0;

  reset(): void {
    this.fault = null;
    this.reason = "";
  }

  fail(fault: IommuFault, reason: string): null {
    this.fault = fault;
    this.reason = reason;
    return null;
  }
}

/** The four faults of one directory, DDT or PDT, reading its entries. */
interface DirectoryFaults {
  readonly name: "DDT" | "PDT";
  /** What its leaf entries are, for fault reasons. */
  readonly leaf: "device context" | "process context";
  readonly loadAccess: IommuFault;
  readonly corruption: IommuFault;
  readonly notValid: IommuFault;
  readonly misconfigured: IommuFault;
}

const DDT_FAULTS: DirectoryFaults = {
  name: "DDT",
  leaf: "device context",
  loadAccess: FAULTS.ddt_entry_load_access_fault,
  corruption: FAULTS.ddt_data_corruption,
  notValid: FAULTS.ddt_entry_not_valid,
  misconfigured: FAULTS.ddt_entry_misconfigured,
};

const PDT_FAULTS: DirectoryFaults = {
  name: "PDT",
  leaf: "process context",
  loadAccess: FAULTS.pdt_entry_load_access_fault,
  corruption: FAULTS.pdt_data_corruption,
  notValid: FAULTS.pdt_entry_not_valid,
  misconfigured: FAULTS.pdt_entry_misconfigured,
};

/**
 * Loads the non-leaf DDT or PDT entry at byte `offset` of page `ppn` (both formats: V in bit 0,
 * bits 9:1 reserved, PPN in 53:10, bits 63:54 reserved) and returns the PPN of the next level,
 * or -1 after failing `out` with the fault of `f`.
 */
function nonLeafEntry(
  mem: ImplicitMemory,
  ppn: number,
  offset: number,
  be: boolean,
  f: DirectoryFaults,
  level: number,
  out: WalkOutcome,
): number {
  const st = mem.load64(ppn, offset, be);
  if (st !== ACCESS_OK) {
    const fault = st === ACCESS_CORRUPT ? f.corruption : f.loadAccess;
    out.fail(fault, `non-leaf ${f.name} entry at level ${level}`);
    return -1;
  }
  const lo = mem.lo;
  const hi = mem.hi;
  if ((lo & 1) === 0) {
    out.fail(f.notValid, `non-leaf level ${level}`);
    return -1;
  }
  if ((lo & 0x3fe) !== 0 || (hi & 0xffc0_0000) !== 0) {
    out.fail(f.misconfigured, `non-leaf level ${level} reserved bits`);
    return -1;
  }
  return ppn53(lo, hi);
}

/**
 * Loads the `count` words of a device or process context at byte `offset` of page `ppn` into
 * `words`; false after failing `out` with the load fault of `f`.
 */
function loadContext(
  mem: ImplicitMemory,
  ppn: number,
  offset: number,
  be: boolean,
  words: Uint32Array,
  count: number,
  f: DirectoryFaults,
  out: WalkOutcome,
): boolean {
  for (let k = 0; k < count; k += 2) {
    const st = mem.load64(ppn, offset + k * 4, be);
    if (st !== ACCESS_OK) {
      out.fail(st === ACCESS_CORRUPT ? f.corruption : f.loadAccess, f.leaf);
      return false;
    }
    words[k] = mem.lo;
    words[k + 1] = mem.hi;
  }
  return true;
}

const DC_WORDS = new Uint32Array(16);

/**
 * "Process to locate the Device-context": walks the DDT rooted at `rootPpn` with `mode`
 * (1LVL..3LVL) and returns the checked DC, or null with the fault in `out`.
 */
export function locateDeviceContext(
  env: ContextEnv,
  mode: number,
  rootPpn: number,
  deviceId: number,
  out: WalkOutcome,
): DeviceContext | null {
  const extended = env.caps.MSI_FLAT;
  const mem = env.mem;
  const ddi0Bits = extended ? 6 : 7;
  let a = rootPpn;
  for (let i = ddtLevels(mode) - 1; i > 0; i--) {
    const ddi = i === 1 ? (deviceId >>> ddi0Bits) & 0x1ff : deviceId >>> (ddi0Bits + 9);
    a = nonLeafEntry(mem, a, ddi * 8, env.be, DDT_FAULTS, i, out);
    if (a < 0) return null;
  }
  const size = extended ? 64 : 32;
  const ddi0 = deviceId & ((1 << ddi0Bits) - 1);
  const byte = ddi0 * size;
  if (!loadContext(mem, a, byte, env.be, DC_WORDS, size / 4, DDT_FAULTS, out)) return null;
  if ((DC_WORDS[0]! & 1) === 0) return out.fail(FAULTS.ddt_entry_not_valid, "DC.tc.V=0");
  const dc = new DeviceContext(deviceId, DC_WORDS, extended);
  const why = dcMisconfiguration(dc, DC_WORDS, env);
  if (why !== null) return out.fail(FAULTS.ddt_entry_misconfigured, why);
  return dc;
}

/** Translates a guest page for an implicit read; returns the SPA page or -1 with `out` set. */
export type GpaTranslator = (gpaPage: number, gpaOffset: number, out: WalkOutcome) => number;

/** Widths of `process_id` per `pdtp.MODE`. */
export function pdtProcessIdBits(mode: number): number {
  return mode === PDTP_MODE.PD8 ? 8 : mode === PDTP_MODE.PD17 ? 17 : 20;
}

const PC_WORDS = new Uint32Array(4);

/**
 * "Process to locate the Process-context": walks the PDT of `dc` for `processId`. When the
 * second stage is not Bare every PDT address is a GPA translated by `gpa` (an implicit read).
 */
export function locateProcessContext(
  env: ContextEnv,
  dc: DeviceContext,
  processId: number,
  gpa: GpaTranslator | null,
  out: WalkOutcome,
): ProcessContext | null {
  const mem = env.mem;
  const be = dc.SBE;
  const levels = dc.fscMode; // PD8 = 1 level, PD17 = 2, PD20 = 3
  let a = dc.fscPpn;
  for (let i = levels - 1; ; i--) {
    const pdi = i === 0 ? processId & 0xff : i === 1 ? (processId >>> 8) & 0x1ff : processId >>> 17;
    const offset = i === 0 ? pdi * 16 : pdi * 8;
    let page = a;
    if (dc.gStage) {
      page = gpa!(a, offset, out);
      if (page < 0) return null;
    }
    if (i === 0) {
      if (!loadContext(mem, page, offset, be, PC_WORDS, 4, PDT_FAULTS, out)) return null;
      if ((PC_WORDS[0]! & 1) === 0) return out.fail(FAULTS.pdt_entry_not_valid, "PC.ta.V=0");
      const pc = new ProcessContext(dc.deviceId, processId, PC_WORDS);
      const why = pcMisconfiguration(pc, PC_WORDS, dc, env.caps);
      if (why !== null) return out.fail(FAULTS.pdt_entry_misconfigured, why);
      return pc;
    }
    a = nonLeafEntry(mem, page, offset, be, PDT_FAULTS, i, out);
    if (a < 0) return null;
  }
}
