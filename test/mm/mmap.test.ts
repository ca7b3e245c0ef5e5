import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import { SV39, SV57 } from "../../src/hw/pgtable/modes.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  VM_ACCOUNT,
  VM_MAYSHARE,
  VM_NORESERVE,
  VM_SHARED,
} from "../../src/mm/flags.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { machine, must, newMm, ptePerm } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const RW = PROT_READ | PROT_WRITE;
/** Sv48 mmap_base: DEFAULT_MAP_WINDOW (2^47) minus the 128 MiB minimum gap. */
const BASE48 = (1n << 47n) - (128n << 20n);

describe("mmap errors", () => {
  it("refuses a zero length with EINVAL", () => {
    const mm = newMm(machine().sys);
    expect(vmMmap(mm, 0n, 0n, RW, ANON)).toEqual({ ok: false, errno: "EINVAL" });
  });

  it("refuses a length that overflows when page aligned, or exceeds TASK_SIZE, with ENOMEM", () => {
    const mm = newMm(machine().sys);
    expect(vmMmap(mm, 0n, (1n << 64n) - 1n, RW, ANON)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(vmMmap(mm, 0n, (1n << 47n) + 4096n, RW, ANON)).toEqual({ ok: false, errno: "ENOMEM" });
    // TASK_SIZE - mmap_min_addr is the most any mapping can take.
    expect(vmMmap(mm, 0n, 1n << 47n, RW, ANON)).toEqual({ ok: false, errno: "ENOMEM" });
  });

  it("checks MAP_FIXED addresses: unaligned EINVAL, past TASK_SIZE ENOMEM, low EPERM", () => {
    const mm = newMm(machine().sys);
    const fixed = ANON | MAP_FIXED;
    expect(vmMmap(mm, 0x1000_0010n, 4096n, RW, fixed)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMmap(mm, (1n << 47n) - 4096n, 8192n, RW, fixed)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(vmMmap(mm, 0n, 4096n, RW, fixed)).toEqual({ ok: false, errno: "EPERM" });
    expect(must(vmMmap(mm, 0x1000n, 4096n, RW, fixed))).toBe(0x1000n);
    expect(must(vmMmap(mm, (1n << 47n) - 4096n, 4096n, RW, fixed))).toBe((1n << 47n) - 4096n);
  });

  it("honours a raised mmap_min_addr", () => {
    const mm = newMm(machine({ mmapMinAddr: 0x10000n }).sys);
    expect(vmMmap(mm, 0xf000n, 4096n, RW, ANON | MAP_FIXED)).toEqual({
      ok: false,
      errno: "EPERM",
    });
    // A hint below it is raised to it.
    expect(must(vmMmap(mm, 0x2000n, 4096n, RW, ANON))).toBe(0x10000n);
  });

  it("refuses MAP_FIXED_NOREPLACE over an existing mapping with EEXIST", () => {
    const mm = newMm(machine().sys);
    must(vmMmap(mm, 0x40_0000n, 0x4000n, RW, ANON | MAP_FIXED));
    expect(vmMmap(mm, 0x40_3000n, 0x2000n, RW, ANON | MAP_FIXED_NOREPLACE)).toEqual({
      ok: false,
      errno: "EEXIST",
    });
    expect(must(vmMmap(mm, 0x40_4000n, 0x2000n, RW, ANON | MAP_FIXED_NOREPLACE))).toBe(0x40_4000n);
  });

  it("refuses mapping types other than MAP_SHARED and MAP_PRIVATE with EINVAL", () => {
    const mm = newMm(machine().sys);
    expect(vmMmap(mm, 0n, 4096n, RW, MAP_ANONYMOUS)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMmap(mm, 0n, 4096n, RW, MAP_ANONYMOUS | MAP_SHARED_VALIDATE)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    expect(mm.mapCount).toBe(0);
  });

  it("allows map_count to pass max_map_count by one, then refuses with ENOMEM", () => {
    const mm = newMm(machine({ maxMapCount: 3 }).sys);
    // Alternating protections keep the VMAs from merging.
    for (let i = 0; i < 4; i++) {
      must(vmMmap(mm, 0n, 4096n, i % 2 ? PROT_READ : RW, ANON));
    }
    expect(mm.mapCount).toBe(4);
    expect(vmMmap(mm, 0n, 4096n, PROT_READ, ANON)).toEqual({ ok: false, errno: "ENOMEM" });
  });

  it("refuses with ENOMEM a MAP_FIXED mapping that must split a VMA at max_map_count", () => {
    const mm = newMm(machine({ maxMapCount: 1 }).sys);
    must(vmMmap(mm, 0x40_0000n, 0x3000n, RW, ANON | MAP_FIXED));
    expect(vmMmap(mm, 0x40_1000n, 0x1000n, PROT_READ, ANON | MAP_FIXED)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(mm.mapCount).toBe(1);
    // Replacing the head needs no split of the rest into two.
    expect(vmMmap(mm, 0x40_0000n, 0x1000n, PROT_READ, ANON | MAP_FIXED).ok).toBe(true);
  });

  it("fails with ENOMEM when no free range is large enough", () => {
    const mm = newMm(machine().sys, SV39);
    // Sv39: TASK_SIZE 2^38 = 256 GiB. A page at 100 GiB leaves no free 160 GiB range.
    must(vmMmap(mm, 100n << 30n, 4096n, PROT_NONE, ANON | MAP_FIXED));
    expect(vmMmap(mm, 0n, 160n << 30n, PROT_NONE, ANON)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(vmMmap(mm, 0n, 150n << 30n, PROT_NONE, ANON).ok).toBe(true);
  });

  it("throws on what the model does not express", () => {
    const mm = newMm(machine().sys);
    expect(() => vmMmap(mm, 0n, 4096n, RW, MAP_PRIVATE)).toThrow(/file mappings/);
    expect(() => vmMmap(mm, 0n, 4096n, RW, ANON | 0x100)).toThrow(SimError);
    expect(() => vmMmap(mm, -1n, 4096n, RW, ANON)).toThrow(SimError);
  });
});

describe("mmap placement (top-down below mmap_base, as Linux's default layout)", () => {
  it("places mappings downward from mmap_base and merges equal neighbours", () => {
    const mm = newMm(machine().sys);
    const a = must(vmMmap(mm, 0n, 0x3000n, RW, ANON));
    expect(a).toBe(BASE48 - 0x3000n);
    const b = must(vmMmap(mm, 0n, 0x1000n, RW, ANON));
    expect(b).toBe(a - 0x1000n);
    // Same flags, adjacent: one VMA (vma_merge_new_range).
    expect(mm.mapCount).toBe(1);
    expect(mm.vmaLookup(b)!.start).toBe(b);
    expect(mm.vmaLookup(b)!.end).toBe(BASE48);
    const c = must(vmMmap(mm, 0n, 0x1000n, PROT_READ, ANON));
    expect(c).toBe(b - 0x1000n);
    expect(mm.mapCount).toBe(2);
  });

  it("uses the mmap window of Sv39 and keeps Sv57 processes below 2^47 by default", () => {
    const m39 = newMm(machine().sys, SV39);
    expect(must(vmMmap(m39, 0n, 0x1000n, RW, ANON))).toBe((1n << 38n) - (128n << 20n) - 0x1000n);
    const m57 = newMm(machine().sys, SV57);
    expect(must(vmMmap(m57, 0n, 0x1000n, RW, ANON))).toBe(BASE48 - 0x1000n);
    // A free hint above 2^47 is honoured under Sv57, up to TASK_SIZE = 2^56.
    expect(must(vmMmap(m57, 1n << 50n, 0x1000n, RW, ANON))).toBe(1n << 50n);
  });

  it("honours a free hint and ignores a taken one", () => {
    const mm = newMm(machine().sys);
    expect(must(vmMmap(mm, 0x1234_5000n, 0x2000n, RW, ANON))).toBe(0x1234_5000n);
    // round_hint_to_min drops the in-page offset of a hint.
    expect(must(vmMmap(mm, 0x2000_0fffn, 0x1000n, RW, ANON))).toBe(0x2000_0000n);
    // Taken: the top-down search answers instead.
    expect(must(vmMmap(mm, 0x1234_6000n, 0x1000n, RW, ANON))).toBe(BASE48 - 0x1000n);
  });

  it("fills the highest gap below mmap_base first", () => {
    const mm = newMm(machine().sys);
    must(vmMmap(mm, BASE48 - 0x10000n, 0x1000n, PROT_READ, ANON | MAP_FIXED));
    must(vmMmap(mm, BASE48 - 0x4000n, 0x1000n, PROT_READ, ANON | MAP_FIXED));
    // The gap [base-0x3000, base) fits 0x3000; [base-0xf000, base-0x4000) fits 0xb000.
    expect(must(vmMmap(mm, 0n, 0x3000n, RW, ANON))).toBe(BASE48 - 0x3000n);
    expect(must(vmMmap(mm, 0n, 0x8000n, RW, ANON))).toBe(BASE48 - 0xc000n);
  });

  it("falls back to a bottom-up search from TASK_UNMAPPED_BASE when nothing fits below", () => {
    const mm = newMm(machine().sys, SV39);
    const base = (1n << 38n) - (128n << 20n);
    // Everything from mmap_min_addr to mmap_base is taken.
    must(vmMmap(mm, 0x1000n, base - 0x1000n, PROT_NONE, ANON | MAP_FIXED));
    expect(must(vmMmap(mm, 0n, 64n << 20n, RW, ANON))).toBe(base);
  });
});

describe("mmap and commit accounting flags", () => {
  it("marks private writable memory VM_ACCOUNT and MAP_NORESERVE memory VM_NORESERVE, and keeps them apart", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    const A = 0x40_0000n;
    must(vmMmap(mm, A, 0x1000n, RW, ANON | MAP_FIXED));
    must(vmMmap(mm, A + 0x1000n, 0x1000n, RW, ANON | MAP_FIXED | MAP_NORESERVE));
    must(vmMmap(mm, A + 0x2000n, 0x1000n, PROT_READ, ANON | MAP_FIXED));
    must(vmMmap(mm, A + 0x3000n, 0x1000n, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
    expect(mm.vmas.toArray().map((v) => v.flags & (VM_ACCOUNT | VM_NORESERVE))).toEqual([
      VM_ACCOUNT,
      VM_NORESERVE,
      0,
      0,
    ]);
    // A second charged mapping merges with the first; a second NORESERVE one with its like.
    must(vmMmap(mm, A - 0x1000n, 0x1000n, RW, ANON | MAP_FIXED));
    expect(mm.mapCount).toBe(4);
    expect(mm.vmaLookup(A)!.start).toBe(A - 0x1000n);
  });
});

describe("mmap mappings", () => {
  it("replaces what a MAP_FIXED mapping covers, pages included", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    const cpu = new Cpu(sys);
    const a = 0x50_0000n;
    must(vmMmap(mm, a, 0x3000n, RW, ANON | MAP_FIXED));
    expect(cpu.store64(mm, a + 0x1000n, 42n).ok).toBe(true);
    const used = sys.frames.framesInUse;
    must(vmMmap(mm, a + 0x1000n, 0x1000n, PROT_READ, ANON | MAP_FIXED));
    expect(mm.mapCount).toBe(3);
    expect(ptePerm(mm, a + 0x1000n)).toBeNull();
    expect(sys.frames.framesInUse).toBeLessThan(used);
    expect(cpu.load64(mm, a + 0x1000n)).toEqual({ ok: true, value: 0n });
  });

  it("populates with MAP_POPULATE: private writable pages allocated, read-only ones on the zero page", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    const a = must(vmMmap(mm, 0n, 0x3000n, RW, ANON | MAP_POPULATE));
    expect(mm.rssAnon).toBe(3);
    for (let i = 0n; i < 3n; i++) expect(ptePerm(mm, a + i * 0x1000n)!.perm & 0x84).toBe(0x84);
    const r = must(vmMmap(mm, 0n, 0x2000n, PROT_READ | PROT_EXEC, ANON | MAP_POPULATE));
    expect(mm.rssAnon).toBe(3);
    expect(ptePerm(mm, r)!.ppn).toBe(sys.zeroPfn);
    expect(ptePerm(mm, r + 0x1000n)!.ppn).toBe(sys.zeroPfn);
  });

  it("backs MAP_SHARED with a shared object and never merges separate ones", () => {
    const mm = newMm(machine().sys);
    const a = must(vmMmap(mm, 0n, 0x2000n, RW, MAP_SHARED | MAP_ANONYMOUS));
    const b = must(vmMmap(mm, 0n, 0x2000n, RW, MAP_SHARED | MAP_ANONYMOUS));
    expect(b).toBe(a - 0x2000n);
    expect(mm.mapCount).toBe(2);
    const vma = mm.vmaLookup(a)!;
    expect(vma.flags & (VM_SHARED | VM_MAYSHARE)).toBe(VM_SHARED | VM_MAYSHARE);
    expect(vma.shmem).not.toBeNull();
    expect(vma.shmem).not.toBe(mm.vmaLookup(b)!.shmem);
  });

  it("emits mm:mmap with the chosen address and the result", () => {
    const { sys, ctx } = machine();
    const mm = newMm(sys);
    const rec = ctx.trace.record();
    const a = must(vmMmap(mm, 0n, 4096n, RW, ANON));
    vmMmap(mm, 0n, 0n, RW, ANON);
    const events = rec.stop().filter((r) => r.event === "mm:mmap");
    expect(events.map((e) => e.fields)).toEqual([
      { mm: mm.id, addr: a, len: 4096n, prot: RW, flags: ANON, result: "ok" },
      { mm: mm.id, addr: 0n, len: 0n, prot: RW, flags: ANON, result: "EINVAL" },
    ]);
  });
});
