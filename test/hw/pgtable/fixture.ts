// Shared set-up for the page-table tests: a machine's RAM, a frame allocator, and helpers to
// find and poke the PTEs the walker reads.

import { fc } from "@fast-check/vitest";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";
import { type PagingMode, signExtendVpn } from "../../../src/hw/pgtable/modes.js";
import { PageTable, type TableReclaim } from "../../../src/hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X } from "../../../src/hw/pgtable/pte.js";
import { walk } from "../../../src/hw/pgtable/walk.js";
import { type Access, WalkConfig, WalkResult } from "../../../src/hw/pgtable/walk-result.js";

export const RAM_BASE = 0x8000_0000n;
export const RAM_PAGES = 4096; // 16 MiB

export const RW = PTE_R | PTE_W;
export const AD = PTE_A | PTE_D;

export interface Machine {
  readonly mem: PhysicalMemory;
  readonly frames: FrameAllocator;
}

export function machine(pages = RAM_PAGES): Machine {
  const mem = new PhysicalMemory([{ base: RAM_BASE, size: BigInt(pages) * 4096n }]);
  return { mem, frames: new FrameAllocator(mem) };
}

export interface Table extends Machine {
  readonly pt: PageTable;
}

/** A machine with one empty table of `mode`. */
export function table(mode: PagingMode, reclaim: TableReclaim = "free", pages?: number): Table {
  const m = machine(pages);
  const pt = PageTable.create(m.mem, m.frames, mode, { reclaim })!;
  return { ...m, pt };
}

/** Walks page `vpn` through `t.pt` as the only stage (first or G-stage), Svnapot on. */
export function walkAlone(t: Table, vpn: number, access: Access, user: boolean): WalkResult {
  const cfg = new WalkConfig();
  const st = t.pt.mode.gStage ? cfg.second : cfg.first;
  st.set(t.pt.mode, t.pt.rootPpn);
  st.svnapot = true;
  const out = new WalkResult();
  walk(t.mem, cfg, vpn, access, user, out);
  return out;
}

/** Physical address of step `i` of a walk (the PTE it read). */
export function stepAddress(out: WalkResult, i: number): bigint {
  return BigInt(out.stepTable[i]!) * 4096n + BigInt(out.stepIndex[i]!) * 8n;
}

/** Address of the last PTE the walk read. */
export function lastPteAddress(out: WalkResult): bigint {
  return stepAddress(out, out.steps - 1);
}

/** Rewrites the PTE at `pa` through `f`. */
export function pokePte(mem: PhysicalMemory, pa: bigint, f: (pte: bigint) => bigint): void {
  mem.write64(pa, f(mem.read64(pa)));
}

/** Legal leaf permission sets (R or X, W only with R), any U/G, A and D set. */
export const legalPerm: fc.Arbitrary<number> = fc
  .record({
    xwr: fc.constantFrom(PTE_R, PTE_R | PTE_W, PTE_X, PTE_R | PTE_X, PTE_R | PTE_W | PTE_X),
    u: fc.boolean(),
    g: fc.boolean(),
  })
  .map(({ xwr, u, g }) => xwr | (u ? PTE_U : 0) | (g ? 0x20 : 0) | PTE_A | PTE_D);

/** A random canonical input address of `mode`, aligned to 2^shift, as bigint. */
export function alignedAddress(mode: PagingMode, shift: number): fc.Arbitrary<bigint> {
  const pagesBits = mode.vaBits - 12;
  const alignPages = 1n << BigInt(shift - 12);
  return fc.bigInt({ min: 0n, max: (1n << BigInt(pagesBits)) - 1n }).map((t) => {
    const tvpn = t & ~(alignPages - 1n);
    return BigInt(signExtendVpn(mode, Number(tvpn))) << 12n;
  });
}
