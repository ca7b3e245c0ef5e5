// What the RISC-V IOMMU driver programmed, as the invariant checker and scenarios read it: the
// RID and PASID targets the driver keeps per device (its `riscv_iommu_info`), with the
// "identity"/"blocked" targets named by the driver's static domains.

import type { Device } from "../bus/device.js";
import type { IommuProgrammingView } from "../check/invariants.js";
import { RiscvIommuInfo } from "../drivers/riscv/context.js";
import type { RiscvIommuDriver } from "../drivers/riscv/driver.js";
import type { IommuDomain } from "../iommu/domain.js";

export function riscvProgrammingView(driver: RiscvIommuDriver): IommuProgrammingView {
  const info = (dev: Device): RiscvIommuInfo | null => {
    const p = dev.iommu?.priv;
    return p instanceof RiscvIommuInfo ? p : null;
  };
  const domain = (t: IommuDomain | "identity" | "blocked"): IommuDomain =>
    t === "identity" ? driver.identityDomain : t === "blocked" ? driver.blockedDomain : t;
  return {
    ops: driver.ops,
    ridDomain: (dev) => {
      const i = info(dev);
      return i === null ? undefined : domain(i.ridTarget);
    },
    pasidDomain: (dev, pasid) => {
      const t = info(dev)?.pasids.get(pasid);
      return t === undefined ? undefined : domain(t);
    },
    programmedPasids: (dev) => [...(info(dev)?.pasids.keys() ?? [])].sort((a, b) => a - b),
  };
}
