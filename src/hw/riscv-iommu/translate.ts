// "Process to translate an IOVA", step by step, for the three inbound request kinds: Untranslated
// and Translated memory requests (DmaRequest), and PCIe ATS Translation Requests (AtsRequest,
// answered per "PCIe ATS translation request handling"). Directory lookups go through the DDT/PDT
// caches, translations through the IOTLB and on a miss the shared pgtable walker, with DC.tc.SADE
// and DC.tc.GADE as the A/D policy of each stage.
//
// Hot path: one Translator per IOMMU owns every scratch object; a request allocates nothing
// unless it misses in a directory cache (a new cached context) or a trace is recorded.

import { PAGE_SHIFT } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import type { TraceBus } from "../../base/trace.js";
import type { PhysicalMemory } from "../memory.js";
import type {
  AccessType,
  AtsCompletion,
  AtsRequest,
  DmaRequest,
  DmaResponse,
} from "../pci/translation-agent.js";
import { modeFromField } from "../pgtable/modes.js";
import { PTE_D, PTE_G, PTE_R, PTE_U, PTE_W, PTE_X } from "../pgtable/pte.js";
import { walk, walkFirstStage, walkSecondStage } from "../pgtable/walk.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  STEP_FIRST,
  WalkConfig,
  WalkResult,
  walkFaultCause,
} from "../pgtable/walk-result.js";
import {
  type ContextEnv,
  type DeviceContext,
  deviceIdTooWide,
  locateDeviceContext,
  locateProcessContext,
  MSIPTP_MODE,
  PDTP_MODE,
  pdtProcessIdBits,
  WalkOutcome,
} from "./context.js";
import type { DirectoryCache } from "./directory-cache.js";
import { FaultRecord } from "./fault-queue.js";
import { FAULTS, faultOfCause, type IommuFault, isGuestPageFault, TTYP } from "./faults.js";
import type { Iotlb, IotlbEntry, IotlbFill } from "./iotlb.js";
import { isMsiPage, MsiOutcome, translateMsi } from "./msi-translate.js";
import { DDTP_MODE } from "./registers.js";

/** What the translation process reads from and reports to the IOMMU. */
export interface TranslateEnv extends ContextEnv {
  readonly physical: PhysicalMemory;
  readonly iotlb: Iotlb;
  readonly dir: DirectoryCache;
  readonly trace: TraceBus;
  readonly name: string;
  /** `ddtp.iommu_mode` and `ddtp.PPN`. */
  readonly ddtpMode: number;
  readonly ddtpPpn: number;
  /** Queues a fault record unless `dtf` suppresses its cause. */
  report(rec: FaultRecord, dtf: boolean): void;
}

const TWO52 = 2 ** 52;
const KIND_UNTRANSLATED = 0;
const KIND_TRANSLATED = 1;
const KIND_ATS = 2;

/** Outcomes of `#walkSteps`. */
const WALK_OK = 0;
const WALK_FAULT = 1;
const WALK_MSI = 2;

/** Range reported to ATS when both stages are Bare ("recommended … large, such as 2 MiB"). */
const BARE_ATS_SHIFT = 21;

/** Paging modes by MODE field (index 0-15), first stage and G-stage; null for Bare/reserved. */
const FIRST_MODES = Array.from({ length: 16 }, (_, f) => modeFromField(false, f));
const G_MODES = Array.from({ length: 16 }, (_, f) => modeFromField(true, f));

const ACCESS_OF: Record<AccessType, Access> = {
  read: ACCESS_READ,
  write: ACCESS_WRITE,
  execute: ACCESS_EXECUTE,
};
const ACCESS_NAMES = ["read", "write", "execute"] as const;

/** ATS completion categories of the fault causes ("PCIe ATS translation request handling"). */
const ATS_UR = new Set([256, 257, 258, 259, 260]);
const ATS_SUCCESS_NO_PERM = new Set([12, 13, 15, 20, 21, 23, 262, 266]);

export class Translator {
  readonly #env: TranslateEnv;
  readonly #cfg = new WalkConfig();
  readonly #walk = new WalkResult();
  readonly #gcfg = new WalkConfig();
  readonly #gwalk = new WalkResult();
  readonly #wo = new WalkOutcome();
  readonly #msi = new MsiOutcome();
  readonly #rec = new FaultRecord();
  readonly #fill: IotlbFill = {
    gscid: -1,
    pscid: -1,
    global: false,
    vpn: 0,
    log2Pages: 0,
    ppn: 0,
    gpa: 0,
    gLog2Pages: 0,
    s1Log2Pages: 0,
    s1Perm: 0,
    gPerm: 0,
    pbmt: 0,
    hasFirstStage: false,
    hasGStage: false,
  };
  readonly #gpaTranslator = (gpaPage: number, offset: number, out: WalkOutcome): number =>
    this.#translatePdtAddress(gpaPage, offset, out);

  // ---- the request being processed ----
  #kind = KIND_UNTRANSLATED;
  #did = 0;
  #pv = false;
  #pid = 0;
  #priv = false;
  #access: Access = ACCESS_READ;
  #vpn = 0;
  #offset = 0;
  // ---- resolved by steps 1-16 ----
  #dc: DeviceContext | null = null;
  /** Step 8: a Translated request without T2GPA needs no translation. */
  #passThrough = false;
  /** First stage: iosatp/PC.fsc MODE (0 = Bare) and PPN; PSCID; SUM. */
  #firstMode = 0;
  #firstPpn = 0;
  #pscid = 0;
  #sum = false;
  /** A guest-page fault while reading the PDT: the PTE-address GPA for iotval2. */
  #pdtGpaPage = 0;
  #pdtGpaOffset = 0;
  #pdtGuestFault = false;

  constructor(env: TranslateEnv) {
    this.#env = env;
    this.#cfg.first.svnapot = true;
    this.#cfg.second.svnapot = true;
    this.#gcfg.second.svnapot = true;
    // Page-table pages beyond capabilities.PAS cannot be addressed: access faults.
    this.#cfg.ppnLimit = 2 ** (env.caps.PAS - PAGE_SHIFT);
    this.#gcfg.ppnLimit = this.#cfg.ppnLimit;
    const pbmt = env.caps.Svpbmt;
    this.#cfg.first.svpbmt = pbmt;
    this.#cfg.second.svpbmt = pbmt;
    this.#gcfg.second.svpbmt = pbmt;
  }

  /** Translates an Untranslated or Translated memory request. */
  translate(req: DmaRequest, out: DmaResponse): void {
    this.#begin(req.deviceId, req.pasidValid, req.pasid, req.privileged, req.iovaPage);
    this.#kind = req.translated ? KIND_TRANSLATED : KIND_UNTRANSLATED;
    this.#access = ACCESS_OF[req.access];
    if (
      !(req.iovaOffset >= 0 && req.iovaOffset < 4096 && (req.iovaOffset | 0) === req.iovaOffset)
    ) {
      throw new SimError(`IOVA offset ${req.iovaOffset} is not within a page`);
    }
    this.#offset = req.iovaOffset;
    out.offset = req.iovaOffset;
    out.pbmt = 0;
    out.pageShift = PAGE_SHIFT;
    let fault = this.#resolve();
    if (fault === null) {
      if (this.#env.ddtpMode === DDTP_MODE.Bare || this.#passThrough) {
        out.ppn = this.#vpn; // no translation or protection
      } else {
        fault = this.#translateDma(out);
      }
    }
    out.fault = fault;
    if (fault !== null) this.#reportTransaction(fault);
    if (this.#env.trace.enabled) this.#traceTranslate(fault, fault === null ? out.paddr : null);
  }

  /** Answers a PCIe ATS Translation Request. */
  atsTranslate(req: AtsRequest, out: AtsCompletion): void {
    this.#begin(req.deviceId, req.pasidValid, req.pasid, req.privileged, req.iovaPage);
    this.#kind = KIND_ATS;
    this.#access = req.noWrite ? ACCESS_READ : ACCESS_WRITE;
    this.#offset = 0;
    out.status = "success";
    out.r = out.w = out.x = out.u = out.n = out.global = false;
    out.priv = req.pasidValid && req.privileged;
    out.ama = 0;
    out.ppn = 0;
    out.sizeShift = PAGE_SHIFT;
    let fault = this.#resolve();
    if (fault === null) fault = this.#translateAts(req, out);
    out.fault = fault;
    if (fault !== null) {
      if (ATS_SUCCESS_NO_PERM.has(fault.cause)) {
        // Success with R=W=0: not logged.
        out.status = "success";
        out.r = out.w = out.x = out.global = false;
      } else {
        out.status = ATS_UR.has(fault.cause) ? "UR" : "CA";
        this.#reportTransaction(fault);
      }
    }
    if (this.#env.trace.enabled) {
      const pa = out.status === "success" && out.r ? BigInt(out.ppn) << 12n : null;
      this.#env.trace.emit("riscv_iommu:translate", this.#env.name, {
        device_id: this.#did,
        pasid: this.#pv ? this.#pid : null,
        iova: BigInt(this.#vpn) << 12n,
        access: `ats${req.noWrite ? "" : "+w"}${req.executeRequested ? "+x" : ""}`,
        result:
          out.status === "success" ? `success r=${+out.r} w=${+out.w} x=${+out.x}` : out.status,
        pa,
      });
    }
  }

  /**
   * Steps 1-5 for a PCIe message from `deviceId` (Page Request, Invalidation Completion):
   * locates the DC. Returns the fault (cause 256-260, 268) or null with the DC in `located`.
   */
  locateForMessage(deviceId: number): IommuFault | null {
    this.#dc = null;
    const env = this.#env;
    if (env.ddtpMode === DDTP_MODE.Off) return FAULTS.all_inbound_transactions_disallowed;
    if (env.ddtpMode === DDTP_MODE.Bare) return FAULTS.transaction_type_disallowed;
    if (deviceIdTooWide(deviceId, env.ddtpMode, env.caps.MSI_FLAT)) {
      return FAULTS.transaction_type_disallowed;
    }
    return this.#findDc(deviceId);
  }

  /** The DC found by the last `locateForMessage` (or translation). */
  get located(): DeviceContext | null {
    return this.#dc;
  }

  // ---------------------------------------------------------------- steps 1-16

  #begin(deviceId: number, pv: boolean, pasid: number, priv: boolean, vpn: number): void {
    if (!(deviceId >= 0 && deviceId < 0x100_0000 && (deviceId | 0) === deviceId)) {
      throw new SimError(`device_id ${deviceId} is not a 24-bit value`);
    }
    if (pv && !(pasid >= 0 && pasid < 0x10_0000 && (pasid | 0) === pasid)) {
      throw new SimError(`PASID ${pasid} is not a 20-bit value`);
    }
    if (!(vpn >= 0 && vpn < TWO52 && Math.floor(vpn) === vpn)) {
      throw new SimError(`IOVA page ${vpn} is not a page number of a 64-bit address`);
    }
    this.#did = deviceId;
    this.#pv = pv;
    this.#pid = pv ? pasid : 0;
    // Requests without a process_id are User ("the privilege mode must be User").
    this.#priv = pv && priv;
    this.#vpn = vpn;
    this.#dc = null;
    this.#passThrough = false;
    this.#pdtGuestFault = false;
  }

  /** Steps 1-16: finds the DC and PC and the first-stage context, or returns a fault. */
  #resolve(): IommuFault | null {
    const env = this.#env;
    const mode = env.ddtpMode;
    // 1. Off: nothing gets through.
    if (mode === DDTP_MODE.Off) return FAULTS.all_inbound_transactions_disallowed;
    // 2. Bare: only Untranslated requests, passed through.
    if (mode === DDTP_MODE.Bare) {
      return this.#kind === KIND_UNTRANSLATED ? null : FAULTS.transaction_type_disallowed;
    }
    // 3.-5. DDI split and device_id width.
    if (deviceIdTooWide(this.#did, mode, env.caps.MSI_FLAT)) {
      return FAULTS.transaction_type_disallowed;
    }
    // 6. Locate the DC.
    const located = this.#findDc(this.#did);
    if (located !== null) return located;
    const dc = this.#dc!;
    // 7. Transaction-type checks.
    if (this.#kind !== KIND_UNTRANSLATED && !dc.EN_ATS) return FAULTS.transaction_type_disallowed;
    if (this.#pv) {
      if (!dc.PDTV) return FAULTS.transaction_type_disallowed;
      // process_id wider than the PDT indexes (PD8/PD17/PD20); the PASID is 20-bit at most.
      if (dc.fscMode !== PDTP_MODE.Bare && this.#pid >>> pdtProcessIdBits(dc.fscMode) !== 0) {
        return FAULTS.transaction_type_disallowed;
      }
    }
    // 8.-9. Translated requests: SPA as is, or with T2GPA a GPA for the G-stage alone.
    if (this.#kind === KIND_TRANSLATED) {
      if (!dc.T2GPA) {
        this.#passThrough = true;
        return null;
      }
      this.#firstMode = 0;
      return null;
    }
    // 10. No PDT: the DC holds iosatp.
    if (!dc.PDTV) {
      this.#firstMode = dc.fscMode;
      this.#firstPpn = dc.fscPpn;
      this.#pscid = dc.pscid;
      this.#sum = false;
      return null;
    }
    // 11.-13. No process_id (and no default), or a Bare PDT: first stage Bare.
    let pid = this.#pid;
    if (!this.#pv) {
      if (!dc.DPE) {
        this.#firstMode = 0;
        return null;
      }
      pid = 0;
    }
    if (dc.fscMode === PDTP_MODE.Bare) {
      this.#firstMode = 0;
      return null;
    }
    // 14. Locate the PC.
    let pc = env.dir.lookupPc(dc.deviceId, pid);
    if (pc === undefined) {
      const wo = this.#wo;
      wo.reset();
      pc =
        locateProcessContext(env, dc, pid, dc.gStage ? this.#gpaTranslator : null, wo) ?? undefined;
      if (pc === undefined) return wo.fault;
      env.dir.fillPc(pc);
    }
    // 15. Supervisor requests need PC.ta.ENS.
    if (this.#priv && !pc.ENS) return FAULTS.transaction_type_disallowed;
    // 16.
    this.#firstMode = pc.fscMode;
    this.#firstPpn = pc.fscPpn;
    this.#pscid = pc.pscid;
    this.#sum = pc.SUM;
    return null;
  }

  /** "Process to locate the Device-context", through the DDT cache; sets #dc. */
  #findDc(deviceId: number): IommuFault | null {
    const env = this.#env;
    let dc = env.dir.lookupDc(deviceId);
    if (dc === undefined) {
      const wo = this.#wo;
      wo.reset();
      dc = locateDeviceContext(env, env.ddtpMode, env.ddtpPpn, deviceId, wo) ?? undefined;
      if (dc === undefined) return wo.fault;
      env.dir.fillDc(dc);
    }
    this.#dc = dc;
    return null;
  }

  /**
   * A PDT address is a GPA when the second stage is active: an implicit read through the
   * G-stage ("Process to locate the Process-context"). Guest-page faults keep the original
   * access type; an access fault is a PDT load access fault.
   */
  #translatePdtAddress(gpaPage: number, offset: number, out: WalkOutcome): number {
    const dc = this.#dc!;
    if (this.#env.be) {
      throw new SimError("big-endian page tables: the pgtable walker reads little-endian only");
    }
    const g = this.#gcfg.second;
    g.set(G_MODES[dc.iohgatpMode]!, dc.iohgatpPpn);
    g.ad = dc.GADE ? "update" : "fault";
    this.#gcfg.first.mode = null;
    const r = this.#gwalk;
    const ok = walk(this.#env.physical, this.#gcfg, gpaPage, ACCESS_READ, true, r);
    if (this.#readPoison(r)) {
      // Corrupted data in the G-stage walk for a PDT access is PDT data corruption.
      out.fail(FAULTS.pdt_data_corruption, "G-stage PTE poisoned reading the PDT");
      return -1;
    }
    if (ok) return r.ppn;
    if (r.fault === "access-fault") {
      out.fail(FAULTS.pdt_entry_load_access_fault, "G-stage access fault reading the PDT");
      return -1;
    }
    this.#pdtGuestFault = true;
    this.#pdtGpaPage = gpaPage;
    this.#pdtGpaOffset = offset;
    out.fail(faultOfCause(walkFaultCause(r, this.#access))!, `G-stage ${r.reason} reading the PDT`);
    return -1;
  }

  // ---------------------------------------------------------------- steps 17-20

  /** Configures #cfg for a walk of this request (at least one stage is active). */
  #configureStages(): void {
    const dc = this.#dc!;
    const cfg = this.#cfg;
    const first = FIRST_MODES[this.#firstMode]!;
    const second = G_MODES[dc.iohgatpMode]!;
    cfg.first.set(first, first === null ? 0 : this.#firstPpn);
    cfg.first.ad = dc.SADE ? "update" : "fault";
    cfg.first.sum = this.#sum;
    cfg.second.set(second, second === null ? 0 : dc.iohgatpPpn);
    cfg.second.ad = dc.GADE ? "update" : "fault";
    if ((first !== null && dc.SBE) || (second !== null && this.#env.be)) {
      throw new SimError("big-endian page tables: the pgtable walker reads little-endian only");
    }
  }

  #translateDma(out: DmaResponse): IommuFault | null {
    const env = this.#env;
    const dc = this.#dc!;
    const hasFirst = this.#firstMode !== 0;
    const hasG = dc.iohgatpMode !== 0;
    if (!hasFirst && !hasG) {
      out.ppn = this.#vpn;
      return null;
    }
    const gscid = hasG ? dc.gscid : -1;
    const pscid = hasFirst ? this.#pscid : -1;
    const iotlb = env.iotlb;
    const e = iotlb.lookup(gscid, pscid, this.#vpn);
    if (e !== null) {
      if (this.#permits(e, this.#access)) {
        iotlb.hits++;
        if (env.trace.enabled) this.#traceIotlb(true, gscid, pscid);
        out.ppn = e.ppnBase + (this.#vpn - e.vpnBase);
        out.pageShift = e.log2Pages + PAGE_SHIFT;
        out.pbmt = e.pbmt;
        return null;
      }
      // Not usable as cached (permission, or D needed): walk again.
      iotlb.drop(e);
    }
    iotlb.misses++;
    if (env.trace.enabled) this.#traceIotlb(false, gscid, pscid);
    this.#configureStages();
    const r = this.#walk;
    const msi = hasG && dc.msiptpMode === MSIPTP_MODE.Flat;
    const st = this.#walkSteps(this.#access, !this.#priv, msi);
    if (env.trace.enabled) this.#traceWalk(st !== WALK_FAULT);
    if (this.#readPoison(r)) return FAULTS.pt_data_corruption;
    if (st === WALK_MSI) {
      // Step 18: the GPA is a virtual interrupt file, translated by the MSI page table.
      const x = this.#access === ACCESS_EXECUTE;
      if (!translateMsi(env.mem, env.be, dc, r.gpaPpn, x, this.#msi)) return this.#msi.fault;
      out.ppn = this.#msi.ppn;
      out.pageShift = PAGE_SHIFT;
      return null;
    }
    if (st === WALK_FAULT) return this.#walkFault();
    out.ppn = r.ppn;
    out.pageShift = r.pageShift;
    out.pbmt = r.pbmt;
    this.#cache(hasFirst, hasG, gscid, pscid, msi);
    return null;
  }

  /**
   * Steps 17-19 on an IOTLB miss: the first stage; with MSI page tables on, the check of its GPA
   * against the DC's MSI address pattern (step 18), made before any G-stage walk of that GPA;
   * then the G-stage. WALK_MSI leaves the GPA in the walk result.
   */
  #walkSteps(access: Access, user: boolean, msi: boolean): number {
    const mem = this.#env.physical;
    const r = this.#walk;
    if (!msi) return walk(mem, this.#cfg, this.#vpn, access, user, r) ? WALK_OK : WALK_FAULT;
    if (!walkFirstStage(mem, this.#cfg, this.#vpn, access, user, r)) return WALK_FAULT;
    if (isMsiPage(this.#dc!, r.gpaPpn)) return WALK_MSI;
    return walkSecondStage(mem, this.#cfg, access, r) ? WALK_OK : WALK_FAULT;
  }

  /** Whether the walk read a PTE from a poisoned page (the IO bridge reports the corruption). */
  #readPoison(r: WalkResult): boolean {
    const mem = this.#env.mem;
    if (!mem.hasPoison) return false;
    for (let i = 0; i < r.steps; i++) if (mem.isPoisoned(r.stepTable[i]!)) return true;
    return false;
  }

  #walkFault(): IommuFault {
    return faultOfCause(walkFaultCause(this.#walk, this.#access))!;
  }

  /** Whether a cached entry allows this access as is (else the IOMMU walks again). */
  #permits(e: IotlbEntry, access: Access): boolean {
    if (e.hasFirstStage && !permits(e.s1Perm, access, !this.#priv, this.#sum)) return false;
    return !e.hasGStage || permits(e.gPerm, access, true, false);
  }

  #cache(hasFirst: boolean, hasG: boolean, gscid: number, pscid: number, msi: boolean): void {
    const r = this.#walk;
    const f = this.#fill;
    f.gscid = gscid;
    f.pscid = pscid;
    f.global = hasFirst && this.#walkGlobal();
    f.vpn = this.#vpn;
    // With MSI page tables on, only 4 KiB entries: a larger one could cover an MSI page.
    f.log2Pages = msi ? 0 : r.pageShift - PAGE_SHIFT;
    f.ppn = r.ppn;
    f.gpa = r.gpaPpn;
    f.gLog2Pages = hasG ? r.gShift - PAGE_SHIFT : 0;
    f.s1Log2Pages = hasFirst ? r.s1Shift - PAGE_SHIFT : 0;
    f.s1Perm = hasFirst ? r.s1Perm : 0;
    f.gPerm = hasG ? r.gPerm : 0;
    f.pbmt = r.pbmt;
    f.hasFirstStage = hasFirst;
    f.hasGStage = hasG;
    this.#env.iotlb.insert(f);
  }

  #translateAts(req: AtsRequest, out: AtsCompletion): IommuFault | null {
    const env = this.#env;
    const dc = this.#dc!;
    const wantW = !req.noWrite;
    const wantX = req.pasidValid && req.executeRequested;
    const hasFirst = this.#firstMode !== 0;
    const hasG = dc.iohgatpMode !== 0;
    if (!hasFirst && !hasG) {
      // Both stages Bare: identity, all permissions, a large range.
      out.ppn = this.#vpn - (this.#vpn % 2 ** (BARE_ATS_SHIFT - PAGE_SHIFT));
      out.sizeShift = BARE_ATS_SHIFT;
      out.r = true;
      out.w = wantW;
      out.x = wantX;
      return null;
    }
    const gscid = hasG ? dc.gscid : -1;
    const pscid = hasFirst ? this.#pscid : -1;
    const user = !this.#priv;
    const iotlb = env.iotlb;
    const e = iotlb.lookup(gscid, pscid, this.#vpn);
    // A cached entry answers when it grants everything asked for; otherwise walk again.
    if (
      e !== null &&
      this.#permits(e, wantW ? ACCESS_WRITE : ACCESS_READ) &&
      (!wantX || this.#permits(e, ACCESS_EXECUTE))
    ) {
      iotlb.hits++;
      if (env.trace.enabled) this.#traceIotlb(true, gscid, pscid);
      out.ppn = dc.T2GPA ? e.gpaBase : e.ppnBase;
      out.sizeShift = e.log2Pages + PAGE_SHIFT;
      out.r = true;
      out.w = wantW;
      out.x = wantX;
      out.global = req.pasidValid && e.global;
      return null;
    }
    if (e !== null) iotlb.drop(e);
    iotlb.misses++;
    if (env.trace.enabled) this.#traceIotlb(false, gscid, pscid);
    this.#configureStages();
    const r = this.#walk;
    const msi = hasG && dc.msiptpMode === MSIPTP_MODE.Flat;
    let st = this.#walkSteps(this.#access, user, msi);
    let granted = wantW;
    if (st === WALK_FAULT && wantW && r.fault !== "access-fault") {
      // Write not allowed (or D not settable): try for read only.
      this.#access = ACCESS_READ;
      st = this.#walkSteps(ACCESS_READ, user, msi);
      granted = false;
    }
    if (env.trace.enabled) this.#traceWalk(st !== WALK_FAULT);
    if (this.#readPoison(r)) return FAULTS.pt_data_corruption;
    if (st === WALK_MSI) {
      const gpa = r.gpaPpn;
      if (!translateMsi(env.mem, env.be, dc, gpa, false, this.#msi)) return this.#msi.fault;
      // The MSI PTE grants R=W=1, X=0 for one 4 KiB page (W only if the first stage granted
      // it too); Global is 0 for MSI translations.
      out.ppn = dc.T2GPA ? gpa : this.#msi.ppn;
      out.sizeShift = PAGE_SHIFT;
      out.r = true;
      out.w = granted;
      return null;
    }
    if (st === WALK_FAULT) return this.#walkFault();
    this.#cache(hasFirst, hasG, gscid, pscid, msi);
    const shift = msi ? PAGE_SHIFT : r.pageShift;
    const span = 2 ** (shift - PAGE_SHIFT);
    const page = dc.T2GPA ? r.gpaPpn : r.ppn;
    out.ppn = page - (page % span);
    out.sizeShift = shift;
    out.r = true;
    out.w = granted;
    // X only with R, when asked for, when every active stage allows it, and never for a
    // supervisor request to a U=1 page.
    const s1x = !hasFirst || ((r.s1Perm & PTE_X) !== 0 && (user || (r.s1Perm & PTE_U) === 0));
    out.x = wantX && s1x && (!hasG || (r.gPerm & PTE_X) !== 0);
    out.global = hasFirst && req.pasidValid && this.#walkGlobal();
    return null;
  }

  /** A G bit on any first-stage level of the last walk makes the mapping global. */
  #walkGlobal(): boolean {
    const r = this.#walk;
    for (let i = 0; i < r.steps; i++) {
      if (r.stepStage[i] === STEP_FIRST && (r.stepPteLo[i]! & PTE_G) !== 0) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- reporting

  #reportTransaction(fault: IommuFault): void {
    const rec = this.#rec.clear();
    rec.cause = fault.cause;
    const kind = this.#kind;
    const a = this.#access;
    rec.ttyp =
      kind === KIND_ATS
        ? TTYP.ats_translation_request
        : kind === KIND_TRANSLATED
          ? a === ACCESS_EXECUTE
            ? TTYP.translated_execute
            : a === ACCESS_READ
              ? TTYP.translated_read
              : TTYP.translated_write
          : a === ACCESS_EXECUTE
            ? TTYP.untranslated_execute
            : a === ACCESS_READ
              ? TTYP.untranslated_read
              : TTYP.untranslated_write;
    rec.did = this.#did;
    rec.pv = this.#pv;
    rec.pid = this.#pid;
    rec.priv = this.#priv;
    rec.setIotval(this.#vpn, this.#offset);
    if (isGuestPageFault(fault.cause)) {
      if (this.#pdtGuestFault) {
        // Implicit access for first-stage translation (reading the PDT): bit 0 set, bit 1 clear.
        rec.setIotval2(this.#pdtGpaPage, this.#pdtGpaOffset, true, false);
      } else {
        const r = this.#walk;
        const offset = r.implicit ? r.faultGpaOffset : this.#offset;
        rec.setIotval2(r.faultGpaPpn, offset, r.implicit, r.implicitWrite);
      }
    }
    // A fault that prevents locating a valid DC is reported with DTF assumed 0.
    this.#env.report(rec, this.#dc?.DTF ?? false);
  }

  // ---------------------------------------------------------------- traces

  #traceTranslate(fault: IommuFault | null, pa: bigint | null): void {
    this.#env.trace.emit("riscv_iommu:translate", this.#env.name, {
      device_id: this.#did,
      pasid: this.#pv ? this.#pid : null,
      iova: (BigInt(this.#vpn) << 12n) | BigInt(this.#offset),
      access: `${this.#kind === KIND_TRANSLATED ? "translated-" : ""}${ACCESS_NAMES[this.#access]}`,
      result: fault === null ? "ok" : fault.code,
      pa,
    });
  }

  #traceIotlb(hit: boolean, gscid: number, pscid: number): void {
    this.#env.trace.emit(hit ? "riscv_iommu:iotlb_hit" : "riscv_iommu:iotlb_miss", this.#env.name, {
      gscid,
      pscid,
      iova: BigInt(this.#vpn) << 12n,
    });
  }

  #traceWalk(ok: boolean): void {
    const r = this.#walk;
    const stage =
      this.#cfg.first.mode !== null && this.#cfg.second.mode !== null
        ? "two-stage"
        : this.#cfg.first.mode !== null
          ? "first"
          : "second";
    let levels = 0;
    for (let i = 0; i < r.steps; i++) if (r.stepStage[i] === STEP_FIRST) levels++;
    this.#env.trace.emit("riscv_iommu:walk", this.#env.name, {
      stage,
      levels: stage === "second" ? r.steps : levels,
      ptes_read: r.steps,
      result: ok ? "ok" : `${r.fault}:${r.reason}`,
    });
  }
}

/** Leaf permission check of one stage (U rule, R/W/X, and D for writes). */
function permits(perm: number, access: Access, user: boolean, sum: boolean): boolean {
  if ((perm & PTE_U) !== 0) {
    if (!user && (access === ACCESS_EXECUTE || !sum)) return false;
  } else if (user) {
    return false;
  }
  if (access === ACCESS_READ) return (perm & PTE_R) !== 0;
  if (access === ACCESS_WRITE) return (perm & PTE_W) !== 0 && (perm & PTE_D) !== 0;
  return (perm & PTE_X) !== 0;
}
