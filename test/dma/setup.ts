// Test machines for the DMA API: RAM, the IOMMU core with the DMA layer installed before any IOMMU
// registers (the kernel's order), a RISC-V IOMMU (createRiscvIommu) or a mock IOMMU instance,
// platform and PCI devices linked to it by firmware, and a device-side `translate` that asks the
// RISC-V hardware what a DMA at an address reaches (through its IOTLB, like a real endpoint).

import { unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import { FirmwareDescription, FwNode, type IommuResvRegion } from "../../src/bus/firmware.js";
import type { PciDev } from "../../src/bus/pci-dev.js";
import { type DmaApi, installDmaApi } from "../../src/dma/mapping.js";
import { type MockIommuConfig, MockIommuDriver } from "../../src/drivers/mock/mock-iommu.js";
import type { RiscvIommuSetup } from "../../src/drivers/riscv/factory.js";
import type { PciHost } from "../../src/hw/pci/host.js";
import { DmaRequest, DmaResponse } from "../../src/hw/pci/translation-agent.js";
import type { IommuCapabilities } from "../../src/hw/riscv-iommu/capabilities.js";
import type { IommuCoreOptions } from "../../src/iommu/core.js";
import {
  type BaseBed,
  baseBed,
  RAM_BASE,
  RAM_SIZE,
  riscvIommu,
  scanPciHost,
} from "../drivers/riscv/setup.js";

export interface BedOptions {
  readonly core?: IommuCoreOptions;
  readonly nrCpus?: number;
  readonly forcedac?: boolean;
  readonly ramBase?: bigint;
  readonly ramSize?: bigint;
  /** "riscv" (default) or a mock instance with this configuration. */
  readonly iommu?: "riscv" | { mock: MockIommuConfig };
  readonly capabilities?: Partial<IommuCapabilities>;
}

export interface DmaBed extends BaseBed {
  readonly dma: DmaApi;
  readonly hwdev: Device;
  /** The RISC-V IOMMU, unless the bed runs the mock driver. */
  readonly riscv: RiscvIommuSetup | null;
  readonly mock: MockIommuDriver | null;
  /** A platform device behind the IOMMU (device_id `did`), or without one (`iommu: false`). */
  platformDev(
    name: string,
    did: number,
    o?: { iommu?: boolean; resv?: readonly IommuResvRegion[] },
  ): Device;
  /** A PCI host behind the IOMMU; returns the pci_dev of a function by name. */
  pciHost(build: (h: PciHost) => void): (name: string) => PciDev;
  /**
   * A device DMA at `iova` through the RISC-V hardware: the physical address it reaches, or the
   * fault code.
   */
  translate(did: number, iova: bigint, access?: "read" | "write"): bigint | string;
}

export function dmaBed(o: BedOptions = {}): DmaBed {
  const b = baseBed(3, o.core ?? {}, { base: o.ramBase ?? RAM_BASE, size: o.ramSize ?? RAM_SIZE });
  const { platform, model } = b;
  b.core.addIommuBus(b.pci);
  const dma = installDmaApi(b.core, {
    memory: b.memory,
    frames: b.frames,
    ...(o.nrCpus === undefined ? {} : { nrCpus: o.nrCpus }),
    ...(o.forcedac === undefined ? {} : { forcedac: o.forcedac }),
  });
  const hwdev = new Device("iommu0", platform);
  model.deviceAdd(hwdev);
  let riscv: RiscvIommuSetup | null = null;
  let mock: MockIommuDriver | null = null;
  if (o.iommu === undefined || o.iommu === "riscv") {
    riscv = riscvIommu(b, hwdev, {
      name: "iommu0",
      ...(o.capabilities ? { capabilities: o.capabilities } : {}),
    });
    unwrap(riscv.probe);
  } else {
    mock = new MockIommuDriver(b.core, {
      claimBus: null,
      defaultDomain: "none",
      ...o.iommu.mock,
    });
    unwrap(mock.registerInstance("iommu0", hwdev));
  }
  const platformDev = (
    name: string,
    did: number,
    d: { iommu?: boolean; resv?: readonly IommuResvRegion[] } = {},
  ): Device => {
    const dev = new Device(
      name,
      platform,
      new FirmwareDescription({
        node: new FwNode(name),
        resvRegions: [...(d.resv ?? [])],
        iommus: d.iommu === false ? null : { fwnode: hwdev.fw.node, ids: [did] },
      }),
    );
    model.deviceAdd(dev);
    return dev;
  };
  const pciHost = (build: (h: PciHost) => void) => scanPciHost(b, build, hwdev.fw.node);
  const req = new DmaRequest();
  const out = new DmaResponse();
  const translate = (did: number, iova: bigint, access: "read" | "write" = "read") => {
    if (riscv === null) throw new Error("translate needs the RISC-V IOMMU");
    req.deviceId = did;
    req.access = access;
    req.setIova(iova);
    riscv.hardware.translate(req, out);
    if (out.fault !== null) return out.fault.code;
    return out.paddr;
  };
  return { ...b, dma, hwdev, riscv, mock, platformDev, pciHost, translate };
}

/** A buffer's physical address: `n` frames from the machine's allocator. */
export function buffer(b: DmaBed, pages = 1): bigint {
  const ppn = b.frames.allocContiguous(pages);
  if (ppn < 0) throw new Error("out of frames");
  return BigInt(ppn) << 12n;
}

export { RAM_BASE, RAM_SIZE, unwrap };
