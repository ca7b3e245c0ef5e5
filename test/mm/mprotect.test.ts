import { describe, expect, it } from "vitest";
import { PT_OK } from "../../src/hw/pgtable/page-table.js";
import {
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
} from "../../src/hw/pgtable/pte.js";
import { PteCursor } from "../../src/hw/pgtable/pte-cursor.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  PROT_EXEC,
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  VM_ACCOUNT,
  VM_MAYWRITE,
  VM_NORESERVE,
  VM_READ,
  VM_WRITE,
} from "../../src/mm/flags.js";
import { MmuNotifier } from "../../src/mm/mm-types.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { FLUSH_ALL_END, mmuNotifierRegister } from "../../src/mm/mmu-notifier.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { PAGE_SPECIAL } from "../../src/mm/pgprot.js";
import { machine, must, newMm, pteEntry, ptePerm } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
const RW = PROT_READ | PROT_WRITE;
const A = 0x40_0000n;

function setup(pages = 3n) {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, pages * 0x1000n, RW, ANON | MAP_POPULATE));
  const cpu = new Cpu(m.sys);
  for (let i = 0n; i < pages; i++)
    expect(cpu.store64(mm, A + i * 0x1000n, 0xa0n + i).ok).toBe(true);
  return { ...m, mm, cpu };
}

const ranges = (mm: ReturnType<typeof setup>["mm"]) =>
  mm.vmas.toArray().map((v) => [v.start, v.end, v.flags & (VM_READ | VM_WRITE)]);

describe("mprotect and VM_ACCOUNT", () => {
  it("charges private memory made writable (VM_ACCOUNT), which then never merges with uncharged memory", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    must(vmMmap(mm, A, 0x1000n, PROT_READ, ANON));
    must(vmMmap(mm, A + 0x1000n, 0x1000n, PROT_READ, ANON | MAP_NORESERVE));
    must(vmMmap(mm, A + 0x2000n, 0x1000n, PROT_READ, ANON));
    const flags = () => mm.vmas.toArray().map((v) => v.flags & (VM_ACCOUNT | VM_NORESERVE | RW));
    expect(flags()).toEqual([PROT_READ, PROT_READ | VM_NORESERVE, PROT_READ]);
    must(doMprotect(mm, A, 0x3000n, RW));
    expect(flags()).toEqual([RW | VM_ACCOUNT, RW | VM_NORESERVE, RW | VM_ACCOUNT]);
    // Read-only again: the charge stays, so the three VMAs stay apart.
    must(doMprotect(mm, A, 0x3000n, PROT_READ));
    expect(flags()).toEqual([
      PROT_READ | VM_ACCOUNT,
      PROT_READ | VM_NORESERVE,
      PROT_READ | VM_ACCOUNT,
    ]);
    must(vmMmap(mm, A + 0x3000n, 0x1000n, PROT_READ, ANON));
    expect(mm.mapCount).toBe(4);
  });
});

describe("mprotect errors", () => {
  it("EINVAL: unaligned start, both grow directions, unknown prot bits", () => {
    const { mm } = setup();
    expect(doMprotect(mm, A + 8n, 0x1000n, PROT_READ)).toEqual({ ok: false, errno: "EINVAL" });
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | 0x40)).toEqual({ ok: false, errno: "EINVAL" });
  });

  it("does nothing, successfully, for a zero length", () => {
    const { mm } = setup();
    expect(doMprotect(mm, 0x7000_0000n, 0n, PROT_READ)).toEqual({ ok: true, value: undefined });
    expect(doMprotect(mm, A, 0n, PROT_NONE).ok).toBe(true);
    expect(mm.vmaLookup(A)!.flags & VM_WRITE).toBe(VM_WRITE);
  });

  it("ENOMEM: a range wrapping past 2^64, an unmapped start, a hole", () => {
    const { mm } = setup();
    expect(doMprotect(mm, (1n << 64n) - 0x1000n, 0x2000n, PROT_READ)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(doMprotect(mm, A - 0x1000n, 0x2000n, PROT_READ)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(doMprotect(mm, A + 0x10_0000n, 0x1000n, PROT_READ)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
  });

  it("keeps the change to VMAs before a hole, like the kernel, and still says ENOMEM", () => {
    const { mm } = setup();
    must(vmMmap(mm, A + 0x4000n, 0x1000n, RW, ANON));
    expect(doMprotect(mm, A, 0x5000n, PROT_READ)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(mm.vmaLookup(A)!.flags & VM_WRITE).toBe(0);
    expect(mm.vmaLookup(A + 0x4000n)!.flags & VM_WRITE).toBe(VM_WRITE);
    // Ending in a hole after the last VMA: changed, then ENOMEM.
    expect(doMprotect(mm, A + 0x4000n, 0x2000n, PROT_READ)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(mm.vmaLookup(A + 0x4000n)!.flags & VM_WRITE).toBe(0);
  });

  it("EINVAL for PROT_GROWSDOWN / PROT_GROWSUP on VMAs that do not grow", () => {
    const { mm } = setup();
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | PROT_GROWSDOWN)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | PROT_GROWSUP)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    // GROWSUP checks the start first.
    expect(doMprotect(mm, A - 0x1000n, 0x2000n, PROT_READ | PROT_GROWSUP)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
  });

  it("EACCES when the VMA may not take the permission (VM_MAYWRITE clear)", () => {
    const { mm } = setup();
    const vma = mm.vmaLookup(A)!;
    vma.flags &= ~(VM_MAYWRITE | VM_WRITE);
    expect(doMprotect(mm, A, 0x1000n, RW)).toEqual({ ok: false, errno: "EACCES" });
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | PROT_EXEC).ok).toBe(true);
  });

  it("ENOMEM when a split would pass max_map_count", () => {
    const { sys } = machine({ maxMapCount: 2 });
    const mm = newMm(sys);
    must(vmMmap(mm, A, 0x3000n, RW, ANON));
    must(vmMmap(mm, A + 0x10_0000n, 0x1000n, PROT_READ, ANON));
    expect(doMprotect(mm, A + 0x1000n, 0x1000n, PROT_READ)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
    expect(mm.mapCount).toBe(2);
  });
});

describe("mprotect", () => {
  it("splits a VMA and write-protects the PTEs of the range, in memory", () => {
    const { mm, cpu } = setup();
    expect(doMprotect(mm, A + 0x1000n, 0x1000n, PROT_READ).ok).toBe(true);
    expect(ranges(mm)).toEqual([
      [A, A + 0x1000n, VM_READ | VM_WRITE],
      [A + 0x1000n, A + 0x2000n, VM_READ],
      [A + 0x2000n, A + 0x3000n, VM_READ | VM_WRITE],
    ]);
    expect(ptePerm(mm, A + 0x1000n)!.perm).toBe(PTE_V | PTE_R | PTE_U | PTE_A | PTE_D);
    expect(ptePerm(mm, A)!.perm & PTE_W).toBe(PTE_W);
    expect(cpu.store64(mm, A + 0x1000n, 1n)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_ACCERR", addr: A + 0x1000n },
    });
    expect(cpu.load64(mm, A + 0x1000n)).toEqual({ ok: true, value: 0xa1n });
  });

  it("merges back and makes the process's own pages writable again, not the zero page", () => {
    const { mm, cpu, sys } = setup();
    must(vmMmap(mm, A + 0x3000n, 0x1000n, RW, ANON));
    expect(cpu.load64(mm, A + 0x3000n).ok).toBe(true); // zero page
    doMprotect(mm, A + 0x1000n, 0x3000n, PROT_READ);
    expect(mm.mapCount).toBe(2);
    expect(doMprotect(mm, A, 0x4000n, RW).ok).toBe(true);
    expect(mm.mapCount).toBe(1);
    expect(ptePerm(mm, A + 0x1000n)!.perm & (PTE_W | PTE_D)).toBe(PTE_W | PTE_D);
    const zero = ptePerm(mm, A + 0x3000n)!;
    expect(zero.ppn).toBe(sys.zeroPfn);
    expect(zero.perm & PTE_W).toBe(0);
    expect(cpu.store64(mm, A + 0x1000n, 5n).ok).toBe(true);
  });

  it("merges a VMA's tail into the next VMA and carries on past it", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    // MAP_NORESERVE: neither VMA is charged (VM_ACCOUNT), so their flags can become equal.
    must(vmMmap(mm, A, 0x4000n, RW, ANON | MAP_POPULATE | MAP_NORESERVE));
    must(vmMmap(mm, A + 0x4000n, 0x1000n, PROT_NONE, ANON | MAP_NORESERVE));
    expect(doMprotect(mm, A + 0x2000n, 0x3000n, PROT_NONE).ok).toBe(true);
    expect(ranges(mm)).toEqual([
      [A, A + 0x2000n, VM_READ | VM_WRITE],
      [A + 0x2000n, A + 0x5000n, 0],
    ]);
  });

  it("adds execute and keeps A/D", () => {
    const { mm, cpu } = setup(1n);
    expect(doMprotect(mm, A, 0x1000n, PROT_READ | PROT_EXEC).ok).toBe(true);
    expect(ptePerm(mm, A)!.perm).toBe(PTE_V | PTE_R | PTE_X | PTE_U | PTE_A | PTE_D);
    expect(cpu.fetch(mm, A, 4).ok).toBe(true);
  });

  it("makes pages invalid to hardware under PROT_NONE and keeps their contents", () => {
    const { mm, cpu, sys } = setup();
    const used = sys.frames.framesInUse;
    expect(doMprotect(mm, A, 0x3000n, PROT_NONE).ok).toBe(true);
    expect(ptePerm(mm, A)).toBeNull();
    expect(mm.rssAnon).toBe(3);
    expect(cpu.load64(mm, A + 0x2000n)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_ACCERR", addr: A + 0x2000n },
    });
    expect(doMprotect(mm, A, 0x3000n, PROT_READ).ok).toBe(true);
    expect(cpu.load64(mm, A + 0x2000n)).toEqual({ ok: true, value: 0xa2n });
    expect(ptePerm(mm, A + 0x2000n)!.perm & (PTE_W | PTE_D)).toBe(PTE_D);
    // Neither data frames nor page-table pages came or went.
    expect(sys.frames.framesInUse).toBe(used);
  });

  it("keeps PROT_NONE PTEs in place (V=0, G, frame and A/D kept); going back needs no memory", () => {
    const { mm, cpu, sys } = setup(2n);
    const ppn = ptePerm(mm, A)!.ppn;
    const tables = mm.pgtable.tablePages;
    expect(doMprotect(mm, A, 0x2000n, PROT_NONE).ok).toBe(true);
    // Linux's encoding: _PAGE_PROT_NONE (G) | _PAGE_READ, V=0, with the PFN, A and D kept.
    const cur = new PteCursor();
    expect(mm.pgtable.seek4k(cur, Number(A >> 12n))).toBe(PT_OK);
    expect([cur.valid, cur.ppn, cur.flags]).toEqual([false, ppn, PTE_G | PTE_R | PTE_A | PTE_D]);
    expect(mm.pgtable.tablePages).toBe(tables);
    // Not a frame left, not even for a page table: mprotect back still succeeds at once.
    const hog: number[] = [];
    for (let p = sys.frames.alloc(); p >= 0; p = sys.frames.alloc()) hog.push(p);
    expect(doMprotect(mm, A, 0x2000n, RW).ok).toBe(true);
    expect(ptePerm(mm, A)).toEqual({ perm: PTE_V | PTE_U | PTE_R | PTE_W | PTE_A | PTE_D, ppn });
    expect(cpu.store64(mm, A, 3n).ok).toBe(true);
    expect(cpu.load64(mm, A + 0x1000n)).toEqual({ ok: true, value: 0xa1n });
    for (const p of hog) sys.frames.free(p);
  });

  it("keeps the zero page special and read-only through PROT_NONE and back", () => {
    const { mm, cpu, sys } = setup(1n);
    must(vmMmap(mm, A + 0x1000n, 0x1000n, RW, ANON));
    expect(cpu.load64(mm, A + 0x1000n).ok).toBe(true);
    expect(doMprotect(mm, A, 0x2000n, PROT_NONE).ok).toBe(true);
    expect(pteEntry(mm, A + 0x1000n)).toEqual({
      valid: false,
      flags: PTE_G | PTE_R | PTE_A | PAGE_SPECIAL,
      ppn: sys.zeroPfn,
    });
    expect(doMprotect(mm, A, 0x2000n, RW).ok).toBe(true);
    expect(pteEntry(mm, A + 0x1000n)!.flags).toBe(PTE_V | PTE_U | PTE_R | PTE_A | PAGE_SPECIAL);
    expect(pteEntry(mm, A)!.flags & PTE_W).toBe(PTE_W); // the process's own page
    expect(cpu.store64(mm, A + 0x1000n, 9n).ok).toBe(true);
    expect(pteEntry(mm, A + 0x1000n)!.ppn).not.toBe(sys.zeroPfn);
    expect(sys.memory.pageU8(sys.zeroPfn)!.every((b) => b === 0)).toBe(true);
  });

  it("invalidates secondary TLBs over the changed pages once, inside a PROTECTION_VMA range", () => {
    const { mm } = setup();
    const log: string[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          invalidateRangeStart: (_s, r) => log.push(`start ${r.event} ${r.start}-${r.end}`),
          invalidateRangeEnd: (_s, r) => log.push(`end ${r.event}`),
          archInvalidateSecondaryTlbs: (_s, _m, s, e) =>
            log.push(`tlb ${s}-${e === FLUSH_ALL_END ? "all" : e}`),
        }),
        mm,
      ),
    );
    doMprotect(mm, A + 0x1000n, 0x2000n, PROT_READ);
    expect(log).toEqual([
      `start MMU_NOTIFY_PROTECTION_VMA ${A + 0x1000n}-${A + 0x3000n}`,
      "end MMU_NOTIFY_PROTECTION_VMA",
      `tlb ${A + 0x1000n}-${A + 0x3000n}`,
    ]);
    log.length = 0;
    // No change of flags: nothing to invalidate.
    doMprotect(mm, A + 0x1000n, 0x2000n, PROT_READ);
    expect(log).toEqual([]);
  });
});
