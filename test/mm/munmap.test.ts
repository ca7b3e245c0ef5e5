import { describe, expect, it } from "vitest";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { type MmStruct, MmuNotifier, type MmuNotifierRange } from "../../src/mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../src/mm/mmap.js";
import { FLUSH_ALL_END, mmuNotifierRegister } from "../../src/mm/mmu-notifier.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { machine, must, newMm, pteEntry, ptePerm } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const RW = PROT_READ | PROT_WRITE;
const A = 0x40_0000n;

/** Records every notifier call on `mm` as text. */
function listen(mm: MmStruct): string[] {
  const log: string[] = [];
  const hex = (x: bigint) => `0x${x.toString(16)}`;
  const sub = new MmuNotifier({
    invalidateRangeStart: (_s, r: MmuNotifierRange) =>
      log.push(`start ${r.event} ${hex(r.start)}-${hex(r.end)}`),
    invalidateRangeEnd: (_s, r: MmuNotifierRange) =>
      log.push(`end ${r.event} ${hex(r.start)}-${hex(r.end)}`),
    archInvalidateSecondaryTlbs: (_s, _mm, start, end) =>
      log.push(`tlb ${hex(start)}-${end === FLUSH_ALL_END ? "all" : hex(end)}`),
  });
  must(mmuNotifierRegister(sub, mm));
  return log;
}

/** A 3-page private mapping at A with every page written. */
function threePages() {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, 0x3000n, RW, ANON | MAP_FIXED | MAP_POPULATE));
  const cpu = new Cpu(m.sys);
  for (let i = 0n; i < 3n; i++) expect(cpu.store64(mm, A + i * 0x1000n, 0x100n + i).ok).toBe(true);
  return { ...m, mm, cpu };
}

describe("munmap errors", () => {
  it("refuses an unaligned start, a zero length and ranges beyond TASK_SIZE with EINVAL", () => {
    const mm = newMm(machine().sys);
    const taskSize = 1n << 47n;
    expect(vmMunmap(mm, A + 1n, 4096n)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMunmap(mm, A, 0n)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMunmap(mm, taskSize + 4096n, 4096n)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMunmap(mm, taskSize - 4096n, 8192n)).toEqual({ ok: false, errno: "EINVAL" });
    expect(vmMunmap(mm, taskSize - 4096n, 4096n)).toEqual({ ok: true, value: undefined });
  });

  it("succeeds when nothing is mapped there", () => {
    const mm = newMm(machine().sys);
    expect(vmMunmap(mm, A, 0x10000n).ok).toBe(true);
  });

  it("refuses with ENOMEM to split a VMA in the middle at max_map_count, but may trim it", () => {
    const { sys } = machine({ maxMapCount: 2 });
    const mm = newMm(sys);
    must(vmMmap(mm, A, 0x4000n, RW, ANON | MAP_FIXED));
    must(vmMmap(mm, A + 0x10_0000n, 0x1000n, RW, ANON | MAP_FIXED));
    expect(mm.mapCount).toBe(2);
    expect(vmMunmap(mm, A + 0x1000n, 0x1000n)).toEqual({ ok: false, errno: "ENOMEM" });
    expect(mm.mapCount).toBe(2);
    // Trimming the head needs no new VMA.
    expect(vmMunmap(mm, A, 0x1000n).ok).toBe(true);
    expect(mm.findVma(0n)!.start).toBe(A + 0x1000n);
  });
});

describe("munmap", () => {
  it("splits a VMA, clears the PTEs in memory and frees the frames", () => {
    const { mm, cpu, frames } = threePages();
    const used = frames.framesInUse;
    expect(vmMunmap(mm, A + 0x1000n, 0x1000n).ok).toBe(true);
    expect(mm.vmas.toArray().map((v) => [v.start, v.end])).toEqual([
      [A, A + 0x1000n],
      [A + 0x2000n, A + 0x3000n],
    ]);
    expect(ptePerm(mm, A + 0x1000n)).toBeNull();
    expect(ptePerm(mm, A)).not.toBeNull();
    expect(ptePerm(mm, A + 0x2000n)).not.toBeNull();
    expect(frames.framesInUse).toBe(used - 1);
    expect(mm.rssAnon).toBe(2);
    expect(cpu.load64(mm, A + 0x2000n)).toEqual({ ok: true, value: 0x102n });
    expect(cpu.load64(mm, A + 0x1000n)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_MAPERR", addr: A + 0x1000n },
    });
  });

  it("unmaps across several VMAs and trims both ends", () => {
    const { mm } = threePages();
    must(vmMmap(mm, A + 0x3000n, 0x2000n, PROT_READ, ANON | MAP_FIXED));
    expect(mm.mapCount).toBe(2);
    expect(vmMunmap(mm, A + 0x2000n, 0x2000n).ok).toBe(true);
    expect(mm.vmas.toArray().map((v) => [v.start, v.end])).toEqual([
      [A, A + 0x2000n],
      [A + 0x4000n, A + 0x5000n],
    ]);
  });

  it("invalidates the zapped range once, after the PTEs are cleared, inside an UNMAP range", () => {
    const { mm } = threePages();
    const log = listen(mm);
    vmMunmap(mm, A + 0x1000n, 0x1000n);
    expect(log).toEqual([
      "start MMU_NOTIFY_UNMAP 0x401000-0x402000",
      "end MMU_NOTIFY_UNMAP 0x401000-0x402000",
      "tlb 0x401000-0x402000",
    ]);
  });

  it("flushes the whole mm when page tables were freed", () => {
    const { mm } = threePages();
    const tables = mm.pgtable.tablePages;
    const log = listen(mm);
    vmMunmap(mm, A, 0x3000n);
    expect(mm.pgtable.tablePages).toBeLessThan(tables);
    expect(log.at(-1)).toBe("tlb 0x0-all");
  });

  it("flushes nothing when no page was populated", () => {
    const mm = newMm(machine().sys);
    must(vmMmap(mm, A, 0x3000n, RW, ANON | MAP_FIXED));
    const log = listen(mm);
    vmMunmap(mm, A, 0x3000n);
    expect(log).toEqual([
      "start MMU_NOTIFY_UNMAP 0x400000-0x403000",
      "end MMU_NOTIFY_UNMAP 0x400000-0x403000",
    ]);
  });

  it("clears PROT_NONE PTEs too: their frames and emptied tables go", () => {
    const { mm, sys } = threePages();
    const before = sys.frames.framesInUse;
    const tables = mm.pgtable.tablePages;
    expect(doMprotect(mm, A, 0x2000n, PROT_NONE).ok).toBe(true);
    expect(pteEntry(mm, A)!.valid).toBe(false);
    vmMunmap(mm, A, 0x3000n);
    expect(pteEntry(mm, A)).toBeNull();
    expect(mm.rssAnon).toBe(0);
    expect(sys.frames.framesInUse).toBe(before - 3 - (tables - mm.pgtable.tablePages));
    expect(mm.pgtable.tablePages).toBe(1);
  });

  it("frees a frame only after the secondary TLBs were invalidated", () => {
    const { mm, frames } = threePages();
    const ppn = ptePerm(mm, A + 0x1000n)!.ppn;
    const seen: boolean[] = [];
    must(
      mmuNotifierRegister(
        new MmuNotifier({
          archInvalidateSecondaryTlbs: () => seen.push(frames.isAllocated(ppn)),
        }),
        mm,
      ),
    );
    vmMunmap(mm, A + 0x1000n, 0x1000n);
    expect(seen).toEqual([true]);
    expect(frames.isAllocated(ppn)).toBe(false);
  });

  it("keeps shared pages in their object while another VMA maps it", () => {
    const { sys } = machine();
    const mm = newMm(sys);
    const cpu = new Cpu(sys);
    const s = must(vmMmap(mm, A, 0x2000n, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED));
    expect(cpu.store64(mm, s + 0x1000n, 7n).ok).toBe(true);
    const shmem = mm.vmaLookup(s)!.shmem!;
    vmMunmap(mm, s, 0x1000n);
    expect(shmem.nrPages).toBe(1);
    expect(cpu.load64(mm, s + 0x1000n)).toEqual({ ok: true, value: 7n });
    const used = sys.frames.framesInUse;
    vmMunmap(mm, s + 0x1000n, 0x1000n);
    expect(shmem.refs).toBe(0);
    expect(sys.frames.framesInUse).toBeLessThan(used);
  });
});
