// The idxd PCI driver (drivers/dma/idxd/init.c) for the DSA-like engine, in the order the kernel
// runs it:
//   probe:  pci_enable_device + pci_iomap (registers, portals), dma_set_mask_and_coherent(64),
//           pci_set_master, idxd_device_init_reset, SVA (the `sva` parameter: user PASIDs, and
//           kernel DMA with PASID through idxd_enable_system_pasid), idxd_read_caps, then what
//           accel-config does at boot: Enable Device and each configured WQ (a kernel WQ gets its
//           completion records from dma_alloc_coherent; a user WQ gets its character device);
//   remove: open user files revoked (Drain PASID, unbind), WQs disabled and their memory freed,
//           Disable Device, idxd_disable_system_pasid (detach, free the PASID), pci_disable_device.
// The driver uses the DMA API (driver_managed_dma = false): the driver core has the group's
// default domain in use (iommu_device_use_default_domain) before probe runs. A probe that fails
// after the enable disables the device again (pci_disable_device), like idxd_pci_probe's unwind.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { BusType, Device, DeviceDriver } from "../../bus/device.js";
import {
  PCI_VENDOR_ID_INTEL,
  type PciDeviceId,
  pciDisableDevice,
  pciMatchId,
  pciSetMaster,
} from "../../bus/pci.js";
import { devIsPci } from "../../bus/pci-dev.js";
import { DMA_BIT_MASK } from "../../dma/constants.js";
import {
  IDXD_DEFAULT_WQS,
  type IdxdDevice,
  type IdxdEnv,
  type IdxdOptions,
  idxdMapDevice,
} from "./idxd-device.js";

/** `PCI_DEVICE_ID_INTEL_DSA_SPR0`, the ID the DSA-like function reports. */
export const PCI_DEVICE_ID_INTEL_DSA_SPR0 = 0x0b25;

/** `idxd_pci_tbl`. */
const IDXD_PCI_TBL: readonly PciDeviceId[] = [
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_DEVICE_ID_INTEL_DSA_SPR0 },
];

export class IdxdDriver implements DeviceDriver {
  readonly name = "idxd";
  readonly driverManagedDma = false;
  readonly #devices = new Map<Device, IdxdDevice>();

  constructor(
    readonly env: IdxdEnv,
    readonly bus: BusType,
    readonly options: IdxdOptions = {},
  ) {
    if (bus.name !== "pci") throw new SimError("idxd is a PCI driver");
  }

  /** The PCI ID table (idxd_pci_tbl). */
  match(dev: Device): boolean {
    return devIsPci(dev) && pciMatchId(IDXD_PCI_TBL, dev.fn) !== null;
  }

  probe(dev: Device): Result {
    if (!devIsPci(dev)) return err("ENODEV");
    const mapped = idxdMapDevice(this.env, dev);
    if (!mapped.ok) return mapped;
    const idxd = mapped.value;
    const mask = this.env.dma.setMaskAndCoherent(dev, DMA_BIT_MASK(64));
    if (!mask.ok) {
      pciDisableDevice(dev);
      return mask;
    }
    pciSetMaster(dev);
    const reset = idxd.initReset();
    if (!reset.ok) {
      pciDisableDevice(dev);
      return reset;
    }
    if (this.options.sva ?? true) {
      idxd.userPasidEnabled = true;
      const r = idxd.enableSystemPasid(this.options.supervisorSva ?? false);
      if (r.ok) idxd.pasidEnabled = true;
      else idxd.log("warn", `No in-kernel DMA with PASID. -${r.errno}`);
    } else {
      idxd.log("warn", "User forced SVA off via module param.");
    }
    idxd.readCaps();
    const enabled = idxd.enable();
    if (!enabled.ok) {
      if (idxd.pasidEnabled) idxd.disableSystemPasid();
      pciDisableDevice(dev);
      return enabled;
    }
    const wqs = this.options.wqs ?? IDXD_DEFAULT_WQS;
    if (wqs.length > idxd.maxWqs) {
      throw new SimError(
        `${dev.name}: ${wqs.length} WQs configured, the device has ${idxd.maxWqs}`,
      );
    }
    wqs.forEach((cfg, i) => {
      const r = idxd.enableWq(i, cfg);
      if (!r.ok) idxd.log("err", `wq${i}: enabling failed: -${r.errno}`);
    });
    this.#devices.set(dev, idxd);
    return OK;
  }

  remove(dev: Device): void {
    const idxd = this.#devices.get(dev);
    if (idxd === undefined) return;
    for (const wq of idxd.wqs) {
      for (const user of [...wq.users]) user.revoke();
      if (wq.type !== "none") idxd.disableWq(wq);
    }
    idxd.disable();
    if (idxd.pasidEnabled) idxd.disableSystemPasid();
    pciDisableDevice(idxd.pdev);
    this.#devices.delete(dev);
  }

  /** The driver's state for a bound device (`pci_get_drvdata`). */
  idxdOf(dev: Device): IdxdDevice | undefined {
    return this.#devices.get(dev);
  }

  devices(): IdxdDevice[] {
    return [...this.#devices.values()];
  }

  toJSON(): Json {
    return { driver: this.name, devices: this.devices().map((d) => d.toJSON()) };
  }
}
