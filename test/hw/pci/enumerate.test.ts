import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import { PCI_COMMAND } from "../../../src/hw/pci/regs.js";
import { PciBridge, type PciFunction } from "../../../src/hw/pci/topology.js";
import { buildTree, treeArb } from "./trees.js";

function numbers(b: PciBridge): [number, number, number] {
  return [b.primaryBusNumber, b.secondaryBusNumber, b.subordinateBusNumber];
}

describe("firmware enumeration", () => {
  it("numbers a nested tree depth first", () => {
    const h = new PciHost(createContext());
    const rp0 = h.addRootPort();
    const sw = rp0.addSwitch({ downstream: 2 });
    sw.port(0).addEndpoint({ name: "a" });
    const rp1 = h.addRootPort();
    const br = rp1.addPcieToPciBridge();
    br.addEndpoint({ name: "c" });
    const ppb = br.addPciBridge();
    ppb.addEndpoint({ name: "d" });
    h.enumerate();
    // rp0 → bus 1 (switch upstream port) → 2 (internal) → 3 (dp0's link), 4 (dp1's link);
    // rp1 → 5 (bridge's link) → 6 (conventional) → 7 (behind the PCI-to-PCI bridge).
    expect(numbers(rp0)).toEqual([0, 1, 4]);
    expect(numbers(sw.upstream)).toEqual([1, 2, 4]);
    expect(numbers(sw.port(0))).toEqual([2, 3, 3]);
    expect(numbers(sw.port(1))).toEqual([2, 4, 4]);
    expect(numbers(rp1)).toEqual([0, 5, 7]);
    expect(numbers(br)).toEqual([5, 6, 7]);
    expect(numbers(ppb)).toEqual([6, 7, 7]);
    expect(h.function("a").bdf).toBe("0000:03:00.0");
    expect(h.function("c").bdf).toBe("0000:06:00.0");
    expect(h.function("d").bdf).toBe("0000:07:00.0");
    expect(h.functionAt(7, 0)).toBe(h.function("d"));
  });

  it("reserves bus numbers below hot-plug ports and starts at the root bus number", () => {
    const h = new PciHost(createContext(), { rootBus: 0x20 });
    const rp0 = h.addRootPort({ hotplug: { buses: 3 } });
    const rp1 = h.addRootPort();
    h.enumerate();
    expect(numbers(rp0)).toEqual([0x20, 0x21, 0x24]);
    expect(numbers(rp1)).toEqual([0x20, 0x25, 0x25]);
  });

  it("fails clearly when bus numbers or memory run out", () => {
    const h = new PciHost(createContext());
    h.addRootPort({ hotplug: { buses: 254 } });
    h.addRootPort();
    expect(() => h.enumerate()).toThrow(/no bus number left for rp1/);
    const m = new PciHost(createContext(), { mmio: { base: 0x4000_0000n, size: 1n << 20n } });
    m.addRcEndpoint({ bars: [1 << 20] });
    m.addRcEndpoint({ name: "big", bars: [1 << 20] });
    expect(() => m.enumerate()).toThrow(/memory aperture exhausted at big BAR 0/);
  });

  test.prop([treeArb])("gives every bridge nested, disjoint bus ranges in DFS order", (desc) => {
    const h = buildTree(desc);
    const bridges = h.functions().filter((f): f is PciBridge => f instanceof PciBridge);
    const seen = new Set<number>();
    let last = h.rootBusNumber;
    for (const b of bridges) {
      const [pri, sec, sub] = numbers(b);
      expect(pri).toBe(b.bus.number);
      expect(sec).toBeGreaterThan(pri);
      expect(sub).toBeGreaterThanOrEqual(sec);
      expect(seen.has(sec)).toBe(false);
      seen.add(sec);
      // Depth-first: each new secondary bus is the next number after everything before it.
      expect(sec).toBe(last + 1);
      last = sec;
      for (const child of b.secondary.functions()) {
        if (child instanceof PciBridge) {
          expect(child.secondaryBusNumber).toBeGreaterThan(sec);
          expect(child.subordinateBusNumber).toBeLessThanOrEqual(sub);
        }
      }
    }
    for (const f of h.functions()) expect(h.functionAt(f.busNumber, f.devfn)).toBe(f);
  });

  test.prop([treeArb])("places BARs aligned, disjoint, inside every window above them", (desc) => {
    const h = buildTree(desc);
    const ranges: Array<[number, number, PciFunction]> = [];
    const mmioFirst = Number(h.mmio.base >> 12n);
    const mmioEnd = mmioFirst + Number(h.mmio.size >> 12n);
    for (const f of h.functions()) {
      expect(f.config.read(PCI_COMMAND, 2) & 0x6).toBe(0x6);
      for (let i = 0; i < f.barCount; i++) {
        const { first, count } = f.barPages(i);
        expect(first % count).toBe(0);
        expect(first).toBeGreaterThanOrEqual(mmioFirst);
        expect(first + count).toBeLessThanOrEqual(mmioEnd);
        ranges.push([first, first + count, f]);
        for (let b = f.bus.self; b; b = b.bus.self) {
          const w = b.windowPages();
          expect(w).not.toBeNull();
          expect(first).toBeGreaterThanOrEqual(w!.first);
          expect(first + count - 1).toBeLessThanOrEqual(w!.last);
        }
      }
      if (f instanceof PciBridge) {
        const kids = f.secondary.functions().filter((c): c is PciBridge => c instanceof PciBridge);
        const ws = kids.map((k) => k.windowPages()).filter((w) => w !== null);
        ws.sort((a, b) => a.first - b.first);
        for (let i = 1; i < ws.length; i++) expect(ws[i]!.first).toBeGreaterThan(ws[i - 1]!.last);
      }
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++)
      expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]);
  });

  it("is deterministic: the same description gives the same registers", () => {
    fc.assert(
      fc.property(treeArb, (desc) => {
        const a = buildTree(desc);
        const b = buildTree(desc);
        expect(JSON.stringify(a.toJSON())).toBe(JSON.stringify(b.toJSON()));
      }),
      { numRuns: 30 },
    );
  });
});
