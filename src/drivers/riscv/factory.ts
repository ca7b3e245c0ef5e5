// Building one RISC-V IOMMU for a machine: the hardware model and the driver instance that
// probes it (riscv_iommu_platform_probe), registered with the IOMMU core.
//
//   const { hardware, iommu, probe } = createRiscvIommu({
//     ctx, memory, frames, core,
//     name: "iommu0",
//     hwdev,                      // the IOMMU's own platform device: devices' `iommus` links name
//                                 // its fwnode (null: devices whose link names no node)
//     capabilities: { PD20: false },   // hardware capabilities (hw/riscv-iommu IommuConfig)
//     hardware: { vectors: 4 },        // other hardware parameters (caches, vectors, …)
//     options: { irqs: 4, msi: true }, // platform/driver parameters (RiscvIommuOptions)
//   });
//
// - `hardware` is the RiscvIommu: connect devices to it (it is their TranslationAgent).
// - `iommu` is the driver instance (an IommuDevice); `probe` says whether bring-up and
//   `iommu_device_register` succeeded (on failure the kernel logs it and boots on without it;
//   the hardware stays Off).
// - Interrupts: unless `connectInterrupts` is false, the hardware's InterruptSink is the
//   driver's (`iommu.interruptSink()`): wires and MSIs reach `iommu.handleIrq(vector)`, whose
//   threads run when the machine settles `ctx.scheduler`. A machine with its own interrupt
//   controller calls `iommu.handleIrq(vector)` itself.
// - Several calls on one core share one driver (`driver`, RiscvIommuDriver.of(core)).

import type { SimContext } from "../../base/context.js";
import type { Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import type { FrameAllocator, PhysicalMemory } from "../../hw/memory.js";
import type { IommuCapabilities, IommuConfig } from "../../hw/riscv-iommu/capabilities.js";
import { RiscvIommu } from "../../hw/riscv-iommu/iommu.js";
import type { IommuCore } from "../../iommu/core.js";
import { RiscvIommuDriver } from "./driver.js";
import { RiscvIommuDevice, type RiscvIommuOptions } from "./iommu.js";

export interface CreateRiscvIommuOptions {
  readonly ctx: SimContext;
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  readonly core: IommuCore;
  readonly name: string;
  readonly hwdev: Device | null;
  readonly capabilities?: Partial<IommuCapabilities>;
  readonly hardware?: Omit<IommuConfig, "capabilities">;
  readonly options?: RiscvIommuOptions;
  /** Install the driver's interrupt sink on the hardware. Default true. */
  readonly connectInterrupts?: boolean;
}

export interface RiscvIommuSetup {
  readonly hardware: RiscvIommu;
  readonly driver: RiscvIommuDriver;
  readonly iommu: RiscvIommuDevice;
  /** Bring-up and registration: OK, or the errno the kernel would log. */
  readonly probe: Result;
}

export function createRiscvIommu(o: CreateRiscvIommuOptions): RiscvIommuSetup {
  const hardware = new RiscvIommu(o.ctx, o.memory, o.name, {
    ...o.hardware,
    ...(o.capabilities === undefined ? {} : { capabilities: o.capabilities }),
  });
  const driver = RiscvIommuDriver.of(o.core);
  const iommu = new RiscvIommuDevice(
    {
      hw: hardware,
      ctx: o.ctx,
      core: o.core,
      memory: o.memory,
      frames: o.frames,
      pscids: driver.pscids,
      ...(o.options === undefined ? {} : { options: o.options }),
    },
    driver.events,
  );
  if (o.connectInterrupts ?? true) hardware.interruptSink = iommu.interruptSink();
  const probe = driver.register(iommu, o.hwdev);
  return { hardware, driver, iommu, probe };
}
