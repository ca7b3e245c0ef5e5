// Processes: enough of the task model for scenarios around address spaces — a pid (from an
// IDA, lowest free first, like alloc_pid's cyclic allocator on a fresh system), a name (comm),
// an mm, a parent, open files, fault counters, and exit/wait.
//
// exit (do_exit): exit_mm first — the task lets go of its mm and mmput runs (exit_mmap when it
// was the last user; a device still bound by SVA holds only mm_count, so its mmu notifier's
// ->release runs here) — then exit_files closes the open files in fd order (a driver's release,
// e.g. an SVA unbind on close, runs after exit_mmap). The task stays a zombie until its parent
// waits for it; a task without a living parent is reaped at once (there is no init to adopt
// orphans), and an exiting task's children lose their parent.

import { SimError } from "../base/errors.js";
import { Ida } from "../base/ida.js";
import type { Json } from "../base/json.js";
import { err, ok, type Result } from "../base/result.js";
import type { PagingMode } from "../hw/pgtable/modes.js";
import { dupMm, mmAlloc, mmput } from "./fork.js";
import { mmget } from "./mm-refs.js";
import type { FaultCounters, MmStruct, MmSubsystem } from "./mm-types.js";

export type ProcessState = "running" | "zombie" | "reaped";

/** An open file: its release runs when the last fd to it closes (here: its one fd). */
export interface ProcessFile {
  readonly name: string;
  release(task: Process): void;
}

export class Process implements FaultCounters {
  readonly pid: number;
  comm: string;
  /** The address space; null once the task has exited. */
  mm: MmStruct | null;
  parent: Process | null;
  readonly children: Process[] = [];
  state: ProcessState = "running";
  exitCode: number | null = null;
  minFlt = 0;
  majFlt = 0;
  readonly #files = new Map<number, ProcessFile>();

  constructor(pid: number, comm: string, mm: MmStruct, parent: Process | null) {
    this.pid = pid;
    this.comm = comm;
    this.mm = mm;
    this.parent = parent;
  }

  /** Installs `file` at the lowest free fd and returns the fd. */
  openFile(file: ProcessFile): number {
    this.#running("open a file");
    let fd = 0;
    while (this.#files.has(fd)) fd++;
    this.#files.set(fd, file);
    return fd;
  }

  /** close(fd): runs the file's release. */
  closeFile(fd: number): void {
    const file = this.#files.get(fd);
    if (file === undefined) throw new SimError(`pid ${this.pid} has no fd ${fd}`);
    this.#files.delete(fd);
    file.release(this);
  }

  /** Open fds, ascending. */
  fds(): number[] {
    return [...this.#files.keys()].sort((a, b) => a - b);
  }

  toJSON(): Json {
    return {
      pid: this.pid,
      comm: this.comm,
      state: this.state,
      mm: this.mm?.id ?? null,
      parent: this.parent?.pid ?? null,
      children: this.children.map((c) => c.pid),
      exit_code: this.exitCode,
      min_flt: this.minFlt,
      maj_flt: this.majFlt,
      files: this.fds().map((fd) => ({ fd, name: this.#files.get(fd)!.name })),
    };
  }

  #running(what: string): void {
    if (this.state !== "running")
      throw new SimError(`pid ${this.pid} cannot ${what}: ${this.state}`);
  }
}

/** get_task_mm: the task's mm with one more user (mmput it when done), or null once exited. */
export function getTaskMm(task: Process): MmStruct | null {
  const mm = task.mm;
  if (mm === null) return null;
  mmget(mm);
  return mm;
}

export interface SpawnOptions {
  /** Paging mode of the new address space (default Sv48). */
  readonly mode?: PagingMode;
  readonly parent?: Process | null;
}

export class ProcessTable {
  readonly sys: MmSubsystem;
  /** pid_max: pids are 1 … pidMax − 1. */
  readonly pidMax: number;
  readonly #pids = new Ida();
  readonly #procs = new Map<number, Process>();

  constructor(sys: MmSubsystem, options: { pidMax?: number } = {}) {
    this.sys = sys;
    this.pidMax = options.pidMax ?? 32768;
  }

  /**
   * A new process with an empty address space (like exec of a fresh program). ENOMEM when no
   * frame is left for its page-table root; EAGAIN when no pid is free.
   */
  spawn(comm: string, options: SpawnOptions = {}): Result<Process> {
    const parent = options.parent ?? null;
    if (parent !== null) this.#checkOwn(parent);
    const made =
      options.mode === undefined ? mmAlloc(this.sys) : mmAlloc(this.sys, { mode: options.mode });
    if (!made.ok) return made;
    return this.#attach(comm, made.value, parent);
  }

  /** fork: a child with a copy of the parent's address space (dup_mm). ENOMEM, EAGAIN. */
  fork(parent: Process, comm = parent.comm): Result<Process> {
    this.#checkOwn(parent);
    if (parent.state !== "running" || parent.mm === null) {
      throw new SimError(`pid ${parent.pid} cannot fork: ${parent.state}`);
    }
    const made = dupMm(parent.mm);
    if (!made.ok) return made;
    return this.#attach(comm, made.value, parent);
  }

  /** do_exit(code): exit_mm, then exit_files, then zombie (or reaped when nobody waits). */
  exit(task: Process, code = 0): void {
    this.#checkOwn(task);
    if (task.state !== "running") throw new SimError(`pid ${task.pid} exits twice`);
    const mm = task.mm;
    task.mm = null;
    if (mm !== null) {
      // mm_update_next_owner: no other task shares the mm here.
      if (mm.owner === task.pid) mm.owner = null;
      mmput(mm);
    }
    for (const fd of task.fds()) task.closeFile(fd);
    task.state = "zombie";
    task.exitCode = code;
    this.sys.ctx.trace.emit("mm:process_exit", `pid${task.pid}`, {
      pid: task.pid,
      comm: task.comm,
      code,
    });
    for (const child of task.children.splice(0)) {
      child.parent = null;
      if (child.state === "zombie") this.#reap(child);
    }
    if (task.parent === null || task.parent.state !== "running") this.#reap(task);
  }

  /**
   * waitpid(pid or any child, WNOHANG): reaps an exited child and returns its pid and exit
   * code; null while the children (or that child) still run. Waiting for a task that is not
   * a child is a misuse here (the kernel's ECHILD).
   */
  wait(parent: Process, pid?: number): Result<{ pid: number; code: number } | null> {
    this.#checkOwn(parent);
    const candidates =
      pid === undefined ? parent.children : parent.children.filter((c) => c.pid === pid);
    if (candidates.length === 0) {
      throw new SimError(`pid ${parent.pid} has no child${pid === undefined ? "" : ` ${pid}`}`);
    }
    const done = candidates.find((c) => c.state === "zombie");
    if (done === undefined) return ok(null);
    this.#reap(done);
    return ok({ pid: done.pid, code: done.exitCode ?? 0 });
  }

  get(pid: number): Process | undefined {
    return this.#procs.get(pid);
  }

  /** Processes not yet reaped, by pid. */
  list(): Process[] {
    return [...this.#procs.values()].sort((a, b) => a.pid - b.pid);
  }

  toJSON(): Json {
    return this.list().map((p) => p.toJSON());
  }

  #attach(comm: string, mm: MmStruct, parent: Process | null): Result<Process> {
    const pid = this.#pids.alloc(1, this.pidMax - 1);
    if (pid < 0) {
      mmput(mm);
      return err("EAGAIN");
    }
    const task = new Process(pid, comm, mm, parent);
    mm.owner = pid;
    parent?.children.push(task);
    this.#procs.set(pid, task);
    return ok(task);
  }

  /** release_task: the pid goes back and the parent forgets the child. */
  #reap(task: Process): void {
    task.state = "reaped";
    this.#procs.delete(task.pid);
    this.#pids.free(task.pid);
    const parent = task.parent;
    if (parent !== null) {
      const i = parent.children.indexOf(task);
      if (i >= 0) parent.children.splice(i, 1);
    }
  }

  #checkOwn(task: Process): void {
    if (this.#procs.get(task.pid) !== task) {
      throw new SimError(`pid ${task.pid} is not a live process of this table`);
    }
  }
}
