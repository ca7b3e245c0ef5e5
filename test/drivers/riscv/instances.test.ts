import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../../src/base/result.js";
import { checkCore } from "../../../src/check/invariants.js";
import type { RiscvPagingDomain } from "../../../src/drivers/riscv/domain.js";
import { RiscvIommuDriver } from "../../../src/drivers/riscv/driver.js";
import { SV39 } from "../../../src/hw/pgtable/modes.js";
import { IOMMU_DOMAIN_SVA, IOMMU_READ, IOMMU_WRITE } from "../../../src/iommu/constants.js";
import { mmAlloc } from "../../../src/mm/fork.js";
import { MmSubsystem } from "../../../src/mm/mm-types.js";
import { bed, dma } from "./setup.js";

/** Three IOMMUs with different capabilities in one machine. */
function three() {
  const b = bed([
    { name: "full" },
    { name: "nopd20", capabilities: { PD20: false, ATS: false, T2GPA: false } },
    { name: "sv39", capabilities: { Sv48: false, Sv57: false } },
  ]);
  const a = b.dev("a", 1, { iommu: "full", pasidBits: 20 });
  const n = b.dev("n", 1, { iommu: "nopd20", pasidBits: 20 });
  const s = b.dev("s", 1, { iommu: "sv39", pasidBits: 8 });
  return { ...b, a, n, s };
}

describe("several RISC-V IOMMUs in one machine", () => {
  it("share one driver and ops, and each resolves its own devices", () => {
    const b = three();
    expect(RiscvIommuDriver.of(b.core)).toBe(b.driver);
    expect(b.driver.instances.map((i) => i.name)).toEqual(["full", "nopd20", "sv39"]);
    for (const [name, dev] of [
      ["full", b.a],
      ["nopd20", b.n],
      ["sv39", b.s],
    ] as const) {
      expect(dev.iommu!.iommuDev).toBe(b.iommus.get(name)!.iommu);
    }
    // The same device_id on three IOMMUs names three different devices.
    expect(b.iommus.get("nopd20")!.iommu.deviceOf(1)).toBe(b.n);
    expect(b.n.iommu!.maxPasids).toBe(2 ** 17);
    expect(b.iommus.get("nopd20")!.iommu.priq).toBeNull();
    const s = b.core.getDomainForDev(b.s) as RiscvPagingDomain;
    expect(s.pagingMode).toBe(SV39);
    expect((b.core.getDomainForDev(b.a) as RiscvPagingDomain).pagingMode.name).toBe("Sv57");
    expect(checkCore(b.core)).toEqual([]);
  });

  it("refuses a domain of another instance (EINVAL: incompatible) for RID and PASID attach", () => {
    const b = three();
    const fromA = unwrap(b.core.pagingDomainAlloc(b.a));
    const before = b.core.getDomainForDev(b.n);
    expect(b.core.attachDevice(fromA, b.n)).toEqual(err("EINVAL"));
    expect(b.core.getDomainForDev(b.n)).toBe(before);
    expect(b.core.attachDevicePasid(fromA, b.n, 3)).toEqual(err("EINVAL"));
    expect(b.core.attachDevice(fromA, b.a)).toEqual(OK);
  });

  it("takes PSCIDs from one driver-wide space (riscv_iommu_pscids) and keeps translations per instance", () => {
    const b = three();
    const da = b.core.getDomainForDev(b.a) as RiscvPagingDomain;
    const ds = b.core.getDomainForDev(b.s) as RiscvPagingDomain;
    expect(da.pscid).not.toBe(ds.pscid);
    expect(b.iommus.get("full")!.iommu.pscidsInUse()).toEqual([da.pscid]);
    expect(b.iommus.get("sv39")!.iommu.pscidsInUse()).toEqual([ds.pscid]);
    expect([...b.driver.pscids.ids()]).toEqual(
      [...b.iommus.values()].flatMap((s) => s.iommu.pscidsInUse()).sort((x, y) => x - y),
    );
    unwrap(b.core.map(da, 0x1000n, 0x8300_0000n, 0x1000n, IOMMU_READ | IOMMU_WRITE));
    unwrap(b.core.map(ds, 0x1000n, 0x8380_0000n, 0x1000n, IOMMU_READ | IOMMU_WRITE));
    const ra = dma(b.iommus.get("full")!.hardware, 1, 0x1000n);
    const rs = dma(b.iommus.get("sv39")!.hardware, 1, 0x1000n);
    expect(ra.ok && ra.pa).toBe(0x8300_0000n);
    expect(rs.ok && rs.pa).toBe(0x8380_0000n);
    expect(dma(b.iommus.get("nopd20")!.hardware, 1, 0x1000n).ok).toBe(false);
  });

  it("an SVA domain is allocated per instance that can walk the mm", () => {
    const b = three();
    const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
    const mm48 = unwrap(mmAlloc(sys));
    const mm39 = unwrap(mmAlloc(sys, { mode: SV39 }));
    const ops = b.driver.ops;
    expect(ops.domainAllocSva!(b.s, mm48)).toEqual(err("EOPNOTSUPP"));
    const d39 = unwrap(ops.domainAllocSva!(b.s, mm39));
    b.core.s.domainInit(d39, IOMMU_DOMAIN_SVA, ops, b.s);
    // An SVA domain of "sv39" cannot serve a device of "full": soft EINVAL, the bind allocates anew.
    expect(b.core.attachDevicePasid(d39, b.a, 5)).toEqual(err("EINVAL"));
    expect(b.core.attachDevicePasid(d39, b.s, 5)).toEqual(OK);
  });
});

describe("JSON views", () => {
  it("instance: modes, queues, PSCIDs in use, devices; domain: PSCID, mode, root, mappings", () => {
    const b = bed();
    const d = b.dev("dev0", 5, { pasidBits: 8 });
    const dom = b.core.getDomainForDev(d) as RiscvPagingDomain;
    unwrap(b.core.map(dom, 0x1000n, 0x8300_0000n, 0x3000n, IOMMU_READ));
    const inst = JSON.parse(JSON.stringify(b.io.iommu.toJSON()));
    expect(inst).toMatchObject({
      name: "iommu0",
      driver: "riscv-iommu",
      max_pasids: 2 ** 20,
      driver_state: {
        ddtp_mode: "3LVL",
        paging_mode: "Sv57",
        pdtp_mode: "PD20",
        interrupts: { kind: "msi", vectors: 4 },
        queues: { cq: { entries: 256, active: true }, fq: { entries: 64 }, pq: { entries: 64 } },
        pscids: [dom.pscid],
      },
    });
    expect(inst.driver_state.devices[0]).toMatchObject({
      device: "dev0",
      device_ids: ["0x5"],
      rid: dom.id,
      contexts: [{ device_id: "0x5", tc: { V: true, PDTV: false }, ta: { PSCID: dom.pscid } }],
    });
    const view = JSON.parse(JSON.stringify(dom.toJSON()));
    expect(view).toMatchObject({
      type: "DMA",
      owner: "riscv-iommu",
      iommu: "iommu0",
      pscid: dom.pscid,
      mode: "Sv57",
      root: `0x${(dom.rootPpn * 4096).toString(16)}`,
      mappings: 3,
      bonds: [{ device: "dev0", pasid: null }],
    });
  });

  it("the fault log is part of the instance view", () => {
    const b = bed();
    b.dev("dev0", 5);
    dma(b.io.hardware, 5, 0x5000n);
    b.io.iommu.processFaultQueue();
    const v = JSON.parse(JSON.stringify(b.io.iommu.toJSON()));
    expect(v.driver_state.faults.log[0]).toMatchObject({
      cause: 13,
      ttyp: 2,
      did: "0x5",
      device: "dev0",
      iotval: "0x5000",
      reported: "-ENOSYS",
    });
  });
});
