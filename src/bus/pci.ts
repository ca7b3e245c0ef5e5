// Linux's drivers/pci helpers that the IOMMU core relies on (pci.c, search.c, ats.c, probe.c,
// quirks.c), over a hardware PCI function. Like the kernel they learn everything from
// configuration space (capability lists, header type, bus-number registers), from firmware
// properties (external-facing root ports) and from the quirk tables keyed by the IDs read there;
// never from the simulator's hardware internals. The kernel's enable flags (pasid_enabled,
// ats_enabled, pri_enabled) are the enable bits they mirror in the capabilities.
//
// The subject of every helper is a `PciFunction` handle; bus/'s struct pci_dev wraps one.

import { type Err, err, OK, ok, type Result } from "../base/result.js";
import {
  extCapId,
  extCapNext,
  PCI_ACS_CAP,
  PCI_ACS_CR,
  PCI_ACS_CTRL,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
  PCI_ATS_CAP,
  PCI_ATS_CAP_PAGE_ALIGNED,
  PCI_ATS_CAP_QDEP_MASK,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_ATS_CTRL_STU_MASK,
  PCI_ATS_MAX_QDEP,
  PCI_ATS_MIN_STU,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_MASK,
  PCI_CAP_ID_EXP,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCAP2,
  PCI_EXP_DEVCAP2_EE_PREFIX,
  PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_TYPE,
  PCI_EXP_TYPE_DOWNSTREAM,
  PCI_EXP_TYPE_ENDPOINT,
  PCI_EXP_TYPE_LEG_END,
  PCI_EXP_TYPE_PCI_BRIDGE,
  PCI_EXP_TYPE_PCIE_BRIDGE,
  PCI_EXP_TYPE_RC_EC,
  PCI_EXP_TYPE_RC_END,
  PCI_EXP_TYPE_ROOT_PORT,
  PCI_EXP_TYPE_UPSTREAM,
  PCI_EXT_CAP_ID_ACS,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_EXT_CAP_START,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_HEADER_TYPE_MASK,
  PCI_HEADER_TYPE_MFD,
  PCI_MEMORY_BASE,
  PCI_MEMORY_LIMIT,
  PCI_MEMORY_RANGE_MASK,
  PCI_PASID_CAP,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  PCI_PASID_CAP_WIDTH,
  PCI_PASID_CAP_WIDTH_SHIFT,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_STOPPED,
  PCI_SECONDARY_BUS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_NUM_BARS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  pciDevfn,
  pciDevid,
  pciFunc,
  pciSlot,
} from "../hw/pci/regs.js";
import type { PciBus, PciFunction } from "../hw/pci/topology.js";

export {
  PCI_ACS_CR,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
  PCI_ATS_MIN_STU,
  PCI_EXP_TYPE_DOWNSTREAM,
  PCI_EXP_TYPE_ENDPOINT,
  PCI_EXP_TYPE_LEG_END,
  PCI_EXP_TYPE_PCI_BRIDGE,
  PCI_EXP_TYPE_PCIE_BRIDGE,
  PCI_EXP_TYPE_RC_EC,
  PCI_EXP_TYPE_RC_END,
  PCI_EXP_TYPE_ROOT_PORT,
  PCI_EXP_TYPE_UPSTREAM,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
};

/** The ACS controls the IOMMU core requires for isolation (drivers/iommu/iommu.c). */
export const REQ_ACS_FLAGS = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

/** `pci_for_each_dma_alias` callback: a non-zero return stops the walk and is returned. */
export type PciDmaAliasFn = (pdev: PciFunction, alias: number) => number;

// ---- configuration-space access, as pci_read_config_* / pci_write_config_* ----

function rd8(pdev: PciFunction, off: number): number {
  return pdev.config.read(off, 1);
}
function rd16(pdev: PciFunction, off: number): number {
  return pdev.config.read(off, 2);
}
function rd32(pdev: PciFunction, off: number): number {
  return pdev.config.read(off, 4);
}
function wr16(pdev: PciFunction, off: number, v: number): void {
  pdev.config.write(off, 2, v & 0xffff);
}
function wr32(pdev: PciFunction, off: number, v: number): void {
  pdev.config.write(off, 4, v >>> 0);
}
function warnOn(pdev: PciFunction, cond: boolean, site: string, message: string): boolean {
  return pdev.host.ctx.warnings.on(cond, site, `${pciName(pdev)}: ${message}`, {
    device: pciName(pdev),
  });
}

/** `pci_name`: `ssss:bb:dd.f`. */
export function pciName(pdev: PciFunction): string {
  const bus = pdev.bus.number.toString(16).padStart(2, "0");
  const slot = pciSlot(pdev.devfn).toString(16).padStart(2, "0");
  return `${pdev.host.segment.toString(16).padStart(4, "0")}:${bus}:${slot}.${pciFunc(pdev.devfn)}`;
}

/** `pci_dev_id`: the function's own requester ID. */
export function pciDevId(pdev: PciFunction): number {
  return pciDevid(pdev.bus.number, pdev.devfn);
}

/** `pci_is_root_bus`. */
export function pciIsRootBus(bus: PciBus): boolean {
  return bus.self === null;
}

/** `pci_upstream_bridge`: `bus->self`, or null on the root bus. */
export function pciUpstreamBridge(pdev: PciFunction): PciFunction | null {
  return pciIsRootBus(pdev.bus) ? null : pdev.bus.self;
}

/** `subordinate->number` of a bridge: its Secondary Bus Number register. */
function subordinateNumber(bridge: PciFunction): number {
  return rd8(bridge, PCI_SECONDARY_BUS);
}

/** `pdev->hdr_type & 0x7f`. */
export function pciHdrType(pdev: PciFunction): number {
  return rd8(pdev, PCI_HEADER_TYPE) & PCI_HEADER_TYPE_MASK;
}

/**
 * `pdev->multifunction`: the Multi-Function Device bit of its Header Type, or any function
 * other than 0 (probe.c pci_scan_slot marks those multifunction).
 */
export function pciDevIsMultifunction(pdev: PciFunction): boolean {
  return (rd8(pdev, PCI_HEADER_TYPE) & PCI_HEADER_TYPE_MFD) !== 0 || pciFunc(pdev.devfn) > 0;
}

/** `pci_find_capability`: offset of standard capability `cap`, or 0. */
export function pciFindCapability(pdev: PciFunction, cap: number): number {
  if ((rd16(pdev, PCI_STATUS) & PCI_STATUS_CAP_LIST) === 0) return 0;
  let pos = rd8(pdev, PCI_CAPABILITY_LIST);
  for (let ttl = 48; ttl > 0; ttl--) {
    if (pos < 0x40) break;
    pos &= ~3;
    const ent = rd16(pdev, pos);
    const id = ent & 0xff;
    if (id === 0xff) break;
    if (id === cap) return pos;
    pos = rd8(pdev, pos + PCI_CAP_LIST_NEXT);
  }
  return 0;
}

function pcieCap(pdev: PciFunction): number {
  return pciFindCapability(pdev, PCI_CAP_ID_EXP);
}

/** `pci_is_pcie`. */
export function pciIsPcie(pdev: PciFunction): boolean {
  return pcieCap(pdev) !== 0;
}

/** `pci_pcie_type`: the Device/Port Type of the PCI Express capability (0 when not PCIe). */
export function pciPcieType(pdev: PciFunction): number {
  const pos = pcieCap(pdev);
  return pos ? (rd16(pdev, pos + PCI_EXP_FLAGS) & PCI_EXP_FLAGS_TYPE) >>> 4 : 0;
}

/** `pdev->cfg_size` as pci_cfg_space_size finds it. */
function cfgSize(pdev: PciFunction): number {
  return pciIsPcie(pdev) ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;
}

/** `pci_find_ext_capability`: offset of extended capability `cap`, or 0. */
export function pciFindExtCapability(pdev: PciFunction, cap: number): number {
  if (cfgSize(pdev) <= PCI_CFG_SPACE_SIZE) return 0;
  let pos = PCI_EXT_CAP_START;
  let header = rd32(pdev, pos);
  // No extended capabilities at all.
  if (header === 0) return 0;
  for (let ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl > 0; ttl--) {
    if (extCapId(header) === cap) return pos;
    pos = extCapNext(header);
    if (pos < PCI_CFG_SPACE_SIZE) break;
    header = rd32(pdev, pos);
  }
  return 0;
}

// ---- pci-driver.c: ID tables ----

/** `PCI_VENDOR_ID_INTEL` (include/linux/pci_ids.h), for the drivers' ID tables. */
export const PCI_VENDOR_ID_INTEL = 0x8086;

/** `struct pci_device_id` (without class matching): vendor and device, optionally subsystem. */
export interface PciDeviceId {
  readonly vendor: number;
  readonly device: number;
  readonly subVendor?: number;
  readonly subDevice?: number;
}

/** `pci_match_id`: the first entry of `ids` the function's configuration space matches, or null. */
export function pciMatchId<T extends PciDeviceId>(ids: readonly T[], pdev: PciFunction): T | null {
  for (const id of ids) if (pciMatchOneDevice(pdev, id)) return id;
  return null;
}

/** `pci_match_one_device`. */
function pciMatchOneDevice(pdev: PciFunction, m: PciDeviceId): boolean {
  if (rd16(pdev, PCI_VENDOR_ID) !== m.vendor || rd16(pdev, PCI_DEVICE_ID) !== m.device)
    return false;
  if (m.subVendor === undefined) return true;
  return (
    rd16(pdev, PCI_SUBSYSTEM_VENDOR_ID) === m.subVendor &&
    rd16(pdev, PCI_SUBSYSTEM_ID) === m.subDevice
  );
}

// ---- quirks.c: DMA aliases, keyed by the IDs in configuration space ----

/** quirk_dma_func0_alias / quirk_dma_func1_alias / quirk_fixed_dma_alias / quirk_mic_x200_dma_alias. */
const DMA_ALIAS_QUIRKS: ReadonlyArray<
  PciDeviceId & { readonly aliases: (devfn: number) => number[] }
> = [
  { vendor: 0x1180, device: 0xe832, aliases: func0Alias },
  { vendor: 0x1180, device: 0xe476, aliases: func0Alias },
  { vendor: 0x1b4b, device: 0x9120, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x9123, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x9130, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x9172, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x917a, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x9182, aliases: func1Alias },
  { vendor: 0x1b4b, device: 0x9230, aliases: func1Alias },
  {
    vendor: 0x9005,
    device: 0x0285,
    subVendor: 0x9005,
    subDevice: 0x02bb,
    aliases: () => [pciDevfn(1, 0)],
  },
  {
    vendor: 0x8086,
    device: 0x2260,
    aliases: () => [pciDevfn(0x10, 0), pciDevfn(0x11, 0), pciDevfn(0x12, 3)],
  },
  {
    vendor: 0x8086,
    device: 0x2264,
    aliases: () => [pciDevfn(0x10, 0), pciDevfn(0x11, 0), pciDevfn(0x12, 3)],
  },
];

function func0Alias(devfn: number): number[] {
  return pciFunc(devfn) !== 0 ? [pciDevfn(pciSlot(devfn), 0)] : [];
}
function func1Alias(devfn: number): number[] {
  return pciFunc(devfn) !== 1 ? [pciDevfn(pciSlot(devfn), 1)] : [];
}

/** quirk_use_pcie_bridge_dma_alias: PCIe-to-PCI bridges that hide their PCIe capability. */
const PCIE_BRIDGE_ALIAS_QUIRKS: readonly PciDeviceId[] = [
  { vendor: 0x1b21, device: 0x1080 },
  { vendor: 0x10e3, device: 0x8113 },
  { vendor: 0x1283, device: 0x8892 },
  { vendor: 0x1283, device: 0x8893 },
  { vendor: 0x8086, device: 0x244e },
];

/** `pdev->dma_alias_mask` as a sorted list of devfns. */
export function pciDmaAliasDevfns(pdev: PciFunction): number[] {
  const out = new Set<number>();
  for (const q of DMA_ALIAS_QUIRKS)
    if (pciMatchOneDevice(pdev, q)) for (const d of q.aliases(pdev.devfn)) out.add(d);
  return [...out].sort((a, b) => a - b);
}

/** `PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS`, as quirk_use_pcie_bridge_dma_alias sets it. */
export function pciDevHasPcieBridgeAlias(pdev: PciFunction): boolean {
  if (pciMatchId(PCIE_BRIDGE_ALIAS_QUIRKS, pdev) === null) return false;
  const parent = pciUpstreamBridge(pdev);
  return (
    parent !== null &&
    pciHdrType(pdev) === PCI_HEADER_TYPE_BRIDGE &&
    !pciIsPcie(pdev) &&
    pciIsPcie(parent) &&
    pciPcieType(parent) !== PCI_EXP_TYPE_PCI_BRIDGE
  );
}

/** `pci_devs_are_dma_aliases`. */
export function pciDevsAreDmaAliases(dev1: PciFunction, dev2: PciFunction): boolean {
  return (
    pciDmaAliasDevfns(dev1).includes(dev2.devfn) || pciDmaAliasDevfns(dev2).includes(dev1.devfn)
  );
}

/**
 * `pci_for_each_dma_alias`: calls `fn` for the device's own requester ID, its quirk aliases,
 * then for each bridge up to the root bus the ID that bridge may give the request
 * (search.c). Stops at the first non-zero return and returns it.
 */
export function pciForEachDmaAlias(pdev: PciFunction, fn: PciDmaAliasFn): number {
  let ret = fn(pdev, pciDevId(pdev));
  if (ret) return ret;
  for (const devfn of pciDmaAliasDevfns(pdev)) {
    ret = fn(pdev, pciDevid(pdev.bus.number, devfn));
    if (ret) return ret;
  }
  for (let bus = pdev.bus; !pciIsRootBus(bus); bus = bus.parent!) {
    const tmp = bus.self!;
    if (pciIsPcie(tmp)) {
      switch (pciPcieType(tmp)) {
        case PCI_EXP_TYPE_ROOT_PORT:
        case PCI_EXP_TYPE_UPSTREAM:
        case PCI_EXP_TYPE_DOWNSTREAM:
          continue;
        case PCI_EXP_TYPE_PCI_BRIDGE:
          // PCIe-to-PCI/X bridges alias requests with (subordinate bus, 00.0).
          ret = fn(tmp, pciDevid(subordinateNumber(tmp), pciDevfn(0, 0)));
          if (ret) return ret;
          continue;
        case PCI_EXP_TYPE_PCIE_BRIDGE:
          ret = fn(tmp, pciDevId(tmp));
          if (ret) return ret;
          continue;
      }
    } else {
      ret = pciDevHasPcieBridgeAlias(tmp)
        ? fn(tmp, pciDevid(subordinateNumber(tmp), pciDevfn(0, 0)))
        : fn(tmp, pciDevId(tmp));
      if (ret) return ret;
    }
  }
  return ret;
}

// ---- probe.c: trust ----

/** `pdev->external_facing`: firmware marks the root port (ACPI "ExternalFacingPort"). */
export function pciDevIsExternalFacing(pdev: PciFunction): boolean {
  return (
    pciPcieType(pdev) === PCI_EXP_TYPE_ROOT_PORT &&
    "externalFacing" in pdev &&
    pdev.externalFacing === true
  );
}

/** `pdev->untrusted`: below an external-facing port, or below an untrusted bridge. */
export function pciDevIsUntrusted(pdev: PciFunction): boolean {
  const parent = pciUpstreamBridge(pdev);
  return parent !== null && (pciDevIsUntrusted(parent) || pciDevIsExternalFacing(parent));
}

/** `pdev->eetlp_prefix_max` as pci_configure_eetlp_prefix computes it (0 = unsupported). */
export function pciEetlpPrefixMax(pdev: PciFunction): number {
  const pos = pcieCap(pdev);
  if (!pos) return 0;
  const cap = rd32(pdev, pos + PCI_EXP_DEVCAP2);
  if ((cap & PCI_EXP_DEVCAP2_EE_PREFIX) === 0) return 0;
  // 00b means 4.
  const max = (cap >>> PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT) & 3 || 4;
  const type = pciPcieType(pdev);
  if (type === PCI_EXP_TYPE_ROOT_PORT || type === PCI_EXP_TYPE_RC_END) return max;
  const bridge = pciUpstreamBridge(pdev);
  return bridge && pciEetlpPrefixMax(bridge) ? max : 0;
}

// ---- pci.c: enabling a device, bus mastering ----

/**
 * What the enable helpers keep of `struct pci_dev` (bus/pci-dev.ts's PciDev is one): the
 * function, `enable_cnt`, `is_busmaster`, and the pci_dev of the upstream bridge.
 */
export interface PciDevEnable {
  readonly fn: PciFunction;
  /** `pdev->enable_cnt`: pci_enable_device calls not yet undone by pci_disable_device. */
  enableCnt: number;
  /** `pdev->is_busmaster`: the last pci_set_master / pci_clear_master. */
  isBusmaster: boolean;
  /** The pci_dev of `pci_upstream_bridge`, or null on the root bus. */
  readonly upstreamBridgeDev: PciDevEnable | null;
}

/** `pci_is_enabled`. */
export function pciIsEnabled(pdev: PciDevEnable): boolean {
  return pdev.enableCnt > 0;
}

/**
 * `pci_enable_device`: the first enable enables the upstream bridges (pci_enable_bridge:
 * enabled and bus masters) and turns on decoding of the device's assigned resources
 * (pci_enable_resources: Memory Space for a memory BAR or a bridge's memory window); later
 * calls only count. This machine has no I/O space, so it is pci_enable_device_mem; every
 * resource is assigned at enumeration (no -EINVAL for an unassigned one).
 */
export function pciEnableDevice(pdev: PciDevEnable): Result {
  if (++pdev.enableCnt > 1) return OK;
  const bridge = pdev.upstreamBridgeDev;
  if (bridge !== null) pciEnableBridge(bridge);
  const fn = pdev.fn;
  const cmd = rd16(fn, PCI_COMMAND);
  if (hasMemResource(fn) && (cmd & PCI_COMMAND_MEMORY) === 0) {
    wr16(fn, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY);
  }
  return OK;
}

/** `pci_enable_device_mem`: the same here (no I/O BARs). */
export function pciEnableDeviceMem(pdev: PciDevEnable): Result {
  return pciEnableDevice(pdev);
}

/**
 * `pci_disable_device`: the last of the enables turns bus mastering off (Memory Space stays on)
 * and clears is_busmaster; disabling a disabled device warns (and the count goes below zero,
 * like the kernel's atomic_dec_return).
 */
export function pciDisableDevice(pdev: PciDevEnable): void {
  warnOn(pdev.fn, pdev.enableCnt <= 0, "pci_disable_device", "disabling already-disabled device");
  if (--pdev.enableCnt !== 0) return;
  setBusMaster(pdev.fn, false);
  pdev.isBusmaster = false;
}

/** `pci_set_master`: Bus Master Enable on, so the function may issue DMA. */
export function pciSetMaster(pdev: PciDevEnable): void {
  setBusMaster(pdev.fn, true);
  pdev.isBusmaster = true;
}

/** `pci_clear_master`: Bus Master Enable off. */
export function pciClearMaster(pdev: PciDevEnable): void {
  setBusMaster(pdev.fn, false);
  pdev.isBusmaster = false;
}

/** `__pci_set_master`: the Command register is written only when the bit changes. */
function setBusMaster(fn: PciFunction, enable: boolean): void {
  const old = rd16(fn, PCI_COMMAND);
  const cmd = enable ? old | PCI_COMMAND_MASTER : old & ~PCI_COMMAND_MASTER;
  if (cmd !== old) wr16(fn, PCI_COMMAND, cmd);
}

/** `pci_enable_bridge`: upstream first; an enabled bridge only becomes a bus master. */
function pciEnableBridge(bridge: PciDevEnable): void {
  const up = bridge.upstreamBridgeDev;
  if (up !== null) pciEnableBridge(up);
  if (pciIsEnabled(bridge)) {
    if (!bridge.isBusmaster) pciSetMaster(bridge);
    return;
  }
  pciEnableDevice(bridge);
  pciSetMaster(bridge);
}

/** A memory resource to decode: a BAR with an address, or a bridge's open memory window. */
function hasMemResource(fn: PciFunction): boolean {
  if (pciHdrType(fn) === PCI_HEADER_TYPE_BRIDGE) {
    const base = rd16(fn, PCI_MEMORY_BASE) & PCI_MEMORY_RANGE_MASK;
    return base <= (rd16(fn, PCI_MEMORY_LIMIT) & PCI_MEMORY_RANGE_MASK);
  }
  for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
    if ((rd32(fn, PCI_BASE_ADDRESS_0 + 4 * i) & PCI_BASE_ADDRESS_MEM_MASK) !== 0) return true;
  }
  return false;
}

// ---- pci.c: ACS ----

/** pci_acs_flags_enabled. */
function acsFlagsEnabled(pdev: PciFunction, acsFlags: number): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ACS);
  if (!pos) return false;
  // Except for egress control, capabilities are either required or only required if
  // controllable: features missing from the capability register are hard-wired enabled.
  const cap = rd16(pdev, pos + PCI_ACS_CAP);
  const flags = acsFlags & (cap | PCI_ACS_EC);
  const ctrl = rd16(pdev, pos + PCI_ACS_CTRL);
  return (ctrl & flags) === flags;
}

/**
 * `pci_acs_enabled`: whether the device provides the ACS controls in `acsFlags`, effectively.
 * No device-specific ACS quirk applies on this machine (pci_dev_specific_acs_enabled → -ENOTTY).
 */
export function pciAcsEnabled(pdev: PciFunction, acsFlags: number): boolean {
  // Conventional PCI and PCI-X devices never support ACS: any device on the bus can see DMA.
  if (!pciIsPcie(pdev)) return false;
  switch (pciPcieType(pdev)) {
    // PCI/X-to-PCIe bridges are handled like non-PCIe devices; PCIe 6.12.1 excludes ACS on
    // PCIe-to-PCI bridges and event collectors.
    case PCI_EXP_TYPE_PCIE_BRIDGE:
    case PCI_EXP_TYPE_PCI_BRIDGE:
    case PCI_EXP_TYPE_RC_EC:
      return false;
    // Downstream and root ports should implement ACS to report their P2P capabilities.
    case PCI_EXP_TYPE_DOWNSTREAM:
    case PCI_EXP_TYPE_ROOT_PORT:
      return acsFlagsEnabled(pdev, acsFlags);
    // The remaining types need ACS only as part of a multi-function device.
    case PCI_EXP_TYPE_ENDPOINT:
    case PCI_EXP_TYPE_UPSTREAM:
    case PCI_EXP_TYPE_LEG_END:
    case PCI_EXP_TYPE_RC_END:
      if (!pciDevIsMultifunction(pdev)) break;
      return acsFlagsEnabled(pdev, acsFlags);
  }
  // Single-function devices other than downstream ports have nothing ACS could control.
  return true;
}

/**
 * `pci_acs_path_enabled`: ACS `acsFlags` from `start` up to `end` (inclusive), or up to the root
 * bus when `end` is null.
 */
export function pciAcsPathEnabled(
  start: PciFunction,
  end: PciFunction | null,
  acsFlags: number,
): boolean {
  let parent: PciFunction = start;
  let pdev: PciFunction;
  do {
    pdev = parent;
    if (!pciAcsEnabled(pdev, acsFlags)) return false;
    if (pciIsRootBus(pdev.bus)) return end === null;
    parent = pdev.bus.self!;
  } while (pdev !== end);
  return true;
}

/**
 * `pci_enable_acs` when an IOMMU asked for ACS (pci_acs_enable set): turns on Source
 * Validation, P2P Request/Completion Redirect and Upstream Forwarding where implemented, and
 * Translation Blocking on external-facing or untrusted ports or when ATS is disabled (noats).
 */
export function pciEnableAcs(pdev: PciFunction, opts: { atsDisabled?: boolean } = {}): void {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ACS);
  if (!pos) return;
  const cap = rd16(pdev, pos + PCI_ACS_CAP);
  let ctrl = rd16(pdev, pos + PCI_ACS_CTRL);
  ctrl |= cap & (PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF);
  if (opts.atsDisabled || pciDevIsExternalFacing(pdev) || pciDevIsUntrusted(pdev))
    ctrl |= cap & PCI_ACS_TB;
  wr16(pdev, pos + PCI_ACS_CTRL, ctrl);
}

// ---- ats.c: ATS ----

/** `pci_ats_supported`: an ATS capability on a trusted device. */
export function pciAtsSupported(pdev: PciFunction): boolean {
  if (!pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS)) return false;
  return !pciDevIsUntrusted(pdev);
}

/** `pdev->ats_enabled`. */
export function pciAtsEnabled(pdev: PciFunction): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS);
  return pos !== 0 && (rd16(pdev, pos + PCI_ATS_CTRL) & PCI_ATS_CTRL_ENABLE) !== 0;
}

/** `pci_enable_ats(dev, ps)`: enables ATS with Smallest Translation Unit 2^ps. */
export function pciEnableAts(pdev: PciFunction, ps: number): Result {
  if (!pciAtsSupported(pdev)) return err("EINVAL");
  if (warnOn(pdev, pciAtsEnabled(pdev), "pci_enable_ats", "ATS already enabled"))
    return err("EBUSY");
  if (ps < PCI_ATS_MIN_STU) return err("EINVAL");
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS);
  wr16(
    pdev,
    pos + PCI_ATS_CTRL,
    PCI_ATS_CTRL_ENABLE | ((ps - PCI_ATS_MIN_STU) & PCI_ATS_CTRL_STU_MASK),
  );
  return OK;
}

/** `pci_disable_ats`. */
export function pciDisableAts(pdev: PciFunction): void {
  if (warnOn(pdev, !pciAtsEnabled(pdev), "pci_disable_ats", "ATS not enabled")) return;
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS);
  wr16(pdev, pos + PCI_ATS_CTRL, rd16(pdev, pos + PCI_ATS_CTRL) & ~PCI_ATS_CTRL_ENABLE);
}

/** `pci_ats_queue_depth`: Invalidate Queue Depth (0 in the register means 32). */
export function pciAtsQueueDepth(pdev: PciFunction): Result<number> {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS);
  if (!pos) return err("EINVAL");
  const q = rd16(pdev, pos + PCI_ATS_CAP) & PCI_ATS_CAP_QDEP_MASK;
  return ok(q || PCI_ATS_MAX_QDEP);
}

/** `pci_ats_page_aligned`: untranslated addresses are always 4 KiB aligned. */
export function pciAtsPageAligned(pdev: PciFunction): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_ATS);
  return pos !== 0 && (rd16(pdev, pos + PCI_ATS_CAP) & PCI_ATS_CAP_PAGE_ALIGNED) !== 0;
}

// ---- ats.c: PRI ----

/** `pci_pri_supported`. */
export function pciPriSupported(pdev: PciFunction): boolean {
  return pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI) !== 0;
}

/** `pdev->pri_enabled`. */
export function pciPriEnabled(pdev: PciFunction): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI);
  return pos !== 0 && (rd16(pdev, pos + PCI_PRI_CTRL) & PCI_PRI_CTRL_ENABLE) !== 0;
}

/** `pci_enable_pri(pdev, reqs)`: allocates min(capacity, reqs) outstanding requests and enables. */
export function pciEnablePri(pdev: PciFunction, reqs: number): Result {
  if (warnOn(pdev, pciPriEnabled(pdev), "pci_enable_pri", "PRI already enabled"))
    return err("EBUSY");
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI);
  if (!pos) return err("EINVAL");
  if ((rd16(pdev, pos + PCI_PRI_STATUS) & PCI_PRI_STATUS_STOPPED) === 0) return err("EBUSY");
  const max = rd32(pdev, pos + PCI_PRI_MAX_REQ);
  wr32(pdev, pos + PCI_PRI_ALLOC_REQ, Math.min(max, reqs >>> 0));
  wr16(pdev, pos + PCI_PRI_CTRL, PCI_PRI_CTRL_ENABLE);
  return OK;
}

/** `pci_disable_pri`. */
export function pciDisablePri(pdev: PciFunction): void {
  if (warnOn(pdev, !pciPriEnabled(pdev), "pci_disable_pri", "PRI not enabled")) return;
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI);
  wr16(pdev, pos + PCI_PRI_CTRL, rd16(pdev, pos + PCI_PRI_CTRL) & ~PCI_PRI_CTRL_ENABLE);
}

/** `pci_reset_pri`: PRI must be disabled. */
export function pciResetPri(pdev: PciFunction): Result {
  if (warnOn(pdev, pciPriEnabled(pdev), "pci_reset_pri", "PRI enabled")) return err("EBUSY");
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI);
  if (!pos) return err("EINVAL");
  wr16(pdev, pos + PCI_PRI_CTRL, PCI_PRI_CTRL_RESET);
  return OK;
}

/** `pci_prg_resp_pasid_required`: the PRG Response PASID Required status bit. */
export function pciPrgRespPasidRequired(pdev: PciFunction): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PRI);
  return pos !== 0 && (rd16(pdev, pos + PCI_PRI_STATUS) & PCI_PRI_STATUS_PASID) !== 0;
}

// ---- ats.c: PASID ----

/** `pdev->pasid_enabled`. */
export function pciPasidEnabled(pdev: PciFunction): boolean {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PASID);
  return pos !== 0 && (rd16(pdev, pos + PCI_PASID_CTRL) & PCI_PASID_CTRL_ENABLE) !== 0;
}

/**
 * `pci_enable_pasid(pdev, features)`: `features` is a mask of PCI_PASID_CAP_EXEC and
 * PCI_PASID_CAP_PRIV. PASID needs End-End TLP prefixes up to the root and ACS P2P Request
 * Redirect and Upstream Forwarding on the whole path, since switches route by address
 * without looking at the PASID.
 */
export function pciEnablePasid(pdev: PciFunction, features: number): Result {
  if (warnOn(pdev, pciPasidEnabled(pdev), "pci_enable_pasid", "PASID already enabled"))
    return err("EBUSY");
  if (!pciEetlpPrefixMax(pdev)) return err("EINVAL");
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PASID);
  if (!pos) return err("EINVAL");
  if (!pciAcsPathEnabled(pdev, null, PCI_ACS_RR | PCI_ACS_UF)) return err("EINVAL");
  const supported = rd16(pdev, pos + PCI_PASID_CAP) & (PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV);
  // The caller wants to enable something unsupported?
  if ((supported & features) !== features) return err("EINVAL");
  wr16(pdev, pos + PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE | features);
  return OK;
}

/** `pci_disable_pasid`. */
export function pciDisablePasid(pdev: PciFunction): void {
  if (warnOn(pdev, !pciPasidEnabled(pdev), "pci_disable_pasid", "PASID not enabled")) return;
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PASID);
  wr16(pdev, pos + PCI_PASID_CTRL, 0);
}

function pasidCap(pdev: PciFunction): number | Err {
  const pos = pciFindExtCapability(pdev, PCI_EXT_CAP_ID_PASID);
  return pos ? pos : err("EINVAL");
}

/** `pci_pasid_features`: the supported features (PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV). */
export function pciPasidFeatures(pdev: PciFunction): Result<number> {
  const pos = pasidCap(pdev);
  if (typeof pos !== "number") return pos;
  return ok(rd16(pdev, pos + PCI_PASID_CAP) & (PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV));
}

/** `pci_max_pasids`: 1 << Max PASID Width. */
export function pciMaxPasids(pdev: PciFunction): Result<number> {
  const pos = pasidCap(pdev);
  if (typeof pos !== "number") return pos;
  return ok(
    1 << ((rd16(pdev, pos + PCI_PASID_CAP) & PCI_PASID_CAP_WIDTH) >>> PCI_PASID_CAP_WIDTH_SHIFT),
  );
}

/** `pci_pasid_status`: the PASID Control register (enable, exec, priv). */
export function pciPasidStatus(pdev: PciFunction): Result<number> {
  const pos = pasidCap(pdev);
  if (typeof pos !== "number") return pos;
  return ok(
    rd16(pdev, pos + PCI_PASID_CTRL) &
      (PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC | PCI_PASID_CTRL_PRIV),
  );
}
