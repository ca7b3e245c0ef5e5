// Shared set-up for IOMMU core tests: a context, a device model with the platform and mock
// buses, the core, and a selftest-style mock driver registered on the mock bus.

import { createContext, type SimContext } from "../../src/base/context.js";
import { unwrap } from "../../src/base/result.js";
import type { TraceEventMap, TraceEventName, TraceRecord } from "../../src/base/trace.js";
import { type BusType, Device } from "../../src/bus/device.js";
import { DeviceModel } from "../../src/bus/driver-core.js";
import { FirmwareDescription, FwNode, type IommuResvRegion } from "../../src/bus/firmware.js";
import {
  createPciBus,
  type PciBusType,
  type PciDev,
  type PciScanOptions,
  pciScanHost,
} from "../../src/bus/pci-dev.js";
import { createMockBus, createPlatformBus } from "../../src/bus/platform.js";
import {
  type MockIommu,
  type MockIommuConfig,
  MockIommuDriver,
} from "../../src/drivers/mock/mock-iommu.js";
import { PciHost } from "../../src/hw/pci/host.js";
import { IommuCore, type IommuCoreOptions } from "../../src/iommu/core.js";

export interface TestBed {
  readonly ctx: SimContext;
  readonly model: DeviceModel;
  readonly platform: BusType;
  readonly mockBus: BusType;
  readonly core: IommuCore;
}

export function bed(options: IommuCoreOptions = {}): TestBed {
  const ctx = createContext({ seed: 7 });
  const model = new DeviceModel(ctx);
  const platform = createPlatformBus();
  const mockBus = createMockBus();
  model.busRegister(platform);
  model.busRegister(mockBus);
  const core = new IommuCore(ctx, model, options);
  return { ctx, model, platform, mockBus, core };
}

export interface MockBed extends TestBed {
  readonly mock: MockIommuDriver;
  readonly inst: MockIommu;
}

/** The selftest arrangement: a mock driver on the private mock bus. */
export function mockBed(config: MockIommuConfig = {}, options: IommuCoreOptions = {}): MockBed {
  const b = bed(options);
  const mock = new MockIommuDriver(b.core, config);
  const inst = unwrap(mock.registerBus(b.mockBus));
  return { ...b, mock, inst };
}

export interface PciBed extends TestBed {
  readonly pci: PciBusType;
  readonly host: PciHost;
  readonly mock: MockIommuDriver;
  readonly inst: MockIommu;
  readonly iommuDev: Device;
  /** The pci_dev of a hardware function, by the function's name. */
  pdev(name: string): PciDev;
}

/**
 * A machine with a PCI host whose `iommu-map` points at a mock IOMMU instance (a platform
 * device). `build` shapes the hierarchy before enumeration. `scanFirst` scans PCI before the
 * IOMMU registers (bus_iommu_probe path); otherwise devices are hot-probed one by one.
 * `firmware` is the scan's per-function firmware hook.
 */
export function pciBed(
  build: (host: PciHost) => void,
  opts: {
    config?: MockIommuConfig;
    core?: IommuCoreOptions;
    scanFirst?: boolean;
    firmware?: PciScanOptions["firmware"];
  } = {},
): PciBed {
  const b = bed(opts.core ?? {});
  const pci = createPciBus();
  b.model.busRegister(pci);
  b.core.addIommuBus(pci);
  const iommuDev = new Device("iommu0", b.platform);
  b.model.deviceAdd(iommuDev);
  const mock = new MockIommuDriver(b.core, { claimBus: "pci", deviceGroup: "pci", ...opts.config });
  const host = new PciHost(b.ctx);
  build(host);
  host.enumerate();
  let inst: MockIommu | null = null;
  if (!opts.scanFirst) inst = unwrap(mock.registerInstance("iommu0", iommuDev));
  pciScanHost(b.model, pci, host, {
    iommu: iommuDev.fw.node,
    ...(opts.firmware ? { firmware: opts.firmware } : {}),
  });
  if (opts.scanFirst) inst = unwrap(mock.registerInstance("iommu0", iommuDev));
  const pdev = (name: string): PciDev => {
    const d = pci.pciDevOf(host.function(name));
    if (!d) throw new Error(`no pci_dev for ${name}`);
    return d;
  };
  return { ...b, pci, host, mock, inst: inst!, iommuDev, pdev };
}

export interface PlatBed extends TestBed {
  readonly mock: MockIommuDriver;
  readonly inst: MockIommu;
  readonly iommuDev: Device;
  /** A platform device behind the mock instance, added with `device_add`. */
  dev(name: string, fw?: { pasidBits?: number; resv?: IommuResvRegion[] }): Device;
}

/** A mock IOMMU registered the ordinary way for platform devices linked to it by firmware. */
export function platBed(config: MockIommuConfig = {}, options: IommuCoreOptions = {}): PlatBed {
  const b = bed(options);
  const iommuDev = new Device("iommu0", b.platform);
  b.model.deviceAdd(iommuDev);
  const mock = new MockIommuDriver(b.core, { claimBus: "platform", ...config });
  const inst = unwrap(mock.registerInstance("iommu0", iommuDev));
  const dev = (name: string, fw: { pasidBits?: number; resv?: IommuResvRegion[] } = {}) => {
    const d = new Device(name, b.platform, platformFw(name, iommuDev, fw));
    b.model.deviceAdd(d);
    return d;
  };
  return { ...b, mock, inst, iommuDev, dev };
}

/** Firmware of a platform device translated by `iommu`. */
export function platformFw(
  name: string,
  iommu: Device | null,
  fw: { pasidBits?: number; resv?: IommuResvRegion[] } = {},
): FirmwareDescription {
  return new FirmwareDescription({
    node: new FwNode(name),
    properties: fw.pasidBits === undefined ? {} : { "pasid-num-bits": fw.pasidBits },
    resvRegions: fw.resv ?? [],
    iommus: iommu ? { fwnode: iommu.fw.node, ids: [0] } : null,
  });
}

/** The fields of every `name` event among `records`, typed. */
export function traceFields<E extends TraceEventName>(
  records: readonly TraceRecord[],
  name: E,
): TraceEventMap[E][] {
  return records.filter((r) => r.event === name).map((r) => r.fields as TraceEventMap[E]);
}
