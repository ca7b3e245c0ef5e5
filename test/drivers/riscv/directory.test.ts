import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { DeviceDirectory, ProcessDirectory } from "../../../src/drivers/riscv/directory.js";
import { DDTP_MODE, PDTP_MODE } from "../../../src/drivers/riscv/iommu-bits.js";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";

function ram() {
  const memory = new PhysicalMemory([{ base: 0x8000_0000n, size: 16n << 20n }]);
  return { memory, frames: new FrameAllocator(memory) };
}

function ddt(mode: number, extended: boolean) {
  const { memory, frames } = ram();
  const d = new DeviceDirectory(memory, frames, frames.alloc(), extended);
  d.mode = mode;
  return { memory, frames, d };
}

describe('device directory ("Device-directory-table")', () => {
  it("indexes 7/16/24 device_id bits with base contexts and 6/15/24 with extended ones", () => {
    expect(ddt(DDTP_MODE.LVL1, false).d.deviceIdBits()).toBe(7);
    expect(ddt(DDTP_MODE.LVL2, false).d.deviceIdBits()).toBe(16);
    expect(ddt(DDTP_MODE.LVL3, false).d.deviceIdBits()).toBe(24);
    expect(ddt(DDTP_MODE.LVL1, true).d.deviceIdBits()).toBe(6);
    expect(ddt(DDTP_MODE.LVL2, true).d.deviceIdBits()).toBe(15);
    const one = ddt(DDTP_MODE.LVL1, false).d;
    expect(one.dcPlace(127)).toEqual({ ppn: one.rootPpn, offset: 127 * 32 });
    expect(one.dcPlace(128)).toBeNull();
  });

  it("allocates non-leaf levels on demand and links them with V=1", () => {
    const { d, memory } = ddt(DDTP_MODE.LVL3, false);
    expect(d.pageCount).toBe(1);
    const p = d.dcPlace(0x01_0203)!;
    expect(d.pageCount).toBe(3);
    // Root entry for DDI[2] = 0x01 points at the level-1 table, whose entry DDI[1] = 0x04 points
    // at the leaf page.
    const l2 = memory.read64((BigInt(d.rootPpn) << 12n) + 8n);
    expect(l2 & 0x3ffn).toBe(1n);
    const l1 = memory.read64(((l2 >> 10n) << 12n) + 4n * 8n);
    expect(l1 >> 10n).toBe(BigInt(p.ppn));
    expect(p.offset).toBe(0x03 * 32);
    d.dcPlace(0x01_0204);
    expect(d.pageCount).toBe(3);
  });

  test.prop([
    fc.constantFrom(DDTP_MODE.LVL1, DDTP_MODE.LVL2, DDTP_MODE.LVL3),
    fc.boolean(),
    fc.uniqueArray(fc.integer({ min: 0, max: 0xff_ffff }), { minLength: 1, maxLength: 40 }),
  ])("distinct device_ids get distinct, non-overlapping contexts", (mode, extended, ids) => {
    const { d } = ddt(mode, extended);
    const seen = new Set<string>();
    for (const id of ids) {
      const p = d.dcPlace(id);
      if (id >= 2 ** d.deviceIdBits()) {
        expect(p).toBeNull();
        continue;
      }
      expect(p!.offset % d.dcSize).toBe(0);
      expect(p!.offset + d.dcSize).toBeLessThanOrEqual(4096);
      const key = `${p!.ppn}:${p!.offset}`;
      expect(seen.has(key)).toBe(false);
      seen.add(key);
      expect(d.dcPlace(id)).toEqual(p);
    }
  });

  it("gives every page back on destroy", () => {
    const { d, frames } = ddt(DDTP_MODE.LVL3, false);
    d.dcPlace(0xabcdef);
    d.destroy();
    expect(frames.framesInUse).toBe(0);
  });
});

describe('process directory ("Process-directory-table")', () => {
  test.prop([
    fc.constantFrom(PDTP_MODE.PD8, PDTP_MODE.PD17, PDTP_MODE.PD20),
    fc.uniqueArray(fc.integer({ min: 0, max: 0xf_ffff }), { minLength: 1, maxLength: 40 }),
  ])(
    "distinct PASIDs get distinct 16-byte contexts; nothing exists before it is allocated",
    (mode, pasids) => {
      const { memory, frames } = ram();
      const pdt = ProcessDirectory.create(memory, frames, mode)!;
      const seen = new Set<string>();
      for (const pasid of pasids) {
        if (pasid >= pdt.maxPasids) {
          expect(pdt.pcPlace(pasid, true)).toBeNull();
          continue;
        }
        const p = pdt.pcPlace(pasid, true)!;
        expect(p.offset).toBe((pasid & 0xff) * 16);
        expect(pdt.pcPlace(pasid, false)).toEqual(p);
        const key = `${p.ppn}:${p.offset}`;
        expect(seen.has(key)).toBe(false);
        seen.add(key);
      }
      pdt.destroy();
      expect(frames.framesInUse).toBe(0);
    },
  );

  it("PD20 walks three levels: PID[19:17], PID[16:8], PID[7:0]", () => {
    const { memory, frames } = ram();
    const pdt = ProcessDirectory.create(memory, frames, PDTP_MODE.PD20)!;
    expect(pdt.pcPlace(0x5_1234, false)).toBeNull();
    const p = pdt.pcPlace((2 << 17) | (0x12 << 8) | 0x34, true)!;
    expect(pdt.pageCount).toBe(3);
    const top = memory.read64((BigInt(pdt.rootPpn) << 12n) + 2n * 8n);
    const mid = memory.read64(((top >> 10n) << 12n) + 0x12n * 8n);
    expect(mid >> 10n).toBe(BigInt(p.ppn));
    expect(p.offset).toBe(0x34 * 16);
  });
});
