// The DMA side of a machine's PCI hierarchy: one IO bridge per host bridge (inbound DMA routed by
// the PCIe model, translated by the host's translation agent, into physical memory) and the
// device model behind each described function (`endpoint: test | dsa | nic`).
//
// What DMA means depends on the IOMMU in front of the host:
// - a RISC-V IOMMU: its hardware model is the host's translation agent; every device access is
//   translated through the tables the driver programmed, faults land in its fault queue, page
//   requests in its page-request queue;
// - no IOMMU (`iommu: null`): no translation, device addresses are physical addresses;
// - a mock IOMMU: the mock driver has no hardware, so there is nothing faithful to translate
//   through. Devices behind it get no DMA engine at all, and DMA steps need the riscv driver.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import { DsaDevice } from "../hw/endpoints/dsa.js";
import { NicDevice } from "../hw/endpoints/nic.js";
import { TestDevice } from "../hw/endpoints/test-device.js";
import type { PhysicalMemory } from "../hw/memory.js";
import { IoBridge } from "../hw/pci/io-bridge.js";
import type { PciFabric, PciFunction } from "../hw/pci/topology.js";
import type { TranslationAgent } from "../hw/pci/translation-agent.js";
import type { MachineDescription, PciFunctionDescription } from "./description.js";
import type { MachinePci } from "./pci.js";

/** A device model of the machine. */
export type MachineEndpoint = TestDevice | DsaDevice | NicDevice;

export class MachineEndpoints {
  /** The IO bridge of each host bridge, in host order. */
  readonly bridges: readonly IoBridge[];
  readonly #pci: MachinePci;
  readonly #descs: ReadonlyMap<string, PciFunctionDescription>;
  /** Hosts whose devices get DMA engines: behind a RISC-V IOMMU or behind none. */
  readonly #dmaHosts: ReadonlySet<PciFabric>;
  readonly #models = new Map<string, MachineEndpoint>();

  constructor(pci: MachinePci, desc: MachineDescription, memory: PhysicalMemory) {
    this.#pci = pci;
    this.bridges = pci.hosts.map(({ host }) => new IoBridge(host, memory));
    this.#descs = new Map(
      desc.devices.flatMap((d) => (d.bus === "pci" && d.endpoint !== "none" ? [[d.name, d]] : [])),
    );
    const driverOf = new Map(desc.iommus.map((i) => [i.name, i.driver]));
    this.#dmaHosts = new Set(
      pci.hosts
        .filter(({ iommu }) => iommu === null || driverOf.get(iommu) === "riscv")
        .map(({ host }) => host),
    );
  }

  /**
   * Puts `agent` (an IOMMU's hardware) in front of the hosts `iommu` translates, and connects
   * the message ports of the models already there (ATS invalidations, PRG responses) to it.
   */
  setTranslationAgent(iommu: string, agent: TranslationAgent): void {
    for (const { host, iommu: name } of this.#pci.hosts) {
      if (name !== iommu) continue;
      host.setTranslationAgent(agent);
      // Re-attaching a model makes the bridge connect every model of the host to the new agent.
      const first = [...this.#models.values()].find((m) => m.fn.host === host);
      if (first !== undefined) {
        first.bridge.detach(first.fn);
        first.bridge.attach(first.fn, first);
      }
    }
  }

  /**
   * Creates the model of every function a hot plug adds, before the OS scans them (so a driver
   * probing the new device finds its registers). Call before the OS's scan subscribes.
   */
  followHotplug(): void {
    for (const { host } of this.#pci.hosts) {
      host.onHotplug((e) => {
        if (e.op === "add") for (const fn of e.device.functions()) this.#attachFunction(fn);
      });
    }
  }

  /** The device model behind a described function, while it is plugged in. */
  model(name: string): MachineEndpoint | undefined {
    return this.#models.get(name);
  }

  /** The IO bridge of the host a described function or bridge sits on. */
  bridgeOf(name: string): IoBridge | undefined {
    const fn = this.#pci.fn(name);
    return fn === undefined ? undefined : this.bridges.find((b) => b.host === fn.host);
  }

  /**
   * Creates the models of every present described function that has one: the hardware is there
   * once firmware has enumerated it, before the OS scans it and before any IOMMU registers.
   */
  attachPresent(): void {
    for (const name of this.#descs.keys()) {
      const fn = this.#pci.fn(name);
      if (fn !== undefined) this.#attachFunction(fn);
    }
  }

  /** Creates the model behind a described function; nothing for other functions. */
  #attachFunction(fn: PciFunction): void {
    const name = fn.name;
    const d = this.#descs.get(name);
    if (d === undefined || this.#models.has(name)) return;
    if (!this.#dmaHosts.has(fn.host)) return;
    const bridge = this.bridges.find((b) => b.host === fn.host)!;
    const opts = { name };
    const model =
      d.endpoint === "dsa"
        ? new DsaDevice(bridge, fn, opts)
        : d.endpoint === "nic"
          ? new NicDevice(bridge, fn, opts)
          : new TestDevice(bridge, fn, opts);
    this.#models.set(name, model);
  }

  /** Unplugs the models of the given functions (after the OS let go of the device). */
  detach(names: readonly string[]): void {
    for (const n of names) {
      const m = this.#models.get(n);
      if (m === undefined) continue;
      m.detach();
      this.#models.delete(n);
    }
  }

  /** Every model, in description order. */
  models(): MachineEndpoint[] {
    return [...this.#descs.keys()].flatMap((n) => {
      const m = this.#models.get(n);
      return m ? [m] : [];
    });
  }

  /** The model of `name`, or a SimError saying why the device has none. */
  engineOf(name: string): MachineEndpoint {
    const m = this.#models.get(name);
    if (m !== undefined) return m;
    const d = this.#descs.get(name);
    if (d === undefined) throw new SimError(`device ${name} has no DMA engine (endpoint: none)`);
    const fn = this.#pci.fn(name);
    if (fn === undefined) throw new SimError(`device ${name} is not plugged in`);
    throw new SimError(
      `device ${name} sits behind a mock IOMMU, which has no hardware to translate DMA (use the riscv driver)`,
    );
  }

  toJSON(): Json {
    return this.models().map((m) => m.toJSON());
  }
}
