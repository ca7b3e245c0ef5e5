// Per-device state (`struct riscv_iommu_info`, dev_iommu_priv) and the programming of device
// contexts (DC) and process contexts (PC) from it.
//
// What a device translates through is kept as state — the RID target (a domain, identity or
// blocked) and the PASID targets — and the contexts are derived from it:
//   - no PASID in use: DC.tc.PDTV = 0, DC.fsc = iosatp of the RID domain (Bare for identity),
//     DC.ta.PSCID = its PSCID; blocked = DC.tc.V = 0 (faults with cause 258, like the kernel);
//   - once a PASID is attached the device gets a process directory and keeps it: DC.tc.PDTV = 1
//     with DPE = 1, so RID traffic uses PC[0], which holds the RID domain ("process_id 0");
//     blocked RID = PC[0] invalid (cause 266) while PASIDs still translate;
//   - DC.tc.V = 0 whenever nothing translates at all.
// EN_ATS when the device has ATS and a translating domain; EN_PRI (with PRPR as the device asks)
// when it also has PRI and an I/O-page-fault-capable domain is attached.
//
// Every change follows riscv_iommu_iodir_update and the "Guidelines for invalidations": a valid
// entry that changes is first made invalid and invalidated (IODIR.INVAL_DDT / INVAL_PDT +
// IOFENCE.C), then written with V last and invalidated again (also after making an entry valid,
// as the kernel does); a domain is bonded before it becomes reachable and unbonded (which
// invalidates its PSCID when it was the last user) only after it is no longer reachable; a
// process directory is freed only after the device contexts pointing at it were invalidated.
// The IOTINVAL.VMA that "Changing device directory table entry" also lists is sent per domain
// instead, as the kernel does: a PSCID names one domain for its whole life, so its IOTLB entries
// stay right for the domain's other users, and its last user leaving invalidates them.

import { hex } from "../../base/bits.js";
import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import {
  pciAtsSupported,
  pciDisableAts,
  pciDisablePasid,
  pciDisablePri,
  pciEnableAts,
  pciEnablePasid,
  pciEnablePri,
  pciPasidFeatures,
  pciPrgRespPasidRequired,
  pciPriSupported,
} from "../../bus/pci.js";
import { devIsPci } from "../../bus/pci-dev.js";
import type { PciFunction } from "../../hw/pci/topology.js";
import { IOMMU_DOMAIN_SVA } from "../../iommu/constants.js";
import { ProcessDirectory } from "./directory.js";
import type { BondDevice, RiscvFirstStageDomain } from "./domain.js";
import type { RiscvIommuDevice } from "./iommu.js";
import {
  ATS_ALL_PAGES,
  CAP_LO,
  DC_OFF,
  DC_TC,
  fscHi,
  fscLo,
  PC_TA,
  PDTP_MODE,
  PSCID_SHIFT,
  RiscvIommuCommand,
} from "./iommu-bits.js";

/** What RID traffic translates through. */
export type RidTarget = RiscvFirstStageDomain | "identity" | "blocked";
/** What a PASID translates through (absent = blocked). */
export type PasidTarget = RiscvFirstStageDomain | "identity";

/** Outstanding page requests a function may have (pci_enable_pri's `reqs`). */
const PRI_REQUESTS = 32;

export class RiscvIommuInfo implements BondDevice {
  readonly dev: Device;
  readonly iommu: RiscvIommuDevice;
  /** The device_ids of the device (its RID and DMA aliases), each with a device context. */
  readonly ids: readonly number[];
  ridTarget: RidTarget = "blocked";
  readonly pasids = new Map<number, PasidTarget>();
  /** The process directory, from the first PASID attach until release. */
  pdt: ProcessDirectory | null = null;
  /** The PCI function, when the device is one. */
  readonly pciFn: PciFunction | null;
  /** ATS / PRI the device and the IOMMU both support. */
  atsCapable: boolean;
  priCapable: boolean;
  /** PASID usable: enabled on the PCI function at probe, or a platform device on a PD IOMMU. */
  pasidEnabled = false;
  /** What is enabled now (DC and device). */
  atsEnabled = false;
  priEnabled = false;

  constructor(dev: Device, iommu: RiscvIommuDevice, ids: readonly number[]) {
    this.dev = dev;
    this.iommu = iommu;
    this.ids = ids;
    this.pciFn = devIsPci(dev) ? dev.fn : null;
    const ats = iommu.hasCap(CAP_LO.ATS) && this.pciFn !== null && pciAtsSupported(this.pciFn);
    this.atsCapable = ats;
    this.priCapable = ats && pciPriSupported(this.pciFn!);
  }

  /** The device's own device_id (its RID). */
  get requesterId(): number {
    return this.ids[0]!;
  }

  /** A request with a PASID needs it in the PRG response (the PRI "PASID Required" status). */
  get prgResponseNeedsPasid(): boolean {
    return this.pciFn !== null && pciPrgRespPasidRequired(this.pciFn);
  }

  toJSON(): Json {
    return {
      device: this.dev.name,
      iommu: this.iommu.name,
      device_ids: this.ids.map((i) => hex(i)),
      rid: targetJSON(this.ridTarget),
      pasids: [...this.pasids]
        .sort((a, b) => a[0] - b[0])
        .map(([pasid, t]) => ({ pasid, domain: targetJSON(t) })),
      pdt: this.pdt?.toJSON() ?? null,
      pasid_enabled: this.pasidEnabled,
      ats: { capable: this.atsCapable, enabled: this.atsEnabled },
      pri: { capable: this.priCapable, enabled: this.priEnabled },
      contexts: this.ids.map((id) => dcJSON(this.iommu, id)),
    };
  }
}

function targetJSON(t: RidTarget | PasidTarget): Json {
  return typeof t === "string" ? t : t.id;
}

/** The DC of `id` as the driver wrote it (views). */
function dcJSON(iommu: RiscvIommuDevice, id: number): Json {
  const place = iommu.dcPlace(id);
  if (place === null) return { device_id: hex(id), dc: null };
  const w = iommu.memory.pageU32(place.ppn)!;
  const o = place.offset >>> 2;
  const tc = w[o]!;
  return {
    device_id: hex(id),
    tc: {
      V: (tc & DC_TC.V) !== 0,
      EN_ATS: (tc & DC_TC.EN_ATS) !== 0,
      EN_PRI: (tc & DC_TC.EN_PRI) !== 0,
      PDTV: (tc & DC_TC.PDTV) !== 0,
      PRPR: (tc & DC_TC.PRPR) !== 0,
      SADE: (tc & DC_TC.SADE) !== 0,
      DPE: (tc & DC_TC.DPE) !== 0,
    },
    ta: { PSCID: w[o + 4]! >>> PSCID_SHIFT },
    fsc: {
      MODE: w[o + 7]! >>> 28,
      PPN: hex(w[o + 6]! + (w[o + 7]! & 0xfff) * 0x1_0000_0000),
    },
  };
}

// ---------------------------------------------------------------- probe

/**
 * riscv_iommu_probe_device's part per device: a DC for every device_id with `tc` preset (SADE
 * when the IOMMU updates A/D) and V = 0, the device_ids recorded, PASIDs enabled on a PCI
 * function. ENODEV when a device_id does not fit the DDT or memory for it ran out.
 */
export function probeInfo(
  iommu: RiscvIommuDevice,
  dev: Device,
  ids: readonly number[],
): Result<RiscvIommuInfo> {
  const tc = iommu.hasCap(CAP_LO.AMO_HWAD) ? DC_TC.SADE : 0;
  const places = [];
  for (const id of ids) {
    const place = iommu.dcPlace(id);
    if (place === null) return err("ENODEV");
    places.push(place);
  }
  for (const place of places) {
    const w = iommu.memory.writablePageU32(place.ppn)!;
    const o = (place.offset + DC_OFF.tc) >>> 2;
    if ((w[o]! & DC_TC.V) !== 0)
      iommu.log("warn", `${dev.name}: already attached to IOMMU device directory`);
    w[o] = tc;
    w[o + 1] = 0;
  }
  const info = new RiscvIommuInfo(dev, iommu, ids);
  ids.forEach((id, i) => {
    iommu.claimDeviceId(id, dev, i === 0);
  });
  if (iommu.maxPdtMode !== PDTP_MODE.BARE) {
    if (info.pciFn === null) {
      info.pasidEnabled = true;
    } else {
      const features = pciPasidFeatures(info.pciFn);
      info.pasidEnabled = features.ok && pciEnablePasid(info.pciFn, features.value).ok;
    }
  }
  return { ok: true, value: info };
}

/** riscv_iommu_release_device: everything torn down, the process directory freed. */
export function releaseInfo(info: RiscvIommuInfo): void {
  for (const pasid of [...info.pasids.keys()]) setPasid(info, pasid, "blocked");
  if (info.ridTarget !== "blocked") attachRid(info, "blocked");
  syncDeviceContexts(info);
  if (info.pdt !== null) {
    // The DCs no longer point here and were invalidated (IODIR.INVAL_DDT + IOFENCE.C above).
    info.pdt.destroy();
    info.pdt = null;
  }
  if (info.pciFn !== null && info.pasidEnabled) pciDisablePasid(info.pciFn);
  info.pasidEnabled = false;
  info.iommu.releaseDeviceIds(info.dev);
}

// ---------------------------------------------------------------- attach

/** RID traffic of the device through `target` (attach_dev of a paging/identity/blocked domain). */
export function attachRid(info: RiscvIommuInfo, target: RidTarget): Result {
  const old = info.ridTarget;
  if (typeof target !== "string" && target !== old) target.bondLink(info, null);
  info.ridTarget = target;
  if (info.pdt !== null) writePc(info, 0, pcWords(target));
  syncDeviceContexts(info);
  if (typeof old !== "string" && old !== target) {
    // IOATC first, then the device's ATC ("Device Address Translation Cache invalidations").
    old.bondUnlink(info, null);
    atcInvalidate(info, null);
  }
  return OK;
}

/**
 * `pasid` of the device through `target` (set_dev_pasid; "blocked" removes it). On failure
 * nothing changed: the PASID stays on its old domain.
 */
export function setPasid(
  info: RiscvIommuInfo,
  pasid: number,
  target: PasidTarget | "blocked",
): Result {
  const iommu = info.iommu;
  const old = info.pasids.get(pasid);
  if (target === "blocked" && old === undefined) {
    // Nothing attached (the core's detach of a never-attached PASID): still make sure.
    if (info.pdt !== null) writePc(info, pasid, pcWords("blocked"));
    return OK;
  }
  if (target === "blocked" && info.priEnabled) {
    // Core §7.5: the page requests of the PASID already in the PQ reach the IOPF path before
    // the PASID goes (the device stopped issuing them before the detach), and the IOPF work
    // queued for them has run.
    iommu.processPageRequestQueue();
    if (info.dev.iommu?.faultParam != null) iommu.core.iopfQueueFlushDev(info.dev);
  }
  let created = false;
  if (info.pdt === null) {
    const mode = pdtModeFor(iommu, info.dev.iommu?.maxPasids ?? 0);
    const pdt = ProcessDirectory.create(iommu.memory, iommu.frames, mode);
    if (pdt === null) return err("ENOMEM");
    info.pdt = pdt;
    created = true;
  }
  const pdt = info.pdt;
  if (
    pasid >= pdt.maxPasids ||
    pdt.pcPlace(pasid, true) === null ||
    pdt.pcPlace(0, true) === null
  ) {
    if (created) {
      pdt.destroy();
      info.pdt = null;
    }
    return pasid >= pdt.maxPasids ? err("EINVAL") : err("ENOMEM");
  }
  if (created && info.ridTarget !== "blocked") {
    // The RID domain moves to PC[0] before the DC starts using the directory (DPE).
    writePc(info, 0, pcWords(info.ridTarget));
  }
  if (typeof target !== "string" && target !== old) target.bondLink(info, pasid);
  if (target === "blocked") info.pasids.delete(pasid);
  else info.pasids.set(pasid, target);
  writePc(info, pasid, pcWords(target));
  syncDeviceContexts(info);
  if (old !== undefined && typeof old !== "string" && old !== target) {
    old.bondUnlink(info, pasid);
    atcInvalidate(info, pasid);
  }
  return OK;
}

/**
 * The mm of an SVA domain is going away (mmu notifier ->release): its PCs are made invalid so
 * the IOMMU stops walking the dying page table; the PASIDs stay attached until unbind.
 */
export function invalidatePasidContext(info: RiscvIommuInfo, pasid: number): void {
  if (info.pdt !== null) writePc(info, pasid, pcWords("blocked"));
}

/**
 * The device may still cache translations of the domain it left in its ATC: ATS.INVAL of every
 * page (for the PASID, or without one for RID traffic), IOFENCE.C.
 */
function atcInvalidate(info: RiscvIommuInfo, pasid: number | null): void {
  if (!info.atsEnabled) return;
  const cmd = new RiscvIommuCommand();
  info.iommu.cmdSend(cmd.atsInval(info.requesterId, pasid ?? -1, false, true, ATS_ALL_PAGES));
  info.iommu.cmdSync();
}

/** The smallest supported process-directory format holding `maxPasids`, else the widest. */
function pdtModeFor(iommu: RiscvIommuDevice, maxPasids: number): number {
  for (const mode of [PDTP_MODE.PD8, PDTP_MODE.PD17, PDTP_MODE.PD20]) {
    const span = mode === PDTP_MODE.PD8 ? 2 ** 8 : mode === PDTP_MODE.PD17 ? 2 ** 17 : 2 ** 20;
    if (maxPasids <= span && iommu.supportsPdtMode(mode)) return mode;
  }
  return iommu.maxPdtMode;
}

// ---------------------------------------------------------------- contexts

/** A PC's `ta` low half and `fsc` halves. */
interface PcWords {
  ta: number;
  fscLo: number;
  fscHi: number;
}

function pcWords(target: RidTarget | PasidTarget): PcWords {
  if (target === "blocked") return { ta: 0, fscLo: 0, fscHi: 0 };
  if (target === "identity") return { ta: PC_TA.V, fscLo: 0, fscHi: 0 };
  // ENS = 0, SUM = 0: only User requests, which is all the core's domains map (PTE U = 1);
  // a historical supervisor SVA domain sets ENS.
  return {
    ta: (PC_TA.V | (target.ens ? PC_TA.ENS : 0) | (target.pscid << PSCID_SHIFT)) >>> 0,
    fscLo: fscLo(target.rootPpn),
    fscHi: fscHi(target.fscMode, target.rootPpn),
  };
}

/** Writes PC `pasid` of the device's directory ("Changing process directory table entry"). */
function writePc(info: RiscvIommuInfo, pasid: number, want: PcWords): void {
  const pdt = info.pdt!;
  const iommu = info.iommu;
  const place = pdt.pcPlace(pasid, (want.ta & PC_TA.V) !== 0);
  if (place === null) return; // never written and staying invalid
  const w = iommu.memory.writablePageU32(place.ppn)!;
  const o = place.offset >>> 2;
  if (w[o] === want.ta && w[o + 1] === 0 && w[o + 2] === want.fscLo && w[o + 3] === want.fscHi) {
    return;
  }
  const cmd = new RiscvIommuCommand();
  if ((w[o]! & PC_TA.V) !== 0) {
    w[o] = w[o]! & ~PC_TA.V;
    for (const id of info.ids) iommu.cmdSend(cmd.iodirInvalPdt(id, pasid));
    iommu.cmdSync();
  }
  w[o + 2] = want.fscLo;
  w[o + 3] = want.fscHi;
  w[o + 1] = 0;
  w[o] = want.ta;
  for (const id of info.ids) iommu.cmdSend(cmd.iodirInvalPdt(id, pasid));
  iommu.cmdSync();
}

function translates(t: RidTarget | PasidTarget): t is RiscvFirstStageDomain {
  return typeof t !== "string";
}

function iopfCapable(t: RidTarget | PasidTarget): boolean {
  return translates(t) && (t.type === IOMMU_DOMAIN_SVA || t.iopfHandler !== null);
}

/**
 * Brings every DC of the device, and ATS/PRI on the device, in line with its state
 * ("Guidelines for enabling and disabling ATS and/or PRI").
 */
export function syncDeviceContexts(info: RiscvIommuInfo): void {
  const iommu = info.iommu;
  const targets = [info.ridTarget, ...info.pasids.values()];
  const valid = info.ridTarget !== "blocked" || info.pasids.size > 0;
  const wantAts = info.atsCapable && targets.some(translates);
  const wantPri = wantAts && info.priCapable && targets.some(iopfCapable);
  const fn = info.pciFn;
  // Turning off: the device ATC is emptied while EN_ATS still lets its completions in, then the
  // device stops using ATS/PRI, then the DC changes (its invalidation follows below).
  if ((info.priEnabled && !wantPri) || (info.atsEnabled && !wantAts)) {
    if (info.atsEnabled && !wantAts) {
      const cmd = new RiscvIommuCommand();
      iommu.cmdSend(cmd.atsInval(info.requesterId, -1, false, true, ATS_ALL_PAGES));
      iommu.cmdSync();
    }
    if (info.priEnabled && !wantPri) iopfDisable(info);
    if (info.priEnabled && !wantPri && fn !== null) pciDisablePri(fn);
    if (info.atsEnabled && !wantAts && fn !== null) pciDisableAts(fn);
    info.priEnabled = info.priEnabled && wantPri;
    info.atsEnabled = info.atsEnabled && wantAts;
  }
  let tc = iommu.hasCap(CAP_LO.AMO_HWAD) ? DC_TC.SADE : 0;
  let ta = 0;
  let fLo = 0;
  let fHi = 0;
  if (valid) {
    tc |= DC_TC.V;
    if (wantAts) tc |= DC_TC.EN_ATS;
    if (wantPri) tc |= DC_TC.EN_PRI | (info.prgResponseNeedsPasid ? DC_TC.PRPR : 0);
    if (info.pdt !== null) {
      tc |= DC_TC.PDTV | DC_TC.DPE;
      fLo = fscLo(info.pdt.rootPpn);
      fHi = fscHi(info.pdt.mode, info.pdt.rootPpn);
    } else if (translates(info.ridTarget)) {
      const d = info.ridTarget;
      ta = (d.pscid << PSCID_SHIFT) >>> 0;
      fLo = fscLo(d.rootPpn);
      fHi = fscHi(d.fscMode, d.rootPpn);
    }
  }
  writeDcs(info, tc, ta, fLo, fHi);
  if (wantAts && !info.atsEnabled) {
    info.atsEnabled = fn !== null && pciEnableAts(fn, 12).ok;
    if (!info.atsEnabled) {
      iommu.log("warn", `${info.dev.name}: cannot enable ATS`);
      info.atsCapable = false;
      info.priCapable = false;
      syncDeviceContexts(info);
      return;
    }
  }
  if (wantPri && !info.priEnabled) {
    info.priEnabled = fn !== null && pciEnablePri(fn, PRI_REQUESTS).ok;
    if (!info.priEnabled) {
      iommu.log("warn", `${info.dev.name}: cannot enable PRI`);
      info.priCapable = false;
      syncDeviceContexts(info);
    } else {
      iopfEnable(info);
    }
  }
}

/** With PRI on, the device's page requests go to the instance's IOPF queue (core §7.1). */
function iopfEnable(info: RiscvIommuInfo): void {
  const q = info.iommu.iopfQueue;
  if (q === null) return;
  const r = info.iommu.core.iopfQueueAddDevice(q, info.dev);
  if (!r.ok) info.iommu.log("warn", `${info.dev.name}: cannot enable IOPF (${r.errno})`);
}

/** Before PRI goes off: pending groups are answered, the device leaves the IOPF queue. */
function iopfDisable(info: RiscvIommuInfo): void {
  const q = info.iommu.iopfQueue;
  const p = info.dev.iommu?.faultParam as { queue?: unknown } | null | undefined;
  if (q !== null && p?.queue === q) info.iommu.core.iopfQueueRemoveDevice(q, info.dev);
}

/** riscv_iommu_iodir_update for every device_id of the device. */
function writeDcs(info: RiscvIommuInfo, tc: number, ta: number, fLo: number, fHi: number): void {
  const iommu = info.iommu;
  const mem = iommu.memory;
  const cmd = new RiscvIommuCommand();
  const changed: number[] = [];
  let invalidated = false;
  for (const id of info.ids) {
    const place = iommu.dcPlace(id)!;
    const w = mem.writablePageU32(place.ppn)!;
    const o = place.offset >>> 2;
    const same =
      w[o + DC_OFF.tc / 4] === tc &&
      w[o + DC_OFF.ta / 4] === ta &&
      w[o + DC_OFF.fsc / 4] === fLo &&
      w[o + DC_OFF.fsc / 4 + 1] === fHi;
    if (same) continue;
    changed.push(id);
    // A valid DC that changes is made invalid and invalidated first.
    if ((w[o]! & DC_TC.V) !== 0) {
      w[o] = w[o]! & ~DC_TC.V;
      iommu.cmdSend(cmd.iodirInvalDdt().setDid(id));
      invalidated = true;
    }
  }
  if (changed.length === 0) return;
  if (invalidated) iommu.cmdSync();
  for (const id of changed) {
    const place = iommu.dcPlace(id)!;
    const w = mem.writablePageU32(place.ppn)!;
    const o = place.offset >>> 2;
    w[o + DC_OFF.fsc / 4] = fLo;
    w[o + DC_OFF.fsc / 4 + 1] = fHi;
    w[o + DC_OFF.ta / 4] = ta;
    w[o + DC_OFF.ta / 4 + 1] = 0;
    w[o + DC_OFF.iohgatp / 4] = 0;
    w[o + DC_OFF.iohgatp / 4 + 1] = 0;
    // tc (with V) last.
    w[o + 1] = 0;
    w[o] = tc;
    iommu.cmdSend(cmd.iodirInvalDdt().setDid(id));
  }
  iommu.cmdSync();
}
