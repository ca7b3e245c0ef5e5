// MMU notifiers (mm/mmu_notifier.c): how secondary MMUs — an IOMMU walking a process's page
// table for SVA — hear about changes to it.
//
// Order: a registration goes to the head of the mm's list (hlist_add_head_rcu), and every call
// walks the list from the head, so subscribers are called newest first, deterministically.
//
// Lifetime: a registered subscription holds an mm_count reference (mmgrab). exit_mmap calls
// every ->release and takes all subscriptions off the list; unregister calls ->release itself
// if that has not happened, then drops the reference. mmu_notifier_put drops a get reference;
// the last one unlinks the subscription (without ->release) and defers ->free_notifier and the
// mmdrop to an SRCU callback, run when the srcu queue is flushed (mmu_notifier_synchronize, or
// the machine settling its deferred work).

import { SimError } from "../base/errors.js";
import { OK, type Result } from "../base/result.js";
import { Work } from "../base/workqueue.js";
import type { MmuNotifierEvent } from "./flags.js";
import { mmdrop, mmgrab } from "./mm-refs.js";
import type {
  MmStruct,
  MmSubsystem,
  MmuNotifier,
  MmuNotifierOps,
  MmuNotifierRange,
} from "./mm-types.js";

/** The end of a whole-address-space flush: flush_tlb_mm covers [0, ULONG_MAX). */
export const FLUSH_ALL_END = (1n << 64n) - 1n;

/**
 * mmu_notifier_register: subscribes `sub` to `mm` (ops from `sub.ops`). The mm must have users
 * (the kernel BUG_ONs otherwise). Always succeeds here: the kernel's -ENOMEM / -EINTR come from
 * allocation and signals, neither of which is simulated.
 */
export function mmuNotifierRegister(sub: MmuNotifier, mm: MmStruct): Result {
  if (mm.users <= 0) throw new SimError(`mmu_notifier_register on mm ${mm.id} without users`);
  if (sub.mm !== null) throw new SimError("mmu notifier subscription registered twice");
  mmgrab(mm);
  sub.mm = mm;
  sub.users = 1;
  sub.hashed = true;
  mm.notifiers.unshift(sub);
  return OK;
}

/**
 * mmu_notifier_get: the subscription of `ops` on `mm` with one more user, or a new one from
 * `ops.allocNotifier`, registered. Errors are the allocator's.
 */
export function mmuNotifierGet(ops: MmuNotifierOps, mm: MmStruct): Result<MmuNotifier> {
  if (mm.users <= 0) throw new SimError(`mmu_notifier_get on mm ${mm.id} without users`);
  for (const sub of mm.notifiers) {
    if (sub.ops === ops) {
      sub.users++;
      return { ok: true, value: sub };
    }
  }
  if (ops.allocNotifier === undefined) {
    throw new SimError("mmu_notifier_get needs ops.allocNotifier");
  }
  const made = ops.allocNotifier(mm);
  if (!made.ok) return made;
  const sub = made.value;
  if (sub.ops !== ops) throw new SimError("allocNotifier returned a subscription of other ops");
  mmuNotifierRegister(sub, mm);
  return made;
}

/**
 * mmu_notifier_put: drops a get reference. The last one unlinks the subscription (no ->release)
 * and queues ->freeNotifier plus the mmdrop as an SRCU callback.
 */
export function mmuNotifierPut(sub: MmuNotifier): void {
  const mm = sub.mm;
  if (mm === null) throw new SimError("mmu_notifier_put on an unregistered subscription");
  if (mm.sys.ctx.warnings.on(sub.users === 0, "mmu_notifier_put", "put without a user")) return;
  if (--sub.users > 0) return;
  unlink(mm, sub);
  mm.sys.srcu.queueWork(
    new Work(`mmu_notifier_free_rcu mm${mm.id}`, () => {
      sub.ops.freeNotifier?.(sub);
      mmdrop(mm);
    }),
  );
}

/**
 * mmu_notifier_unregister: calls ->release unless exit_mmap already did, unlinks, and drops
 * the registration's mm_count reference (which may free the mm).
 */
export function mmuNotifierUnregister(sub: MmuNotifier, mm: MmStruct): void {
  if (sub.mm !== mm) throw new SimError("mmu_notifier_unregister with another mm");
  if (mm.count <= 0) throw new SimError(`mmu_notifier_unregister on freed mm ${mm.id}`);
  if (sub.hashed) {
    sub.ops.release?.(sub, mm);
    unlink(mm, sub);
  }
  mmdrop(mm);
}

/** mmu_notifier_synchronize: runs every pending SRCU callback (deferred frees and mmdrops). */
export function mmuNotifierSynchronize(sys: MmSubsystem): void {
  sys.srcu.flush();
}

/**
 * __mmu_notifier_release (start of exit_mmap): every subscriber's ->release, then every
 * subscription leaves the list; later calls reach nobody.
 */
export function mmuNotifierRelease(mm: MmStruct): void {
  mm.sys.ctx.trace.emit("mm:release", mm.track, { mm: mm.id });
  for (const sub of [...mm.notifiers]) sub.ops.release?.(sub, mm);
  for (const sub of mm.notifiers) sub.hashed = false;
  mm.notifiers.length = 0;
}

/** mmu_notifier_invalidate_range_start: before PTEs of [start, end) change. */
export function mmuNotifierInvalidateRangeStart(
  mm: MmStruct,
  event: MmuNotifierEvent,
  start: bigint,
  end: bigint,
): MmuNotifierRange {
  const range: MmuNotifierRange = { event, mm, start, end };
  if (mm.notifiers.length === 0) return range;
  for (const sub of [...mm.notifiers]) sub.ops.invalidateRangeStart?.(sub, range);
  return range;
}

/** mmu_notifier_invalidate_range_end: after the PTEs of the range changed. */
export function mmuNotifierInvalidateRangeEnd(range: MmuNotifierRange): void {
  if (range.mm.notifiers.length === 0) return;
  for (const sub of [...range.mm.notifiers]) sub.ops.invalidateRangeEnd?.(sub, range);
}

/**
 * mmu_notifier_arch_invalidate_secondary_tlbs: called by the CPU TLB flush (tlb.ts) after a
 * change to the page table, with the range that flush covers ([0, 2^64-1) for the whole mm).
 */
export function mmuNotifierArchInvalidateSecondaryTlbs(
  mm: MmStruct,
  start: bigint,
  end: bigint,
): void {
  if (mm.sys.ctx.trace.enabled) {
    mm.sys.ctx.trace.emit("mm:invalidate_range", mm.track, { mm: mm.id, start, end });
  }
  if (mm.notifiers.length === 0) return;
  for (const sub of [...mm.notifiers]) sub.ops.archInvalidateSecondaryTlbs?.(sub, mm, start, end);
}

function unlink(mm: MmStruct, sub: MmuNotifier): void {
  if (!sub.hashed) return;
  const i = mm.notifiers.indexOf(sub);
  if (i >= 0) mm.notifiers.splice(i, 1);
  sub.hashed = false;
}
