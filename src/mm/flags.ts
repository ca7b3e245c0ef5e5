// The numeric vocabulary of the mm layer, with the kernel's names and values: VMA flags
// (include/linux/mm.h), mmap/mprotect arguments (uapi asm-generic/mman-common.h), fault flags
// (enum fault_flag), get_user_pages flags (FOLL_*), fault results (enum vm_fault_reason), and
// mmu-notifier events.

// ---- vm_flags ----
export const VM_NONE = 0x0;
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
/** The VM_MAY* bits say what mprotect may later grant: VM_MAYx = VM_x << 4. */
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
/** Never copied into a fork child (madvise MADV_DONTFORK). */
export const VM_DONTCOPY = 0x2_0000;
/** Charged to the commit limit (accountable_mapping: private and writable, not NORESERVE). */
export const VM_ACCOUNT = 0x10_0000;
/** Not charged (MAP_NORESERVE under the default overcommit policy). */
export const VM_NORESERVE = 0x20_0000;
export const VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;

// ---- mmap/mprotect prot ----
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
export const PROT_SEM = 0x8;
export const PROT_GROWSDOWN = 0x0100_0000;
export const PROT_GROWSUP = 0x0200_0000;

// ---- mmap flags ----
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_FIXED_NOREPLACE = 0x10_0000;

// ---- fault flags (enum fault_flag) ----
export const FAULT_FLAG_WRITE = 1 << 0;
export const FAULT_FLAG_MKWRITE = 1 << 1;
export const FAULT_FLAG_ALLOW_RETRY = 1 << 2;
export const FAULT_FLAG_RETRY_NOWAIT = 1 << 3;
export const FAULT_FLAG_KILLABLE = 1 << 4;
export const FAULT_FLAG_TRIED = 1 << 5;
export const FAULT_FLAG_USER = 1 << 6;
export const FAULT_FLAG_REMOTE = 1 << 7;
export const FAULT_FLAG_INSTRUCTION = 1 << 8;
export const FAULT_FLAG_INTERRUPTIBLE = 1 << 9;
export const FAULT_FLAG_UNSHARE = 1 << 10;
export const FAULT_FLAG_ORIG_PTE_VALID = 1 << 11;
export const FAULT_FLAG_VMA_LOCK = 1 << 12;
/** What the arch fault handlers start from: retry allowed, killable, interruptible. */
export const FAULT_FLAG_DEFAULT =
  FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_INTERRUPTIBLE;

const FAULT_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [FAULT_FLAG_WRITE, "WRITE"],
  [FAULT_FLAG_MKWRITE, "MKWRITE"],
  [FAULT_FLAG_ALLOW_RETRY, "ALLOW_RETRY"],
  [FAULT_FLAG_RETRY_NOWAIT, "RETRY_NOWAIT"],
  [FAULT_FLAG_KILLABLE, "KILLABLE"],
  [FAULT_FLAG_TRIED, "TRIED"],
  [FAULT_FLAG_USER, "USER"],
  [FAULT_FLAG_REMOTE, "REMOTE"],
  [FAULT_FLAG_INSTRUCTION, "INSTRUCTION"],
  [FAULT_FLAG_INTERRUPTIBLE, "INTERRUPTIBLE"],
  [FAULT_FLAG_UNSHARE, "UNSHARE"],
  [FAULT_FLAG_ORIG_PTE_VALID, "ORIG_PTE_VALID"],
  [FAULT_FLAG_VMA_LOCK, "VMA_LOCK"],
];

// ---- get_user_pages flags (include/linux/mm_types.h; internal ones from mm/internal.h) ----
export const FOLL_WRITE = 1 << 0;
export const FOLL_GET = 1 << 1;
export const FOLL_DUMP = 1 << 2;
export const FOLL_FORCE = 1 << 3;
export const FOLL_NOWAIT = 1 << 4;
export const FOLL_NOFAULT = 1 << 5;
export const FOLL_HWPOISON = 1 << 6;
export const FOLL_ANON = 1 << 7;
/** The pin is held for an indefinite time, often under user-space control (VFIO, iommufd). */
export const FOLL_LONGTERM = 1 << 8;
export const FOLL_SPLIT_PMD = 1 << 9;
export const FOLL_PCI_P2PDMA = 1 << 10;
export const FOLL_INTERRUPTIBLE = 1 << 11;
export const FOLL_HONOR_NUMA_FAULT = 1 << 12;
/** Internal (__NR_FOLL_PUBLIC_FLAGS = 13 onwards): never passed by a caller. */
export const FOLL_TOUCH = 1 << 13;
export const FOLL_TRIED = 1 << 14;
export const FOLL_REMOTE = 1 << 15;
export const FOLL_PIN = 1 << 16;
export const FOLL_FAST_ONLY = 1 << 17;
export const FOLL_UNLOCKABLE = 1 << 18;
export const FOLL_MADV_POPULATE = 1 << 19;
export const INTERNAL_GUP_FLAGS =
  FOLL_TOUCH |
  FOLL_TRIED |
  FOLL_REMOTE |
  FOLL_PIN |
  FOLL_FAST_ONLY |
  FOLL_UNLOCKABLE |
  FOLL_MADV_POPULATE;

// ---- fault results (vm_fault_t, enum vm_fault_reason); 0 is a handled minor fault ----
export const VM_FAULT_OOM = 0x00_0001;
export const VM_FAULT_SIGBUS = 0x00_0002;
export const VM_FAULT_MAJOR = 0x00_0004;
export const VM_FAULT_HWPOISON = 0x00_0010;
export const VM_FAULT_HWPOISON_LARGE = 0x00_0020;
export const VM_FAULT_SIGSEGV = 0x00_0040;
export const VM_FAULT_NOPAGE = 0x00_0100;
export const VM_FAULT_LOCKED = 0x00_0200;
export const VM_FAULT_RETRY = 0x00_0400;
export const VM_FAULT_FALLBACK = 0x00_0800;
export const VM_FAULT_DONE_COW = 0x00_1000;
export const VM_FAULT_NEEDDSYNC = 0x00_2000;
export const VM_FAULT_COMPLETED = 0x00_4000;
export const VM_FAULT_ERROR =
  VM_FAULT_OOM |
  VM_FAULT_SIGBUS |
  VM_FAULT_SIGSEGV |
  VM_FAULT_HWPOISON |
  VM_FAULT_HWPOISON_LARGE |
  VM_FAULT_FALLBACK;

const VM_FAULT_NAMES: ReadonlyArray<readonly [number, string]> = [
  [VM_FAULT_OOM, "OOM"],
  [VM_FAULT_SIGBUS, "SIGBUS"],
  [VM_FAULT_MAJOR, "MAJOR"],
  [VM_FAULT_HWPOISON, "HWPOISON"],
  [VM_FAULT_HWPOISON_LARGE, "HWPOISON_LARGE"],
  [VM_FAULT_SIGSEGV, "SIGSEGV"],
  [VM_FAULT_NOPAGE, "NOPAGE"],
  [VM_FAULT_LOCKED, "LOCKED"],
  [VM_FAULT_RETRY, "RETRY"],
  [VM_FAULT_FALLBACK, "FALLBACK"],
  [VM_FAULT_DONE_COW, "DONE_COW"],
  [VM_FAULT_NEEDDSYNC, "NEEDDSYNC"],
  [VM_FAULT_COMPLETED, "COMPLETED"],
];

// ---- mmu notifier events (enum mmu_notifier_event) ----
export type MmuNotifierEvent =
  | "MMU_NOTIFY_UNMAP"
  | "MMU_NOTIFY_CLEAR"
  | "MMU_NOTIFY_PROTECTION_VMA"
  | "MMU_NOTIFY_PROTECTION_PAGE"
  | "MMU_NOTIFY_SOFT_DIRTY"
  | "MMU_NOTIFY_RELEASE";

/** VM_READ/WRITE/EXEC for a prot (calc_vm_prot_bits; PROT_x and VM_x share their values). */
export function calcVmProtBits(prot: number): number {
  return prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
}

/** `rwxs`-style text like /proc/<pid>/maps: `rw-p`, `r-xs`. */
export function vmFlagsString(flags: number): string {
  return (
    (flags & VM_READ ? "r" : "-") +
    (flags & VM_WRITE ? "w" : "-") +
    (flags & VM_EXEC ? "x" : "-") +
    (flags & VM_MAYSHARE ? "s" : "p")
  );
}

/** `WRITE|USER|REMOTE`, or `0` when none is set. */
export function faultFlagsString(flags: number): string {
  return namesOf(flags, FAULT_FLAG_NAMES);
}

/** `OOM`, `SIGSEGV`, … or `0` for a handled fault. */
export function vmFaultString(ret: number): string {
  return namesOf(ret, VM_FAULT_NAMES);
}

function namesOf(value: number, table: ReadonlyArray<readonly [number, string]>): string {
  const out: string[] = [];
  let rest = value;
  for (const [bit, name] of table) {
    if (value & bit) {
      out.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) out.push(`0x${rest.toString(16)}`);
  return out.length === 0 ? "0" : out.join("|");
}
