import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { interruptFileNumber } from "../../../src/hw/riscv-iommu/msi-translate.js";

describe("interruptFileNumber (extract)", () => {
  it("packs the bits selected by the mask, as the spec's example", () => {
    // x = a b c d e f g h, y = 1 0 1 0 0 1 1 0 → 0 0 0 0 a c f g
    expect(interruptFileNumber(0b1000_0100, 0b1010_0110)).toBe(0b1010);
    expect(interruptFileNumber(0b0010_0010, 0b1010_0110)).toBe(0b0101);
    expect(interruptFileNumber(0x1_0000_0000_7, 0x1_0000_0000_3)).toBe(0b111);
  });

  test.prop([
    fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }),
    fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }),
  ])("equals a bit-by-bit reference", (x, m) => {
    let out = 0n;
    let k = 0n;
    for (let i = 0n; i < 52n; i++) {
      if ((m >> i) & 1n) {
        out |= ((x >> i) & 1n) << k;
        k++;
      }
    }
    expect(interruptFileNumber(Number(x), Number(m))).toBe(Number(out));
  });
});
