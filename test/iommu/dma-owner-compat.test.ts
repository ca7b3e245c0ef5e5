import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import { platBed } from "./setup.js";

function group() {
  const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
  const a = b.dev("a");
  const c = b.dev("c");
  const g = b.core.groupOf(a)!;
  return { ...b, a, c, g, compat: b.core.dmaOwnerCompat };
}

describe("seed 004: owner types with a cookie and a refcount", () => {
  it("NONE is refcount 0; the same type and cookie count up; the last release parks the group again", () => {
    const { compat, a, c, g } = group();
    expect(compat.groupState(g)).toEqual({ owner: "DMA_OWNER_NONE", cookie: null, refcount: 0 });
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_DMA_API", null)).toEqual(OK);
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_DMA_API", null)).toEqual(OK);
    expect(compat.groupState(g)).toEqual({ owner: "DMA_OWNER_DMA_API", cookie: null, refcount: 2 });
    // The modern count sees the compat owner once.
    expect(g.ownerCnt).toBe(1);
    compat.deviceReleaseDmaOwner(c, "DMA_OWNER_DMA_API");
    compat.deviceReleaseDmaOwner(a, "DMA_OWNER_DMA_API");
    expect(compat.groupState(g).refcount).toBe(0);
    expect(g.ownerCnt).toBe(0);
  });

  it("any other type or cookie is refused with EBUSY", () => {
    const { compat, a, c } = group();
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN", "drv")).toEqual(OK);
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_PRIVATE_DOMAIN", "other")).toEqual(err("EBUSY"));
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_DMA_API", null)).toEqual(err("EBUSY"));
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_PRIVATE_DOMAIN_USER", "drv")).toEqual(
      err("EBUSY"),
    );
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_PRIVATE_DOMAIN", "drv")).toEqual(OK);
  });

  it("the first USER claim detaches the default domain (blocking); the last USER release re-attaches it", () => {
    const { compat, mock, a, c, g, core } = group();
    const def = g.defaultDomain!;
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN_USER", "vfio")).toEqual(OK);
    expect(g.domain).toBe(g.blockingDomain);
    expect(mock.ridDomain(a)).toBe(mock.blockedDomain);
    expect(compat.deviceSetDmaOwner(c, "DMA_OWNER_PRIVATE_DOMAIN_USER", "vfio")).toEqual(OK);
    // User space attaches its own domain; releasing one device changes nothing.
    const user = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachGroup(user, g)).toEqual(OK);
    compat.deviceReleaseDmaOwner(c, "DMA_OWNER_PRIVATE_DOMAIN_USER");
    expect(g.domain).toBe(user);
    // Detaching goes back to blocking (never to the default domain while USER owns the group).
    core.detachGroup(user, g);
    expect(g.domain).toBe(g.blockingDomain);
    compat.deviceReleaseDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN_USER");
    expect(g.domain).toBe(def);
    expect(compat.groupState(g).owner).toBe("DMA_OWNER_NONE");
    expect(checkCore(core, { drivers: [mock] })).toEqual([]);
  });

  it("PRIVATE_DOMAIN keeps the default domain until the driver attaches its own", () => {
    const { compat, core, a, g } = group();
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN", "drv")).toEqual(OK);
    expect(g.domain).toBe(g.defaultDomain);
    const priv = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachGroup(priv, g)).toEqual(OK);
    expect(g.domain).toBe(priv);
  });

  it("a conflict with modern users reads as EBUSY; other modern errors pass through", () => {
    const { compat, core, a, c, g } = group();
    expect(core.deviceUseDefaultDomain(c)).toEqual(OK);
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN_USER", "vfio")).toEqual(
      err("EBUSY"),
    );
    core.deviceUnuseDefaultDomain(c);
    expect(core.groupClaimDmaOwner(g, "modern")).toEqual(OK);
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_DMA_API", null)).toEqual(err("EBUSY"));
    core.groupReleaseDmaOwner(g);
    const r = platBed({ defaultDomain: "none" });
    const d = r.dev("d", { resv: [{ start: 0x1000n, length: 0x1000n, prot: 3, type: 0 }] });
    expect(
      r.core.dmaOwnerCompat.deviceSetDmaOwner(d, "DMA_OWNER_PRIVATE_DOMAIN_USER", "vfio"),
    ).toEqual(err("EINVAL"));
  });

  it("USER needs a cookie (EINVAL, WARN); releases of the wrong type WARN; devices without a group need nothing", () => {
    const { compat, ctx, a, g, platform, model } = group();
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN_USER", null)).toEqual(
      err("EINVAL"),
    );
    compat.deviceReleaseDmaOwner(a, "DMA_OWNER_DMA_API");
    expect(compat.deviceSetDmaOwner(a, "DMA_OWNER_DMA_API", null)).toEqual(OK);
    compat.deviceReleaseDmaOwner(a, "DMA_OWNER_PRIVATE_DOMAIN");
    expect(compat.groupState(g).refcount).toBe(1);
    expect(ctx.warnings.list().map((w) => w.site)).toEqual([
      "iommu_device_set_dma_owner",
      "iommu_device_release_dma_owner",
      "iommu_device_release_dma_owner",
    ]);
    const lone = new Device("lone", platform);
    model.deviceAdd(lone);
    expect(compat.deviceSetDmaOwner(lone, "DMA_OWNER_PRIVATE_DOMAIN_USER", "x")).toEqual(OK);
    compat.deviceReleaseDmaOwner(lone, "DMA_OWNER_PRIVATE_DOMAIN_USER");
    expect(compat.toJSON()).toEqual([
      { group: g.id, owner: "DMA_OWNER_DMA_API", cookie: null, refcount: 1 },
    ]);
  });
});
