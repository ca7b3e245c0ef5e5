// The driver core (drivers/base/core.c, dd.c, bus.c) for one machine: device add/remove with the
// bus notifier chain, driver registration, binding (`really_probe`) and unbinding, and deferred
// probing on an explicit work queue.
//
// The IOMMU-relevant contract, as in the kernel:
// - `really_probe` sets `dev->driver`, then calls the bus `dma_configure` hook (platform and PCI
//   call `iommu_device_use_default_domain` there unless the driver is `driver_managed_dma`); a
//   failure there (e.g. `EPROBE_DEFER` before the group's default domain exists) aborts the bind
//   without `dma_cleanup`. If the driver's probe fails afterwards, `dma_cleanup` runs (→ `unuse`).
// - unbind calls the driver's remove, then `dma_cleanup`, then clears `dev->driver`.
// - `EPROBE_DEFER` (from `dma_configure` or the driver) puts the device on the deferred list;
//   every successful bind triggers a retry of the whole list on the `deferred_probe` work queue.
// - `device_add` notifies BUS_NOTIFY_ADD_DEVICE before probing drivers; `device_del` releases
//   the driver and then notifies BUS_NOTIFY_REMOVED_DEVICE (the IOMMU layer probes and releases
//   devices from these notifications).

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { err, OK, type Result } from "../base/result.js";
import { Work, type WorkQueue } from "../base/workqueue.js";
import type { BusType, Device, DeviceDriver, IommuDmaHooks } from "./device.js";

/** The `!CONFIG_IOMMU_API` stubs: no IOMMU, nothing to configure or count. */
const NO_IOMMU: IommuDmaHooks = {
  configure: () => OK,
  useDefaultDomain: () => OK,
  unuseDefaultDomain: () => {},
};

export class DeviceModel {
  readonly #buses: BusType[] = [];
  #iommu: IommuDmaHooks = NO_IOMMU;
  /** `deferred_probe_pending_list`, in the order devices were deferred. */
  readonly #deferred: Device[] = [];
  readonly #deferredWq: WorkQueue;
  readonly #deferredWork: Work;

  constructor(readonly ctx: SimContext) {
    this.#deferredWq = ctx.scheduler.createQueue("deferred_probe");
    this.#deferredWork = new Work("deferred_probe_work_func", () => this.#deferredProbeWork());
  }

  /** `bus_register`. */
  busRegister(bus: BusType): void {
    if (this.#buses.some((b) => b.name === bus.name)) {
      throw new SimError(`a bus named "${bus.name}" is already registered`);
    }
    this.#buses.push(bus);
  }

  buses(): readonly BusType[] {
    return this.#buses;
  }

  bus(name: string): BusType | undefined {
    return this.#buses.find((b) => b.name === name);
  }

  /** The IOMMU layer installs the calls bus code makes into it (see `IommuDmaHooks`). */
  setIommuHooks(hooks: IommuDmaHooks | null): void {
    this.#iommu = hooks ?? NO_IOMMU;
  }

  get iommuHooks(): IommuDmaHooks {
    return this.#iommu;
  }

  /** `device_add`: registers the device, notifies ADD_DEVICE, then tries matching drivers. */
  deviceAdd(dev: Device): void {
    this.#checkBus(dev.bus);
    if (dev.registered) throw new SimError(`device ${dev.name} is already registered`);
    dev.bus.addDevice(dev);
    dev.registered = true;
    dev.bus.notify("ADD_DEVICE", dev);
    this.#busProbeDevice(dev);
  }

  /** `device_del`: notifies DEL_DEVICE, unbinds the driver, removes, notifies REMOVED_DEVICE. */
  deviceDel(dev: Device): void {
    if (!dev.registered) throw new SimError(`device ${dev.name} is not registered`);
    dev.bus.notify("DEL_DEVICE", dev);
    this.#deferredDel(dev);
    dev.bus.removeDevice(dev);
    this.deviceReleaseDriver(dev);
    dev.registered = false;
    dev.bus.notify("REMOVED_DEVICE", dev);
  }

  /** `driver_register`: adds the driver and binds it to every matching unbound device. */
  driverRegister(drv: DeviceDriver): void {
    this.#checkBus(drv.bus);
    drv.bus.addDriver(drv);
    for (const dev of [...drv.bus.devices()]) {
      if (dev.driver === null && dev.registered && drv.match?.(dev))
        this.#driverProbeDevice(drv, dev);
    }
  }

  /** `driver_unregister`: unbinds every device bound to the driver, then removes it. */
  driverUnregister(drv: DeviceDriver): void {
    for (const dev of [...drv.bus.devices()]) {
      if (dev.driver === drv) this.deviceReleaseDriver(dev);
    }
    drv.bus.removeDriver(drv);
  }

  /**
   * `device_driver_attach` (sysfs `bind`): binds `drv` to `dev` now. `EBUSY` if the device
   * already has a driver; otherwise the result of `really_probe`.
   */
  deviceDriverAttach(drv: DeviceDriver, dev: Device): Result {
    if (drv.bus !== dev.bus) {
      throw new SimError(`driver ${drv.name} (bus ${drv.bus.name}) cannot bind ${dev.name}`);
    }
    if (!dev.registered) throw new SimError(`device ${dev.name} is not registered`);
    if (!drv.bus.drivers().includes(drv))
      throw new SimError(`driver ${drv.name} is not registered`);
    if (dev.driver !== null) return err("EBUSY");
    return this.#driverProbeDevice(drv, dev);
  }

  /** `device_release_driver` (sysfs `unbind`): remove, then `dma_cleanup`, then clear the link. */
  deviceReleaseDriver(dev: Device): void {
    const drv = dev.driver;
    if (drv === null) return;
    dev.bus.notify("UNBIND_DRIVER", dev);
    drv.remove?.(dev);
    dev.bus.dma.dmaCleanup?.(dev, this.#iommu);
    dev.driver = null;
    dev.bus.notify("UNBOUND_DRIVER", dev);
  }

  /** `bus_probe_device` / `device_attach`: tries the bus's matching drivers in order. */
  deviceAttach(dev: Device): Result {
    if (!dev.registered) throw new SimError(`device ${dev.name} is not registered`);
    if (dev.driver !== null) return OK;
    return this.#busProbeDevice(dev);
  }

  /** `driver_deferred_probe_trigger`: schedule a retry of every deferred device. */
  driverDeferredProbeTrigger(): void {
    if (this.#deferred.length > 0) this.#deferredWq.queueWork(this.#deferredWork);
  }

  /** Devices waiting on the deferred-probe list, in order. */
  deferredDevices(): readonly Device[] {
    return this.#deferred;
  }

  toJSON(): Json {
    return {
      buses: this.#buses.map((b) => ({
        name: b.name,
        devices: b.devices().map((d) => d.name),
        drivers: b.drivers().map((d) => d.name),
      })),
      deferred_probe: this.#deferred.map((d) => d.name),
    };
  }

  #checkBus(bus: BusType): void {
    if (!this.#buses.includes(bus)) throw new SimError(`bus ${bus.name} is not registered`);
  }

  #busProbeDevice(dev: Device): Result {
    let last: Result = OK;
    for (const drv of [...dev.bus.drivers()]) {
      if (dev.driver !== null) break;
      if (!drv.match?.(dev)) continue;
      last = this.#driverProbeDevice(drv, dev);
      if (last.ok) return OK;
    }
    return last;
  }

  /** `driver_probe_device`: `really_probe`, deferring on EPROBE_DEFER. */
  #driverProbeDevice(drv: DeviceDriver, dev: Device): Result {
    const r = this.#reallyProbe(drv, dev);
    if (!r.ok && r.errno === "EPROBE_DEFER") this.#deferredAdd(dev);
    return r;
  }

  #reallyProbe(drv: DeviceDriver, dev: Device): Result {
    dev.driver = drv;
    const dma = dev.bus.dma.dmaConfigure?.(dev, this.#iommu) ?? OK;
    if (!dma.ok) {
      // pinctrl_bind_failed: no dma_cleanup, the configure step undid itself.
      dev.driver = null;
      return dma;
    }
    dev.bus.notify("BIND_DRIVER", dev);
    const probe = drv.probe?.(dev) ?? OK;
    if (!probe.ok) {
      dev.bus.notify("DRIVER_NOT_BOUND", dev);
      dev.bus.dma.dmaCleanup?.(dev, this.#iommu);
      dev.driver = null;
      return probe;
    }
    // driver_bound
    this.#deferredDel(dev);
    this.driverDeferredProbeTrigger();
    dev.bus.notify("BOUND_DRIVER", dev);
    return OK;
  }

  #deferredAdd(dev: Device): void {
    if (!this.#deferred.includes(dev)) this.#deferred.push(dev);
  }

  #deferredDel(dev: Device): void {
    const i = this.#deferred.indexOf(dev);
    if (i >= 0) this.#deferred.splice(i, 1);
  }

  /** `deferred_probe_work_func`: retries every device that was deferred when the work ran. */
  #deferredProbeWork(): void {
    const active = this.#deferred.splice(0);
    for (const dev of active) {
      if (dev.registered && dev.driver === null) this.#busProbeDevice(dev);
    }
  }
}
