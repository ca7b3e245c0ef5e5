import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { SimError } from "../../src/base/errors.js";
import { err, OK, type Result } from "../../src/base/result.js";
import {
  type BusNotifyAction,
  BusType,
  Device,
  type DeviceDriver,
  type IommuDmaHooks,
} from "../../src/bus/device.js";
import { DeviceModel } from "../../src/bus/driver-core.js";
import { FirmwareDescription, FwNode, IOMMU_RESV } from "../../src/bus/firmware.js";
import { createMockBus, createPlatformBus } from "../../src/bus/platform.js";

/** A device model with the platform bus and IOMMU hooks that log what the driver core calls. */
function setup(hooks: Partial<IommuDmaHooks> = {}) {
  const ctx = createContext();
  const model = new DeviceModel(ctx);
  const platform = createPlatformBus();
  model.busRegister(platform);
  const calls: string[] = [];
  model.setIommuHooks({
    configure: (dev) => {
      calls.push(`configure ${dev.name}`);
      return hooks.configure?.(dev) ?? OK;
    },
    useDefaultDomain: (dev) => {
      calls.push(`use ${dev.name}`);
      return hooks.useDefaultDomain?.(dev) ?? OK;
    },
    unuseDefaultDomain: (dev) => {
      calls.push(`unuse ${dev.name}`);
    },
  });
  return { ctx, model, platform, calls };
}

function driver(
  bus: BusType,
  calls: string[],
  opts: { name?: string; managed?: boolean; probe?: (d: Device) => Result; match?: boolean } = {},
): DeviceDriver {
  const name = opts.name ?? "drv";
  return {
    name,
    bus,
    driverManagedDma: opts.managed ?? false,
    ...(opts.match === false ? {} : { match: () => true }),
    probe: (d) => {
      calls.push(`probe ${d.name}`);
      return opts.probe?.(d) ?? OK;
    },
    remove: (d) => {
      calls.push(`remove ${d.name}`);
    },
  };
}

describe("device model: add, remove, notifiers", () => {
  it("notifies ADD_DEVICE before probing drivers, and REMOVED_DEVICE after unbinding", () => {
    const { model, platform, calls } = setup();
    const events: string[] = [];
    platform.registerNotifier((a: BusNotifyAction, d) => events.push(`${a} ${d.name}`));
    model.driverRegister(driver(platform, calls));
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    expect(events).toEqual(["ADD_DEVICE dev0", "BIND_DRIVER dev0", "BOUND_DRIVER dev0"]);
    expect(dev.driver?.name).toBe("drv");
    events.length = 0;
    model.deviceDel(dev);
    expect(events).toEqual([
      "DEL_DEVICE dev0",
      "UNBIND_DRIVER dev0",
      "UNBOUND_DRIVER dev0",
      "REMOVED_DEVICE dev0",
    ]);
    expect(dev.driver).toBeNull();
    expect(dev.registered).toBe(false);
    expect(platform.devices()).toEqual([]);
  });

  it("refuses misuse: double add, unregistered bus, duplicate names", () => {
    const { model, platform } = setup();
    const dev = new Device("d", platform);
    model.deviceAdd(dev);
    expect(() => model.deviceAdd(dev)).toThrow(SimError);
    expect(() => model.deviceAdd(new Device("d", platform))).toThrow(/already has a device/);
    expect(() => model.deviceAdd(new Device("x", new BusType("nowhere")))).toThrow(
      /not registered/,
    );
    expect(() => model.deviceDel(new Device("y", platform))).toThrow(/not registered/);
  });

  it("bus_for_each_dev stops at the first non-zero return", () => {
    const { model, platform } = setup();
    for (const n of ["a", "b", "c"]) model.deviceAdd(new Device(n, platform));
    const seen: string[] = [];
    const r = platform.forEachDev((d) => {
      seen.push(d.name);
      return d.name === "b" ? "stop" : 0;
    });
    expect(r).toBe("stop");
    expect(seen).toEqual(["a", "b"]);
  });
});

describe("device model: really_probe and dma_configure", () => {
  it("platform dma_configure: firmware configure, then use_default_domain, before the driver probes", () => {
    const { model, platform, calls } = setup();
    model.deviceAdd(new Device("dev0", platform));
    model.driverRegister(driver(platform, calls));
    expect(calls).toEqual(["configure dev0", "use dev0", "probe dev0"]);
  });

  it("driver_managed_dma drivers skip use_default_domain but still get firmware configure", () => {
    const { model, platform, calls } = setup();
    model.deviceAdd(new Device("dev0", platform));
    model.driverRegister(driver(platform, calls, { managed: true }));
    expect(calls).toEqual(["configure dev0", "probe dev0"]);
    calls.length = 0;
    model.deviceReleaseDriver(platform.findDevice("dev0")!);
    expect(calls).toEqual(["remove dev0"]);
  });

  it("unbind: remove, then dma_cleanup (unuse), then the driver link is cleared", () => {
    const { model, platform, calls } = setup();
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    const drv = driver(platform, calls);
    model.driverRegister(drv);
    calls.length = 0;
    model.deviceReleaseDriver(dev);
    expect(calls).toEqual(["remove dev0", "unuse dev0"]);
    expect(dev.driver).toBeNull();
  });

  it("a failing probe runs dma_cleanup (unuse) and leaves the device unbound", () => {
    const { model, platform, calls } = setup();
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    model.driverRegister(driver(platform, calls, { probe: () => err("EIO") }));
    expect(calls).toEqual(["configure dev0", "use dev0", "probe dev0", "unuse dev0"]);
    expect(dev.driver).toBeNull();
    expect(model.deferredDevices()).toEqual([]);
  });

  it("a failing dma_configure aborts the bind without dma_cleanup or probe", () => {
    const { model, platform, calls } = setup({ useDefaultDomain: () => err("EBUSY") });
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    const drv = driver(platform, calls, { match: false });
    model.driverRegister(drv);
    expect(model.deviceDriverAttach(drv, dev)).toEqual(err("EBUSY"));
    expect(calls).toEqual(["configure dev0", "use dev0"]);
    expect(dev.driver).toBeNull();
  });

  it("EPROBE_DEFER from dma_configure defers; a later successful bind retries on the work queue", () => {
    let ready = false;
    const { ctx, model, platform, calls } = setup({
      useDefaultDomain: (d) => (d.name === "dev0" && !ready ? err("EPROBE_DEFER") : OK),
    });
    const dev0 = new Device("dev0", platform);
    model.deviceAdd(dev0);
    model.driverRegister(driver(platform, calls, { name: "a", match: true }));
    expect(dev0.driver).toBeNull();
    expect(model.deferredDevices()).toEqual([dev0]);
    expect(calls).toEqual(["configure dev0", "use dev0"]);
    ready = true;
    // Another device binding triggers the deferred-probe work; nothing runs until it is flushed.
    model.deviceAdd(new Device("dev1", platform));
    expect(dev0.driver).toBeNull();
    expect(ctx.scheduler.settle()).toBeGreaterThan(0);
    expect(dev0.driver?.name).toBe("a");
    expect(model.deferredDevices()).toEqual([]);
  });

  it("EPROBE_DEFER from the driver's own probe defers too", () => {
    let n = 0;
    const { ctx, model, platform, calls } = setup();
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    model.driverRegister(
      driver(platform, calls, { probe: () => (n++ === 0 ? err("EPROBE_DEFER") : OK) }),
    );
    expect(model.deferredDevices()).toEqual([dev]);
    // The failed probe undid use_default_domain.
    expect(calls).toEqual(["configure dev0", "use dev0", "probe dev0", "unuse dev0"]);
    model.driverDeferredProbeTrigger();
    ctx.scheduler.settle();
    expect(dev.driver).not.toBeNull();
  });

  it("device_driver_attach on a bound device is EBUSY; driver_unregister unbinds", () => {
    const { model, platform, calls } = setup();
    const dev = new Device("dev0", platform);
    model.deviceAdd(dev);
    const a = driver(platform, calls, { name: "a" });
    const b = driver(platform, calls, { name: "b", match: false });
    model.driverRegister(a);
    model.driverRegister(b);
    expect(model.deviceDriverAttach(b, dev)).toEqual(err("EBUSY"));
    model.driverUnregister(a);
    expect(dev.driver).toBeNull();
    expect(model.deviceDriverAttach(b, dev)).toEqual(OK);
    expect(dev.driver).toBe(b);
  });

  it("the mock bus has no dma_configure: binding never touches DMA ownership", () => {
    const { model, calls } = setup();
    const mock = createMockBus();
    model.busRegister(mock);
    model.deviceAdd(new Device("m0", mock));
    model.driverRegister(driver(mock, calls));
    expect(calls).toEqual(["probe m0"]);
  });
});

describe("firmware description", () => {
  it("reads u32 properties, keeps reserved regions and the iommus link in its view", () => {
    const node = new FwNode("iommu@1000");
    const fw = new FirmwareDescription({
      node: new FwNode("dev"),
      properties: { "pasid-num-bits": 0, label: "x" },
      resvRegions: [{ start: 0x8000_0000n, length: 0x2000n, prot: 3, type: IOMMU_RESV.DIRECT }],
      iommus: { fwnode: node, ids: [7] },
    });
    expect(fw.readU32("pasid-num-bits")).toBe(0);
    expect(fw.readU32("label")).toBeUndefined();
    expect(fw.readU32("missing")).toBeUndefined();
    expect(fw.toJSON()).toEqual({
      node: "dev",
      properties: { label: "x", "pasid-num-bits": 0 },
      iommus: { fwnode: "iommu@1000", ids: [7] },
      resv_regions: [{ start: "0x80000000", end: "0x80001fff", type: "direct", prot: 3 }],
    });
    expect(() =>
      fw.addResvRegion({ start: 0n, length: 0n, prot: 0, type: IOMMU_RESV.RESERVED }),
    ).toThrow(SimError);
  });
});
