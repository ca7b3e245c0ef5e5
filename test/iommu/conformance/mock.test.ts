import { unwrap } from "../../../src/base/result.js";
import { MOCK_FLAGS_DEVICE_PASID, type MockDevice } from "../../../src/drivers/mock/mock-iommu.js";
import { mockBed, platBed } from "../setup.js";
import { runCoreConformance } from "./suite.js";

// The selftest arrangement: static blocked default domain, private bus.
runCoreConformance("mock (selftest shape)", () => {
  const b = mockBed();
  return {
    ctx: b.ctx,
    core: b.core,
    view: b.mock,
    newDevice: ({ pasid }) => unwrap(b.mock.mockDevCreate(pasid ? MOCK_FLAGS_DEVICE_PASID : 0)),
    removeDevice: (dev) => b.mock.mockDevDestroy(dev as MockDevice),
  };
});

// A DMA-API shaped driver on the platform bus: dynamic DMA default domains, several page
// sizes; with a static blocked domain, and without one (blocking then falls back to an empty
// paging domain and PASIDs are unsupported).
for (const staticBlocked of [true, false]) {
  runCoreConformance(`mock (DMA default, platform, static blocked: ${staticBlocked})`, () => {
    const b = platBed({
      defaultDomain: "none",
      staticBlocked,
      pgsizeBitmap: (1n << 12n) | (1n << 21n) | (1n << 30n),
      pasid1024Quirk: false,
    });
    let n = 0;
    return {
      ctx: b.ctx,
      core: b.core,
      view: b.mock,
      newDevice: ({ pasid }) => b.dev(`dev${n++}`, pasid ? { pasidBits: 10 } : {}),
      removeDevice: (dev) => b.model.deviceDel(dev),
    };
  });
}
