// mm lifetime: mm_users (mmget / mmget_not_zero / mmput → exit_mmap) and mm_count
// (mmgrab / mmdrop → __mmdrop and its hooks).

import { describe, expect, it } from "vitest";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { mmAlloc, mmput } from "../../src/mm/fork.js";
import { mmdrop, mmget, mmgetNotZero, mmgrab } from "../../src/mm/mm-refs.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { machine, must, newMm, ptePerm } from "./helpers.js";

const A = 0x40_0000n;
const RW = PROT_READ | PROT_WRITE;

function busy() {
  const m = machine();
  const baseline = m.frames.framesInUse;
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, 0x4000n, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE));
  must(vmMmap(mm, A + 0x10_0000n, 0x2000n, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
  new Cpu(m.sys).store64(mm, A + 0x10_0000n, 1n);
  return { ...m, mm, baseline };
}

describe("mm_users", () => {
  it("tears the address space down when the last user goes, keeping the root", () => {
    const { mm, frames, baseline } = busy();
    const root = mm.pgdPpn;
    mmget(mm);
    mmput(mm);
    expect(mm.state).toBe("live");
    mmgrab(mm);
    mmput(mm);
    expect(mm.state).toBe("exited");
    expect(mm.users).toBe(0);
    expect(mm.count).toBe(1);
    expect(mm.mapCount).toBe(0);
    expect(mm.rssAnon + mm.rssShmem).toBe(0);
    expect(ptePerm(mm, A)).toBeNull();
    // Only the root is left of the page table.
    expect(mm.pgtable.tablePages).toBe(1);
    expect(frames.isAllocated(root)).toBe(true);
    expect(frames.framesInUse).toBe(baseline + 1);
  });

  it("mmget_not_zero fails once the users are gone; mmget then is a misuse", () => {
    const { mm } = busy();
    expect(mmgetNotZero(mm)).toBe(true);
    expect(mm.users).toBe(2);
    mmput(mm);
    mmgrab(mm);
    mmput(mm);
    expect(mmgetNotZero(mm)).toBe(false);
    expect(mm.users).toBe(0);
    expect(() => mmget(mm)).toThrow(/users are gone/);
    expect(() => mmput(mm)).toThrow(/users are gone/);
  });
});

describe("mm_count and __mmdrop", () => {
  it("runs the drop hooks exactly once, at mm_count 0 and not at mm_users 0", () => {
    const { mm, sys, frames, baseline } = busy();
    const calls: string[] = [];
    mm.onFinalDrop((m) => calls.push(`mm hook ${m.id} ${m.state}`));
    sys.onFinalDrop((m) => calls.push(`sys hook ${m.id} ${m.state}`));
    mmgrab(mm);
    mmgrab(mm);
    mmput(mm);
    expect(calls).toEqual([]);
    mmdrop(mm);
    expect(calls).toEqual([]);
    mmdrop(mm);
    expect(calls).toEqual([`mm hook ${mm.id} freed`, `sys hook ${mm.id} freed`]);
    // No leak: the zero page is all the mm layer still holds.
    expect(frames.framesInUse).toBe(baseline);
    expect(() => mmdrop(mm)).toThrow(/freed/);
    expect(() => mmgrab(mm)).toThrow(/freed/);
  });

  it("keeps iommuMm until the final drop, where the hooks see it", () => {
    const { mm, sys } = busy();
    const token = { pasid: 5 };
    mm.iommuMm = token;
    const seen: unknown[] = [];
    sys.onFinalDrop((m) => seen.push(m.iommuMm));
    mmgrab(mm);
    mmput(mm);
    expect(mm.iommuMm).toBe(token);
    mmdrop(mm);
    expect(seen).toEqual([token]);
  });

  it("lets a machine-wide hook be removed, and frees the mm id for reuse", () => {
    const { sys } = machine();
    const calls: number[] = [];
    const off = sys.onFinalDrop((m) => calls.push(m.id));
    const a = newMm(sys);
    mmput(a);
    off();
    const b = newMm(sys);
    expect(b.id).toBe(a.id);
    mmput(b);
    expect(calls).toEqual([a.id]);
    expect(sys.liveMms()).toEqual([]);
  });

  it("emits exit_mmap and mm_free at their moments", () => {
    const { mm, ctx } = busy();
    const rec = ctx.trace.record();
    mmgrab(mm);
    mmput(mm);
    const atExit = rec.records.map((r) => r.event);
    expect(atExit).toContain("mm:exit_mmap");
    expect(atExit).not.toContain("mm:mm_free");
    mmdrop(mm);
    expect(rec.stop().at(-1)!.event).toBe("mm:mm_free");
  });

  it("fails mm_alloc with ENOMEM when no frame is left for the root", () => {
    const { sys, frames } = machine();
    while (frames.alloc() >= 0);
    expect(mmAlloc(sys)).toEqual({ ok: false, errno: "ENOMEM" });
  });
});
