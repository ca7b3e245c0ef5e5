// A PCI host (own segment) translated by one RISC-V IOMMU of a riscv test bed: the IOMMU is the
// host's translation agent, an IO bridge carries the endpoints' DMA, and the OS scans the host
// with the IOMMU in its iommu-map. Several hosts can share one machine.

import { type PciDev, pciScanHost } from "../../../src/bus/pci-dev.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import { IoBridge } from "../../../src/hw/pci/io-bridge.js";
import type { Bed } from "../../drivers/riscv/setup.js";

export interface RiscvPciHost {
  readonly host: PciHost;
  readonly bridge: IoBridge;
  /** The OS view (pci_dev) of an endpoint function, by name. */
  pdev(name: string): PciDev;
}

export function riscvPciHost(
  b: Bed,
  iommu: string,
  segment: number,
  build: (h: PciHost) => void,
): RiscvPciHost {
  const io = b.iommus.get(iommu)!;
  b.core.addIommuBus(b.pci);
  const host = new PciHost(b.ctx, { segment, name: `pci${segment}` });
  build(host);
  host.enumerate();
  host.setTranslationAgent(io.hardware);
  const bridge = new IoBridge(host, b.memory);
  pciScanHost(b.model, b.pci, host, { iommu: io.hwdev.fw.node });
  const pdev = (name: string): PciDev => {
    const d = b.pci.pciDevOf(host.function(name));
    if (!d) throw new Error(`no pci_dev ${name}`);
    return d;
  };
  return { host, bridge, pdev };
}
