// A RISC-V machine for the e1000-like driver: the built-in `default` machine (nic0 behind iommu0)
// without its placeholder drivers, with the DMA API the machine installs at boot, and the NIC
// driver registered on the PCI bus, which binds nic0.

import { expect } from "vitest";
import { pciDevId } from "../../../src/bus/pci.js";
import type { PciDev } from "../../../src/bus/pci-dev.js";
import { type NicAdapter, NicDriver, type NicOptions } from "../../../src/drivers/nic/e1000.js";
import type { NicDevice } from "../../../src/hw/endpoints/nic.js";
import { DmaRequest, DmaResponse } from "../../../src/hw/pci/translation-agent.js";
import { buildMachine } from "../../../src/machine/build.js";
import { machineDescription } from "../../../src/machine/load.js";

export interface NicMachineOptions {
  readonly boot?: Record<string, unknown>;
  readonly nic?: NicOptions;
  /** Merged into the description's `devices`. */
  readonly devices?: Record<string, unknown>;
  /** The NIC the rig looks at (default nic0). */
  readonly name?: string;
}

export function nicMachine(o: NicMachineOptions = {}) {
  const m = buildMachine(
    machineDescription({
      extends: "default",
      devices: { dsa0: { driver: null }, nic0: { driver: null }, ...o.devices },
      ...(o.boot ? { boot: o.boot } : {}),
    }),
    { driver: "riscv" },
  );
  const dma = m.dma;
  const env = { dma, memory: m.memory, frames: m.frames, bridges: m.endpoints.bridges };
  const driver = new NicDriver(env, m.buses.pci, o.nic);
  const name = o.name ?? "nic0";
  const dev = m.device(name) as PciDev;
  m.model.driverRegister(driver);
  const hw = m.endpoints.model(name) as NicDevice;
  const iommu = m.iommus().find((i) => i.instance === dev.iommu!.iommuDev)!.riscv!.hardware;
  const req = new DmaRequest();
  const out = new DmaResponse();
  return {
    m,
    dma,
    driver,
    dev,
    hw,
    get adapter(): NicAdapter {
      const a = driver.adapterOf(dev);
      if (!a) throw new Error(`the NIC driver is not bound to ${name}`);
      return a;
    },
    /** What a device access at `iova` reaches through the IOMMU: a physical address or the fault. */
    translate(iova: bigint, access: "read" | "write" = "read"): bigint | string {
      req.deviceId = pciDevId(dev.fn);
      req.access = access;
      req.setIova(iova);
      iommu.translate(req, out);
      return out.fault?.code ?? out.paddr;
    },
    invariants(): void {
      expect(m.checkInvariants()).toEqual([]);
      expect(m.ctx.warnings.list()).toEqual([]);
    },
  };
}

export type NicRig = ReturnType<typeof nicMachine>;

export function frame(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + (i >> 5)) & 0xff);
}
