import { describe, expect, it } from "vitest";
import { SV39 } from "../../src/hw/pgtable/modes.js";
import { PTE_A, PTE_D, PTE_G, PTE_R, PTE_W } from "../../src/hw/pgtable/pte.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  VM_DONTCOPY,
} from "../../src/mm/flags.js";
import { dupMm, mmput } from "../../src/mm/fork.js";
import { MmuNotifier } from "../../src/mm/mm-types.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { FLUSH_ALL_END, mmuNotifierRegister } from "../../src/mm/mmu-notifier.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { PAGE_SPECIAL } from "../../src/mm/pgprot.js";
import { machine, must, newMm, pteEntry, ptePerm } from "./helpers.js";

const A = 0x40_0000n;
const S = 0x80_0000n;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

function parent() {
  const m = machine();
  const mm = newMm(m.sys);
  const cpu = new Cpu(m.sys);
  must(vmMmap(mm, A, 0x3000n, RW, ANON));
  must(vmMmap(mm, S, 0x1000n, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
  expect(cpu.store64(mm, A, 0x1111n).ok).toBe(true);
  expect(cpu.store64(mm, A + 0x1000n, 0x2222n).ok).toBe(true);
  expect(cpu.load64(mm, A + 0x2000n).ok).toBe(true); // zero page
  expect(cpu.store64(mm, S, 0x5555n).ok).toBe(true);
  return { ...m, mm, cpu };
}

describe("fork (dup_mm)", () => {
  it("gives the child a copy of the VMAs and private pages, and no iommuMm", () => {
    const { mm, cpu } = parent();
    mm.iommuMm = { pasid: 3 };
    const child = must(dupMm(mm));
    expect(child.id).not.toBe(mm.id);
    expect(child.iommuMm).toBeNull();
    expect(child.notifiers).toEqual([]);
    expect(child.users).toBe(1);
    expect(child.vmas.toArray().map((v) => [v.start, v.end, v.flags])).toEqual(
      mm.vmas.toArray().map((v) => [v.start, v.end, v.flags]),
    );
    expect(cpu.load64(child, A)).toEqual({ ok: true, value: 0x1111n });
    expect(cpu.load64(child, A + 0x1000n)).toEqual({ ok: true, value: 0x2222n });
    expect(ptePerm(child, A)!.ppn).not.toBe(ptePerm(mm, A)!.ppn);
    expect(child.rssAnon).toBe(2);
  });

  it("keeps writes in one private copy invisible in the other", () => {
    const { mm, cpu } = parent();
    const child = must(dupMm(mm));
    cpu.store64(child, A, 0xc0n);
    cpu.store64(mm, A + 0x1000n, 0xa0n);
    expect(cpu.load64(mm, A)).toEqual({ ok: true, value: 0x1111n });
    expect(cpu.load64(child, A + 0x1000n)).toEqual({ ok: true, value: 0x2222n });
  });

  it("shares MAP_SHARED memory: the child faults the same object's pages in", () => {
    const { mm, cpu } = parent();
    const child = must(dupMm(mm));
    expect(ptePerm(child, S)).toBeNull();
    expect(cpu.load64(child, S)).toEqual({ ok: true, value: 0x5555n });
    expect(ptePerm(child, S)!.ppn).toBe(ptePerm(mm, S)!.ppn);
    cpu.store64(child, S, 0x6666n);
    expect(cpu.load64(mm, S)).toEqual({ ok: true, value: 0x6666n });
    expect(mm.vmaLookup(S)!.shmem!.refs).toBe(2);
  });

  it("copies zero-page PTEs made old, so the child's first access sets A by a fault", () => {
    const { mm, cpu, sys } = parent();
    const child = must(dupMm(mm));
    const pte = ptePerm(child, A + 0x2000n)!;
    expect(pte.ppn).toBe(sys.zeroPfn);
    expect(pte.perm & PTE_A).toBe(0);
    const task = { minFlt: 0, majFlt: 0 };
    expect(cpu.load64(child, A + 0x2000n, task)).toEqual({ ok: true, value: 0n });
    expect(task.minFlt).toBe(1);
    expect(ptePerm(child, A + 0x2000n)!.perm & PTE_A).toBe(PTE_A);
  });

  it("maps copied pages dirty and writable, PROT_NONE ones (new frames) still PROT_NONE", () => {
    const { mm, cpu, sys } = parent();
    doMprotect(mm, A + 0x1000n, 0x2000n, PROT_NONE);
    const child = must(dupMm(mm));
    expect(ptePerm(child, A)!.perm & (PTE_W | PTE_D)).toBe(PTE_W | PTE_D);
    expect(ptePerm(child, A + 0x1000n)).toBeNull();
    // copy_present_page: vm_page_prot (PAGE_NONE) made dirty, on a frame of the child's own.
    const copy = pteEntry(child, A + 0x1000n)!;
    expect([copy.valid, copy.flags]).toEqual([false, PTE_G | PTE_R | PTE_D]);
    expect(copy.ppn).not.toBe(pteEntry(mm, A + 0x1000n)!.ppn);
    // The zero page, PROT_NONE too, is shared: its PTE copied as it is, made old.
    expect(pteEntry(child, A + 0x2000n)).toEqual({
      valid: false,
      flags: PTE_G | PTE_R | PAGE_SPECIAL,
      ppn: sys.zeroPfn,
    });
    expect(child.rssAnon).toBe(2);
    doMprotect(child, A + 0x1000n, 0x1000n, PROT_READ);
    expect(cpu.load64(child, A + 0x1000n)).toEqual({ ok: true, value: 0x2222n });
  });

  it("leaves VM_DONTCOPY VMAs out", () => {
    const { mm } = parent();
    mm.vmaLookup(S)!.flags |= VM_DONTCOPY;
    const child = must(dupMm(mm));
    expect(child.vmaLookup(S)).toBeNull();
    expect(child.vmaLookup(A)).not.toBeNull();
  });

  it("brackets the copy of each private VMA with pages by a PROTECTION_PAGE range on the parent", () => {
    const { mm } = parent();
    must(vmMmap(mm, A + 0x10_0000n, 0x1000n, RW, ANON)); // no page yet: nothing to copy
    const log: string[] = [];
    const hex = (x: bigint) => x.toString(16);
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          invalidateRangeStart: (_s, r) =>
            log.push(`start ${r.mm.id} ${r.event} ${hex(r.start)}-${hex(r.end)}`),
          invalidateRangeEnd: (_s, r) => log.push(`end ${r.event}`),
          archInvalidateSecondaryTlbs: () => log.push("flush"),
        }),
        mm,
      ),
    );
    must(dupMm(mm));
    expect(log).toEqual([
      `start ${mm.id} MMU_NOTIFY_PROTECTION_PAGE 400000-403000`,
      "end MMU_NOTIFY_PROTECTION_PAGE",
      "flush",
    ]);
  });

  it("flushes the parent's whole TLB (secondary ones included) and keeps the paging mode", () => {
    const { sys } = machine();
    const mm = newMm(sys, SV39);
    const log: string[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          archInvalidateSecondaryTlbs: (_s, _m, s, e) => log.push(`${s}-${e === FLUSH_ALL_END}`),
        }),
        mm,
      ),
    );
    const child = must(dupMm(mm));
    expect(log).toEqual(["0-true"]);
    expect(child.pgtable.mode).toBe(SV39);
  });

  it("fails with ENOMEM when memory runs out, leaking nothing", () => {
    const { mm, sys } = parent();
    const before = sys.frames.framesInUse;
    // Leave room for the child's root and a table or two, not for the pages.
    const hog: number[] = [];
    for (let p = sys.frames.alloc(); p >= 0; p = sys.frames.alloc()) hog.push(p);
    for (const p of hog.splice(0, 3)) sys.frames.free(p);
    expect(dupMm(mm)).toEqual({ ok: false, errno: "ENOMEM" });
    for (const p of hog) sys.frames.free(p);
    expect(sys.frames.framesInUse).toBe(before);
    expect(sys.liveMms()).toEqual([mm]);
  });

  it("children outlive their parent's exit", () => {
    const { mm, cpu } = parent();
    const child = must(dupMm(mm));
    mmput(mm);
    expect(cpu.load64(child, A)).toEqual({ ok: true, value: 0x1111n });
    expect(cpu.load64(child, S)).toEqual({ ok: true, value: 0x5555n });
  });
});
