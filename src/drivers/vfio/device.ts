// A VFIO device as user space reaches it without a group (drivers/vfio/device_cdev.c): the
// device's character device, bound to an iommufd context and attached to one of its IOASes.
//
//   open   → EBUSY while the device's group file is open (vfio_device_block_group);
//   VFIO_DEVICE_BIND_IOMMUFD      → iommufd_device_bind (ownership claimed for the context);
//                                   EINVAL when already bound;
//   VFIO_DEVICE_ATTACH_IOMMUFD_PT → iommufd_device_attach to an IOAS; EINVAL unless bound;
//   VFIO_DEVICE_DETACH_IOMMUFD_PT → iommufd_device_detach (the group blocks DMA again);
//   close  → detach and unbind: the ownership goes, the group is back on its default domain.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { PciDev } from "../../bus/pci-dev.js";
import type { VfioGroup } from "./group.js";
import type { IommufdCtx, IommufdDevice, IommufdIoas } from "./iommufd.js";

/** `struct vfio_device` of a vfio-pci device, with its cdev's state. */
export class VfioDevice {
  /** The cdev file is open. */
  cdevOpen = false;
  /** The iommufd binding of the cdev, or null. */
  idev: IommufdDevice | null = null;

  constructor(
    readonly dev: PciDev,
    readonly group: VfioGroup,
  ) {}

  /** open of /dev/vfio/devices/vfioX. */
  openCdev(): Result {
    if (this.cdevOpen) throw new SimError(`${this.dev.name}: the cdev is already open here`);
    if (this.group.opened) return err("EBUSY");
    this.cdevOpen = true;
    this.group.cdevOpenCount++;
    return OK;
  }

  /** VFIO_DEVICE_BIND_IOMMUFD. */
  bindIommufd(ictx: IommufdCtx): Result {
    this.#checkOpen();
    if (this.idev !== null) return err("EINVAL");
    const r = ictx.bind(this.dev);
    if (!r.ok) return r;
    this.idev = r.value;
    return OK;
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT with an IOAS. */
  attachIoasPt(ioas: IommufdIoas): Result {
    this.#checkOpen();
    if (this.idev === null) return err("EINVAL");
    return this.idev.attach(ioas);
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  detachIoasPt(): Result {
    this.#checkOpen();
    if (this.idev === null) return err("EINVAL");
    this.idev.detach();
    return OK;
  }

  /** Closing the cdev (vfio_df_unbind_iommufd). */
  closeCdev(): void {
    if (!this.cdevOpen) return;
    this.idev?.unbind();
    this.idev = null;
    this.cdevOpen = false;
    this.group.cdevOpenCount--;
  }

  toJSON(): Json {
    return {
      device: this.dev.name,
      group: this.group.iommuGroup.id,
      cdev_open: this.cdevOpen,
      iommufd: this.idev === null ? null : this.idev.ictx.name,
    };
  }

  #checkOpen(): void {
    if (!this.cdevOpen) throw new SimError(`${this.dev.name}: the cdev is not open`);
  }
}
