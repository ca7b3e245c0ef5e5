// `pci_device_group` (core §2.3): which functions the IOMMU cannot tell apart or isolate. A PCI
// function shares a group with (a) any device along its DMA alias chain that already has one,
// (b) every bridge on its upstream path until ACS SV+RR+CR+UF isolates it, (c) functions
// aliasing it or being aliased by it (quirks), and (d) non-ACS-isolated functions of the same
// multifunction slot. Everything is read from configuration space through bus/pci.ts.

import { SimError } from "../base/errors.js";
import { err, ok, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import {
  pciAcsEnabled,
  pciAcsPathEnabled,
  pciDevIsMultifunction,
  pciDevsAreDmaAliases,
  pciForEachDmaAlias,
  pciIsRootBus,
  REQ_ACS_FLAGS,
} from "../bus/pci.js";
import { devIsPci, PciBusType } from "../bus/pci-dev.js";
import { pciSlot } from "../hw/pci/regs.js";
import type { PciFunction } from "../hw/pci/topology.js";
import type { IommuGroup } from "./group.js";
import type { CoreState } from "./state.js";

/** Walk context: the pci bus type (for `for_each_pci_dev`) and the visited-devfn bitmap. */
interface Walk {
  readonly s: CoreState;
  readonly bus: PciBusType;
  /** The kernel keys this bitmap by devfn only (256 bits), whatever the bus. */
  readonly devfns: Set<number>;
}

/** `iommu_group_get(&pdev->dev)`: the function's group with a reference, or null. */
function groupGet(w: Walk, fn: PciFunction): IommuGroup | null {
  const dev = w.bus.pciDevOf(fn);
  if (!dev) return null;
  const g = w.s.groupOf(dev);
  return g === null ? null : w.s.groupRefGet(g);
}

function pciFunctions(w: Walk): PciFunction[] {
  return w.bus.pciDevs().map((d) => d.fn);
}

/** `get_pci_function_alias_group`. */
function functionAliasGroup(w: Walk, pdev: PciFunction): IommuGroup | null {
  if (!pciDevIsMultifunction(pdev) || pciAcsEnabled(pdev, REQ_ACS_FLAGS)) return null;
  for (const tmp of pciFunctions(w)) {
    if (
      tmp === pdev ||
      tmp.bus !== pdev.bus ||
      pciSlot(tmp.devfn) !== pciSlot(pdev.devfn) ||
      pciAcsEnabled(tmp, REQ_ACS_FLAGS)
    ) {
      continue;
    }
    const group = aliasGroup(w, tmp);
    if (group !== null) return group;
  }
  return null;
}

/** `get_pci_alias_group`: the bitmap stops alias loops between multifunction devices. */
function aliasGroup(w: Walk, pdev: PciFunction): IommuGroup | null {
  const key = pdev.devfn & 0xff;
  if (w.devfns.has(key)) return null;
  w.devfns.add(key);
  const own = groupGet(w, pdev);
  if (own !== null) return own;
  for (const tmp of pciFunctions(w)) {
    if (tmp === pdev || tmp.bus !== pdev.bus) continue;
    // We alias them or they alias us.
    if (pciDevsAreDmaAliases(pdev, tmp)) {
      const g = aliasGroup(w, tmp) ?? functionAliasGroup(w, tmp);
      if (g !== null) return g;
    }
  }
  return null;
}

/** `pci_device_group`. */
export function pciDeviceGroup(s: CoreState, dev: Device): Result<IommuGroup> {
  if (s.warnOn(!devIsPci(dev), "pci_device_group", `${dev.name} is not a PCI device`)) {
    return err("EINVAL");
  }
  if (!devIsPci(dev)) return err("EINVAL");
  const bus = dev.bus;
  if (!(bus instanceof PciBusType)) throw new SimError(`${dev.name} is not on a PciBusType bus`);
  const w: Walk = { s, bus, devfns: new Set() };

  // The upstream DMA alias: a device aliased by topology cannot have its own group.
  let last: PciFunction = dev.fn;
  let found: IommuGroup | null = null;
  const stop = pciForEachDmaAlias(dev.fn, (p) => {
    last = p;
    found = groupGet(w, p);
    return found !== null ? 1 : 0;
  });
  if (stop !== 0 && found !== null) return ok(found);
  let pdev: PciFunction = last;

  // Continue upstream to where PCI ACS protects from peer-to-peer DMA.
  for (let b = pdev.bus; !pciIsRootBus(b); b = b.parent!) {
    if (!b.self) continue;
    if (pciAcsPathEnabled(b.self, null, REQ_ACS_FLAGS)) break;
    pdev = b.self;
    const g = groupGet(w, pdev);
    if (g !== null) return ok(g);
  }

  // Groups of devices aliasing us or aliased by us.
  const alias = aliasGroup(w, pdev);
  if (alias !== null) return ok(alias);
  // Non-isolated functions of the same slot (the bitmap is still valid).
  const func = functionAliasGroup(w, pdev);
  if (func !== null) return ok(func);
  return ok(s.groupAlloc());
}
