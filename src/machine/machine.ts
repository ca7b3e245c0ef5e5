// A booted machine: one SimContext, physical memory and its frame allocator, the device model
// with its buses, the IOMMU core with its registered instances, devices by name and the device
// drivers bound to them, the device models doing DMA behind PCI functions, and the CPU side
// (address spaces, processes, a hart) sharing the same memory and frames. Machine actions (hot
// add/remove, bind/unbind, clock, deferred work) are methods here; kernel calls go straight to
// `core`, CPU-side calls to `processes`, `cpu` and the mm functions.

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { Result } from "../base/result.js";
import type { BusType, Device } from "../bus/device.js";
import type { DeviceModel } from "../bus/driver-core.js";
import { devIsPci } from "../bus/pci-dev.js";
import type { IommuProgrammingView } from "../check/invariants.js";
import { attachOracle, type IsolationOracle } from "../check/oracle.js";
import type { DmaApi } from "../dma/mapping.js";
import type { MockIommuDriver } from "../drivers/mock/mock-iommu.js";
import type { RiscvIommuSetup } from "../drivers/riscv/factory.js";
import type { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import type { IommuCore } from "../iommu/core.js";
import type { IommuDomain } from "../iommu/domain.js";
import type { IommuDevice } from "../iommu/ops.js";
import { Cpu } from "../mm/cpu.js";
import { initMm, KernelMm } from "../mm/init-mm.js";
import type { MmSubsystem } from "../mm/mm-types.js";
import { ProcessTable } from "../mm/process.js";
import {
  DEVICE_DRIVERS,
  type IommuDescription,
  type MachineDescription,
  type PlatformDeviceDescription,
} from "./description.js";
import { type DriverFit, type MachineDeviceDrivers, MachineDriver } from "./device-drivers.js";
import type { MachineEndpoints } from "./endpoints.js";
import type { MachinePci } from "./pci.js";

/** One IOMMU instance of the machine. */
export interface MachineIommu {
  readonly name: string;
  readonly description: IommuDescription;
  /** The registered `iommu_device`. */
  readonly instance: IommuDevice;
  /** The IOMMU's own platform device (its firmware node is what devices' `iommus` point at). */
  readonly hwdev: Device;
  /** The driver object, when the instance runs the mock driver. */
  readonly mock: MockIommuDriver | null;
  /** The hardware and driver, when the instance is a RISC-V IOMMU. */
  readonly riscv: RiscvIommuSetup | null;
  /** What the driver programmed per device (for invariants and `programmed_*` expectations). */
  readonly programming: IommuProgrammingView | null;
}

/**
 * The machine description's name of a device: a PCI function's hardware name (the builder names
 * functions after the description), else the device's own name (`dev_name`).
 */
export function describedName(dev: Device): string {
  return devIsPci(dev) ? dev.fn.name : dev.name;
}

export interface MachineParts {
  readonly description: MachineDescription;
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly model: DeviceModel;
  readonly core: IommuCore;
  readonly buses: { readonly platform: BusType; readonly pci: BusType };
  readonly iommus: readonly MachineIommu[];
  /** The PCI hierarchy (hardware and the OS's pci_devs). */
  readonly pci: MachinePci;
  /** IO bridges and the device models behind PCI functions. */
  readonly endpoints: MachineEndpoints;
  /** The CPU side's machine-wide state, on the machine's memory and frames. */
  readonly mm: MmSubsystem;
  /** The DMA API (dma-iommu and dma-direct), installed at boot. */
  readonly dma: DmaApi;
  /** The device drivers (idxd, nic, vfio-pci). */
  readonly deviceDrivers: MachineDeviceDrivers;
  /** Creates a fresh (not yet added) platform device for a described one. */
  readonly createPlatformDevice: (desc: PlatformDeviceDescription) => Device;
  /** Invariant checkers; each returns the violations it finds. */
  readonly checks: readonly ((m: Machine) => readonly string[])[];
}

export class Machine {
  readonly description: MachineDescription;
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly model: DeviceModel;
  readonly core: IommuCore;
  readonly buses: { readonly platform: BusType; readonly pci: BusType };
  readonly pci: MachinePci;
  readonly endpoints: MachineEndpoints;
  readonly mm: MmSubsystem;
  readonly dma: DmaApi;
  /** The device drivers the description's `driver:` names bind (idxd, nic, vfio-pci). */
  readonly deviceDrivers: MachineDeviceDrivers;
  /** Processes (spawn, fork, exit, wait). */
  readonly processes: ProcessTable;
  /** The hart running the processes' loads and stores. */
  readonly cpu: Cpu;
  readonly #iommus: readonly MachineIommu[];
  /** The current object of every described platform device (present or not). */
  readonly #platform = new Map<string, Device>();
  readonly #drivers: MachineDriver[] = [];
  readonly #createPlatformDevice: (desc: PlatformDeviceDescription) => Device;
  readonly #checks: readonly ((m: Machine) => readonly string[])[];
  /** What went wrong during boot and was logged rather than fatal (a failed IOMMU probe, …). */
  readonly bootLog: string[] = [];
  #oracle: IsolationOracle | null = null;

  constructor(parts: MachineParts) {
    this.description = parts.description;
    this.ctx = parts.ctx;
    this.memory = parts.memory;
    this.frames = parts.frames;
    this.model = parts.model;
    this.core = parts.core;
    this.buses = parts.buses;
    this.pci = parts.pci;
    this.endpoints = parts.endpoints;
    this.mm = parts.mm;
    this.dma = parts.dma;
    this.deviceDrivers = parts.deviceDrivers;
    this.processes = new ProcessTable(parts.mm);
    this.cpu = new Cpu(parts.mm);
    this.#iommus = parts.iommus;
    this.#createPlatformDevice = parts.createPlatformDevice;
    this.#checks = parts.checks;
  }

  get name(): string {
    return this.description.name;
  }

  iommus(): readonly MachineIommu[] {
    return this.#iommus;
  }

  iommu(name: string): MachineIommu | undefined {
    return this.#iommus.find((i) => i.name === name);
  }

  /**
   * The device a description name stands for: a platform device (present or not), or the
   * pci_dev of a PCI function or bridge while it is plugged in.
   */
  device(name: string): Device | undefined {
    return this.#platform.get(name) ?? this.pci.pciDev(name);
  }

  /** Names of the described devices that are present, in description order. */
  presentDevices(): string[] {
    return this.description.devices
      .filter((d) => this.device(d.name)?.registered)
      .map((d) => d.name);
  }

  /** @internal the builder records each platform device object it creates. */
  adoptPlatform(name: string, dev: Device): void {
    this.#platform.set(name, dev);
  }

  /**
   * The driver registered under `name` on `bus`, registered now if it is new: one of the
   * machine's device drivers (DEVICE_DRIVERS), or a name-only driver. `driverManagedDma`
   * defaults to the device driver's own (false for a name-only driver).
   */
  driver(name: string, bus: BusType, driverManagedDma?: boolean): MachineDriver {
    const known = Object.hasOwn(DEVICE_DRIVERS, name) ? DEVICE_DRIVERS[name] : undefined;
    const dmd = driverManagedDma ?? known?.driverManagedDma ?? false;
    let drv = this.#drivers.find((d) => d.name === name && d.bus === bus);
    if (drv) {
      if (drv.driverManagedDma !== dmd) {
        throw new SimError(
          `driver ${name} is registered with driver_managed_dma=${drv.driverManagedDma}`,
        );
      }
      return drv;
    }
    const impl = this.deviceDrivers.implementation(name, bus);
    if (impl !== null && (impl.driverManagedDma ?? false) !== dmd) {
      throw new SimError(`the ${name} driver has driver_managed_dma=${!dmd}`);
    }
    drv = new MachineDriver(name, bus, dmd, impl, describedName, (dev) =>
      this.#driverFit(name, dev),
    );
    this.#drivers.push(drv);
    this.model.driverRegister(drv);
    return drv;
  }

  /**
   * idxd and nic drive their device models (none behind a mock IOMMU: they bind name-only there);
   * vfio-pci hands any PCI endpoint to user space.
   */
  #driverFit(driver: string, dev: Device): DriverFit {
    const endpoint = DEVICE_DRIVERS[driver]?.endpoint ?? null;
    if (endpoint === null) return "drive";
    const name = describedName(dev);
    const d = this.description.devices.find((x) => x.name === name);
    if (d?.endpoint !== endpoint) return "unsupported";
    return this.endpoints.model(name) === undefined ? "name-only" : "drive";
  }

  drivers(): readonly MachineDriver[] {
    return this.#drivers;
  }

  // ---------------------------------------------------------------- machine actions

  /**
   * Plugs in a described device that is not present: a fresh platform device is added, or the
   * PCI device (every function of its slot) is plugged into its hot-plug slot and scanned.
   */
  hotAdd(name: string): void {
    const desc = this.description.devices.find((d) => d.name === name);
    if (!desc) throw new SimError(`no device "${name}" in the machine description`);
    if (this.device(name)?.registered) throw new SimError(`device ${name} is already present`);
    if (desc.bus === "pci") {
      // The device models come with the hardware, before the OS scans it (endpoints).
      this.pci.plug(name);
      return;
    }
    const dev = this.#createPlatformDevice(desc);
    this.#platform.set(name, dev);
    this.model.deviceAdd(dev);
  }

  /**
   * Unplugs a present device: `device_del` for a platform device; surprise removal of the whole
   * PCI device from its slot (children first) for a PCI function.
   */
  hotRemove(name: string): void {
    const desc = this.description.devices.find((d) => d.name === name);
    const dev = this.device(name);
    if (!desc || !dev?.registered) throw new SimError(`device ${name} is not present`);
    if (desc.bus === "pci") {
      // The OS lets go first (its IOMMU driver may still invalidate the device's ATC).
      this.pci.unplug(name);
      this.endpoints.detach(this.pci.slotOf(name));
    } else {
      this.model.deviceDel(dev);
    }
  }

  /**
   * Binds a driver to a device (sysfs `bind`, `device_driver_attach`), registering the driver on
   * the device's bus the first time its name is used.
   */
  bindDriver(dev: Device, name: string, driverManagedDma?: boolean): Result {
    if (!dev.registered) throw new SimError(`device ${dev.name} is not present`);
    const drv = this.driver(name, dev.bus, driverManagedDma);
    return this.model.deviceDriverAttach(drv, dev);
  }

  /** Unbinds the device's driver (sysfs `unbind`, `device_release_driver`); no driver: nothing. */
  unbindDriver(dev: Device): void {
    this.model.deviceReleaseDriver(dev);
  }

  /** Advances virtual time, firing timers that fall due. */
  advance(ns: number): void {
    this.ctx.clock.advance(ns);
  }

  /**
   * Runs every deferred work item to completion, in FIFO order across queues: devices' engines,
   * IOMMU interrupt threads, IOPF work, deferred probes, SRCU callbacks. Returns how many ran.
   */
  settle(): number {
    return this.ctx.scheduler.settle();
  }

  /**
   * `init_mm`, the kernel address space (its vmap mappings; historical supervisor SVA binds walk
   * it), created on first use.
   */
  initMm(): KernelMm {
    return initMm(this.mm);
  }

  /**
   * What the IOMMU driver last programmed for the device's RID traffic (the "hardware" view),
   * or null when it programmed nothing (or the device has no IOMMU).
   */
  programmedDomain(dev: Device): IommuDomain | null {
    return this.#viewOf(dev)?.ridDomain(dev) ?? null;
  }

  /** What the driver programmed at (dev, pasid), or null when the PASID is blocked. */
  programmedPasidDomain(dev: Device, pasid: number): IommuDomain | null {
    return this.#viewOf(dev)?.pasidDomain(dev, pasid) ?? null;
  }

  /** PASIDs the driver has programmed with a domain on the device, ascending. */
  programmedPasids(dev: Device): number[] {
    return this.#viewOf(dev)?.programmedPasids(dev) ?? [];
  }

  #viewOf(dev: Device): IommuProgrammingView | null {
    const inst = dev.iommu?.iommuDev;
    return this.#iommus.find((i) => i.instance === inst)?.programming ?? null;
  }

  /**
   * The isolation oracle (src/check/oracle.ts) on every IO bridge of the machine, attached on
   * first use: from now on every device access is compared with what the OS maps.
   */
  attachIsolationOracle(): IsolationOracle {
    this.#oracle ??= attachOracle(this);
    return this.#oracle;
  }

  /** The isolation oracle, if attached. */
  get isolationOracle(): IsolationOracle | null {
    return this.#oracle;
  }

  /** Broken invariants, one message each (empty: consistent). */
  checkInvariants(): string[] {
    return this.#checks.flatMap((c) => c(this));
  }

  toJSON(): Json {
    const core = this.core.toJSON() as { [k: string]: Json };
    return {
      name: this.name,
      clock_ns: this.ctx.clock.now,
      memory: { ram: this.memory.toJSON(), frames: this.frames.toJSON() },
      policy: core.policy ?? null,
      iommus: this.#iommus.map((i) => ({
        name: i.name,
        driver: i.description.driver,
        instance: i.instance.toJSON(),
        programmed: i.mock?.toJSON() ?? null,
        hardware: i.riscv?.hardware.toJSON() ?? null,
      })),
      pci: this.pci.hosts.map(({ host, iommu }) => ({ iommu, host: host.toJSON() })),
      devices: this.description.devices.map((d) => ({
        name: d.name,
        present: this.device(d.name)?.registered ?? false,
        device: this.device(d.name)?.toJSON() ?? null,
      })),
      endpoints: this.endpoints.toJSON(),
      io_bridges: this.endpoints.bridges.map((b) => b.toJSON()),
      processes: this.processes.toJSON(),
      dma: this.dma.toJSON(),
      mms: this.mm.liveMms().map((mm) => ({
        ...(mm.toJSON() as { [k: string]: Json }),
        init_mm: mm instanceof KernelMm,
      })),
      drivers: this.#drivers.map((d) => ({
        name: d.name,
        bus: d.bus.name,
        driver_managed_dma: d.driverManagedDma,
      })),
      device_drivers: this.deviceDrivers.toJSON(),
      groups: core.groups ?? [],
      domains: core.domains ?? [],
      global_pasids: core.global_pasids ?? [],
      sva_mms: core.sva_mms ?? [],
      iopf: core.iopf ?? null,
      isolation: this.#oracle?.toJSON() ?? null,
      boot_log: [...this.bootLog],
      warnings: this.ctx.warnings.list().map((w) => ({ site: w.site, message: w.message })),
    };
  }
}
