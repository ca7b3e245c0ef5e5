// The one page-table walker, shared by the CPU MMU (mm/) and the RISC-V IOMMU.
//
//   const cfg = new WalkConfig();            // once per context (IOMMU, hart)
//   const out = new WalkResult();            // once per caller
//   cfg.first.set(SV48, iosatpPpn);          // first stage, or null for Bare
//   cfg.second.set(SV48X4, iohgatpPpn);      // G-stage, or null for Bare
//   cfg.first.ad = "update";                 // DC.tc.SADE; cfg.second.ad for GADE
//   if (walk(memory, cfg, vpn, ACCESS_WRITE, user, out)) use(out.ppn, out.pageShift, …)
//   else report(walkFaultCause(out, ACCESS_WRITE), out.faultGpaPpn, out.implicit, …)
//
// `vpn` is the full 64-bit input address shifted right by 12 (a number below 2^52), so
// canonical checks see every bit. `user` is the privilege of the request (U-mode, or an IOMMU
// request without supervisor privilege); the G-stage always checks as user.
//
// Algorithm: the privileged spec's "Virtual Address Translation Process" (steps numbered in
// comments), with the hypervisor chapter's "Two-Stage Address Translation" when both stages are
// on: the first stage's table addresses and output are guest physical, every first-stage PTE
// access is an implicit G-stage translation (checked as a user read, or a user write when A/D
// are set), and any fault is reported for the original access type.
//
// Hot path: no allocation, no BigInt, no closures; PTEs are read as two 32-bit halves with
// memory.pageU32 and A/D written back with memory.writablePageU32.

import { SimError } from "../../base/errors.js";
import type { PhysicalMemory } from "../memory.js";
import { isCanonicalVpn, vpnIndex } from "./modes.js";
import {
  classifyPte,
  PTE_A,
  PTE_D,
  PTE_HI_N,
  PTE_INVALID,
  PTE_LEAF,
  PTE_POINTER,
  PTE_R,
  PTE_RESERVED_BITS,
  PTE_U,
  PTE_W,
  PTE_X,
  ptePbmt,
  ptePpn,
} from "./pte.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  MAX_WALK_STEPS,
  STEP_FIRST,
  STEP_SECOND,
  type WalkConfig,
  type WalkFaultReason,
  type WalkResult,
} from "./walk-result.js";

const TWO32 = 0x1_0000_0000;
const POW2 = new Float64Array(64).map((_, i) => 2 ** i);

/**
 * Translates page `vpn` for one access. Fills `out` (see WalkResult for which fields are valid)
 * and returns `out.ok`. At least one stage must be on; `cfg.first.mode` must be a first-stage
 * mode and `cfg.second.mode` a G-stage mode (misuse throws SimError).
 */
export function walk(
  memory: PhysicalMemory,
  cfg: WalkConfig,
  vpn: number,
  access: Access,
  user: boolean,
  out: WalkResult,
): boolean {
  return (
    walkFirstStage(memory, cfg, vpn, access, user, out) && walkSecondStage(memory, cfg, access, out)
  );
}

/**
 * The first half of `walk`: the first-stage translation of page `vpn` (its table reads go
 * through the G-stage when that is on). On success `out.gpaPpn` holds the guest physical page
 * (`vpn` itself when the first stage is Bare) and `out.ok` stays false until
 * `walkSecondStage` completes the walk. A caller that must look at the GPA before the G-stage
 * translates it (the RISC-V IOMMU's MSI address check, "Process to translate an IOVA" step 18)
 * calls the halves itself.
 */
export function walkFirstStage(
  memory: PhysicalMemory,
  cfg: WalkConfig,
  vpn: number,
  access: Access,
  user: boolean,
  out: WalkResult,
): boolean {
  const first = cfg.first.mode;
  const second = cfg.second.mode;
  if ((first === null && second === null) || first?.gStage === true || second?.gStage === false) {
    throw new SimError(
      `walk needs a first-stage and/or a G-stage mode, got ${first?.name ?? "Bare"} + ${second?.name ?? "Bare"}`,
    );
  }
  out.ok = false;
  out.ppn = 0;
  out.pageShift = 0;
  out.pbmt = 0;
  out.gpaPpn = 0;
  out.s1Level = 0;
  out.s1Shift = 0;
  out.s1Perm = 0;
  out.s1Pbmt = 0;
  out.gLevel = 0;
  out.gShift = 0;
  out.gPerm = 0;
  out.gPbmt = 0;
  out.fault = "none";
  out.reason = "none";
  out.faultStage = "first";
  out.faultLevel = -1;
  out.faultGpaPpn = 0;
  out.faultGpaOffset = 0;
  out.implicit = false;
  out.implicitWrite = false;
  out.steps = 0;

  let gpa = vpn;
  if (first !== null) {
    gpa = walkStage(memory, cfg, false, vpn, access, user, false, 0, out);
    if (gpa < 0) return false;
  }
  out.gpaPpn = gpa;
  return true;
}

/**
 * The second half of `walk`, after a successful `walkFirstStage` on the same `out`: the
 * G-stage translation of `out.gpaPpn` (identity when the G-stage is Bare), then the combined
 * results. Returns `out.ok`.
 */
export function walkSecondStage(
  memory: PhysicalMemory,
  cfg: WalkConfig,
  access: Access,
  out: WalkResult,
): boolean {
  const first = cfg.first.mode;
  const second = cfg.second.mode;
  const gpa = out.gpaPpn;
  let ppn = gpa;
  if (second !== null) {
    ppn = walkStage(memory, cfg, true, gpa, access, true, false, 0, out);
    if (ppn < 0) return false;
  }
  out.ppn = ppn;
  if (first === null) out.pageShift = out.gShift;
  else if (second === null) out.pageShift = out.s1Shift;
  else out.pageShift = out.s1Shift < out.gShift ? out.s1Shift : out.gShift;
  // Svpbmt with two stages: non-zero VS-stage PBMT overrides the G-stage's.
  out.pbmt = out.s1Pbmt !== 0 ? out.s1Pbmt : out.gPbmt;
  out.ok = true;
  return true;
}

/**
 * One stage's walk of page `vpn` (a VA page for the first stage, a GPA page for the G-stage).
 * Returns the output page number, or -1 after filling the fault. `implicit`: a G-stage walk
 * made for a first-stage PTE access at byte `offset` of page `vpn`.
 */
function walkStage(
  memory: PhysicalMemory,
  cfg: WalkConfig,
  g: boolean,
  vpn: number,
  access: Access,
  user: boolean,
  implicit: boolean,
  offset: number,
  out: WalkResult,
): number {
  const st = g ? cfg.second : cfg.first;
  const mode = st.mode!;
  const nested = !g && cfg.second.mode !== null;
  if (!isCanonicalVpn(mode, vpn)) {
    return fail(out, g, false, "non-canonical", -1, vpn, offset, implicit, access);
  }
  const vlo = vpn >>> 0;
  const vhi = (vpn - vlo) / TWO32;
  let level = mode.levels - 1;
  let table = st.rootPpn; // step 1: a = satp.ppn × PAGESIZE, i = LEVELS - 1
  for (;;) {
    // Step 2: pte = PTE at a + va.vpn[i] × PTESIZE (the x4 root spans four pages).
    const shift = 9 * level;
    let idx = vpnIndex(mode, level, vlo, vhi);
    const page = table + (idx >>> 9);
    idx &= 511;
    let spage = page;
    if (nested) {
      // The PTE's address is a GPA: implicit G-stage read, as a user access.
      spage = walkStage(memory, cfg, true, page, ACCESS_READ, true, true, idx << 3, out);
      if (spage < 0) return -1;
    }
    const words = spage < cfg.ppnLimit ? memory.pageU32(spage) : null;
    const step = out.steps;
    if (step < MAX_WALK_STEPS) {
      out.stepStage[step] = g ? STEP_SECOND : STEP_FIRST;
      out.stepLevel[step] = level;
      out.stepTable[step] = spage;
      out.stepIndex[step] = idx;
      out.stepPteLo[step] = 0;
      out.stepPteHi[step] = 0;
      out.stepUpdated[step] = 0;
      out.steps = step + 1;
    }
    if (words === null) {
      // "If accessing pte violates a PMA or PMP check, raise an access-fault exception."
      return fail(out, g, true, "pte-access", level, vpn, offset, implicit, access);
    }
    const w = idx << 1;
    const lo = words[w]!;
    const hi = words[w + 1]!;
    if (step < MAX_WALK_STEPS) {
      out.stepPteLo[step] = lo;
      out.stepPteHi[step] = hi;
    }

    // Steps 3-4: validity, reserved bits and encodings, leaf or pointer.
    const cls = classifyPte(lo, hi, level, g, st.svnapot, st.svpbmt, st.shadowStack);
    if (cls === PTE_POINTER) {
      if (level === 0) {
        return fail(out, g, false, "non-leaf-at-last-level", 0, vpn, offset, implicit, access);
      }
      level--;
      table = ptePpn(lo, hi);
      continue;
    }
    if (cls !== PTE_LEAF) {
      const reason: WalkFaultReason =
        cls === PTE_INVALID
          ? "invalid"
          : cls === PTE_RESERVED_BITS
            ? "reserved-bits"
            : "reserved-encoding";
      return fail(out, g, false, reason, level, vpn, offset, implicit, access);
    }

    // Step 5: a superpage must be physically aligned to its size.
    const ppn = ptePpn(lo, hi);
    if (level > 0 && ppn % POW2[shift]! !== 0) {
      return fail(out, g, false, "misaligned-superpage", level, vpn, offset, implicit, access);
    }

    // Step 6: the U bit. G-stage walks always run with user = true: every G-stage access is a
    // user access (IOMMU: "the transaction is treated as not requesting supervisor privilege").
    // Supervisor: U=1 pages only with SUM, and never for execute.
    if ((lo & PTE_U) === 0) {
      if (user) return fail(out, g, false, "permission", level, vpn, offset, implicit, access);
    } else if (!user && (access === ACCESS_EXECUTE || !st.sum)) {
      return fail(out, g, false, "permission", level, vpn, offset, implicit, access);
    }

    // Steps 7-8: Zicfiss shadow-stack pages (classifyPte lets xwr=010 through only when enabled):
    // loads may read them; regular stores and fetches raise access faults. Otherwise R/W/X, with
    // MXR letting reads use X-only pages.
    if ((lo & (PTE_R | PTE_W | PTE_X)) === PTE_W) {
      if (access !== ACCESS_READ) {
        return fail(out, g, true, "shadow-stack", level, vpn, offset, implicit, access);
      }
    } else if (
      access === ACCESS_READ
        ? (lo & PTE_R) === 0 && !(st.mxr && (lo & PTE_X) !== 0)
        : access === ACCESS_WRITE
          ? (lo & PTE_W) === 0
          : (lo & PTE_X) === 0
    ) {
      return fail(out, g, false, "permission", level, vpn, offset, implicit, access);
    }

    // Step 9: A and D.
    let perm = lo & 0xff;
    const want = access === ACCESS_WRITE ? PTE_A | PTE_D : PTE_A;
    if ((lo & want) !== want) {
      if (st.ad === "fault") {
        return fail(out, g, false, "accessed-dirty", level, vpn, offset, implicit, access);
      }
      let wpage = spage;
      if (nested) {
        // Storing A/D into a first-stage PTE is an implicit write through the G-stage.
        wpage = walkStage(memory, cfg, true, page, ACCESS_WRITE, true, true, idx << 3, out);
        if (wpage < 0) return -1;
      }
      const wwords = wpage < cfg.ppnLimit ? memory.writablePageU32(wpage) : null;
      if (wwords === null)
        return fail(out, g, true, "pte-access", level, vpn, offset, implicit, access);
      // Atomic compare-and-set: "If the comparison fails, return to step 2."
      if (wwords[w] !== lo || wwords[w + 1] !== hi) continue;
      wwords[w] = (lo | want) >>> 0;
      if (step < MAX_WALK_STEPS) out.stepUpdated[step] = 1;
      perm |= want;
    }

    // Step 10: pa.ppn[i-1:0] = va.vpn[i-1:0] for a superpage; Svnapot: the implicit read returns
    // ppn[0][3:0] replaced by vpn[0][3:0].
    let outPpn: number;
    let leafShift: number;
    if (level === 0) {
      if ((hi & PTE_HI_N) !== 0) {
        outPpn = ppn - 8 + (vlo & 15);
        leafShift = 16;
      } else {
        outPpn = ppn;
        leafShift = 12;
      }
    } else {
      outPpn = ppn + (vpn % POW2[shift]!);
      leafShift = 12 + shift;
    }
    if (g) {
      out.gLevel = level;
      out.gShift = leafShift;
      out.gPerm = perm;
      out.gPbmt = ptePbmt(hi);
    } else {
      out.s1Level = level;
      out.s1Shift = leafShift;
      out.s1Perm = perm;
      out.s1Pbmt = ptePbmt(hi);
    }
    return outPpn;
  }
}

function fail(
  out: WalkResult,
  g: boolean,
  accessFault: boolean,
  reason: WalkFaultReason,
  level: number,
  vpn: number,
  offset: number,
  implicit: boolean,
  access: Access,
): number {
  out.fault = accessFault ? "access-fault" : g ? "guest-page-fault" : "page-fault";
  out.reason = reason;
  out.faultStage = g ? "second" : "first";
  out.faultLevel = level;
  if (g) {
    out.faultGpaPpn = vpn;
    out.faultGpaOffset = offset;
  }
  out.implicit = implicit;
  out.implicitWrite = implicit && access === ACCESS_WRITE;
  return -1;
}
