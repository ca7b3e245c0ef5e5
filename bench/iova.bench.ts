import { createContext } from "../src/base/context.js";
import { IovaDomain } from "../src/dma/iova.js";
import type { BenchSuite } from "./harness.js";

// DMA_BIT_MASK(32) >> 12: the inclusive limit pfn of a 32-bit device with a 4 KiB granule.
const LIMIT32 = 0xfffff;

/** A domain with `n` single-page ranges allocated top-down below 4 GiB. */
function populated(n: number, rcaches: boolean): IovaDomain {
  const d = new IovaDomain(createContext(), 4096, 1, { name: "bench" });
  if (rcaches) d.initRcaches();
  for (let i = 0; i < n; i++) d.allocIova(1, LIMIT32, true);
  return d;
}

export const suite: BenchSuite = {
  title: "iova",
  build(bench) {
    let sink = 0;

    // Magazine hit: the pfn freed last comes straight back; the tree is not touched.
    const hot = populated(1000, true);
    hot.freeIovaFast(hot.allocIovaFast(1, LIMIT32, true), 1);
    bench.add("allocIovaFast+freeIovaFast, magazine hit", () => {
      const pfn = hot.allocIovaFast(1, LIMIT32, true);
      hot.freeIovaFast(pfn, 1);
      sink ^= pfn;
    });

    // Too big to cache (64 pages): every call walks and updates the tree.
    const big = populated(1000, true);
    bench.add("allocIovaFast+freeIovaFast, 64 pages (tree), 1k ranges", () => {
      const pfn = big.allocIovaFast(64, LIMIT32, true);
      big.freeIovaFast(pfn, 64);
      sink ^= pfn;
    });

    for (const n of [1_000, 100_000]) {
      const d = populated(n, false);
      bench.add(`allocIova+freeIova (tree), ${n / 1000}k ranges`, () => {
        const iova = d.allocIova(1, LIMIT32, true)!;
        d.freeIova(iova.pfnLo);
        sink ^= iova.pfnLo;
      });
    }

    // Fragmented: 20k one-page holes above the free space. Freeing and re-taking the top page
    // puts cached32_node at the top, so each 2-page request starts there and has to get past
    // every hole (the kernel visits them one by one; the gap-augmented tree skips them).
    const frag = populated(40_000, false);
    for (let i = 0; i < 40_000; i += 2) frag.freeIova(LIMIT32 - i);
    bench.add("free+alloc top page, then 2 pages past 20k holes", () => {
      frag.freeIova(LIMIT32);
      const top = frag.allocIova(1, LIMIT32, true)!;
      const iova = frag.allocIova(2, LIMIT32, true)!;
      frag.freeIova(iova.pfnLo);
      sink ^= iova.pfnLo ^ top.pfnLo;
    });

    if (sink === -1) throw new Error("unreachable");
  },
};
