// Test machine for the RISC-V IOMMU driver: RAM, the IOMMU core with the platform and PCI buses,
// one or more RISC-V IOMMUs built by createRiscvIommu, platform devices linked to them by
// firmware, and device-side helpers that DMA through the hardware (translate, then access the
// physical memory the IOMMU answered) the way an endpoint does.

import { createContext, type SimContext } from "../../../src/base/context.js";
import { unwrap } from "../../../src/base/result.js";
import type { TraceRecord } from "../../../src/base/trace.js";
import { type BusType, Device } from "../../../src/bus/device.js";
import { DeviceModel } from "../../../src/bus/driver-core.js";
import { FirmwareDescription, FwNode } from "../../../src/bus/firmware.js";
import {
  createPciBus,
  type PciBusType,
  type PciDev,
  pciScanHost,
} from "../../../src/bus/pci-dev.js";
import { createPlatformBus } from "../../../src/bus/platform.js";
import type { RiscvIommuDriver } from "../../../src/drivers/riscv/driver.js";
import { createRiscvIommu, type RiscvIommuSetup } from "../../../src/drivers/riscv/factory.js";
import type { RiscvIommuOptions } from "../../../src/drivers/riscv/iommu.js";
import { FrameAllocator, PhysicalMemory } from "../../../src/hw/memory.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import {
  type AccessType,
  DmaRequest,
  DmaResponse,
  type EndpointPort,
  type InvalidationRequest,
  type PrgResponse,
} from "../../../src/hw/pci/translation-agent.js";
import type { IommuCapabilities, IommuConfig } from "../../../src/hw/riscv-iommu/capabilities.js";
import type { RiscvIommu } from "../../../src/hw/riscv-iommu/iommu.js";
import { IommuCore, type IommuCoreOptions } from "../../../src/iommu/core.js";

export const RAM_BASE = 0x8000_0000n;
export const RAM_SIZE = 64n << 20n;

export interface IommuSpec {
  readonly name: string;
  readonly capabilities?: Partial<IommuCapabilities>;
  readonly hardware?: Omit<IommuConfig, "capabilities">;
  readonly options?: RiscvIommuOptions;
}

/** What every RISC-V test machine starts from. */
export interface BaseBed {
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly model: DeviceModel;
  readonly platform: BusType;
  readonly pci: PciBusType;
  readonly core: IommuCore;
}

/** RAM, a device model with the platform and PCI buses registered, and the IOMMU core. */
export function baseBed(
  seed: number,
  core: IommuCoreOptions,
  ram: { readonly base: bigint; readonly size: bigint } = { base: RAM_BASE, size: RAM_SIZE },
): BaseBed {
  const ctx = createContext({ seed });
  const memory = new PhysicalMemory([ram]);
  const frames = new FrameAllocator(memory);
  const model = new DeviceModel(ctx);
  const platform = createPlatformBus();
  const pci = createPciBus();
  model.busRegister(platform);
  model.busRegister(pci);
  return { ctx, memory, frames, model, platform, pci, core: new IommuCore(ctx, model, core) };
}

/** createRiscvIommu for the IOMMU device `hwdev`, with the tests' queue sizes. */
export function riscvIommu(b: BaseBed, hwdev: Device, spec: IommuSpec): RiscvIommuSetup {
  return createRiscvIommu({
    ctx: b.ctx,
    memory: b.memory,
    frames: b.frames,
    core: b.core,
    name: spec.name,
    hwdev,
    ...(spec.capabilities ? { capabilities: spec.capabilities } : {}),
    ...(spec.hardware ? { hardware: spec.hardware } : {}),
    options: { cqEntries: 256, fqEntries: 64, pqEntries: 64, ...spec.options },
  });
}

/**
 * A PCI host shaped by `build`, enumerated and scanned with its functions behind the IOMMU whose
 * firmware node is `iommu`; returns the pci_dev of a function by name.
 */
export function scanPciHost(
  b: BaseBed,
  build: (h: PciHost) => void,
  iommu: FwNode,
): (name: string) => PciDev {
  const host = new PciHost(b.ctx);
  build(host);
  host.enumerate();
  pciScanHost(b.model, b.pci, host, { iommu });
  return (name: string): PciDev => {
    const d = b.pci.pciDevOf(host.function(name));
    if (!d) throw new Error(`no pci_dev ${name}`);
    return d;
  };
}

export interface Bed extends BaseBed {
  readonly driver: RiscvIommuDriver;
  readonly iommus: Map<string, RiscvIommuSetup & { hwdev: Device }>;
  /** The first IOMMU. */
  readonly io: RiscvIommuSetup & { hwdev: Device };
  /** A platform device behind IOMMU `iommu` (default the first) with device_id `did`. */
  dev(
    name: string,
    did: number,
    o?: { iommu?: string; pasidBits?: number; ids?: number[] },
  ): Device;
  /** A PCI host behind IOMMU `iommu` (its functions' RIDs are their device_ids). */
  pciHost(build: (h: PciHost) => void, iommu?: string): (name: string) => PciDev;
}

export function bed(
  specs: readonly IommuSpec[] = [{ name: "iommu0" }],
  core: IommuCoreOptions = {},
): Bed {
  const b = baseBed(5, core);
  const iommus = new Map<string, RiscvIommuSetup & { hwdev: Device }>();
  for (const s of specs) {
    const hwdev = new Device(s.name, b.platform);
    b.model.deviceAdd(hwdev);
    iommus.set(s.name, { ...riscvIommu(b, hwdev, s), hwdev });
  }
  const first = iommus.get(specs[0]!.name)!;
  const dev = (
    name: string,
    did: number,
    o: { iommu?: string; pasidBits?: number; ids?: number[] } = {},
  ): Device => {
    const io = iommus.get(o.iommu ?? specs[0]!.name)!;
    const d = new Device(
      name,
      b.platform,
      new FirmwareDescription({
        node: new FwNode(name),
        properties: o.pasidBits === undefined ? {} : { "pasid-num-bits": o.pasidBits },
        iommus: { fwnode: io.hwdev.fw.node, ids: o.ids ?? [did] },
      }),
    );
    b.model.deviceAdd(d);
    return d;
  };
  const pciHost = (build: (h: PciHost) => void, iommu?: string) => {
    const io = iommus.get(iommu ?? specs[0]!.name)!;
    b.core.addIommuBus(b.pci);
    return scanPciHost(b, build, io.hwdev.fw.node);
  };
  return { ...b, driver: first.driver, iommus, io: first, dev, pciHost };
}

/** The outcome of one device access. */
export type DmaOutcome =
  | { readonly ok: true; readonly pa: bigint; readonly data: Uint8Array }
  | { readonly ok: false; readonly fault: string; readonly cause: number };

/** A device DMA through `hw`: translate the request, then read or write the memory it maps to. */
export function dma(
  hw: RiscvIommu,
  did: number,
  iova: bigint,
  o: {
    access?: AccessType;
    data?: Uint8Array;
    length?: number;
    pasid?: number;
    priv?: boolean;
  } = {},
): DmaOutcome {
  const req = new DmaRequest();
  req.deviceId = did;
  req.access = o.access ?? (o.data ? "write" : "read");
  req.pasidValid = o.pasid !== undefined;
  req.pasid = o.pasid ?? 0;
  req.privileged = o.priv ?? false;
  req.setIova(iova);
  const out = new DmaResponse();
  hw.translate(req, out);
  if (out.fault !== null) return { ok: false, fault: out.fault.code, cause: out.fault.cause };
  const pa = out.paddr;
  if (o.data) {
    hw.physical.writeBytes(pa, o.data);
    return { ok: true, pa, data: o.data };
  }
  return { ok: true, pa, data: hw.physical.readBytes(pa, o.length ?? 8) };
}

export function bytes(...xs: number[]): Uint8Array {
  return new Uint8Array(xs);
}

/** The command trace of `records`: "IOTINVAL.VMA AV=1 …" strings, in order. */
export function commands(records: readonly TraceRecord[]): string[] {
  return records
    .filter((r) => r.event === "riscv_iommu:command")
    .map((r) => {
      const f = r.fields as { opcode: string; fields: string };
      return `${f.opcode} ${f.fields}`.trim();
    });
}

/** Records commands issued while `fn` runs. */
export function commandsOf(ctx: SimContext, fn: () => void): string[] {
  const rec = ctx.trace.record();
  fn();
  return commands(rec.stop());
}

/** An endpoint port that completes ATS invalidations at once and keeps PRG responses. */
export class AutoPort implements EndpointPort {
  readonly invalidations: InvalidationRequest[] = [];
  readonly responses: PrgResponse[] = [];
  constructor(readonly hw: RiscvIommu) {}

  invalidationRequest(msg: InvalidationRequest): void {
    this.invalidations.push(msg);
    this.hw.invalidationCompletion(msg.deviceId, 1 << msg.itag);
  }

  prgResponse(msg: PrgResponse): void {
    this.responses.push(msg);
  }
}

export { unwrap };
