// dma_alloc_coherent / dma_free_coherent: zeroed frames from the machine's allocator, mapped for
// both directions below the coherent mask (dma-iommu: remapped pages or one contiguous block;
// dma-direct: physical), and given back on free.

import { describe, expect, it } from "vitest";
import { BusType, Device } from "../../src/bus/device.js";
import {
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_BIT_MASK,
} from "../../src/dma/constants.js";
import { dmaBed, unwrap } from "./setup.js";

describe("dma_alloc_coherent through dma-iommu", () => {
  it("a blocking allocation: zeroed separate pages, one IOVA range below the coherent mask, device-visible", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    // Dirty memory first: a freed frame must come back zeroed.
    const scratch = b.frames.alloc();
    b.memory.write32(BigInt(scratch) << 12n, 0xdeadbeef);
    b.frames.free(scratch);
    const buf = b.dma.allocCoherent(dev, 0x3000n)!;
    expect(buf).not.toBeNull();
    expect(buf.kind).toBe("remap");
    expect(buf.pages.length).toBe(3);
    expect(buf.pages).toContain(scratch);
    expect(buf.pages.every((p) => b.frames.isAllocated(p))).toBe(true);
    expect(buf.dmaHandle).toBeLessThan(1n << 32n);
    for (let off = 0n; off < 0x3000n; off += 0x400n) expect(b.memory.read32(buf.phys(off))).toBe(0);
    for (let i = 0n; i < 3n; i++) {
      expect(b.translate(7, buf.dmaHandle + i * 0x1000n + 0x44n, "write")).toBe(
        buf.phys(i * 0x1000n + 0x44n),
      );
    }
    b.dma.freeCoherent(dev, 0x3000n, buf, buf.dmaHandle);
    expect(buf.pages.some((p) => b.frames.isAllocated(p))).toBe(false);
    expect(b.translate(7, buf.dmaHandle)).toBe("read_page_fault");
    expect(() => buf.phys(0n)).toThrow(/after free/);
    expect(() => b.dma.freeCoherent(dev, 0x3000n, buf, buf.dmaHandle)).toThrow(/already freed/);
  });

  it("2 MiB blocking allocations take a 2 MiB block when the IOMMU has 2 MiB pages; single pages on request", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const big = b.dma.allocCoherent(dev, 0x20_0000n)!;
    expect(big.pages[0]! % 512).toBe(0);
    expect(big.pages.every((p, i) => p === big.pages[0]! + i)).toBe(true);
    expect(big.dmaHandle % 0x20_0000n).toBe(0n);
    expect(b.translate(7, big.dmaHandle + 0x1f_f000n)).toBe(big.phys(0x1f_f000n));
    const single = b.dma.allocAttrs(dev, 0x20_0000n, "GFP_KERNEL", DMA_ATTR_ALLOC_SINGLE_PAGES)!;
    expect(single.pages[0]! % 512).not.toBe(0);
  });

  it("when no 2 MiB block is free it falls back to single pages", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    // The first frame of every 2 MiB block of RAM taken: no block is free.
    let taken = 0;
    while (b.frames.allocContiguous(1, 512) >= 0) taken++;
    expect(taken).toBeGreaterThan(0);
    expect(b.frames.allocContiguous(512, 512)).toBe(-1);
    const buf = b.dma.allocCoherent(dev, 0x20_0000n)!;
    expect(buf.pages.length).toBe(512);
    expect(buf.pages[0]! % 512).not.toBe(0);
    expect(b.translate(7, buf.dmaHandle + 0x10_0000n)).toBe(buf.phys(0x10_0000n));
  });

  it("GFP_ATOMIC or DMA_ATTR_FORCE_CONTIGUOUS: one block of 2^get_order(size) frames", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const atomic = b.dma.allocCoherent(dev, 0x3000n, "GFP_ATOMIC")!;
    expect([atomic.kind, atomic.order, atomic.pages.length]).toEqual(["contiguous", 2, 3]);
    const block = [0, 1, 2, 3].map((k) => atomic.pages[0]! + k);
    expect(block.every((p) => b.frames.isAllocated(p))).toBe(true);
    expect(atomic.pages[0]! % 4).toBe(0);
    const forced = b.dma.allocAttrs(dev, 0x1000n, "GFP_KERNEL", DMA_ATTR_FORCE_CONTIGUOUS)!;
    expect([forced.kind, forced.order]).toEqual(["contiguous", 0]);
    b.dma.freeCoherent(dev, 0x3000n, atomic, atomic.dmaHandle);
    b.dma.freeAttrs(dev, 0x1000n, forced, forced.dmaHandle, DMA_ATTR_FORCE_CONTIGUOUS);
    expect([...block, forced.pages[0]!].some((p) => b.frames.isAllocated(p))).toBe(false);
  });

  it("the coherent mask, not the streaming one, limits the IOVA", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    unwrap(b.dma.setMask(dev, DMA_BIT_MASK(64)));
    unwrap(b.dma.setCoherentMask(dev, DMA_BIT_MASK(24)));
    const buf = b.dma.allocCoherent(dev, 0x1000n)!;
    expect(buf.dmaHandle).toBe(0xff_f000n);
  });

  it("lazy mode: the pages go back at once, the IOVA only after the flush", () => {
    const b = dmaBed({ core: { strict: false } });
    const dev = b.platformDev("dev0", 7);
    const buf = b.dma.allocCoherent(dev, 0x1000n)!;
    expect(b.translate(7, buf.dmaHandle)).toBe(buf.phys());
    const inUse = b.frames.framesInUse;
    const pa = buf.phys();
    b.dma.freeCoherent(dev, 0x1000n, buf, buf.dmaHandle);
    expect(b.frames.framesInUse).toBe(inUse - 1);
    // The device can still reach the freed page until the flush: lazy mode's window.
    expect(b.translate(7, buf.dmaHandle)).toBe(pa);
    const cookie = b.dma.cookieOf(b.core.getDmaDomain(dev)!)!;
    expect(cookie.fq!.pending).toBe(1);
  });

  it("a mismatched size is simulator misuse; a null cpu_addr is ignored", () => {
    const b = dmaBed();
    const dev = b.platformDev("dev0", 7);
    const buf = b.dma.allocCoherent(dev, 0x2000n)!;
    expect(() => b.dma.freeCoherent(dev, 0x1000n, buf, buf.dmaHandle)).toThrow(/size/);
    expect(() => b.dma.freeCoherent(dev, 0x1000n, null, 0n)).not.toThrow();
  });
});

describe("dma_alloc_coherent through dma-direct", () => {
  it("physical, zeroed, aligned; null when the memory is above the coherent mask", () => {
    const b = dmaBed({ core: { passthrough: true } });
    const dev = b.platformDev("dev0", 7);
    const buf = b.dma.allocCoherent(dev, 0x1800n)!;
    expect([buf.kind, buf.order]).toEqual(["direct", 1]);
    expect(buf.dmaHandle).toBe(buf.phys());
    expect(b.translate(7, buf.dmaHandle + 0x1000n)).toBe(buf.phys(0x1000n));
    const high = dmaBed({ ramBase: 0x1_0000_0000n });
    const bare = high.platformDev("bare0", 1, { iommu: false });
    const inUse = high.frames.framesInUse;
    expect(high.dma.allocCoherent(bare, 0x1000n)).toBeNull();
    expect(high.frames.framesInUse).toBe(inUse);
    unwrap(high.dma.setCoherentMask(bare, DMA_BIT_MASK(40)));
    expect(high.dma.allocCoherent(bare, 0x1000n)?.dmaHandle).toBeGreaterThan(0xffff_ffffn);
  });

  it("a device with coherent_dma_mask 0 gets WARN_ON_ONCE and no buffer", () => {
    const b = dmaBed();
    const odd = new Device("odd0", new BusType("odd"));
    const before = b.ctx.warnings.count;
    expect(b.dma.allocCoherent(odd, 0x1000n)).toBeNull();
    expect(b.dma.allocCoherent(odd, 0x1000n)).toBeNull();
    expect(b.ctx.warnings.count).toBe(before + 1);
    expect(b.ctx.warnings.list().at(-1)?.site).toBe("dma_alloc_attrs");
  });
});
