// PCI / PCI Express configuration-space layout: header offsets, capability IDs, register offsets
// inside capabilities and their bit fields, as the PCI Local Bus, PCI-to-PCI Bridge and PCI
// Express Base specifications define them (names follow include/uapi/linux/pci_regs.h).

export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

// ---- common header ----
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x0010;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_MASK = 0x7f;
export const PCI_HEADER_TYPE_NORMAL = 0;
export const PCI_HEADER_TYPE_BRIDGE = 1;
export const PCI_HEADER_TYPE_MFD = 0x80;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_MEM_MASK = 0xffff_fff0;
export const PCI_CAPABILITY_LIST = 0x34;

// ---- type 0 header ----
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Type 0 functions have six BARs, type 1 (bridges) two. */
export const PCI_STD_NUM_BARS = 6;

// ---- type 1 header (PCI-to-PCI bridges, PCIe ports) ----
export const PCI_PRIMARY_BUS = 0x18;
export const PCI_SECONDARY_BUS = 0x19;
export const PCI_SUBORDINATE_BUS = 0x1a;
export const PCI_MEMORY_BASE = 0x20;
export const PCI_MEMORY_LIMIT = 0x22;
/** Memory base/limit bits 15:4 hold address bits 31:20 (1 MiB granularity). */
export const PCI_MEMORY_RANGE_MASK = 0xfff0;
export const PCI_BRIDGE_CONTROL = 0x3e;

// ---- capability list ----
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_ID_EXP = 0x10;

// ---- PCI Express capability ----
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_VERS = 0x000f;
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
export const PCI_EXP_FLAGS_SLOT = 0x0100;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_TYPE_LEG_END = 0x1;
export const PCI_EXP_TYPE_ROOT_PORT = 0x4;
export const PCI_EXP_TYPE_UPSTREAM = 0x5;
export const PCI_EXP_TYPE_DOWNSTREAM = 0x6;
export const PCI_EXP_TYPE_PCI_BRIDGE = 0x7;
export const PCI_EXP_TYPE_PCIE_BRIDGE = 0x8;
export const PCI_EXP_TYPE_RC_END = 0x9;
export const PCI_EXP_TYPE_RC_EC = 0xa;
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVSTA = 0x0a;
export const PCI_EXP_LNKCAP = 0x0c;
/** Link Capabilities bits 31:24: Port Number. */
export const PCI_EXP_LNKCAP_PN_SHIFT = 24;
export const PCI_EXP_LNKCTL = 0x10;
export const PCI_EXP_LNKSTA = 0x12;
export const PCI_EXP_SLTCAP = 0x14;
export const PCI_EXP_SLTCAP_HPS = 0x0000_0020;
export const PCI_EXP_SLTCAP_HPC = 0x0000_0040;
export const PCI_EXP_SLTCTL = 0x18;
export const PCI_EXP_SLTSTA = 0x1a;
export const PCI_EXP_SLTSTA_PDC = 0x0008;
export const PCI_EXP_SLTSTA_PDS = 0x0040;
export const PCI_EXP_SLTSTA_DLLSC = 0x0100;
export const PCI_EXP_DEVCAP2 = 0x24;
export const PCI_EXP_DEVCAP2_EE_PREFIX = 0x0020_0000;
export const PCI_EXP_DEVCAP2_EE_PREFIX_MAX = 0x00c0_0000;
export const PCI_EXP_DEVCAP2_EE_PREFIX_MAX_SHIFT = 22;
export const PCI_EXP_DEVCTL2 = 0x28;
/** Size of a version-2 PCI Express capability structure. */
export const PCI_CAP_EXP_SIZEOF = 0x3c;

// ---- extended capabilities (offset 0x100 and up) ----
export const PCI_EXT_CAP_START = 0x100;
export const PCI_EXT_CAP_ID_ACS = 0x0d;
export const PCI_EXT_CAP_ID_ATS = 0x0f;
export const PCI_EXT_CAP_ID_PRI = 0x13;
export const PCI_EXT_CAP_ID_PASID = 0x1b;

/** Header dword of an extended capability: ID 15:0, version 19:16, next offset 31:20. */
export function extCapHeader(id: number, version: number, next: number): number {
  return ((next << 20) | ((version & 0xf) << 16) | (id & 0xffff)) >>> 0;
}
export function extCapId(header: number): number {
  return header & 0xffff;
}
export function extCapNext(header: number): number {
  return (header >>> 20) & 0xffc;
}

// ---- Access Control Services ----
export const PCI_ACS_CAP = 0x04;
export const PCI_ACS_SV = 0x01;
export const PCI_ACS_TB = 0x02;
export const PCI_ACS_RR = 0x04;
export const PCI_ACS_CR = 0x08;
export const PCI_ACS_UF = 0x10;
export const PCI_ACS_EC = 0x20;
export const PCI_ACS_DT = 0x40;
export const PCI_ACS_ALL = 0x7f;
/** ACS Capability bits 15:8: Egress Control Vector Size (0 means 256). */
export const PCI_ACS_EGRESS_BITS_SHIFT = 8;
export const PCI_ACS_CTRL = 0x06;
export const PCI_ACS_EGRESS_CTL_V = 0x08;

// ---- Address Translation Services ----
export const PCI_ATS_CAP = 0x04;
export const PCI_ATS_CAP_QDEP_MASK = 0x1f;
export const PCI_ATS_MAX_QDEP = 32;
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x0020;
export const PCI_ATS_CAP_GLOBAL_INV = 0x0040;
export const PCI_ATS_CTRL = 0x06;
export const PCI_ATS_CTRL_ENABLE = 0x8000;
export const PCI_ATS_CTRL_STU_MASK = 0x1f;
export const PCI_ATS_MIN_STU = 12;
export const PCI_EXT_CAP_ATS_SIZEOF = 8;

// ---- Page Request Interface ----
export const PCI_PRI_CTRL = 0x04;
export const PCI_PRI_CTRL_ENABLE = 0x0001;
export const PCI_PRI_CTRL_RESET = 0x0002;
export const PCI_PRI_STATUS = 0x06;
export const PCI_PRI_STATUS_RF = 0x0001;
export const PCI_PRI_STATUS_UPRGI = 0x0002;
export const PCI_PRI_STATUS_STOPPED = 0x0100;
export const PCI_PRI_STATUS_PASID = 0x8000;
export const PCI_PRI_MAX_REQ = 0x08;
export const PCI_PRI_ALLOC_REQ = 0x0c;
export const PCI_EXT_CAP_PRI_SIZEOF = 16;

// ---- Process Address Space ID ----
export const PCI_PASID_CAP = 0x04;
export const PCI_PASID_CAP_EXEC = 0x0002;
export const PCI_PASID_CAP_PRIV = 0x0004;
export const PCI_PASID_CAP_WIDTH = 0x1f00;
export const PCI_PASID_CAP_WIDTH_SHIFT = 8;
export const PCI_PASID_CTRL = 0x06;
export const PCI_PASID_CTRL_ENABLE = 0x0001;
export const PCI_PASID_CTRL_EXEC = 0x0002;
export const PCI_PASID_CTRL_PRIV = 0x0004;
export const PCI_EXT_CAP_PASID_SIZEOF = 8;

// ---- requester IDs ----
export function pciDevfn(slot: number, fn: number): number {
  return ((slot & 0x1f) << 3) | (fn & 0x7);
}
export function pciSlot(devfn: number): number {
  return (devfn >>> 3) & 0x1f;
}
export function pciFunc(devfn: number): number {
  return devfn & 0x7;
}
/** A requester ID (`PCI_DEVID`): bus in bits 15:8, devfn in 7:0. */
export function pciDevid(bus: number, devfn: number): number {
  return ((bus & 0xff) << 8) | (devfn & 0xff);
}
export function ridBus(rid: number): number {
  return (rid >>> 8) & 0xff;
}
/** `bb:dd.f` for a requester ID. */
export function formatRid(rid: number): string {
  const bus = ridBus(rid).toString(16).padStart(2, "0");
  const slot = pciSlot(rid & 0xff)
    .toString(16)
    .padStart(2, "0");
  return `${bus}:${slot}.${pciFunc(rid & 0xff)}`;
}
