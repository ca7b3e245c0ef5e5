// The SVA/IOPF conformance suite on the mock driver: two instances of one mock driver, platform
// devices with 10 PASID bits, page requests through TRIGGER_IOPF, responses from the driver's log.

import { Device } from "../../../src/bus/device.js";
import {
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_SUCCESS,
} from "../../../src/iommu/fault.js";
import { svaBed } from "../sva-setup.js";
import { runSvaConformance } from "./sva-suite.js";

runSvaConformance("mock", () => {
  const b = svaBed();
  let n = 0;
  return {
    ctx: b.ctx,
    core: b.core,
    view: b.mock,
    procs: b.procs,
    instances: 2,
    newDevice: (instance = 0) => b.pdev(`dev${n++}`, { instance }),
    newPlainDevice: () => b.dev(`plain${n++}`),
    newNarrowDevice: () => b.pdev(`narrow${n++}`, { pasidBits: 2 }),
    newDeviceWithoutIommu: () => {
      const d = new Device(`lone${n++}`, b.platform);
      b.model.deviceAdd(d);
      return d;
    },
    pageRequest: (dev, r) => {
      const perm = IOMMU_FAULT_PERM_READ | (r.write ? IOMMU_FAULT_PERM_WRITE : 0);
      b.mock.triggerIopf(dev, {
        pasid: r.pasid,
        grpid: r.grpid,
        perm,
        addr: r.addr,
        last: r.last ?? true,
      });
    },
    responses: (dev) =>
      b.mock.pageResponses
        .filter((p) => p.dev === dev.name)
        .map((p) => ({
          grpid: p.grpid,
          code:
            p.code === IOMMU_PAGE_RESP_SUCCESS
              ? "SUCCESS"
              : p.code === IOMMU_PAGE_RESP_FAILURE
                ? "FAILURE"
                : "INVALID",
        })),
  };
});
