// The user address-space layout of a RISC-V Linux process (arch/riscv/include/asm/processor.h,
// mm/util.c arch_pick_mmap_layout / mmap_base), without address-space randomisation so that
// placement is deterministic.
//
// - TASK_SIZE: half the VA space, 2^38 (Sv39), 2^47 (Sv48), 2^56 (Sv57).
// - DEFAULT_MAP_WINDOW = STACK_TOP: 2^38 under Sv39, else 2^47 — mmap stays within Sv48's
//   user half by default even under Sv57; only a hint or MAP_FIXED above it goes higher
//   (arch_get_mmap_end is STACK_TOP_MAX = TASK_SIZE, arch_get_mmap_base the plain base).
// - mmap_base = STACK_TOP - gap, gap = stack rlimit + stack_guard_gap clamped to
//   [128 MiB, STACK_TOP / 6 × 5]: with the default 8 MiB stack limit, 128 MiB below STACK_TOP.
// - TASK_UNMAPPED_BASE = DEFAULT_MAP_WINDOW / 3, where the bottom-up fallback search starts.

import { PAGE_SHIFT } from "../base/bits.js";
import type { PagingMode } from "../hw/pgtable/modes.js";

const MIN_GAP = 128 * 2 ** 20;
/** stack_guard_gap: 256 pages. */
const STACK_GUARD_GAP = 256 * 4096;

export interface MmLayout {
  /** TASK_SIZE in pages: user addresses are below it. */
  readonly taskSizePages: number;
  /** mmap_base in pages: the top-down search starts below it. */
  readonly mmapBasePages: number;
  /** TASK_UNMAPPED_BASE in pages: the bottom-up fallback starts here. */
  readonly unmappedBasePages: number;
}

/** arch_pick_mmap_layout for a legacy-free, unrandomised process with this stack rlimit. */
export function mmLayout(mode: PagingMode, stackRlimit: number): MmLayout {
  const taskSize = 2 ** (mode.vaBits - 1);
  const window = 2 ** Math.min(mode.vaBits - 1, 47);
  let gap = stackRlimit + STACK_GUARD_GAP;
  const maxGap = Math.floor(window / 6) * 5;
  if (gap < MIN_GAP) gap = MIN_GAP;
  else if (gap > maxGap) gap = maxGap;
  // PAGE_ALIGN rounds up.
  const pages = (bytes: number) => Math.ceil(bytes / 2 ** PAGE_SHIFT);
  return {
    taskSizePages: pages(taskSize),
    mmapBasePages: pages(window - gap),
    unmappedBasePages: pages(window / 3),
  };
}
