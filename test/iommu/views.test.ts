import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import type { DmaIommuHooks } from "../../src/iommu/dma-cookie.js";
import { IommuAttachHandle } from "../../src/iommu/domain.js";
import { platBed, traceFields } from "./setup.js";

describe("JSON views", () => {
  it("device, group, domain, handle, instance, core and device model views are plain JSON", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const rec = b.ctx.trace.record();
    const a = b.dev("a", {
      pasidBits: 4,
      resv: [{ start: 0x8000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.RESERVED }],
    });
    const g = b.core.groupOf(a)!;
    const d = unwrap(b.core.pagingDomainAlloc(a));
    const h = new IommuAttachHandle("sva-bond");
    expect(b.core.attachDevicePasid(d, a, 5, h)).toEqual(OK);
    expect(b.core.deviceClaimDmaOwner(a, "ictx")).toEqual(err("EBUSY"));
    expect(b.core.deviceUseDefaultDomain(a)).toEqual(OK);
    unwrap(b.core.map(d, 0x10_0000n, 0x20_0000n, 0x1000n, 1));

    expect(a.toJSON()).toMatchObject({
      name: "a",
      bus: "platform",
      driver: null,
      iommu_group: g.id,
      iommu: { iommu_dev: "iommu0", max_pasids: 16, attach_deferred: false, require_direct: false },
      dma_iommu: true,
      fw: { resv_regions: [{ start: "0x8000", end: "0x8fff", type: "reserved", prot: 3 }] },
    });
    expect(g.toJSON()).toEqual({
      id: g.id,
      name: null,
      devices: ["a"],
      default_domain: g.defaultDomain!.id,
      blocking_domain: null,
      domain: g.defaultDomain!.id,
      owner_cnt: 1,
      owner: null,
      pasid_array: [{ pasid: 5, kind: "handle", handle: "sva-bond", domain: d.id }],
      pasid_reserved: [],
      refs: 2,
    });
    expect(h.toJSON()).toEqual({ label: "sva-bond", domain: d.id });
    expect(d.toJSON()).toMatchObject({
      id: d.id,
      type: "UNMANAGED",
      cookie_type: "NONE",
      owner: "mock",
      pgsize_bitmap: "0x1000",
      mappings: [{ iova: "0x100000", paddr: "0x200000", size: "0x1000", prot: 1 }],
    });
    expect(b.inst.toJSON()).toMatchObject({
      name: "iommu0",
      driver: "mock",
      ready: true,
      registered: true,
    });
    const core = JSON.parse(JSON.stringify(b.core.toJSON()));
    expect(core.policy).toEqual({
      def_domain_type: "DMA",
      dma_strict: true,
      cmd_line_dma_api: false,
      cmd_line_strict: false,
      iommu_dma: true,
    });
    expect(core.groups.map((x: { id: number }) => x.id)).toEqual([g.id]);
    expect(JSON.parse(JSON.stringify(b.model.toJSON()))).toMatchObject({
      buses: [{ name: "platform", devices: ["iommu0", "a"] }, { name: "iommufd_mock" }],
      deferred_probe: [],
    });
    // Kernel log lines are traced as they are kept.
    expect(traceFields(rec.stop(), "iommu_core:log")).toEqual(
      b.core.logs().map((l) => ({ level: l.level, device: l.device, message: l.message })),
    );
  });
});

describe("the DMA layer's hooks", () => {
  it("a failing IOVA cookie fails the default-domain set-up and frees the domain", () => {
    const b = platBed({ defaultDomain: "none" });
    const calls: string[] = [];
    const hooks: DmaIommuHooks = {
      getDmaCookie: (dom) => {
        calls.push(`get ${dom.id}`);
        return err("ENOMEM");
      },
      putDmaCookie: () => {},
      initFq: () => OK,
      setupDmaOps: (dev) => {
        calls.push(`setup ${dev.name}`);
      },
    };
    b.core.setDmaIommuHooks(hooks);
    const d = b.dev("d");
    expect(d.iommuGroup).toBeNull();
    expect(calls.length).toBe(1);
    expect(b.core.domains().filter((x) => x.isDma())).toEqual([]);
  });

  it("installed hooks run for cookies, dma ops and sysfs flush-queue bring-up", () => {
    const b = platBed({ defaultDomain: "none" });
    const calls: string[] = [];
    b.core.setDmaIommuHooks({
      getDmaCookie: (dom) => {
        calls.push("get");
        dom.cookieType = "DMA_IOVA";
        dom.iovaCookie = { fq: false, state: "iovad" };
        return OK;
      },
      putDmaCookie: (dom) => {
        calls.push("put");
        dom.cookieType = "NONE";
      },
      initFq: () => {
        calls.push("fq");
        return err("ENOMEM");
      },
      setupDmaOps: (dev) => {
        calls.push(`setup ${dev.name}`);
      },
    });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(b.core.groupStoreType(g, "DMA-FQ")).toEqual(err("ENOMEM"));
    b.model.deviceDel(d);
    expect(calls).toEqual(["get", "setup d", "fq", "put"]);
  });
});

describe("group reserved regions (sysfs reserved_regions)", () => {
  it("merges overlapping and adjacent regions of one type across members, sorted by start", () => {
    const b = platBed({
      deviceGroup: "single",
      extraResvRegions: [
        { start: 0x800_0000n, length: 0x10_0000n, prot: 0, type: IOMMU_RESV.SW_MSI },
      ],
    });
    b.dev("a", {
      resv: [
        { start: 0x3000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.RESERVED },
        { start: 0x1000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.DIRECT_RELAXABLE },
      ],
    });
    const c = b.dev("c", {
      resv: [
        { start: 0x3800n, length: 0x1000n, prot: 3, type: IOMMU_RESV.RESERVED },
        { start: 0x4800n, length: 0x800n, prot: 3, type: IOMMU_RESV.RESERVED },
        { start: 0x3000n, length: 0x2000n, prot: 3, type: IOMMU_RESV.DIRECT_RELAXABLE },
      ],
    });
    const g = b.core.groupOf(c)!;
    expect(b.core.getGroupResvRegions(g).map((r) => [r.start, r.length, r.type])).toEqual([
      [0x1000n, 0x1000n, IOMMU_RESV.DIRECT_RELAXABLE],
      [0x3000n, 0x2000n, IOMMU_RESV.DIRECT_RELAXABLE],
      [0x3000n, 0x2000n, IOMMU_RESV.RESERVED],
      [0x800_0000n, 0x10_0000n, IOMMU_RESV.SW_MSI],
    ]);
    expect(b.core.groupShowResvRegions(g)).toBe(
      [
        "0x0000000000001000 0x0000000000001fff direct-relaxable",
        "0x0000000000003000 0x0000000000004fff direct-relaxable",
        "0x0000000000003000 0x0000000000004fff reserved",
        "0x0000000008000000 0x00000000080fffff msi",
        "",
      ].join("\n"),
    );
  });
});
