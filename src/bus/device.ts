// `struct device`, `struct device_driver` and `struct bus_type`, reduced to what the IOMMU
// subsystem touches.
// The device model (this layer) must not import the IOMMU layer, so the two IOMMU links of a
// device (`iommu_group` and `dev->iommu->iommu_dev`) are typed here by the small interfaces below;
// the IOMMU layer stores its own objects in them and checks them when it reads them back.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { Result } from "../base/result.js";
import { FirmwareDescription, FwNode } from "./firmware.js";

/** What the device model sees of an IOMMU group (`struct iommu_group`, owned by the IOMMU layer). */
export interface IommuGroupLink {
  readonly id: number;
}

/** What the device model sees of an IOMMU instance (`struct iommu_device`). */
export interface IommuInstanceLink {
  readonly name: string;
}

/** `struct iommu_fwspec`: the IOMMU firmware node that claims the device and its IDs. */
export interface IommuFwspec {
  readonly iommuFwnode: FwNode | null;
  readonly ids: number[];
}

/**
 * `struct dev_iommu` (`dev->iommu`): per-device IOMMU data, allocated when the device is first
 * seen by the IOMMU layer and freed when it is released.
 */
export class DevIommu {
  fwspec: IommuFwspec | null = null;
  /** The IOMMU instance that claimed the device (set from `ops->probe_device`). */
  iommuDev: IommuInstanceLink | null = null;
  /** Driver-private data (`dev_iommu_priv_get/set`). */
  priv: unknown = null;
  /** Number of PASIDs the device may use; 0 = no PASID support (core §1.1). */
  maxPasids = 0;
  /** The default domain attach is postponed until first DMA-API use (`iommu_deferred_attach`). */
  attachDeferred = false;
  /** Firmware declared an IOMMU_RESV_DIRECT region: blocking domains are forbidden (§3.3). */
  requireDirect = false;
  pci32bitWorkaround = false;
  shadowOnFlush = false;
  /** `fault_param`: present while the device is on an IOPF queue (owned by the IOMMU layer). */
  faultParam: unknown = null;

  toJSON(): Json {
    return {
      iommu_dev: this.iommuDev?.name ?? null,
      fwspec: this.fwspec
        ? { iommu_fwnode: this.fwspec.iommuFwnode?.name ?? null, ids: [...this.fwspec.ids] }
        : null,
      max_pasids: this.maxPasids,
      attach_deferred: this.attachDeferred,
      require_direct: this.requireDirect,
      pci_32bit_workaround: this.pci32bitWorkaround,
      shadow_on_flush: this.shadowOnFlush,
      iopf: this.faultParam !== null,
    };
  }
}

/** `struct device`. */
export class Device {
  /** The bound driver, or null. */
  driver: DeviceDriver | null = null;
  /** `dev->iommu_group`, set by the IOMMU layer at probe. */
  iommuGroup: IommuGroupLink | null = null;
  /** `dev->iommu`, set by the IOMMU layer at probe. */
  iommu: DevIommu | null = null;
  /** `dev->dma_iommu`: the DMA API goes through the IOMMU (a DMA-API domain is the default). */
  dmaIommu = false;
  /** True between `device_add` and `device_del`. */
  registered = false;
  readonly fw: FirmwareDescription;

  constructor(
    readonly name: string,
    readonly bus: BusType,
    fw: FirmwareDescription = new FirmwareDescription({ node: new FwNode(name) }),
  ) {
    this.fw = fw;
  }

  /** `dev_name(dev)`. */
  toString(): string {
    return this.name;
  }

  toJSON(): Json {
    return {
      name: this.name,
      bus: this.bus.name,
      driver: this.driver?.name ?? null,
      registered: this.registered,
      iommu_group: this.iommuGroup?.id ?? null,
      iommu: this.iommu?.toJSON() ?? null,
      dma_iommu: this.dmaIommu,
      fw: this.fw.toJSON(),
      ...this.extraJSON(),
    };
  }

  /** Bus-specific fields of the JSON view. */
  protected extraJSON(): { [key: string]: Json } {
    return {};
  }
}

/** `struct device_driver` (with the `driver_managed_dma` flag of platform/PCI drivers). */
export interface DeviceDriver {
  readonly name: string;
  readonly bus: BusType;
  /**
   * The driver manages DMA itself (VFIO, iommufd-bound drivers): the driver core does not call
   * `iommu_device_use_default_domain` for it.
   */
  readonly driverManagedDma?: boolean;
  /** Bus match (`driver_match_device`); without it the driver binds only when asked to. */
  match?(dev: Device): boolean;
  /** `probe`: 0 or an errno (`EPROBE_DEFER` puts the device on the deferred-probe list). */
  probe?(dev: Device): Result;
  /** `remove`. */
  remove?(dev: Device): void;
}

// ---- `struct bus_type`: the devices and drivers of one bus, its notifier chain, and the bus
// hooks the driver core calls around a driver's probe (`dma_configure` / `dma_cleanup`).

/** `BUS_NOTIFY_*` events (include/linux/device/bus.h), by name. */
export type BusNotifyAction =
  | "ADD_DEVICE"
  | "DEL_DEVICE"
  | "REMOVED_DEVICE"
  | "BIND_DRIVER"
  | "BOUND_DRIVER"
  | "UNBIND_DRIVER"
  | "UNBOUND_DRIVER"
  | "DRIVER_NOT_BOUND";

export type BusNotifier = (action: BusNotifyAction, dev: Device) => void;

/**
 * The calls bus code makes into the IOMMU layer. In the kernel drivers/base and drivers/pci call
 * these functions directly; here the IOMMU layer registers them with the device model, because
 * the device model may not import it. Without an IOMMU layer the defaults are the kernel's
 * `!CONFIG_IOMMU_API` stubs.
 */
export interface IommuDmaHooks {
  /**
   * The firmware half of `dma_configure` (`of_iommu_configure` / ACPI): when firmware links the
   * device to an IOMMU that has not registered yet, `EPROBE_DEFER`; otherwise make sure the
   * device is probed by it.
   */
  configure(dev: Device): Result;
  /** `iommu_device_use_default_domain`. */
  useDefaultDomain(dev: Device): Result;
  /** `iommu_device_unuse_default_domain`. */
  unuseDefaultDomain(dev: Device): void;
}

/** The bus callbacks around driver probe (`bus_type.dma_configure` / `.dma_cleanup`). */
export interface BusDmaOps {
  dmaConfigure?(dev: Device, iommu: IommuDmaHooks): Result;
  dmaCleanup?(dev: Device, iommu: IommuDmaHooks): void;
}

export class BusType {
  readonly #devices: Device[] = [];
  readonly #drivers: DeviceDriver[] = [];
  readonly #notifiers: BusNotifier[] = [];

  constructor(
    readonly name: string,
    readonly dma: BusDmaOps = {},
  ) {}

  /** Registered devices in registration order (`bus_for_each_dev` order). */
  devices(): readonly Device[] {
    return this.#devices;
  }

  drivers(): readonly DeviceDriver[] {
    return this.#drivers;
  }

  /** `bus_find_device_by_name`. */
  findDevice(name: string): Device | undefined {
    return this.#devices.find((d) => d.name === name);
  }

  /**
   * `bus_for_each_dev`: calls `fn` on each device in order, stopping at the first non-zero
   * return, which it returns. Iterates a snapshot so `fn` may remove the device it is given.
   */
  forEachDev<T>(fn: (dev: Device) => T | 0): T | 0 {
    for (const dev of [...this.#devices]) {
      const r = fn(dev);
      if (r !== 0) return r;
    }
    return 0;
  }

  /** `bus_register_notifier`. */
  registerNotifier(nb: BusNotifier): void {
    if (this.#notifiers.includes(nb)) throw new SimError(`notifier already on bus ${this.name}`);
    this.#notifiers.push(nb);
  }

  /** `bus_unregister_notifier`. */
  unregisterNotifier(nb: BusNotifier): void {
    const i = this.#notifiers.indexOf(nb);
    if (i >= 0) this.#notifiers.splice(i, 1);
  }

  /** `bus_notify`: runs the notifier chain in registration order. */
  notify(action: BusNotifyAction, dev: Device): void {
    for (const nb of [...this.#notifiers]) nb(action, dev);
  }

  /** @internal the device model's `bus_add_device`. */
  addDevice(dev: Device): void {
    if (this.#devices.some((d) => d.name === dev.name)) {
      throw new SimError(`bus ${this.name} already has a device named "${dev.name}"`);
    }
    this.#devices.push(dev);
  }

  /** @internal the device model's `bus_remove_device`. */
  removeDevice(dev: Device): void {
    const i = this.#devices.indexOf(dev);
    if (i >= 0) this.#devices.splice(i, 1);
  }

  /** @internal `bus_add_driver`. */
  addDriver(drv: DeviceDriver): void {
    if (this.#drivers.some((d) => d.name === drv.name)) {
      throw new SimError(`bus ${this.name} already has a driver named "${drv.name}"`);
    }
    this.#drivers.push(drv);
  }

  /** @internal `bus_remove_driver`. */
  removeDriver(drv: DeviceDriver): void {
    const i = this.#drivers.indexOf(drv);
    if (i >= 0) this.#drivers.splice(i, 1);
  }
}
