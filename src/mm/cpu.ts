// A hart running user code of one process: loads, stores and instruction fetches go through
// the MMU — THE walker of hw/pgtable over the process's page table in memory, at user
// privilege — and a page fault enters the kernel's fault path (arch/riscv/mm/fault.c):
// find_vma, access_error, handle_mm_fault with FAULT_FLAG_USER (| WRITE for stores,
// | INSTRUCTION for fetches), then the access is retried.
//
// A/D policy: Svade (the default here, as on hardware without Svadu and on Linux unless it
// turns Svadu on through the SBI): the walker faults when A=0, or D=0 on a store, and the fault
// handler sets the bits. Linux creates user PTEs with A=1 and D set for writes, so these faults
// are rare: a store to a clean writable page (a shared page read first), a first access to a
// PTE made old (fork's copies of the zero page). With `ad: "update"` (Svadu) the walker sets
// the bits itself.
//
// Outcomes are values: the data, or the signal the kernel would send (SIGSEGV with
// SEGV_MAPERR — no VMA — or SEGV_ACCERR — the VMA forbids it; SIGBUS for VM_FAULT_SIGBUS; or
// "OOM" for VM_FAULT_OOM, where the OOM killer steps in). A VM_FAULT_SIGSEGV from
// handle_mm_fault itself is SEGV_MAPERR, as riscv mm_fault_error sends it (unreachable here:
// access_error runs first and handle_mm_fault refuses nothing else). An access fault (the walk
// read a PTE where no memory is: a PMA violation) is not a page fault: do_trap_load_fault and
// its store and fetch twins send SIGSEGV with SEGV_ACCERR. (The kernel reports the faulting pc
// there; with no pc modelled, the address is the access's.)
// There is no CPU TLB: every access walks the page table, so nothing is ever stale.
//
// Hot path: an access to present pages allocates nothing with `loadInto` / `storeFrom` (the
// caller's buffer, a null result); `load64` / `store64` allocate only their result (and the
// bigint); `load` / `fetch` / `store` the result object and, for loads, the bytes returned.
// A Cpu is not reentrant: a fault handler must not run accesses on the same Cpu.

import { PAGE_SHIFT, PAGE_SIZE } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { walk } from "../hw/pgtable/walk.js";
import {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  type Access,
  type AdPolicy,
  WalkConfig,
  WalkResult,
} from "../hw/pgtable/walk-result.js";
import {
  FAULT_FLAG_DEFAULT,
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  VM_EXEC,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VM_READ,
  VM_WRITE,
} from "./flags.js";
import { handleMmFault } from "./memory.js";
import type { FaultCounters, MmStruct, MmSubsystem } from "./mm-types.js";

export type CpuSignal = "SIGSEGV" | "SIGBUS" | "OOM";
export type CpuFaultCode = "SEGV_MAPERR" | "SEGV_ACCERR" | "BUS_ADRERR" | "VM_FAULT_OOM";

export interface CpuFault {
  readonly signal: CpuSignal;
  readonly code: CpuFaultCode;
  /** The faulting address (the first byte of the access on the failing page). */
  readonly addr: bigint;
}

export type CpuResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly fault: CpuFault };

export interface CpuOptions {
  /** "fault" (Svade, default) or "update" (Svadu). */
  readonly ad?: AdPolicy;
}

/** A page fault handled this many times in a row without progress is a simulator bug. */
const MAX_RETRIES = 4;
const SHIFT = BigInt(PAGE_SHIFT);
const U64_LIMIT = 1n << 64n;
const TWO52 = 2 ** 52;
const TWO53 = 2 ** 53;
/** Copies up to this many bytes byte by byte (no subarray view allocated). */
const SMALL_COPY = 64;
const STORED: CpuResult<undefined> = Object.freeze({ ok: true, value: undefined });

export class Cpu {
  readonly sys: MmSubsystem;
  readonly ad: AdPolicy;
  readonly #cfg = new WalkConfig();
  readonly #out = new WalkResult();
  /** Frames of the pages of the current access: the first #pages entries. */
  readonly #ppns: number[] = [];
  #pages = 0;
  /** Offset of the current access's first byte in its first page. */
  #offset = 0;
  #fault: CpuFault | null = null;
  /** The bytes of load64 / store64. */
  readonly #word = new Uint8Array(8);
  readonly #wordView = new DataView(this.#word.buffer);

  constructor(sys: MmSubsystem, options: CpuOptions = {}) {
    this.sys = sys;
    this.ad = options.ad ?? "fault";
  }

  /** Loads `dst.length` bytes at `va` into `dst`: null, or the fault (then `dst` is untouched). */
  loadInto(
    mm: MmStruct,
    va: bigint,
    dst: Uint8Array,
    task: FaultCounters | null = null,
  ): CpuFault | null {
    if (!this.#translateRange(mm, va, dst.length, ACCESS_READ, task)) return this.#takeFault();
    this.#copyOut(dst);
    return null;
  }

  /** Stores `src` at `va`: null, or the fault (nothing is written unless every page can be). */
  storeFrom(
    mm: MmStruct,
    va: bigint,
    src: Uint8Array,
    task: FaultCounters | null = null,
  ): CpuFault | null {
    if (!this.#translateRange(mm, va, src.length, ACCESS_WRITE, task)) return this.#takeFault();
    this.#copyIn(src);
    return null;
  }

  /** Loads `length` bytes at `va`. `task`: whose fault counters the faults count in. */
  load(
    mm: MmStruct,
    va: bigint,
    length: number,
    task: FaultCounters | null = null,
  ): CpuResult<Uint8Array> {
    return this.#read(mm, va, length, ACCESS_READ, task);
  }

  /** Fetches `length` bytes of instructions at `va` (execute permission). */
  fetch(
    mm: MmStruct,
    va: bigint,
    length: number,
    task: FaultCounters | null = null,
  ): CpuResult<Uint8Array> {
    return this.#read(mm, va, length, ACCESS_EXECUTE, task);
  }

  /** Stores `data` at `va`; nothing is written unless every page of it can be. */
  store(
    mm: MmStruct,
    va: bigint,
    data: Uint8Array,
    task: FaultCounters | null = null,
  ): CpuResult<undefined> {
    const fault = this.storeFrom(mm, va, data, task);
    return fault === null ? STORED : { ok: false, fault };
  }

  /** A little-endian 64-bit load. */
  load64(mm: MmStruct, va: bigint, task: FaultCounters | null = null): CpuResult<bigint> {
    if (!this.#translateRange(mm, va, 8, ACCESS_READ, task)) return this.#failure();
    this.#copyOut(this.#word);
    return { ok: true, value: this.#wordView.getBigUint64(0, true) };
  }

  /** A little-endian 64-bit store (of `value` modulo 2^64). */
  store64(
    mm: MmStruct,
    va: bigint,
    value: bigint,
    task: FaultCounters | null = null,
  ): CpuResult<undefined> {
    this.#wordView.setBigUint64(
      0,
      value >= 0n && value < U64_LIMIT ? value : BigInt.asUintN(64, value),
      true,
    );
    return this.store(mm, va, this.#word, task);
  }

  #read(
    mm: MmStruct,
    va: bigint,
    length: number,
    access: Access,
    task: FaultCounters | null,
  ): CpuResult<Uint8Array> {
    if (!this.#translateRange(mm, va, length, access, task)) return this.#failure();
    const out = new Uint8Array(length);
    this.#copyOut(out);
    return { ok: true, value: out };
  }

  /** Copies the bytes of the translated access into `dst`. */
  #copyOut(dst: Uint8Array): void {
    const memory = this.sys.memory;
    const length = dst.length;
    let off = this.#offset;
    let done = 0;
    for (let i = 0; done < length; i++) {
      const n = Math.min(PAGE_SIZE - off, length - done);
      const page = memory.pageU8(this.#ppns[i]!)!;
      if (n <= SMALL_COPY) for (let k = 0; k < n; k++) dst[done + k] = page[off + k]!;
      else dst.set(page.subarray(off, off + n), done);
      done += n;
      off = 0;
    }
  }

  /** Copies `src` into the pages of the translated access. */
  #copyIn(src: Uint8Array): void {
    const memory = this.sys.memory;
    const length = src.length;
    let off = this.#offset;
    let done = 0;
    for (let i = 0; done < length; i++) {
      const n = Math.min(PAGE_SIZE - off, length - done);
      const page = memory.writablePageU8(this.#ppns[i]!)!;
      if (n <= SMALL_COPY) for (let k = 0; k < n; k++) page[off + k] = src[done + k]!;
      else page.set(src.subarray(done, done + n), off);
      done += n;
      off = 0;
    }
  }

  #takeFault(): CpuFault {
    const fault = this.#fault!;
    this.#fault = null;
    return fault;
  }

  #failure(): { ok: false; fault: CpuFault } {
    return { ok: false, fault: this.#takeFault() };
  }

  /** Translates every page of [va, va + length) into #ppns; false with #fault set on failure. */
  #translateRange(
    mm: MmStruct,
    va: bigint,
    length: number,
    access: Access,
    task: FaultCounters | null,
  ): boolean {
    if (typeof va !== "bigint" || va < 0n || va >= U64_LIMIT) {
      throw new SimError(`virtual address must be an unsigned 64-bit bigint, got ${String(va)}`);
    }
    if (!Number.isInteger(length) || length <= 0) throw new SimError(`bad access length ${length}`);
    if (mm.state !== "live") throw new SimError(`access to mm ${mm.id}, which has exited`);
    // Below 2^53 the address is exact as a number: no bigint arithmetic on the way.
    const n = Number(va);
    const first = n < TWO53 ? Math.floor(n / PAGE_SIZE) : Number(va >> SHIFT);
    const off = n < TWO53 ? n - first * PAGE_SIZE : Number(va & 0xfffn);
    const last = first + Math.floor((off + length - 1) / PAGE_SIZE);
    if (last >= TWO52) throw new SimError("access wraps past 2^64");
    this.#offset = off;
    this.#pages = 0;
    const ppns = this.#ppns;
    for (let vpn = first; vpn <= last; vpn++) {
      const ppn = this.#translate(mm, vpn, vpn === first ? va : null, access, task);
      if (ppn < 0) return false;
      if (this.#pages < ppns.length) ppns[this.#pages] = ppn;
      else ppns.push(ppn);
      this.#pages++;
    }
    return true;
  }

  /**
   * One page: walk, and on a page fault do_page_fault and retry. `va`: the access's address
   * when `vpn` is its first page (the fault address), else null (the page's start).
   */
  #translate(
    mm: MmStruct,
    vpn: number,
    va: bigint | null,
    access: Access,
    task: FaultCounters | null,
  ): number {
    const cfg = this.#cfg;
    cfg.first.set(mm.pgtable.mode, mm.pgdPpn);
    cfg.first.ad = this.ad;
    const out = this.#out;
    let addr: bigint | null = null;
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      if (walk(this.sys.memory, cfg, vpn, access, true, out)) return out.ppn;
      addr ??= va ?? BigInt(vpn) << SHIFT;
      if (out.fault === "access-fault") return this.#signal("SIGSEGV", "SEGV_ACCERR", addr);
      // do_page_fault
      const vma = mm.findVma(addr);
      if (vma === null || vma.startPage > vpn) return this.#signal("SIGSEGV", "SEGV_MAPERR", addr);
      if (accessError(vma.flags, access)) return this.#signal("SIGSEGV", "SEGV_ACCERR", addr);
      let flags = FAULT_FLAG_DEFAULT | FAULT_FLAG_USER;
      if (access === ACCESS_WRITE) flags |= FAULT_FLAG_WRITE;
      else if (access === ACCESS_EXECUTE) flags |= FAULT_FLAG_INSTRUCTION;
      const ret = handleMmFault(vma, addr, flags, task);
      if (ret & VM_FAULT_OOM) return this.#signal("OOM", "VM_FAULT_OOM", addr);
      if (ret & VM_FAULT_SIGBUS) return this.#signal("SIGBUS", "BUS_ADRERR", addr);
      if (ret & VM_FAULT_SIGSEGV) return this.#signal("SIGSEGV", "SEGV_MAPERR", addr);
    }
    throw new SimError(`page fault at 0x${addr!.toString(16)} of mm ${mm.id} keeps recurring`);
  }

  #signal(signal: CpuSignal, code: CpuFaultCode, addr: bigint): number {
    this.#fault = { signal, code, addr };
    return -1;
  }
}

/** access_error of arch/riscv/mm/fault.c (a load may use a write-only VMA: write implies read). */
function accessError(vmFlags: number, access: Access): boolean {
  if (access === ACCESS_EXECUTE) return (vmFlags & VM_EXEC) === 0;
  if (access === ACCESS_WRITE) return (vmFlags & VM_WRITE) === 0;
  return (vmFlags & (VM_READ | VM_WRITE)) === 0;
}
