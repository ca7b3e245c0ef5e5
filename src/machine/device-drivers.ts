// The device drivers a machine binds by the names its description uses (DEVICE_DRIVERS in
// description.ts): `idxd` (src/drivers/dsa), `nic` (the e1000-like driver, src/drivers/nic) and
// `vfio-pci` (src/drivers/vfio). One driver object per machine, built on the machine's IOMMU
// core, DMA API, memory and IO bridges, as the kernel has one module instance.
//
// A driver binds the devices whose description names it (as if each had its `driver_override`
// set), not every device its ID table would match: `driver: null` leaves a device unbound. The
// device drivers program real hardware (registers through the IO bridge, DMA through the IOMMU);
// a device behind a mock IOMMU has no device model, so there the driver binds as a name-only
// DMA-API user, which is all the IOMMU core sees of any driver (its use of the default domain).

import type { Json } from "../base/json.js";
import { err, OK, type Result } from "../base/result.js";
import type { BusType, Device, DeviceDriver } from "../bus/device.js";
import type { DmaApi } from "../dma/mapping.js";
import { IdxdDriver } from "../drivers/dsa/idxd.js";
import { NicDriver } from "../drivers/nic/e1000.js";
import { VfioPciDriver } from "../drivers/vfio/vfio-pci.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import type { IoBridge } from "../hw/pci/io-bridge.js";
import type { IommuCore } from "../iommu/core.js";
import { DEVICE_DRIVERS } from "./description.js";

export interface DeviceDriverEnv {
  readonly core: IommuCore;
  readonly dma: DmaApi;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly bridges: readonly IoBridge[];
  readonly pci: BusType;
}

/** The machine's device drivers. */
export class MachineDeviceDrivers {
  readonly idxd: IdxdDriver;
  readonly nic: NicDriver;
  readonly vfio: VfioPciDriver;

  constructor(env: DeviceDriverEnv) {
    const { core, dma, memory, frames, bridges, pci } = env;
    this.idxd = new IdxdDriver({ core, dma, memory, bridges }, pci);
    this.nic = new NicDriver({ dma, memory, frames, bridges }, pci);
    this.vfio = new VfioPciDriver(core, pci);
  }

  /** The driver a description name stands for on `bus`, or null for a name-only driver. */
  implementation(name: string, bus: BusType): DeviceDriver | null {
    if (!Object.hasOwn(DEVICE_DRIVERS, name) || bus.name !== "pci") return null;
    return name === "idxd" ? this.idxd : name === "nic" ? this.nic : this.vfio;
  }

  toJSON(): Json {
    return { idxd: this.idxd.toJSON(), nic: this.nic.toJSON(), vfio: this.vfio.toJSON() };
  }
}

/**
 * How a machine driver binds a device: its implementation drives it (`drive`), it binds as a
 * name-only DMA-API user (no implementation, or no device model behind a mock IOMMU), or the
 * device is not one the implementation supports (ENODEV, as a driver's probe refuses a device
 * forced on it through driver_override).
 */
export type DriverFit = "drive" | "name-only" | "unsupported";

/**
 * A driver as the machine registers it: it matches the devices whose description names it and
 * probes each as `fit` says.
 */
export class MachineDriver implements DeviceDriver {
  /** Device names the driver binds to by itself (its id table, as it were). */
  readonly matches = new Set<string>();
  /** Devices the implementation probed and drives. */
  readonly #driven = new Set<Device>();

  constructor(
    readonly name: string,
    readonly bus: BusType,
    readonly driverManagedDma: boolean,
    readonly impl: DeviceDriver | null,
    private readonly describedName: (dev: Device) => string,
    private readonly fit: (dev: Device) => DriverFit,
  ) {}

  match(dev: Device): boolean {
    return this.matches.has(this.describedName(dev));
  }

  probe(dev: Device): Result {
    const fit = this.impl === null ? "name-only" : this.fit(dev);
    if (fit === "unsupported") return err("ENODEV");
    if (fit === "name-only") return OK;
    const r = this.impl!.probe?.(dev) ?? OK;
    if (r.ok) this.#driven.add(dev);
    return r;
  }

  remove(dev: Device): void {
    if (!this.#driven.delete(dev)) return;
    this.impl!.remove?.(dev);
  }

  /** Whether the implementation drives `dev` (false for a name-only binding). */
  drives(dev: Device): boolean {
    return this.#driven.has(dev);
  }
}
