// Shared setup for the mm tests: a machine with RAM, frames, the mm subsystem and a process's
// address space.

import { createContext, type SimContext } from "../../src/base/context.js";
import { FrameAllocator, PhysicalMemory } from "../../src/hw/memory.js";
import type { PagingMode } from "../../src/hw/pgtable/modes.js";
import { PT_NOT_MAPPED, PT_OK } from "../../src/hw/pgtable/page-table.js";
import { PTE_V, ptePpn } from "../../src/hw/pgtable/pte.js";
import { PteCursor } from "../../src/hw/pgtable/pte-cursor.js";
import { walk } from "../../src/hw/pgtable/walk.js";
import { ACCESS_READ, WalkConfig, WalkResult } from "../../src/hw/pgtable/walk-result.js";
import { mmAlloc } from "../../src/mm/fork.js";
import { type MmStruct, MmSubsystem, type MmSubsystemOptions } from "../../src/mm/mm-types.js";

export const RAM = { base: 0x8000_0000n, size: 64n << 20n };

export interface Machine {
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly sys: MmSubsystem;
}

export function machine(options: MmSubsystemOptions & { ramBytes?: bigint } = {}): Machine {
  const ctx = createContext({ seed: 7 });
  const memory = new PhysicalMemory([{ base: RAM.base, size: options.ramBytes ?? RAM.size }]);
  const frames = new FrameAllocator(memory);
  const sys = new MmSubsystem(ctx, memory, frames, options);
  return { ctx, memory, frames, sys };
}

export function newMm(sys: MmSubsystem, mode?: PagingMode): MmStruct {
  const r = mode === undefined ? mmAlloc(sys) : mmAlloc(sys, { mode });
  if (!r.ok) throw new Error(`mm_alloc failed: ${r.errno}`);
  return r.value;
}

/** Unwraps an ok Result or fails the test with the errno. */
export function must<T>(r: { ok: true; value: T } | { ok: false; errno: string }): T {
  if (!r.ok) throw new Error(`unexpected ${r.errno}`);
  return r.value;
}

/**
 * The leaf PTE of `va` as the hardware sees it, read back through THE walker (the step buffer
 * holds the PTE read at level 0), or null when the walk finds no valid leaf.
 */
export function ptePerm(mm: MmStruct, va: bigint): { perm: number; ppn: number } | null {
  const cfg = new WalkConfig();
  cfg.first.set(mm.pgtable.mode, mm.pgdPpn);
  // A/D faults instead of updates, so that looking changes nothing; the walk may then fail on
  // A/D or permissions, but its last step is still the leaf PTE it read.
  cfg.first.ad = "fault";
  const out = new WalkResult();
  walk(mm.sys.memory, cfg, Number(va >> 12n), ACCESS_READ, false, out);
  const last = out.steps - 1;
  if (last < 0) return null;
  const lo = out.stepPteLo[last]!;
  if ((lo & PTE_V) === 0 || out.stepLevel[last] !== 0) return null;
  return { perm: lo & 0xff, ppn: ptePpn(lo, out.stepPteHi[last]!) };
}

/**
 * The 4 KiB PTE of `va` as the page table holds it — valid or not (PROT_NONE) — with bits 9:0
 * (RSW included) and the frame; null when the entry is empty.
 */
export function pteEntry(
  mm: MmStruct,
  va: bigint,
): { valid: boolean; flags: number; ppn: number } | null {
  const cur = new PteCursor();
  const rc = mm.pgtable.seek4k(cur, Number(va >> 12n));
  if (rc === PT_NOT_MAPPED) return null;
  if (rc !== PT_OK) throw new Error(`not a 4 KiB entry: ${rc}`);
  return { valid: cur.valid, flags: cur.flags, ppn: cur.ppn };
}
