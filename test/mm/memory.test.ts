import { describe, expect, it } from "vitest";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X } from "../../src/hw/pgtable/pte.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_TRIED,
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  VM_FAULT_OOM,
  VM_FAULT_SIGSEGV,
} from "../../src/mm/flags.js";
import { fixupUserFault, handleMmFault } from "../../src/mm/memory.js";
import { MmuNotifier } from "../../src/mm/mm-types.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { mmuNotifierRegister } from "../../src/mm/mmu-notifier.js";
import { PAGE_SPECIAL } from "../../src/mm/pgprot.js";
import { machine, must, newMm, pteEntry, ptePerm } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
const SHARED = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED;
const RW = PROT_READ | PROT_WRITE;
const A = 0x40_0000n;
const USER = PTE_V | PTE_U | PTE_A;

function setup(prot = RW, flags = ANON, len = 0x2000n) {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, len, prot, flags));
  return { ...m, mm, vma: mm.vmaLookup(A)! };
}

describe("handle_mm_fault on a private mapping", () => {
  it("maps the zero page read-only on a first read, with A set and no frame used", () => {
    const { mm, vma, sys } = setup();
    const used = sys.frames.framesInUse;
    const tables = mm.pgtable.tablePages;
    expect(handleMmFault(vma, A + 0x10n, FAULT_FLAG_USER)).toBe(0);
    expect(ptePerm(mm, A)).toEqual({ perm: USER | PTE_R, ppn: sys.zeroPfn });
    // Only page-table pages were allocated.
    expect(sys.frames.framesInUse - used).toBe(mm.pgtable.tablePages - tables);
    expect(mm.rssAnon).toBe(0);
  });

  it("allocates a zeroed frame on a first write, mapped writable and dirty", () => {
    const { mm, vma, sys } = setup();
    // Leave garbage in the frame the fault will get.
    const junk = sys.frames.alloc();
    sys.memory.writablePageU8(junk)!.fill(0xee);
    sys.frames.free(junk);
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE | FAULT_FLAG_USER)).toBe(0);
    const pte = ptePerm(mm, A)!;
    expect(pte).toEqual({ perm: USER | PTE_R | PTE_W | PTE_D, ppn: junk });
    expect(sys.memory.pageU8(junk)!.every((b) => b === 0)).toBe(true);
    expect(mm.rssAnon).toBe(1);
    expect(vma.anonVma).not.toBe(0);
  });

  it("copies the zero page on a write after a read (dirty), invalidating that page for devices", () => {
    const { mm, vma, sys } = setup();
    handleMmFault(vma, A, 0);
    handleMmFault(vma, A + 0x1000n, FAULT_FLAG_WRITE); // the PTE table keeps another entry
    const log: string[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          invalidateRangeStart: (_s, r) => log.push(`start ${r.event}`),
          invalidateRangeEnd: (_s, r) => log.push(`end ${r.event}`),
          archInvalidateSecondaryTlbs: (_s, _m, s, e) => log.push(`tlb ${s}-${e}`),
        }),
        mm,
      ),
    );
    expect(ptePerm(mm, A)!.perm & PTE_D).toBe(0);
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(0);
    const pte = ptePerm(mm, A)!;
    expect(pte.ppn).not.toBe(sys.zeroPfn);
    expect(pte.perm).toBe(USER | PTE_R | PTE_W | PTE_D);
    expect(log).toEqual([
      "start MMU_NOTIFY_CLEAR",
      `tlb ${A}-${A + 0x1000n}`,
      "end MMU_NOTIFY_CLEAR",
    ]);
    expect(mm.rssAnon).toBe(2);
  });

  it("marks the zero page's PTE special (RSW=1), the process's own pages not", () => {
    const { mm, vma, sys } = setup();
    handleMmFault(vma, A, 0);
    handleMmFault(vma, A + 0x1000n, FAULT_FLAG_WRITE);
    expect(pteEntry(mm, A)).toEqual({
      valid: true,
      flags: USER | PTE_R | PAGE_SPECIAL,
      ppn: sys.zeroPfn,
    });
    expect(pteEntry(mm, A + 0x1000n)!.flags & PAGE_SPECIAL).toBe(0);
  });

  it("copies the zero page in place when it is its table's only PTE: no table freed or flushed", () => {
    const { mm, vma, sys } = setup();
    handleMmFault(vma, A, 0);
    const tables = mm.pgtable.tablePages;
    const used = sys.frames.framesInUse;
    const log: string[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          archInvalidateSecondaryTlbs: (_s, _m, s, e) => log.push(`tlb ${s}-${e}`),
        }),
        mm,
      ),
    );
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(0);
    expect(log).toEqual([`tlb ${A}-${A + 0x1000n}`]);
    expect([mm.pgtable.tablePages, mm.pgtable.deferredPages]).toEqual([tables, 0]);
    expect(sys.frames.framesInUse).toBe(used + 1);
    expect(pteEntry(mm, A)!.flags).toBe(USER | PTE_R | PTE_W | PTE_D);
  });

  it("reuses the process's own page on a write to a write-protected PTE (wp_page_reuse)", () => {
    const { mm, vma } = setup();
    handleMmFault(vma, A, FAULT_FLAG_WRITE);
    const ppn = ptePerm(mm, A)!.ppn;
    // Write-protect the PTE behind the mm's back (what soft-dirty or uffd-wp tracking does).
    mm.pgtable.protect(A, 0x1000n, 0, PTE_W | PTE_D);
    const log: string[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({ archInvalidateSecondaryTlbs: () => log.push("tlb") }),
        mm,
      ),
    );
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(0);
    expect(ptePerm(mm, A)).toEqual({ perm: USER | PTE_R | PTE_W | PTE_D, ppn });
    expect(log).toEqual([]);
  });

  it("refuses accesses the VMA does not allow with VM_FAULT_SIGSEGV", () => {
    const { vma, mm } = setup(PROT_READ);
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(VM_FAULT_SIGSEGV);
    expect(handleMmFault(vma, A, FAULT_FLAG_INSTRUCTION)).toBe(VM_FAULT_SIGSEGV);
    expect(ptePerm(mm, A)).toBeNull();
    const x = setup(PROT_EXEC);
    expect(handleMmFault(x.vma, A, 0)).toBe(VM_FAULT_SIGSEGV);
    expect(handleMmFault(x.vma, A, FAULT_FLAG_INSTRUCTION)).toBe(0);
    expect(ptePerm(x.mm, A)!.perm).toBe(USER | PTE_X);
    // Write implies read (RISC-V has no write-only PTE): the page maps readable.
    const w = setup(PROT_WRITE);
    expect(handleMmFault(w.vma, A, 0)).toBe(0);
    expect(ptePerm(w.mm, A)!.perm).toBe(USER | PTE_R);
  });

  it("refuses an address outside the VMA with VM_FAULT_SIGSEGV and a warning", () => {
    const { vma, ctx } = setup();
    expect(handleMmFault(vma, A + 0x2000n, 0)).toBe(VM_FAULT_SIGSEGV);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["handle_mm_fault"]);
  });

  it("returns VM_FAULT_OOM when no frame is left", () => {
    const { mm, vma, sys } = setup();
    expect(handleMmFault(vma, A, 0)).toBe(0); // tables now exist
    while (sys.frames.alloc() >= 0);
    expect(handleMmFault(vma, A + 0x1000n, FAULT_FLAG_WRITE)).toBe(VM_FAULT_OOM);
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(VM_FAULT_OOM);
    expect(ptePerm(mm, A + 0x1000n)).toBeNull();
  });

  it("counts every fault, but only non-remote ones as the task's minor faults", () => {
    const { vma, sys } = setup();
    const task = { minFlt: 0, majFlt: 0 };
    handleMmFault(vma, A, FAULT_FLAG_USER, task);
    handleMmFault(vma, A + 0x1000n, FAULT_FLAG_REMOTE | FAULT_FLAG_WRITE, null);
    expect(task.minFlt).toBe(1);
    expect(sys.pgfault).toBe(2);
  });

  it("counts a failed fault as PGFAULT only, and a retried one as the task's major fault", () => {
    const { vma, sys } = setup(PROT_READ);
    const task = { minFlt: 0, majFlt: 0 };
    expect(handleMmFault(vma, A, FAULT_FLAG_USER | FAULT_FLAG_WRITE, task)).toBe(VM_FAULT_SIGSEGV);
    expect(task).toEqual({ minFlt: 0, majFlt: 0 });
    expect(handleMmFault(vma, A, FAULT_FLAG_USER | FAULT_FLAG_TRIED, task)).toBe(0);
    expect(task).toEqual({ minFlt: 0, majFlt: 1 });
    must(vmMmap(vma.mm, A + 0x10_0000n, 0x1000n, RW, ANON));
    while (sys.frames.alloc() >= 0);
    const rw = vma.mm.vmaLookup(A + 0x10_0000n)!;
    expect(handleMmFault(rw, A + 0x10_0000n, FAULT_FLAG_USER | FAULT_FLAG_WRITE, task)).toBe(
      VM_FAULT_OOM,
    );
    expect(task).toEqual({ minFlt: 0, majFlt: 1 });
    expect(sys.pgfault).toBe(3);
  });

  it("refuses FAULT_FLAG_UNSHARE with FAULT_FLAG_WRITE (sanitize_fault_flags: WARN, SIGSEGV)", () => {
    const { vma, ctx, mm } = setup();
    expect(handleMmFault(vma, A, FAULT_FLAG_UNSHARE | FAULT_FLAG_WRITE)).toBe(VM_FAULT_SIGSEGV);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["sanitize_fault_flags"]);
    expect(pteEntry(mm, A)).toBeNull();
  });

  it("emits mm:fault with flags and result", () => {
    const { vma, ctx, mm } = setup(PROT_READ);
    const rec = ctx.trace.record();
    handleMmFault(vma, A, FAULT_FLAG_WRITE | FAULT_FLAG_USER | FAULT_FLAG_REMOTE);
    expect(rec.stop().map((r) => r.fields)).toEqual([
      { mm: mm.id, addr: A, flags: "WRITE|USER|REMOTE", result: "SIGSEGV" },
    ]);
  });

  it("refuses a VMA that was unmapped (misuse)", () => {
    const { vma, mm } = setup();
    must(vmMmap(mm, A, 0x2000n, RW, ANON));
    expect(() => handleMmFault(vma, A, 0)).toThrow(/unmapped/);
  });
});

describe("handle_mm_fault on a shared mapping", () => {
  it("maps the object's page writable but clean on a read; a later write marks it dirty", () => {
    const { mm, vma } = setup(RW, SHARED);
    expect(handleMmFault(vma, A, 0)).toBe(0);
    const before = ptePerm(mm, A)!;
    expect(before.perm).toBe(USER | PTE_R | PTE_W);
    expect(vma.shmem!.find(0)).toBe(before.ppn);
    expect(mm.rssShmem).toBe(1);
    // What a CPU or IOMMU under Svade does on the store: fault, the handler sets D.
    expect(handleMmFault(vma, A, FAULT_FLAG_WRITE)).toBe(0);
    expect(ptePerm(mm, A)).toEqual({ perm: USER | PTE_R | PTE_W | PTE_D, ppn: before.ppn });
  });
});

describe("fixup_user_fault", () => {
  it("EFAULT without a VMA or permission, ENOMEM on OOM, else faults the page in", () => {
    const { mm, sys } = setup(PROT_READ);
    expect(fixupUserFault(mm, A - 0x1000n, 0)).toEqual({ ok: false, errno: "EFAULT" });
    expect(fixupUserFault(mm, A, FAULT_FLAG_WRITE)).toEqual({ ok: false, errno: "EFAULT" });
    expect(fixupUserFault(mm, A, 0).ok).toBe(true);
    expect(ptePerm(mm, A)!.ppn).toBe(sys.zeroPfn);
    must(vmMmap(mm, A + 0x10_0000n, 0x1000n, RW, ANON));
    while (sys.frames.alloc() >= 0);
    expect(fixupUserFault(mm, A + 0x10_0000n, FAULT_FLAG_WRITE)).toEqual({
      ok: false,
      errno: "ENOMEM",
    });
  });

  it("needs VM_READ for reads, unlike a CPU load (vma_permits_fault)", () => {
    const { mm } = setup(PROT_WRITE);
    expect(fixupUserFault(mm, A, 0)).toEqual({ ok: false, errno: "EFAULT" });
    expect(fixupUserFault(mm, A, FAULT_FLAG_WRITE).ok).toBe(true);
  });
});

describe("CPU A/D handling", () => {
  it("Svade: a store to a clean writable page faults once and sets D", () => {
    const { mm, sys } = setup(RW, SHARED);
    const cpu = new Cpu(sys);
    const task = { minFlt: 0, majFlt: 0 };
    expect(cpu.load64(mm, A, task).ok).toBe(true);
    expect(task.minFlt).toBe(1);
    expect(cpu.store64(mm, A, 9n, task).ok).toBe(true);
    expect(task.minFlt).toBe(2);
    expect(ptePerm(mm, A)!.perm & PTE_D).toBe(PTE_D);
    expect(cpu.store64(mm, A, 10n, task).ok).toBe(true);
    expect(task.minFlt).toBe(2);
  });

  it("Svadu: the walker sets D itself, no fault", () => {
    const { mm, sys } = setup(RW, SHARED);
    const cpu = new Cpu(sys, { ad: "update" });
    const task = { minFlt: 0, majFlt: 0 };
    expect(cpu.load64(mm, A, task).ok).toBe(true);
    expect(cpu.store64(mm, A, 9n, task).ok).toBe(true);
    expect(task.minFlt).toBe(1);
    expect(ptePerm(mm, A)!.perm & PTE_D).toBe(PTE_D);
  });
});
