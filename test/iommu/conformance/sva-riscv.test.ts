// The SVA/IOPF conformance suite on the RISC-V IOMMU driver: two IOMMUs, each translating a PCI
// host whose endpoints have PASID, ATS and PRI; page requests enter the IOMMU's page-request
// queue as PCIe messages and reach the core through the driver's interrupt thread; responses
// come back to the device as PRG Response messages (ATS.PRGR).

import { Device } from "../../../src/bus/device.js";
import { pciDevId } from "../../../src/bus/pci.js";
import type { PciDev } from "../../../src/bus/pci-dev.js";
import { PRG_RESPONSE_CODE } from "../../../src/hw/pci/translation-agent.js";
import { MmSubsystem } from "../../../src/mm/mm-types.js";
import { ProcessTable } from "../../../src/mm/process.js";
import { AutoPort, bed } from "../../drivers/riscv/setup.js";
import { riscvPciHost } from "./riscv-pci.js";
import { runSvaConformance } from "./sva-suite.js";

const ENDPOINTS = 8;

runSvaConformance("riscv-iommu", () => {
  const b = bed([{ name: "iommu0" }, { name: "iommu1" }]);
  const ports = new Map<Device, { port: AutoPort; rid: number; iommu: string }>();
  const pools: PciDev[][] = [];
  for (const [i, name] of ["iommu0", "iommu1"].entries()) {
    const hw = b.iommus.get(name)!.hardware;
    const port = new AutoPort(hw);
    const names = Array.from({ length: ENDPOINTS }, (_, k) => `${name}-ep${k}`);
    const { pdev } = riscvPciHost(b, name, i, (h) => {
      const rp = h.addRootPort({ acs: true });
      const sw = rp.addSwitch({
        downstream: Array.from({ length: ENDPOINTS + 2 }, () => ({ acs: true })),
      });
      for (const [k, n] of names.entries()) {
        sw.port(k).addEndpoint({ name: n, bars: [0x10000], ats: true, pri: true, pasid: 20 });
      }
      sw.port(ENDPOINTS).addEndpoint({ name: `${name}-plain`, bars: [0x1000] });
      sw.port(ENDPOINTS + 1).addEndpoint({
        name: `${name}-narrow`,
        bars: [0x10000],
        ats: true,
        pri: true,
        pasid: 2,
      });
    });
    pools[i] = [...names, `${name}-plain`, `${name}-narrow`].map((n) => {
      const d = pdev(n);
      const rid = pciDevId(d.fn);
      hw.connectPort(rid, port);
      ports.set(d, { port, rid, iommu: name });
      return d;
    });
  }
  const used = [0, 0];
  let lone = 0;
  const sys = new MmSubsystem(b.ctx, b.memory, b.frames);
  return {
    ctx: b.ctx,
    core: b.core,
    view: b.driver,
    procs: new ProcessTable(sys),
    instances: 2,
    newDevice: (instance = 0) => {
      const d = pools[instance]![used[instance]!++];
      if (d === undefined || used[instance]! > ENDPOINTS) throw new Error("out of endpoints");
      return d;
    },
    newPlainDevice: () => pools[0]![ENDPOINTS]!,
    newNarrowDevice: () => pools[0]![ENDPOINTS + 1]!,
    newDeviceWithoutIommu: () => {
      const d = new Device(`lone${lone++}`, b.platform);
      b.model.deviceAdd(d);
      return d;
    },
    pageRequest: (dev, r) => {
      const { rid, iommu } = ports.get(dev)!;
      b.iommus.get(iommu)!.hardware.pageRequest({
        deviceId: rid,
        pasidValid: true,
        pasid: r.pasid,
        privileged: false,
        execute: false,
        read: true,
        write: r.write,
        last: r.last ?? true,
        prgIndex: r.grpid,
        page: Number(r.addr >> 12n),
      });
    },
    responses: (dev) => {
      const { port, rid } = ports.get(dev)!;
      return port.responses
        .filter((m) => m.deviceId === rid)
        .map((m) => ({
          grpid: m.prgIndex,
          code:
            m.responseCode === PRG_RESPONSE_CODE.success
              ? "SUCCESS"
              : m.responseCode === PRG_RESPONSE_CODE.invalid_request
                ? "INVALID"
                : "FAILURE",
        }));
    },
  };
});
