// The built-in `default` RISC-V machine for VFIO: its kernel drivers stay bound (idxd on dsa0,
// nic on nic0: DMA-API users), vfio-pci is registered and bound on request (like sysfs
// driver_override + bind), a tiny DMA-API driver can be bound to any device, and a process with
// an unpopulated anonymous buffer is ready to map.

import { expect } from "vitest";
import { OK, unwrap } from "../../../src/base/result.js";
import type { Device, DeviceDriver } from "../../../src/bus/device.js";
import type { PciDev } from "../../../src/bus/pci-dev.js";
import { VfioPciDriver } from "../../../src/drivers/vfio/vfio-pci.js";
import type { TestDevice } from "../../../src/hw/endpoints/test-device.js";
import { buildMachine } from "../../../src/machine/build.js";
import { machineDescription } from "../../../src/machine/load.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/flags.js";
import { vmMmap } from "../../../src/mm/mmap.js";

export const BUF_VA = 0x7000_0000n;
export const BUF_PAGES = 8;

/** `description`: another machine than `default` (a plain description object). */
export function vfioMachine(description?: Record<string, unknown>) {
  const m = buildMachine(description === undefined ? "default" : machineDescription(description), {
    driver: "riscv",
  });
  const vfio = new VfioPciDriver(m.core, m.buses.pci);
  m.model.driverRegister(vfio);
  /** A kernel driver that only uses the DMA API (driver_managed_dma = false). */
  const kernelDriver: DeviceDriver = { name: "dma-user", bus: m.buses.pci, probe: () => OK };
  m.model.driverRegister(kernelDriver);
  const proc = unwrap(m.processes.spawn("qemu"));
  unwrap(
    vmMmap(
      proc.mm!,
      BUF_VA,
      BigInt(BUF_PAGES) * 4096n,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    ),
  );
  const pci = (name: string) => m.device(name) as PciDev;
  return {
    m,
    vfio,
    kernelDriver,
    proc,
    pci,
    /** Binds vfio-pci to `name` (the device must have no driver). */
    bindVfio(name: string) {
      unwrap(m.model.deviceDriverAttach(vfio, pci(name)));
      return vfio.device(pci(name))!;
    },
    endpoint(name: string): TestDevice {
      return m.endpoints.model(name) as TestDevice;
    },
    groupOf(dev: Device) {
      return m.core.groupOf(dev)!;
    },
    invariants(): void {
      expect(m.checkInvariants()).toEqual([]);
      expect(m.ctx.warnings.list()).toEqual([]);
    },
  };
}

export type VfioRig = ReturnType<typeof vfioMachine>;

export function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 11 + seed * 29) & 0xff);
}
