import { describe, expect, it } from "vitest";
import { Device } from "../../src/bus/device.js";
import type { PciDev } from "../../src/bus/pci-dev.js";
import { checkCore } from "../../src/check/invariants.js";
import type { PciHost } from "../../src/hw/pci/host.js";
import { pciBed } from "./setup.js";

/** Group id of each named function. */
function groupsOf(b: ReturnType<typeof pciBed>, names: string[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const n of names) out[n] = b.core.groupOf(b.pdev(n))?.id ?? null;
  return out;
}

describe("pci_device_group", () => {
  it("ACS on root ports isolates the endpoints below them", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "rp0", acs: true }).addEndpoint({ name: "a" });
      h.addRootPort({ name: "rp1", acs: true }).addEndpoint({ name: "b" });
    });
    const g = groupsOf(b, ["rp0", "a", "rp1", "b"]);
    expect(new Set(Object.values(g)).size).toBe(4);
    expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
  });

  it("without ACS an endpoint joins its root port's group", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "rp0" }).addEndpoint({ name: "a" });
      h.addRootPort({ name: "rp1" }).addEndpoint({ name: "b" });
    });
    const g = groupsOf(b, ["rp0", "a", "rp1", "b"]);
    expect(g.a).toBe(g.rp0);
    expect(g.b).toBe(g.rp1);
    expect(g.rp0).not.toBe(g.rp1);
    const grp = b.core.groupById(g.a!)!;
    expect(grp.devices.map((d) => d.dev)).toEqual([b.pdev("rp0"), b.pdev("a")]);
  });

  it("a root port without ACS pulls a whole switch into one group", () => {
    const b = pciBed((h) => {
      const sw = h
        .addRootPort({ name: "rp" })
        .addSwitch({ name: "sw", downstream: [{ acs: true }, { acs: true }] });
      sw.port(0).addEndpoint({ name: "a" });
      sw.port(1).addEndpoint({ name: "b" });
    });
    const sw = b.host.switch("sw");
    const ids = new Set(
      ["rp", sw.upstream.name, sw.port(0).name, sw.port(1).name, "a", "b"].map(
        (n) => b.core.groupOf(b.pdev(n))!.id,
      ),
    );
    expect(ids.size).toBe(1);
  });

  it("with ACS everywhere each switch endpoint is alone; without ACS on a downstream port it shares that port's group", () => {
    const b = pciBed((h) => {
      const sw = h
        .addRootPort({ name: "rp", acs: true })
        .addSwitch({ name: "sw", downstream: [{ acs: true }, {}] });
      sw.port(0).addEndpoint({ name: "a" });
      sw.port(1).addEndpoint({ name: "b" });
    });
    const sw = b.host.switch("sw");
    const g = groupsOf(b, ["a", "b", sw.port(0).name, sw.port(1).name]);
    expect(g.a).not.toBe(g[sw.port(0).name]);
    expect(g.b).toBe(g[sw.port(1).name]);
  });

  it("functions of a multifunction device without ACS share a group; with ACS they do not", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "rp0", acs: true }).addEndpoint({
        functions: [{ name: "f0" }, { name: "f1" }],
      });
      h.addRootPort({ name: "rp1", acs: true }).addEndpoint({
        functions: [
          { name: "g0", acs: true },
          { name: "g1", acs: true },
        ],
      });
    });
    const g = groupsOf(b, ["f0", "f1", "g0", "g1"]);
    expect(g.f0).toBe(g.f1);
    expect(g.g0).not.toBe(g.g1);
  });

  it("DMA alias quirks group a function with the function it aliases", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "rp", acs: true }).addEndpoint({
        functions: [
          { name: "r0", part: "ricoh-r5c832", acs: true },
          { name: "r1", part: "ricoh-r5c832", acs: true },
        ],
      });
    });
    const g = groupsOf(b, ["r0", "r1"]);
    expect(g.r0).toBe(g.r1);
  });

  it("conventional devices behind a PCIe-to-PCI bridge take the bridge's group", () => {
    const b = pciBed((h) => {
      const br = h.addRootPort({ name: "rp", acs: true }).addPcieToPciBridge({ name: "br" });
      br.addEndpoint({ name: "x", slot: 1 });
      br.addEndpoint({ name: "y", slot: 2 });
    });
    const g = groupsOf(b, ["br", "x", "y"]);
    expect(g.x).toBe(g.br);
    expect(g.y).toBe(g.br);
  });

  it("gives the same groups whether devices are hot-probed or found by bus_iommu_probe", () => {
    const build = (h: PciHost) => {
      const sw = h
        .addRootPort({ name: "rp", acs: true })
        .addSwitch({ name: "sw", downstream: [{}, { acs: true }] });
      sw.port(0).addEndpoint({ functions: [{ name: "m0" }, { name: "m1" }] });
      sw.port(1).addEndpoint({ name: "z" });
    };
    const hot = pciBed(build);
    const scan = pciBed(build, { scanFirst: true });
    const shape = (b: ReturnType<typeof pciBed>) =>
      b.core.groups().map((g) => g.devices.map((d) => (d.dev as PciDev).fn.name));
    expect(shape(scan)).toEqual(shape(hot));
    expect(checkCore(scan.core, { drivers: [scan.mock] })).toEqual([]);
  });

  it("refuses a non-PCI device with a WARN", () => {
    const b = pciBed((h) => {
      h.addRootPort({ name: "rp" });
    });
    const plat = new Device("plat", b.platform);
    b.model.deviceAdd(plat);
    const r = b.core.pciDeviceGroup(plat);
    expect(r).toEqual({ ok: false, errno: "EINVAL" });
    expect(b.ctx.warnings.list().map((w) => w.site)).toContain("pci_device_group");
  });
});
