// The CPU side: processes (spawn, fork, exit, wait), their address spaces (mmap, munmap,
// mprotect, mm references) and a hart's loads and stores at a process's virtual addresses.
// System calls name the calling process with `task` and take the syscall's own parameters.

import { SimError } from "../../base/errors.js";
import { jsonAddr } from "../../base/json.js";
import { err, ok } from "../../base/result.js";
import type { Machine } from "../../machine/machine.js";
import type { CpuFault } from "../../mm/cpu.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../mm/flags.js";
import { mmput } from "../../mm/fork.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { vmMmap, vmMunmap } from "../../mm/mmap.js";
import { doMprotect } from "../../mm/mprotect.js";
import { getTaskMm, type Process } from "../../mm/process.js";
import { MM } from "./kinds.js";
import {
  BYTES,
  Bytes,
  type Failure,
  type FunctionSpec,
  failure,
  flags,
  int,
  intOf,
  JSON_VALUE,
  object,
  type ParamSpec,
  param,
  returnsOrFails,
  returnsResult,
  returnsValue,
  TEXT,
  U64,
  VOID,
} from "./types.js";

export const TASK: ParamSpec = param(object("process"), { doc: "the calling process" });

/** `PROT_*` of mmap and mprotect. */
export const PROT_FLAGS = flags({
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  PROT_EXEC,
});

/** `MAP_*` of mmap (anonymous memory only). */
export const MAP_FLAGS = flags({
  MAP_SHARED,
  MAP_PRIVATE,
  MAP_FIXED,
  MAP_ANONYMOUS,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_FIXED_NOREPLACE,
});

/** What a CPU access raises, most specific first (`error:` may also name the signal). */
export const CPU_FAULTS = {
  what: "a signal (SIGSEGV, SIGBUS) or its si_code",
  codes: ["SIGSEGV", "SEGV_MAPERR", "SEGV_ACCERR", "SIGBUS", "BUS_ADRERR", "OOM", "VM_FAULT_OOM"],
} as const;

/** How a step reports the signal a CPU access raised. */
export function cpuFailure(f: CpuFault): Failure {
  return failure(f.code, { signal: f.signal, code: f.code, addr: jsonAddr(f.addr) }, [f.signal]);
}

/** A task that has not exited (its mm is live), or a misuse. */
export function liveTask(task: Process): Process & { readonly mm: MmStruct } {
  if (task.mm === null) throw new SimError(`pid ${task.pid} (${task.comm}) has exited`);
  return task as Process & { readonly mm: MmStruct };
}

/** The size of a load or store: 1, 2, 4 or 8 bytes. */
export const ACCESS_SIZE = param(intOf([1, 2, 4, 8], "an access size of 1, 2, 4 or 8 bytes"), {
  optional: true,
  doc: "bytes, default 8",
});

export function accessSize(x: unknown): number {
  return (x as number | undefined) ?? 8;
}

/** The `size` low bytes of `value`, little-endian: what a store of that size writes. */
export function littleEndian(value: bigint, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let v = value;
  for (let i = 0; i < size; i++) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytes;
}

export const PROCESSES: readonly FunctionSpec<Machine>[] = [
  {
    name: "spawn",
    area: "process",
    params: { comm: param(TEXT, { optional: true, doc: 'the task\'s name (default "task")' }) },
    returns: returnsResult(object("process")),
    ts: "machine.processes.spawn(comm)",
    doc: "A new process with an empty address space (Sv48), as exec of a fresh program gives. ENOMEM without a frame for its page table, EAGAIN without a free pid.",
    call: (m, a) => m.processes.spawn((a.comm as string | undefined) ?? "task"),
  },
  {
    name: "fork",
    area: "process",
    params: { task: TASK },
    returns: returnsResult(object("process")),
    ts: "machine.processes.fork(task)",
    doc: "The child of `task`, with a copy of its address space (dup_mm: private pages copied, no mmu notifiers, no PASID: mm->iommu_mm starts empty).",
    call: (m, a) => m.processes.fork(a.task as Process),
  },
  {
    name: "exit",
    area: "process",
    params: {
      task: TASK,
      code: param(int(0, 255, "an exit code 0..255"), { optional: true, doc: "default 0" }),
    },
    returns: VOID,
    ts: "machine.processes.exit(task, code)",
    doc: "do_exit: exit_mm (mmput: exit_mmap when it was the last user, mmu notifiers' ->release first), then the open files close; a zombie until its parent waits.",
    call: (m, a) => m.processes.exit(a.task as Process, (a.code as number | undefined) ?? 0),
  },
  {
    name: "wait",
    area: "process",
    params: {
      task: TASK,
      pid: param(object("process"), { optional: true, doc: "the child to wait for (default any)" }),
    },
    returns: returnsResult(JSON_VALUE),
    ts: "machine.processes.wait(task, pid)",
    doc: "waitpid(pid, WNOHANG): reaps an exited child and returns {pid, code}; null while the children run.",
    call: (m, a) =>
      m.processes.wait(a.task as Process, (a.pid as Process | undefined)?.pid ?? undefined),
  },
  {
    name: "close",
    area: "process",
    params: { task: TASK, fd: param(int(0, 1 << 20, "a file descriptor"), { doc: "the fd" }) },
    returns: returnsResult("void"),
    ts: "task.closeFile(fd)",
    doc: "close(fd): the file's release runs (an idxd WQ file drains its PASID on the device, then unbinds the mm). EBADF for an fd the process does not have open.",
    call: (_m, a) => {
      const task = a.task as Process;
      if (!task.fds().includes(a.fd as number)) return err("EBADF");
      task.closeFile(a.fd as number);
      return ok(undefined);
    },
  },
  {
    name: "mmap",
    area: "process",
    params: {
      task: TASK,
      addr: param(U64, { doc: "hint, or the address with MAP_FIXED" }),
      len: param(U64),
      prot: param(PROT_FLAGS),
      flags: param(MAP_FLAGS, { doc: "MAP_ANONYMOUS is required (there are no files)" }),
    },
    returns: returnsResult(U64),
    ts: "vmMmap(task.mm, addr, len, prot, flags)",
    doc: "Maps anonymous memory; returns the address. EINVAL (len 0, unaligned MAP_FIXED, bad type), ENOMEM (no room, too many VMAs), EPERM (below mmap_min_addr), EEXIST (MAP_FIXED_NOREPLACE over a mapping).",
    call: (_m, a) =>
      vmMmap(
        liveTask(a.task as Process).mm,
        a.addr as bigint,
        a.len as bigint,
        a.prot as number,
        a.flags as number,
      ),
  },
  {
    name: "munmap",
    area: "process",
    params: { task: TASK, addr: param(U64), len: param(U64) },
    returns: returnsResult("void"),
    ts: "vmMunmap(task.mm, addr, len)",
    doc: "Unmaps a range: its pages are zapped and the CPU TLB flushed, which mmu notifiers pass on to IOMMUs (arch_invalidate_secondary_tlbs). EINVAL (unaligned, empty, outside the address space), ENOMEM (a split past max_map_count).",
    call: (_m, a) => vmMunmap(liveTask(a.task as Process).mm, a.addr as bigint, a.len as bigint),
  },
  {
    name: "mprotect",
    area: "process",
    params: { task: TASK, start: param(U64), len: param(U64), prot: param(PROT_FLAGS) },
    returns: returnsResult("void"),
    ts: "doMprotect(task.mm, start, len, prot)",
    doc: "Changes the protection of a range; the PTEs are rewritten and the TLB flushed (mmu notifiers follow). EINVAL (unaligned, bad prot), ENOMEM (unmapped hole), EACCES (a permission the VMA may not get).",
    call: (_m, a) =>
      doMprotect(
        liveTask(a.task as Process).mm,
        a.start as bigint,
        a.len as bigint,
        a.prot as number,
      ),
  },
  {
    name: "get_task_mm",
    area: "process",
    params: { task: TASK },
    returns: returnsValue(object("mm")),
    ts: "getTaskMm(task)",
    doc: "The task's mm with one more user (mmget), to bind with as: and mmput later; null once the task exited.",
    call: (_m, a) => getTaskMm(a.task as Process),
  },
  {
    name: "mmput",
    area: "process",
    params: { mm: MM },
    returns: VOID,
    ts: "mmput(mm)",
    doc: "Drops a user of the mm; the last one runs exit_mmap (mmu notifiers' ->release, then every page goes).",
    call: (_m, a) => mmput(a.mm as MmStruct),
  },
  {
    name: "cpu_read",
    area: "process",
    params: { task: TASK, addr: param(U64), len: param(int(1, 1 << 24, "a length in bytes")) },
    returns: returnsOrFails(BYTES, CPU_FAULTS),
    ts: "machine.cpu.load(task.mm, addr, len, task)",
    doc: "The process reads bytes at a virtual address: the MMU walks its page table, page faults go through the kernel's fault path (find_vma, access_error, handle_mm_fault). Fails with SIGSEGV (SEGV_MAPERR: no VMA; SEGV_ACCERR: not allowed) or SIGBUS.",
    call: (m, a) => {
      const task = liveTask(a.task as Process);
      const r = m.cpu.load(task.mm, a.addr as bigint, a.len as number, task);
      return r.ok ? ok(new Bytes(r.value)) : cpuFailure(r.fault);
    },
  },
  {
    name: "cpu_write",
    area: "process",
    params: { task: TASK, addr: param(U64), data: param(BYTES) },
    returns: returnsOrFails("void", CPU_FAULTS),
    ts: "machine.cpu.store(task.mm, addr, data, task)",
    doc: "The process writes bytes at a virtual address (nothing is written unless every page can be). Fails like cpu_read.",
    call: (m, a) => {
      const task = liveTask(a.task as Process);
      const r = m.cpu.store(task.mm, a.addr as bigint, (a.data as Bytes).data, task);
      return r.ok ? ok(undefined) : cpuFailure(r.fault);
    },
  },
  {
    name: "cpu_load",
    area: "process",
    params: { task: TASK, addr: param(U64), size: ACCESS_SIZE },
    returns: returnsOrFails(U64, CPU_FAULTS),
    ts: "machine.cpu.load(task.mm, addr, size, task)",
    doc: "The process loads a little-endian value of 1, 2, 4 or 8 bytes. Fails like cpu_read.",
    call: (m, a) => {
      const task = liveTask(a.task as Process);
      const size = accessSize(a.size);
      const r = m.cpu.load(task.mm, a.addr as bigint, size, task);
      if (!r.ok) return cpuFailure(r.fault);
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(r.value[i]!);
      return ok(v);
    },
  },
  {
    name: "cpu_store",
    area: "process",
    params: { task: TASK, addr: param(U64), value: param(U64), size: ACCESS_SIZE },
    returns: returnsOrFails("void", CPU_FAULTS),
    ts: "machine.cpu.store(task.mm, addr, bytes(value, size), task)",
    doc: "The process stores a little-endian value of 1, 2, 4 or 8 bytes (truncated to its size). Fails like cpu_read.",
    call: (m, a) => {
      const task = liveTask(a.task as Process);
      const bytes = littleEndian(a.value as bigint, accessSize(a.size));
      const r = m.cpu.store(task.mm, a.addr as bigint, bytes, task);
      return r.ok ? ok(undefined) : cpuFailure(r.fault);
    },
  },
];
