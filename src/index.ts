// The public surface of iommu-sim: every public name, listed explicitly. Layers are in the order
// of DESIGN.md, from the machine up. Anything not listed here is internal.

// ---- base: results, errors, time, randomness, traces ----
export { formatSize, hex } from "./base/bits.js";
export { createContext, type SimContext } from "./base/context.js";
export { ERRNO, type Errno, errnoValue, isErrno } from "./base/errno.js";
export { InputError, type InputLocation, SimError } from "./base/errors.js";
export { Ida } from "./base/ida.js";
export type { Json } from "./base/json.js";
export {
  type Err,
  err,
  formatResult,
  kernelReturn,
  OK,
  type Ok,
  ok,
  type Result,
  unwrap,
} from "./base/result.js";
export { Rng } from "./base/rng.js";
export { TraceBus, type TraceRecord, type TraceRecording, type TraceSink } from "./base/trace.js";
export type { TraceEventMap, TraceEventName, TraceValue } from "./base/trace-events.js";
export type { Warning } from "./base/warnings.js";
export { Scheduler, Work, WorkQueue } from "./base/workqueue.js";
export { XArray } from "./base/xarray.js";
// ---- bus: the OS device model ----
export { Device, type DeviceDriver } from "./bus/device.js";
export { DeviceModel } from "./bus/driver-core.js";
export { IOMMU_RESV, type IommuResvRegion } from "./bus/firmware.js";
export { createPciBus, PciDev, pciScanHost } from "./bus/pci-dev.js";
export { createMockBus, createPlatformBus } from "./bus/platform.js";
// ---- check: invariants ----
export { checkCore, type Violation } from "./check/invariants.js";
// ---- drivers ----
export { type MockIommuConfig, MockIommuDriver } from "./drivers/mock/mock-iommu.js";
// ---- hw: memory, page tables, PCIe, the RISC-V IOMMU ----
export { FrameAllocator, PhysicalMemory, type RamRegion } from "./hw/memory.js";
export { PciHost } from "./hw/pci/host.js";
export type {
  PciEndpointOptions,
  PciFunctionOptions,
  PciHostOptions,
  PciPortOptions,
} from "./hw/pci/options.js";
export {
  newPciRoute,
  PCI_REQ_PASID,
  PCI_REQ_TRANSLATED,
  PciBridge,
  PciDevice,
  PciFunction,
  type PciRoute,
  PciSwitch,
} from "./hw/pci/topology.js";
export {
  AtsCompletion,
  AtsRequest,
  DmaRequest,
  DmaResponse,
  type EndpointPort,
  type TranslationAgent,
  type TranslationFault,
} from "./hw/pci/translation-agent.js";
export {
  PAGING_MODES,
  type PagingMode,
  type PagingModeName,
  pagingMode,
  SV39,
  SV39X4,
  SV48,
  SV48X4,
  SV57,
  SV57X4,
} from "./hw/pgtable/modes.js";
export { PageTable, type PtStatus } from "./hw/pgtable/page-table.js";
export { decodePte, encodePte, type PteFields } from "./hw/pgtable/pte.js";
export { walk } from "./hw/pgtable/walk.js";
export {
  ACCESS_EXECUTE,
  ACCESS_READ,
  ACCESS_WRITE,
  WalkConfig,
  WalkResult,
  walkFaultCause,
} from "./hw/pgtable/walk-result.js";
export {
  DEFAULT_CAPABILITIES,
  type IommuCapabilities,
  type IommuConfig,
} from "./hw/riscv-iommu/capabilities.js";
export { FAULT_CAUSES, type FaultCode, type IommuFault } from "./hw/riscv-iommu/faults.js";
export { RiscvIommu } from "./hw/riscv-iommu/iommu.js";
// ---- iommu: the Linux IOMMU core ----
export {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_NESTED,
  IOMMU_DOMAIN_PLATFORM,
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_NO_PASID,
  IOMMU_PASID_INVALID,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomainType,
} from "./iommu/constants.js";
export { IommuCore, type IommuCoreOptions } from "./iommu/core.js";
export { IommuAttachHandle, IommuDomain, type IommuDomainOps } from "./iommu/domain.js";
export { IommuGroup } from "./iommu/group.js";
export { IommuDevice, type IommuOps } from "./iommu/ops.js";
// ---- machine and scenarios ----
export { type BuildOptions, buildMachine } from "./machine/build.js";
export { BUILTIN_MACHINES, builtinMachineNames } from "./machine/builtin.js";
export type { MachineDescription } from "./machine/description.js";
export { parseMachineDescription } from "./machine/load.js";
export { Machine } from "./machine/machine.js";
// ---- mm: processes and address spaces ----
export { Cpu, type CpuResult } from "./mm/cpu.js";
export { mmAlloc, mmput } from "./mm/fork.js";
export { mmdrop, mmget, mmgetNotZero, mmgrab } from "./mm/mm-refs.js";
export { MmStruct, MmSubsystem, MmuNotifier, VmArea } from "./mm/mm-types.js";
export { vmMmap, vmMunmap } from "./mm/mmap.js";
export { doMprotect } from "./mm/mprotect.js";
export { Process, ProcessTable } from "./mm/process.js";
export { loadScenario, type Scenario } from "./scenario/load.js";
export { runScenario, type ScenarioResult } from "./scenario/run.js";
export { formatTraceText, traceToChromeJSON } from "./scenario/trace-format.js";
