// Known parts whose hardware behaves unusually on the bus: functions that tag DMA with another
// function's requester ID, and PCIe-to-PCI bridges that hide their PCI Express capability yet
// take ownership of forwarded requests. These are hardware facts (errata), described here so the
// simulated machine can contain such parts; whether an OS knows about them is the OS's business.

import { pciDevfn, pciFunc, pciSlot } from "./regs.js";

export interface PciPart {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  readonly classCode?: number;
  readonly description: string;
  /** Other devfns, on the function's own bus, that the function also tags requests with. */
  readonly dmaAliases?: (devfn: number) => readonly number[];
  /** A bridge without a PCI Express capability that re-issues upstream requests as
   *  (secondary bus, 00.0), as PCIe-to-PCI bridges do. */
  readonly takesOwnership?: boolean;
}

const func0 = (devfn: number): readonly number[] =>
  pciFunc(devfn) !== 0 ? [pciDevfn(pciSlot(devfn), 0)] : [];
const func1 = (devfn: number): readonly number[] =>
  pciFunc(devfn) !== 1 ? [pciDevfn(pciSlot(devfn), 1)] : [];

const PARTS = {
  "ricoh-r5c832": {
    vendorId: 0x1180,
    deviceId: 0xe832,
    classCode: 0x0c0010,
    description: "Ricoh R5C832 FireWire/card reader: functions DMA as function 0",
    dmaAliases: func0,
  },
  "ricoh-e476": {
    vendorId: 0x1180,
    deviceId: 0xe476,
    classCode: 0x060700,
    description: "Ricoh CardBus bridge: functions DMA as function 0",
    dmaAliases: func0,
  },
  "marvell-88se9123": {
    vendorId: 0x1b4b,
    deviceId: 0x9123,
    classCode: 0x010601,
    description: "Marvell 88SE9123 SATA: some DMA tagged as function 1",
    dmaAliases: func1,
  },
  "marvell-88se9172": {
    vendorId: 0x1b4b,
    deviceId: 0x9172,
    classCode: 0x010601,
    description: "Marvell 88SE9172 SATA: some DMA tagged as function 1",
    dmaAliases: func1,
  },
  "marvell-88se9230": {
    vendorId: 0x1b4b,
    deviceId: 0x9230,
    classCode: 0x010601,
    description: "Marvell 88SE9230 SATA: some DMA tagged as function 1",
    dmaAliases: func1,
  },
  "adaptec-2405": {
    vendorId: 0x9005,
    deviceId: 0x0285,
    subsystemVendorId: 0x9005,
    subsystemId: 0x02bb,
    classCode: 0x010400,
    description: "Adaptec 3405/2405 RAID: DMA also tagged as 01.0",
    dmaAliases: () => [pciDevfn(1, 0)],
  },
  "intel-mic-x200-dma": {
    vendorId: 0x8086,
    deviceId: 0x2264,
    classCode: 0x088000,
    description: "Intel MIC x200 DMA: forwards DMA with the NTB's requester IDs 10.0, 11.0, 12.3",
    dmaAliases: () => [pciDevfn(0x10, 0), pciDevfn(0x11, 0), pciDevfn(0x12, 3)],
  },
  "asmedia-asm1083": {
    vendorId: 0x1b21,
    deviceId: 0x1080,
    classCode: 0x060401,
    description: "ASMedia ASM1083/1085 PCIe-to-PCI bridge without a PCI Express capability",
    takesOwnership: true,
  },
  "tundra-tsi381": {
    vendorId: 0x10e3,
    deviceId: 0x8113,
    classCode: 0x060401,
    description: "Tundra Tsi381 PCIe-to-PCI bridge without a PCI Express capability",
    takesOwnership: true,
  },
  "ite-it8892": {
    vendorId: 0x1283,
    deviceId: 0x8892,
    classCode: 0x060401,
    description: "ITE IT8892 PCIe-to-PCI bridge without a PCI Express capability",
    takesOwnership: true,
  },
} as const satisfies Record<string, PciPart>;

export type PciPartName = keyof typeof PARTS;

export const PCI_PARTS: Readonly<Record<PciPartName, PciPart>> = PARTS;

export function pciPartNames(): PciPartName[] {
  return Object.keys(PARTS) as PciPartName[];
}

export function isPciPartName(name: string): name is PciPartName {
  return Object.hasOwn(PARTS, name);
}
