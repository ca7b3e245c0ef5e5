// IommuCore: the Linux IOMMU core of one machine (drivers/iommu/iommu.c, v6.16 semantics), the
// object that owns the subsystem's global state. Every method is a kernel function under its
// camelCase name (`iommu_attach_device_pasid` → `attachDevicePasid`) taking the kernel's
// parameters; it returns the kernel's errno as a Result where the kernel returns -errno or
// ERR_PTR, the kernel's value or sentinel otherwise, and nothing for void functions. WARN_ONs
// become ctx.warnings. docs/vocabulary-core.md lists the whole API.

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { err, OK, ok, type Result } from "../base/result.js";
import type { BusType, Device } from "../bus/device.js";
import type { DeviceModel } from "../bus/driver-core.js";
import type { IommuResvRegion } from "../bus/firmware.js";
import type { MmStruct, MmSubsystem } from "../mm/mm-types.js";
import {
  iommuAttachDevice,
  iommuAttachGroupHandle,
  iommuAttachGroupLocked,
  iommuDeferredAttach,
  iommuDetachDevice,
  iommuDetachGroup,
  iommuDetachGroupHandle,
  iommuReplaceGroupHandle,
} from "./attach.js";
import {
  domainTypeName,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_PASID_INVALID,
  type IommuCap,
  type IommuDomainType,
  sysfsTypeName,
} from "./constants.js";
import {
  iommuAllocIdentityDomain,
  iommuGroupStoreType,
  iommuPagingDomainAllocFlagsTyped,
  iommuSetupDefaultDomain,
  type SysfsCaps,
} from "./default-domain.js";
import type { DmaIommuHooks } from "./dma-cookie.js";
import { DmaOwnerCompat } from "./dma-owner-compat.js";
import type {
  IommuAttachHandle,
  IommuDomain,
  IommuFaultHandler,
  IopfGroup,
  IotlbGather,
} from "./domain.js";
import type { IommuFault, IommuPageResponseCode } from "./fault.js";
import type { DmaOwnerCookie, IommuGroup } from "./group.js";
import {
  iommuReportDeviceFault,
  iopfFreeGroup,
  iopfGroupResponse,
  iopfQueueAddDevice,
  iopfQueueAlloc,
  iopfQueueDiscardPartial,
  iopfQueueFlushDev,
  iopfQueueFree,
  iopfQueueRemoveDevice,
} from "./io-pgfault.js";
import { IoasidAllocator } from "./ioasid.js";
import type { IopfQueue } from "./iopf-queue.js";
import {
  iommuIovaToPhys,
  iommuIovaToPhysPfn,
  iommuMap,
  iommuMapPfn,
  iommuSetFaultHandler,
  iommuUnmap,
  iommuUnmapFastPfn,
  iommuUnmapPfn,
  reportIommuFault,
} from "./map.js";
import type { IommuDevice, IommuOps } from "./ops.js";
import {
  iommuDeviceClaimDmaOwner,
  iommuDeviceReleaseDmaOwner,
  iommuDeviceUnuseDefaultDomain,
  iommuDeviceUseDefaultDomain,
  iommuGroupAllocBlockingDomain,
  iommuGroupClaimDmaOwner,
  iommuGroupDmaOwnerClaimed,
  iommuGroupReleaseDmaOwner,
} from "./ownership.js";
import {
  iommuAllocGlobalPasid,
  iommuAttachDevicePasid,
  iommuAttachHandleGet,
  iommuDetachDevicePasid,
  iommuFreeGlobalPasid,
  iommuReplaceDevicePasid,
} from "./pasid.js";
import {
  type IommuPasidConsumer,
  iommuPasidAlloc,
  iommuPasidExit,
  iommuPasidFind,
  iommuPasidForEach,
  iommuPasidFree,
  iommuPasidInit,
} from "./pasid-consumer.js";
import { pciDeviceGroup } from "./pci-group.js";
import {
  busIommuProbe,
  genericDeviceGroup,
  genericSingleDeviceGroup,
  iommuConfigure,
  iommuDeviceRegister,
  iommuDeviceRegisterBus,
  iommuDeviceUnregister,
  iommuDeviceUnregisterBus,
  iommuMockDeviceAdd,
  iommuProbeDevice,
  iommuReleaseDevice,
  makeBusNotifier,
} from "./probe.js";
import { iommuGetGroupResvRegions, iommuGroupShowResvRegions } from "./resv.js";
import { CoreState, type KernelLog } from "./state.js";
import {
  type IommuSva,
  iommuMmOf,
  iommuSvaBindDevice,
  iommuSvaGetPasid,
  iommuSvaUnbindDevice,
  svaInitMm,
} from "./sva.js";

/** The buses `iommu_subsys_init` puts its notifier on (`iommu_buses[]`), when present. */
export const IOMMU_BUS_NAMES: readonly string[] = [
  "platform",
  "pci",
  "amba",
  "fsl-mc",
  "host1x-context",
  "cdx",
];

/** Kconfig and kernel command line of the simulated kernel. */
export interface IommuCoreOptions {
  /** `iommu.passthrough=` on the command line (true: IDENTITY, false: DMA). */
  readonly passthrough?: boolean;
  /** `iommu.strict=` on the command line. */
  readonly strict?: boolean;
  /** CONFIG_IOMMU_DEFAULT_PASSTHROUGH (default false). */
  readonly configDefaultPassthrough?: boolean;
  /** CONFIG_IOMMU_DEFAULT_DMA_STRICT (default true: the RISC-V Kconfig default is strict). */
  readonly configDefaultDmaStrict?: boolean;
  /** `cc_platform_has(CC_ATTR_MEM_ENCRYPT)`: Kconfig passthrough is overridden to DMA. */
  readonly memEncrypt?: boolean;
  /** CONFIG_IOMMU_DMA (default true). */
  readonly iommuDma?: boolean;
}

const ROOT: SysfsCaps = { sysAdmin: true, sysRawio: true };

export class IommuCore {
  /** @internal the state shared by the core's files. */
  readonly s: CoreState;
  /** The historical IOASID allocator (§5.3): `ioasid_alloc` → `core.ioasid.alloc`, … */
  readonly ioasid: IoasidAllocator;
  /** Seed 004's owner-type API over the modern DMA-ownership calls (§4.4). */
  readonly dmaOwnerCompat: DmaOwnerCompat;

  /** `iommu_subsys_init`: boot policy, bus notifiers, the driver-core hooks. */
  constructor(ctx: SimContext, model: DeviceModel, options: IommuCoreOptions = {}) {
    const cmdLineDmaApi = options.passthrough !== undefined;
    let defType: IommuDomainType;
    if (cmdLineDmaApi) defType = options.passthrough ? IOMMU_DOMAIN_IDENTITY : IOMMU_DOMAIN_DMA;
    else defType = options.configDefaultPassthrough ? IOMMU_DOMAIN_IDENTITY : IOMMU_DOMAIN_DMA;
    // Memory encryption: no Kconfig-chosen passthrough.
    if (!cmdLineDmaApi && defType === IOMMU_DOMAIN_IDENTITY && options.memEncrypt) {
      defType = IOMMU_DOMAIN_DMA;
    }
    const dmaStrict = options.strict ?? options.configDefaultDmaStrict ?? true;
    if (defType !== IOMMU_DOMAIN_IDENTITY && !dmaStrict) defType = IOMMU_DOMAIN_DMA_FQ;
    this.s = new CoreState(ctx, model, {
      defDomainType: defType,
      dmaStrict,
      cmdLineDmaApi,
      cmdLineStrict: options.strict !== undefined,
      iommuDma: options.iommuDma ?? true,
    });
    this.ioasid = new IoasidAllocator(ctx.warnings);
    this.dmaOwnerCompat = new DmaOwnerCompat(this.s);
    for (const name of IOMMU_BUS_NAMES) {
      const bus = model.bus(name);
      if (bus) this.#addIommuBus(bus);
    }
    model.setIommuHooks({
      configure: (dev) => iommuConfigure(this.s, dev),
      useDefaultDomain: (dev) => iommuDeviceUseDefaultDomain(this.s, dev),
      unuseDefaultDomain: (dev) => iommuDeviceUnuseDefaultDomain(this.s, dev),
    });
  }

  #addIommuBus(bus: BusType): void {
    if (this.s.iommuBuses.includes(bus)) return;
    bus.registerNotifier(makeBusNotifier(this.s));
    this.s.iommuBuses.push(bus);
  }

  /** Puts the core's notifier on an IOMMU bus registered after boot (e.g. a late PCI bus). */
  addIommuBus(bus: BusType): void {
    if (!IOMMU_BUS_NAMES.includes(bus.name)) {
      throw new SimError(`bus ${bus.name} is not an IOMMU bus (iommu_buses[])`);
    }
    this.#addIommuBus(bus);
  }

  get ctx(): SimContext {
    return this.s.ctx;
  }

  // ---------------------------------------------------------------- policy (§2.4)

  /** `iommu_def_domain_type`. */
  get defDomainType(): IommuDomainType {
    return this.s.policy.defDomainType;
  }

  /** `iommu_dma_strict`. */
  get dmaStrict(): boolean {
    return this.s.policy.dmaStrict;
  }

  /** `iommu_set_dma_strict`: force strict; a global DMA_FQ default becomes DMA. */
  setDmaStrict(): void {
    this.s.policy.dmaStrict = true;
    if (this.s.policy.defDomainType === IOMMU_DOMAIN_DMA_FQ) {
      this.s.policy.defDomainType = IOMMU_DOMAIN_DMA;
    }
  }

  /** `iommu_default_passthrough`. */
  defaultPassthrough(): boolean {
    return this.s.policy.defDomainType === IOMMU_DOMAIN_IDENTITY;
  }

  /** `iommu_set_default_passthrough(cmd_line)`. */
  setDefaultPassthrough(cmdLine: boolean): void {
    if (cmdLine) this.s.policy.cmdLineDmaApi = true;
    this.s.policy.defDomainType = IOMMU_DOMAIN_IDENTITY;
  }

  /** `iommu_set_default_translated(cmd_line)`. */
  setDefaultTranslated(cmdLine: boolean): void {
    if (cmdLine) this.s.policy.cmdLineDmaApi = true;
    this.s.policy.defDomainType = IOMMU_DOMAIN_DMA;
  }

  /** Installs the DMA layer's cookie / flush-queue / dma-ops implementation. */
  setDmaIommuHooks(hooks: DmaIommuHooks): void {
    this.s.dma = hooks;
  }

  // ---------------------------------------------------------------- instances (§2.1)

  /** `iommu_device_register(iommu, ops, hwdev)`. */
  deviceRegister(iommu: IommuDevice, ops: IommuOps, hwdev: Device | null): Result {
    return iommuDeviceRegister(this.s, iommu, ops, hwdev);
  }

  /** `iommu_device_unregister(iommu)`. */
  deviceUnregister(iommu: IommuDevice): void {
    iommuDeviceUnregister(this.s, iommu);
  }

  /** `iommu_device_register_bus(iommu, ops, bus, nb)` (iommufd selftest). */
  deviceRegisterBus(iommu: IommuDevice, ops: IommuOps, bus: BusType): Result {
    return iommuDeviceRegisterBus(this.s, iommu, ops, bus);
  }

  /** `iommu_device_unregister_bus(iommu, bus, nb)`. */
  deviceUnregisterBus(iommu: IommuDevice): void {
    iommuDeviceUnregisterBus(this.s, iommu);
  }

  /** `iommu_mock_device_add(dev, iommu)`: fwspec to the mock instance, then `device_add`. */
  mockDeviceAdd(dev: Device, iommu: IommuDevice): Result {
    return iommuMockDeviceAdd(this.s, dev, iommu);
  }

  /** Registered instances in registration order (`iommu_device_list`). */
  iommuDevices(): readonly IommuDevice[] {
    return this.s.iommus;
  }

  // ---------------------------------------------------------------- devices (§2.2, §2.7)

  /** `iommu_probe_device(dev)`. */
  probeDevice(dev: Device): Result {
    return iommuProbeDevice(this.s, dev);
  }

  /** `iommu_release_device(dev)`. */
  releaseDevice(dev: Device): void {
    iommuReleaseDevice(this.s, dev);
  }

  /** `bus_iommu_probe(bus)`. */
  busIommuProbe(bus: BusType): Result {
    return busIommuProbe(this.s, bus);
  }

  /** `dev_iommu_ops(dev)`: the ops of the instance that probed `dev`, or null if none did. */
  devIommuOps(dev: Device): IommuOps | null {
    return this.s.devHasIommu(dev) ? this.s.devIommuOps(dev) : null;
  }

  /** `device_iommu_capable(dev, cap)`. */
  deviceIommuCapable(dev: Device, cap: IommuCap): boolean {
    if (!this.s.devHasIommu(dev)) return false;
    const ops = this.s.devIommuOps(dev);
    return ops.capable?.(dev, cap) ?? false;
  }

  /** `iommu_get_resv_regions(dev, list)`. */
  getResvRegions(dev: Device): IommuResvRegion[] {
    return this.s.devIommuOps(dev).getResvRegions?.(dev) ?? [];
  }

  /** `iommu_get_group_resv_regions(group, head)`: members' regions, merged. */
  getGroupResvRegions(group: IommuGroup): IommuResvRegion[] {
    return iommuGetGroupResvRegions(this.s, group);
  }

  /** sysfs `iommu_groups/<id>/reserved_regions`. */
  groupShowResvRegions(group: IommuGroup): string {
    return iommuGroupShowResvRegions(this.s, group);
  }

  // ---------------------------------------------------------------- groups (§2.3)

  /** `iommu_group_alloc()`: a new group holding one reference. */
  groupAlloc(): Result<IommuGroup> {
    return ok(this.s.groupAlloc());
  }

  /** `iommu_group_get(dev)`: the device's group with a new reference, or null. */
  groupGet(dev: Device): IommuGroup | null {
    const g = this.s.groupOf(dev);
    return g === null ? null : this.s.groupRefGet(g);
  }

  /** `iommu_group_ref_get(group)`. */
  groupRefGet(group: IommuGroup): IommuGroup {
    return this.s.groupRefGet(group);
  }

  /** `iommu_group_put(group)`. */
  groupPut(group: IommuGroup | null): void {
    this.s.groupPut(group);
  }

  /** The device's group without taking a reference (`dev->iommu_group`). */
  groupOf(dev: Device): IommuGroup | null {
    return this.s.groupOf(dev);
  }

  /** `iommu_group_get_by_id(id)` without taking a reference. */
  groupById(id: number): IommuGroup | null {
    return this.s.groups.get(id) ?? null;
  }

  /** Live groups in id order. */
  groups(): IommuGroup[] {
    return [...this.s.groups.values()].sort((a, b) => a.id - b.id);
  }

  /** `iommu_group_id(group)`. */
  groupId(group: IommuGroup): number {
    return group.id;
  }

  /** `iommu_group_set_name(group, name)`. */
  groupSetName(group: IommuGroup, name: string | null): Result {
    group.name = name;
    return OK;
  }

  /** `iommu_group_for_each_dev(group, data, fn)`: stops at the first non-zero return. */
  groupForEachDev<T>(group: IommuGroup, fn: (dev: Device) => T | 0): T | 0 {
    for (const gdev of [...group.devices]) {
      const r = fn(gdev.dev);
      if (r !== 0) return r;
    }
    return 0;
  }

  /** `generic_device_group(dev)`: a new group per device (for drivers' `device_group`). */
  genericDeviceGroup(_dev: Device): Result<IommuGroup> {
    return genericDeviceGroup(this.s);
  }

  /** `generic_single_device_group(dev)`: one group per IOMMU instance. */
  genericSingleDeviceGroup(dev: Device): Result<IommuGroup> {
    return genericSingleDeviceGroup(this.s, dev);
  }

  /** `pci_device_group(dev)`: aliases, ACS path, multifunction slots. */
  pciDeviceGroup(dev: Device): Result<IommuGroup> {
    return pciDeviceGroup(this.s, dev);
  }

  // ---------------------------------------------------------------- domains (§3.1)

  /** `iommu_paging_domain_alloc(dev)`. */
  pagingDomainAlloc(dev: Device): Result<IommuDomain> {
    return iommuPagingDomainAllocFlagsTyped(this.s, dev, IOMMU_DOMAIN_UNMANAGED, 0);
  }

  /** `iommu_paging_domain_alloc_flags(dev, flags)`. */
  pagingDomainAllocFlags(dev: Device, flags: number): Result<IommuDomain> {
    return iommuPagingDomainAllocFlagsTyped(this.s, dev, IOMMU_DOMAIN_UNMANAGED, flags);
  }

  /**
   * `__iommu_alloc_identity_domain(dev)`: static identity domain or `domain_alloc_identity`
   * (EOPNOTSUPP). Static in iommu.c; exposed for scenarios, with ENODEV for an unprobed device.
   */
  allocIdentityDomain(dev: Device): Result<IommuDomain> {
    if (!this.s.devHasIommu(dev)) return err("ENODEV");
    return iommuAllocIdentityDomain(this.s, dev);
  }

  /** `iommu_domain_free(domain)`: the one free path for every domain type. */
  domainFree(domain: IommuDomain): void {
    this.s.domainFree(domain);
  }

  /** Live domains (static ones included) in id order. */
  domains(): IommuDomain[] {
    return [...this.s.domains.values()].sort((a, b) => a.id - b.id);
  }

  // ---------------------------------------------------------------- default domain (§2.4–§2.6)

  /** `iommu_setup_default_domain(group, target_type)` (internal; sysfs and probe use it). */
  setupDefaultDomain(group: IommuGroup, targetType: IommuDomainType): Result {
    return iommuSetupDefaultDomain(this.s, group, targetType);
  }

  /** `iommu_group_store_type`: write `buf` to sysfs `iommu_groups/<id>/type`. */
  groupStoreType(group: IommuGroup, buf: string, caps: SysfsCaps = ROOT): Result {
    return iommuGroupStoreType(this.s, group, buf, caps);
  }

  /** `iommu_group_show_type`: `identity`, `DMA`, `DMA-FQ`, … (without the newline). */
  groupShowType(group: IommuGroup): string {
    return sysfsTypeName(group.defaultDomain?.type ?? null);
  }

  /** `iommu_group_default_domain(group)`. */
  groupDefaultDomain(group: IommuGroup): IommuDomain | null {
    return group.defaultDomain;
  }

  // ---------------------------------------------------------------- attach (§3.3–§3.4)

  /** `iommu_attach_device(domain, dev)`. */
  attachDevice(domain: IommuDomain, dev: Device): Result {
    return iommuAttachDevice(this.s, domain, dev);
  }

  /** `iommu_detach_device(domain, dev)`. */
  detachDevice(domain: IommuDomain, dev: Device): void {
    iommuDetachDevice(this.s, domain, dev);
  }

  /** `iommu_attach_group(domain, group)`. */
  attachGroup(domain: IommuDomain, group: IommuGroup): Result {
    return iommuAttachGroupLocked(this.s, domain, group);
  }

  /** `iommu_detach_group(domain, group)`: the domain argument is ignored. */
  detachGroup(_domain: IommuDomain | null, group: IommuGroup): void {
    iommuDetachGroup(this.s, group);
  }

  /** `iommu_get_domain_for_dev(dev)`. */
  getDomainForDev(dev: Device): IommuDomain | null {
    return this.s.groupOf(dev)?.domain ?? null;
  }

  /** `iommu_get_dma_domain(dev)`. */
  getDmaDomain(dev: Device): IommuDomain | null {
    const g = this.s.groupOf(dev);
    if (g === null) throw new SimError(`iommu_get_dma_domain(${dev.name}): no group`);
    return g.defaultDomain;
  }

  /** `iommu_deferred_attach(dev, domain)`. */
  deferredAttach(dev: Device, domain: IommuDomain): Result {
    return iommuDeferredAttach(this.s, dev, domain);
  }

  /** `iommu_attach_group_handle(domain, group, handle)`. */
  attachGroupHandle(
    domain: IommuDomain,
    group: IommuGroup,
    handle: IommuAttachHandle | null,
  ): Result {
    return iommuAttachGroupHandle(this.s, domain, group, handle);
  }

  /** `iommu_detach_group_handle(domain, group)`. */
  detachGroupHandle(_domain: IommuDomain | null, group: IommuGroup): void {
    iommuDetachGroupHandle(this.s, group);
  }

  /** `iommu_replace_group_handle(group, new_domain, handle)`. */
  replaceGroupHandle(
    group: IommuGroup,
    newDomain: IommuDomain | null,
    handle: IommuAttachHandle | null,
  ): Result {
    return iommuReplaceGroupHandle(this.s, group, newDomain, handle);
  }

  // ---------------------------------------------------------------- map (§3.5)

  /** `iommu_map(domain, iova, paddr, size, prot, gfp)` (gfp is not modelled). */
  map(domain: IommuDomain, iova: bigint, paddr: bigint, size: bigint, prot: number): Result {
    return iommuMap(this.s, domain, iova, paddr, size, prot);
  }

  /** `iommu_map` with 4 KiB page numbers and a page count: the BigInt-free hot path. */
  mapPfn(
    domain: IommuDomain,
    iovaPfn: number,
    paddrPfn: number,
    npages: number,
    prot: number,
  ): Result {
    return iommuMapPfn(this.s, domain, iovaPfn, paddrPfn, npages, prot);
  }

  /** `iommu_unmap(domain, iova, size)` → bytes unmapped. */
  unmap(domain: IommuDomain, iova: bigint, size: bigint): bigint {
    return iommuUnmap(this.s, domain, iova, size);
  }

  /** `iommu_unmap` with page numbers → 4 KiB pages unmapped. */
  unmapPfn(domain: IommuDomain, iovaPfn: number, npages: number): number {
    return iommuUnmapPfn(this.s, domain, iovaPfn, npages);
  }

  /**
   * `iommu_unmap_fast(domain, iova, size, gather)` with page numbers → 4 KiB pages unmapped. No
   * `iotlb_sync`: the caller syncs `gather`, or defers the invalidation (a flush queue).
   */
  unmapFastPfn(domain: IommuDomain, iovaPfn: number, npages: number, gather: IotlbGather): number {
    return iommuUnmapFastPfn(this.s, domain, iovaPfn, npages, gather);
  }

  /** `iommu_iova_to_phys(domain, iova)` (0 = not mapped). */
  iovaToPhys(domain: IommuDomain, iova: bigint): bigint {
    return iommuIovaToPhys(this.s, domain, iova);
  }

  /** `iommu_iova_to_phys` by 4 KiB page number (BigInt-free): the physical page, or -1. */
  iovaToPhysPfn(domain: IommuDomain, iovaPfn: number): number {
    return iommuIovaToPhysPfn(this.s, domain, iovaPfn);
  }

  /** `iommu_set_fault_handler(domain, handler, token)`. */
  setFaultHandler(domain: IommuDomain, handler: IommuFaultHandler, token: unknown): void {
    iommuSetFaultHandler(this.s, domain, handler, token);
  }

  /** `report_iommu_fault(domain, dev, iova, flags)`: the handler's result or ENOSYS. */
  reportIommuFault(domain: IommuDomain, dev: Device, iova: bigint, flags: number): Result {
    return reportIommuFault(this.s, domain, dev, iova, flags);
  }

  // ---------------------------------------------------------------- DMA ownership (§4)

  /** `iommu_device_use_default_domain(dev)`. */
  deviceUseDefaultDomain(dev: Device): Result {
    return iommuDeviceUseDefaultDomain(this.s, dev);
  }

  /** `iommu_device_unuse_default_domain(dev)`. */
  deviceUnuseDefaultDomain(dev: Device): void {
    iommuDeviceUnuseDefaultDomain(this.s, dev);
  }

  /** `iommu_group_claim_dma_owner(group, owner)`. */
  groupClaimDmaOwner(group: IommuGroup, owner: DmaOwnerCookie | null): Result {
    return iommuGroupClaimDmaOwner(this.s, group, owner);
  }

  /** `iommu_device_claim_dma_owner(dev, owner)`. */
  deviceClaimDmaOwner(dev: Device, owner: DmaOwnerCookie | null): Result {
    return iommuDeviceClaimDmaOwner(this.s, dev, owner);
  }

  /** `iommu_group_release_dma_owner(group)`. */
  groupReleaseDmaOwner(group: IommuGroup): void {
    iommuGroupReleaseDmaOwner(this.s, group);
  }

  /** `iommu_device_release_dma_owner(dev)`. */
  deviceReleaseDmaOwner(dev: Device): void {
    iommuDeviceReleaseDmaOwner(this.s, dev);
  }

  /** `iommu_group_dma_owner_claimed(group)`. */
  groupDmaOwnerClaimed(group: IommuGroup): boolean {
    return iommuGroupDmaOwnerClaimed(group);
  }

  /** `__iommu_group_alloc_blocking_domain(group)` (internal; ownership uses it). */
  groupAllocBlockingDomain(group: IommuGroup): Result {
    return iommuGroupAllocBlockingDomain(this.s, group);
  }

  // ---------------------------------------------------------------- PASIDs (§5)

  /** `iommu_alloc_global_pasid(dev)` → PASID or IOMMU_PASID_INVALID. */
  allocGlobalPasid(dev: Device): number {
    return iommuAllocGlobalPasid(this.s, dev);
  }

  /** `iommu_free_global_pasid(pasid)`. */
  freeGlobalPasid(pasid: number): void {
    iommuFreeGlobalPasid(this.s, pasid);
  }

  /** `iommu_attach_device_pasid(domain, dev, pasid, handle)`. */
  attachDevicePasid(
    domain: IommuDomain,
    dev: Device,
    pasid: number,
    handle: IommuAttachHandle | null = null,
  ): Result {
    return iommuAttachDevicePasid(this.s, domain, dev, pasid, handle);
  }

  /** `iommu_replace_device_pasid(domain, dev, pasid, handle)`. */
  replaceDevicePasid(
    domain: IommuDomain,
    dev: Device,
    pasid: number,
    handle: IommuAttachHandle | null,
  ): Result {
    return iommuReplaceDevicePasid(this.s, domain, dev, pasid, handle);
  }

  /** `iommu_detach_device_pasid(domain, dev, pasid)`. */
  detachDevicePasid(domain: IommuDomain, dev: Device, pasid: number): void {
    iommuDetachDevicePasid(this.s, domain, dev, pasid);
  }

  /** `iommu_attach_handle_get(group, pasid, type)`: ENOENT / EBUSY (seed 001). */
  attachHandleGet(group: IommuGroup, pasid: number, type: number): Result<IommuAttachHandle> {
    return iommuAttachHandleGet(group, pasid, type);
  }

  // ---------------------------------------------------------------- SVA (§6)

  /**
   * `iommu_sva_bind_device(dev, mm)` → the bond (ENODEV, EBUSY, EOVERFLOW, ENOSPC, EOPNOTSUPP,
   * attach and driver errors). `flags` is the historical argument (seed 003, removed in v6.2):
   * `IOMMU_SVA_BIND_SUPERVISOR` binds the kernel's `init_mm`, with `mm` null (EINVAL otherwise)
   * and a driver that can (EOPNOTSUPP).
   */
  svaBindDevice(dev: Device, mm: MmStruct | null, flags = 0): Result<IommuSva> {
    return iommuSvaBindDevice(this.s, dev, mm, flags);
  }

  /** `iommu_sva_unbind_device(handle)`. */
  svaUnbindDevice(handle: IommuSva): void {
    iommuSvaUnbindDevice(this.s, handle);
  }

  /** `iommu_sva_get_pasid(handle)` → the mm's PASID or IOMMU_PASID_INVALID. */
  svaGetPasid(handle: IommuSva): number {
    return iommuSvaGetPasid(handle);
  }

  /** `mm_get_enqcmd_pasid(mm)`: the mm's SVA PASID, or IOMMU_PASID_INVALID before any bind. */
  mmGetPasid(mm: MmStruct): number {
    return iommuMmOf(mm)?.pasid ?? IOMMU_PASID_INVALID;
  }

  /** Installs `arch_pgtable_dma_compat(mm)` (default: every mm may be walked by devices). */
  setArchPgtableDmaCompat(fn: (mm: MmStruct) => boolean): void {
    this.s.sva.archPgtableDmaCompat = fn;
  }

  /**
   * Installs the machine's CPU side: historical supervisor binds (seed 003) bind its `init_mm`
   * (`initMm(sys)`, the kernel address space with its vmap mappings), created on first use.
   */
  setMmSubsystem(sys: MmSubsystem): void {
    this.s.sva.mmSys = sys;
  }

  /** `init_mm` of the installed mm subsystem once created, else null. */
  get initMm(): MmStruct | null {
    return svaInitMm(this.s, false);
  }

  // ---------------------------------------------------------------- I/O page faults (§7)

  /** `iopf_queue_alloc(name)`: a queue whose work queue is `iopf_queue/<name>`. */
  iopfQueueAlloc(name: string): IopfQueue {
    return iopfQueueAlloc(this.s, name);
  }

  /** `iopf_queue_add_device(queue, dev)`: ENODEV (no `page_response`), EBUSY (on a queue). */
  iopfQueueAddDevice(queue: IopfQueue, dev: Device): Result {
    return iopfQueueAddDevice(this.s, queue, dev);
  }

  /** `iopf_queue_remove_device(queue, dev)`: pending groups answered INVALID (WARN if absent). */
  iopfQueueRemoveDevice(queue: IopfQueue, dev: Device): void {
    iopfQueueRemoveDevice(this.s, queue, dev);
  }

  /** `iopf_queue_flush_dev(dev)`: runs the queue's pending work; ENODEV (WARN) off any queue. */
  iopfQueueFlushDev(dev: Device): Result {
    return iopfQueueFlushDev(this.s, dev);
  }

  /** `iopf_queue_discard_partial(queue)`: EINVAL for a null queue. */
  iopfQueueDiscardPartial(queue: IopfQueue | null): Result {
    return iopfQueueDiscardPartial(queue);
  }

  /** `iopf_queue_free(queue)`. */
  iopfQueueFree(queue: IopfQueue | null): void {
    iopfQueueFree(this.s, queue);
  }

  /** `iommu_report_device_fault(dev, evt)`: EINVAL (answered INVALID) when nobody handles it. */
  reportDeviceFault(dev: Device, evt: IommuFault): Result {
    return iommuReportDeviceFault(this.s, dev, evt);
  }

  /** `iopf_group_response(group, status)`: the one response of the group (later ones: no-op). */
  iopfGroupResponse(group: IopfGroup, status: IommuPageResponseCode): void {
    iopfGroupResponse(this.s, group, status);
  }

  /** `iopf_free_group(group)`. */
  iopfFreeGroup(group: IopfGroup): void {
    iopfFreeGroup(this.s, group);
  }

  /** Live IOPF queues in allocation order. */
  iopfQueues(): readonly IopfQueue[] {
    return this.s.iopf.queues;
  }

  /** Groups handed to handlers and not yet freed, in report order. */
  iopfGroups(): IopfGroup[] {
    return [...this.s.iopf.groups.values()];
  }

  // ---------------------------------------------------------------- PASID consumers (seed 002)

  /** `iommu_pasid_init(dev)`: a PASID consumer within the driver's `pasid_range`. */
  pasidInit(dev: Device, name?: string): Result<IommuPasidConsumer> {
    return iommuPasidInit(this.s, dev, name);
  }

  /** `iommu_pasid_exit(pasid)`. */
  pasidExit(consumer: IommuPasidConsumer): void {
    iommuPasidExit(this.ioasid, consumer);
  }

  /** `iommu_pasid_alloc(pasid, min, max, private)` → the PASID (EINVAL, ENOSPC). */
  pasidAlloc(
    consumer: IommuPasidConsumer,
    min: number,
    max: number,
    priv: unknown,
  ): Result<number> {
    return iommuPasidAlloc(this.ioasid, consumer, min, max, priv);
  }

  /** `iommu_pasid_free(pasid, ioasid)`. */
  pasidFree(consumer: IommuPasidConsumer, ioasid: number): void {
    iommuPasidFree(this.s, this.ioasid, consumer, ioasid);
  }

  /** `iommu_pasid_for_each(pasid, func, data)`: stops at the first non-zero return. */
  pasidForEach<D>(
    consumer: IommuPasidConsumer,
    fn: (ioasid: number, priv: unknown, data: D) => number,
    data: D,
  ): number {
    return iommuPasidForEach(this.ioasid, consumer, fn, data);
  }

  /** `iommu_pasid_find(pasid, ioasid)`: private data (ENOENT, EACCES). */
  pasidFind(consumer: IommuPasidConsumer, ioasid: number): Result<unknown> {
    return iommuPasidFind(this.ioasid, consumer, ioasid);
  }

  // ---------------------------------------------------------------- views

  /** Kernel log lines printed so far (dev_err, pr_warn, dev_info, …). */
  logs(): readonly KernelLog[] {
    return this.s.logs;
  }

  toJSON(): Json {
    const p = this.s.policy;
    return {
      policy: {
        def_domain_type: domainTypeName(p.defDomainType),
        dma_strict: p.dmaStrict,
        cmd_line_dma_api: p.cmdLineDmaApi,
        cmd_line_strict: p.cmdLineStrict,
        iommu_dma: p.iommuDma,
      },
      iommus: this.s.iommus.map((i) => i.toJSON()),
      groups: this.groups().map((g) => g.toJSON()),
      domains: this.domains().map((d) => d.toJSON()),
      global_pasids: [...this.s.globalPasidIda.ids()],
      sva_mms: [...this.s.sva.mms].map((mm) => ({ mm: mm.id, ...objectJSON(iommuMmOf(mm)) })),
      iopf: this.s.iopf.toJSON(),
      ioasid: this.ioasid.toJSON(),
      dma_owner_compat: this.dmaOwnerCompat.toJSON(),
    };
  }
}

function objectJSON(x: { toJSON(): Json } | null): { [key: string]: Json } {
  const j = x?.toJSON() ?? null;
  return j !== null && typeof j === "object" && !Array.isArray(j) ? j : {};
}
