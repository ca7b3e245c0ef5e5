// The structures of the CPU side, which refer to one another and so live together (like the
// kernel's include/linux/mm_types.h and mmu_notifier.h): the machine-wide mm state, the address
// space (`mm_struct`), its VMAs and its mmu-notifier subscriptions. Behaviour lives in the files
// named after the kernel's: memory.ts (faults, zap), gup.ts (pins; page-ref.ts counts them), mmap.ts, mprotect.ts, fork.ts (lifetime,
// fork), mmu-notifier.ts, tlb.ts, init-mm.ts (the kernel's address space) and vmalloc.ts.

import { hex, PAGE_SHIFT } from "../base/bits.js";
import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import { Ida } from "../base/ida.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { Result } from "../base/result.js";
import type { WorkQueue } from "../base/workqueue.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import { type PagingMode, SV48 } from "../hw/pgtable/modes.js";
import type { PageTable } from "../hw/pgtable/page-table.js";
import { type MmuNotifierEvent, VM_SHARED, vmFlagsString } from "./flags.js";
import type { MmLayout } from "./layout.js";
import { PageRefs } from "./page-ref.js";
import { vmGetPageProt } from "./pgprot.js";
import type { ShmemObject } from "./shmem.js";
import { VmaList } from "./vma-list.js";

const SHIFT = BigInt(PAGE_SHIFT);

export interface MmSubsystemOptions {
  /** vm.mmap_min_addr: no mapping below it (MAP_FIXED there fails with EPERM). Default 4096. */
  readonly mmapMinAddr?: bigint;
  /** vm.max_map_count: VMAs per address space. Default 65530. */
  readonly maxMapCount?: number;
  /** RLIMIT_STACK in bytes, which sets mmap_base. Default 8 MiB. */
  readonly stackRlimit?: number;
  /** The paging mode of the kernel's own page table (init_mm's satp). Default Sv48. */
  readonly kernelMode?: PagingMode;
  /** num_online_cpus(), which scales vmalloc's lazy TLB-flush threshold. Default 1. */
  readonly nrCpus?: number;
}

/** A task's fault counters (`min_flt`/`maj_flt`): what `regs` stands for in handle_mm_fault. */
export interface FaultCounters {
  minFlt: number;
  majFlt: number;
}

/** Run at __mmdrop, after the page-table root is freed (mm_pasid_drop is one). */
export type MmdropHook = (mm: MmStruct) => void;

/**
 * The machine-wide state of the CPU side: memory and frames, the shared zero page, the mm and
 * shmem ID spaces, the hooks of __mmdrop, and the SRCU callback queue of mmu notifiers.
 */
export class MmSubsystem {
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  /** The references on process pages: owners' puts and DMA pins (page-ref.ts). */
  readonly pages: PageRefs;
  /** The shared zero page (empty_zero_page): read faults on private memory map it. */
  readonly zeroPfn: number;
  readonly mmapMinAddr: bigint;
  readonly maxMapCount: number;
  readonly stackRlimit: number;
  readonly kernelMode: PagingMode;
  readonly nrCpus: number;
  /** @internal init-mm.ts: init_mm once created; use `initMm(sys)`. */
  kernelMm: MmStruct | null = null;
  /** call_srcu callbacks of mmu_notifier_put; mmu_notifier_synchronize flushes them. */
  readonly srcu: WorkQueue;
  /** vm events: every handled fault (PGFAULT), remote or not. */
  pgfault = 0;
  readonly #mmIds = new Ida();
  #shmemIds = 0;
  readonly #live = new Map<number, MmStruct>();
  readonly #finalDropHooks: MmdropHook[] = [];

  constructor(
    ctx: SimContext,
    memory: PhysicalMemory,
    frames: FrameAllocator,
    options: MmSubsystemOptions = {},
  ) {
    this.ctx = ctx;
    this.memory = memory;
    this.frames = frames;
    this.pages = new PageRefs(frames);
    const zero = frames.alloc();
    if (zero < 0) throw new SimError("no frame left for the zero page");
    this.zeroPfn = zero;
    this.mmapMinAddr = options.mmapMinAddr ?? 4096n;
    this.maxMapCount = options.maxMapCount ?? 65530;
    this.stackRlimit = options.stackRlimit ?? 8 * 2 ** 20;
    this.kernelMode = options.kernelMode ?? SV48;
    if (this.kernelMode.gStage) {
      throw new SimError(`${this.kernelMode.name} is not a first-stage mode for the kernel`);
    }
    this.nrCpus = options.nrCpus ?? 1;
    if (!Number.isInteger(this.nrCpus) || this.nrCpus < 1) {
      throw new SimError(`nrCpus must be a positive integer, got ${this.nrCpus}`);
    }
    if (this.mmapMinAddr < 0n || (this.mmapMinAddr & 0xfffn) !== 0n) {
      throw new SimError(`mmap_min_addr ${hex(this.mmapMinAddr)} is not page aligned`);
    }
    this.srcu = ctx.scheduler.createQueue("mmu_notifier_srcu");
  }

  /**
   * Adds a hook run at every __mmdrop (final mm_count put), after the page-table root is freed,
   * in registration order, exactly once per mm. Returns a function that removes it.
   */
  onFinalDrop(hook: MmdropHook): () => void {
    this.#finalDropHooks.push(hook);
    return () => {
      const i = this.#finalDropHooks.indexOf(hook);
      if (i >= 0) this.#finalDropHooks.splice(i, 1);
    };
  }

  /** Address spaces not yet freed (mm_count > 0), by id. */
  liveMms(): MmStruct[] {
    return [...this.#live.values()];
  }

  /** @internal mm layer: the hooks __mmdrop runs. */
  finalDropHooks(): readonly MmdropHook[] {
    return [...this.#finalDropHooks];
  }

  /** @internal mm layer: mm_alloc_id. */
  allocMmId(): number {
    return this.#mmIds.alloc(1);
  }

  /** @internal mm layer: tracks an mm from allocation to __mmdrop. */
  addLive(mm: MmStruct): void {
    this.#live.set(mm.id, mm);
  }

  /** @internal mm layer: __mmdrop's mm_free_id. */
  removeLive(mm: MmStruct): void {
    this.#live.delete(mm.id);
    this.#mmIds.free(mm.id);
  }

  /** @internal mm layer */
  nextShmemId(): number {
    return ++this.#shmemIds;
  }

  toJSON(): Json {
    return {
      zero_page: jsonAddr(BigInt(this.zeroPfn) << SHIFT),
      mmap_min_addr: jsonAddr(this.mmapMinAddr),
      max_map_count: this.maxMapCount,
      live_mms: [...this.#live.keys()],
      pgfault: this.pgfault,
      pages: this.pages.toJSON(),
    };
  }
}

/** Lifetime of an address space: users > 0, then exited (exit_mmap ran), then freed. */
export type MmState = "live" | "exited" | "freed";

/**
 * `struct mm_struct`: one address space. Create with `mmAlloc` (fork.ts); the kernel's is
 * `initMm(sys)` (init-mm.ts).
 */
export class MmStruct {
  readonly sys: MmSubsystem;
  /** mm_id: small and unique among live mms (reused after __mmdrop). */
  readonly id: number;
  /** The page table (pgd) in simulated memory; the root lives until __mmdrop. */
  readonly pgtable: PageTable;
  readonly layout: MmLayout;
  readonly vmas = new VmaList<VmArea>();
  /** mm_users: users of the address space. Change only with mmget / mmput. */
  users = 1;
  /** mm_count: references to the structure. Change only with mmgrab / mmdrop. */
  count = 1;
  state: MmState = "live";
  /** mm->owner: pid of the task the mm belongs to (set by the process table), null once it exits. */
  owner: number | null = null;
  /**
   * `mm->iommu_mm`: null for every new mm, fork children included (mm_pasid_init). The IOMMU
   * core owns what it holds; mm only hands it to the __mmdrop hooks.
   */
  iommuMm: object | null = null;
  /** Subscribed mmu notifiers, in list order: newest first (hlist_add_head). */
  readonly notifiers: MmuNotifier[] = [];
  /** MM_ANONPAGES and MM_SHMEMPAGES: resident pages (the zero page is not counted). */
  rssAnon = 0;
  rssShmem = 0;
  readonly #dropHooks: MmdropHook[] = [];
  #anonVmaSeq = 0;

  constructor(sys: MmSubsystem, id: number, pgtable: PageTable, layout: MmLayout) {
    this.sys = sys;
    this.id = id;
    this.pgtable = pgtable;
    this.layout = layout;
  }

  /** map_count. */
  get mapCount(): number {
    return this.vmas.length;
  }

  /** init_mm, the kernel's address space (init-mm.ts): never torn down. */
  get kernel(): boolean {
    return false;
  }

  /** Root table page number: what satp / an IOMMU process context's iosatp.PPN point at. */
  get pgdPpn(): number {
    return this.pgtable.rootPpn;
  }

  /** Trace track of this mm. */
  get track(): string {
    return `mm${this.id}`;
  }

  /** find_vma: the first VMA ending above `addr`, or null. */
  findVma(addr: bigint): VmArea | null {
    return this.vmas.find(Number(addr >> SHIFT));
  }

  /** vma_lookup: the VMA containing `addr`, or null. */
  vmaLookup(addr: bigint): VmArea | null {
    return this.vmas.lookup(Number(addr >> SHIFT));
  }

  /** find_vma_intersection: the first VMA overlapping [start, end), or null. */
  findVmaIntersection(start: bigint, end: bigint): VmArea | null {
    return this.vmas.intersection(Number(start >> SHIFT), Number((end + 0xfffn) >> SHIFT));
  }

  /** Adds a hook run once when this mm is finally dropped (before the machine-wide hooks). */
  onFinalDrop(hook: MmdropHook): void {
    if (this.state === "freed") throw new SimError(`mm ${this.id} is already freed`);
    this.#dropHooks.push(hook);
  }

  /** @internal mm layer: the per-mm __mmdrop hooks, taken once. */
  takeDropHooks(): MmdropHook[] {
    return this.#dropHooks.splice(0);
  }

  /** @internal mm layer: a new anon_vma identity (anon_vma_prepare). */
  newAnonVma(): number {
    return ++this.#anonVmaSeq;
  }

  toJSON(): Json {
    return {
      id: this.id,
      pid: this.owner,
      state: this.state,
      users: this.users,
      count: this.count,
      mode: this.pgtable.mode.name,
      pgd: this.state === "freed" ? null : jsonAddr(BigInt(this.pgtable.rootPpn) << SHIFT),
      map_count: this.vmas.length,
      vmas: this.vmas.toArray().map((v) => v.toJSON()),
      rss: { anon: this.rssAnon, shmem: this.rssShmem, total: this.rssAnon + this.rssShmem },
      pgtable_pages: this.state === "freed" ? 0 : this.pgtable.tablePages,
      notifiers: this.notifiers.length,
      iommu_mm: this.iommuMm === null ? null : "set",
    };
  }
}

/** `struct vm_area_struct`: one mapping [start, end) of an address space. */
export class VmArea {
  readonly mm: MmStruct;
  startPage: number;
  endPage: number;
  /** vm_flags (VM_READ … VM_MAYSHARE). */
  flags: number;
  /** vm_pgoff: page offset into the shmem object; for private memory, start page at mmap. */
  pgoff: number;
  /** The backing object of a shared mapping (vm_file), or null for private memory. */
  shmem: ShmemObject | null;
  /** anon_vma identity (0: none yet); set by the first page the VMA allocates. */
  anonVma = 0;
  /** The anon_vma chain holds a parent's too (fork child): no merging with anon_vma-less VMAs. */
  anonVmaForked = false;
  /** Removed from its mm; using it is a simulator misuse. */
  detached = false;

  constructor(
    mm: MmStruct,
    startPage: number,
    endPage: number,
    flags: number,
    pgoff: number,
    shmem: ShmemObject | null,
  ) {
    this.mm = mm;
    this.startPage = startPage;
    this.endPage = endPage;
    this.flags = flags;
    this.pgoff = pgoff;
    this.shmem = shmem;
  }

  /** vm_start. */
  get start(): bigint {
    return BigInt(this.startPage) << SHIFT;
  }

  /** vm_end (exclusive). */
  get end(): bigint {
    return BigInt(this.endPage) << SHIFT;
  }

  /** vm_page_prot: PTE bits 9:0 for this VMA's pages (PAGE_NONE: V=0). */
  get pageProt(): number {
    return vmGetPageProt(this.flags);
  }

  get isShared(): boolean {
    return (this.flags & VM_SHARED) !== 0;
  }

  toJSON(): Json {
    return {
      start: jsonAddr(this.start),
      end: jsonAddr(this.end),
      perms: vmFlagsString(this.flags),
      flags: jsonAddr(this.flags),
      pgoff: jsonAddr(this.pgoff),
      shmem: this.shmem?.id ?? null,
      anon_vma: this.anonVma === 0 ? null : this.anonVma,
    };
  }
}

/** The range an invalidate_range_start/end call covers (`struct mmu_notifier_range`). */
export interface MmuNotifierRange {
  readonly event: MmuNotifierEvent;
  readonly mm: MmStruct;
  readonly start: bigint;
  /** Exclusive. */
  readonly end: bigint;
}

/**
 * `struct mmu_notifier_ops`. Every callback is optional. IOMMU SVA drivers use
 * archInvalidateSecondaryTlbs (called after CPU page-table changes, with the range the CPU TLB
 * flush covers; [0, 2^64-1) for a whole-mm flush), release (exit_mmap, before any page goes)
 * and freeNotifier (after mmu_notifier_put, once SRCU readers are done).
 */
export interface MmuNotifierOps {
  release?(sub: MmuNotifier, mm: MmStruct): void;
  invalidateRangeStart?(sub: MmuNotifier, range: MmuNotifierRange): void;
  invalidateRangeEnd?(sub: MmuNotifier, range: MmuNotifierRange): void;
  archInvalidateSecondaryTlbs?(sub: MmuNotifier, mm: MmStruct, start: bigint, end: bigint): void;
  /** mmu_notifier_get: a new subscription for `mm` (its ops must be these ops). */
  allocNotifier?(mm: MmStruct): Result<MmuNotifier>;
  freeNotifier?(sub: MmuNotifier): void;
}

/** `struct mmu_notifier`: one subscription. Drivers may subclass it to hang their state on it. */
export class MmuNotifier {
  readonly ops: MmuNotifierOps;
  /** Set by registration; the subscription holds an mmgrab on it. */
  mm: MmStruct | null = null;
  /** References of mmu_notifier_get / put. */
  users = 0;
  /** On the mm's list (not hlist_unhashed). */
  hashed = false;

  constructor(ops: MmuNotifierOps) {
    this.ops = ops;
  }
}
