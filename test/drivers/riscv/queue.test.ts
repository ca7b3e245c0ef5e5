import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { err, OK } from "../../../src/base/result.js";
import { CMD_SIZE, RiscvIommuCommand } from "../../../src/drivers/riscv/iommu-bits.js";
import { RiscvIommuQueue } from "../../../src/drivers/riscv/queue.js";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";
import { RiscvIommu } from "../../../src/hw/riscv-iommu/iommu.js";

function hw(pages = 256) {
  const ctx = createContext({ seed: 3 });
  const memory = new PhysicalMemory([{ base: 0x8000_0000n, size: BigInt(pages) << 12n }]);
  const frames = new FrameAllocator(memory);
  const iommu = new RiscvIommu(ctx, memory, "iommu0");
  return { ctx, memory, frames, iommu };
}

describe("queues (riscv_iommu_queue_*)", () => {
  it("programs xqb with the ring's PPN and LOG2SZ-1, naturally aligned", () => {
    const h = hw();
    const q = new RiscvIommuQueue(h.iommu, h.memory, "cq", CMD_SIZE, 1024);
    expect(q.alloc(h.frames)).toEqual(OK);
    expect(q.entries).toBe(1024);
    expect(q.pages).toBe(4);
    expect(q.ppn % 4).toBe(0);
    expect(h.iommu.read64(0x18)).toBe((BigInt(q.ppn) << 10n) | 9n);
  });

  it("falls back to a smaller ring when memory is fragmented, and fails with ENOMEM without any", () => {
    const h = hw(64);
    // Every 8th frame taken: the largest aligned free run is 4 frames.
    const all = Array.from({ length: 64 }, () => h.frames.alloc());
    all.forEach((f, i) => {
      if (i % 8 !== 7) h.frames.free(f);
    });
    const q = new RiscvIommuQueue(h.iommu, h.memory, "cq", CMD_SIZE, 8192);
    expect(q.alloc(h.frames)).toEqual(OK);
    expect(q.entries).toBe(1024);
    const full = hw(1);
    full.frames.alloc();
    const q2 = new RiscvIommuQueue(full.iommu, full.memory, "fq", 32, 64);
    expect(q2.alloc(full.frames)).toEqual(err("ENOMEM"));
  });

  it("enables with xqon and refuses a second enable (EBUSY); disabling turns it off", () => {
    const h = hw();
    const q = new RiscvIommuQueue(h.iommu, h.memory, "fq", 32, 64);
    q.alloc(h.frames);
    expect(q.enable()).toEqual(OK);
    expect(h.iommu.read32(0x4c) & (1 << 16)).not.toBe(0);
    expect(q.enable()).toEqual(err("EBUSY"));
    expect(q.disable()).toBe(true);
    expect(h.iommu.read32(0x4c) & (1 << 16)).toBe(0);
  });

  it("produces commands around the ring, each completed by the time cqt is written", () => {
    const h = hw();
    const q = new RiscvIommuQueue(h.iommu, h.memory, "cq", CMD_SIZE, 4);
    q.alloc(h.frames);
    q.enable();
    const cmd = new RiscvIommuCommand();
    const rec = h.ctx.trace.record();
    for (let i = 0; i < 10; i++) {
      const idx = q.send(cmd.iofence());
      expect(idx).toBe(i % 4);
      expect(q.processed(idx)).toBe(true);
    }
    expect(rec.stop().filter((r) => r.event === "riscv_iommu:command").length).toBe(10);
    expect(h.iommu.read32(0x20)).toBe(h.iommu.read32(0x24));
  });

  it("a command the hardware cannot complete stays pending (not processed)", () => {
    const h = hw();
    const q = new RiscvIommuQueue(h.iommu, h.memory, "cq", CMD_SIZE, 4);
    q.alloc(h.frames);
    q.enable();
    const cmd = new RiscvIommuCommand();
    // An ATS.INVAL nobody answers keeps the following IOFENCE.C waiting.
    q.send(cmd.atsInval(0x100, -1, false, false, 0));
    const fence = q.send(cmd.iofence());
    expect(q.processed(fence)).toBe(false);
    // The ATS.INVAL itself was consumed; three fences pending fill a four-entry ring.
    expect([q.send(cmd.iofence()), q.send(cmd.iofence())]).toEqual([2, 3]);
    expect(q.send(cmd.iofence())).toBe(-1);
  });
});
