// The order of the checks of the core's multi-condition paths (linux-iommu-core.md): when several
// failure conditions hold at once, the kernel returns the errno of the first check it makes, and
// makes no driver call before its checks pass. Each case below sets up two or more conditions.

import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import { MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import { IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ } from "../../src/iommu/constants.js";
import { defaultDmaIommuHooks } from "../../src/iommu/dma-cookie.js";
import { IommuAttachHandle, type IommuDomainOps } from "../../src/iommu/domain.js";
import { platBed, platformFw } from "./setup.js";
import { svaBed } from "./sva-setup.js";

function withoutSetDevPasid(ops: IommuDomainOps): IommuDomainOps {
  const { setDevPasid: _, ...rest } = ops;
  return rest;
}

/** Two PASID-capable devices (256 PASIDs) in one group, a stray device, a foreign domain. */
function pasidBed() {
  const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
  const a = b.dev("a", { pasidBits: 8 });
  b.dev("c", { pasidBits: 8 });
  const g = b.core.groupOf(a)!;
  const d1 = unwrap(b.core.pagingDomainAlloc(a));
  const d2 = unwrap(b.core.pagingDomainAlloc(a));
  const noPasid = unwrap(b.core.pagingDomainAlloc(a));
  noPasid.ops = withoutSetDevPasid(noPasid.ops!);
  const stray = new Device("stray", b.platform);
  b.model.deviceAdd(stray);
  const other = new MockIommuDriver(b.core, { name: "other", claimBus: "platform" });
  const hw = new Device("iommu1", b.platform);
  b.model.deviceAdd(hw);
  unwrap(other.registerInstance("iommu1", hw));
  const x = new Device("x", b.platform, platformFw("x", hw, { pasidBits: 8 }));
  b.model.deviceAdd(x);
  const foreign = unwrap(b.core.pagingDomainAlloc(x));
  const foreignNoPasid = unwrap(b.core.pagingDomainAlloc(x));
  foreignNoPasid.ops = withoutSetDevPasid(foreignNoPasid.ops!);
  const driverCalls = () => b.mock.log.filter((l) => l.startsWith("set_dev_pasid")).length;
  return { ...b, a, g, d1, d2, noPasid, stray, foreign, foreignNoPasid, driverCalls };
}

describe("iommu_attach_device_pasid: steps 1–5 in order (core §5.6)", () => {
  it("1 before 2, 2 before 3, 4 before 5; no driver call before step 6", () => {
    const b = pasidBed();
    const before = b.driverCalls();
    // 1 (no group) beats 2 (no set_dev_pasid) and 3 (PASID 0).
    expect(b.core.attachDevicePasid(b.noPasid, b.stray, 0)).toEqual(err("ENODEV"));
    // 2 (no set_dev_pasid) beats 3 (foreign domain, PASID 0) and 4 (out of range).
    expect(b.core.attachDevicePasid(b.foreignNoPasid, b.a, 0)).toEqual(err("EOPNOTSUPP"));
    expect(b.core.attachDevicePasid(b.noPasid, b.a, 1000)).toEqual(err("EOPNOTSUPP"));
    // 4 (range) beats 5 (slot taken): a narrower device joins after the PASID was attached.
    expect(b.core.attachDevicePasid(b.d1, b.a, 200)).toEqual(OK);
    const narrow = b.dev("narrow", { pasidBits: 7 });
    expect(b.core.groupOf(narrow)).toBe(b.g);
    const mid = b.driverCalls();
    expect(b.core.attachDevicePasid(b.d2, b.a, 200)).toEqual(err("EINVAL"));
    // 5: the slot is taken (in range for everyone now) — EBUSY, still no driver call.
    expect(b.core.attachDevicePasid(b.d2, b.a, 100, new IommuAttachHandle())).toEqual(OK);
    const last = b.driverCalls();
    expect(b.core.attachDevicePasid(b.d1, b.a, 100, new IommuAttachHandle())).toEqual(err("EBUSY"));
    expect(b.driverCalls()).toBe(last);
    expect(mid - before).toBe(2);
    expect(b.g.pasidArray.reservations()).toEqual([]);
    expect(b.ctx.warnings.list()).toEqual([]);
  });

  it("a driver without a blocked domain is EOPNOTSUPP before the PASID-0 and range checks", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d", { pasidBits: 4 });
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevicePasid(dom, d, 0)).toEqual(err("EOPNOTSUPP"));
    expect(b.core.attachDevicePasid(dom, d, 99)).toEqual(err("EOPNOTSUPP"));
  });

  it("the entry becomes visible only once every device is programmed (lookups see nothing during the driver calls)", () => {
    const b = pasidBed();
    const h = new IommuAttachHandle("h");
    const seen: string[] = [];
    const set = b.d1.ops!.setDevPasid!;
    b.d1.ops = {
      ...b.d1.ops,
      setDevPasid: (dom, dev, pasid, old) => {
        const got = b.core.attachHandleGet(b.g, pasid, 0);
        seen.push(got.ok ? "handle" : got.errno);
        return set(dom, dev, pasid, old);
      },
    };
    expect(b.core.attachDevicePasid(b.d1, b.a, 7, h)).toEqual(OK);
    expect(seen).toEqual(["ENOENT", "ENOENT"]);
    expect(unwrap(b.core.attachHandleGet(b.g, 7, 0))).toBe(h);
  });
});

describe("iommu_replace_device_pasid: checks in order (core §5.7)", () => {
  it("ENODEV, then EOPNOTSUPP, then EINVAL; an empty slot is EINVAL without a WARN; the same domain calls no driver", () => {
    const b = pasidBed();
    expect(b.core.replaceDevicePasid(b.noPasid, b.stray, 0, null)).toEqual(err("ENODEV"));
    expect(b.core.replaceDevicePasid(b.foreignNoPasid, b.a, 0, null)).toEqual(err("EOPNOTSUPP"));
    // Nothing attached at PASID 9, and a handle that no slot holds: EINVAL, no WARN.
    const h = new IommuAttachHandle("h");
    expect(b.core.replaceDevicePasid(b.d1, b.a, 9, h)).toEqual(err("EINVAL"));
    expect(b.g.pasidArray.reservations()).toEqual([]);
    expect(b.core.attachDevicePasid(b.d1, b.a, 9, h)).toEqual(OK);
    // Same domain, new handle: only the entry changes.
    const calls = b.driverCalls();
    const h2 = new IommuAttachHandle("h2");
    expect(b.core.replaceDevicePasid(b.d1, b.a, 9, h2)).toEqual(OK);
    expect(b.driverCalls()).toBe(calls);
    expect(unwrap(b.core.attachHandleGet(b.g, 9, 0))).toBe(h2);
    expect(b.ctx.warnings.list()).toEqual([]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });
});

describe("iommu_sva_bind_device: steps in order (core §6.2)", () => {
  it("ENODEV before the architecture check; the architecture (EBUSY) before EOVERFLOW and ENOSPC", () => {
    const b = svaBed();
    const lam = b.spawn("lam").mm!;
    b.core.setArchPgtableDmaCompat((m) => m !== lam);
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.svaBindDevice(lone, lam)).toEqual(err("ENODEV"));
    // No PASID support (ENOSPC otherwise): the architecture refuses first, nothing allocated.
    expect(b.core.svaBindDevice(b.dev("nopasid"), lam)).toEqual(err("EBUSY"));
    expect(lam.iommuMm).toBeNull();
    expect(b.core.allocGlobalPasid(b.pdev("probe"))).toBe(1);
    b.core.freeGlobalPasid(1);
    // An mm whose PASID does not fit (EOVERFLOW otherwise) on an incompatible architecture.
    const wide = b.pdev("wide");
    for (let i = 0; i < 4; i++) b.core.allocGlobalPasid(wide);
    const mm = b.spawn("mm").mm!;
    unwrap(b.core.svaBindDevice(wide, mm));
    const narrow = b.pdev("narrow", { pasidBits: 2 });
    expect(b.core.svaBindDevice(narrow, mm)).toEqual(err("EOVERFLOW"));
    b.core.setArchPgtableDmaCompat(() => false);
    expect(b.core.svaBindDevice(narrow, mm)).toEqual(err("EBUSY"));
    // Even the existing bond is not found again: step 3 comes before step 4.
    expect(b.core.svaBindDevice(wide, mm)).toEqual(err("EBUSY"));
  });

  it("the PASID is set up before the driver is asked: EOPNOTSUPP leaves it allocated", () => {
    const b = svaBed({ sva: false });
    const mm = b.spawn().mm!;
    expect(b.core.svaBindDevice(b.pdev("d"), mm)).toEqual(err("EOPNOTSUPP"));
    expect(b.core.mmGetPasid(mm)).toBe(1);
  });
});

describe("DMA ownership: checks in order (core §4.2)", () => {
  function owned() {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a", { pasidBits: 8 });
    const c = b.dev("c", { pasidBits: 8 });
    const g = b.core.groupOf(a)!;
    const d = unwrap(b.core.pagingDomainAlloc(a));
    return { ...b, a, c, g, d };
  }

  it("a NULL owner is EINVAL (WARN) before the group is looked at", () => {
    const b = owned();
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.deviceClaimDmaOwner(lone, null)).toEqual(err("EINVAL"));
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iommu_device_claim_dma_owner"]);
  });

  it("owner_cnt > 0 is EPERM before the EBUSY checks of __iommu_take_dma_ownership", () => {
    const b = owned();
    expect(b.core.deviceUseDefaultDomain(b.a)).toEqual(OK);
    expect(b.core.attachDevicePasid(b.d, b.a, 3)).toEqual(OK);
    // KERNEL(1) with a PASID attached: EPERM, not EBUSY.
    expect(b.core.groupClaimDmaOwner(b.g, "vfio")).toEqual(err("EPERM"));
    expect(b.core.deviceClaimDmaOwner(b.a, "vfio")).toEqual(err("EPERM"));
  });

  it("the same owner's device claim only counts: no EBUSY for attached PASIDs or a user domain", () => {
    const b = owned();
    expect(b.core.deviceClaimDmaOwner(b.a, "ictx")).toEqual(OK);
    expect(b.core.attachGroup(b.d, b.g)).toEqual(OK);
    expect(b.core.attachDevicePasid(b.d, b.a, 3)).toEqual(OK);
    expect(b.core.deviceClaimDmaOwner(b.c, "ictx")).toEqual(OK);
    expect(b.g.ownerCnt).toBe(2);
    expect(b.core.deviceClaimDmaOwner(b.c, "other")).toEqual(err("EPERM"));
    expect(b.core.groupClaimDmaOwner(b.g, "ictx")).toEqual(err("EPERM"));
  });

  it("use_default_domain checks the domain and PASIDs only for an already used group", () => {
    const b = owned();
    // FREE, but a domain attached without ownership and a PASID: the first user is let in.
    expect(b.core.attachGroup(b.d, b.g)).toEqual(OK);
    expect(b.core.attachDevicePasid(b.d, b.a, 3)).toEqual(OK);
    expect(b.core.deviceUseDefaultDomain(b.a)).toEqual(OK);
    expect(b.core.deviceUseDefaultDomain(b.c)).toEqual(err("EBUSY"));
    expect(b.g.ownerCnt).toBe(1);
  });
});

describe("iommu_group_store_type: checks in order (core §2.6)", () => {
  function typed() {
    const b = platBed({ defaultDomain: "none", staticIdentity: true });
    const d = b.dev("d");
    return { ...b, d, g: b.core.groupOf(d)! };
  }

  it("EACCES first; a bad string is EINVAL before the EPERM of a used group", () => {
    const b = typed();
    expect(b.core.groupStoreType(b.g, "bogus", { sysAdmin: false, sysRawio: true })).toEqual(
      err("EACCES"),
    );
    expect(b.core.deviceClaimDmaOwner(b.d, "vfio")).toEqual(OK);
    expect(b.core.groupStoreType(b.g, "bogus")).toEqual(err("EINVAL"));
    expect(b.core.groupStoreType(b.g, "identity")).toEqual(err("EPERM"));
  });

  it("DMA → DMA-FQ comes up in place before the EPERM check (even for a user-owned group); DMA-FQ → DMA-FQ does not", () => {
    const b = typed();
    expect(b.core.deviceClaimDmaOwner(b.d, "vfio")).toEqual(OK);
    const dom = b.g.defaultDomain!;
    expect(dom.type).toBe(IOMMU_DOMAIN_DMA);
    expect(b.core.groupStoreType(b.g, "DMA-FQ")).toEqual(OK);
    expect(dom.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    expect(b.g.defaultDomain).toBe(dom);
    expect(b.core.groupStoreType(b.g, "DMA-FQ")).toEqual(err("EPERM"));
    b.core.deviceReleaseDmaOwner(b.d);
    // Unused: the same type again keeps the same domain (no driver call).
    b.mock.log.length = 0;
    expect(b.core.groupStoreType(b.g, "DMA-FQ")).toEqual(OK);
    expect(b.g.defaultDomain).toBe(dom);
    expect(b.mock.log.filter((l) => l.startsWith("attach_dev"))).toEqual([]);
  });

  it("a flush queue that cannot come up fails the in-place flip and keeps DMA", () => {
    const b = typed();
    b.core.setDmaIommuHooks({ ...defaultDmaIommuHooks, initFq: () => err("ENOMEM") });
    expect(b.core.groupStoreType(b.g, "DMA-FQ")).toEqual(err("ENOMEM"));
    expect(b.g.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
  });
});

describe("attach: checks in order (core §3.4)", () => {
  it("iommu_attach_device: the device count (EINVAL) before the busy group (EBUSY)", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a");
    b.dev("c");
    const g = b.core.groupOf(a)!;
    const d1 = unwrap(b.core.pagingDomainAlloc(a));
    const d2 = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachGroup(d1, g)).toEqual(OK);
    expect(b.core.attachDevice(d2, a)).toEqual(err("EINVAL"));
  });

  it("__iommu_attach_group: a busy group (EBUSY) before an incompatible domain (EINVAL); the current core domain again calls no driver", () => {
    const b = pasidBed();
    expect(b.core.attachGroup(b.d1, b.g)).toEqual(OK);
    expect(b.core.attachGroup(b.foreign, b.g)).toEqual(err("EBUSY"));
    b.core.detachGroup(b.d1, b.g);
    b.mock.log.length = 0;
    expect(b.core.attachGroup(b.g.defaultDomain!, b.g)).toEqual(OK);
    expect(b.mock.log).toEqual([]);
  });

  it("iommu_attach_group_handle: a NULL handle (EINVAL) before the slot (EBUSY); the slot before the group (EBUSY, entry untouched)", () => {
    const b = pasidBed();
    const h = new IommuAttachHandle("h");
    expect(b.core.attachGroupHandle(b.d1, b.g, h)).toEqual(OK);
    expect(b.core.attachGroupHandle(b.d2, b.g, null)).toEqual(err("EINVAL"));
    b.mock.log.length = 0;
    expect(b.core.attachGroupHandle(b.d2, b.g, new IommuAttachHandle())).toEqual(err("EBUSY"));
    expect(b.mock.log).toEqual([]);
    expect(unwrap(b.core.attachHandleGet(b.g, 0, 0))).toBe(h);
    expect(b.g.pasidArray.reservations()).toEqual([]);
  });
});

describe("iommu_paging_domain_alloc_flags (core §3.1)", () => {
  it("ENODEV without an IOMMU, EOPNOTSUPP without a suitable op, ENOMEM for a NULL domain", () => {
    const b = platBed({ pagingOp: "none" });
    const d = b.dev("d");
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.pagingDomainAlloc(lone)).toEqual(err("ENODEV"));
    expect(b.core.pagingDomainAlloc(d)).toEqual(err("EOPNOTSUPP"));
    const p = platBed({ pagingOp: "paging" });
    const pd = p.dev("d");
    // domain_alloc_paging takes no flags: a flagged request has no op.
    expect(p.core.pagingDomainAllocFlags(pd, 1)).toEqual(err("EOPNOTSUPP"));
    (p.mock.ops as { domainAllocPaging?: unknown }).domainAllocPaging = () => null;
    expect(p.core.pagingDomainAlloc(pd)).toEqual(err("ENOMEM"));
  });

  it("flags 0 uses domain_alloc_paging when the driver has both; flags go to domain_alloc_paging_flags", () => {
    const b = platBed({ pagingOp: "both" });
    const d = b.dev("d");
    const used: string[] = [];
    const ops = b.mock.ops as {
      domainAllocPaging?: (...a: never[]) => unknown;
      domainAllocPagingFlags?: (...a: never[]) => unknown;
    };
    const paging = ops.domainAllocPaging!;
    const flags = ops.domainAllocPagingFlags!;
    ops.domainAllocPaging = (...a) => {
      used.push("paging");
      return paging(...a);
    };
    ops.domainAllocPagingFlags = (...a) => {
      used.push("flags");
      return flags(...a);
    };
    const dom = unwrap(b.core.pagingDomainAlloc(d));
    unwrap(b.core.pagingDomainAllocFlags(d, 1 << 3));
    expect(used).toEqual(["paging", "flags"]);
    expect(dom.owner).toBe(b.mock.ops);
    expect(dom.ops).not.toBeNull();
  });
});
