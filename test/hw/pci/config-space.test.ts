import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { ConfigSpace } from "../../../src/hw/pci/config-space.js";

describe("ConfigSpace", () => {
  it("reads little-endian and in every access size", () => {
    const cs = new ConfigSpace(4096);
    cs.init(0x10, 4, 0x1234_5678);
    expect(cs.read(0x10, 4)).toBe(0x1234_5678);
    expect(cs.read(0x10, 2)).toBe(0x5678);
    expect(cs.read(0x12, 2)).toBe(0x1234);
    expect(cs.read(0x10, 1)).toBe(0x78);
    expect(cs.read(0x13, 1)).toBe(0x12);
    cs.init(0x20, 4, 0xffff_ffff);
    expect(cs.read(0x20, 4)).toBe(0xffff_ffff);
  });

  it("ignores writes to read-only bits and keeps writable ones", () => {
    const cs = new ConfigSpace(256);
    cs.init(0x04, 2, 0xa000);
    cs.writable(0x04, 2, 0x00ff);
    cs.write(0x04, 2, 0x5a5a);
    expect(cs.read(0x04, 2)).toBe(0xa05a);
    cs.write(0x05, 1, 0xff);
    expect(cs.read(0x04, 2)).toBe(0xa05a);
  });

  it("clears RW1C bits written with 1 and leaves those written with 0", () => {
    const cs = new ConfigSpace(256);
    cs.init(0x06, 2, 0x0f0f);
    cs.writeOneToClear(0x06, 2, 0x000f);
    cs.write(0x06, 2, 0x0005);
    expect(cs.read(0x06, 2)).toBe(0x0f0a);
    // Writing 1 to a read-only bit does nothing.
    cs.write(0x06, 2, 0x0f00);
    expect(cs.read(0x06, 2)).toBe(0x0f0a);
  });

  it("refuses misaligned accesses and reads 0 beyond a conventional space", () => {
    const cs = new ConfigSpace(256);
    expect(() => cs.read(0x02, 4)).toThrow(/not aligned/);
    expect(() => cs.write(0x01, 2, 0)).toThrow(/not aligned/);
    expect(() => cs.read(0x1000, 1)).toThrow(/not aligned/);
    expect(cs.read(0x100, 4)).toBe(0);
    cs.write(0x100, 4, 0xffff_ffff);
    expect(cs.read(0x100, 4)).toBe(0);
  });

  it("announces every change, by software or hardware, but not reads or dropped writes", () => {
    let changes = 0;
    const cs = new ConfigSpace(256, () => changes++);
    cs.write(0x04, 2, 1);
    cs.init(0x40, 4, 7);
    cs.setBits(0x40, 4, 8, true);
    cs.read(0x40, 4);
    cs.peek(0x40, 4);
    cs.write(0x100, 4, 1); // beyond the space: dropped
    expect(changes).toBe(3);
  });

  it("runs write hooks for writes overlapping their range only", () => {
    const cs = new ConfigSpace(4096);
    const seen: Array<[number, number]> = [];
    cs.onWrite(0x104, 2, (o, _s, v) => seen.push([o, v]));
    cs.write(0x100, 4, 1);
    cs.write(0x104, 4, 0xabcd);
    cs.write(0x105, 1, 2);
    cs.write(0x106, 2, 3);
    expect(seen).toEqual([
      [0x104, 0xabcd],
      [0x105, 2],
    ]);
  });

  test.prop([fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.integer({ min: 0, max: 60 })])(
    "peek assembles 2 and 4 bytes little-endian at any offset, aligned or not",
    (bytes, at) => {
      const cs = new ConfigSpace(256);
      bytes.forEach((x, i) => {
        cs.init(i, 1, x);
      });
      const b = (i: number) => cs.peek(i, 1);
      expect(cs.peek(at, 2)).toBe(b(at) | (b(at + 1) << 8));
      expect(cs.peek(at, 4)).toBe(
        (b(at) | (b(at + 1) << 8) | (b(at + 2) << 16) | (b(at + 3) << 24)) >>> 0,
      );
      expect([cs.peek(at, 1), cs.peek(at, 2) & 0xff]).toEqual([bytes[at], bytes[at]]);
    },
  );

  test.prop([
    fc.integer({ min: 0, max: 0xffff_ffff }),
    fc.integer({ min: 0, max: 0xffff_ffff }),
    fc.integer({ min: 0, max: 0xffff_ffff }),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ])("a write is (old & ~rw | v & rw) & ~(v & w1c), bit for bit", (old, rw, w1c, v) => {
    const cs = new ConfigSpace(256);
    cs.init(0x40, 4, old);
    cs.writable(0x40, 4, rw);
    cs.writeOneToClear(0x40, 4, w1c & ~rw);
    cs.write(0x40, 4, v);
    const expected = (((old & ~rw) | (v & rw)) & ~(v & w1c & ~rw)) >>> 0;
    expect(cs.read(0x40, 4)).toBe(expected);
  });
});
