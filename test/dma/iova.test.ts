import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { SimError } from "../../src/base/errors.js";
import { type Iova, IovaDomain, iovaRcacheRange, iovaSize } from "../../src/dma/iova.js";
import { IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE } from "../../src/dma/iova-rcache.js";

// With a 4 KiB granule, dma_32bit_pfn = 1 << (32 - 12) = 0x100000 and DMA_BIT_MASK(32) >> 12 =
// 0xfffff is the inclusive limit of a 32-bit device.
const LIMIT32 = 0xfffff;
const DMA32 = 0x100000;

function domain(startPfn = 1, nrCpus = 1) {
  const ctx = createContext();
  const d = new IovaDomain(ctx, 4096, startPfn, { nrCpus, name: "test" });
  return { ctx, d };
}

function spans(d: IovaDomain): Array<[number, number]> {
  return d.ranges().map((r) => [r.pfnLo, r.pfnHi]);
}

describe("alloc_iova: the kernel's addresses", () => {
  it("allocates top-down from the cached node, size-aligned when asked", () => {
    const { d } = domain();
    // Walk from the anchor: high = limit + 1 = 0x100000, new = high - 1.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xfffff);
    // cached32_node is now 0xfffff: high = 0xfffff, new = 0xffffe.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffffe);
    // Size 3 aligns to 4: (0xffffe - 3) & ~3 = 0xffff8, leaving 0xffffb..0xffffd free above it.
    const c = d.allocIova(3, LIMIT32, true)!;
    expect([c.pfnLo, c.pfnHi]).toEqual([0xffff8, 0xffffa]);
    // Unaligned: straight below the cached node, 0xffff8 - 3.
    expect(d.allocIova(3, LIMIT32, false)?.pfnLo).toBe(0xffff5);
    // Size 2 aligns to 2: (0xffff5 - 2) & ~1 = 0xffff2; the hole above the cached node is skipped.
    expect(d.allocIova(2, LIMIT32, true)?.pfnLo).toBe(0xffff2);
    expect(spans(d)).toEqual([
      [0xffff2, 0xffff3],
      [0xffff5, 0xffff7],
      [0xffff8, 0xffffa],
      [0xffffe, 0xffffe],
      [0xfffff, 0xfffff],
    ]);
  });

  it("moves the cached node up on free, so holes above it are reused", () => {
    const { d } = domain();
    d.allocIova(1, LIMIT32, true); // 0xfffff
    d.allocIova(1, LIMIT32, true); // 0xffffe
    d.allocIova(3, LIMIT32, true); // 0xffff8..0xffffa
    d.allocIova(3, LIMIT32, false); // 0xffff5..0xffff7
    d.allocIova(2, LIMIT32, true); // 0xffff2..0xffff3, cached32_node
    // Freeing 0xffffe (above cached32_node) points cached32_node at rb_next = 0xfffff.
    d.freeIova(0xffffe);
    expect(d.toJSON()).toMatchObject({ cached32_node: "0xfffff" });
    // From 0xfffff: new = 0xffffe, above 0xffff8..0xffffa: fits.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffffe);
    // Then 0xffffd, 0xffffc, 0xffffb fill the hole above the size-3 range.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffffd);
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffffc);
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffffb);
    // Next: 0xffffa is taken, 0xffff7 too, and 0xffff4 sits above 0xffff2..0xffff3.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xffff4);
  });

  it("keeps separate cached nodes below and above 4 GiB", () => {
    const { d } = domain();
    const limit48 = 2 ** 36 - 1; // DMA_BIT_MASK(48) >> 12
    expect(d.allocIova(1, limit48, true)?.pfnLo).toBe(limit48);
    // A 32-bit request walks from cached32_node (still the anchor), not from cached_node.
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xfffff);
    expect(d.allocIova(4, limit48, true)?.pfnLo).toBe(limit48 - 7); // (limit48 - 4) & ~3
    expect(d.toJSON()).toMatchObject({
      cached_node: `0x${(limit48 - 7).toString(16)}`,
      cached32_node: "0xfffff",
    });
  });

  it("retries above the cached node once the space below it is exhausted", () => {
    const { d } = domain(1);
    const limit = 0xf; // 15 pages: pfns 1..0xf
    expect(d.allocIova(1, limit, true)?.pfnLo).toBe(0xf);
    // 2 pages aligned: (0xf - 2) & ~1 = 0xc, leaving 0xe free.
    expect(d.allocIova(2, limit, true)?.pfnLo).toBe(0xc);
    for (let pfn = 0xb; pfn >= 1; pfn--) expect(d.allocIova(1, limit, true)?.pfnLo).toBe(pfn);
    // From cached32_node (pfn 1) nothing fits; retry_pfn = 1 < limit, so the walk restarts at the
    // top with low_pfn = 2 and finds 0xe above 0xc..0xd.
    expect(d.allocIova(1, limit, true)?.pfnLo).toBe(0xe);
    // Now full: both passes fail and max32_alloc_size remembers the size.
    expect(d.allocIova(1, limit, true)).toBeNull();
    expect(d.max32AllocSize).toBe(1);
    // Any free below 4 GiB forgets it.
    d.freeIova(0x5);
    expect(d.max32AllocSize).toBe(DMA32);
    expect(d.allocIova(1, limit, true)?.pfnLo).toBe(0x5);
  });

  it("refuses 32-bit sizes at or above max32_alloc_size without searching", () => {
    const { d } = domain(1);
    d.reserveIova(1, 4);
    d.reserveIova(8, 0xf);
    // Only 5..7 is free. 3 pages aligned to 4 would need pfn 4: fails, max32_alloc_size = 3.
    expect(d.allocIova(3, 0xf, true)).toBeNull();
    expect(d.max32AllocSize).toBe(3);
    // The kernel's shortcut: an unaligned 3-page request would fit 5..7 but is refused.
    expect(d.allocIova(3, 0xf, false)).toBeNull();
    // Freeing the low reservation resets the shortcut; now 1..7 is free.
    d.freeIova(2);
    expect(d.allocIova(3, 0xf, false)?.pfnLo).toBe(5);
  });

  it("remembers a failed 64-bit size too, blocking 32-bit requests of that size", () => {
    const { d } = domain(DMA32 - 8);
    d.reserveIova(DMA32 - 8, DMA32 - 7);
    d.reserveIova(DMA32 - 3, DMA32 + 7);
    // Free: DMA32-6 .. DMA32-4. A 4-aligned 3-page range fits nowhere below DMA32 + 7.
    expect(d.allocIova(3, DMA32 + 7, true)).toBeNull();
    expect(d.max32AllocSize).toBe(3);
    expect(d.allocIova(3, LIMIT32, false)).toBeNull(); // would fit at DMA32 - 6
    // 2 pages: from the anchor past the high reservation, then below it: DMA32 - 3 - 2.
    expect(d.allocIova(2, LIMIT32, false)?.pfnLo).toBe(DMA32 - 5);
  });

  it("forgets max32_alloc_size when a range starting below 4 GiB is freed, even a straddling one", () => {
    const { d } = domain(DMA32 - 2);
    const straddle = d.allocIova(4, DMA32 + 1, false)!;
    expect([straddle.pfnLo, straddle.pfnHi]).toEqual([DMA32 - 2, DMA32 + 1]);
    expect(d.allocIova(1, LIMIT32, false)).toBeNull();
    expect(d.max32AllocSize).toBe(1);
    d.freeIova(DMA32);
    expect(d.max32AllocSize).toBe(DMA32);
    expect(d.allocIova(1, LIMIT32, false)?.pfnLo).toBe(DMA32 - 1);
  });

  it("returns null when the limit is below the start pfn or smaller than the size", () => {
    const { d } = domain(0x100);
    expect(d.allocIova(1, 0xff, false)).toBeNull();
    const { d: d2 } = domain(0);
    expect(d2.allocIova(4, 2, false)).toBeNull();
    expect(d2.allocIova(3, 2, false)?.pfnLo).toBe(0);
  });
});

describe("reserve_iova, find_iova, free_iova", () => {
  it("keeps reserved ranges out of allocation", () => {
    const { d } = domain();
    // An MSI-like window at the top of the 32-bit space.
    const r = d.reserveIova(0xfee00, 0xfffff)!;
    expect([r.pfnLo, r.pfnHi]).toEqual([0xfee00, 0xfffff]);
    expect(d.allocIova(1, LIMIT32, true)?.pfnLo).toBe(0xfedff);
    expect(d.allocIova(0x200, LIMIT32, true)?.pfnLo).toBe(0xfea00); // (0xfedff - 0x200) & ~0x1ff
  });

  it("merges overlapping reservations the way the kernel does", () => {
    const { d } = domain();
    const a = d.reserveIova(10, 20)!;
    // Overlapping below: the existing range grows down to 5, the rest (21..25) is a new range.
    const b = d.reserveIova(5, 25)!;
    expect(spans(d)).toEqual([
      [5, 20],
      [21, 25],
    ]);
    expect(a.pfnLo).toBe(5);
    expect([b.pfnLo, b.pfnHi]).toEqual([21, 25]);
    // Wholly inside a range: that range is returned, nothing changes.
    expect(d.reserveIova(12, 15)).toBe(a);
    // Spanning two ranges and beyond: only 26..30 is new.
    const c = d.reserveIova(15, 30)!;
    expect([c.pfnLo, c.pfnHi]).toEqual([26, 30]);
    expect(d.count).toBe(3);
  });

  it("refuses pfns beyond a 64-bit address with a WARN", () => {
    const { ctx, d } = domain();
    expect(d.reserveIova(0, 2 ** 52)).toBeNull();
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["reserve_iova"]);
    expect(d.reserveIova(0, 2 ** 52 - 1)).not.toBeNull();
  });

  it("finds the range containing a pfn and frees it; unknown pfns are ignored", () => {
    const { d } = domain();
    const r = d.allocIova(8, LIMIT32, true)!;
    expect(d.findIova(r.pfnLo + 5)).toBe(r);
    expect(d.findIova(r.pfnLo - 1)).toBeNull();
    d.freeIova(0x1234);
    expect(d.count).toBe(1);
    d.freeIova(r.pfnHi);
    expect(d.count).toBe(0);
    expect(d.findIova(r.pfnLo)).toBeNull();
  });

  it("offers the iova.h address helpers", () => {
    const { d } = domain();
    const r = d.allocIova(2, LIMIT32, true)!;
    expect(d.iovaDmaAddr(r)).toBe(0xffffe000n);
    expect(d.iovaPfn(0xffffe123n)).toBe(0xffffe);
    expect(d.iovaOffset(0xffffe123n)).toBe(0x123);
    expect(d.iovaAlign(0x1001n)).toBe(0x2000n);
    expect(d.iovaAlignDown(0x1fffn)).toBe(0x1000n);
    expect(iovaSize(r)).toBe(2);
    expect(iovaRcacheRange()).toBe(128n * 1024n);
    const small = new IovaDomain(createContext(), 512, 1);
    expect([small.shift, small.dma32bitPfn]).toEqual([9, 2 ** 23]);
  });
});

describe("alloc_iova_fast / free_iova_fast: range caches", () => {
  function fast(startPfn = 1, nrCpus = 1) {
    const t = domain(startPfn, nrCpus);
    expect(t.d.initRcaches().ok).toBe(true);
    return t;
  }

  it("reuses freed ranges LIFO before consulting the tree", () => {
    const { d } = fast();
    const a = d.allocIovaFast(1, LIMIT32, true);
    const b = d.allocIovaFast(1, LIMIT32, true);
    expect([a, b]).toEqual([0xfffff, 0xffffe]);
    d.freeIovaFast(a, 1);
    d.freeIovaFast(b, 1);
    // Cached ranges stay in the tree.
    expect(d.count).toBe(2);
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(b);
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(a);
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(0xffffd);
  });

  it("rounds cacheable sizes up to a power of two and caches by size class", () => {
    const { d } = fast();
    const p = d.allocIovaFast(3, LIMIT32, true);
    expect(p).toBe(0xffffc); // 4 pages, 4-aligned
    expect(iovaSize(d.findIova(p)!)).toBe(4);
    d.freeIovaFast(p, 3); // order_base_2(3) = 2: the 4-page class
    expect(d.allocIovaFast(2, LIMIT32, true)).toBe(0xffffa); // other class: from the tree
    expect(d.allocIovaFast(4, LIMIT32, true)).toBe(p);
    // 33 pages: not rounded (64-aligned) and too big to cache: freed straight to the tree.
    const big = d.allocIovaFast(33, LIMIT32, true);
    expect(big % 64).toBe(0);
    expect(iovaSize(d.findIova(big)!)).toBe(33);
    d.freeIovaFast(big, 33);
    expect(d.findIova(big)).toBeNull();
  });

  it("keeps per-CPU magazines apart", () => {
    const { d } = fast(1, 2);
    const a = d.allocIovaFast(1, LIMIT32, true, 1);
    d.freeIovaFast(a, 1, 1);
    expect(d.allocIovaFast(1, LIMIT32, true, 0)).toBe(a - 1); // CPU 0 misses
    expect(d.allocIovaFast(1, LIMIT32, true, 1)).toBe(a); // CPU 1 hits
    expect(() => d.allocIovaFast(1, LIMIT32, true, 2)).toThrow(SimError);
  });

  it("skips cached ranges above the limit, taking the topmost suitable one", () => {
    const { d } = fast();
    const low = d.allocIovaFast(1, LIMIT32, true);
    const high = d.allocIovaFast(1, 2 ** 36 - 1, true);
    const mid = d.allocIovaFast(1, LIMIT32, true);
    d.freeIovaFast(low, 1);
    d.freeIovaFast(high, 1);
    d.freeIovaFast(mid, 1);
    // Magazine [low, high, mid]: mid is on top and fits 32 bits.
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(mid);
    // Now [low, high]: high is above the limit, low below: low is taken, high moves down.
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(low);
    // Only high is left: a 32-bit request goes to the tree and leaves it cached.
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(0xffffd);
    expect(d.allocIovaFast(1, 2 ** 36 - 1, true)).toBe(high);
  });

  it("pops a non-top entry by moving the top entry into its slot", () => {
    const { d } = fast();
    const limit48 = 2 ** 36 - 1;
    const x = d.allocIovaFast(1, LIMIT32, true);
    const h1 = d.allocIovaFast(1, limit48, true);
    const h2 = d.allocIovaFast(1, limit48, true);
    for (const p of [x, h1, h2]) d.freeIovaFast(p, 1);
    // [x, h1, h2]: a 32-bit request scans down to x; h2 fills its slot, giving [h2, h1].
    expect(d.allocIovaFast(1, LIMIT32, true)).toBe(x);
    expect(d.allocIovaFast(1, limit48, true)).toBe(h1);
    expect(d.allocIovaFast(1, limit48, true)).toBe(h2);
  });

  it("swaps loaded and prev, and spills full magazines to the depot", () => {
    const { d } = fast();
    const n = 2 * IOVA_MAG_SIZE + 1;
    const pfns: number[] = [];
    for (let i = 0; i < n; i++) pfns.push(d.allocIovaFast(1, LIMIT32, true));
    for (const p of pfns) d.freeIovaFast(p, 1);
    // 127 fill loaded; the 128th swaps in the empty prev; the 255th finds both full, so loaded
    // goes to the depot and a new magazine takes the last pfn.
    expect(d.rcacheView()![0]).toEqual({
      order: 0,
      pages: 1,
      depot: 1,
      cpus: [{ cpu: 0, loaded: 1, prev: IOVA_MAG_SIZE }],
    });
    // Getting back: the lone pfn, then prev (swapped in) from its top, then the depot magazine.
    const expected = [
      pfns[n - 1],
      ...pfns.slice(0, IOVA_MAG_SIZE).reverse(),
      ...pfns.slice(IOVA_MAG_SIZE, 2 * IOVA_MAG_SIZE).reverse(),
    ];
    const got: number[] = [];
    for (let i = 0; i < n; i++) got.push(d.allocIovaFast(1, LIMIT32, true));
    expect(got).toEqual(expected);
    expect(d.rcacheView()![0]!.depot).toBe(0);
  });

  it("trims the depot to one magazine per CPU, one per IOVA_DEPOT_DELAY", () => {
    const { ctx, d } = fast();
    const n = 3 * IOVA_MAG_SIZE + 1; // both magazines full twice over: two depot pushes
    const pfns: number[] = [];
    for (let i = 0; i < n; i++) pfns.push(d.allocIovaFast(1, LIMIT32, true));
    for (const p of pfns) d.freeIovaFast(p, 1);
    expect(d.rcacheView()![0]!.depot).toBe(2);
    expect(d.count).toBe(n);
    ctx.clock.advance(IOVA_DEPOT_DELAY_NS - 1);
    expect(d.count).toBe(n);
    ctx.clock.advance(1);
    // depot_size 2 > num_online_cpus 1: the last pushed magazine goes back to the tree.
    expect(d.rcacheView()![0]!.depot).toBe(1);
    expect(d.count).toBe(n - IOVA_MAG_SIZE);
    for (const p of pfns.slice(2 * IOVA_MAG_SIZE, 3 * IOVA_MAG_SIZE)) {
      expect(d.findIova(p)).toBeNull();
    }
    ctx.clock.advance(IOVA_DEPOT_DELAY_NS);
    expect(d.rcacheView()![0]!.depot).toBe(1);
    expect(ctx.clock.pending()).toEqual([]);
  });

  it("flushes every cache and retries when the tree is full, if allowed", () => {
    const { d } = fast(1, 2);
    const limit = 0xf;
    const pfns: number[] = [];
    for (let i = 0; i < 15; i++) pfns.push(d.allocIovaFast(1, limit, true, i % 2));
    expect(pfns).toEqual(Array.from({ length: 15 }, (_, i) => 0xf - i));
    for (const [i, p] of pfns.entries()) d.freeIovaFast(p, 1, i % 2);
    // A 2-page request misses its (empty) class and the full tree.
    expect(d.allocIovaFast(2, limit, false)).toBe(0);
    expect(d.count).toBe(15);
    // With flush_rcache, both CPUs' magazines go back to the tree and the retry succeeds at the
    // top: cached32_node moved to rb_next of the first freed range (the anchor).
    expect(d.allocIovaFast(2, limit, true)).toBe(0xe);
    expect(spans(d)).toEqual([[0xe, 0xf]]);
    expect(d.rcacheView()!.every((c) => c.cpus.every((x) => x.loaded + x.prev === 0))).toBe(true);
  });

  it("returns a CPU's cached ranges on hot-unplug, and WARNs about pfns the tree lacks", () => {
    const { ctx, d } = fast(1, 2);
    const a = d.allocIovaFast(1, LIMIT32, true, 1);
    d.freeIovaFast(a, 1, 1);
    d.freeIovaFast(0x1234, 1, 1); // never allocated: cached blindly, like the kernel
    d.freeCpuCachedIovas(1);
    expect(d.findIova(a)).toBeNull();
    expect(ctx.warnings.list().map((w) => w.site)).toEqual(["iova_magazine_free_pfns"]);
  });

  it("shows ranges and cache occupancy in its JSON view", () => {
    const { d } = fast();
    d.reserveIova(0xfee00, 0xfefff);
    // Reservations leave cached32_node alone: a walks from the anchor, b from a.
    const a = d.allocIovaFast(2, LIMIT32, true);
    const b = d.allocIovaFast(1, LIMIT32, true);
    expect([a, b]).toEqual([0xffffe, 0xffffd]);
    d.freeIovaFast(a, 2);
    const view = d.toJSON() as {
      ranges: unknown[];
      cached32_node: string;
      rcache: Array<{ order: number; cpus: Array<{ loaded: number }> }>;
    };
    expect(view.ranges).toEqual([
      {
        pfn_lo: "0xfee00",
        pfn_hi: "0xfefff",
        iova: "0xfee00000",
        size: "0x200000",
        kind: "reserved",
      },
      {
        pfn_lo: "0xffffd",
        pfn_hi: "0xffffd",
        iova: "0xffffd000",
        size: "0x1000",
        kind: "allocated",
      },
      { pfn_lo: "0xffffe", pfn_hi: "0xfffff", iova: "0xffffe000", size: "0x2000", kind: "cached" },
    ]);
    expect(view.cached32_node).toBe("0xffffd");
    expect(view.rcache.map((c) => c.cpus[0]!.loaded)).toEqual([0, 1, 0, 0, 0, 0]);
    expect(JSON.parse(JSON.stringify(view))).toEqual(view);
  });

  it("is torn down by put_iova_domain; misuse throws", () => {
    const { ctx, d } = fast();
    for (let i = 0; i < 3 * IOVA_MAG_SIZE + 1; i++) {
      d.freeIovaFast(d.allocIovaFast(1, LIMIT32, true), 1);
    }
    d.putIovaDomain();
    expect(ctx.clock.pending()).toEqual([]);
    expect(() => d.allocIova(1, LIMIT32, false)).toThrow(/after put_iova_domain/);
    const { d: plain } = domain();
    expect(() => plain.allocIovaFast(1, LIMIT32, true)).toThrow(/no rcaches/);
    expect(() => plain.allocIova(0, LIMIT32, true)).toThrow(SimError);
    expect(() => new IovaDomain(createContext(), 3000, 1)).toThrow(/power of two/);
    expect(() => new IovaDomain(createContext(), 8192, 1)).toThrow(SimError);
  });
});

// ---- A literal model of the kernel's code, in unsigned 64-bit arithmetic, to compare against ----
// Ranges in a sorted array ending with the anchor (~0UL); the walk is the kernel's do/while over
// rb_prev with its `goto retry`, iova_find_limit's start being the first range ending at or above
// the limit.

const U64 = (1n << 64n) - 1n;

interface RefNode {
  lo: bigint;
  hi: bigint;
}

class RefIovad {
  readonly anchor: RefNode = { lo: U64, hi: U64 };
  readonly nodes: RefNode[] = [this.anchor];
  cached = this.anchor;
  cached32 = this.anchor;
  readonly dma32: bigint;
  max32: bigint;

  constructor(
    readonly start: bigint,
    readonly shift: number,
  ) {
    this.dma32 = 1n << BigInt(32 - shift);
    this.max32 = this.dma32;
  }

  alloc(size: bigint, limitPfn: bigint, aligned: boolean): RefNode | null {
    const limit = limitPfn + 1n;
    const fls = size - 1n === 0n ? 0 : (size - 1n).toString(2).length;
    const mask = aligned ? (U64 << BigInt(fls)) & U64 : U64;
    if (limit <= this.dma32 && size >= this.max32) return null;
    let ci = this.nodes.indexOf(limit <= this.dma32 ? this.cached32 : this.cached);
    let curr = this.nodes[ci];
    const retryPfn = curr!.hi;
    let high = limit;
    let low = this.start;
    let newPfn = 0n;
    let retries = 0;
    for (;;) {
      do {
        high = high < curr!.lo ? high : curr!.lo;
        newPfn = (high - size) & U64 & mask;
        ci--;
        curr = this.nodes[ci];
      } while (curr && newPfn <= curr.hi && newPfn >= low);
      if (high < size || newPfn < low) {
        if (low === this.start && retryPfn < limit) {
          if (++retries > 1) throw new Error("the kernel would retry forever");
          high = limit;
          low = retryPfn + 1n;
          ci = this.nodes.findIndex((n) => n.hi >= limit);
          curr = this.nodes[ci];
          continue;
        }
        this.max32 = size;
        return null;
      }
      break;
    }
    const node = { lo: newPfn, hi: newPfn + size - 1n };
    this.insert(node);
    if (node.hi < this.dma32) this.cached32 = node;
    else this.cached = node;
    return node;
  }

  free(pfn: bigint): void {
    const i = this.nodes.findIndex((n) => n !== this.anchor && n.lo <= pfn && pfn <= n.hi);
    if (i < 0) return;
    const node = this.nodes[i]!;
    const next = this.nodes[i + 1]!;
    if (node === this.cached32 || (node.hi < this.dma32 && node.lo >= this.cached32.lo)) {
      this.cached32 = next;
    }
    if (node.lo < this.dma32) this.max32 = this.dma32;
    if (node.lo >= this.cached.lo) this.cached = next;
    this.nodes.splice(i, 1);
  }

  reserve(pfnLo: bigint, pfnHi: bigint): RefNode | null {
    if ((pfnLo | pfnHi) > U64 >> BigInt(this.shift)) return null;
    let lo = pfnLo;
    let overlap = false;
    for (const node of this.nodes) {
      if (lo <= node.hi && pfnHi >= node.lo) {
        if (lo < node.lo) node.lo = lo;
        if (pfnHi > node.hi) lo = node.hi + 1n;
        if (lo >= node.lo && pfnHi <= node.hi) return node;
        overlap = true;
      } else if (overlap) {
        break;
      }
    }
    const node = { lo, hi: pfnHi };
    this.insert(node);
    return node;
  }

  spans(): Array<[number, number]> {
    return this.nodes.filter((n) => n !== this.anchor).map((n) => [Number(n.lo), Number(n.hi)]);
  }

  private insert(node: RefNode): void {
    const i = this.nodes.findIndex((n) => n.lo > node.lo);
    this.nodes.splice(i, 0, node);
  }
}

type TreeOp =
  | { t: "alloc"; size: number; limit: number; aligned: boolean }
  | { t: "free"; pick: number; stray: boolean }
  | { t: "reserve"; at: number; len: number };

const treeOp: fc.Arbitrary<TreeOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("alloc" as const),
      size: fc.integer({ min: 1, max: 24 }),
      limit: fc.integer({ min: 0, max: 3 }),
      aligned: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant("free" as const), pick: fc.nat(), stray: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("reserve" as const),
      at: fc.integer({ min: 0, max: 200 }),
      len: fc.integer({ min: 0, max: 8 }),
    }),
  },
);

describe("alloc_iova against the kernel's literal walk", () => {
  // 200 pages around the 4 GiB boundary: 32- and 64-bit limits, both cached nodes, exhaustion,
  // the retry and max32_alloc_size all come into play.
  test.prop([fc.constantFrom(512, 4096), fc.array(treeOp, { maxLength: 120 })], { numRuns: 400 })(
    "gives the same addresses, ranges and max32_alloc_size",
    (granule, ops) => {
      const d = new IovaDomain(createContext(), granule, 1);
      const dma32 = d.dma32bitPfn;
      const start = dma32 - 100;
      const dom = new IovaDomain(createContext(), granule, start);
      const ref = new RefIovad(BigInt(start), dom.shift);
      const limits = [dma32 - 1, dma32 - 31, dma32 + 60, dma32 + 99];
      for (const op of ops) {
        if (op.t === "alloc") {
          const limit = limits[op.limit]!;
          const got = dom.allocIova(op.size, limit, op.aligned);
          const want = ref.alloc(BigInt(op.size), BigInt(limit), op.aligned);
          expect(got === null ? null : [got.pfnLo, got.pfnHi]).toEqual(
            want === null ? null : [Number(want.lo), Number(want.hi)],
          );
        } else if (op.t === "free") {
          const ranges = dom.ranges();
          const r = ranges[op.pick % Math.max(ranges.length, 1)];
          const pfn = op.stray || !r ? start + (op.pick % 220) : r.pfnLo + (op.pick % iovaSize(r));
          dom.freeIova(pfn);
          ref.free(BigInt(pfn));
        } else {
          const lo = start + op.at;
          const got = dom.reserveIova(lo, lo + op.len);
          const want = ref.reserve(BigInt(lo), BigInt(lo + op.len));
          expect(got && [got.pfnLo, got.pfnHi]).toEqual(want && [Number(want.lo), Number(want.hi)]);
        }
        expect(spans(dom)).toEqual(ref.spans());
        expect(dom.max32AllocSize).toBe(Number(ref.max32));
      }
    },
  );
});

type FastOp =
  | { t: "alloc"; size: number; limit: number; cpu: number; flush: boolean }
  | { t: "free"; pick: number; cpu: number }
  | { t: "freeAndRealloc"; pick: number; cpu: number };

const fastOp: fc.Arbitrary<FastOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant("alloc" as const),
      size: fc.integer({ min: 1, max: 40 }),
      limit: fc.integer({ min: 0, max: 2 }),
      cpu: fc.integer({ min: 0, max: 1 }),
      flush: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("free" as const),
      pick: fc.nat(),
      cpu: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("freeAndRealloc" as const),
      pick: fc.nat(),
      cpu: fc.integer({ min: 0, max: 1 }),
    }),
  },
);

describe("alloc_iova_fast / free_iova_fast invariants", () => {
  // 256 pages below 4 GiB and 256 above.
  const START = 0xfff00;
  const LIMITS = [LIMIT32, 0x1000ff, 0xfff7f];

  test.prop([fc.array(fastOp, { maxLength: 150 })])(
    "no overlaps, within [start, limit], aligned, recently freed first, space reusable",
    (ops) => {
      const { d } = domain(START, 2);
      d.initRcaches();
      const held = new Map<number, { size: number; n: number; limit: number }>();
      const take = (pfn: number, size: number, limit: number) => {
        const n = size < 32 ? 2 ** Math.ceil(Math.log2(size)) : size;
        expect(pfn).toBeGreaterThanOrEqual(START);
        expect(pfn + n - 1).toBeLessThanOrEqual(limit);
        expect(pfn % 2 ** Math.ceil(Math.log2(n))).toBe(0);
        const node: Iova = d.findIova(pfn)!;
        expect([node.pfnLo, iovaSize(node)]).toEqual([pfn, n]);
        for (const [p, h] of held) expect(pfn + n <= p || p + h.n <= pfn).toBe(true);
        held.set(pfn, { size, n, limit });
      };
      const pick = (i: number) => [...held.keys()].sort((a, b) => a - b)[i % held.size];
      for (const op of ops) {
        if (op.t === "alloc") {
          const limit = LIMITS[op.limit]!;
          const pfn = d.allocIovaFast(op.size, limit, op.flush, op.cpu);
          if (pfn !== 0) take(pfn, op.size, limit);
        } else if (held.size > 0) {
          const pfn = pick(op.pick)!;
          const h = held.get(pfn)!;
          held.delete(pfn);
          d.freeIovaFast(pfn, h.size, op.cpu);
          if (op.t === "freeAndRealloc") {
            const again = d.allocIovaFast(h.size, h.limit, false, op.cpu);
            // Cacheable sizes come straight back from the magazine just pushed.
            if (h.size <= 32) expect(again).toBe(pfn);
            if (again !== 0) take(again, h.size, h.limit);
          }
        }
      }
      let cpu = 0;
      for (const [pfn, h] of held) d.freeIovaFast(pfn, h.size, cpu++ % 2);
      // Everything freed (cached or not): a flushing allocation gets the whole 32-bit window, and
      // once the caches are returned only that range is left, so the 64-bit window is whole too.
      expect(d.allocIovaFast(256, LIMIT32, true)).toBe(START);
      d.freeCpuCachedIovas(0);
      d.freeCpuCachedIovas(1);
      d.freeGlobalCachedIovas();
      expect(spans(d)).toEqual([[START, START + 255]]);
      expect(d.allocIovaFast(256, 0x1000ff, false)).toBe(DMA32);
    },
  );
});
