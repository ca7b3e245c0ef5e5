import { describe, expect, it } from "vitest";
import { createContext } from "../../../src/base/context.js";
import { PciHost } from "../../../src/hw/pci/host.js";
import { PCI_VENDOR_ID } from "../../../src/hw/pci/regs.js";

function host(opts: ConstructorParameters<typeof PciHost>[1] = {}): PciHost {
  return new PciHost(createContext(), opts);
}

describe("builder names", () => {
  it("gives every node a stable default name and finds it again", () => {
    const h = host();
    const rp0 = h.addRootPort();
    const rp1 = h.addRootPort();
    const sw = rp0.addSwitch({ downstream: 2 });
    const ep = sw.port(0).addEndpoint();
    const mf = sw.port(1).addEndpoint({ functions: [{}, { name: "mf.aux" }, {}] });
    const br = rp1.addPcieToPciBridge();
    const ppb = br.addPciBridge();
    const rc = h.addRcEndpoint();
    expect([
      rp0.name,
      rp1.name,
      sw.name,
      sw.upstream.name,
      sw.port(0).name,
      sw.port(1).name,
    ]).toEqual(["rp0", "rp1", "sw0", "sw0.up", "sw0.dp0", "sw0.dp1"]);
    expect([ep.name, mf.name, br.name, ppb.name, rc.name]).toEqual([
      "ep0",
      "ep1",
      "pcibr0",
      "ppb0",
      "rciep0",
    ]);
    expect(mf.functions().map((f) => f.name)).toEqual(["ep1.0", "mf.aux", "ep1.2"]);
    expect(h.function("mf.aux")).toBe(mf.function(1));
    expect(h.device("ep1")).toBe(mf);
    expect(h.switch("sw0").downstream.map((p) => p.name)).toEqual(["sw0.dp0", "sw0.dp1"]);
    expect(h.findFunction("nope")).toBeUndefined();
    expect(() => h.function("nope")).toThrow(/no PCI function named "nope"/);
    expect(() => h.switch("nope")).toThrow(/no switch named/);
  });

  it("refuses duplicate and malformed names", () => {
    const h = host();
    h.addRootPort({ name: "a" });
    expect(() => h.addRootPort({ name: "a" })).toThrow(
      /two functions named "a"|two devices named "a"/,
    );
    expect(() => h.addRootPort({ name: "has space" })).toThrow(/bad device name/);
    // A failed build leaves no name behind.
    expect(() => h.addRcEndpoint({ name: "x", functions: [{ function: 1 }] })).toThrow(
      /function 0 is required/,
    );
    expect(h.addRcEndpoint({ name: "x" }).name).toBe("x");
  });
});

describe("builder validation", () => {
  it("checks device and function numbers", () => {
    const h = host();
    expect(() => h.addRcEndpoint({ slot: 32 })).toThrow(
      /device number 32 is not an integer in \[0, 31\]/,
    );
    expect(() => h.addRcEndpoint({ functions: [{ function: 8 }] })).toThrow(/function number 8/);
    expect(() => h.addRcEndpoint({ functions: [{ function: 1 }, { function: 1 }] })).toThrow(
      /two functions numbered 1/,
    );
    h.addRcEndpoint({ name: "r", slot: 4 });
    expect(() => h.addRcEndpoint({ slot: 4 })).toThrow(/slot 4 .* is taken by r/);
    expect(() => h.addRootPort({ slot: 4 })).toThrow(/two functions at 00:04.0/);
    expect(() => h.addRcEndpoint({ functions: Array.from({ length: 9 }, () => ({})) })).toThrow(
      /9 functions/,
    );
  });

  it("puts one device, device 0, on a PCI Express link", () => {
    const rp = host().addRootPort();
    expect(() => rp.addEndpoint({ slot: 1 })).toThrow(/only device 0 exists there/);
    rp.addEndpoint({ name: "e" });
    expect(() => rp.addEndpoint()).toThrow(/already holds e/);
  });

  it("plugs each kind only where it belongs", () => {
    const h = host();
    const rp = h.addRootPort();
    const sw = rp.addSwitch();
    expect(() => sw.upstream.addEndpoint()).toThrow(/below a switch's downstream ports/);
    expect(() => rp.addPciBridge()).toThrow(/go on a conventional PCI bus/);
    const br = sw.port(0).addPcieToPciBridge();
    expect(() => br.addSwitch()).toThrow(/needs a PCI Express link/);
    expect(() => br.addPcieToPciBridge()).toThrow(/needs a PCI Express link/);
    expect(() => br.addPciBridge({ part: "asmedia-asm1083" })).toThrow(
      /plug it below a PCI Express port/,
    );
    expect(() => br.addEndpoint({ pasid: true })).toThrow(/no extended capabilities/);
    expect(() =>
      sw.port(1).addPcieToPciBridge({ part: "ite-it8892", pcieCapability: true }),
    ).toThrow(/has no PCI Express capability/);
    expect(() => h.addRootPort({ hotplug: { mmio: 3n } })).toThrow(/multiple of 1 MiB/);
    expect(() => h.addRcEndpoint({ legacy: true })).toThrow(/never legacy/);
  });

  it("marks only root ports external-facing", () => {
    const h = host();
    expect(h.addRootPort({ externalFacing: true }).externalFacing).toBe(true);
    const rp = h.addRootPort();
    expect(() => rp.addSwitch({ downstream: [{ externalFacing: true }] })).toThrow(
      /only root ports are marked external-facing/,
    );
    // The failed switch left nothing behind: the link is still free.
    expect(rp.addSwitch().name).toBe("sw0");
  });

  it("names the unknown option and the bad value", () => {
    const h = host();
    expect(() => h.addRootPort({ acs: true, colour: "red" } as never)).toThrow(
      /unknown option "colour"/,
    );
    expect(() => h.addRcEndpoint({ bars: [0x3000] })).toThrow(
      /BAR size 12288 is not a power of two/,
    );
    expect(() => h.addRcEndpoint({ part: "nonesuch" as never })).toThrow(/unknown part "nonesuch"/);
    expect(() => h.addRcEndpoint({ ats: { queueDepth: 33 } })).toThrow(/queue depth 33/);
    expect(
      () => new PciHost(createContext(), { mmio: { base: 0x1000n, size: 1n << 20n } }),
    ).toThrow(/1 MiB aligned/);
  });

  it("marks multi-function devices in every function's header type", () => {
    const h = host();
    const single = h.addRcEndpoint();
    const multi = h.addRcEndpoint({ functions: [{}, { function: 3 }] });
    expect(single.isMultifunction).toBe(false);
    expect(single.function(0)!.config.read(0x0e, 1) & 0x80).toBe(0);
    expect(multi.functions().map((f) => f.config.read(0x0e, 1) & 0x80)).toEqual([0x80, 0x80]);
    // Root ports sharing a slot form one multi-function device.
    const a = h.addRootPort({ slot: 0x1c, function: 0 });
    const b = h.addRootPort({ slot: 0x1c, function: 1, name: "rpb" });
    expect(a.device).toBe(b.device);
    expect(a.config.read(0x0e, 1)).toBe(0x81);
  });

  it("applies catalog parts: IDs and DMA alias behaviour", () => {
    const h = host();
    const d = h.addRcEndpoint({ functions: [{ part: "ricoh-r5c832" }, { part: "ricoh-r5c832" }] });
    expect(d.function(1)!.config.read(PCI_VENDOR_ID, 4)).toBe(0xe832_1180);
    expect(d.function(0)!.dmaAliasDevfns).toEqual([]);
    expect(d.function(1)!.dmaAliasDevfns).toEqual([d.function(0)!.devfn]);
  });
});

describe("enumeration-time rules", () => {
  it("freezes the root bus after enumeration", () => {
    const h = host();
    h.addRootPort();
    h.enumerate();
    expect(() => h.addRootPort()).toThrow(/cannot be added after enumeration/);
    expect(() => h.addRcEndpoint()).toThrow(/cannot be added after enumeration/);
    expect(() => h.enumerate()).toThrow(/already enumerated/);
  });
});

describe("JSON views", () => {
  it("show the topology with bus numbers, windows and capabilities present", () => {
    const h = host();
    const rp = h.addRootPort({
      acs: true,
      hotplug: { buses: 2, mmio: 2n << 20n },
      externalFacing: true,
    });
    rp.addEndpoint({ name: "nic", bars: [0x4000], ats: true });
    h.enumerate();
    const view = JSON.parse(JSON.stringify(h.toJSON()));
    expect(view).toEqual({
      name: "pci0",
      segment: 0,
      root_bus: 0,
      ecam: "0x30000000",
      mmio: { base: "0x40000000", size: "0x40000000" },
      enumerated: true,
      peer_to_peer: false,
      tree: {
        number: 0,
        kind: "root",
        devices: [
          {
            name: "rp0",
            slot: 1,
            multifunction: false,
            functions: [
              {
                name: "rp0",
                kind: "root-port",
                bdf: "0000:00:01.0",
                caps: ["pcie", "acs"],
                secondary: 1,
                subordinate: 3,
                // The endpoint's 16 KiB plus the 2 MiB hot-plug reserve, in 1 MiB units.
                window: { base: "0x40000000", limit: "0x402fffff" },
                hotplug: { buses: 2, mmio: "0x200000" },
                external_facing: true,
                bus: {
                  number: 1,
                  kind: "link",
                  devices: [
                    {
                      name: "nic",
                      slot: 0,
                      multifunction: false,
                      functions: [
                        {
                          name: "nic",
                          kind: "endpoint",
                          bdf: "0000:01:00.0",
                          caps: ["pcie", "ats"],
                        },
                      ],
                    },
                  ],
                },
              },
            ],
          },
        ],
      },
    });
    const nic = h.function("nic").toJSON() as Record<string, unknown>;
    expect(nic.bars).toEqual([{ index: 0, address: "0x40000000", size: 0x4000 }]);
    expect(nic.rid).toBe(0x100);
  });
});
