import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import { BUILTIN_MACHINES } from "../../src/machine/builtin.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { machineDescription, parseMachineDescription } from "../../src/machine/load.js";

function errorsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.format());
    if (e instanceof InputError) return [e.format()];
    throw e;
  }
  throw new Error("expected the description to be rejected");
}

const yamlErrors = (text: string) => errorsOf(() => parseMachineDescription(text, "m.yaml"));

describe("machine descriptions", () => {
  it("every built-in machine is a valid description", () => {
    for (const name of Object.keys(BUILTIN_MACHINES)) {
      const d = machineDescription(name);
      expect(d.name).toBe(name);
      expect(d.devices.length).toBeGreaterThan(0);
    }
  });

  it("reads a full YAML description with defaults filled in", () => {
    const d = parseMachineDescription(
      [
        "name: box",
        "memory: {regions: [{base: 0x80000000, size: 64M}, {base: 0x1_0000_0000, size: 1G}]}",
        "boot: {iommu.passthrough: 1, iommu.strict: off}",
        "iommus:",
        "  io0: {driver: mock, pasid_bits: 16, page_sizes: [2M, 4K, 4K]}",
        "pci:",
        "  rp0: {type: root_port, acs: {sv: true, rr: true}}",
        "devices:",
        "  d0: {parent: rp0, pasid_bits: 20, ats: true, pri: true, driver: {name: vfio-pci, driver_managed_dma: true}}",
        "  p0:",
        "    bus: platform",
        "    pasid_num_bits: 0",
        "    reserved_regions: [{type: direct, start: 0xa0000000, size: 1M, prot: read}]",
      ].join("\n"),
      "m.yaml",
    );
    expect(d.ram).toEqual([
      { base: 0x8000_0000n, size: 64n << 20n },
      { base: 0x1_0000_0000n, size: 1n << 30n },
    ]);
    expect(d.boot).toEqual({
      passthrough: true,
      strict: false,
      configDefaultPassthrough: false,
      configDefaultDmaStrict: true,
      forcedac: false,
    });
    expect(d.iommus[0]).toMatchObject({
      name: "io0",
      driver: "mock",
      pasidBits: 16,
      pageSizes: [4096n, 2n << 20n],
    });
    expect(d.pci[0]).toMatchObject({
      type: "root_port",
      acs: { sv: true, rr: true, cr: false, uf: false },
    });
    expect(d.devices[0]).toMatchObject({
      bus: "pci",
      iommu: "io0",
      parent: "rp0",
      slot: 0,
      function: 0,
      pasidBits: 20,
      driver: { name: "vfio-pci", driverManagedDma: true },
      present: true,
      loc: { file: "m.yaml", line: 9, column: 3 },
    });
    expect(d.devices[1]).toMatchObject({
      bus: "platform",
      pasidNumBits: 0,
      reservedRegions: [{ type: "direct", start: 0xa000_0000n, size: 1n << 20n, prot: ["read"] }],
    });
  });

  it("cpus, iommu.forcedac and endpoint models are validated at their positions", () => {
    expect(
      yamlErrors(
        [
          "cpus: 0",
          "boot: {iommu.forcedac: sometimes}",
          "pci: {rp0: {type: root_port}}",
          "devices:",
          "  d0: {parent: rp0, endpoint: gpu}",
        ].join("\n"),
      ),
    ).toEqual([
      "m.yaml:1:7: cpus: expected an integer in 1..64, got the number 0",
      'm.yaml:2:24: boot."iommu.forcedac": expected true or false, got the string "sometimes"',
      'm.yaml:5:31: devices.d0.endpoint: unknown value "gpu"; expected one of none, test, nic, dsa',
    ]);
    const d = machineDescription({ extends: "default", cpus: 4, boot: { "iommu.forcedac": 1 } });
    expect(d.cpus).toBe(4);
    expect(d.boot.forcedac).toBe(true);
    expect(machineDescription("default").cpus).toBe(1);
  });

  it("reports every field error with its path and position, all at once", () => {
    const errs = yamlErrors(
      [
        "memory: {size: 3000}",
        "boot: {iommu.strict: maybe, iommu.passthru: 1}",
        "iommus:",
        "  io0: {driver: mok, pasid_bits: 21, page_sizes: [3K]}",
        "pci:",
        "  rp0: {type: root_port, acs: yes}",
        "devices:",
        "  d0: {parent: rp0, slot: 32, pri: true}",
        "  d1: {bus: platform, pasid_bits: 3}",
      ].join("\n"),
    );
    expect(errs).toEqual([
      "m.yaml:1:16: memory.size: must be 4 KiB aligned",
      'm.yaml:2:22: boot."iommu.strict": expected true or false, got the string "maybe"',
      'm.yaml:2:29: boot."iommu.passthru": unknown field (did you mean "iommu.passthrough"?); expected one of iommu.passthrough, iommu.strict, CONFIG_IOMMU_DEFAULT_PASSTHROUGH, CONFIG_IOMMU_DEFAULT_DMA_STRICT, iommu.forcedac',
      'm.yaml:4:17: iommus.io0.driver: unknown value "mok" (did you mean "mock"?); expected one of mock, riscv',
      "m.yaml:4:34: iommus.io0.pasid_bits: expected an integer in 0..20, got the number 21",
      "m.yaml:4:51: iommus.io0.page_sizes[0]: page size 3072 is not a power of two ≥ 4096",
      "m.yaml:6:31: pci.rp0.acs: expected true (all of SV, RR, CR, UF), false (no ACS) or a map {sv, rr, cr, uf}",
      "m.yaml:8:27: devices.d0.slot: expected an integer in 0..31, got the number 32",
      "m.yaml:9:23: devices.d1.pasid_bits: unknown field; expected one of bus, iommu, reserved_regions, driver, endpoint, present, pasid_num_bits",
    ]);
  });

  it("checks cross-references: names, parents, slots, IOMMUs, capabilities", () => {
    // (f has no iommu: it gets the first one, io0.)
    const errs = yamlErrors(
      [
        "iommus:",
        "  io0: {driver: mock}",
        "  io1: {driver: mock}",
        "pci:",
        "  rp0: {type: root_port, acs: true}",
        "  up: {type: switch_upstream, parent: rp0}",
        "  dn: {type: switch_downstream, parent: rp0}",
        "  io0: {type: root_port}",
        "devices:",
        "  a: {parent: rp9, iommu: io0}",
        "  b: {parent: rp0, slot: 1, iommu: io0}",
        "  c: {parent: up, iommu: io0}",
        "  e: {parent: rp0, iommu: io1, ats: false, pri: true}",
        "  f: {bus: platform}",
        "  g: {bus: platform, iommu: io2}",
      ].join("\n"),
    );
    expect(errs).toEqual([
      "m.yaml:7:3: pci.dn: a switch_downstream must sit below switch_upstream",
      'm.yaml:8:3: pci.io0: the name "io0" is already used by an IOMMU',
      'm.yaml:10:15: devices.a.parent: unknown PCI bridge "rp9" (did you mean "rp0"?)',
      "m.yaml:11:26: devices.b.slot: below a root_port only slot 0 exists",
      "m.yaml:12:15: devices.c.parent: devices sit below switch downstream ports, not the upstream port",
      "m.yaml:13:3: devices.e: slot 0 function 0 on rp0 is already taken by bridge up",
      "m.yaml:13:27: devices.e.iommu: every device below root port rp0 must use the same IOMMU (b uses io0)",
      "m.yaml:13:49: devices.e.pri: PRI needs ATS (page requests follow ATS translation failures)",
      'm.yaml:15:29: devices.g.iommu: unknown IOMMU "io2" (did you mean "io0"?)',
    ]);
  });

  it("reports a bridge whose parent names no bridge, and places it nowhere", () => {
    expect(
      yamlErrors(
        "iommus: {io: {driver: mock}}\npci:\n  rp0: {type: root_port}\n  sw: {type: switch_upstream, parent: rp1}\n",
      ),
    ).toEqual(['m.yaml:4:39: pci.sw.parent: unknown PCI bridge "rp1" (did you mean "rp0"?)']);
  });

  it("a PCI device always has function 0", () => {
    expect(
      yamlErrors(
        "iommus: {io: {driver: mock}}\npci: {rp: {type: root_port, slot: 2, function: 1}}\n",
      ),
    ).toEqual([
      "m.yaml:2:48: pci.rp.function: slot 2 below the host bridge has no function 0 (a PCI device always has one)",
    ]);
  });

  it("two functions in one slot of a bus collide", () => {
    expect(
      yamlErrors(
        "iommus: {io: {driver: mock}}\npci: {rp: {type: root_port}}\ndevices:\n  a: {parent: rp}\n  b: {parent: rp}\n",
      ),
    ).toEqual(["m.yaml:5:3: devices.b: slot 0 function 0 on rp is already taken by device a"]);
  });

  it("extends a built-in machine and overrides parts of it; null removes an entry", () => {
    const d = parseMachineDescription(
      [
        "extends: single-mock",
        "name: tweaked",
        "boot: {iommu.passthrough: true}",
        "iommus: {iommu0: {pasid_bits: 8}}",
        "devices:",
        "  plat0: null",
        "  dev1: {parent: rp1}",
        "pci: {rp1: {type: root_port, acs: false}}",
      ].join("\n"),
      "m.yaml",
    );
    expect(d.name).toBe("tweaked");
    expect(d.boot.passthrough).toBe(true);
    expect(d.iommus).toMatchObject([{ name: "iommu0", driver: "mock", pasidBits: 8 }]);
    expect(d.devices.map((x) => x.name)).toEqual(["dev0", "dev1"]);
    expect(d.devices[0]).toMatchObject({
      pasidBits: 20,
      ats: true,
      loc: { file: "<builtin single-mock>" },
    });
    expect(d.pci.map((b) => [b.name, b.acs === null])).toEqual([
      ["rp0", false],
      ["rp1", true],
    ]);
  });

  it("an unknown built-in or an override error is reported at the override", () => {
    expect(yamlErrors("extends: singel-mock\n")).toEqual([
      'm.yaml:1:10: extends: unknown built-in machine "singel-mock" (did you mean "single-mock"?); built-in machines: default, single-mock, platform-mock, pci-no-acs, multi-iommu',
    ]);
    expect(yamlErrors("extends: single-mock\ndevices: {dev0: {slot: x}}\n")).toEqual([
      'm.yaml:2:24: devices.dev0.slot: expected an integer in 0..31, got the string "x"',
    ]);
  });

  it("plain objects validate with paths and the file name but no line numbers", () => {
    expect(errorsOf(() => machineDescription({ iommus: { i: { driver: 5 } } }, "box.ts"))).toEqual([
      "box.ts: iommus.i.driver: expected one of mock, riscv, got the number 5",
    ]);
    expect(
      machineDescription({ devices: { p: { bus: "platform", iommu: null } } }).devices[0],
    ).toMatchObject({
      iommu: null,
    });
  });

  it("memory: size or regions, aligned, not overlapping", () => {
    expect(yamlErrors("memory: {}\n")).toEqual([
      'm.yaml:1:9: memory: give either "size" (RAM at 0x80000000) or "regions", not both or neither',
    ]);
    expect(
      yamlErrors(
        "memory: {regions: [{base: 0x80000000, size: 1G}, {base: 0xa0000000, size: 4K}]}\n",
      ),
    ).toEqual(["m.yaml:1:9: memory.regions: RAM regions overlap"]);
  });
});
