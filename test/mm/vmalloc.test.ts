import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import type { TraceRecord } from "../../src/base/trace.js";
import { SV39, SV48, SV57 } from "../../src/hw/pgtable/modes.js";
import { PTE_G, PTE_U, PTE_W } from "../../src/hw/pgtable/pte.js";
import { walk } from "../../src/hw/pgtable/walk.js";
import { ACCESS_READ, WalkConfig, WalkResult } from "../../src/hw/pgtable/walk-result.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ } from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import { initMm, type KernelMm, vmallocRange } from "../../src/mm/init-mm.js";
import { mmdrop, mmget } from "../../src/mm/mm-refs.js";
import { type MmSubsystem, MmuNotifier } from "../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { mmuNotifierRegister, mmuNotifierUnregister } from "../../src/mm/mmu-notifier.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { PAGE_KERNEL, PAGE_KERNEL_READ } from "../../src/mm/pgprot.js";
import { lazyMaxPages, vmap, vmUnmapAliases, vunmap } from "../../src/mm/vmalloc.js";
import { machine, must, newMm } from "./helpers.js";

/** The frame a supervisor read of `va` reaches through init_mm's table, or null on a fault. */
function kernelWalk(mm: KernelMm, va: bigint, user = false): number | null {
  const cfg = new WalkConfig();
  cfg.first.set(mm.pgtable.mode, mm.pgdPpn);
  const out = new WalkResult();
  return walk(mm.sys.memory, cfg, Number(va >> 12n), ACCESS_READ, user, out) ? out.ppn : null;
}

function frames(sys: MmSubsystem, n: number): number[] {
  return Array.from({ length: n }, () => sys.frames.alloc());
}

function events(records: readonly TraceRecord[], name: string) {
  return records.filter((r) => r.event === name).map((r) => r.fields);
}

/** `count` entries, all `pfn`, without an array of that length. */
function repeated(count: number, pfn: number): ArrayLike<number> {
  return new Proxy({} as ArrayLike<number>, {
    get: (_t, k) => (k === "length" ? count : pfn),
  });
}

describe("init_mm", () => {
  it("is one kernel address space per machine: id 0, mm_users 2, no owner, created on first use", () => {
    const m = machine();
    const user = newMm(m.sys);
    expect(m.sys.liveMms()).toEqual([user]);
    const k = initMm(m.sys);
    expect(initMm(m.sys)).toBe(k);
    expect(k.kernel).toBe(true);
    expect(user.kernel).toBe(false);
    expect([k.id, k.users, k.count, k.owner, k.mapCount]).toEqual([0, 2, 1, null, 0]);
    expect(k.pgtable.mode).toBe(SV48);
    expect(m.sys.liveMms()).toEqual([user, k]);
    expect(k.toJSON()).toMatchObject({
      id: 0,
      kernel: true,
      vmalloc: { start: "0xffff8f8000000000", end: "0xffffaf8000000000" },
      vmap_areas: [],
      vmap_lazy_nr: 0,
    });
    expect(initMm(machine({ kernelMode: SV39 }).sys).pgtable.mode).toBe(SV39);
  });

  it("places vmalloc below PAGE_OFFSET as the RISC-V kernel does (vm-layout.rst)", () => {
    expect(vmallocRange(SV39)).toEqual({
      start: 0xffff_ffc6_0000_0000n,
      end: 0xffff_ffd6_0000_0000n,
    });
    expect(vmallocRange(SV48)).toEqual({
      start: 0xffff_8f80_0000_0000n,
      end: 0xffff_af80_0000_0000n,
    });
    expect(vmallocRange(SV57)).toEqual({
      start: 0xff20_0000_0000_0000n,
      end: 0xff60_0000_0000_0000n,
    });
  });

  it("is never torn down, and has no VMAs to mmap, munmap or mprotect", () => {
    const m = machine();
    const k = initMm(m.sys);
    mmget(k);
    mmput(k);
    expect(() => mmput(k)).toThrow(/init_mm/);
    expect(() => mmdrop(k)).toThrow(/init_mm/);
    expect(() => vmMmap(k, 0n, 0x1000n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)).toThrow(/vmap/);
    expect(() => vmMunmap(k, 0n, 0x1000n)).toThrow(SimError);
    expect(() => doMprotect(k, 0n, 0x1000n, PROT_READ)).toThrow(SimError);
    expect([k.users, k.count, k.state]).toEqual([2, 1, "live"]);
  });
});

describe("vmap / vunmap", () => {
  it("vmap maps the pages in order at the lowest free address, global and supervisor-only, a guard page apart", () => {
    const m = machine();
    const { start } = vmallocRange(SV48);
    const a = frames(m.sys, 3);
    const b = frames(m.sys, 1);
    const rec = m.ctx.trace.record();
    const va = vmap(m.sys, a)!;
    const vb = vmap(m.sys, b, PAGE_KERNEL_READ)!;
    expect(va).toBe(start);
    expect(vb).toBe(start + 4n * 0x1000n);
    const k = initMm(m.sys);
    expect(a.map((_, i) => kernelWalk(k, va + BigInt(i) * 0x1000n))).toEqual(a);
    expect(kernelWalk(k, vb)).toBe(b[0]);
    // The guard page is unmapped; user-mode accesses fault (U = 0).
    expect(kernelWalk(k, va + 3n * 0x1000n)).toBeNull();
    expect(kernelWalk(k, va, true)).toBeNull();
    const perm = (x: bigint) => k.pgtable.lookup(x)!.perm;
    expect(perm(va) & (PTE_G | PTE_U | PTE_W)).toBe(PTE_G | PTE_W);
    expect(perm(vb) & (PTE_G | PTE_W)).toBe(PTE_G);
    expect(events(rec.stop(), "mm:vmap")).toEqual([
      { addr: va, pages: 3 },
      { addr: vb, pages: 1 },
    ]);
    expect(k.areas.map((x) => [x.startPage, x.pages])).toEqual([
      [Number(va >> 12n), 3],
      [Number(vb >> 12n), 1],
    ]);
  });

  it("vunmap clears the PTEs at once; the CPU flush and the address range wait for the lazy purge", () => {
    const m = machine();
    const k = initMm(m.sys);
    const va = vmap(m.sys, frames(m.sys, 2))!;
    const rec = m.ctx.trace.record();
    vunmap(m.sys, va);
    expect(kernelWalk(k, va)).toBeNull();
    expect(k.pgtable.lookup(va)).toBeNull();
    expect(k.lazyPages).toBe(3);
    // Still reserved: the next area goes after it.
    const vb = vmap(m.sys, frames(m.sys, 1))!;
    expect(vb).toBe(va + 3n * 0x1000n);
    expect(events(rec.stop(), "mm:flush_tlb_kernel_range")).toEqual([]);
    const purge = m.ctx.trace.record();
    vmUnmapAliases(m.sys);
    expect(events(purge.stop(), "mm:flush_tlb_kernel_range")).toEqual([
      { start: va, end: va + 3n * 0x1000n },
    ]);
    expect(k.lazyPages).toBe(0);
    // Purged: the range is free again.
    expect(vmap(m.sys, frames(m.sys, 2))).toBe(va);
    // Nothing lazy left: another vm_unmap_aliases flushes nothing.
    const none = m.ctx.trace.record();
    vmUnmapAliases(m.sys);
    expect(events(none.stop(), "mm:flush_tlb_kernel_range")).toEqual([]);
  });

  it("never reaches mmu notifiers: a subscriber on init_mm hears nothing of vmap, vunmap or the purge", () => {
    const m = machine();
    const k = initMm(m.sys);
    const heard: string[] = [];
    const sub = new MmuNotifier({
      archInvalidateSecondaryTlbs: (_s, _mm, s, e) => heard.push(`tlb ${s}-${e}`),
      invalidateRangeStart: (_s, r) => heard.push(`start ${r.start}`),
      invalidateRangeEnd: (_s, r) => heard.push(`end ${r.start}`),
    });
    must(mmuNotifierRegister(sub, k));
    const rec = m.ctx.trace.record();
    const va = vmap(m.sys, frames(m.sys, 1))!;
    vunmap(m.sys, va);
    vmUnmapAliases(m.sys);
    const r = rec.stop();
    expect(events(r, "mm:flush_tlb_kernel_range")).toHaveLength(1);
    expect(events(r, "mm:invalidate_range")).toEqual([]);
    expect(heard).toEqual([]);
    mmuNotifierUnregister(sub, k);
    expect(k.count).toBe(1);
  });

  it("past lazy_max_pages the purge is scheduled as drain_vmap_work and runs with the machine's work", () => {
    const m = machine();
    const k = initMm(m.sys);
    expect(lazyMaxPages(m.sys)).toBe(8192);
    expect(lazyMaxPages(machine({ nrCpus: 4 }).sys)).toBe(3 * 8192);
    const pfn = m.sys.frames.alloc();
    const big = vmap(m.sys, repeated(4096, pfn))!;
    const big2 = vmap(m.sys, repeated(4095, pfn))!;
    const rec = m.ctx.trace.record();
    vunmap(m.sys, big);
    vunmap(m.sys, big2);
    // 4097 + 4096 = 8193 > 8192: scheduled, not yet run.
    expect(k.lazyPages).toBe(8193);
    expect(events(rec.stop(), "mm:flush_tlb_kernel_range")).toEqual([]);
    const later = m.ctx.trace.record();
    expect(m.ctx.scheduler.settle()).toBe(1);
    expect(events(later.stop(), "mm:flush_tlb_kernel_range")).toEqual([
      { start: big, end: big2 + 4096n * 0x1000n },
    ]);
    expect(k.purgeList).toEqual([]);
  });

  it("unmaps the whole area from any page-aligned address inside it, guard page included; WARNs otherwise", () => {
    const m = machine();
    const k = initMm(m.sys);
    const va = vmap(m.sys, frames(m.sys, 2))!;
    vunmap(m.sys, va + 2n * 0x1000n);
    expect(k.areas).toEqual([]);
    vunmap(m.sys, null);
    vunmap(m.sys, 0n);
    expect(m.ctx.warnings.list()).toEqual([]);
    vunmap(m.sys, va);
    vunmap(m.sys, va + 0x10n);
    expect(m.ctx.warnings.list().map((w) => [w.site, w.message])).toEqual([
      ["vunmap", "Trying to vunmap() nonexistent vm area"],
      ["remove_vm_area", "Trying to vfree() bad address"],
      ["vunmap", "Trying to vunmap() nonexistent vm area"],
    ]);
  });

  it("NULL for no pages, for more pages than the vmalloc area holds, and when page tables run out (after a purge)", () => {
    const m = machine({ kernelMode: SV39, ramBytes: 1n << 20n });
    const k = initMm(m.sys);
    expect(vmap(m.sys, [])).toBeNull();
    const whole = Number((vmallocRange(SV39).end - vmallocRange(SV39).start) >> 12n);
    expect(vmap(m.sys, repeated(whole, 0x80000))).toBeNull();
    const small = vmap(m.sys, [0x80000])!;
    vunmap(m.sys, small);
    const rec = m.ctx.trace.record();
    // Fits only once the lazily freed area is purged; then 1 MiB of RAM has too few table pages.
    const r = vmap(m.sys, repeated(whole - 1, 0x80000));
    const trace = rec.stop();
    expect(r).toBeNull();
    expect(events(trace, "mm:flush_tlb_kernel_range")).toEqual([
      { start: small, end: small + 0x2000n },
    ]);
    expect(events(trace, "mm:vmap")).toEqual([{ addr: null, pages: whole - 1 }]);
    // The partly mapped area was vunmapped again (lazily).
    expect(k.areas).toEqual([]);
    expect(k.purgeList.map((a) => a.startPage)).toEqual([Number(small >> 12n)]);
    expect(k.pgtable.mappings()).toEqual([]);
  });

  it("refuses a protection that is not a kernel one", () => {
    const m = machine();
    expect(() => vmap(m.sys, [1], PAGE_KERNEL | PTE_U)).toThrow(/kernel protection/);
    expect(() => vmap(m.sys, [1], PAGE_KERNEL & ~1)).toThrow(SimError);
  });
});
