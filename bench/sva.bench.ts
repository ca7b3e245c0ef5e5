// SVA on the RISC-V driver: iommu_sva_bind_device + iommu_sva_unbind_device of a process on a
// PCIe device with PASID/ATS/PRI. The first bind of an mm allocates its PASID (kept until the
// final mmdrop); each timed cycle then allocates an SVA domain (PSCID, process context pointing
// at the mm's page table, IODIR.INVAL_PDT + IOFENCE.C) and tears it down again. A second task
// measures a bind that only takes another reference on an existing bond.

import { unwrap } from "../src/base/result.js";
import { buildMachine } from "../src/machine/build.js";
import type { BenchSuite } from "./harness.js";

function machine() {
  const m = buildMachine("single-mock", { driver: "riscv" });
  const dev = m.device("dev0")!;
  const mm = unwrap(m.processes.spawn("app")).mm!;
  // The mm's PASID is allocated by its first bind and lives on: bind once, outside the timing.
  m.core.svaUnbindDevice(unwrap(m.core.svaBindDevice(dev, mm)));
  return { m, dev, mm };
}

export const suite: BenchSuite = {
  title: "sva",
  build(bench) {
    const a = machine();
    bench.add("iommu_sva_bind_device + iommu_sva_unbind_device (riscv)", () => {
      a.m.core.svaUnbindDevice(unwrap(a.m.core.svaBindDevice(a.dev, a.mm)));
    });
    const b = machine();
    const held = unwrap(b.m.core.svaBindDevice(b.dev, b.mm));
    bench.add("bind + unbind of an existing bond (refcount only)", () => {
      const again = unwrap(b.m.core.svaBindDevice(b.dev, b.mm));
      if (again !== held) throw new Error("a second bind must return the same bond");
      b.m.core.svaUnbindDevice(again);
    });
  },
};
