// `struct pci_dev` and the PCI bus as the OS sees them: one device-model device per PCI function
// (endpoints, bridges and ports alike), whose IOMMU-relevant properties are read from
// configuration space through the drivers/pci helpers of bus/pci.ts. `pciScanHost` plays the PCI
// core's scan (`pci_scan_root_bus` + `pci_bus_add_devices`) and follows hot plug; firmware's
// `iommu-map` of the host bridge becomes each device's `iommus` link, with its DMA aliases as
// IDs (of_pci_iommu_init is called per alias), and a per-function hook adds what else firmware
// describes (reserved regions, properties).

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { PciHost } from "../hw/pci/host.js";
import { PciBridge, type PciDevice, type PciFunction } from "../hw/pci/topology.js";
import { BusType, Device } from "./device.js";
import type { DeviceModel } from "./driver-core.js";
import { FirmwareDescription, FwNode } from "./firmware.js";
import {
  type PciDevEnable,
  pciAtsSupported,
  pciDevIsMultifunction,
  pciDevIsUntrusted,
  pciEnableAcs,
  pciForEachDmaAlias,
  pciMaxPasids,
  pciName,
  pciPriSupported,
  pciUpstreamBridge,
} from "./pci.js";
import { firmwareDmaCleanup, firmwareDmaConfigure } from "./platform.js";

export class PciDev extends Device implements PciDevEnable {
  /**
   * `pdev->untrusted`, set when the function is scanned: it sits below an external-facing port
   * (Thunderbolt, …) and must be isolated by a DMA domain (core §2.4 step 4).
   */
  untrusted: boolean;
  /** `pdev->enable_cnt` (pci_enable_device / pci_disable_device, bus/pci.ts). */
  enableCnt = 0;
  /** `pdev->is_busmaster` (pci_set_master / pci_clear_master). */
  isBusmaster = false;

  constructor(
    /** The hardware function behind this pci_dev. */
    readonly fn: PciFunction,
    bus: BusType,
    fw: FirmwareDescription,
  ) {
    super(pciName(fn), bus, fw);
    this.untrusted = pciDevIsUntrusted(fn);
  }

  /** The pci_dev of `pci_upstream_bridge`, or null on the root bus. */
  get upstreamBridgeDev(): PciDev | null {
    const bridge = pciUpstreamBridge(this.fn);
    if (bridge === null || !(this.bus instanceof PciBusType)) return null;
    return this.bus.pciDevOf(bridge) ?? null;
  }

  /** `pdev->multifunction`. */
  get multifunction(): boolean {
    return pciDevIsMultifunction(this.fn);
  }

  /** `pci_max_pasids(pdev)`, or 0 without a PASID capability. */
  get maxPasids(): number {
    const r = pciMaxPasids(this.fn);
    return r.ok ? r.value : 0;
  }

  /** `pci_ats_supported(pdev)`: an ATS capability on a trusted device. */
  get atsSupported(): boolean {
    return pciAtsSupported(this.fn);
  }

  /** `pci_pri_supported(pdev)`. */
  get priSupported(): boolean {
    return pciPriSupported(this.fn);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return {
      pci: {
        function: this.fn.name,
        kind: this.fn.kind,
        untrusted: this.untrusted,
        multifunction: this.multifunction,
        max_pasids: this.maxPasids,
        ats: this.atsSupported,
        pri: this.priSupported,
        enable_cnt: this.enableCnt,
        is_busmaster: this.isBusmaster,
      },
    };
  }
}

/** `dev_is_pci`. */
export function devIsPci(dev: Device): dev is PciDev {
  return dev instanceof PciDev;
}

/** A PCI bus type: `pci_bus_type` plus the function → pci_dev map of its scanned hosts. */
export class PciBusType extends BusType {
  readonly #byFunction = new Map<PciFunction, PciDev>();

  constructor() {
    super("pci", { dmaConfigure: firmwareDmaConfigure, dmaCleanup: firmwareDmaCleanup });
  }

  /** The registered pci_dev of a hardware function (`&pdev->dev` for a `struct pci_dev *`). */
  pciDevOf(fn: PciFunction): PciDev | undefined {
    return this.#byFunction.get(fn);
  }

  /** `for_each_pci_dev`: every registered pci_dev, in bus (registration) order. */
  pciDevs(): PciDev[] {
    return this.devices().filter(devIsPci);
  }

  /** @internal pciScanHost */
  track(dev: PciDev): void {
    this.#byFunction.set(dev.fn, dev);
  }

  /** @internal pciScanHost */
  untrack(dev: PciDev): void {
    if (this.#byFunction.get(dev.fn) === dev) this.#byFunction.delete(dev.fn);
  }
}

/** A new `pci_bus_type` (`pci_dma_configure` / `pci_dma_cleanup`). */
export function createPciBus(): PciBusType {
  return new PciBusType();
}

export interface PciScanOptions {
  /** The IOMMU firmware node the host bridge's `iommu-map` points at (null: none). */
  readonly iommu?: FwNode | null;
  /**
   * `pci_request_acs()` was called (of_iommu_configure does for PCI devices behind an IOMMU),
   * so `pci_acs_init` enables ACS on every scanned function. Default: when `iommu` is given.
   */
  readonly enableAcs?: boolean;
  /**
   * What firmware says about one function beyond the `iommus` link (its device-tree node or
   * ACPI description): called for every function scanned, at boot and on hot plug, after the
   * `iommus` link is set and before `device_add`, so the IOMMU layer sees it when it probes the
   * device. It may add reserved regions (an IOMMU_RESV_DIRECT region — DT `memory-region` with
   * `iommu-addresses`, ACPI IORT RMR — makes the device `require_direct`) and properties, or
   * rewrite the `iommus` link (e.g. an `iommu-map` with an ID base).
   */
  readonly firmware?: (fn: PciFunction, fw: FirmwareDescription) => void;
}

/**
 * Scans an enumerated host: adds a pci_dev for every function, depth first in devfn order, with
 * its firmware description (`iommus` link, then `opts.firmware`), and keeps following hot plug
 * (added devices are scanned the same way, removed ones deleted, children first). Returns the
 * unsubscribe function of the hot-plug listener.
 */
export function pciScanHost(
  model: DeviceModel,
  bus: PciBusType,
  host: PciHost,
  opts: PciScanOptions = {},
): () => void {
  if (!host.enumerated)
    throw new SimError(`${host.name} must be enumerated before the OS scans it`);
  const iommu = opts.iommu ?? null;
  const enableAcs = opts.enableAcs ?? iommu !== null;
  const add = (fn: PciFunction): void => {
    if (bus.pciDevOf(fn)) return;
    if (enableAcs) pciEnableAcs(fn);
    const fw = new FirmwareDescription({ node: new FwNode(pciName(fn)) });
    if (iommu !== null) {
      const ids: number[] = [];
      pciForEachDmaAlias(fn, (_p, alias) => {
        if (!ids.includes(alias)) ids.push(alias);
        return 0;
      });
      fw.iommus = { fwnode: iommu, ids };
    }
    opts.firmware?.(fn, fw);
    const dev = new PciDev(fn, bus, fw);
    bus.track(dev);
    model.deviceAdd(dev);
  };
  const subtree = (device: PciDevice): PciFunction[] => {
    const out: PciFunction[] = [];
    for (const f of device.functions()) {
      out.push(f);
      if (f instanceof PciBridge) for (const d of f.secondary.devices()) out.push(...subtree(d));
    }
    return out;
  };
  for (const fn of host.functions()) add(fn);
  return host.onHotplug((e) => {
    const fns = subtree(e.device);
    if (e.op === "add") {
      for (const fn of fns) add(fn);
      return;
    }
    for (const fn of fns.reverse()) {
      const dev = bus.pciDevOf(fn);
      if (!dev) continue;
      if (dev.registered) model.deviceDel(dev);
      bus.untrack(dev);
    }
  });
}
