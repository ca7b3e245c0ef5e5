import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import {
  PCI_EXP_SLTSTA,
  PCI_EXP_SLTSTA_PDC,
  PCI_EXP_SLTSTA_PDS,
  PCI_SECONDARY_BUS,
  PCI_VENDOR_ID,
  pciDevfn,
} from "../../../src/hw/pci/regs.js";
import { newPciRoute, type PciBridge, type PciHotplugEvent } from "../../../src/hw/pci/topology.js";

function slotStatus(port: PciBridge): number {
  return port.config.read(port.caps.pcie + PCI_EXP_SLTSTA, 2);
}

describe("ECAM configuration access", () => {
  it("reaches functions by bus/device/function and master-aborts elsewhere", () => {
    const h = new PciHost(createContext());
    const rp = h.addRootPort({ slot: 2 });
    const dev = rp.addEndpoint({ functions: [{ vendorId: 0x1234, deviceId: 0x5678 }, {}] });
    h.enumerate();
    const bus = rp.secondaryBusNumber;
    expect(h.configRead(bus, pciDevfn(0, 0), PCI_VENDOR_ID, 4)).toBe(0x5678_1234);
    expect(h.ecamRead((bus << 20) | (0 << 15) | (0 << 12), 2)).toBe(0x1234);
    expect(h.ecamRead((0 << 20) | (2 << 15), 4)).toBe(rp.config.read(0, 4));
    expect(h.configRead(bus, pciDevfn(0, 5), 0, 4)).toBe(0xffff_ffff);
    expect(h.configRead(bus, pciDevfn(0, 5), 0, 2)).toBe(0xffff);
    expect(h.configRead(99, 0, 0, 1)).toBe(0xff);
    expect(h.functionAt(bus, pciDevfn(0, 1))).toBe(dev.function(1));
    h.ecamWrite((bus << 20) | (1 << 12) | 0x04, 2, 0);
    expect(dev.function(1)!.busMasterEnabled).toBe(false);
    expect(() => h.ecamRead(0x1000_0000, 4)).toThrow(/ECAM offset/);
  });

  it("follows the bridges' bus-number registers, as type 1 requests do", () => {
    const h = new PciHost(createContext());
    const rp = h.addRootPort();
    rp.addEndpoint({ name: "e" });
    h.enumerate();
    expect(h.configRead(1, 0, 0, 2)).toBe(0x1b36);
    h.configWrite(0, rp.devfn, PCI_SECONDARY_BUS, 1, 9);
    expect(h.configRead(1, 0, 0, 2)).toBe(0xffff);
    // The subordinate number (1) no longer covers bus 9 either: the bus is unreachable.
    expect(h.functionAt(9, 0)).toBeUndefined();
    h.configWrite(0, rp.devfn, 0x1a, 1, 9);
    expect(h.functionAt(9, 0)).toBe(h.function("e"));
    expect(h.function("e").rid).toBe(0x900);
  });
});

describe("hot plug", () => {
  function hotHost() {
    const h = new PciHost(createContext());
    const rp = h.addRootPort({ hotplug: { buses: 4, mmio: 4n << 20n } });
    const fixed = h.addRootPort();
    h.enumerate();
    const events: Array<[string, string, string, number]> = [];
    h.onHotplug((e: PciHotplugEvent) =>
      events.push([e.op, e.port.name, e.device.name, e.device.function(0)!.config.read(0, 2)]),
    );
    return { h, rp, fixed, events };
  }

  it("numbers, places and enables a device added below a hot-plug slot", () => {
    const { h, rp, events } = hotHost();
    expect(slotStatus(rp) & PCI_EXP_SLTSTA_PDS).toBe(0);
    const rec = h.ctx.trace.record();
    const dev = rp.addEndpoint({ name: "hot", bars: [0x10000] });
    const f = dev.function(0)!;
    expect(f.busNumber).toBe(rp.secondaryBusNumber);
    const w = rp.windowPages()!;
    const { first, count } = f.barPages(0);
    expect(first).toBeGreaterThanOrEqual(w.first);
    expect(first + count - 1).toBeLessThanOrEqual(w.last);
    expect(f.memorySpaceEnabled && f.busMasterEnabled).toBe(true);
    expect(f.routeUpstream(0, newPciRoute()).kind).toBe("root-complex");
    expect(slotStatus(rp) & (PCI_EXP_SLTSTA_PDS | PCI_EXP_SLTSTA_PDC)).toBe(
      PCI_EXP_SLTSTA_PDS | PCI_EXP_SLTSTA_PDC,
    );
    // Presence Detect Changed is RW1C: software acknowledges it.
    rp.config.write(rp.caps.pcie + PCI_EXP_SLTSTA, 2, PCI_EXP_SLTSTA_PDC);
    expect(slotStatus(rp) & PCI_EXP_SLTSTA_PDC).toBe(0);
    expect(events).toEqual([["add", "rp0", "hot", 0x1b36]]);
    expect(rec.stop().map((r) => [r.event, r.fields])).toEqual([
      ["pci:hotplug", { op: "add", port: "rp0", device: "hot" }],
    ]);
    expect(h.function("hot")).toBe(f);
  });

  it("adds a whole switch within the reserved bus numbers", () => {
    const { rp, h } = hotHost();
    const sw = rp.addSwitch({ downstream: [{ hotplug: { buses: 0, mmio: 1n << 20n } }] });
    expect(sw.upstream.secondaryBusNumber).toBeGreaterThan(rp.secondaryBusNumber);
    expect(sw.port(0).subordinateBusNumber).toBeLessThanOrEqual(rp.subordinateBusNumber);
    const e = sw
      .port(0)
      .addEndpoint({ bars: [0x1000] })
      .function(0)!;
    expect(e.busNumber).toBe(sw.port(0).secondaryBusNumber);
    expect(h.functionAt(e.busNumber, 0)).toBe(e);
  });

  it("refuses what firmware did not reserve for", () => {
    const { rp, fixed } = hotHost();
    expect(() => fixed.addEndpoint()).toThrow(/rp1 is not a hot-plug capable slot/);
    expect(() => rp.addSwitch({ downstream: 5 })).toThrow(/no bus number left/);
    expect(() => rp.addEndpoint({ bars: [8 << 20] })).toThrow(/memory aperture exhausted/);
    // Failed hot-adds leave the slot empty.
    expect(rp.secondary.devices()).toEqual([]);
    rp.addEndpoint({ name: "ok" });
    expect(() => rp.addEndpoint()).toThrow(/already holds ok/);
  });

  it("tells listeners before a device goes, then frees its names and numbers", () => {
    const { h, rp, events } = hotHost();
    rp.addEndpoint({ name: "hot", bars: [0x1000] });
    const firstBar = h.function("hot").barAddress(0);
    rp.removeDevice("hot");
    // The listener still read the vendor ID: it ran while the device was present.
    expect(events.at(-1)).toEqual(["remove", "rp0", "hot", 0x1b36]);
    expect(slotStatus(rp) & PCI_EXP_SLTSTA_PDS).toBe(0);
    expect(h.findFunction("hot")).toBeUndefined();
    expect(rp.secondary.devices()).toEqual([]);
    const again = rp.addEndpoint({ name: "hot", bars: [0x1000] }).function(0)!;
    expect(again.barAddress(0)).toBe(firstBar);
    expect(() => rp.removeDevice("nope")).toThrow(/no device nope below it/);
    expect(() => (h.function("rp1") as PciBridge).removeDevice(h.device("hot"))).toThrow(
      /no device hot below it/,
    );
  });

  it("edits the tree freely before enumeration", () => {
    const h = new PciHost(createContext());
    const rp = h.addRootPort();
    const sw = rp.addSwitch();
    sw.port(0).addEndpoint({ name: "x" });
    rp.removeDevice(h.device("sw0"));
    expect(h.findFunction("x")).toBeUndefined();
    expect(() => h.switch("sw0")).toThrow(/no switch/);
    expect(rp.addSwitch().name).toBe("sw0");
  });
});
