import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  AtsCompletion,
  DmaRequest,
  DmaResponse,
  decodeNapotPages,
  encodeNapotPage,
  encodeSizedAddress,
} from "../../../src/hw/pci/translation-agent.js";

describe("NAPOT size encoding (ATS, tr_response, ranged IOTINVAL)", () => {
  it("matches the spec's examples", () => {
    // "yyyy 0111" = 64 KiB; "0 1111 1111" = 2 MiB; "01 1111 1111" = 4 MiB.
    expect(encodeNapotPage(0x12340, 16) & 0xf).toBe(0b0111);
    expect(encodeNapotPage(0x80200, 21) & 0x1ff).toBe(0xff);
    expect(encodeNapotPage(0x80400, 22) & 0x3ff).toBe(0x1ff);
    expect(encodeNapotPage(0x80401, 12)).toBe(0x80401);
    expect(decodeNapotPages(0x100, true)).toEqual({ first: 0x100, log2Pages: 1 }); // 8 KiB
    expect(decodeNapotPages(0x1ff, true)).toEqual({ first: 0x000, log2Pages: 10 });
    expect(decodeNapotPages(0x123, false)).toEqual({ first: 0x123, log2Pages: 0 });
    expect(encodeSizedAddress(0x80200, 21)).toBe(0x802f_f800n);
  });

  test.prop([fc.integer({ min: 0, max: 2 ** 44 - 1 }), fc.integer({ min: 13, max: 50 })])(
    "decode inverts encode for ranges above 4 KiB",
    (ppn, shift) => {
      const enc = encodeNapotPage(ppn, shift);
      const span = 2 ** (shift - 12);
      expect(decodeNapotPages(enc, true)).toEqual({
        first: ppn - (ppn % span),
        log2Pages: shift - 12,
      });
    },
  );
});

describe("request and response objects", () => {
  it("split an IOVA into page and offset, and rebuild the physical address", () => {
    const q = new DmaRequest().setIova(0xffff_ffff_8000_1234n);
    expect([q.iovaPage, q.iovaOffset]).toEqual([0xf_ffff_fff8_0001, 0x234]);
    const r = new DmaResponse();
    r.ppn = 0xf_ffff_ffff;
    r.offset = 0xabc;
    expect(r.paddr).toBe(0xf_ffff_ffff_abcn);
    expect(r.toJSON()).toEqual({ paddr: "0xfffffffffabc", page_shift: 12, pbmt: 0 });
    const c = new AtsCompletion();
    c.status = "UR";
    expect(c.toJSON()).toEqual({ status: "UR", fault: null });
  });
});
