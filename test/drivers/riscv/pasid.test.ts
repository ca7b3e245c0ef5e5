import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../../src/base/result.js";
import type { RiscvIommuInfo } from "../../../src/drivers/riscv/context.js";
import type { RiscvPagingDomain } from "../../../src/drivers/riscv/domain.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../../src/iommu/constants.js";
import { IommuAttachHandle } from "../../../src/iommu/domain.js";
import { bed, commandsOf, dma } from "./setup.js";

const RW = IOMMU_READ | IOMMU_WRITE;
const PA_RID = 0x8300_0000n;
const PA_PASID = 0x8310_0000n;

/** dev0 (device_id 5, 256 PASIDs) on its default DMA domain, a second domain for PASIDs. */
function withPasids(specs: Parameters<typeof bed>[0] = [{ name: "iommu0" }]) {
  const b = bed(specs);
  const d = b.dev("dev0", 5, { pasidBits: 8 });
  const def = b.core.getDomainForDev(d) as RiscvPagingDomain;
  unwrap(b.core.map(def, 0x1000n, PA_RID, 0x1000n, RW));
  const dom = unwrap(b.core.pagingDomainAlloc(d)) as RiscvPagingDomain;
  unwrap(b.core.map(dom, 0x1000n, PA_PASID, 0x1000n, RW));
  const info = d.iommu!.priv as RiscvIommuInfo;
  return { ...b, d, def, dom, info, hw: b.io.hardware };
}

describe("set_dev_pasid", () => {
  it("the first PASID gives the device a PD8 directory: PDTV + DPE, RID traffic moves to PC[0]", () => {
    const b = withPasids();
    expect(dma(b.hw, 5, 0x1000n).ok && b.info.pdt).toBeNull();
    const cmds = commandsOf(b.ctx, () =>
      expect(b.core.attachDevicePasid(b.dom, b.d, 7)).toEqual(OK),
    );
    expect(b.info.pdt?.toJSON()).toMatchObject({ mode: "PD8" });
    // PC[0] and PC[7] become valid (invalidated after the write), then the DC is rewritten.
    expect(cmds).toEqual([
      "IODIR.INVAL_PDT DID=5 PID=0",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      "IODIR.INVAL_PDT DID=5 PID=7",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      "IODIR.INVAL_DDT DV=1 DID=5",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      "IODIR.INVAL_DDT DV=1 DID=5",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    const rid = dma(b.hw, 5, 0x1008n);
    expect(rid.ok && rid.pa).toBe(PA_RID + 8n);
    const p7 = dma(b.hw, 5, 0x1008n, { pasid: 7 });
    expect(p7.ok && p7.pa).toBe(PA_PASID + 8n);
    // An unattached PASID faults on its invalid process context.
    expect(dma(b.hw, 5, 0x1000n, { pasid: 8 })).toEqual({
      ok: false,
      fault: "pdt_entry_not_valid",
      cause: 266,
    });
    const dc = (b.info.toJSON() as { contexts: Array<{ tc: Record<string, boolean> }> })
      .contexts[0]!.tc;
    expect(dc).toMatchObject({ V: true, PDTV: true, DPE: true });
  });

  it("the blocked domain's set_dev_pasid clears the PC (IODIR.INVAL_PDT); RID traffic is untouched", () => {
    const b = withPasids();
    unwrap(b.core.attachDevicePasid(b.dom, b.d, 7));
    expect(dma(b.hw, 5, 0x1000n, { pasid: 7 }).ok).toBe(true);
    const cmds = commandsOf(b.ctx, () => b.core.detachDevicePasid(b.dom, b.d, 7));
    expect(cmds).toEqual([
      "IODIR.INVAL_PDT DID=5 PID=7",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      "IODIR.INVAL_PDT DID=5 PID=7",
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
      // The domain had no other user on this IOMMU: its PSCID goes.
      `IOTINVAL.VMA AV=0 PSCV=1 GV=0 PSCID=${b.dom.pscid}`,
      "IOFENCE.C AV=0 WSI=0 PR=0 PW=0",
    ]);
    expect(dma(b.hw, 5, 0x1000n, { pasid: 7 })).toMatchObject({ ok: false, cause: 266 });
    expect(dma(b.hw, 5, 0x1000n).ok).toBe(true);
    expect(b.dom.bonds).toEqual([]);
  });

  it("replacing the domain of a PASID keeps translating without a window through nothing", () => {
    const b = withPasids();
    unwrap(b.core.attachDevicePasid(b.def, b.d, 7));
    expect(dma(b.hw, 5, 0x1000n, { pasid: 7 }).ok && b.def.bonds.length).toBe(2);
    const h = new IommuAttachHandle();
    expect(b.core.replaceDevicePasid(b.dom, b.d, 7, h)).toEqual(OK);
    const r = dma(b.hw, 5, 0x1000n, { pasid: 7 });
    expect(r.ok && r.pa).toBe(PA_PASID);
    expect(b.def.bonds.map((x) => x.pasid)).toEqual([null]);
    expect(b.dom.bonds.map((x) => x.pasid)).toEqual([7]);
  });

  it("identity on a PASID passes addresses through", () => {
    const b = withPasids();
    unwrap(b.core.attachDevicePasid(b.driver.identityDomain, b.d, 3));
    const r = dma(b.hw, 5, PA_RID + 0x40n, { pasid: 3 });
    expect(r.ok && r.pa).toBe(PA_RID + 0x40n);
  });

  it("a blocked RID with PASIDs attached invalidates PC[0] only; with none left the DC goes invalid", () => {
    const b = withPasids();
    unwrap(b.core.attachDevicePasid(b.dom, b.d, 7));
    // (Claiming DMA ownership is refused while PASIDs are attached: block the RID directly.)
    unwrap(b.core.attachDevice(b.driver.blockedDomain, b.d));
    expect(dma(b.hw, 5, 0x1000n)).toMatchObject({ ok: false, cause: 266 });
    expect(dma(b.hw, 5, 0x1000n, { pasid: 7 }).ok).toBe(true);
    b.core.detachDevicePasid(b.dom, b.d, 7);
    expect(dma(b.hw, 5, 0x1000n)).toMatchObject({ ok: false, cause: 258 });
    b.core.detachDevice(b.driver.blockedDomain, b.d);
    const r = dma(b.hw, 5, 0x1000n);
    expect(r.ok && r.pa).toBe(PA_RID);
  });

  it("errors: EOPNOTSUPP without process directories, EINVAL beyond the directory or for a foreign domain", () => {
    const b = withPasids();
    const set = b.dom.ops!.setDevPasid!;
    unwrap(b.core.attachDevicePasid(b.dom, b.d, 1));
    // PD8 holds PASIDs 0..255 only (the core's max_pasids check would stop this first).
    expect(set(b.dom, b.d, 256, null)).toEqual(err("EINVAL"));
    const noPd = bed([{ name: "x", capabilities: { PD8: false, PD17: false, PD20: false } }]);
    const e = noPd.dev("e", 1, { pasidBits: 8 });
    expect(e.iommu!.maxPasids).toBe(0);
    const de = unwrap(noPd.core.pagingDomainAlloc(e));
    expect(de.ops!.setDevPasid!(de, e, 1, null)).toEqual(err("EOPNOTSUPP"));
    const two = bed([{ name: "a" }, { name: "b" }]);
    const da = two.dev("da", 1, { iommu: "a", pasidBits: 8 });
    const db = two.dev("db", 1, { iommu: "b", pasidBits: 8 });
    const foreign = unwrap(two.core.pagingDomainAlloc(da));
    expect(two.core.attachDevicePasid(foreign, db, 1)).toEqual(err("EINVAL"));
  });

  it("picks the smallest directory format holding the device's PASIDs, levels on demand", () => {
    const b = bed();
    const d = b.dev("dev0", 5, { pasidBits: 16 });
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    unwrap(b.core.attachDevicePasid(dom, d, 0x1234));
    expect((d.iommu!.priv as RiscvIommuInfo).pdt?.toJSON()).toMatchObject({
      mode: "PD17",
      pages: 3,
    });
    const c = bed([{ name: "iommu0", capabilities: { PD17: false } }]);
    const dc = c.dev("dev0", 5, { pasidBits: 16 });
    unwrap(c.core.attachDevicePasid(unwrap(c.core.pagingDomainAlloc(dc)), dc, 0x1234));
    expect((dc.iommu!.priv as RiscvIommuInfo).pdt?.toJSON()).toMatchObject({
      mode: "PD20",
      pages: 4,
    });
  });

  it("release frees the process directory after its DC was invalidated", () => {
    const b = withPasids();
    unwrap(b.core.attachDevicePasid(b.dom, b.d, 7));
    b.core.detachDevicePasid(b.dom, b.d, 7);
    const before = b.frames.framesInUse;
    const cmds = commandsOf(b.ctx, () => b.model.deviceDel(b.d));
    expect(cmds.indexOf("IODIR.INVAL_DDT DV=1 DID=5")).toBeGreaterThanOrEqual(0);
    expect(b.frames.framesInUse).toBeLessThan(before);
  });
});
