// Boots a machine from a validated description, in the order a Linux boot takes: buses and the
// IOMMU core (`iommu_subsys_init`), device drivers, the IOMMUs' own platform devices, the
// devices (their drivers' probes defer: their IOMMU is not there yet), then each IOMMU instance
// registers (`iommu_device_register`: bus probe, groups, default domains) and the deferred
// driver probes run.

import { createContext, type SimContext } from "../base/context.js";
import { InputError, SimError } from "../base/errors.js";
import { ok, type Result } from "../base/result.js";
import { Device } from "../bus/device.js";
import { DeviceModel } from "../bus/driver-core.js";
import { FirmwareDescription, FwNode, IOMMU_RESV, type IommuResvRegion } from "../bus/firmware.js";
import { createPciBus } from "../bus/pci-dev.js";
import { createPlatformBus } from "../bus/platform.js";
import { checkCore } from "../check/invariants.js";
import { installDmaApi } from "../dma/mapping.js";
import { type MockIommuConfig, MockIommuDriver } from "../drivers/mock/mock-iommu.js";
import { createRiscvIommu, type RiscvIommuSetup } from "../drivers/riscv/factory.js";
import { FrameAllocator, PhysicalMemory } from "../hw/memory.js";
import type { RiscvIommu } from "../hw/riscv-iommu/iommu.js";
import {
  IOMMU_CACHE,
  IOMMU_CAP,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../iommu/constants.js";
import { IommuCore } from "../iommu/core.js";
import { MmSubsystem } from "../mm/mm-types.js";
import {
  type DeviceDescription,
  type IommuDescription,
  type MachineDescription,
  type PlatformDeviceDescription,
  type ProtName,
  type ResvTypeName,
  withIommuDriver,
} from "./description.js";
import { MachineDeviceDrivers } from "./device-drivers.js";
import { MachineEndpoints } from "./endpoints.js";
import type { IommuCapName, MockIommuOptions } from "./iommu-options.js";
import { machineDescription } from "./load.js";
import { Machine, type MachineIommu } from "./machine.js";
import { MachinePci } from "./pci.js";
import { riscvProgrammingView } from "./riscv-view.js";

export interface BuildOptions {
  /** Seed of the machine's RNG (default 1). */
  readonly seed?: number;
  /** Runs every IOMMU instance with this driver instead of the described one. */
  readonly driver?: string;
  /** Called with the machine's context before anything boots (to record the boot's trace). */
  readonly onContext?: (ctx: SimContext) => void;
}

/**
 * Boots the machine a description (or a built-in machine's name) describes. Invalid input throws
 * an InputError naming every problem.
 */
export function buildMachine(input: MachineDescription | string, opts: BuildOptions = {}): Machine {
  let desc = typeof input === "string" ? machineDescription(input) : input;
  if (opts.driver !== undefined) desc = withIommuDriver(desc, opts.driver);

  const ctx = createContext({ seed: opts.seed ?? 1 });
  opts.onContext?.(ctx);
  const memory = new PhysicalMemory(desc.ram.map((r) => ({ base: r.base, size: r.size })));
  const frames = new FrameAllocator(memory);
  const model = new DeviceModel(ctx);
  const platform = createPlatformBus();
  const pci = createPciBus();
  model.busRegister(platform);
  model.busRegister(pci);
  const core = new IommuCore(ctx, model, {
    ...(desc.boot.passthrough === undefined ? {} : { passthrough: desc.boot.passthrough }),
    ...(desc.boot.strict === undefined ? {} : { strict: desc.boot.strict }),
    configDefaultPassthrough: desc.boot.configDefaultPassthrough,
    configDefaultDmaStrict: desc.boot.configDefaultDmaStrict,
  });
  // The DMA layer is there from boot, before any IOMMU registers (its hooks give DMA domains
  // their IOVA cookies and flush queues).
  const dma = installDmaApi(core, {
    memory,
    frames,
    nrCpus: desc.cpus,
    forcedac: desc.boot.forcedac,
  });

  // The IOMMUs' own devices come first: they are what devices' firmware `iommus` links name.
  const hwdevs = new Map<string, Device>();
  for (const i of desc.iommus) {
    const hw = new Device(i.name, platform, new FirmwareDescription({ node: new FwNode(i.name) }));
    hwdevs.set(i.name, hw);
  }
  // Platform devices' stream IDs: their position among the platform devices.
  const streamIds = new Map<string, number>();
  desc.devices
    .filter((d) => d.bus === "platform")
    .forEach((d, i) => {
      streamIds.set(d.name, i);
    });
  const createPlatformDevice = (d: PlatformDeviceDescription): Device => {
    const hw = d.iommu === null ? undefined : hwdevs.get(d.iommu);
    const fw = new FirmwareDescription({
      node: new FwNode(d.name),
      properties: d.pasidNumBits === undefined ? {} : { "pasid-num-bits": d.pasidNumBits },
      resvRegions: d.reservedRegions.map(resvRegion),
      iommus: hw ? { fwnode: hw.fw.node, ids: [streamIds.get(d.name)!] } : null,
    });
    return new Device(d.name, platform, fw);
  };

  const iommus: MachineIommu[] = [];
  const mocks = new Map<string, MockIommuDriver>();
  for (const i of desc.iommus) {
    if (i.options.driver === "mock") {
      mocks.set(i.name, new MockIommuDriver(core, mockConfig(i, i.options.mock)));
    }
  }
  const machinePci = new MachinePci(pci, desc);
  try {
    machinePci.build(ctx, desc);
  } catch (e) {
    // What the PCI hardware refuses (bus numbers or apertures exhausted, …) is the description's.
    if (e instanceof SimError)
      throw new InputError(`pci: the hierarchy cannot be built: ${e.message}`);
    throw e;
  }
  // The device models are the hardware behind the functions: there from the start.
  const endpoints = new MachineEndpoints(machinePci, desc, memory);
  endpoints.attachPresent();
  const deviceDrivers = new MachineDeviceDrivers({
    core,
    dma,
    memory,
    frames,
    bridges: endpoints.bridges,
    pci,
  });
  const mm = new MmSubsystem(ctx, memory, frames, { nrCpus: desc.cpus });
  // Supervisor SVA binds (seed 003) bind this machine's init_mm.
  core.setMmSubsystem(mm);
  const machine = new Machine({
    description: desc,
    ctx,
    memory,
    frames,
    model,
    core,
    buses: { platform, pci },
    pci: machinePci,
    endpoints,
    mm,
    dma,
    deviceDrivers,
    iommus,
    createPlatformDevice,
    checks: [coreInvariants],
  });

  // Device drivers register before the devices appear, so device_add tries to bind them (their
  // probe defers until the device's IOMMU has registered).
  for (const d of desc.devices) {
    if (d.driver === null) continue;
    const bus = d.bus === "pci" ? pci : platform;
    machine.driver(d.driver.name, bus, d.driver.driverManagedDma).matches.add(d.name);
  }
  for (const hw of hwdevs.values()) model.deviceAdd(hw);
  for (const d of desc.devices) {
    if (d.bus !== "platform") continue;
    const dev = createPlatformDevice(d);
    machine.adoptPlatform(d.name, dev);
    if (d.present) model.deviceAdd(dev);
  }
  const iommuNodes = new Map([...hwdevs].map(([n, hw]) => [n, hw.fw.node]));
  endpoints.followHotplug();
  // Firmware reserved regions of PCI functions (ACPI RMR / DT memory-region), known before any
  // IOMMU probes the devices, hot-plugged ones included.
  const pciDescs = new Map(desc.devices.flatMap((d) => (d.bus === "pci" ? [[d.name, d]] : [])));
  machinePci.scan(model, iommuNodes, desc.iommus.length > 0, (fn, fw) => {
    for (const r of pciDescs.get(fn.name)?.reservedRegions ?? []) fw.addResvRegion(resvRegion(r));
  });

  for (const i of desc.iommus) {
    const hwdev = hwdevs.get(i.name)!;
    const up = registerIommu(i, hwdev, mocks.get(i.name), { ctx, memory, frames, core });
    // The IOMMU hardware sits in front of its host bridge whether or not its driver came up (a
    // RISC-V IOMMU left Off disallows every inbound transaction).
    if (up.hardware !== null) endpoints.setTranslationAgent(i.name, up.hardware);
    if (up.iommu.ok) iommus.push(up.iommu.value);
    // The kernel logs a failed IOMMU probe and boots on without it.
    else machine.bootLog.push(`iommu_device_register(${i.name}) failed: -${up.iommu.errno}`);
  }
  // Deferred driver probes (triggered by each registration) run now.
  ctx.scheduler.settle();
  return machine;
}

/**
 * Registers one IOMMU instance with its driver (mock or RISC-V); `hardware` is the RISC-V IOMMU
 * model (present even when its driver failed), null for the mock driver.
 */
function registerIommu(
  i: IommuDescription,
  hwdev: Device,
  mock: MockIommuDriver | undefined,
  parts: { ctx: SimContext; memory: PhysicalMemory; frames: FrameAllocator; core: IommuCore },
): { iommu: Result<MachineIommu>; hardware: RiscvIommu | null } {
  if (i.options.driver === "mock") {
    armFaults(mock!, i.options.mock);
    const maxPasids = i.pasidBits === 0 ? 0 : 2 ** i.pasidBits;
    const r = mock!.registerInstance(i.name, hwdev, maxPasids);
    if (!r.ok) return { iommu: r, hardware: null };
    return {
      iommu: ok({
        name: i.name,
        description: i,
        instance: r.value,
        hwdev,
        mock: mock!,
        riscv: null,
        programming: mock!,
      }),
      hardware: null,
    };
  }
  const o = i.options.riscv;
  let setup: RiscvIommuSetup;
  try {
    setup = createRiscvIommu({
      ...parts,
      name: i.name,
      hwdev,
      capabilities: { ...pdCapabilities(i.pasidBits), ...o.capabilities },
      options: {
        ...(o.irqs === undefined ? {} : { irqs: o.irqs }),
        ...(o.msi === undefined ? {} : { msi: o.msi }),
        ...(o.ddtMode === undefined ? {} : { ddtMode: o.ddtMode }),
        ...(o.pscidBits === undefined ? {} : { pscidBits: o.pscidBits }),
      },
    });
  } catch (e) {
    // A capability set the hardware cannot have (Sv57 without Sv48, …) is the description's.
    if (e instanceof SimError) {
      throw new InputError(`iommus.${i.name}.options: ${e.message}`, i.fieldLocs.options ?? i.loc);
    }
    throw e;
  }
  if (!setup.probe.ok) return { iommu: setup.probe, hardware: setup.hardware };
  return {
    iommu: ok({
      name: i.name,
      description: i,
      instance: setup.iommu,
      hwdev,
      mock: null,
      riscv: setup,
      programming: riscvProgrammingView(setup.driver),
    }),
    hardware: setup.hardware,
  };
}

/** `pasid_bits` as the RISC-V IOMMU's process-directory capabilities. */
function pdCapabilities(bits: number): { PD8: boolean; PD17: boolean; PD20: boolean } {
  return { PD8: bits >= 8, PD17: bits >= 17, PD20: bits >= 20 };
}

/** The core's invariants (src/check), compared with what each driver programmed. */
function coreInvariants(m: Machine): string[] {
  const drivers = [...new Set(m.iommus().flatMap((i) => (i.programming ? [i.programming] : [])))];
  return checkCore(m.core, { drivers }).map(
    (v) =>
      `${v.invariant}: ${v.message}${v.group === undefined ? "" : ` (group ${v.group})`}${v.device === undefined ? "" : ` (${v.device})`}`,
  );
}

const CAPS: Readonly<Record<IommuCapName, number>> = {
  cache_coherency: IOMMU_CAP.CACHE_COHERENCY,
  noexec: IOMMU_CAP.NOEXEC,
  pre_boot_protection: IOMMU_CAP.PRE_BOOT_PROTECTION,
  enforce_cache_coherency: IOMMU_CAP.ENFORCE_CACHE_COHERENCY,
  deferred_flush: IOMMU_CAP.DEFERRED_FLUSH,
  dirty_tracking: IOMMU_CAP.DIRTY_TRACKING,
};

function mockConfig(i: IommuDescription, o: MockIommuOptions): MockIommuConfig {
  const defType =
    o.defDomainType === "identity"
      ? IOMMU_DOMAIN_IDENTITY
      : o.defDomainType === "dma"
        ? IOMMU_DOMAIN_DMA
        : undefined;
  return {
    name: `mock:${i.name}`,
    pgsizeBitmap: i.pageSizes.reduce((a, s) => a | s, 0n),
    maxPasids: i.pasidBits === 0 ? 0 : 2 ** i.pasidBits,
    staticBlocked: o.staticBlocked,
    staticIdentity: o.staticIdentity,
    allocIdentity: o.allocIdentity,
    defaultDomain: o.defaultDomain,
    releaseDomain: o.releaseDomain,
    ...(defType === undefined ? {} : { defDomainType: defType }),
    // Real drivers' device_group: pci_device_group for PCI functions, else generic_device_group.
    deviceGroup: o.deviceGroup === "single" ? "single" : "bus",
    pagingOp: o.pagingOp,
    capabilities: o.capabilities.map((c) => CAPS[c] as (typeof IOMMU_CAP)[keyof typeof IOMMU_CAP]),
    claimBus: null,
    attachDeferred: o.attachDeferred,
    pasid1024Quirk: o.pasid1024Quirk,
    ...(o.aperture ? { aperture: o.aperture } : {}),
    ...(o.pasidRange ? { pasidRange: o.pasidRange } : {}),
    sva: o.sva,
    svaSupervisor: o.svaSupervisor,
    pageResponse: o.pageResponse,
    iopfQueue: o.iopfQueue,
  };
}

function armFaults(mock: MockIommuDriver, o: MockIommuOptions): void {
  for (const f of o.faultInjection) {
    mock.faults.arm({
      op: f.op,
      nth: f.nth,
      errno: f.errno,
      times: f.times,
      partialPages: f.partialPages,
      ...(f.dev === undefined && f.pasid === undefined
        ? {}
        : {
            filter: (info) =>
              (f.dev === undefined || info.dev?.name === f.dev) &&
              (f.pasid === undefined || info.pasid === f.pasid),
          }),
    });
  }
}

const RESV: Readonly<Record<ResvTypeName, IommuResvRegion["type"]>> = {
  direct: IOMMU_RESV.DIRECT,
  direct_relaxable: IOMMU_RESV.DIRECT_RELAXABLE,
  reserved: IOMMU_RESV.RESERVED,
};

const PROT: Readonly<Record<ProtName, number>> = {
  read: IOMMU_READ,
  write: IOMMU_WRITE,
  cache: IOMMU_CACHE,
  noexec: IOMMU_NOEXEC,
  mmio: IOMMU_MMIO,
  priv: IOMMU_PRIV,
};

function resvRegion(r: DeviceDescription["reservedRegions"][number]): IommuResvRegion {
  return {
    start: r.start,
    length: r.size,
    prot: r.prot.reduce((a, p) => a | PROT[p], 0),
    type: RESV[r.type],
  };
}
