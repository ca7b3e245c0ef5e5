import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import type { RiscvSvaDomain } from "../../src/drivers/riscv/sva.js";
import { IOMMU_SVA_BIND_SUPERVISOR } from "../../src/iommu/sva.js";
import { buildMachine } from "../../src/machine/build.js";
import { kernelMap, kernelUnmap } from "../../src/machine/kernel-vm.js";

const KVA = 0xffff_ffc0_0000_0000n;

describe("kernel mappings in init_mm", () => {
  it("map supervisor pages; refuse overlaps, misalignment and non-canonical addresses", () => {
    const m = buildMachine("default");
    const init = m.initMm();
    const pa = BigInt(m.frames.alloc()) << 12n;
    expect(kernelMap(init, KVA, pa, 0x1000n)).toBe(OK);
    const map = init.pgtable.lookup(KVA)!;
    expect(map.pa).toBe(pa);
    // Supervisor read/write, global: no U bit (user requests cannot use it).
    expect(map.perm & 0x10).toBe(0);
    expect(map.perm & 0x20).toBe(0x20);
    expect(kernelMap(init, KVA, pa, 0x1000n)).toEqual(err("EEXIST"));
    expect(kernelMap(init, KVA + 0x800n, pa, 0x1000n)).toEqual(err("EINVAL"));
    expect(kernelMap(init, 0x8000_0000_0000_0000n, pa, 0x1000n)).toEqual(err("EINVAL"));
    expect(kernelUnmap(init, KVA, 0x1000n)).toBe(0x1000n);
    expect(kernelUnmap(init, KVA, 0x1000n)).toBe(0n);
  });

  it("unmapping tells no secondary MMU (no mmu notifier call)", () => {
    const m = buildMachine("default");
    const init = m.initMm();
    const pa = BigInt(m.frames.alloc()) << 12n;
    unwrap(kernelMap(init, KVA, pa, 0x1000n));
    const bond = unwrap(m.core.svaBindDevice(m.device("dsa0")!, null, IOMMU_SVA_BIND_SUPERVISOR));
    const domain = bond.domain as RiscvSvaDomain;
    expect(domain.mmStruct).toBe(init);
    const before = domain.notifications;
    kernelUnmap(init, KVA, 0x1000n);
    expect(domain.notifications).toBe(before);
  });
});
