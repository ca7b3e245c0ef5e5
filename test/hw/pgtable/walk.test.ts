import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../../src/base/errors.js";
import {
  PAGING_MODES,
  type PagingMode,
  SV39,
  SV39X4,
  SV48,
  SV48X4,
  SV57,
} from "../../../src/hw/pgtable/modes.js";
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
import { walk } from "../../../src/hw/pgtable/walk.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  STEP_FIRST,
  WalkConfig,
  WalkResult,
  walkFaultCause,
} from "../../../src/hw/pgtable/walk-result.js";
import {
  AD,
  alignedAddress,
  lastPteAddress,
  legalPerm,
  machine,
  pokePte,
  RW,
  stepAddress,
} from "./fixture.js";

/** A table of `mode` and a config walking it as the only stage (first or G-stage). */
function single(mode: PagingMode, pages?: number) {
  const m = machine(pages);
  const pt = PageTable.create(m.mem, m.frames, mode)!;
  const cfg = new WalkConfig();
  (mode.gStage ? cfg.second : cfg.first).set(mode, pt.rootPpn);
  const stage = mode.gStage ? cfg.second : cfg.first;
  stage.svnapot = true;
  stage.svpbmt = true;
  const out = new WalkResult();
  const go = (va: bigint, access: Access = ACCESS_READ, user = false) =>
    walk(m.mem, cfg, Number(va >> 12n), access, user, out);
  return { ...m, pt, cfg, stage, out, go };
}

function permits(perm: number, access: Access): Access | null {
  if (access === ACCESS_READ) return perm & PTE_R ? access : null;
  if (access === ACCESS_WRITE) return perm & PTE_W ? access : null;
  return perm & PTE_X ? access : null;
}

describe("walk: map → walk round trips", () => {
  for (const mode of PAGING_MODES) {
    test.prop(
      [
        fc
          .constantFrom(...mode.leafShifts)
          .chain((shift) =>
            fc.tuple(
              fc.constant(shift),
              alignedAddress(mode, shift),
              fc.bigInt({ min: 0n, max: (1n << 56n) - 1n }),
              fc.bigInt({ min: 0n, max: (1n << BigInt(shift - 12)) - 1n }),
            ),
          ),
        legalPerm,
        fc.constantFrom<Access>(ACCESS_READ, ACCESS_WRITE, ACCESS_EXECUTE),
      ],
      { numRuns: 60 },
    )(
      `${mode.name}: every leaf size translates every page inside it`,
      ([shift, va, paRaw, page], perm, access) => {
        const t = single(mode);
        const size = 1n << BigInt(shift);
        const pa = paRaw & ~(size - 1n);
        const p = mode.gStage ? perm | PTE_U : perm; // G-stage accesses are user accesses
        expect(t.pt.map(va, pa, size, p, 1)).toBe("ok");
        const at = va + (page << 12n);
        const user = (p & PTE_U) !== 0;
        const ok = t.go(at, access, user);
        expect(ok).toBe(permits(p, access) !== null);
        if (!ok) {
          expect(t.out.reason).toBe("permission");
          return;
        }
        expect(BigInt(t.out.ppn)).toBe((pa >> 12n) + page);
        expect(t.out.pageShift).toBe(shift);
        expect(t.out.pbmt).toBe(1);
        const level = shift === 16 ? 0 : (shift - 12) / 9;
        if (mode.gStage) {
          expect([t.out.gShift, t.out.gLevel, t.out.gPerm]).toEqual([shift, level, p | 1]);
          expect(t.out.gpaPpn).toBe(Number(at >> 12n));
        } else {
          expect([t.out.s1Shift, t.out.s1Level, t.out.s1Perm]).toEqual([shift, level, p | 1]);
          expect(t.out.gpaPpn).toBe(t.out.ppn);
        }
        expect(t.out.steps).toBe(mode.levels - level);
        expect(t.out.fault).toBe("none");
      },
    );
  }

  it("records each PTE read: table page and index, root first", () => {
    const t = single(SV48);
    const va = 0x0000_7fab_cdef_1000n;
    expect(t.pt.map(va, 0x1234_5000n, 0x1000n, RW | AD)).toBe("ok");
    expect(t.go(va)).toBe(true);
    expect(t.out.steps).toBe(4);
    expect(t.out.stepTable[0]).toBe(t.pt.rootPpn);
    const vpn = Number(va >> 12n);
    for (let i = 0; i < 4; i++) {
      expect(t.out.stepStage[i]).toBe(STEP_FIRST);
      expect(t.out.stepLevel[i]).toBe(3 - i);
      expect(t.out.stepIndex[i]).toBe(Math.floor(vpn / 2 ** (9 * (3 - i))) % 512);
      const pte = t.mem.read64(stepAddress(t.out, i));
      expect(t.out.stepPteLo[i]).toBe(Number(pte & 0xffff_ffffn));
      expect(t.out.stepPteHi[i]).toBe(Number(pte >> 32n));
      if (i < 3) expect(t.out.stepTable[i + 1]).toBe(decodePte(pte).ppn);
    }
    expect(t.out.ppn).toBe(0x12345);
    const view = t.out.toJSON() as {
      ok: boolean;
      ppn: string;
      steps: { level: number; pte_address: string }[];
    };
    expect([view.ok, view.ppn]).toEqual([true, "0x12345"]);
    expect(view.steps.map((s) => s.level)).toEqual([3, 2, 1, 0]);
    expect(view.steps[3]!.pte_address).toBe(`0x${lastPteAddress(t.out).toString(16)}`);
  });

  it("reads an x4 root index above 511 from the right one of the four root pages", () => {
    const t = single(SV39X4);
    const gpa = (1n << 41n) - 0x1000n; // root index 2047
    expect(t.pt.map(gpa, 0x9000_0000n, 0x1000n, RW | PTE_U | AD)).toBe("ok");
    expect(t.go(gpa, ACCESS_WRITE)).toBe(true);
    expect(t.out.stepTable[0]).toBe(t.pt.rootPpn + 3);
    expect(t.out.stepIndex[0]).toBe(511);
    expect(t.out.ppn).toBe(0x90000);
  });

  it("reuses one result object and resets it between walks", () => {
    const t = single(SV39);
    expect(t.go(0x1000n)).toBe(false);
    expect(t.out.fault).toBe("page-fault");
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_R | AD);
    expect(t.go(0x1000n)).toBe(true);
    expect([t.out.fault, t.out.reason, t.out.faultLevel]).toEqual(["none", "none", -1]);
  });

  it("refuses a configuration with no stage or a mode in the wrong stage", () => {
    const t = single(SV39);
    const cfg = new WalkConfig();
    expect(() => walk(t.mem, cfg, 0, ACCESS_READ, false, t.out)).toThrow(SimError);
    cfg.first.mode = SV39X4;
    expect(() => walk(t.mem, cfg, 0, ACCESS_READ, false, t.out)).toThrow(/first-stage/);
    expect(() => cfg.second.set(SV48X4, 0x80001)).toThrow(/16 KiB aligned/);
  });
});

describe("walk: faults", () => {
  it("V=0: page fault 'invalid' at the level of the empty entry", () => {
    const t = single(SV48);
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultStage, t.out.faultLevel]).toEqual([
      "page-fault",
      "invalid",
      "first",
      3,
    ]);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_R | AD);
    expect(t.go(0x2000n)).toBe(false);
    expect([t.out.reason, t.out.faultLevel, t.out.steps]).toEqual(["invalid", 0, 4]);
    expect(walkFaultCause(t.out, ACCESS_READ)).toBe(13);
    expect(walkFaultCause(t.out, ACCESS_WRITE)).toBe(15);
    expect(walkFaultCause(t.out, ACCESS_EXECUTE)).toBe(12);
  });

  it("access fault when a PTE to read is outside RAM", () => {
    const t = single(SV39);
    t.cfg.first.set(SV39, 0x10); // root page not RAM
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel, t.out.steps]).toEqual([
      "access-fault",
      "pte-access",
      2,
      1,
    ]);
    expect(walkFaultCause(t.out, ACCESS_WRITE)).toBe(7);
    expect(walkFaultCause(t.out, ACCESS_EXECUTE)).toBe(1);
    // A pointer to a non-RAM table faults one level down.
    t.cfg.first.set(SV39, t.pt.rootPpn);
    t.mem.write64(BigInt(t.pt.rootPpn) * 4096n, encodePte({ v: true, ppn: 0x20 }));
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel, t.out.stepTable[1]]).toEqual([
      "access-fault",
      "pte-access",
      1,
      0x20,
    ]);
  });

  it("access fault for a table page at or above ppnLimit (the agent's physical address width)", () => {
    const t = single(SV39);
    expect(t.pt.map(0x1000n, 0x8010_0000n, 0x1000n, RW)).toBe("ok"); // A=D=0
    t.cfg.first.ad = "update";
    const leafTable = t.pt.rootPpn; // tables above the root come later from the allocator
    t.cfg.ppnLimit = leafTable + 1; // the root is reachable, the tables below it are not
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel]).toEqual([
      "access-fault",
      "pte-access",
      1,
    ]);
    t.cfg.ppnLimit = 2 ** 44;
    expect(t.go(0x1000n, ACCESS_WRITE)).toBe(true);
    expect(t.pt.lookup(0x1000n)!.perm & AD).toBe(AD);
  });

  it("non-canonical first-stage VA: page fault before any PTE read", () => {
    const t = single(SV39);
    expect(t.go(0x40_0000_0000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel, t.out.steps]).toEqual([
      "page-fault",
      "non-canonical",
      -1,
      0,
    ]);
    const s57 = single(SV57);
    expect(s57.go(0x0100_0000_0000_0000n)).toBe(false);
    expect(s57.out.reason).toBe("non-canonical");
    expect(s57.go(0xff00_0000_0000_0000n)).toBe(false);
    expect(s57.out.reason).toBe("invalid");
  });

  it("reserved bits 60:54, N without Svnapot, PBMT without Svpbmt", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_R | AD);
    expect(t.go(0x1000n)).toBe(true);
    const leaf = lastPteAddress(t.out);
    pokePte(t.mem, leaf, (p) => p | (1n << 57n));
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.reason, t.out.faultLevel]).toEqual(["reserved-bits", 0]);
    pokePte(t.mem, leaf, (p) => p & ~(1n << 57n));
    expect(t.go(0x1000n)).toBe(true);

    expect(t.pt.map(0x10000n, 0x20000n, 0x10000n, PTE_R | AD)).toBe("ok");
    expect(t.go(0x13000n)).toBe(true);
    t.cfg.first.svnapot = false;
    expect(t.go(0x13000n)).toBe(false);
    expect(t.out.reason).toBe("reserved-bits");

    expect(t.pt.map(0x40000n, 0x60000n, 0x1000n, PTE_R | AD, 2)).toBe("ok");
    expect(t.go(0x40000n)).toBe(true);
    expect(t.out.pbmt).toBe(2);
    t.cfg.first.svpbmt = false;
    expect(t.go(0x40000n)).toBe(false);
    expect(t.out.reason).toBe("reserved-bits");
  });

  it("reserved encodings: PBMT=3, W without R, A/D/U on a pointer, a bad NAPOT PTE", () => {
    const t = single(SV48);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW | AD);
    t.go(0x1000n);
    const leaf = lastPteAddress(t.out);
    const pointer = stepAddress(t.out, 2);
    const original = t.mem.read64(leaf);
    const expectReserved = (level: number) => {
      expect(t.go(0x1000n)).toBe(false);
      expect([t.out.fault, t.out.reason, t.out.faultLevel]).toEqual([
        "page-fault",
        "reserved-encoding",
        level,
      ]);
    };
    pokePte(t.mem, leaf, (p) => p | (3n << 61n));
    expectReserved(0);
    pokePte(t.mem, leaf, () => original & ~BigInt(PTE_R)); // xwr = 010
    expectReserved(0);
    pokePte(t.mem, leaf, () => (original | BigInt(PTE_X)) & ~BigInt(PTE_R)); // xwr = 110
    expectReserved(0);
    pokePte(t.mem, leaf, () => original | (1n << 63n)); // N=1 with ppn[3:0] = 0101
    expectReserved(0);
    pokePte(t.mem, leaf, () => original);
    expect(t.go(0x1000n)).toBe(true);
    for (const bit of [PTE_A, PTE_D, PTE_U]) {
      const before = t.mem.read64(pointer);
      pokePte(t.mem, pointer, (p) => p | BigInt(bit));
      expectReserved(1);
      t.mem.write64(pointer, before);
    }
    pokePte(t.mem, pointer, (p) => p | (1n << 61n));
    expectReserved(1);
  });

  it("NAPOT at level 1 is a reserved encoding", () => {
    const t = single(SV39);
    t.pt.map(0x20_0000n, 0x40_0000n, 0x20_0000n, PTE_R | AD);
    t.go(0x20_0000n);
    pokePte(t.mem, lastPteAddress(t.out), (p) => p | (1n << 63n) | (8n << 10n));
    expect(t.go(0x20_0000n)).toBe(false);
    expect([t.out.reason, t.out.faultLevel]).toEqual(["reserved-encoding", 1]);
  });

  it("Zicfiss shadow-stack pages: reads allowed, writes and fetches are access faults", () => {
    const t = single(SV39);
    t.cfg.first.shadowStack = true;
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW | AD);
    t.go(0x1000n);
    pokePte(t.mem, lastPteAddress(t.out), (p) => p & ~BigInt(PTE_R));
    expect(t.go(0x1000n, ACCESS_READ)).toBe(true);
    expect(t.go(0x1000n, ACCESS_WRITE)).toBe(false);
    expect([t.out.fault, t.out.reason]).toEqual(["access-fault", "shadow-stack"]);
    expect(walkFaultCause(t.out, ACCESS_WRITE)).toBe(7);
    expect(t.go(0x1000n, ACCESS_EXECUTE)).toBe(false);
    expect([t.out.fault, t.out.reason]).toEqual(["access-fault", "shadow-stack"]);
    // The U rule comes first (step 6 before step 7).
    expect(t.go(0x1000n, ACCESS_WRITE, true)).toBe(false);
    expect([t.out.fault, t.out.reason]).toEqual(["page-fault", "permission"]);
    // IO (shadowStack off): the same PTE is reserved.
    t.cfg.first.shadowStack = false;
    expect(t.go(0x1000n, ACCESS_READ)).toBe(false);
    expect(t.out.reason).toBe("reserved-encoding");
  });

  it("misaligned superpage: page fault at the leaf's level", () => {
    const t = single(SV48);
    t.pt.map(0x4000_0000n, 0x8000_0000n, 0x4000_0000n, PTE_R | AD);
    expect(t.go(0x4000_0000n)).toBe(true);
    pokePte(t.mem, lastPteAddress(t.out), (p) => p + (1n << 10n)); // ppn + 1
    expect(t.go(0x4123_4000n)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel]).toEqual([
      "page-fault",
      "misaligned-superpage",
      2,
    ]);
  });

  it("a pointer at level 0 is a page fault", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_R | AD);
    t.go(0x1000n);
    pokePte(t.mem, lastPteAddress(t.out), (p) => p & ~0xfen);
    expect(t.go(0x1000n)).toBe(false);
    expect([t.out.reason, t.out.faultLevel]).toEqual(["non-leaf-at-last-level", 0]);
  });

  it("U, SUM and privilege: user needs U=1; supervisor needs U=0 or SUM, and never executes U pages", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW | PTE_X | AD); // supervisor page
    t.pt.map(0x2000n, 0x6000n, 0x1000n, RW | PTE_X | PTE_U | AD); // user page
    expect(t.go(0x1000n, ACCESS_READ, true)).toBe(false);
    expect(t.out.reason).toBe("permission");
    expect(t.go(0x1000n, ACCESS_EXECUTE, false)).toBe(true);
    expect(t.go(0x2000n, ACCESS_EXECUTE, true)).toBe(true);
    expect(t.go(0x2000n, ACCESS_READ, false)).toBe(false);
    t.cfg.first.sum = true;
    expect(t.go(0x2000n, ACCESS_READ, false)).toBe(true);
    expect(t.go(0x2000n, ACCESS_WRITE, false)).toBe(true);
    expect(t.go(0x2000n, ACCESS_EXECUTE, false)).toBe(false);
    expect([t.out.fault, t.out.reason]).toEqual(["page-fault", "permission"]);
  });

  it("R/W/X with MXR: reads of execute-only pages need MXR", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_X | AD);
    t.pt.map(0x2000n, 0x6000n, 0x1000n, PTE_R | AD);
    expect(t.go(0x1000n, ACCESS_READ)).toBe(false);
    expect(t.out.reason).toBe("permission");
    t.cfg.first.mxr = true;
    expect(t.go(0x1000n, ACCESS_READ)).toBe(true);
    expect(t.go(0x1000n, ACCESS_WRITE)).toBe(false);
    expect(t.go(0x2000n, ACCESS_WRITE)).toBe(false);
    expect(t.out.reason).toBe("permission");
    expect(t.go(0x2000n, ACCESS_EXECUTE)).toBe(false);
    expect(t.out.reason).toBe("permission");
  });

  it("A/D 'fault' policy: A=0, or D=0 on a write, faults and memory is untouched", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW);
    t.pt.map(0x2000n, 0x6000n, 0x1000n, RW | PTE_A);
    const before = t.mem.read64(0x8000_0000n);
    expect(t.go(0x1000n, ACCESS_READ)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel]).toEqual([
      "page-fault",
      "accessed-dirty",
      0,
    ]);
    expect(t.pt.lookup(0x1000n)!.perm & AD).toBe(0);
    expect(t.go(0x2000n, ACCESS_READ)).toBe(true);
    expect(t.go(0x2000n, ACCESS_WRITE)).toBe(false);
    expect(t.out.reason).toBe("accessed-dirty");
    expect(t.pt.lookup(0x2000n)!.perm & AD).toBe(PTE_A);
    expect(t.mem.read64(0x8000_0000n)).toBe(before);
  });

  it("A/D 'update' policy: the walker sets A on access and D on write, in memory", () => {
    const t = single(SV48);
    t.cfg.first.ad = "update";
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW);
    expect(t.go(0x1000n, ACCESS_READ)).toBe(true);
    expect(t.pt.lookup(0x1000n)!.perm & AD).toBe(PTE_A);
    expect(t.out.s1Perm & AD).toBe(PTE_A);
    expect(t.out.stepUpdated[t.out.steps - 1]).toBe(1);
    expect(decodePte(t.mem.read64(lastPteAddress(t.out))).a).toBe(true);
    expect(t.go(0x1000n, ACCESS_READ)).toBe(true);
    expect(t.out.stepUpdated[t.out.steps - 1]).toBe(0);
    expect(t.go(0x1000n, ACCESS_WRITE)).toBe(true);
    expect(t.pt.lookup(0x1000n)!.perm & AD).toBe(AD);
    expect(t.out.s1Perm & AD).toBe(AD);
    // A failed permission check updates nothing.
    t.pt.map(0x2000n, 0x6000n, 0x1000n, PTE_R);
    expect(t.go(0x2000n, ACCESS_WRITE)).toBe(false);
    expect(t.pt.lookup(0x2000n)!.perm & AD).toBe(0);
  });

  it("G-stage alone: U must be 1 (always a user access), GPA bits above the width fault", () => {
    const t = single(SV48X4);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, RW | AD);
    expect(t.go(0x1000n, ACCESS_READ, false)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultStage]).toEqual([
      "guest-page-fault",
      "permission",
      "second",
    ]);
    expect([t.out.faultGpaPpn, t.out.implicit]).toEqual([1, false]);
    expect(walkFaultCause(t.out, ACCESS_READ)).toBe(21);
    expect(walkFaultCause(t.out, ACCESS_WRITE)).toBe(23);
    expect(walkFaultCause(t.out, ACCESS_EXECUTE)).toBe(20);
    t.pt.map(0x2000n, 0x6000n, 0x1000n, RW | PTE_U | AD | 0x20); // G bit: ignored
    expect(t.go(0x2000n, ACCESS_WRITE, false)).toBe(true);
    expect(t.out.ppn).toBe(6);
    const beyond = 1n << 50n;
    expect(t.go(beyond)).toBe(false);
    expect([t.out.fault, t.out.reason, t.out.faultLevel, t.out.faultGpaPpn]).toEqual([
      "guest-page-fault",
      "non-canonical",
      -1,
      Number(beyond >> 12n),
    ]);
  });

  it("walkFaultCause refuses a walk that did not fault", () => {
    const t = single(SV39);
    t.pt.map(0x1000n, 0x5000n, 0x1000n, PTE_R | AD);
    t.go(0x1000n);
    expect(() => walkFaultCause(t.out, ACCESS_READ)).toThrow(SimError);
  });
});
