import { describe, expect, it } from "vitest";
import { err, OK, unwrap } from "../../src/base/result.js";
import { Device, type DeviceDriver } from "../../src/bus/device.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { checkCore } from "../../src/check/invariants.js";
import { MOCK_FLAGS_DEVICE_PASID, MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import { IOMMU_DOMAIN_UNMANAGED } from "../../src/iommu/constants.js";
import { IommuAttachHandle } from "../../src/iommu/domain.js";
import { bed, mockBed, platBed, platformFw, traceFields } from "./setup.js";

function twoDeviceGroup() {
  const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
  const a = b.dev("a", { pasidBits: 8 });
  const c = b.dev("c", { pasidBits: 8 });
  const g = b.core.groupOf(a)!;
  return { ...b, a, c, g };
}

describe("iommu_device_use_default_domain / unuse", () => {
  it("counts kernel DMA-API users with a null owner", () => {
    const { core, a, c, g } = twoDeviceGroup();
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    expect(core.deviceUseDefaultDomain(c)).toEqual(OK);
    expect(g.ownerCnt).toBe(2);
    expect(g.owner).toBeNull();
    expect(core.groupDmaOwnerClaimed(g)).toBe(true);
    core.deviceUnuseDefaultDomain(c);
    core.deviceUnuseDefaultDomain(a);
    expect(core.groupDmaOwnerClaimed(g)).toBe(false);
  });

  it("a device without a group needs nothing (0); a group without a default domain is EPROBE_DEFER", () => {
    const b = bed();
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.deviceUseDefaultDomain(lone)).toEqual(OK);
    b.core.deviceUnuseDefaultDomain(lone);
    // bus_iommu_probe calls probe_finalize of one group's devices before the next group has
    // its default domain: a use_default_domain then races the set-up (EPROBE_DEFER).
    const q = bed();
    const hw = new Device("iommu0", q.platform);
    q.model.deviceAdd(hw);
    const x = new Device("x", q.platform, platformFw("x", hw));
    const y = new Device("y", q.platform, platformFw("y", hw));
    q.model.deviceAdd(x);
    q.model.deviceAdd(y);
    const seen: unknown[] = [];
    const m = new MockIommuDriver(q.core, {
      claimBus: "platform",
      onProbeFinalize: (d) => {
        if (d === x) seen.push(q.core.deviceUseDefaultDomain(y));
      },
    });
    unwrap(m.registerInstance("iommu0", hw));
    expect(seen).toEqual([err("EPROBE_DEFER")]);
    expect(q.core.deviceUseDefaultDomain(y)).toEqual(OK);
  });

  it("EBUSY for a shared group that is owned, off its default domain, or has PASIDs", () => {
    const { core, a, c, g } = twoDeviceGroup();
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    // Off the default domain (a kernel driver attached a private domain).
    const priv = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachGroup(priv, g)).toEqual(OK);
    expect(core.deviceUseDefaultDomain(c)).toEqual(err("EBUSY"));
    core.detachGroup(priv, g);
    // PASIDs attached.
    expect(core.attachDevicePasid(priv, a, 3)).toEqual(OK);
    expect(core.deviceUseDefaultDomain(c)).toEqual(err("EBUSY"));
    core.detachDevicePasid(priv, a, 3);
    expect(core.deviceUseDefaultDomain(c)).toEqual(OK);
    expect(g.ownerCnt).toBe(2);
  });

  it("succeeds with PASIDs attached when nobody uses the group yet", () => {
    const { core, a, g } = twoDeviceGroup();
    const d = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachDevicePasid(d, a, 5)).toEqual(OK);
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    expect(g.ownerCnt).toBe(1);
  });

  it("EBUSY while user space owns the group", () => {
    const { core, a, c } = twoDeviceGroup();
    expect(core.deviceClaimDmaOwner(a, "vfio")).toEqual(OK);
    expect(core.deviceUseDefaultDomain(c)).toEqual(err("EBUSY"));
  });

  it("unuse WARNs and does nothing when unbalanced or with PASIDs attached", () => {
    const { core, ctx, a, g } = twoDeviceGroup();
    core.deviceUnuseDefaultDomain(a);
    expect(g.ownerCnt).toBe(0);
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    const d = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachDevicePasid(d, a, 1)).toEqual(OK);
    core.deviceUnuseDefaultDomain(a);
    expect(g.ownerCnt).toBe(1);
    expect(ctx.warnings.list().map((w) => w.message)).toEqual([
      "owner_cnt is 0",
      "PASIDs still attached",
    ]);
  });
});

describe("claiming and releasing DMA ownership", () => {
  it("a group claim blocks DMA (blocking domain), release returns to the default domain", () => {
    const { core, mock, a, c, g } = twoDeviceGroup();
    const def = g.defaultDomain!;
    const rec = core.ctx.trace.record();
    expect(core.groupClaimDmaOwner(g, "vfio-group")).toEqual(OK);
    expect(g.owner).toBe("vfio-group");
    expect(g.ownerCnt).toBe(1);
    expect(g.domain).toBe(mock.blockedDomain);
    expect(mock.ridDomain(a)).toBe(mock.blockedDomain);
    expect(mock.ridDomain(c)).toBe(mock.blockedDomain);
    core.groupReleaseDmaOwner(g);
    expect(g.domain).toBe(def);
    expect(g.owner).toBeNull();
    expect(g.ownerCnt).toBe(0);
    expect(traceFields(rec.stop(), "iommu_core:dma_owner")).toEqual([
      { gid: g.id, op: "claim_group", owner_cnt: 1, owner: "vfio-group" },
      { gid: g.id, op: "release_group", owner_cnt: 0, owner: null },
    ]);
  });

  it("without a static blocked domain the blocking domain is an empty paging domain", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(b.core.deviceClaimDmaOwner(d, "ictx")).toEqual(OK);
    expect(g.blockingDomain!.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    expect(b.mock.ridDomain(d)).toBe(g.blockingDomain);
    expect(b.core.iovaToPhys(g.blockingDomain!, 0x1000n)).toBe(0n);
  });

  it("claim errors: EINVAL (WARN) for a null owner, EPERM when used, ENODEV without a group", () => {
    const { core, ctx, a, g } = twoDeviceGroup();
    expect(core.groupClaimDmaOwner(g, null)).toEqual(err("EINVAL"));
    expect(core.deviceClaimDmaOwner(a, null)).toEqual(err("EINVAL"));
    expect(ctx.warnings.count).toBe(2);
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    // KERNEL state: the owner is null, so any claim is EPERM.
    expect(core.groupClaimDmaOwner(g, "vfio")).toEqual(err("EPERM"));
    expect(core.deviceClaimDmaOwner(a, "ictx")).toEqual(err("EPERM"));
    const b = bed();
    const lone = new Device("lone", b.platform);
    b.model.deviceAdd(lone);
    expect(b.core.deviceClaimDmaOwner(lone, "x")).toEqual(err("ENODEV"));
  });

  it("device claims with the same cookie count up; another cookie or a group claim is EPERM", () => {
    const { core, a, c, g } = twoDeviceGroup();
    expect(core.deviceClaimDmaOwner(a, "ictx")).toEqual(OK);
    expect(core.deviceClaimDmaOwner(c, "ictx")).toEqual(OK);
    expect(g.ownerCnt).toBe(2);
    expect(core.deviceClaimDmaOwner(c, "other")).toEqual(err("EPERM"));
    expect(core.groupClaimDmaOwner(g, "ictx")).toEqual(err("EPERM"));
    core.deviceReleaseDmaOwner(c);
    expect(g.ownerCnt).toBe(1);
    expect(g.owner).toBe("ictx");
    core.deviceReleaseDmaOwner(a);
    expect(g.ownerCnt).toBe(0);
    expect(g.domain).toBe(g.defaultDomain);
  });

  it("EBUSY when the group is off its default domain or has PASIDs", () => {
    const { core, a, g } = twoDeviceGroup();
    const d = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachGroup(d, g)).toEqual(OK);
    expect(core.groupClaimDmaOwner(g, "vfio")).toEqual(err("EBUSY"));
    core.detachGroup(d, g);
    expect(core.attachDevicePasid(d, a, 2)).toEqual(OK);
    expect(core.deviceClaimDmaOwner(a, "vfio")).toEqual(err("EBUSY"));
    // Group attach handles live at PASID 0 and count too.
    core.detachDevicePasid(d, a, 2);
    expect(core.attachGroupHandle(d, g, new IommuAttachHandle())).toEqual(OK);
    expect(core.groupClaimDmaOwner(g, "vfio")).toEqual(err("EBUSY"));
  });

  it("allocation and attach failures leave the state unchanged", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    b.mock.faults.arm({ op: "alloc", nth: 1, errno: "ENOMEM" });
    expect(b.core.deviceClaimDmaOwner(d, "x")).toEqual(err("ENOMEM"));
    expect(g.ownerCnt).toBe(0);
    b.mock.faults.arm({ op: "attach_dev", nth: 1, errno: "EIO" });
    expect(b.core.deviceClaimDmaOwner(d, "x")).toEqual(err("EIO"));
    expect(g.ownerCnt).toBe(0);
    expect(g.owner).toBeNull();
    expect(g.domain).toBe(g.defaultDomain);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("devices with firmware direct mappings can never be claimed (EINVAL)", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d", {
      resv: [{ start: 0x1000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.DIRECT }],
    });
    expect(b.core.deviceClaimDmaOwner(d, "vfio")).toEqual(err("EINVAL"));
    expect(b.core.groupOf(d)!.ownerCnt).toBe(0);
  });

  it("release WARNs and does nothing when not owned or with PASIDs attached", () => {
    const { core, ctx, a, g } = twoDeviceGroup();
    core.groupReleaseDmaOwner(g);
    expect(core.deviceUseDefaultDomain(a)).toEqual(OK);
    core.groupReleaseDmaOwner(g);
    expect(g.ownerCnt).toBe(1);
    core.deviceUnuseDefaultDomain(a);
    expect(core.deviceClaimDmaOwner(a, "vfio")).toEqual(OK);
    const d = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachDevicePasid(d, a, 9)).toEqual(OK);
    core.deviceReleaseDmaOwner(a);
    expect(g.owner).toBe("vfio");
    expect(ctx.warnings.list().map((w) => w.message)).toEqual([
      "owner_cnt is 0",
      "no owner",
      "PASIDs still attached",
    ]);
  });

  it("an owner may attach its domain over the blocking one and detach back to blocking", () => {
    const { core, mock, a, g } = twoDeviceGroup();
    expect(core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    const d = unwrap(core.pagingDomainAlloc(a));
    expect(core.attachGroup(d, g)).toEqual(OK);
    expect(mock.ridDomain(a)).toBe(d);
    core.detachGroup(d, g);
    expect(g.domain).toBe(g.blockingDomain);
    core.groupReleaseDmaOwner(g);
    expect(g.domain).toBe(g.defaultDomain);
    expect(checkCore(core, { drivers: [mock] })).toEqual([]);
  });

  it("a device hot-added to an owned group lands on the blocking domain", () => {
    const { core, mock, g, dev } = twoDeviceGroup();
    expect(core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    const e = dev("e");
    expect(mock.ridDomain(e)).toBe(g.blockingDomain);
    // One with firmware direct mappings cannot join it: the blocking domain refuses it (EINVAL)
    // and its probe is undone.
    const r = dev("r", {
      resv: [{ start: 0x1000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.DIRECT }],
    });
    expect(r.iommuGroup).toBeNull();
    expect(r.iommu).toBeNull();
    expect(g.devices.map((x) => x.dev.name)).toEqual(["a", "c", "e"]);
    expect(mock.log).toContain("release_device r");
    expect(
      core.logs().some((l) => l.device === "r" && l.message.startsWith("Firmware has requested")),
    ).toBe(true);
    expect(checkCore(core, { drivers: [mock] })).toEqual([]);
  });
});

describe("the driver core drives DMA ownership", () => {
  it("binding a DMA-API driver counts a kernel user; driver_managed_dma does not; unbind uncounts", () => {
    const b = platBed({ deviceGroup: "single" });
    const a = b.dev("a");
    const c = b.dev("c");
    const g = b.core.groupOf(a)!;
    const dmaDrv: DeviceDriver = { name: "nic", bus: b.platform, match: (d) => d.name === "a" };
    const vfio: DeviceDriver = { name: "vfio-platform", bus: b.platform, driverManagedDma: true };
    b.model.driverRegister(dmaDrv);
    b.model.driverRegister(vfio);
    expect(g.ownerCnt).toBe(1);
    // VFIO binds without counting, then its group claim is refused: a kernel driver is bound.
    expect(b.model.deviceDriverAttach(vfio, c)).toEqual(OK);
    expect(g.ownerCnt).toBe(1);
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(err("EPERM"));
    b.model.deviceReleaseDriver(a);
    expect(g.ownerCnt).toBe(0);
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    // Now a DMA-API driver cannot bind to the other device of the owned group.
    expect(b.model.deviceDriverAttach(dmaDrv, a)).toEqual(err("EBUSY"));
    expect(a.driver).toBeNull();
  });

  it("a driver that fails probe gives its count back", () => {
    const b = platBed();
    const a = b.dev("a");
    const drv: DeviceDriver = { name: "bad", bus: b.platform, probe: () => err("EIO") };
    b.model.driverRegister(drv);
    expect(b.model.deviceDriverAttach(drv, a)).toEqual(err("EIO"));
    expect(b.core.groupOf(a)!.ownerCnt).toBe(0);
  });

  it("mock-bus drivers never touch ownership (no dma_configure), so iommufd can claim", () => {
    const b = mockBed();
    const d = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    const drv: DeviceDriver = { name: "selftest", bus: b.mockBus, match: () => true };
    b.model.driverRegister(drv);
    expect(d.driver).toBe(drv);
    expect(b.core.groupOf(d)!.ownerCnt).toBe(0);
    expect(b.core.deviceClaimDmaOwner(d, "ictx")).toEqual(OK);
  });
});
