// vfio-pci (drivers/vfio/pci/vfio_pci.c) and the VFIO core's registry of groups: a PCI driver with
// driver_managed_dma = true, so binding it leaves DMA ownership alone (the driver core does not
// call iommu_device_use_default_domain); ownership is claimed later, by the group path
// (VFIO_GROUP_SET_CONTAINER) or by the cdev's iommufd binding.
//
//   probe  (vfio_pci_probe → vfio_pci_core_register_device → vfio_device_set_group): bridges are
//          refused (EINVAL: only normal headers), a device without an IOMMU group is refused
//          (EINVAL: no noiommu mode); the device joins the vfio group of its IOMMU group, which
//          is created with its first device;
//   remove: the device leaves (its cdev closed); the vfio group goes with its last device.

import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { BusType, Device, DeviceDriver } from "../../bus/device.js";
import { pciHdrType } from "../../bus/pci.js";
import { devIsPci } from "../../bus/pci-dev.js";
import { PCI_HEADER_TYPE_NORMAL } from "../../hw/pci/regs.js";
import type { IommuCore } from "../../iommu/core.js";
import type { IommuGroup } from "../../iommu/group.js";
import { VfioDevice } from "./device.js";
import { VfioContainer, VfioGroup } from "./group.js";

export class VfioPciDriver implements DeviceDriver {
  readonly name = "vfio-pci";
  readonly driverManagedDma = true;
  readonly #devices = new Map<Device, VfioDevice>();
  readonly #groups = new Map<IommuGroup, VfioGroup>();
  #containers = 0;

  constructor(
    readonly core: IommuCore,
    readonly bus: BusType,
  ) {}

  probe(dev: Device): Result {
    if (!devIsPci(dev) || pciHdrType(dev.fn) !== PCI_HEADER_TYPE_NORMAL) return err("EINVAL");
    const group = this.core.groupOf(dev);
    if (group === null) return err("EINVAL");
    let vgroup = this.#groups.get(group);
    if (vgroup === undefined) {
      vgroup = new VfioGroup(this.core, group);
      this.#groups.set(group, vgroup);
    }
    this.#devices.set(dev, new VfioDevice(dev, vgroup));
    return OK;
  }

  remove(dev: Device): void {
    const vdev = this.#devices.get(dev);
    if (vdev === undefined) return;
    vdev.closeCdev();
    this.#devices.delete(dev);
    const group = vdev.group;
    if ([...this.#devices.values()].some((d) => d.group === group)) return;
    group.close();
    this.#groups.delete(group.iommuGroup);
  }

  /** The vfio device of a bound device. */
  device(dev: Device): VfioDevice | undefined {
    return this.#devices.get(dev);
  }

  /** The vfio group of an IOMMU group with vfio-pci devices (/dev/vfio/<id>). */
  group(group: IommuGroup): VfioGroup | undefined {
    return this.#groups.get(group);
  }

  /** open /dev/vfio/vfio: a new container. */
  openContainer(): VfioContainer {
    return new VfioContainer(this.core, `vfio-container-${this.#containers++}`);
  }

  toJSON(): Json {
    return {
      driver: this.name,
      devices: [...this.#devices.values()].map((d) => d.toJSON()),
      groups: [...this.#groups.values()].map((g) => g.toJSON()),
    };
  }
}
