import { describe, expect, it } from "vitest";
import { createContext } from "../../src/base/context.js";
import { SimError } from "../../src/base/errors.js";
import { DeviceModel } from "../../src/bus/driver-core.js";
import { FwNode, IOMMU_RESV } from "../../src/bus/firmware.js";
import { pciAcsEnabled, REQ_ACS_FLAGS } from "../../src/bus/pci.js";
import { createPciBus, devIsPci, pciScanHost } from "../../src/bus/pci-dev.js";
import { createPlatformBus } from "../../src/bus/platform.js";
import { PciHost } from "../../src/hw/pci/host.js";
import { pciDevid } from "../../src/hw/pci/regs.js";

function machine() {
  const ctx = createContext();
  const model = new DeviceModel(ctx);
  const pci = createPciBus();
  model.busRegister(createPlatformBus());
  model.busRegister(pci);
  const host = new PciHost(ctx);
  return { ctx, model, pci, host };
}

describe("pci_dev view and scan", () => {
  it("adds a pci_dev per function, depth first, named like pci_name", () => {
    const { model, pci, host } = machine();
    const rp = host.addRootPort({ name: "rp0" });
    rp.addEndpoint({ name: "nic", functions: [{ name: "nic.0" }, { name: "nic.1" }] });
    host.addRootPort({ name: "rp1" });
    host.enumerate();
    const added: string[] = [];
    pci.registerNotifier((a, d) => {
      if (a === "ADD_DEVICE") added.push(d.name);
    });
    pciScanHost(model, pci, host);
    const names = pci.pciDevs().map((d) => d.fn.name);
    expect(names).toEqual(["rp0", "nic.0", "nic.1", "rp1"]);
    expect(added).toEqual(pci.pciDevs().map((d) => d.name));
    const nic0 = pci.pciDevOf(host.function("nic.0"))!;
    expect(nic0.name).toBe(host.function("nic.0").bdf);
    expect(devIsPci(nic0)).toBe(true);
    expect(nic0.multifunction).toBe(true);
    expect(pci.pciDevOf(host.function("rp1"))!.multifunction).toBe(false);
  });

  it("refuses to scan a host firmware has not enumerated", () => {
    const { model, pci, host } = machine();
    expect(() => pciScanHost(model, pci, host)).toThrow(SimError);
  });

  it("reads max PASIDs from the PASID capability and marks devices below external-facing ports untrusted", () => {
    const { model, pci, host } = machine();
    host
      .addRootPort({ name: "tb", externalFacing: true })
      .addEndpoint({ name: "ext", pasid: 16, ats: true });
    host.addRootPort({ name: "int" }).addEndpoint({ name: "in", ats: true, pri: true });
    host.enumerate();
    pciScanHost(model, pci, host);
    const ext = pci.pciDevOf(host.function("ext"))!;
    const inn = pci.pciDevOf(host.function("in"))!;
    expect(ext.untrusted).toBe(true);
    expect(ext.maxPasids).toBe(1 << 16);
    expect(inn.untrusted).toBe(false);
    expect(inn.maxPasids).toBe(0);
    // ATS is not offered to untrusted devices.
    expect(ext.atsSupported).toBe(false);
    expect(inn.atsSupported).toBe(true);
    expect(inn.priSupported).toBe(true);
    expect(ext.priSupported).toBe(false);
    expect(pci.pciDevOf(host.function("tb"))!.untrusted).toBe(false);
    const j = ext.toJSON() as { pci: { untrusted: boolean; max_pasids: number } };
    expect(j.pci.untrusted).toBe(true);
    expect(j.pci.max_pasids).toBe(65536);
  });

  it("links each device to the host bridge's IOMMU with its DMA aliases as IDs, and enables ACS", () => {
    const { model, pci, host } = machine();
    const rp = host.addRootPort({ name: "rp", acs: true });
    const br = rp.addPcieToPciBridge({ name: "br" });
    br.addEndpoint({ name: "old", slot: 1 });
    host.enumerate();
    const iommu = new FwNode("iommu@0");
    pciScanHost(model, pci, host, { iommu });
    const old = pci.pciDevOf(host.function("old"))!;
    const brFn = host.function("br");
    expect(old.fw.iommus?.fwnode).toBe(iommu);
    // Its own RID, then the bridge's (secondary bus, 00.0) alias.
    expect(old.fw.iommus?.ids).toEqual([
      host.function("old").rid,
      pciDevid(brFn.config.peek(0x19, 1), 0),
    ]);
    // pci_request_acs: the root port's ACS controls are on after the scan.
    expect(pciAcsEnabled(host.function("rp"), REQ_ACS_FLAGS)).toBe(true);
  });

  it("leaves ACS alone without an IOMMU", () => {
    const { model, pci, host } = machine();
    host.addRootPort({ name: "rp", acs: true });
    host.enumerate();
    pciScanHost(model, pci, host);
    expect(pciAcsEnabled(host.function("rp"), REQ_ACS_FLAGS)).toBe(false);
  });

  it("follows hot plug: added devices are scanned, removed ones deleted children first", () => {
    const { model, pci, host } = machine();
    const port = host.addRootPort({ name: "slot", hotplug: true });
    host.enumerate();
    pciScanHost(model, pci, host);
    const events: string[] = [];
    pci.registerNotifier((a, d) => {
      if (a === "ADD_DEVICE" || a === "REMOVED_DEVICE")
        events.push(`${a} ${(d as { fn?: { name: string } }).fn?.name}`);
    });
    const sw = port.addSwitch({ name: "sw", downstream: 2 });
    const up = sw.upstream.name;
    const dp = sw.downstream.map((p) => p.name);
    expect(events).toEqual([`ADD_DEVICE ${up}`, `ADD_DEVICE ${dp[0]}`, `ADD_DEVICE ${dp[1]}`]);
    events.length = 0;
    port.removeDevice(sw.upstream.device);
    expect(events).toEqual([
      `REMOVED_DEVICE ${dp[1]}`,
      `REMOVED_DEVICE ${dp[0]}`,
      `REMOVED_DEVICE ${up}`,
    ]);
    expect(pci.pciDevs().map((d) => d.fn.name)).toEqual(["slot"]);
    // A re-plugged device gets a fresh pci_dev.
    port.addEndpoint({ name: "card" });
    expect(pci.pciDevs().map((d) => d.fn.name)).toEqual(["slot", "card"]);
  });

  it("gives every function, at boot and on hot plug, what the firmware hook adds before device_add", () => {
    const { model, pci, host } = machine();
    const port = host.addRootPort({ name: "slot", hotplug: true });
    host.enumerate();
    const iommu = new FwNode("iommu@0");
    const seen: string[] = [];
    pciScanHost(model, pci, host, {
      iommu,
      firmware: (fn, fw) => {
        seen.push(fn.name);
        // The iommus link is already there for the hook to see (or rewrite).
        expect(fw.iommus?.fwnode).toBe(iommu);
        fw.setProperty("pasid-num-bits", 5);
        if (fn.name === "card") {
          fw.addResvRegion({
            start: 0x8000_0000n,
            length: 0x1_0000n,
            prot: 3,
            type: IOMMU_RESV.DIRECT,
          });
        }
      },
    });
    const atAdd: string[] = [];
    pci.registerNotifier((a, d) => {
      if (a === "ADD_DEVICE") atAdd.push(`${d.name} ${d.fw.resvRegions().length}`);
    });
    port.addEndpoint({ name: "card" });
    expect(seen).toEqual(["slot", "card"]);
    const card = pci.pciDevOf(host.function("card"))!;
    expect(atAdd).toEqual([`${card.name} 1`]);
    expect(card.fw.resvRegions()).toEqual([
      { start: 0x8000_0000n, length: 0x1_0000n, prot: 3, type: IOMMU_RESV.DIRECT },
    ]);
    expect(pci.pciDevOf(host.function("slot"))!.fw.readU32("pasid-num-bits")).toBe(5);
  });
});
