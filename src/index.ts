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
export {
  pciAcsPathEnabled,
  pciDisablePasid,
  pciEnablePasid,
  pciForEachDmaAlias,
  pciMaxPasids,
  REQ_ACS_FLAGS,
} from "./bus/pci.js";
export { createPciBus, PciDev, pciScanHost } from "./bus/pci-dev.js";
export { createMockBus, createPlatformBus } from "./bus/platform.js";
// ---- check: invariants and the isolation oracle ----
export { checkCore, type Violation } from "./check/invariants.js";
export {
  attachOracle,
  IsolationOracle,
  type IsolationVerdict,
} from "./check/oracle.js";
export { findingJSON, type IsolationFinding } from "./check/oracle-finding.js";
export { DmaCoherent } from "./dma/coherent.js";
// ---- dma: the DMA API ----
export {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  type DmaDataDirection,
} from "./dma/constants.js";
export { IovaDomain } from "./dma/iova.js";
export { DmaApi, dmaApiOf, installDmaApi } from "./dma/mapping.js";
export { Scatterlist, SgTable, sgTableFromBuffers } from "./dma/scatterlist.js";
// ---- drivers ----
export { type MockIommuConfig, MockIommuDriver } from "./drivers/mock/mock-iommu.js";
export { Atc } from "./hw/endpoints/atc.js";
export { DsaDevice, type DsaOptions } from "./hw/endpoints/dsa.js";
export { dsaFunctionOptions } from "./hw/endpoints/dsa-regs.js";
export { NicDevice, type NicOptions, nicFunctionOptions } from "./hw/endpoints/nic.js";
export { TestDevice, type TestDeviceOptions } from "./hw/endpoints/test-device.js";
// ---- hw: memory, page tables, PCIe, the RISC-V IOMMU ----
export { FrameAllocator, PhysicalMemory, type RamRegion } from "./hw/memory.js";
export { PciHost } from "./hw/pci/host.js";
export {
  DmaAttrs,
  type DmaObserver,
  type DmaPageEvent,
  DmaStatus,
  IoBridge,
  type PciDeviceModel,
} from "./hw/pci/io-bridge.js";
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
export {
  PageTable,
  PT_EXISTS,
  PT_MISALIGNED,
  PT_NO_MEMORY,
  PT_NOT_MAPPED,
  PT_OK,
  PT_OUT_OF_RANGE,
  PT_STATUS_NAMES,
  PT_WOULD_SPLIT,
  type PtStatus,
} from "./hw/pgtable/page-table.js";
export { decodePte, encodePte, type PteFields } from "./hw/pgtable/pte.js";
export { PteCursor } from "./hw/pgtable/pte-cursor.js";
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
export {
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFaultPageRequest,
} from "./iommu/fault.js";
export { IommuGroup } from "./iommu/group.js";
export { IommuDevice, type IommuOps } from "./iommu/ops.js";
export { IOMMU_SVA_BIND_SUPERVISOR, IommuMmData, IommuSva } from "./iommu/sva.js";
// ---- machine and scenarios ----
export { type BuildOptions, buildMachine } from "./machine/build.js";
export { BUILTIN_MACHINES, builtinMachineNames } from "./machine/builtin.js";
export type { MachineDescription } from "./machine/description.js";
export { formatInspect, inspectJSON } from "./machine/inspect.js";
export { parseMachineDescription } from "./machine/load.js";
export { Machine } from "./machine/machine.js";
export { machineReport } from "./machine/report.js";
export { machineStatistics } from "./machine/statistics.js";
// ---- mm: processes and address spaces ----
export { Cpu, type CpuResult } from "./mm/cpu.js";
export { mmAlloc, mmput } from "./mm/fork.js";
export { pinUserPagesRemote, unpinUserPage, unpinUserPages } from "./mm/gup.js";
export { initMm, KernelMm } from "./mm/init-mm.js";
export { mmdrop, mmget, mmgetNotZero, mmgrab } from "./mm/mm-refs.js";
export { MmStruct, MmSubsystem, MmuNotifier, VmArea } from "./mm/mm-types.js";
export { vmMmap, vmMunmap } from "./mm/mmap.js";
export { doMprotect } from "./mm/mprotect.js";
export { Process, ProcessTable } from "./mm/process.js";
export { vmap, vmUnmapAliases, vunmap } from "./mm/vmalloc.js";
export { demoJSON, formatDemo, runDemo } from "./scenario/demo.js";
export { loadScenario, type Scenario } from "./scenario/load.js";
export { machineHost } from "./scenario/machine-host.js";
export { formatScenarioResult, scenarioResultJSON } from "./scenario/report.js";
export { applicableDrivers, runScenario, type ScenarioResult } from "./scenario/run.js";
export {
  formatTraceText,
  type TraceRun,
  type TraceStep,
  traceRunOf,
  traceToChromeJSON,
} from "./scenario/trace-format.js";
export { addDeviceNames, type DeviceNames } from "./scenario/trace-tracks.js";
