import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { checkCore } from "../../src/check/invariants.js";
import type { IommuDmaOwner } from "../../src/iommu/dma-owner-compat.js";
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

type CompatOp =
  | { k: "set"; s: number; t: IommuDmaOwner; c: number | null }
  | { k: "release"; s: number; t: IommuDmaOwner };

const TYPES: readonly IommuDmaOwner[] = [
  "DMA_OWNER_DMA_API",
  "DMA_OWNER_PRIVATE_DOMAIN",
  "DMA_OWNER_PRIVATE_DOMAIN_USER",
];
const typeArb = fc.constantFrom(...TYPES);
const compatOpArb: fc.Arbitrary<CompatOp> = fc.oneof(
  fc.record({
    k: fc.constant("set" as const),
    s: fc.nat({ max: 1 }),
    t: typeArb,
    c: fc.option(fc.nat({ max: 1 }), { nil: null, freq: 6 }),
  }),
  fc.record({ k: fc.constant("release" as const), s: fc.nat({ max: 1 }), t: typeArb }),
);

test.prop([fc.array(compatOpArb, { maxLength: 30 })], { numRuns: 200 })(
  "the compat layer follows the seed-004 state machine and keeps the modern state in step",
  (ops) => {
    const b = group();
    const devs = [b.a, b.c];
    const cookies = ["vfio", "drv"];
    let st: { owner: IommuDmaOwner | "DMA_OWNER_NONE"; cookie: string | null; refcount: number } = {
      owner: "DMA_OWNER_NONE",
      cookie: null,
      refcount: 0,
    };
    for (const op of ops) {
      const warns = b.ctx.warnings.count;
      if (op.k === "set") {
        const cookie = op.c === null ? null : cookies[op.c]!;
        const r = b.compat.deviceSetDmaOwner(devs[op.s]!, op.t, cookie);
        if (op.t === "DMA_OWNER_PRIVATE_DOMAIN_USER" && cookie === null) {
          expect(r).toEqual(err("EINVAL"));
          expect(b.ctx.warnings.count).toBe(warns + 1);
        } else if (st.refcount === 0) {
          expect(r).toEqual(OK);
          st = { owner: op.t, cookie, refcount: 1 };
        } else if (st.owner === op.t && st.cookie === cookie) {
          expect(r).toEqual(OK);
          st = { ...st, refcount: st.refcount + 1 };
        } else {
          expect(r).toEqual(err("EBUSY"));
        }
      } else {
        b.compat.deviceReleaseDmaOwner(devs[op.s]!, op.t);
        if (st.refcount === 0 || st.owner !== op.t) {
          expect(b.ctx.warnings.count).toBe(warns + 1);
        } else {
          st =
            st.refcount === 1
              ? { owner: "DMA_OWNER_NONE", cookie: null, refcount: 0 }
              : { ...st, refcount: st.refcount - 1 };
        }
      }
      expect(b.compat.groupState(b.g)).toEqual(st);
      // The modern state underneath: the compat owner counts once; USER means blocking.
      const user = st.owner === "DMA_OWNER_PRIVATE_DOMAIN_USER";
      expect(b.g.ownerCnt).toBe(st.refcount > 0 ? 1 : 0);
      expect(b.g.owner).toBe(user ? st.cookie : null);
      expect(b.g.domain).toBe(user ? b.g.blockingDomain : b.g.defaultDomain);
      expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
    }
  },
);
