// What the walker (walk.ts) takes and gives: the per-stage configuration, the access type, and
// the caller-owned result object it fills. Kept apart from the walker so the shape is stable.
//
// Both objects are allocated once by their owner (an IOMMU, a hart) and reused for every walk:
// configure by assigning fields, walk, read fields. Nothing here allocates per walk.

import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import type { PagingMode } from "./modes.js";

// ---- access type of the original request ----
export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_EXECUTE = 2;
/** Read, write (stores and AMOs) or execute (instruction fetch / read-for-execute). */
export type Access = typeof ACCESS_READ | typeof ACCESS_WRITE | typeof ACCESS_EXECUTE;

/**
 * A/D handling of one stage (priv spec "Svade" vs hardware update; RISC-V IOMMU DC.tc.SADE for
 * the first stage and DC.tc.GADE for the G-stage):
 * - "fault": A=0, or D=0 on a write, is a (guest-)page fault;
 * - "update": the walker sets A (and D on a write) in memory, atomically with its checks.
 */
export type AdPolicy = "fault" | "update";

/** Configuration of one translation stage. `mode === null` means Bare (stage off). */
export class StageConfig {
  /** Sv39/Sv48/Sv57 for the first stage, Sv39x4/Sv48x4/Sv57x4 for the G-stage, or null. */
  mode: PagingMode | null = null;
  /**
   * Root table page number (satp/iosatp.PPN, hgatp/iohgatp.PPN). For the first stage of a
   * two-stage walk it is a guest physical page. x4 roots must be 16 KiB aligned (PPN % 4 = 0).
   */
  rootPpn = 0;
  ad: AdPolicy = "fault";
  /** Svnapot in effect: N=1 marks 64 KiB NAPOT leaves; otherwise bit 63 is reserved. */
  svnapot = false;
  /** Svpbmt in effect (menvcfg/henvcfg.PBMTE, IOMMU capabilities.Svpbmt); otherwise 62:61 reserved. */
  svpbmt = false;
  /**
   * MXR: reads may use X-only pages. For the G-stage this is the HS-level MXR, which a CPU also
   * applies to its first stage (priv: "Setting MXR at HS-level … overrides both").
   */
  mxr = false;
  /** First stage only: SUM, supervisor may read/write U=1 pages (never execute them). */
  sum = false;
  /**
   * First stage only, CPUs with Zicfiss active (xenvcfg.SSE=1): xwr=010 is a shadow-stack page.
   * Keep false for IO: RISC-V IOMMU "Process to translate an IOVA" leaves xwr=010 reserved.
   */
  shadowStack = false;

  /** Sets mode and root together, checking the root alignment of x4 modes. */
  set(mode: PagingMode | null, rootPpn: number): this {
    if (mode !== null && mode.rootPages > 1 && rootPpn % mode.rootPages !== 0) {
      throw new SimError(`${mode.name} root 0x${rootPpn.toString(16)} is not 16 KiB aligned`);
    }
    if (!Number.isSafeInteger(rootPpn) || rootPpn < 0) {
      throw new SimError(`root page number ${rootPpn} is not a page number`);
    }
    this.mode = mode;
    this.rootPpn = rootPpn;
    return this;
  }
}

/** Both stages of one translation context. */
export class WalkConfig {
  /** First stage (VS-stage, or the single stage S/U or IOMMU single-stage). */
  readonly first = new StageConfig();
  /** G-stage (second stage). */
  readonly second = new StageConfig();
  /**
   * Pages of physical address space the walker can reach: a page-table page at or above it is
   * an access fault, as one outside RAM is. 2^44 (every PTE PPN) unless the walking agent's
   * physical addresses are narrower, e.g. a RISC-V IOMMU's 2^(capabilities.PAS - 12).
   */
  ppnLimit = 2 ** 44;
}

// ---- faults ----

/** Which exception: the three kinds of the priv spec (and of the IOMMU's fault causes). */
export type WalkFault = "none" | "page-fault" | "guest-page-fault" | "access-fault";

/**
 * Why the walk stopped (the spec step that failed):
 * - "invalid": V=0;
 * - "reserved-bits": PTE bits reserved for future use set (60:54, N without Svnapot, PBMT
 *   without Svpbmt);
 * - "reserved-encoding": W=1,R=0 (xwr=010 included unless shadow stacks are on), PBMT=3 on a
 *   leaf, D/A/U/N/PBMT on a non-leaf PTE, an N=1 leaf that is not the 64 KiB NAPOT encoding;
 * - "non-leaf-at-last-level": a pointer PTE at level 0 ("If i < 0 … page-fault");
 * - "misaligned-superpage": a leaf at level i > 0 with ppn[i-1:0] ≠ 0;
 * - "non-canonical": first stage, VA bits 63..VAW not all equal bit VAW-1; G-stage, GPA bits
 *   above the GPA width not zero;
 * - "permission": U/SUM/privilege rule or R/W/X (with MXR) forbids the access;
 * - "accessed-dirty": A=0, or D=0 on a write, under the "fault" A/D policy;
 * - "pte-access": access fault, a PTE to read lies outside RAM (memory.pageU32 is null) or at
 *   or above WalkConfig.ppnLimit;
 * - "shadow-stack": access fault, a regular write or an execute of a shadow-stack page.
 *
 * No RISC-V mode forbids a leaf at any level (priv: "Any level of PTE may be a leaf PTE"), so
 * there is no reason for that; a NAPOT PTE above level 0 is a "reserved-encoding".
 */
export type WalkFaultReason =
  | "none"
  | "invalid"
  | "reserved-bits"
  | "reserved-encoding"
  | "non-leaf-at-last-level"
  | "misaligned-superpage"
  | "non-canonical"
  | "permission"
  | "accessed-dirty"
  | "pte-access"
  | "shadow-stack";

/** The stage a fault belongs to: "first" (VS/single stage) or "second" (G-stage). */
export type WalkStage = "first" | "second";

/** Capacity of the step buffer; the deepest walk (Sv57 over Sv57x4 with A/D update) needs 40. */
export const MAX_WALK_STEPS = 64;

/** Step stage codes in `WalkResult.stepStage`. */
export const STEP_FIRST = 0;
export const STEP_SECOND = 1;

/**
 * The walker's output. Fields are valid according to `ok`:
 *
 * success (`ok`): `ppn`, `pageShift`, `pbmt`, `gpaPpn`, and the per-stage leaf fields of the
 * active stages (`s1*` when the first stage is not Bare, `g*` when the G-stage is not Bare).
 *
 * failure (`!ok`): `fault`, `reason`, `faultStage`, `faultLevel`, and for "guest-page-fault"
 * `faultGpaPpn`/`faultGpaOffset`/`implicit`/`implicitWrite`.
 *
 * Always: `steps` PTE reads in order (both stages interleaved), in the step arrays.
 */
export class WalkResult {
  ok = false;

  // ---- success ----
  /** Supervisor physical page number of the 4 KiB page holding the address. */
  ppn = 0;
  /**
   * log2 of the largest naturally aligned region around the address that this translation
   * covers: the smaller of the active stages' leaf sizes (what an IOTLB may cache as one entry).
   */
  pageShift = 0;
  /** Effective Svpbmt type: the first-stage PBMT if non-zero, else the G-stage PBMT. */
  pbmt = 0;
  /** Guest physical page: the first stage's output (two-stage), else the input (G-only) or ppn. */
  gpaPpn = 0;
  /** First-stage leaf: level, log2 size (12, 16 NAPOT, 21, 30, 39, 48), PTE bits 7:0, PBMT. */
  s1Level = 0;
  s1Shift = 0;
  s1Perm = 0;
  s1Pbmt = 0;
  /** G-stage leaf of the final GPA translation: level, log2 size, PTE bits 7:0, PBMT. */
  gLevel = 0;
  gShift = 0;
  gPerm = 0;
  gPbmt = 0;

  // ---- failure ----
  fault: WalkFault = "none";
  reason: WalkFaultReason = "none";
  faultStage: WalkStage = "first";
  /** Level of the PTE that faulted; -1 when the address was refused before any read. */
  faultLevel = -1;
  /**
   * Guest-page fault: the faulting GPA is faultGpaPpn × 4096 + faultGpaOffset. For an implicit
   * access it is the PTE's address (offset = index × 8); for the final translation the offset is
   * 0 and the caller adds its access's page offset (IOMMU iotval2 may report offset 0 anyway).
   */
  faultGpaPpn = 0;
  faultGpaOffset = 0;
  /**
   * The fault came from the G-stage translation of an implicit first-stage PTE access (iotval2
   * bit 0 for guest-page faults), and that implicit access was a write, i.e. an A/D update
   * (iotval2 bit 1).
   */
  implicit = false;
  implicitWrite = false;

  // ---- the PTEs read, in order ----
  steps = 0;
  /** STEP_FIRST or STEP_SECOND. */
  readonly stepStage = new Uint8Array(MAX_WALK_STEPS);
  readonly stepLevel = new Uint8Array(MAX_WALK_STEPS);
  /** Physical page number of the table page read. */
  readonly stepTable = new Float64Array(MAX_WALK_STEPS);
  /** PTE index within that page (0…511): the PTE is at stepTable × 4096 + stepIndex × 8. */
  readonly stepIndex = new Uint16Array(MAX_WALK_STEPS);
  /** The PTE value read (0 when the read was an access fault). */
  readonly stepPteLo = new Uint32Array(MAX_WALK_STEPS);
  readonly stepPteHi = new Uint32Array(MAX_WALK_STEPS);
  /** 1 when the walker then wrote A/D back into this PTE. */
  readonly stepUpdated = new Uint8Array(MAX_WALK_STEPS);

  /** JSON view (for traces and inspection; allocates, so not for the hot path). */
  toJSON(): Json {
    const steps: Json[] = [];
    for (let i = 0; i < Math.min(this.steps, MAX_WALK_STEPS); i++) {
      const pte = (BigInt(this.stepPteHi[i]!) << 32n) | BigInt(this.stepPteLo[i]!);
      steps.push({
        stage: this.stepStage[i] === STEP_FIRST ? "first" : "second",
        level: this.stepLevel[i]!,
        pte_address: jsonAddr(BigInt(this.stepTable[i]!) * 4096n + BigInt(this.stepIndex[i]!) * 8n),
        pte: jsonAddr(pte),
        updated: this.stepUpdated[i] === 1,
      });
    }
    if (this.ok) {
      return {
        ok: true,
        ppn: jsonAddr(this.ppn),
        gpa_ppn: jsonAddr(this.gpaPpn),
        page_shift: this.pageShift,
        pbmt: this.pbmt,
        first: { level: this.s1Level, shift: this.s1Shift, perm: this.s1Perm, pbmt: this.s1Pbmt },
        second: { level: this.gLevel, shift: this.gShift, perm: this.gPerm, pbmt: this.gPbmt },
        steps,
      };
    }
    return {
      ok: false,
      fault: this.fault,
      reason: this.reason,
      stage: this.faultStage,
      level: this.faultLevel,
      gpa:
        this.fault === "guest-page-fault"
          ? jsonAddr(BigInt(this.faultGpaPpn) * 4096n + BigInt(this.faultGpaOffset))
          : null,
      implicit: this.implicit,
      implicit_write: this.implicitWrite,
      steps,
    };
  }
}

/**
 * The exception cause number of a failed walk for the original access type. The privileged
 * spec and the RISC-V IOMMU fault-record CAUSE share these numbers: access fault 1/5/7, page
 * fault 12/13/15, guest-page fault 20/21/23 (instruction / read / write). An implicit access is
 * reported for the original access type too (priv "Two-Stage Address Translation").
 */
export function walkFaultCause(r: WalkResult, access: Access): number {
  const k = access === ACCESS_EXECUTE ? 0 : access === ACCESS_READ ? 1 : 2;
  switch (r.fault) {
    case "access-fault":
      return k === 0 ? 1 : k === 1 ? 5 : 7;
    case "page-fault":
      return k === 0 ? 12 : k === 1 ? 13 : 15;
    case "guest-page-fault":
      return k === 0 ? 20 : k === 1 ? 21 : 23;
    default:
      throw new SimError("walkFaultCause on a walk that did not fault");
  }
}
