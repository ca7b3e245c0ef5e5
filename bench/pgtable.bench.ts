// Page-table hot paths: a full Sv48 4 KiB walk, a two-stage Sv48 over Sv48x4 walk, a 4 KiB
// map + unmap pair, the bigint lookup + protect pair, and the allocation-free 4 KiB entry and
// cursor operations. Setup happens outside the timed code.

import { FrameAllocator, PhysicalMemory } from "../src/hw/memory.js";
import { SV48, SV48X4 } from "../src/hw/pgtable/modes.js";
import { PageTable, PT_OK } from "../src/hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_G, PTE_R, PTE_U, PTE_V, PTE_W } from "../src/hw/pgtable/pte.js";
import { PteCursor } from "../src/hw/pgtable/pte-cursor.js";
import { walk } from "../src/hw/pgtable/walk.js";
import { ACCESS_WRITE, WalkConfig, WalkResult } from "../src/hw/pgtable/walk-result.js";
import type { BenchSuite } from "./harness.js";

const RAM = 0x8000_0000n;
const RW_AD = PTE_R | PTE_W | PTE_A | PTE_D;

export const suite: BenchSuite = {
  title: "pgtable",
  build(bench) {
    const mem = new PhysicalMemory([{ base: RAM, size: 256n << 20n }]);
    const frames = new FrameAllocator(mem);
    const va = 0x0000_7f12_3456_7000n;
    const vpn = Number(va >> 12n);
    const out = new WalkResult();

    // Single stage: Sv48, 4 KiB leaf, A/D already set.
    const s1 = PageTable.create(mem, frames, SV48)!;
    s1.map(va, 0x9000_0000n, 0x1000n, RW_AD);
    const single = new WalkConfig();
    single.first.set(SV48, s1.rootPpn);

    // Two stage: the guest's Sv48 tables live at GPA = SPA, each identity-mapped by a 4 KiB
    // G-stage page (so every implicit G-stage walk is a full 4-level one); the guest maps
    // va → GPA 0x1_0000_0000, which the G-stage maps to SPA 0x9000_1000.
    const g = PageTable.create(mem, frames, SV48X4)!;
    const vs = PageTable.create(mem, frames, SV48)!;
    vs.map(va, 0x1_0000_0000n, 0x1000n, RW_AD);
    const vsOnly = new WalkConfig();
    vsOnly.first.set(SV48, vs.rootPpn);
    walk(mem, vsOnly, vpn, ACCESS_WRITE, false, out);
    for (let i = 0; i < out.steps; i++) {
      const page = BigInt(out.stepTable[i]!) << 12n;
      g.map(page, page, 0x1000n, RW_AD | PTE_U);
    }
    g.map(0x1_0000_0000n, 0x9000_1000n, 0x1000n, RW_AD | PTE_U);
    const nested = new WalkConfig();
    nested.first.set(SV48, vs.rootPpn);
    nested.second.set(SV48X4, g.rootPpn);

    const pt = PageTable.create(mem, frames, SV48)!;
    pt.map4k(vpn + 1, 0x90002, RW_AD); // keep the intermediate tables alive across iterations
    let sink = 0;

    bench.add("walk Sv48 4 KiB (4 PTE reads)", () => {
      walk(mem, single, vpn, ACCESS_WRITE, false, out);
      sink ^= out.ppn;
    });
    bench.add("walk two-stage Sv48 over Sv48x4 (24 PTE reads)", () => {
      walk(mem, nested, vpn, ACCESS_WRITE, false, out);
      sink ^= out.ppn;
    });
    bench.add("map4k + unmap4k (Sv48, tables present)", () => {
      sink ^= pt.map4k(vpn, 0x90003, RW_AD) | pt.unmap4k(vpn);
    });

    const big = PageTable.create(mem, frames, SV48)!;
    for (let i = 0; i < 64; i++) big.map4k(vpn + i, 0x90100 + i, RW_AD | PTE_U);
    const pt4 = PageTable.create(mem, frames, SV48)!;
    for (let i = 0; i < 64; i++) pt4.map4k(vpn + i, 0x90100 + i, RW_AD | PTE_U);
    bench.add("lookup + protect of one 4 KiB page (bigint API)", () => {
      const m = big.lookup(va + 0x5000n);
      if (m !== null) sink ^= m.perm;
      big.protect(
        va + 0x5000n,
        0x1000n,
        m !== null && m.perm & PTE_W ? PTE_R : RW_AD,
        PTE_R | PTE_W,
      );
    });

    const cur = new PteCursor();
    bench.add("seek4k + updateAt (set A, clear W) of one 4 KiB page", () => {
      pt4.seek4k(cur, vpn + 5);
      pt4.updateAt(cur, PTE_A, cur.flags & PTE_W);
      sink ^= cur.lo;
      pt4.updateAt(cur, PTE_W, 0);
    });
    bench.add("replace4k of one 4 KiB page: leaf -> software PTE -> leaf", () => {
      sink ^= pt4.replace4k(vpn + 6, 0x90106, PTE_G | PTE_R | PTE_A | PTE_D);
      sink ^= pt4.replace4k(vpn + 6, 0x90106, PTE_V | RW_AD | PTE_U);
    });
    bench.add("leafRange + nextLeaf + updateAt over 64 pages (one call per page)", () => {
      pt4.leafRange(cur, vpn, vpn + 64);
      while (pt4.nextLeaf(cur)) pt4.updateAt(cur, 0, PTE_D);
      sink ^= cur.lo;
    });

    // Sanity: the timed paths really succeed.
    const singleOk = walk(mem, single, vpn, ACCESS_WRITE, false, out) && out.ppn === 0x90000;
    const nestedOk =
      walk(mem, nested, vpn, ACCESS_WRITE, false, out) && out.ppn === 0x90001 && out.steps === 24;
    if (!singleOk || !nestedOk)
      throw new Error(`walks failed: ${out.fault} ${out.reason} ${out.faultStage}`);
    if (pt.map4k(vpn, 0x90003, RW_AD) !== PT_OK || pt.unmap4k(vpn) !== PT_OK)
      throw new Error("map4k/unmap4k");
    if (sink === -1) throw new Error("unreachable");
  },
};
