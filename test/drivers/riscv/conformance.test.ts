// The IOMMU core's conformance suite on the RISC-V driver: a fresh machine with one RISC-V IOMMU
// per scenario, platform devices linked to it by firmware (with 1024 PASIDs when asked for),
// and the driver's own record of what it programmed compared by the invariant checker.

import { runCoreConformance } from "../../iommu/conformance/suite.js";
import { bed } from "./setup.js";

for (const [label, core] of [
  ["strict DMA", {}],
  ["lazy DMA (DMA-FQ)", { strict: false }],
  ["passthrough", { passthrough: true }],
] as const) {
  runCoreConformance(`riscv-iommu (${label})`, () => {
    const b = bed([{ name: "iommu0" }], core);
    let n = 0;
    return {
      ctx: b.ctx,
      core: b.core,
      view: b.driver,
      newDevice: ({ pasid }) => b.dev(`dev${n}`, n++, pasid ? { pasidBits: 10 } : {}),
      removeDevice: (dev) => b.model.deviceDel(dev),
    };
  });
}
