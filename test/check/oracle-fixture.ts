// Machines with the isolation oracle attached after boot, and the few hardware helpers the
// oracle tests need (a device's model, its IOMMU, a DMA through the device's DMA engine).

import { expect } from "vitest";
import { pciDevId } from "../../src/bus/pci.js";
import type { PciDev } from "../../src/bus/pci-dev.js";
import { attachOracle, type IsolationOracle } from "../../src/check/oracle.js";
import { DMA_BIDIRECTIONAL } from "../../src/dma/constants.js";
import type { RiscvIommuSetup } from "../../src/drivers/riscv/factory.js";
import { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { DmaAttrs, type DmaStatus } from "../../src/hw/pci/io-bridge.js";
import { buildMachine } from "../../src/machine/build.js";
import { machineDescription } from "../../src/machine/load.js";
import type { Machine } from "../../src/machine/machine.js";

export interface OracleRig {
  readonly m: Machine;
  readonly oracle: IsolationOracle;
  /** The pci_dev of a described function. */
  dev(name: string): PciDev;
  /** The test-device model behind a described function. */
  testDevice(name: string): TestDevice;
  /** The RISC-V IOMMU (hardware and driver) in front of a device. */
  riscv(name: string): RiscvIommuSetup;
  /** The device_id the IOMMU sees for a device's own requests (segment in bits 23:16). */
  deviceId(name: string): number;
  /** A fresh physical page (address) holding `fill` in its first bytes. */
  page(fill?: number): bigint;
  /** dma_map_single of one page for both directions. */
  map(name: string, pa: bigint): bigint;
  unmap(name: string, iova: bigint): void;
  /** A raw request of a device's model at the IO bridge (any endpoint kind), as scenarios do. */
  rawRead(name: string, addr: bigint, opts?: { pasid?: number; privileged?: boolean }): DmaStatus;
  /** The oracle found nothing. */
  clean(): void;
}

/** A machine (a built-in name or a description) on RISC-V IOMMUs, the oracle attached. */
export function oracleRig(machine: string | Record<string, unknown> = "default"): OracleRig {
  const m = buildMachine(
    typeof machine === "string" ? machineDescription(machine) : machineDescription(machine),
    { driver: "riscv" },
  );
  const oracle = attachOracle(m);
  const dev = (name: string): PciDev => {
    const d = m.device(name);
    if (d === undefined) throw new Error(`no device ${name}`);
    return d as PciDev;
  };
  return {
    m,
    oracle,
    dev,
    testDevice(name) {
      const model = m.endpoints.model(name);
      if (!(model instanceof TestDevice)) throw new Error(`${name} is not a test device`);
      return model;
    },
    riscv(name) {
      const inst = dev(name).iommu!.iommuDev;
      return m.iommus().find((i) => i.instance === inst)!.riscv!;
    },
    deviceId(name) {
      const fn = dev(name).fn;
      return (fn.host.segment << 16) | pciDevId(fn);
    },
    page(fill = 0) {
      const pa = BigInt(m.frames.alloc()) << 12n;
      if (fill !== 0) m.memory.writeBytes(pa, new Uint8Array(8).fill(fill));
      return pa;
    },
    map(name, pa) {
      const iova = m.dma.mapSingle(dev(name), pa, 0x1000n, DMA_BIDIRECTIONAL);
      expect(m.dma.mappingError(dev(name), iova).ok).toBe(true);
      return iova;
    },
    unmap(name, iova) {
      m.dma.unmapSingle(dev(name), iova, 0x1000n, DMA_BIDIRECTIONAL);
    },
    rawRead(name, addr, opts = {}) {
      const model = m.endpoints.engineOf(name);
      const attrs = DmaAttrs.of(opts);
      const buf = new Uint8Array(8);
      const st = model.dma.status;
      model.bridge.readPages(
        model.fn,
        attrs,
        Number(addr >> 12n),
        Number(addr & 0xfffn),
        buf,
        0,
        8,
        st,
      );
      return st;
    },
    clean() {
      expect(oracle.findings()).toEqual([]);
      expect(oracle.verdict()).toMatchObject({ isolated: true, findings: 0, p2pBypasses: 0 });
    },
  };
}
