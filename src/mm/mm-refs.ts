// The two reference counts of an address space (include/linux/sched/mm.h, kernel/fork.c):
// mm_users keeps the address space (VMAs, pages) alive; mm_count keeps the structure and its
// page-table root alive. All mm_users together hold one mm_count, dropped after exit_mmap.
// mmput (which runs exit_mmap) lives in fork.ts.

import { SimError } from "../base/errors.js";
import type { MmStruct } from "./mm-types.js";

/** mmget: one more user. The mm must still have users (a misuse otherwise). */
export function mmget(mm: MmStruct): void {
  if (mm.users <= 0) throw new SimError(`mmget on mm ${mm.id} whose users are gone`);
  mm.users++;
}

/** mmget_not_zero: one more user unless the address space is already gone. */
export function mmgetNotZero(mm: MmStruct): boolean {
  if (mm.users <= 0) return false;
  mm.users++;
  return true;
}

/** mmgrab: one more reference to the structure (not to the address space). */
export function mmgrab(mm: MmStruct): void {
  if (mm.count <= 0) throw new SimError(`mmgrab on freed mm ${mm.id}`);
  mm.count++;
}

/** mmdrop: drops a structure reference; the last one runs __mmdrop. */
export function mmdrop(mm: MmStruct): void {
  if (mm.count <= 0) throw new SimError(`mmdrop on freed mm ${mm.id}`);
  if (mm.kernel && mm.count <= 1) throw new SimError("mmdrop of init_mm's own reference");
  if (--mm.count === 0) mmdropFinal(mm);
}

/**
 * __mmdrop: frees the page-table root (mm_free_pgd), checks the counters (check_mm), then runs
 * the drop hooks (mm_pasid_drop's place): the mm's own, then the machine-wide ones, each once.
 */
function mmdropFinal(mm: MmStruct): void {
  const sys = mm.sys;
  // mmu_notifier_subscriptions_destroy: every subscription holds an mm_count reference.
  if (mm.notifiers.length !== 0) throw new SimError(`mm ${mm.id} freed with notifiers on it`);
  if (mm.state !== "exited") throw new SimError(`mm ${mm.id} freed before exit_mmap`);
  // check_mm: "BUG: Bad rss-counter state" / "non-zero pgtables_bytes on freeing mm".
  sys.ctx.warnings.on(mm.rssAnon !== 0 || mm.rssShmem !== 0, "check_mm", "Bad rss-counter state", {
    mm: mm.id,
    anon: mm.rssAnon,
    shmem: mm.rssShmem,
  });
  sys.ctx.warnings.on(
    mm.pgtable.tablePages !== mm.pgtable.mode.rootPages,
    "check_mm",
    "non-zero pgtables_bytes on freeing mm",
    { mm: mm.id, pages: mm.pgtable.tablePages },
  );
  mm.pgtable.destroy();
  mm.state = "freed";
  for (const hook of mm.takeDropHooks()) hook(mm);
  for (const hook of sys.finalDropHooks()) hook(mm);
  sys.removeLive(mm);
  sys.ctx.trace.emit("mm:mm_free", mm.track, { mm: mm.id });
}
