// The built-in machines, written as plain description data (the same form a YAML file has).
// Scenarios name them (`machine: pci-no-acs`) or extend them (`machine: {extends: default, …}`).

import { fromPlain, type InputNode } from "./input/node.js";

export interface BuiltinMachine {
  readonly doc: string;
  readonly description: Readonly<Record<string, unknown>>;
}

const PASID_DEVICE = { pasid_bits: 20, ats: true, pri: true };

export const BUILTIN_MACHINES: Readonly<Record<string, BuiltinMachine>> = {
  default: {
    doc:
      "Two RISC-V IOMMU instances (iommu0: 20-bit PASIDs; iommu1: 8-bit PASIDs). Behind iommu0: " +
      "a PCIe switch with ACS isolating a DSA-like engine (dsa0: PASID, ATS, PRI, driver idxd) " +
      "and a NIC (nic0: ATS, driver nic), and an empty external-facing (Thunderbolt-like) port " +
      "where an untrusted device (tb0) can be hot-added. Behind iommu1: a PCIe-to-PCI bridge " +
      "(conventional PCI: no ACS possible) whose two devices share one group, an accelerator " +
      "with 8-bit PASIDs, ATS and PRI (acc0), and an integrated GPU with a firmware " +
      "direct-mapped region (IOMMU_RESV_DIRECT). Every device has a DMA engine.",
    description: {
      name: "default",
      memory: { size: "512M" },
      iommus: {
        iommu0: { driver: "riscv", pasid_bits: 20 },
        iommu1: { driver: "riscv", pasid_bits: 8 },
      },
      pci: {
        rp0: { type: "root_port", slot: 1, acs: true },
        sw0: { type: "switch_upstream", parent: "rp0" },
        sw0p0: { type: "switch_downstream", parent: "sw0", slot: 0, acs: true },
        sw0p1: { type: "switch_downstream", parent: "sw0", slot: 1, acs: true },
        rp1: { type: "root_port", slot: 2, acs: true },
        br0: { type: "pci_bridge", parent: "rp1" },
        rp2: { type: "root_port", slot: 3, acs: true, external_facing: true },
        rp3: { type: "root_port", slot: 4, acs: true },
      },
      devices: {
        dsa0: {
          parent: "sw0p0",
          iommu: "iommu0",
          ...PASID_DEVICE,
          endpoint: "dsa",
          driver: "idxd",
        },
        nic0: { parent: "sw0p1", iommu: "iommu0", ats: true, endpoint: "nic", driver: "nic" },
        tb0: { parent: "rp2", iommu: "iommu0", ats: true, endpoint: "test", present: false },
        legacy0: { parent: "br0", slot: 0, iommu: "iommu1", endpoint: "test" },
        legacy1: { parent: "br0", slot: 1, iommu: "iommu1", endpoint: "test" },
        acc0: {
          parent: "rp3",
          iommu: "iommu1",
          pasid_bits: 8,
          ats: true,
          pri: true,
          endpoint: "test",
        },
        // A root-complex integrated GPU whose firmware keeps a framebuffer DMA-mapped 1:1.
        gpu0: {
          slot: 5,
          iommu: "iommu1",
          endpoint: "test",
          reserved_regions: [{ type: "direct", start: "0xa0000000", size: "1M" }],
        },
      },
    },
  },
  "single-mock": {
    doc: "One mock IOMMU and one PCIe device (20-bit PASID, ATS, PRI) below an ACS root port.",
    description: {
      name: "single-mock",
      memory: { size: "256M" },
      iommus: { iommu0: { driver: "mock", pasid_bits: 20 } },
      pci: { rp0: { type: "root_port", slot: 1, acs: true } },
      devices: { dev0: { parent: "rp0", ...PASID_DEVICE, endpoint: "test" } },
    },
  },
  "platform-mock": {
    doc:
      "One mock IOMMU and platform devices: one with pasid-num-bits 20, one with " +
      "pasid-num-bits 0 (only PASID 0), one without the property (no PASIDs).",
    description: {
      name: "platform-mock",
      memory: { size: "256M" },
      iommus: { iommu0: { driver: "mock", pasid_bits: 20 } },
      devices: {
        plat0: { bus: "platform", pasid_num_bits: 20 },
        plat1: { bus: "platform", pasid_num_bits: 0 },
        plat2: { bus: "platform" },
      },
    },
  },
  "pci-no-acs": {
    doc:
      "One mock IOMMU; a switch whose downstream ports lack ACS (each NIC shares a group with its " +
      "port), a multifunction device without ACS (its functions share a group), a SATA part whose " +
      "DMA-alias quirk joins its ACS-isolated functions, and one device isolated below an ACS " +
      "root port.",
    description: {
      name: "pci-no-acs",
      memory: { size: "256M" },
      iommus: { iommu0: { driver: "mock", pasid_bits: 20 } },
      pci: {
        rp0: { type: "root_port", slot: 1, acs: true },
        sw0: { type: "switch_upstream", parent: "rp0" },
        sw0p0: { type: "switch_downstream", parent: "sw0", slot: 0, acs: false },
        sw0p1: { type: "switch_downstream", parent: "sw0", slot: 1, acs: false },
        rp1: { type: "root_port", slot: 2, acs: true },
        rp2: { type: "root_port", slot: 3, acs: true },
        rp3: { type: "root_port", slot: 4, acs: true },
      },
      devices: {
        nic0: { parent: "sw0p0", ...PASID_DEVICE, endpoint: "nic" },
        nic1: { parent: "sw0p1", ...PASID_DEVICE, endpoint: "nic" },
        mf0: { parent: "rp1", function: 0, pasid_bits: 20, endpoint: "test" },
        mf1: { parent: "rp1", function: 1, pasid_bits: 20, endpoint: "test" },
        // Functions with ACS are isolated from each other, but this Marvell SATA part tags DMA
        // of function 0 as function 1: Linux's alias quirk joins them in one group.
        sata0: {
          parent: "rp2",
          function: 0,
          part: "marvell-88se9123",
          acs: true,
          endpoint: "test",
        },
        sata1: {
          parent: "rp2",
          function: 1,
          part: "marvell-88se9123",
          acs: true,
          endpoint: "test",
        },
        iso0: { parent: "rp3", ...PASID_DEVICE, endpoint: "test" },
      },
    },
  },
  "multi-iommu": {
    doc:
      "Two IOMMU instances with different PASID widths (iommu0: 20 bits, iommu1: 8 bits), each " +
      "with an isolated PASID-capable device.",
    description: {
      name: "multi-iommu",
      memory: { size: "256M" },
      iommus: {
        iommu0: { driver: "mock", pasid_bits: 20 },
        iommu1: { driver: "mock", pasid_bits: 8 },
      },
      pci: {
        rp0: { type: "root_port", slot: 1, acs: true },
        rp1: { type: "root_port", slot: 2, acs: true },
      },
      devices: {
        dev0: { parent: "rp0", iommu: "iommu0", ...PASID_DEVICE, endpoint: "test" },
        dev1: { parent: "rp1", iommu: "iommu1", ...PASID_DEVICE, endpoint: "test" },
      },
    },
  },
};

export function builtinMachineNames(): string[] {
  return Object.keys(BUILTIN_MACHINES);
}

/** The description node of a built-in machine (positions name it as `<builtin NAME>`). */
export function builtinMachineNode(name: string): InputNode | undefined {
  const b = Object.hasOwn(BUILTIN_MACHINES, name) ? BUILTIN_MACHINES[name] : undefined;
  return b ? fromPlain(b.description, `<builtin ${name}>`) : undefined;
}
