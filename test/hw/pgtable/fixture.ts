// Shared set-up for the page-table tests: a machine's RAM, a frame allocator, and helpers to
// find and poke the PTEs the walker reads.

import { fc } from "@fast-check/vitest";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";
import { type PagingMode, signExtendVpn } from "../../../src/hw/pgtable/modes.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W, PTE_X } from "../../../src/hw/pgtable/pte.js";
import type { WalkResult } from "../../../src/hw/pgtable/walk-result.js";

export const RAM_BASE = 0x8000_0000n;
export const RAM_PAGES = 4096; // 16 MiB

export interface Machine {
  readonly mem: PhysicalMemory;
  readonly frames: FrameAllocator;
}

export function machine(pages = RAM_PAGES): Machine {
  const mem = new PhysicalMemory([{ base: RAM_BASE, size: BigInt(pages) * 4096n }]);
  return { mem, frames: new FrameAllocator(mem) };
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
