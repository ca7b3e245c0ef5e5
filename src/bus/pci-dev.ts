// `struct pci_dev` as the OS sees a PCI function: a device on the PCI bus whose IOMMU-relevant
// properties (DMA aliases, ACS, PASID/PRI/ATS capabilities) are read from configuration space
// through the drivers/pci helpers (bus/pci.ts), plus the flags the OS itself keeps.

import { BusType, Device } from "./device.js";
import type { FirmwareDescription } from "./firmware.js";
import { firmwareDmaCleanup, firmwareDmaConfigure } from "./platform.js";

export class PciDev extends Device {
  /**
   * `pdev->untrusted`: the device sits behind an external-facing port (Thunderbolt, …) and must
   * be isolated by a DMA domain (core §2.4 step 4).
   */
  untrusted = false;

  constructor(name: string, bus: BusType, fw?: FirmwareDescription) {
    super(name, bus, fw);
  }
}

/** `dev_is_pci`. */
export function devIsPci(dev: Device): dev is PciDev {
  return dev instanceof PciDev;
}

/** A new `pci_bus_type` (`pci_dma_configure` / `pci_dma_cleanup`). */
export function createPciBus(): BusType {
  return new BusType("pci", { dmaConfigure: firmwareDmaConfigure, dmaCleanup: firmwareDmaCleanup });
}
