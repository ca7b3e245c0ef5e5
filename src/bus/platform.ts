// The platform bus (drivers/base/platform.c) and the iommufd selftest's private mock bus.
// A platform device is a plain `Device` on the platform bus; its firmware description (DT/ACPI
// node) carries the `iommus` link, the `pasid-num-bits` property and reserved memory regions.

import type { Result } from "../base/result.js";
import { BusType, type Device, type IommuDmaHooks } from "./device.js";

/**
 * The shared tail of `platform_dma_configure` / `pci_dma_configure`: firmware IOMMU setup
 * (`of_dma_configure` → `of_iommu_configure`), then, for a driver that leaves DMA to the kernel
 * DMA API, `iommu_device_use_default_domain`.
 */
export function firmwareDmaConfigure(dev: Device, iommu: IommuDmaHooks): Result {
  const fw = iommu.configure(dev);
  // @dev->driver may be unset when the IOMMU layer replays this hook.
  if (!fw.ok || dev.driver === null || dev.driver.driverManagedDma) return fw;
  return iommu.useDefaultDomain(dev);
}

/** `platform_dma_cleanup` / `pci_dma_cleanup`. */
export function firmwareDmaCleanup(dev: Device, iommu: IommuDmaHooks): void {
  if (dev.driver !== null && !dev.driver.driverManagedDma) iommu.unuseDefaultDomain(dev);
}

/** A new `platform_bus_type`. */
export function createPlatformBus(): BusType {
  return new BusType("platform", {
    dmaConfigure: firmwareDmaConfigure,
    dmaCleanup: firmwareDmaCleanup,
  });
}

/**
 * The iommufd selftest's private bus (`iommufd_mock`): no `dma_configure`, so binding a driver
 * to a mock device never touches DMA ownership (iommufd claims it explicitly).
 */
export function createMockBus(): BusType {
  return new BusType("iommufd_mock");
}
