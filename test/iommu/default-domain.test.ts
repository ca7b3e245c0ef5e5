import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { checkCore } from "../../src/check/invariants.js";
import type { MockPagingDomain } from "../../src/drivers/mock/mock-domain.js";
import type { PciHost } from "../../src/hw/pci/host.js";
import {
  IOMMU_CAP,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../../src/iommu/constants.js";
import { bed, mockBed, pciBed, platBed } from "./setup.js";

const RW = IOMMU_READ | IOMMU_WRITE;

describe("boot policy (iommu_subsys_init)", () => {
  it("derives the default type from Kconfig, the command line and memory encryption", () => {
    expect(bed().core.defDomainType).toBe(IOMMU_DOMAIN_DMA);
    expect(bed().core.dmaStrict).toBe(true);
    expect(bed({ strict: false }).core.defDomainType).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(bed({ configDefaultDmaStrict: false }).core.defDomainType).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(bed({ passthrough: true, strict: false }).core.defDomainType).toBe(
      IOMMU_DOMAIN_IDENTITY,
    );
    expect(bed({ configDefaultPassthrough: true }).core.defDomainType).toBe(IOMMU_DOMAIN_IDENTITY);
    // Memory encryption overrides a Kconfig passthrough, not a command-line one.
    expect(bed({ configDefaultPassthrough: true, memEncrypt: true }).core.defDomainType).toBe(
      IOMMU_DOMAIN_DMA,
    );
    expect(bed({ passthrough: true, memEncrypt: true }).core.defDomainType).toBe(
      IOMMU_DOMAIN_IDENTITY,
    );
    expect(bed({ passthrough: false }).core.defaultPassthrough()).toBe(false);
  });

  it("iommu_set_dma_strict turns a lazy DMA_FQ default back into DMA", () => {
    const { core } = bed({ strict: false });
    core.setDmaStrict();
    expect(core.dmaStrict).toBe(true);
    expect(core.defDomainType).toBe(IOMMU_DOMAIN_DMA);
    const p = bed({ passthrough: true });
    p.core.setDmaStrict();
    expect(p.core.defDomainType).toBe(IOMMU_DOMAIN_IDENTITY);
  });
});

describe("choosing and allocating the default domain", () => {
  it("a driver's static default domain is always chosen", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate());
    const g = b.core.groupOf(d)!;
    expect(g.defaultDomain).toBe(b.mock.blockedDomain);
    expect(b.core.groupShowType(g)).toBe("blocked");
    expect(b.core.groupStoreType(g, "DMA")).toEqual(err("EINVAL"));
  });

  it("allocates DMA domains PASID-capable for PASID devices, retrying without flags on EOPNOTSUPP", () => {
    const b = platBed({ defaultDomain: "none" });
    const p = b.dev("p", { pasidBits: 8 });
    const n = b.dev("n");
    expect((b.core.groupOf(p)!.defaultDomain as MockPagingDomain).allocFlags).toBe(
      IOMMU_HWPT_ALLOC_PASID,
    );
    expect((b.core.groupOf(n)!.defaultDomain as MockPagingDomain).allocFlags).toBe(0);
    const old = platBed({ defaultDomain: "none", pagingOp: "paging" });
    const q = old.dev("q", { pasidBits: 8 });
    expect(old.core.groupOf(q)!.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
  });

  it("an IDENTITY global default falls back to DMA (with a warning) when the driver has no identity", () => {
    const b = platBed({ defaultDomain: "none" }, { passthrough: true });
    const d = b.dev("d");
    expect(b.core.groupOf(d)!.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
    expect(b.core.logs().some((l) => l.message.includes("Falling back to IOMMU_DOMAIN_DMA"))).toBe(
      true,
    );
  });

  it("uses the static identity domain or domain_alloc_identity; without either a required IDENTITY fails the probe", () => {
    const st = platBed({ defaultDomain: "none", staticIdentity: true }, { passthrough: true });
    expect(st.core.groupOf(st.dev("d"))!.defaultDomain).toBe(st.mock.identityDomain);
    const dyn = platBed({ defaultDomain: "none", allocIdentity: true }, { passthrough: true });
    const dd = dyn.core.groupOf(dyn.dev("d"))!.defaultDomain!;
    expect(dd.type).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(dd.owner).toBe(dyn.mock.ops);
    expect(dyn.core.iovaToPhys(dd, 0x1234n)).toBe(0x1234n);
    const none = platBed({ defaultDomain: "none", defDomainType: IOMMU_DOMAIN_IDENTITY });
    const x = none.dev("x");
    expect(x.iommuGroup).toBeNull();
    expect(none.core.allocIdentityDomain(none.dev("y"))).toEqual(err("ENODEV"));
    const dma = platBed({ defaultDomain: "none" });
    expect(dma.core.allocIdentityDomain(dma.dev("z"))).toEqual(err("EOPNOTSUPP"));
  });

  it("a DMA default that cannot be allocated fails the probe", () => {
    const b = platBed({ defaultDomain: "none" });
    b.mock.faults.arm({ op: "alloc", nth: 1, errno: "ENOMEM" });
    const d = b.dev("d");
    expect(d.iommuGroup).toBeNull();
    expect(b.core.probeDevice(d)).toEqual(OK);
    expect(b.core.groupOf(d)!.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
  });

  it("DMA_FQ becomes DMA without IOMMU_CAP_DEFERRED_FLUSH, and stays DMA_FQ with it", () => {
    const lazy = platBed({ defaultDomain: "none" }, { strict: false });
    const d = lazy.core.groupOf(lazy.dev("d"))!.defaultDomain!;
    expect(d.type).toBe(IOMMU_DOMAIN_DMA);
    expect(d.cookieType).toBe("DMA_IOVA");
    const fq = platBed(
      {
        defaultDomain: "none",
        capabilities: [IOMMU_CAP.CACHE_COHERENCY, IOMMU_CAP.DEFERRED_FLUSH],
      },
      { strict: false },
    );
    const f = fq.core.groupOf(fq.dev("d"))!.defaultDomain!;
    expect(f.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(f.iovaCookie?.fq).toBe(true);
    expect(fq.core.groupShowType(fq.core.groupOf(fq.platform.findDevice("d")!)!)).toBe("DMA-FQ");
  });

  it("untrusted devices force DMA, and refuse a driver that insists on IDENTITY", () => {
    const build = (h: PciHost) => {
      h.addRootPort({ name: "tb", externalFacing: true, acs: true }).addEndpoint({ name: "ext" });
    };
    const b = pciBed(build, {
      config: { defaultDomain: "none", staticIdentity: true },
      core: { passthrough: true },
    });
    expect(b.pdev("ext").untrusted).toBe(true);
    expect(b.core.groupOf(b.pdev("ext"))!.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
    // The root port itself is trusted: it gets the passthrough default.
    expect(b.core.groupOf(b.pdev("tb"))!.defaultDomain!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    const r = pciBed(build, {
      config: { defaultDomain: "none", staticIdentity: true, defDomainType: IOMMU_DOMAIN_IDENTITY },
    });
    expect(r.core.groupOf(r.pdev("ext"))).toBeNull();
    expect(r.core.logs().some((l) => l.message.includes("refusing to probe"))).toBe(true);
  });

  it("without CONFIG_IOMMU_DMA no preference means IDENTITY and a DMA requirement WARNs", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true }, { iommuDma: false });
    expect(b.core.groupOf(b.dev("d"))!.defaultDomain!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    const w = platBed(
      { defaultDomain: "none", defDomainType: IOMMU_DOMAIN_DMA },
      { iommuDma: false },
    );
    expect(w.dev("d").iommuGroup).toBeNull();
    expect(w.ctx.warnings.list().map((x) => x.site)).toContain("iommu_get_default_domain_type");
  });

  it("a failed first attach WARNs and fails the probe without leaking the domain", () => {
    const b = platBed({ defaultDomain: "none" });
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "EIO" });
    const d = b.dev("d");
    expect(d.iommuGroup).toBeNull();
    expect(b.ctx.warnings.list().map((w) => w.site)).toContain("iommu_setup_default_domain");
    expect(b.core.domains().filter((x) => x.type === IOMMU_DOMAIN_DMA)).toEqual([]);
  });
});

describe("sysfs iommu_groups/<id>/type", () => {
  it("checks capabilities, a default domain and the string first", () => {
    const b = platBed({ defaultDomain: "none", deviceGroup: "single" });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(b.core.groupStoreType(g, "identity", { sysAdmin: true, sysRawio: false })).toEqual(
      err("EACCES"),
    );
    expect(b.core.groupStoreType(g, "passthrough")).toEqual(err("EINVAL"));
    b.model.deviceDel(d);
    // The (singleton) group lives on, without a default domain.
    expect(b.core.groupStoreType(g, "DMA")).toEqual(err("EINVAL"));
  });

  it("flips DMA to DMA-FQ in place even with a driver bound", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(b.core.deviceUseDefaultDomain(d)).toEqual(OK);
    const dom = g.defaultDomain!;
    expect(b.core.groupStoreType(g, "DMA-FQ\n")).toEqual(OK);
    expect(g.defaultDomain).toBe(dom);
    expect(dom.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(dom.iovaCookie?.fq).toBe(true);
    expect(b.core.groupShowType(g)).toBe("DMA-FQ");
  });

  it("refuses other changes with EPERM while the group is used", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(b.core.deviceUseDefaultDomain(d)).toEqual(OK);
    expect(b.core.groupStoreType(g, "identity")).toEqual(err("EPERM"));
    b.core.deviceUnuseDefaultDomain(d);
    expect(b.core.deviceClaimDmaOwner(d, "vfio")).toEqual(OK);
    expect(b.core.groupStoreType(g, "identity")).toEqual(err("EPERM"));
  });

  it("changes the type of an unused group: new domain attached, old one freed, DMA ops refreshed", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    const old = g.defaultDomain!;
    expect(d.dmaIommu).toBe(true);
    expect(b.core.groupStoreType(g, "identity")).toEqual(OK);
    expect(g.defaultDomain).toBe(b.mock.identityDomain);
    expect(g.domain).toBe(b.mock.identityDomain);
    expect(b.mock.ridDomain(d)).toBe(b.mock.identityDomain);
    expect(old.freed).toBe(true);
    expect(d.dmaIommu).toBe(false);
    expect(b.core.groupStoreType(g, "auto")).toEqual(OK);
    expect(g.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
    expect(d.dmaIommu).toBe(true);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("refuses a type the driver contradicts", () => {
    const b = platBed({
      defaultDomain: "none",
      staticIdentity: true,
      defDomainType: IOMMU_DOMAIN_IDENTITY,
    });
    const g = b.core.groupOf(b.dev("d"))!;
    expect(b.core.groupStoreType(g, "DMA")).toEqual(err("EINVAL"));
    expect(g.defaultDomain).toBe(b.mock.identityDomain);
  });

  it("rolls back to the old default domain when attaching the new one fails", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    const old = g.defaultDomain!;
    b.mock.faults.arm({
      op: "attach_dev",
      nth: 1,
      errno: "ENOSPC",
      filter: (i) => i.domain === b.mock.identityDomain,
    });
    expect(b.core.groupStoreType(g, "identity")).toEqual(err("ENOSPC"));
    expect(g.defaultDomain).toBe(old);
    expect(g.domain).toBe(old);
    expect(old.freed).toBe(false);
    expect(b.mock.ridDomain(d)).toBe(old);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });
});

describe("firmware direct mappings", () => {
  const resv = [
    { start: 0x8000_0000n, length: 0x2000n, prot: RW, type: IOMMU_RESV.DIRECT },
    { start: 0x9000_0000n, length: 0x1000n, prot: IOMMU_READ, type: IOMMU_RESV.DIRECT_RELAXABLE },
    { start: 0xa000_0000n, length: 0x1000n, prot: RW, type: IOMMU_RESV.RESERVED },
    { start: 0xb000_0000n, length: 0x1000n, prot: RW, type: IOMMU_RESV.MSI },
  ];

  it("identity-maps DIRECT and DIRECT_RELAXABLE regions into DMA domains, and marks require_direct", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d", { resv });
    const dom = b.core.groupOf(d)!.defaultDomain as MockPagingDomain;
    expect(d.iommu!.requireDirect).toBe(true);
    expect(dom.mappings()).toEqual([
      { iova: 0x8000_0000n, paddr: 0x8000_0000n, size: 0x2000n, prot: RW },
      { iova: 0x9000_0000n, paddr: 0x9000_0000n, size: 0x1000n, prot: IOMMU_READ },
    ]);
    const relaxed = b.dev("r", { resv: [resv[1]!] });
    expect(relaxed.iommu!.requireDirect).toBe(false);
  });

  it("maps nothing into identity domains but still marks require_direct", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true }, { passthrough: true });
    const d = b.dev("d", { resv });
    expect(b.core.groupOf(d)!.defaultDomain).toBe(b.mock.identityDomain);
    expect(d.iommu!.requireDirect).toBe(true);
  });

  it("maps only pages not yet mapped when group members' regions overlap, aligning the start up", () => {
    const b = platBed({ defaultDomain: "none", deviceGroup: "single" });
    const a = b.dev("a", {
      resv: [{ start: 0x1_0000n, length: 0x3000n, prot: RW, type: IOMMU_RESV.DIRECT }],
    });
    b.dev("c", {
      resv: [{ start: 0x1_2800n, length: 0x2000n, prot: RW, type: IOMMU_RESV.DIRECT }],
    });
    const dom = b.core.groupOf(a)!.defaultDomain as MockPagingDomain;
    expect(dom.mappings()).toEqual([
      { iova: 0x1_0000n, paddr: 0x1_0000n, size: 0x5000n, prot: RW },
    ]);
    expect(b.ctx.warnings.list()).toEqual([]);
  });

  it("retries the mappings after attach when the driver refused them before", () => {
    const b = platBed({ defaultDomain: "none" });
    b.mock.faults.arm({ op: "map_pages", nth: 1, errno: "EINVAL" });
    const d = b.dev("d", { resv: [resv[0]!] });
    const dom = b.core.groupOf(d)!.defaultDomain as MockPagingDomain;
    expect(
      b.core
        .logs()
        .some((l) => l.message.includes("not able to establish FW requested direct mapping")),
    ).toBe(true);
    expect(dom.mappings()).toEqual([
      { iova: 0x8000_0000n, paddr: 0x8000_0000n, size: 0x2000n, prot: RW },
    ]);
  });

  it("restores the old default when the retried mappings fail during a type change", () => {
    const b = platBed({ defaultDomain: "none", staticIdentity: true }, { passthrough: true });
    const d = b.dev("d", { resv: [resv[0]!] });
    const g = b.core.groupOf(d)!;
    expect(g.defaultDomain).toBe(b.mock.identityDomain);
    b.mock.faults.arm({ op: "map_pages", nth: 1, errno: "ENOMEM", times: 2 });
    expect(b.core.groupStoreType(g, "DMA")).toEqual(err("ENOMEM"));
    expect(g.defaultDomain).toBe(b.mock.identityDomain);
    expect(g.domain).toBe(b.mock.identityDomain);
    expect(b.mock.ridDomain(d)).toBe(b.mock.identityDomain);
    expect(b.core.domains().filter((x) => x.type === IOMMU_DOMAIN_DMA)).toEqual([]);
  });

  it("a static blocked default domain type shows as blocked", () => {
    const b = mockBed();
    const g = b.core.groupOf(unwrap(b.mock.mockDevCreate()))!;
    expect(g.defaultDomain!.type).toBe(IOMMU_DOMAIN_BLOCKED);
  });
});
