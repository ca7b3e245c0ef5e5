// Shared set-up for IOMMU core tests: a context, a device model with the platform and mock
// buses, the core, and a selftest-style mock driver registered on the mock bus.

import { createContext, type SimContext } from "../../src/base/context.js";
import { unwrap } from "../../src/base/result.js";
import type { BusType } from "../../src/bus/device.js";
import { DeviceModel } from "../../src/bus/driver-core.js";
import { createMockBus, createPlatformBus } from "../../src/bus/platform.js";
import {
  type MockIommu,
  type MockIommuConfig,
  MockIommuDriver,
} from "../../src/drivers/mock/mock-iommu.js";
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
