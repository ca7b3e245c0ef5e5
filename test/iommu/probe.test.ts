import { describe, expect, it } from "vitest";
import { err, OK, ok, unwrap } from "../../src/base/result.js";
import { Device, type DeviceDriver } from "../../src/bus/device.js";
import { IOMMU_RESV } from "../../src/bus/firmware.js";
import { createPciBus, pciScanHost } from "../../src/bus/pci-dev.js";
import { checkCore } from "../../src/check/invariants.js";
import { MOCK_FLAGS_DEVICE_PASID, MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import { PciHost } from "../../src/hw/pci/host.js";
import { pciDevid } from "../../src/hw/pci/regs.js";
import {
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
} from "../../src/iommu/constants.js";
import { IommuDomain } from "../../src/iommu/domain.js";
import { IommuDevice, type IommuOps } from "../../src/iommu/ops.js";
import { bed, mockBed, platBed, platformFw, traceFields } from "./setup.js";

describe("device probe and release", () => {
  it("emits add/remove_device_to_group with the group id and device name; ids are lowest-free and reused", () => {
    const b = mockBed();
    const rec = b.ctx.trace.record();
    const d0 = unwrap(b.mock.mockDevCreate());
    const d1 = unwrap(b.mock.mockDevCreate());
    expect(b.core.groupOf(d0)!.id).toBe(0);
    expect(b.core.groupOf(d1)!.id).toBe(1);
    b.mock.mockDevDestroy(d0);
    const d2 = unwrap(b.mock.mockDevCreate());
    expect(b.core.groupOf(d2)!.id).toBe(0);
    const r = rec.stop();
    expect(traceFields(r, "iommu:add_device_to_group")).toEqual([
      { gid: 0, device: "iommufd_mock0" },
      { gid: 1, device: "iommufd_mock1" },
      { gid: 0, device: "iommufd_mock0" },
    ]);
    expect(traceFields(r, "iommu:remove_device_from_group")).toEqual([
      { gid: 0, device: "iommufd_mock0" },
    ]);
    expect(d0.iommuGroup).toBeNull();
    expect(d0.iommu).toBeNull();
  });

  it("hot-plug probe sets the default domain up at once and calls probe_finalize", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(g.defaultDomain?.type).toBe(IOMMU_DOMAIN_DMA);
    expect(g.domain).toBe(g.defaultDomain);
    expect(b.mock.ridDomain(d)).toBe(g.defaultDomain);
    expect(b.mock.log.slice(-2)).toEqual([
      `attach_dev d ${g.defaultDomain!.id}`,
      "probe_finalize d",
    ]);
    expect(d.dmaIommu).toBe(true);
  });

  it("release clears dma_iommu (iommu_deinit_device): the DMA API of a released device is direct", () => {
    const b = platBed({ defaultDomain: "none" });
    const d = b.dev("d");
    expect(d.dmaIommu).toBe(true);
    b.model.deviceDel(d);
    expect(d.iommuGroup).toBeNull();
    expect(d.dmaIommu).toBe(false);
    // Also when the IOMMU goes away under a registered device.
    const e = b.dev("e");
    expect(e.dmaIommu).toBe(true);
    b.core.deviceUnregister(b.inst);
    expect(e.registered).toBe(true);
    expect(e.dmaIommu).toBe(false);
  });

  it("the last device leaving frees the default and blocking domains; static domains survive", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    const def = g.defaultDomain!;
    expect(b.core.deviceClaimDmaOwner(d, "vfio")).toEqual(OK);
    const blocking = g.blockingDomain!;
    expect(blocking.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    b.core.deviceReleaseDmaOwner(d);
    const rec = b.ctx.trace.record();
    b.model.deviceDel(d);
    expect(def.freed).toBe(true);
    expect(blocking.freed).toBe(true);
    expect(g.released).toBe(true);
    expect(traceFields(rec.stop(), "iommu_core:domain_free").map((f) => f.domain)).toEqual([
      def.id,
      blocking.id,
    ]);
    const m = mockBed();
    const md = unwrap(m.mock.mockDevCreate());
    m.mock.mockDevDestroy(md);
    expect(m.mock.blockedDomain!.freed).toBe(false);
    expect(m.core.domains()).toContain(m.mock.blockedDomain);
  });

  it("the last device leaving an owned group, or one off its default domain, WARNs — and the core domains still go", () => {
    const b = platBed({ defaultDomain: "none", staticBlocked: false });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    const def = g.defaultDomain!;
    expect(b.core.deviceClaimDmaOwner(d, "vfio")).toEqual(OK);
    const blocking = g.blockingDomain!;
    b.model.deviceDel(d);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["__iommu_group_free_device"]);
    expect(def.freed).toBe(true);
    expect(blocking.freed).toBe(true);
    expect(g.domain).toBeNull();
    // Unowned but on a user domain: WARN too; the user's domain is the user's to free.
    const e = b.dev("e");
    const user = unwrap(b.core.pagingDomainAlloc(e));
    expect(b.core.attachDevice(user, e)).toEqual(OK);
    b.model.deviceDel(e);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["__iommu_group_free_device"]);
    expect(user.freed).toBe(false);
    // On its default domain but still counted as used by a kernel driver: WARN.
    const k = b.dev("k");
    expect(b.core.deviceUseDefaultDomain(k)).toEqual(OK);
    b.model.deviceDel(k);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["__iommu_group_free_device"]);
    // A member leaving a group that keeps devices is no reason to WARN.
    const s = platBed({ defaultDomain: "none", deviceGroup: "single" });
    const x = s.dev("x");
    s.dev("y");
    expect(s.core.deviceClaimDmaOwner(x, "vfio")).toEqual(OK);
    s.model.deviceDel(x);
    expect(s.ctx.warnings.list()).toEqual([]);
  });

  it("bus_iommu_probe defers default-domain set-up so the type accounts for the whole group", () => {
    // Devices exist before the IOMMU: the group's type combines both drivers' wishes.
    const b = bed();
    const iommuDev = new Device("iommu0", b.platform);
    b.model.deviceAdd(iommuDev);
    const a = new Device("a", b.platform, platformFw("a", iommuDev));
    const c = new Device("c", b.platform, platformFw("c", iommuDev));
    b.model.deviceAdd(a);
    b.model.deviceAdd(c);
    expect(a.iommuGroup).toBeNull();
    const mock = new MockIommuDriver(b.core, {
      claimBus: "platform",
      defaultDomain: "none",
      staticIdentity: true,
      deviceGroup: "single",
      defDomainType: (d) => (d.name === "a" ? IOMMU_DOMAIN_DMA : IOMMU_DOMAIN_IDENTITY),
    });
    unwrap(mock.registerInstance("iommu0", iommuDev));
    const g = b.core.groupOf(a)!;
    expect(g).toBe(b.core.groupOf(c));
    // IDENTITY wins a conflict; the driver error is logged.
    expect(g.defaultDomain).toBe(mock.identityDomain);
    expect(b.core.logs().some((l) => l.message.includes("conflicting def_domain_type"))).toBe(true);
    // probe_finalize of every member comes after the set-up.
    expect(mock.log.filter((l) => l.startsWith("probe_finalize"))).toEqual([
      "probe_finalize a",
      "probe_finalize c",
    ]);

    // Hot-plug instead: the first device decides alone, the second joins the live group.
    const h = platBed({
      defaultDomain: "none",
      staticIdentity: true,
      deviceGroup: "single",
      defDomainType: (d) => (d.name === "a" ? IOMMU_DOMAIN_DMA : IOMMU_DOMAIN_IDENTITY),
    });
    const ha = h.dev("a");
    h.dev("c");
    expect(h.core.groupOf(ha)!.defaultDomain!.type).toBe(IOMMU_DOMAIN_DMA);
  });

  it("a device joining a live group attaches to its current domain: owned → blocking, user domain → that domain", () => {
    const b = platBed({ deviceGroup: "single", defaultDomain: "none" });
    const a = b.dev("a");
    const g = b.core.groupOf(a)!;
    expect(b.core.groupClaimDmaOwner(g, "vfio")).toEqual(OK);
    const c = b.dev("c");
    expect(b.mock.ridDomain(c)).toBe(b.mock.blockedDomain);
    const user = unwrap(b.core.pagingDomainAlloc(a));
    expect(b.core.attachGroup(user, g)).toEqual(OK);
    const e = b.dev("e");
    expect(b.mock.ridDomain(e)).toBe(user);
    expect(g.devices.map((x) => x.dev.name)).toEqual(["a", "c", "e"]);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("a failed attach while joining a live group undoes the probe", () => {
    const b = platBed({ deviceGroup: "single" });
    const a = b.dev("a");
    b.mock.faults.arm({
      op: "attach_dev",
      nth: 1,
      errno: "EIO",
      filter: (i) => i.dev?.name === "x",
    });
    const x = b.dev("x");
    expect(x.iommuGroup).toBeNull();
    expect(x.iommu).toBeNull();
    expect(b.core.groupOf(a)!.devices.map((d) => d.dev)).toEqual([a]);
    expect(b.mock.log).toContain("release_device x");
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("probe errors: device_group failure propagates, a NULL group is EINVAL with a WARN", () => {
    const b = mockBed();
    b.mock.faults.arm({ op: "device_group", nth: 1, errno: "ENOMEM" });
    expect(b.mock.mockDevCreate()).toEqual(ok(expect.anything()));
    // The device exists but was not probed.
    const probed = b.mockBus.devices().filter((d) => d.iommuGroup !== null);
    expect(probed).toEqual([]);
    // The failed probe freed dev->iommu and the fwspec with it: the mock bus has no
    // dma_configure to replay, so the device cannot be probed again.
    const d = b.mockBus.devices()[0]!;
    expect(d.iommu).toBeNull();
    expect(b.core.probeDevice(d)).toEqual(err("ENODEV"));

    const n = bed();
    const inst = new IommuDevice("nullgroup");
    const ops: IommuOps = {
      name: "nullgroup",
      defaultDomainOps: {},
      probeDevice: () => ok(inst),
      deviceGroup: () => null,
    };
    expect(n.core.deviceRegister(inst, ops, null)).toEqual(OK);
    const dev = new Device("p", n.platform);
    n.model.deviceAdd(dev);
    expect(n.core.probeDevice(dev)).toEqual(err("EINVAL"));
    expect(n.ctx.warnings.list().map((w) => w.site)).toContain("iommu_init_device");
    expect(dev.iommu).toBeNull();
  });

  it("bus scan ignores ENODEV devices but aborts registration on other errors", () => {
    const b = bed();
    const iommuDev = new Device("iommu0", b.platform);
    b.model.deviceAdd(iommuDev);
    b.model.deviceAdd(new Device("a", b.platform, platformFw("a", iommuDev)));
    b.model.deviceAdd(new Device("stranger", b.platform));
    const mock = new MockIommuDriver(b.core, { claimBus: "platform" });
    mock.faults.arm({ op: "probe_device", nth: 2, errno: "EIO" });
    b.model.deviceAdd(new Device("b", b.platform, platformFw("b", iommuDev)));
    expect(mock.registerInstance("iommu0", iommuDev)).toEqual(err("EIO"));
    expect(b.core.iommuDevices()).toEqual([]);
    expect(b.platform.devices().every((d) => d.iommuGroup === null && d.iommu === null)).toBe(true);
    expect(b.core.groups()).toEqual([]);
    const again = new MockIommuDriver(b.core, { claimBus: "platform" });
    unwrap(again.registerInstance("iommu0", iommuDev));
    const probed = b.platform
      .devices()
      .filter((d) => d.iommuGroup !== null)
      .map((d) => d.name);
    expect(probed).toEqual(["a", "b"]);
  });

  it("max_pasids: pasid-num-bits 0 gives 1, absent gives 0, clamped to the instance", () => {
    const b = platBed({ maxPasids: 256 });
    expect(b.dev("zero", { pasidBits: 0 }).iommu!.maxPasids).toBe(1);
    expect(b.dev("none").iommu!.maxPasids).toBe(0);
    expect(b.dev("wide", { pasidBits: 20 }).iommu!.maxPasids).toBe(256);
    expect(b.dev("narrow", { pasidBits: 4 }).iommu!.maxPasids).toBe(16);
    const m = mockBed();
    expect(unwrap(m.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID)).iommu!.maxPasids).toBe(1 << 20);
    expect(unwrap(m.mock.mockDevCreate()).iommu!.maxPasids).toBe(1);
  });

  it("attach-deferred devices skip the default domain until first use", () => {
    const b = platBed({ defaultDomain: "none", attachDeferred: true });
    const d = b.dev("d");
    const g = b.core.groupOf(d)!;
    expect(d.iommu!.attachDeferred).toBe(true);
    expect(g.domain).toBe(g.defaultDomain);
    expect(b.mock.ridDomain(d)).toBeUndefined();
    expect(b.core.deferredAttach(d, g.defaultDomain!)).toEqual(OK);
    expect(b.mock.ridDomain(d)).toBe(g.defaultDomain);
    expect(d.iommu!.attachDeferred).toBe(false);
    // A second call does nothing.
    const n = b.mock.log.length;
    expect(b.core.deferredAttach(d, g.defaultDomain!)).toEqual(OK);
    expect(b.mock.log.length).toBe(n);
    // Attaching another domain clears a deferral too.
    const e = b.dev("e");
    const user = unwrap(b.core.pagingDomainAlloc(e));
    expect(b.core.attachDevice(user, e)).toEqual(OK);
    expect(e.iommu!.attachDeferred).toBe(false);
    expect(b.mock.ridDomain(e)).toBe(user);
  });

  it("release parks the device on release_domain before release_device (v6.16: even a require_direct device)", () => {
    const b = platBed({
      releaseDomain: "blocked",
      staticIdentity: true,
      defaultDomain: "identity",
    });
    const d = b.dev("d");
    b.mock.log.length = 0;
    b.model.deviceDel(d);
    expect(b.mock.log).toEqual([`attach_dev d ${b.mock.blockedDomain!.id}`, "release_device d"]);
    const r = b.dev("r", {
      resv: [{ start: 0x1000_0000n, length: 0x1000n, prot: 3, type: IOMMU_RESV.DIRECT }],
    });
    expect(r.iommu!.requireDirect).toBe(true);
    b.mock.log.length = 0;
    const rec = b.ctx.trace.record();
    b.model.deviceDel(r);
    expect(b.mock.log).toEqual([`attach_dev r ${b.mock.blockedDomain!.id}`, "release_device r"]);
    // The release domain goes straight to the driver: no attach_device_to_domain.
    expect(traceFields(rec.stop(), "iommu:attach_device_to_domain")).toEqual([]);
    // An attach-deferred device that never attached is not touched at release.
    const lazy = platBed({ releaseDomain: "blocked", attachDeferred: true, defaultDomain: "none" });
    const l = lazy.dev("l");
    lazy.mock.log.length = 0;
    lazy.model.deviceDel(l);
    expect(lazy.mock.log).toEqual(["release_device l"]);
  });

  it("warns about a late probe of a device that already has a driver", () => {
    const b = bed();
    const dev = new Device("early", b.platform);
    b.model.deviceAdd(dev);
    const drv: DeviceDriver = { name: "drv", bus: b.platform, match: () => true };
    b.model.driverRegister(drv);
    expect(dev.driver).toBe(drv);
    const mock = new MockIommuDriver(b.core, { claimBus: "platform" });
    // No hwdev: the instance's fwnode is NULL and matches devices without an iommus link.
    unwrap(mock.registerInstance("legacy", null));
    expect(dev.iommuGroup).not.toBeNull();
    expect(
      b.ctx.warnings
        .list()
        .some((w) => w.site === "__iommu_probe_device" && w.message.includes("late IOMMU probe")),
    ).toBe(true);
  });

  it("a driver bound before its firmware-linked IOMMU registers is deferred, then bound and counted", () => {
    const b = bed();
    const iommuDev = new Device("iommu0", b.platform);
    b.model.deviceAdd(iommuDev);
    const dev = new Device("dsa", b.platform, platformFw("dsa", iommuDev));
    b.model.deviceAdd(dev);
    const drv: DeviceDriver = { name: "dsa-drv", bus: b.platform, match: (d) => d.name === "dsa" };
    b.model.driverRegister(drv);
    expect(dev.driver).toBeNull();
    expect(b.model.deferredDevices()).toEqual([dev]);
    const mock = new MockIommuDriver(b.core, { claimBus: "platform" });
    unwrap(mock.registerInstance("iommu0", iommuDev));
    b.ctx.scheduler.settle();
    expect(dev.driver).toBe(drv);
    expect(b.core.groupOf(dev)!.ownerCnt).toBe(1);
    // The fwspec carries the firmware IDs (of_iommu_xlate).
    expect(dev.iommu!.fwspec).toEqual({ iommuFwnode: iommuDev.fw.node, ids: [0] });
    b.model.deviceReleaseDriver(dev);
    expect(b.core.groupOf(dev)!.ownerCnt).toBe(0);
  });

  it("dma_configure gives a PCI function a fwspec with its RID and DMA aliases as IDs", () => {
    const b = bed();
    // A PCI bus the core has no notifier on: only dma_configure (driver bind) probes.
    const pci = createPciBus();
    b.model.busRegister(pci);
    const iommuDev = new Device("iommu0", b.platform);
    b.model.deviceAdd(iommuDev);
    const mock = new MockIommuDriver(b.core, { claimBus: "pci", deviceGroup: "pci" });
    unwrap(mock.registerInstance("iommu0", iommuDev));
    const host = new PciHost(b.ctx);
    host
      .addRootPort({ name: "rp", acs: true })
      .addPcieToPciBridge({ name: "br" })
      .addEndpoint({ name: "old", slot: 1 });
    host.enumerate();
    pciScanHost(b.model, pci, host, { iommu: iommuDev.fw.node });
    const old = pci.pciDevOf(host.function("old"))!;
    expect(old.iommu).toBeNull();
    const drv: DeviceDriver = { name: "old-drv", bus: pci, match: (d) => d === old };
    b.model.driverRegister(drv);
    expect(old.driver).toBe(drv);
    const brFn = host.function("br");
    // of_pci_iommu_init per alias: its own RID, then the bridge's (secondary bus, 00.0).
    const ids = [host.function("old").rid, pciDevid(brFn.config.peek(0x19, 1), 0)];
    expect(old.iommu!.fwspec).toEqual({ iommuFwnode: iommuDev.fw.node, ids });
    expect(b.core.groupOf(old)!.ownerCnt).toBe(1);
  });

  it("links devices of two buses sharing a group under distinct names", () => {
    const b = platBed({ deviceGroup: "single", claimBus: null });
    b.dev("x");
    const other = new Device("x", b.mockBus, platformFw("x", b.iommuDev));
    b.model.deviceAdd(other);
    // The mock bus carries no core notifier here: probe it directly (fwspec from firmware).
    expect(b.core.probeDevice(other)).toEqual(OK);
    expect(b.core.groupOf(other)!.devices.map((d) => d.name)).toEqual(["x", "x.0"]);
  });

  it("iommu_mock_device_add before the instance exists is EPROBE_DEFER", () => {
    const b = bed();
    const mock = new MockIommuDriver(b.core);
    const orphan = new Device("orphan", b.mockBus);
    expect(b.core.mockDeviceAdd(orphan, new IommuDevice("ghost"))).toEqual(err("EPROBE_DEFER"));
    unwrap(mock.registerBus(b.mockBus));
    expect(orphan.registered).toBe(false);
  });

  it("unregistering an instance releases its devices and drops the singleton group", () => {
    const b = platBed({ deviceGroup: "single" });
    const a = b.dev("a");
    b.dev("c");
    const g = b.core.groupOf(a)!;
    expect(g.refs).toBe(3);
    b.mock.unregister(b.inst);
    expect(a.iommuGroup).toBeNull();
    expect(g.released).toBe(true);
    expect(b.core.groups()).toEqual([]);
    expect(b.core.iommuDevices()).toEqual([]);
  });

  it("a singleton group outlives its devices until the instance goes", () => {
    const b = platBed({ deviceGroup: "single" });
    const a = b.dev("a");
    const g = b.core.groupOf(a)!;
    b.model.deviceDel(a);
    expect(g.released).toBe(false);
    expect(g.devices).toEqual([]);
    expect(g.domain).toBeNull();
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
    const c = b.dev("c");
    expect(b.core.groupOf(c)).toBe(g);
  });

  it("resolves every allocation through the device's own instance when several drivers coexist (seed 000)", () => {
    const b = bed();
    const hwA = new Device("iommuA", b.platform);
    const hwB = new Device("iommuB", b.platform);
    b.model.deviceAdd(hwA);
    b.model.deviceAdd(hwB);
    const drvA = new MockIommuDriver(b.core, {
      name: "A",
      claimBus: "platform",
      defaultDomain: "none",
    });
    const drvB = new MockIommuDriver(b.core, {
      name: "B",
      claimBus: "platform",
      defaultDomain: "none",
      pgsizeBitmap: (1n << 12n) | (1n << 21n),
    });
    unwrap(drvA.registerInstance("iommuA", hwA));
    unwrap(drvB.registerInstance("iommuB", hwB));
    const a = new Device("a", b.platform, platformFw("a", hwA));
    const c = new Device("c", b.platform, platformFw("c", hwB));
    b.model.deviceAdd(a);
    b.model.deviceAdd(c);
    const da = unwrap(b.core.pagingDomainAlloc(a));
    const dc = unwrap(b.core.pagingDomainAlloc(c));
    expect(da.owner).toBe(drvA.ops);
    expect(dc.owner).toBe(drvB.ops);
    expect(dc.pgsizeBitmap).toBe((1n << 12n) | (1n << 21n));
    // A domain of one instance's driver is incompatible with the other's devices.
    expect(b.core.attachDevice(da, c)).toEqual(err("EINVAL"));
    expect(b.core.attachDevice(dc, a)).toEqual(err("EINVAL"));
    expect(b.core.attachDevicePasid(drvA.blockedDomain!, c, 1)).toEqual(err("EINVAL"));
    expect(b.core.attachDevice(da, a)).toEqual(OK);
    expect(checkCore(b.core, { drivers: [drvA, drvB] })).toEqual([]);
  });

  it("refuses misuse of the registration API", () => {
    const b = mockBed();
    expect(() => b.core.deviceRegister(b.inst, b.mock.ops, null)).toThrow(/already registered/);
    const dom = new IommuDomain({});
    expect(dom.id).toBe(-1);
  });
});
