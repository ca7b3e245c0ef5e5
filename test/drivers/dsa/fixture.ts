// A RISC-V machine for the idxd driver: the built-in `default` machine (dsa0 behind iommu0, with
// PASID, ATS and PRI) without its placeholder drivers, with the DMA API the machine installs at
// boot, and the idxd driver registered on the PCI bus, which binds dsa0.

import { expect } from "vitest";
import { unwrap } from "../../../src/base/result.js";
import type { PciDev } from "../../../src/bus/pci-dev.js";
import { IdxdDriver } from "../../../src/drivers/dsa/idxd.js";
import type { IdxdDevice, IdxdOptions } from "../../../src/drivers/dsa/idxd-device.js";
import type { DsaDevice } from "../../../src/hw/endpoints/dsa.js";
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
import type { Process } from "../../../src/mm/process.js";

export interface DsaMachineOptions {
  readonly boot?: Record<string, unknown>;
  /** Merged into the description's `iommus`. */
  readonly iommus?: Record<string, unknown>;
  readonly idxd?: IdxdOptions;
  /** Register the driver (default true). */
  readonly bind?: boolean;
}

export function dsaMachine(o: DsaMachineOptions = {}) {
  const m = buildMachine(
    machineDescription({
      extends: "default",
      devices: { dsa0: { driver: null }, nic0: { driver: null } },
      ...(o.boot ? { boot: o.boot } : {}),
      ...(o.iommus ? { iommus: o.iommus } : {}),
    }),
    { driver: "riscv" },
  );
  const dma = m.dma;
  const env = {
    core: m.core,
    dma,
    memory: m.memory,
    bridges: m.endpoints.bridges,
  };
  const driver = new IdxdDriver(env, m.buses.pci, o.idxd);
  const dev = m.device("dsa0") as PciDev;
  if (o.bind ?? true) m.model.driverRegister(driver);
  const hw = m.endpoints.model("dsa0") as DsaDevice;
  return {
    m,
    dma,
    env,
    driver,
    dev,
    hw,
    get idxd(): IdxdDevice {
      const d = driver.idxdOf(dev);
      if (!d) throw new Error("idxd is not bound to dsa0");
      return d;
    },
    /** Every invariant of the machine holds and no kernel WARN fired. */
    invariants(): void {
      expect(m.checkInvariants()).toEqual([]);
      expect(m.ctx.warnings.list()).toEqual([]);
    },
  };
}

export type DsaRig = ReturnType<typeof dsaMachine>;

/** A physical page of kernel memory holding `data` at offset 0. */
export function kernelBuffer(r: DsaRig, data: Uint8Array): bigint {
  const pages = Math.max(1, Math.ceil(data.length / 4096));
  const ppn = pages === 1 ? r.m.frames.alloc() : r.m.frames.allocContiguous(pages);
  const pa = BigInt(ppn) << 12n;
  if (data.length > 0) r.m.memory.writeBytes(pa, data);
  return pa;
}

export function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + (i >> 7)) & 0xff);
}

/** A process with `pages` private anonymous pages mapped (not touched) at `va`. */
export function spawnWithBuffer(r: DsaRig, comm: string, va: bigint, pages: number): Process {
  const p = unwrap(r.m.processes.spawn(comm));
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
  unwrap(vmMmap(p.mm!, va, BigInt(pages) * 4096n, PROT_READ | PROT_WRITE, flags));
  return p;
}
