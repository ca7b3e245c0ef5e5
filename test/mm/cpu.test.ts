import { describe, expect, it } from "vitest";
import { SV57 } from "../../src/hw/pgtable/modes.js";
import { PTE_D, PTE_V } from "../../src/hw/pgtable/pte.js";
import { Cpu } from "../../src/mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { mmput } from "../../src/mm/fork.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { machine, must, newMm, ptePerm } from "./helpers.js";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
const RW = PROT_READ | PROT_WRITE;
const A = 0x40_0000n;

function setup(prot = RW, len = 0x3000n) {
  const m = machine();
  const mm = newMm(m.sys);
  must(vmMmap(mm, A, len, prot, ANON));
  return { ...m, mm, cpu: new Cpu(m.sys) };
}

const bytes = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe("CPU loads and stores through the MMU", () => {
  it("round-trips data across page boundaries, each page faulted in on first use", () => {
    const { mm, cpu, sys } = setup();
    const data = bytes(5000, 3);
    expect(cpu.store(mm, A + 0xff0n, data).ok).toBe(true);
    expect(cpu.load(mm, A + 0xff0n, 5000)).toEqual({ ok: true, value: data });
    // The bytes really are in the frames the page table points at.
    const p1 = ptePerm(mm, A + 0x1000n)!.ppn;
    expect(sys.memory.pageU8(p1)![0]).toBe(data[0x10]);
    expect(cpu.load64(mm, A + 0xffcn)).toEqual({
      ok: true,
      value: new DataView(data.buffer).getBigUint64(0xc, true),
    });
  });

  it("reads never-written memory as zero", () => {
    const { mm, cpu } = setup();
    expect(cpu.load(mm, A + 0x1800n, 0x1000)).toEqual({ ok: true, value: new Uint8Array(0x1000) });
  });

  it("reports SIGSEGV/SEGV_MAPERR outside any VMA and writes nothing of a store that reaches it", () => {
    const { mm, cpu } = setup();
    expect(cpu.load(mm, A - 1n, 1)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_MAPERR", addr: A - 1n },
    });
    expect(cpu.store(mm, A + 0x2ffcn, bytes(8, 1))).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_MAPERR", addr: A + 0x3000n },
    });
    expect(cpu.load(mm, A + 0x2ffcn, 4)).toEqual({ ok: true, value: new Uint8Array(4) });
  });

  it("reports an access fault of the walk (a PTE read where no memory is) as SIGSEGV/SEGV_ACCERR", () => {
    const { mm, cpu, sys } = setup();
    expect(cpu.store(mm, A, bytes(8, 1)).ok).toBe(true);
    // The root entry of A now points at a page with no memory behind it (below RAM).
    const root = sys.memory.writablePageU32(mm.pgdPpn)!;
    const i = Number((A >> 39n) & 0x1ffn) * 2;
    root[i] = ((0x10 << 10) | PTE_V) >>> 0;
    root[i + 1] = 0;
    for (const r of [cpu.load(mm, A, 1), cpu.store(mm, A, bytes(1, 2)), cpu.fetch(mm, A, 4)]) {
      expect(r).toEqual({ ok: false, fault: { signal: "SIGSEGV", code: "SEGV_ACCERR", addr: A } });
    }
  });

  it("checks execute permission on fetches", () => {
    const { mm, cpu } = setup(RW);
    expect(cpu.fetch(mm, A, 4)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_ACCERR", addr: A },
    });
    must(vmMmap(mm, A + 0x10_0000n, 0x1000n, PROT_READ | PROT_EXEC, ANON));
    expect(cpu.fetch(mm, A + 0x10_0000n, 4).ok).toBe(true);
    // Exec-only memory cannot be loaded (no MXR for user code).
    must(vmMmap(mm, A + 0x20_0000n, 0x1000n, PROT_EXEC, ANON));
    expect(cpu.fetch(mm, A + 0x20_0000n, 4).ok).toBe(true);
    expect(cpu.load(mm, A + 0x20_0000n, 4)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_ACCERR", addr: A + 0x20_0000n },
    });
  });

  it("reports OOM when a fault finds no memory", () => {
    const { mm, cpu, sys } = setup();
    expect(cpu.load64(mm, A).ok).toBe(true);
    while (sys.frames.alloc() >= 0);
    expect(cpu.store64(mm, A, 1n)).toEqual({
      ok: false,
      fault: { signal: "OOM", code: "VM_FAULT_OOM", addr: A },
    });
  });

  it("counts the task's faults", () => {
    const { mm, cpu } = setup();
    const task = { minFlt: 0, majFlt: 0 };
    cpu.store(mm, A, bytes(0x2001, 0), task);
    expect(task.minFlt).toBe(3);
  });

  it("loadInto / storeFrom use the caller's buffer and return null or the fault", () => {
    const { mm, cpu } = setup();
    const data = bytes(100, 9);
    expect(cpu.storeFrom(mm, A + 0xfd0n, data)).toBeNull();
    const dst = new Uint8Array(100);
    expect(cpu.loadInto(mm, A + 0xfd0n, dst)).toBeNull();
    expect(dst).toEqual(data);
    const keep = bytes(16, 1);
    const fault = { signal: "SIGSEGV", code: "SEGV_MAPERR", addr: A + 0x3000n };
    expect(cpu.loadInto(mm, A + 0x2ff8n, keep)).toEqual(fault);
    expect(keep).toEqual(bytes(16, 1));
    expect(cpu.storeFrom(mm, A + 0x2ff8n, keep)).toEqual(fault);
    expect(cpu.load(mm, A + 0x2ff8n, 8)).toEqual({ ok: true, value: new Uint8Array(8) });
  });

  it("handles addresses above 2^53 (Sv57) and stores 64-bit values modulo 2^64", () => {
    const { sys } = machine();
    const mm = newMm(sys, SV57);
    const cpu = new Cpu(sys);
    const high = 1n << 54n;
    must(vmMmap(mm, high, 0x1000n, RW, ANON));
    expect(cpu.store64(mm, high + 0xff8n, -2n)).toEqual({ ok: true, value: undefined });
    expect(cpu.load64(mm, high + 0xff8n)).toEqual({ ok: true, value: (1n << 64n) - 2n });
    expect(cpu.load(mm, high + 0xffcn, 8)).toEqual({
      ok: false,
      fault: { signal: "SIGSEGV", code: "SEGV_MAPERR", addr: high + 0x1000n },
    });
    expect(ptePerm(mm, high)!.perm & PTE_D).toBe(PTE_D);
  });

  it("refuses an exited address space and malformed accesses (misuse)", () => {
    const { mm, cpu } = setup();
    expect(() => cpu.load(mm, A, 0)).toThrow(/length/);
    expect(() => cpu.load(mm, 1n << 64n, 1)).toThrow(/64-bit/);
    expect(() => cpu.load(mm, (1n << 64n) - 4n, 8)).toThrow(/wraps/);
    mmput(mm);
    expect(() => cpu.load(mm, A, 1)).toThrow(/exited/);
  });
});
