// idxd's kernel DMA: probe programs the DSA-like engine through its registers, attaches the
// DMA-API domain at a global PASID (the upstream replacement of supervisor SVA), and a dmaengine
// memcpy maps its buffers with dma_map_single and runs on the dedicated kernel WQ with that PASID.

import { describe, expect, it } from "vitest";
import { idxdDmaMemcpy, idxdKernelWq } from "../../../src/drivers/dsa/idxd-kernel.js";
import { DSA_COMP } from "../../../src/hw/endpoints/dsa-regs.js";
import { IOMMU_PASID_INVALID } from "../../../src/iommu/constants.js";
import { dsaMachine, kernelBuffer, pattern } from "./fixture.js";

describe("idxd probe", () => {
  it("enables the device, a dedicated kernel WQ with the system PASID and a shared user WQ", () => {
    const r = dsaMachine();
    expect([r.dev.enableCnt, r.dev.isBusmaster, r.dev.fn.busMasterEnabled]).toEqual([
      1,
      true,
      true,
    ]);
    const idxd = r.idxd;
    expect(idxd.state).toBe("enabled");
    expect(idxd.pasidEnabled).toBe(true);
    expect(idxd.pasid).toBe(1);
    expect(r.hw.enabled).toBe(true);
    expect(r.hw.wqs[0]!.toJSON()).toMatchObject({
      mode: "dedicated",
      enabled: true,
      pasid: 1,
      priv: false,
    });
    expect(r.hw.wqs[1]!.toJSON()).toMatchObject({
      mode: "shared",
      enabled: true,
      block_on_fault: true,
    });
    // The DMA-API domain itself sits at the PASID (no attach handle).
    const domain = r.m.core.getDmaDomain(r.dev)!;
    expect(r.m.programmedPasidDomain(r.dev, 1)).toBe(domain);
    expect(r.m.core.groupOf(r.dev)!.toJSON()).toMatchObject({
      owner_cnt: 1,
      owner: null,
      pasid_array: [{ pasid: 1, kind: "domain", domain: domain.id }],
    });
    r.invariants();
  });
});

describe("kernel memmove with PASID through the DMA domain", () => {
  it("copies the data; the device's requests carry the system PASID and IOVAs", () => {
    const r = dsaMachine();
    const data = pattern(0x1800, 1);
    const src = kernelBuffer(r, data);
    const dst = kernelBuffer(r, new Uint8Array(0x2000));
    const rec = r.m.ctx.trace.record();
    const cr = idxdDmaMemcpy(r.idxd, dst + 0x10n, src, data.length);
    const trace = rec.stop();
    expect(cr).toMatchObject({ ok: true, value: { status: DSA_COMP.SUCCESS } });
    expect(r.m.memory.readBytes(dst + 0x10n, data.length)).toEqual(data);
    // ATS is on (the IOMMU driver enabled it for the translating domain): the device asks for
    // each IOVA with the system PASID, then uses the translated addresses.
    const ats = trace.filter((t) => t.event === "device:ats_translate");
    expect(ats.length).toBeGreaterThanOrEqual(3);
    for (const t of ats) {
      const f = t.fields as { pasid: number | null; iova: bigint; result: string };
      expect(f.pasid).toBe(r.idxd.pasid);
      expect(f.result).toMatch(/^success/);
      // IOVAs from the DMA API, not the buffers' physical addresses.
      expect([src >> 12n, dst >> 12n]).not.toContain(f.iova >> 12n);
    }
    const desc = trace.filter((t) => t.event === "device:descriptor");
    expect(desc.map((t) => t.fields)).toEqual([
      {
        wq: 0,
        opcode: "memmove",
        pasid: r.idxd.pasid,
        status: DSA_COMP.SUCCESS,
        bytes: 0,
        fault_addr: null,
      },
    ]);
    // Both mappings are gone again (strict: the IOVAs no longer translate).
    expect(r.dma.toJSON()).toMatchObject({ stats: { map_page: 2, unmap_page: 2 } });
    r.invariants();
  });
});

describe("kernel DMA on every kind of default domain", () => {
  for (const [label, boot, type] of [
    ["strict DMA", {}, "DMA"],
    ["lazy DMA-FQ", { "iommu.strict": 0 }, "DMA-FQ"],
    ["identity (passthrough)", { "iommu.passthrough": 1 }, "identity"],
  ] as const) {
    it(`${label}: the PASID carries the default domain and the copy succeeds`, () => {
      const r = dsaMachine({ boot });
      const group = r.m.core.groupOf(r.dev)!;
      expect(r.m.core.groupShowType(group)).toBe(type);
      expect(r.m.programmedPasidDomain(r.dev, r.idxd.pasid)).toBe(group.defaultDomain);
      const data = pattern(0x3000, 2);
      const src = kernelBuffer(r, data);
      const dst = kernelBuffer(r, new Uint8Array(0x3000));
      expect(idxdDmaMemcpy(r.idxd, dst, src, data.length)).toMatchObject({
        ok: true,
        value: { status: DSA_COMP.SUCCESS },
      });
      expect(r.m.memory.readBytes(dst, data.length)).toEqual(data);
      r.invariants();
    });
  }
});

describe("the PASID attachment is what makes kernel DMA reach memory", () => {
  it("with the PASID detached under the driver, the descriptor fails with Translation Fail and nothing is written", () => {
    const r = dsaMachine();
    const domain = r.m.core.getDomainForDev(r.dev)!;
    r.m.core.detachDevicePasid(domain, r.dev, r.idxd.pasid);
    const src = kernelBuffer(r, pattern(256, 3));
    const dst = kernelBuffer(r, new Uint8Array(256));
    // The completion record itself is written through the PASID too: it goes to SWERR.
    expect(idxdDmaMemcpy(r.idxd, dst, src, 256)).toEqual({ ok: false, errno: "ETIMEDOUT" });
    expect(r.m.memory.readBytes(dst, 256)).toEqual(new Uint8Array(256));
    expect(r.hw.swerr).toMatchObject({
      valid: true,
      error: DSA_COMP.CRA_XLAT,
      pasid: r.idxd.pasid,
    });
  });

  it("sva=0: no system PASID, the kernel WQ runs on the RID and user WQs are refused", () => {
    const r = dsaMachine({ idxd: { sva: false } });
    const idxd = r.idxd;
    expect(idxd.pasidEnabled).toBe(false);
    expect(idxd.pasid).toBe(IOMMU_PASID_INVALID);
    expect(idxd.logs).toContainEqual({
      level: "warn",
      message: "User forced SVA off via module param.",
    });
    expect(idxd.logs).toContainEqual({
      level: "err",
      message: "wq1: enabling failed: -EOPNOTSUPP",
    });
    expect(idxd.wqs[1]!.enabled).toBe(false);
    expect(r.hw.wqs[0]!.toJSON()).toMatchObject({ pasid: null, enabled: true });
    const rec = r.m.ctx.trace.record();
    const data = pattern(100, 4);
    const dst = kernelBuffer(r, new Uint8Array(100));
    expect(idxdDmaMemcpy(idxd, dst, kernelBuffer(r, data), 100).ok).toBe(true);
    expect(r.m.memory.readBytes(dst, 100)).toEqual(data);
    const desc = rec.stop().filter((t) => t.event === "device:descriptor");
    expect(desc.map((t) => (t.fields as { pasid: number | null }).pasid)).toEqual([null]);
    expect(r.m.core.groupOf(r.dev)!.toJSON()).toMatchObject({ pasid_array: [] });
    r.invariants();
  });

  it("a shared kernel WQ needs the system PASID (EINVAL without it); with it, ENQCMDS carries the PASID", () => {
    const wqs = [{ type: "kernel", mode: "shared", size: 8, threshold: 8 }] as const;
    const off = dsaMachine({ idxd: { sva: false, wqs } });
    expect(off.idxd.logs).toContainEqual({
      level: "err",
      message: "wq0: enabling failed: -EINVAL",
    });
    const on = dsaMachine({ idxd: { wqs } });
    const data = pattern(64, 5);
    const dst = kernelBuffer(on, new Uint8Array(64));
    expect(idxdDmaMemcpy(on.idxd, dst, kernelBuffer(on, data), 64).ok).toBe(true);
    expect(on.m.memory.readBytes(dst, 64)).toEqual(data);
    expect(on.hw.wqs[0]!.toJSON()).toMatchObject({ mode: "shared", submitted: 1, dropped: 0 });
  });

  it("EINVAL for an empty copy or one above the device's maximum transfer; ENXIO without a kernel WQ", () => {
    const r = dsaMachine();
    const buf = kernelBuffer(r, new Uint8Array(16));
    expect(idxdDmaMemcpy(r.idxd, buf, buf, 0)).toEqual({ ok: false, errno: "EINVAL" });
    expect(idxdDmaMemcpy(r.idxd, buf, buf, 2 ** r.idxd.maxXferShift + 1)).toEqual({
      ok: false,
      errno: "EINVAL",
    });
    const u = dsaMachine({
      idxd: { wqs: [{ type: "user", mode: "shared", size: 4, threshold: 4 }] },
    });
    expect(idxdKernelWq(u.idxd)).toBeNull();
    expect(idxdDmaMemcpy(u.idxd, buf, buf, 16)).toEqual({ ok: false, errno: "ENXIO" });
  });
});

describe("teardown", () => {
  it("unbind disables the WQs and the device, frees the completion records, detaches and frees the PASID", () => {
    const r = dsaMachine();
    const frames = r.m.frames.framesInUse;
    const group = r.m.core.groupOf(r.dev)!;
    const rec = r.m.ctx.trace.record();
    r.m.unbindDriver(r.dev);
    const trace = rec.stop();
    expect(r.driver.idxdOf(r.dev)).toBeUndefined();
    expect(r.hw.enabled).toBe(false);
    expect(r.dev.fn.busMasterEnabled).toBe(false);
    expect([r.dev.enableCnt, r.dev.isBusmaster]).toEqual([0, false]);
    expect(group.toJSON()).toMatchObject({ owner_cnt: 0, pasid_array: [] });
    expect(r.m.core.toJSON()).toMatchObject({ global_pasids: [] });
    expect(r.m.programmedPasids(r.dev)).toEqual([]);
    // Commands first (the device stops using the PASID), then the PASID goes.
    const order = trace
      .filter((t) =>
        ["driver:idxd_cmd", "iommu_core:detach_device_pasid", "iommu_core:pasid_free"].includes(
          t.event,
        ),
      )
      .map((t) => (t.event === "driver:idxd_cmd" ? (t.fields as { cmd: string }).cmd : t.event));
    expect(order).toEqual([
      "DISABLE_WQ",
      "DISABLE_WQ",
      "DISABLE_DEVICE",
      "iommu_core:detach_device_pasid",
      "iommu_core:pasid_free",
    ]);
    expect(r.m.frames.framesInUse).toBeLessThan(frames);
    r.invariants();
  });
});

describe("historical supervisor SVA (seed 003, opt-in)", () => {
  it("binds init_mm at a PASID with privileged WQ requests; DMA-API addresses then mean nothing to the device", () => {
    const r = dsaMachine({ bind: false, idxd: { supervisorSva: true } });
    const initMm = r.m.initMm();
    r.m.model.driverRegister(r.driver);
    const idxd = r.idxd;
    expect(idxd.supervisorSva).not.toBeNull();
    expect(idxd.pasid).toBe(r.m.core.mmGetPasid(initMm));
    expect(r.hw.wqs[0]!.toJSON()).toMatchObject({ pasid: idxd.pasid, priv: true });
    // The PASID walks the kernel's page table, not the DMA domain: an IOVA is no kernel address.
    const src = kernelBuffer(r, pattern(64, 9));
    const dst = kernelBuffer(r, new Uint8Array(64));
    expect(idxdDmaMemcpy(idxd, dst, src, 64)).toEqual({ ok: false, errno: "ETIMEDOUT" });
    expect(r.m.memory.readBytes(dst, 64)).toEqual(new Uint8Array(64));
    expect(r.hw.swerr).toMatchObject({ valid: true, pasid: idxd.pasid });
    r.m.unbindDriver(r.dev);
    expect(r.m.core.groupOf(r.dev)!.toJSON()).toMatchObject({ pasid_array: [] });
  });

  it("a failed bind (init_mm in a format the IOMMU cannot walk) leaves the driver without kernel PASID DMA", () => {
    const r = dsaMachine({
      bind: false,
      iommus: { iommu0: { options: { capabilities: { Sv48: false, Sv57: false } } } },
      idxd: { supervisorSva: true },
    });
    // init_mm is Sv48; this IOMMU walks Sv39 only.
    expect(r.m.initMm().pgtable.mode.name).toBe("Sv48");
    r.m.model.driverRegister(r.driver);
    expect(r.idxd.pasidEnabled).toBe(false);
    expect(r.idxd.logs.slice(0, 2)).toEqual([
      { level: "warn", message: "iommu sva bind failed: -EOPNOTSUPP" },
      { level: "warn", message: "No in-kernel DMA with PASID. -EOPNOTSUPP" },
    ]);
    // The kernel WQ still works, on the RID.
    const data = pattern(32, 1);
    const dst = kernelBuffer(r, new Uint8Array(32));
    expect(idxdDmaMemcpy(r.idxd, dst, kernelBuffer(r, data), 32).ok).toBe(true);
    expect(r.m.memory.readBytes(dst, 32)).toEqual(data);
  });
});
