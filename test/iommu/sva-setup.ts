// Set-up for SVA and IOPF tests on the mock driver: the platform mock machine of setup.ts with a
// second instance of the same driver, RAM, the mm subsystem and a process table, and helpers for
// processes with memory mapped and devices behind either instance.

import { unwrap } from "../../src/base/result.js";
import { Device } from "../../src/bus/device.js";
import type { MockIommu, MockIommuConfig } from "../../src/drivers/mock/mock-iommu.js";
import { FrameAllocator, PhysicalMemory } from "../../src/hw/memory.js";
import type { IommuCoreOptions } from "../../src/iommu/core.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/flags.js";
import { MmSubsystem } from "../../src/mm/mm-types.js";
import { vmMmap } from "../../src/mm/mmap.js";
import { type Process, ProcessTable } from "../../src/mm/process.js";
import { type PlatBed, platBed, platformFw } from "./setup.js";

/** Where test processes map their memory. */
export const UADDR = 0x4000_0000n;

export interface SvaBed extends PlatBed {
  readonly sys: MmSubsystem;
  readonly procs: ProcessTable;
  /** A second instance of the same mock driver. */
  readonly inst1: MockIommu;
  /** A running process with `pages` private read-write pages at UADDR (not populated). */
  spawn(name?: string, pages?: number): Process;
  /** A platform device with `pasidBits` PASID bits (default 10) behind instance 0 or 1. */
  pdev(name: string, o?: { pasidBits?: number; instance?: 0 | 1 }): Device;
}

export function svaBed(config: MockIommuConfig = {}, options: IommuCoreOptions = {}): SvaBed {
  const b = platBed({ pasid1024Quirk: false, ...config }, options);
  const memory = new PhysicalMemory([{ base: 0x8000_0000n, size: 32n << 20n }]);
  const sys = new MmSubsystem(b.ctx, memory, new FrameAllocator(memory));
  const procs = new ProcessTable(sys);
  const hw1 = new Device("iommu1", b.platform);
  b.model.deviceAdd(hw1);
  const inst1 = unwrap(b.mock.registerInstance("iommu1", hw1));
  const spawn = (name = "proc", pages = 4): Process => {
    const p = unwrap(procs.spawn(name));
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    unwrap(vmMmap(p.mm!, UADDR, BigInt(pages) << 12n, PROT_READ | PROT_WRITE, flags));
    return p;
  };
  const pdev = (name: string, o: { pasidBits?: number; instance?: 0 | 1 } = {}): Device => {
    const pasidBits = o.pasidBits ?? 10;
    if (o.instance !== 1) return b.dev(name, { pasidBits });
    const d = new Device(name, b.platform, platformFw(name, hw1, { pasidBits }));
    b.model.deviceAdd(d);
    return d;
  };
  return { ...b, sys, procs, inst1, spawn, pdev };
}
