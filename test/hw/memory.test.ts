import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { SimError } from "../../src/base/errors.js";
import { FrameAllocator, PhysicalMemory } from "../../src/hw/memory.js";

const RAM = { base: 0x8000_0000n, size: 16n << 20n };

describe("PhysicalMemory", () => {
  it("stores little-endian values of every width", () => {
    const m = new PhysicalMemory([RAM]);
    m.write64(0x8000_1000n, 0x0123_4567_89ab_cdefn);
    expect(m.read8(0x8000_1000n)).toBe(0xef);
    expect(m.read16(0x8000_1000n)).toBe(0xcdef);
    expect(m.read32(0x8000_1004n)).toBe(0x0123_4567);
    expect(m.read64(0x8000_1000n)).toBe(0x0123_4567_89ab_cdefn);
    m.write16(0x8000_1fffn, 0xbeef); // crosses a page
    expect(m.read8(0x8000_1fffn)).toBe(0xef);
    expect(m.read8(0x8000_2000n)).toBe(0xbe);
    m.write32(0x8000_2ffen, 0xdead_beef);
    expect(m.read32(0x8000_2ffen)).toBe(0xdead_beef);
  });

  it("reads untouched RAM as zero without materialising it", () => {
    const m = new PhysicalMemory([RAM]);
    expect(m.read64(0x8010_0000n)).toBe(0n);
    expect(m.materialisedPages).toBe(0);
    m.write8(0x8010_0000n, 1);
    expect(m.materialisedPages).toBe(1);
  });

  it("reports non-RAM pages as null on the hot path and throws on the bigint API", () => {
    const m = new PhysicalMemory([RAM]);
    expect(m.pageU32(0x1000)).toBeNull();
    expect(m.writablePageU8(0x7ffff)).toBeNull();
    expect(m.pageU32(0x80000)).not.toBeNull();
    expect(() => m.read32(0x1000n)).toThrow(SimError);
    expect(() => m.write64(1n << 56n, 0n)).toThrow(/beyond 56 bits/);
  });

  it("writes bulk data across pages, and refuses partial writes", () => {
    const m = new PhysicalMemory([RAM]);
    const data = Uint8Array.from({ length: 9000 }, (_, i) => i & 0xff);
    m.writeBytes(0x8000_0ff0n, data);
    expect(m.readBytes(0x8000_0ff0n, 9000)).toEqual(data);
    const end = RAM.base + RAM.size;
    expect(() => m.writeBytes(end - 4n, new Uint8Array(8).fill(7))).toThrow(SimError);
    expect(m.read32(end - 4n)).toBe(0);
  });

  it("supports 56-bit physical addresses", () => {
    const high = { base: (1n << 55n) + 0x1000n, size: 0x2000n };
    const m = new PhysicalMemory([RAM, high]);
    m.write64(high.base + 8n, 0xffff_ffff_ffff_ffffn);
    expect(m.read64(high.base + 8n)).toBe(0xffff_ffff_ffff_ffffn);
    expect(() => new PhysicalMemory([{ base: 1n << 56n, size: 4096n }])).toThrow(SimError);
    expect(() => new PhysicalMemory([{ base: 0x100n, size: 4096n }])).toThrow(/not page aligned/);
    expect(() => new PhysicalMemory([RAM, { base: RAM.base + 4096n, size: 4096n }])).toThrow(
      /overlap/,
    );
  });

  test.prop([
    fc.array(
      fc.tuple(fc.integer({ min: 0, max: 0x3ff8 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
    ),
  ])("read64 returns the last write64 at each address", (writes) => {
    const m = new PhysicalMemory([RAM]);
    const ref = new Map<number, bigint>();
    for (const [slot, v] of writes) {
      m.write64(RAM.base + BigInt(slot * 8), v);
      ref.set(slot, v);
    }
    for (const [slot, v] of ref) expect(m.read64(RAM.base + BigInt(slot * 8))).toBe(v);
  });
});

describe("FrameAllocator", () => {
  it("allocates zeroed frames lowest first and tracks use and peak", () => {
    const m = new PhysicalMemory([RAM]);
    const fa = new FrameAllocator(m);
    const a = fa.alloc();
    expect(a).toBe(0x80000);
    m.write32(0x8000_0000n, 5);
    const b = fa.alloc();
    expect(b).toBe(0x80001);
    fa.free(a);
    expect(m.read32(0x8000_0000n)).toBe(0);
    expect(fa.alloc()).toBe(a);
    expect(fa.framesInUse).toBe(2);
    expect(fa.peakFramesInUse).toBe(2);
    fa.free(a);
    fa.free(b);
    expect(fa.framesInUse).toBe(0);
    expect(fa.peakFramesInUse).toBe(2);
    expect(() => fa.free(b)).toThrow(/not allocated/);
  });

  it("allocates aligned contiguous runs and reports exhaustion", () => {
    const m = new PhysicalMemory([{ base: 0x8000_0000n, size: 64n * 4096n }]);
    const fa = new FrameAllocator(m);
    fa.alloc();
    const run = fa.allocContiguous(16, 16);
    expect(run).toBe(0x80010);
    expect(fa.isAllocated(0x8001f)).toBe(true);
    expect(fa.allocContiguous(64)).toBe(-1);
    for (let i = 0; i < 47; i++) expect(fa.alloc()).toBeGreaterThan(0);
    expect(fa.alloc()).toBe(-1);
  });
});
