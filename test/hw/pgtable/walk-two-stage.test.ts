// Two-stage translation (priv "Two-Stage Address Translation"): a first stage whose tables and
// output are guest physical, every first-stage PTE access translated by the G-stage.

import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SV39, SV39X4, SV48, SV48X4 } from "../../../src/hw/pgtable/modes.js";
import { PageTable } from "../../../src/hw/pgtable/page-table.js";
import {
  decodePte,
  encodePte,
  PTE_A,
  PTE_D,
  PTE_R,
  PTE_U,
  PTE_W,
  PTE_X,
} from "../../../src/hw/pgtable/pte.js";
import { walk, walkFirstStage, walkSecondStage } from "../../../src/hw/pgtable/walk.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  STEP_FIRST,
  STEP_SECOND,
  WalkConfig,
  WalkResult,
  walkFaultCause,
} from "../../../src/hw/pgtable/walk-result.js";
import { AD, alignedAddress, machine, RAM_BASE, RAM_PAGES, RW } from "./fixture.js";

const G_RW = RW | PTE_U | AD;
/** Guest physical address of a first-stage table = its SPA + this (not an identity map). */
const GPA_DELTA = 0x10_0000_0000n;

/**
 * An Sv48 first stage built by hand in guest-physical terms over an Sv48x4 G-stage table:
 * each first-stage table lives in a frame at SPA s and is known to the guest as GPA s + DELTA,
 * which the G-stage maps (4 KiB, RW, U) unless told not to.
 */
function twoStage() {
  const { mem, frames } = machine();
  const g = PageTable.create(mem, frames, SV48X4)!;
  const tables = new Map<bigint, bigint>(); // GPA page address → SPA page address
  const newTable = (mapInG = true): bigint => {
    const spa = BigInt(frames.alloc()) << 12n;
    const gpa = spa + GPA_DELTA;
    tables.set(gpa, spa);
    if (mapInG) expect(g.map(gpa, spa, 0x1000n, G_RW)).toBe("ok");
    return gpa;
  };
  const rootGpa = newTable();
  /** Maps 4 KiB `va` → `gpa` in the first stage; returns the GPAs of the tables on its path. */
  const vsMap = (va: bigint, gpa: bigint, perm: number, mapTablesInG = true): bigint[] => {
    let table = rootGpa;
    const path = [table];
    for (let level = 3; level > 0; level--) {
      const idx = (va >> BigInt(12 + 9 * level)) & 511n;
      const slot = tables.get(table)! + idx * 8n;
      let pte = decodePte(mem.read64(slot));
      if (!pte.v) {
        const next = newTable(mapTablesInG);
        mem.write64(slot, encodePte({ v: true, ppn: Number(next >> 12n) }));
        pte = decodePte(mem.read64(slot));
      }
      table = BigInt(pte.ppn) << 12n;
      path.push(table);
    }
    const idx = (va >> 12n) & 511n;
    mem.write64(
      tables.get(table)! + idx * 8n,
      encodePte({ v: true, ppn: Number(gpa >> 12n) }) | BigInt(perm),
    );
    return path;
  };
  const cfg = new WalkConfig();
  cfg.first.set(SV48, Number(rootGpa >> 12n));
  cfg.second.set(SV48X4, g.rootPpn);
  const out = new WalkResult();
  const go = (va: bigint, access: Access = ACCESS_READ, user = false) =>
    walk(mem, cfg, Number(va >> 12n), access, user, out);
  return { mem, frames, g, tables, vsMap, cfg, out, go, rootGpa };
}

const VA = 0x0000_1234_5678_9000n;
const TARGET_GPA = 0x2_0000_3000n;
const TARGET_SPA = 0x8080_0000n;

describe("two-stage walk", () => {
  it("translates VA → GPA → SPA, reading every first-stage PTE through the G-stage", () => {
    const t = twoStage();
    t.vsMap(VA, TARGET_GPA, PTE_R | PTE_W | AD);
    expect(t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW)).toBe("ok");
    expect(t.go(VA, ACCESS_WRITE)).toBe(true);
    expect(t.out.ppn).toBe(Number(TARGET_SPA >> 12n));
    expect(t.out.gpaPpn).toBe(Number(TARGET_GPA >> 12n));
    expect([t.out.s1Level, t.out.s1Shift, t.out.gLevel, t.out.gShift, t.out.pageShift]).toEqual([
      0, 12, 0, 12, 12,
    ]);
    // Per first-stage level: 4 G-stage reads then the first-stage PTE; then 4 for the final GPA.
    expect(t.out.steps).toBe(4 * 5 + 4);
    const stages = Array.from(t.out.stepStage.subarray(0, t.out.steps));
    const F = STEP_FIRST;
    const S = STEP_SECOND;
    expect(stages).toEqual([
      S,
      S,
      S,
      S,
      F,
      S,
      S,
      S,
      S,
      F,
      S,
      S,
      S,
      S,
      F,
      S,
      S,
      S,
      S,
      F,
      S,
      S,
      S,
      S,
    ]);
    // The first-stage PTEs were read at the SPAs the G-stage produced.
    expect(BigInt(t.out.stepTable[4]!) << 12n).toBe(t.tables.get(t.rootGpa));
    expect(t.out.stepTable[0]).toBe(t.g.rootPpn + ((Number(t.rootGpa >> 12n) >>> 27) & 3));
  });

  test.prop(
    [
      fc
        .constantFrom(...SV39.leafShifts)
        .chain((s1) =>
          fc.tuple(
            fc.constant(s1),
            alignedAddress(SV39, s1),
            fc.bigInt({ min: 0n, max: (1n << BigInt(s1 - 12)) - 1n }),
          ),
        ),
      fc
        .constantFrom(...SV39X4.leafShifts)
        .chain((s2) => fc.tuple(fc.constant(s2), fc.bigInt({ min: 0n, max: (1n << 56n) - 1n }))),
      fc.constantFrom<Access>(ACCESS_READ, ACCESS_WRITE, ACCESS_EXECUTE),
      fc.integer({ min: 0, max: 2 }),
      fc.integer({ min: 0, max: 2 }),
    ],
    { numRuns: 80 },
  )(
    "round trips for every pair of leaf sizes; page size is the smaller, PBMT the first stage's if set",
    ([s1, va, page], [s2, spaRaw], access, pbmt1, pbmt2) => {
      const { mem, frames } = machine();
      const vs = PageTable.create(mem, frames, SV39)!;
      const g = PageTable.create(mem, frames, SV39X4)!;
      // The G-stage identity-maps RAM (so first-stage table pointers are valid GPAs)…
      for (let off = 0n; off < BigInt(RAM_PAGES) << 12n; off += 0x20_0000n) {
        expect(g.map(RAM_BASE + off, RAM_BASE + off, 0x20_0000n, G_RW | PTE_X)).toBe("ok");
      }
      // …and the guest's data GPA (above 4 GiB, aligned for both sizes) to a random SPA.
      const big = 1n << BigInt(Math.max(s1, s2));
      const gpa = 0x1_0000_0000n + big * 5n;
      const size2 = 1n << BigInt(s2);
      const spa = spaRaw & ~(size2 - 1n);
      expect(vs.map(va, gpa, 1n << BigInt(s1), RW | PTE_X | AD, pbmt1)).toBe("ok");
      const cfg = new WalkConfig();
      cfg.first.set(SV39, vs.rootPpn);
      cfg.second.set(SV39X4, g.rootPpn);
      for (const st of [cfg.first, cfg.second]) {
        st.svnapot = true;
        st.svpbmt = true;
      }
      // The G mapping covering gpa + page offset.
      const gpaAt = gpa + (page << 12n);
      const gBase = gpaAt & ~(size2 - 1n);
      expect(g.map(gBase, spa, size2, G_RW | PTE_X, pbmt2)).toBe("ok");
      const out = new WalkResult();
      const at = va + (page << 12n);
      expect(walk(mem, cfg, Number(at >> 12n), access, false, out)).toBe(true);
      expect(BigInt(out.ppn)).toBe((spa + (gpaAt - gBase)) >> 12n);
      expect(BigInt(out.gpaPpn)).toBe(gpaAt >> 12n);
      expect([out.s1Shift, out.gShift, out.pageShift]).toEqual([s1, s2, Math.min(s1, s2)]);
      expect(out.pbmt).toBe(pbmt1 !== 0 ? pbmt1 : pbmt2);
      expect([out.s1Pbmt, out.gPbmt]).toEqual([pbmt1, pbmt2]);
    },
  );

  it("walkFirstStage stops at the GPA without touching the G-stage leaf; walkSecondStage finishes", () => {
    const t = twoStage();
    t.vsMap(VA, TARGET_GPA, PTE_R | PTE_W | AD);
    expect(t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, RW | PTE_U)).toBe("ok"); // A=D=0
    t.cfg.second.ad = "update";
    const leafPte = () => t.g.lookup(TARGET_GPA)!.perm & AD;
    expect(walkFirstStage(t.mem, t.cfg, Number(VA >> 12n), ACCESS_WRITE, false, t.out)).toBe(true);
    expect([t.out.ok, t.out.gpaPpn, t.out.steps]).toEqual([false, Number(TARGET_GPA >> 12n), 20]);
    expect(leafPte()).toBe(0); // the final GPA has not been translated yet
    expect(walkSecondStage(t.mem, t.cfg, ACCESS_WRITE, t.out)).toBe(true);
    expect([t.out.ok, t.out.ppn, t.out.steps]).toEqual([true, Number(TARGET_SPA >> 12n), 24]);
    expect(leafPte()).toBe(AD);
    // Together they are `walk` (which now finds A/D set).
    const whole = new WalkResult();
    expect(walk(t.mem, t.cfg, Number(VA >> 12n), ACCESS_WRITE, false, whole)).toBe(true);
    const fields = (o: WalkResult) => [o.ppn, o.gpaPpn, o.pageShift, o.steps, o.s1Perm, o.gPerm];
    expect(fields(whole)).toEqual(fields(t.out));
  });

  it("implicit guest-page fault: a first-stage table page the G-stage does not map", () => {
    const t = twoStage();
    const path = t.vsMap(VA, TARGET_GPA, RW | AD, false);
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW);
    expect(t.go(VA, ACCESS_WRITE)).toBe(false);
    expect([
      t.out.fault,
      t.out.reason,
      t.out.faultStage,
      t.out.implicit,
      t.out.implicitWrite,
    ]).toEqual(["guest-page-fault", "invalid", "second", true, false]);
    // The level-2 table (path[1]) is the first one the G-stage lacks; the PTE's GPA is reported.
    expect(t.out.faultGpaPpn).toBe(Number(path[1]! >> 12n));
    expect(t.out.faultGpaOffset).toBe(Number((VA >> 30n) & 511n) * 8);
    // Reported for the original access type (store → cause 23).
    expect(walkFaultCause(t.out, ACCESS_WRITE)).toBe(23);
    expect(walkFaultCause(t.out, ACCESS_READ)).toBe(21);
    const view = t.out.toJSON() as { gpa: string; implicit: boolean; steps: { stage: string }[] };
    expect(view.gpa).toBe(`0x${(path[1]! + ((VA >> 30n) & 511n) * 8n).toString(16)}`);
    expect(view.implicit).toBe(true);
    // G-stage walk of the root table's GPA, the root PTE, then the G-stage walk that faults.
    expect(view.steps.map((s) => s.stage)).toEqual([
      ...["second", "second", "second", "second", "first"],
      ...["second", "second", "second", "second"],
    ]);
  });

  it("implicit write: setting A/D in a first-stage PTE needs G-stage write permission", () => {
    const t = twoStage();
    t.cfg.first.ad = "update";
    const path = t.vsMap(VA, TARGET_GPA, RW); // A = D = 0
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW);
    const leafTable = path[3]!;
    expect(t.g.protect(leafTable, 0x1000n, PTE_R | PTE_U)).toBe("ok"); // read-only to the G-stage
    expect(t.go(VA, ACCESS_READ)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.implicit, t.out.implicitWrite]).toEqual([
      "guest-page-fault",
      "permission",
      true,
      true,
    ]);
    expect(t.out.faultGpaPpn).toBe(Number(leafTable >> 12n));
    expect(t.out.faultGpaOffset).toBe(Number((VA >> 12n) & 511n) * 8);
    expect(walkFaultCause(t.out, ACCESS_READ)).toBe(21);
    const leafSpa = t.tables.get(leafTable)! + ((VA >> 12n) & 511n) * 8n;
    expect(decodePte(t.mem.read64(leafSpa)).a).toBe(false);

    // Writable to the G-stage, with G-stage A/D update: the store sets G-stage D on that page.
    expect(t.g.protect(leafTable, 0x1000n, RW | PTE_U)).toBe("ok");
    expect(t.g.protect(leafTable, 0x1000n, 0, PTE_D)).toBe("ok");
    t.cfg.second.ad = "update";
    expect(t.go(VA, ACCESS_WRITE)).toBe(true);
    const vsLeaf = decodePte(t.mem.read64(leafSpa));
    expect([vsLeaf.a, vsLeaf.d]).toEqual([true, true]);
    expect(t.g.lookup(leafTable)!.perm & PTE_D).toBe(PTE_D);
    expect(t.out.s1Perm & AD).toBe(AD);
  });

  it("G-stage A/D 'fault' policy applies to implicit reads of first-stage tables", () => {
    const t = twoStage();
    const path = t.vsMap(VA, TARGET_GPA, RW | AD);
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW);
    t.g.protect(path[2]!, 0x1000n, 0, PTE_A | PTE_D);
    expect(t.go(VA)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.implicit, t.out.faultGpaPpn]).toEqual([
      "guest-page-fault",
      "accessed-dirty",
      true,
      Number(path[2]! >> 12n),
    ]);
    t.cfg.second.ad = "update";
    expect(t.go(VA)).toBe(true);
    expect(t.g.lookup(path[2]!)!.perm & AD).toBe(PTE_A); // an implicit read sets A only
  });

  it("G-stage U=0 on a first-stage table page faults even for a supervisor request", () => {
    const t = twoStage();
    const path = t.vsMap(VA, TARGET_GPA, RW | AD);
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW);
    t.g.protect(path[0]!, 0x1000n, RW);
    expect(t.go(VA, ACCESS_READ, false)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.implicit, t.out.faultGpaPpn]).toEqual([
      "guest-page-fault",
      "permission",
      true,
      Number(path[0]! >> 12n),
    ]);
  });

  it("explicit guest-page fault on the final GPA carries that GPA and no implicit flag", () => {
    const t = twoStage();
    t.vsMap(VA, TARGET_GPA, RW | PTE_X | PTE_U | AD);
    expect(t.go(VA, ACCESS_EXECUTE, true)).toBe(false);
    expect(t.out.fault).toBe("guest-page-fault");
    expect(t.out.reason).toBe("invalid");
    expect([t.out.implicit, t.out.implicitWrite]).toEqual([false, false]);
    expect([t.out.faultGpaPpn, t.out.faultGpaOffset]).toEqual([Number(TARGET_GPA >> 12n), 0]);
    expect(walkFaultCause(t.out, ACCESS_EXECUTE)).toBe(20);
    // A first-stage fault stays a page fault.
    expect(t.go(VA + 0x1000n)).toBe(false);
    expect([t.out.fault, t.out.faultStage]).toEqual(["page-fault", "first"]);
  });

  it("GPAs above the G-stage width fault as non-canonical: the output and table pointers", () => {
    const t = twoStage();
    const tooHigh = 1n << 50n;
    t.vsMap(VA, tooHigh, RW | AD);
    expect(t.go(VA)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.implicit, t.out.faultGpaPpn]).toEqual([
      "guest-page-fault",
      "non-canonical",
      false,
      Number(tooHigh >> 12n),
    ]);
    // A first-stage pointer to a table beyond the GPA width: implicit.
    const rootSpa = t.tables.get(t.rootGpa)!;
    const other = 0x0000_7000_0000_0000n;
    t.mem.write64(
      rootSpa + ((other >> 39n) & 511n) * 8n,
      encodePte({ v: true, ppn: Number(tooHigh >> 12n) }),
    );
    expect(t.go(other)).toBe(false);
    expect([t.out.reason, t.out.implicit, t.out.faultGpaPpn]).toEqual([
      "non-canonical",
      true,
      Number(tooHigh >> 12n),
    ]);
  });

  it("access fault when the G-stage maps a first-stage table outside RAM", () => {
    const t = twoStage();
    const path = t.vsMap(VA, TARGET_GPA, RW | AD);
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, G_RW);
    expect(t.g.unmap(path[1]!, 0x1000n).status).toBe("ok");
    expect(t.g.map(path[1]!, 0x1000_0000n, 0x1000n, G_RW)).toBe("ok");
    expect(t.go(VA)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultStage, t.out.faultLevel]).toEqual([
      "access-fault",
      "pte-access",
      "first",
      2,
    ]);
  });

  it("MXR: first-stage MXR needs G-stage readability; G-stage MXR makes X-only GPAs readable", () => {
    const t = twoStage();
    t.vsMap(VA, TARGET_GPA, PTE_X | AD);
    t.g.map(TARGET_GPA, TARGET_SPA, 0x1000n, PTE_X | PTE_U | AD);
    t.cfg.first.mxr = true;
    expect(t.go(VA, ACCESS_READ)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.implicit]).toEqual([
      "guest-page-fault",
      "permission",
      false,
    ]);
    t.cfg.second.mxr = true;
    expect(t.go(VA, ACCESS_READ)).toBe(true);
    t.cfg.first.mxr = false;
    expect(t.go(VA, ACCESS_READ)).toBe(false);
    expect([t.out.fault, t.out.faultStage]).toEqual(["page-fault", "first"]);
  });
});
