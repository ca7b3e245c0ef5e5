import { describe, expect, it } from "vitest";
import type { InputError } from "../../src/base/errors.js";
import { devIsPci } from "../../src/bus/pci-dev.js";
import { buildMachine } from "../../src/machine/build.js";
import { BUILTIN_MACHINES } from "../../src/machine/builtin.js";
import { machineDescription, parseMachineDescription } from "../../src/machine/load.js";
import type { Machine } from "../../src/machine/machine.js";

function groupOf(m: Machine, name: string) {
  const dev = m.device(name);
  if (!dev) throw new Error(`no device ${name}`);
  return m.core.groupOf(dev);
}

function sameGroup(m: Machine, a: string, b: string): boolean {
  const ga = groupOf(m, a);
  return ga !== null && ga === groupOf(m, b);
}

function domainType(m: Machine, name: string): string | null {
  const g = groupOf(m, name);
  return g?.domain ? (g.domain.toJSON() as { type: string }).type : null;
}

describe("buildMachine", () => {
  it.each(["mock", "riscv"])(
    "boots every built-in machine on %s with every present device in a group",
    (driver) => {
      for (const name of Object.keys(BUILTIN_MACHINES)) {
        const m = buildMachine(name, { driver });
        expect(m.checkInvariants()).toEqual([]);
        expect(m.name).toBe(name);
        expect(m.bootLog).toEqual([]);
        expect(m.ctx.warnings.count).toBe(0);
        for (const d of m.description.devices) {
          const dev = m.device(d.name);
          if (!d.present) {
            expect(dev).toBeUndefined();
            continue;
          }
          expect(dev?.registered).toBe(true);
          expect(groupOf(m, d.name)).not.toBeNull();
        }
      }
    },
  );

  it("pci-no-acs: groups follow Linux's pci_device_group", () => {
    const m = buildMachine("pci-no-acs");
    // Functions of a multifunction device without ACS cannot be isolated from each other.
    expect(sameGroup(m, "mf0", "mf1")).toBe(true);
    // ACS-isolated functions, joined by the Marvell DMA alias quirk.
    expect(sameGroup(m, "sata0", "sata1")).toBe(true);
    // Below a downstream port without ACS a device shares the port's group, not its sibling's.
    expect(sameGroup(m, "nic0", "sw0p0")).toBe(true);
    expect(sameGroup(m, "nic0", "nic1")).toBe(false);
    expect(groupOf(m, "iso0")!.devices.map((g) => g.dev)).toEqual([m.device("iso0")]);
  });

  it("default: bridge without ACS, drivers bound at boot, direct-mapped region, empty hot-plug slot", () => {
    const m = buildMachine("default");
    // Conventional PCI hides the requester: both devices and the bridge share a group.
    expect(sameGroup(m, "legacy0", "legacy1")).toBe(true);
    expect(sameGroup(m, "legacy0", "br0")).toBe(true);
    expect(sameGroup(m, "dsa0", "nic0")).toBe(false);
    // Bound drivers that use the DMA API count as kernel DMA owners.
    expect(m.device("dsa0")!.driver?.name).toBe("idxd");
    expect(groupOf(m, "dsa0")!.ownerCnt).toBe(1);
    expect(groupOf(m, "legacy0")!.ownerCnt).toBe(0);
    // The direct region of the integrated GPU forbids blocking domains.
    expect(m.device("gpu0")!.iommu?.requireDirect).toBe(true);
    // Two IOMMUs, two PCI segments.
    expect(m.pci.hosts.map((h) => h.iommu)).toEqual(["iommu0", "iommu1"]);
    expect(m.device("legacy0")!.name).toMatch(/^0001:/);
    expect(m.device("tb0")).toBeUndefined();
    expect(domainType(m, "dsa0")).toBe("DMA");
  });

  it("hot-adds a device into an external-facing slot (untrusted: DMA domain) and removes it", () => {
    const m = buildMachine("default", { seed: 3 });
    m.hotAdd("tb0");
    const tb = m.device("tb0")!;
    expect(tb.registered).toBe(true);
    expect(devIsPci(tb) && tb.untrusted).toBe(true);
    expect(domainType(m, "tb0")).toBe("DMA");
    const groups = m.core.groups().length;
    m.hotRemove("tb0");
    expect(m.device("tb0")).toBeUndefined();
    expect(m.core.groups().length).toBe(groups - 1);
    expect(() => m.hotRemove("tb0")).toThrow("device tb0 is not present");
    m.hotAdd("tb0");
    expect(m.device("tb0")!.registered).toBe(true);
    expect(() => m.hotAdd("tb0")).toThrow("device tb0 is already present");
  });

  it("refuses to hot-remove a device no hot-plug slot holds, and changes nothing", () => {
    const m = buildMachine("default", { seed: 3 });
    const groups = m.core.groups().length;
    // gpu0 is integrated in the root complex; nic0 sits below a switch port without hot-plug.
    expect(() => m.hotRemove("gpu0")).toThrow(
      "gpu0 is integrated in the root complex: no hot-plug slot holds it",
    );
    expect(() => m.hotRemove("nic0")).toThrow("is not a hot-plug capable slot");
    expect(m.device("gpu0")!.registered).toBe(true);
    expect(m.device("nic0")!.driver).not.toBeNull();
    expect(m.core.groups().length).toBe(groups);
  });

  it("hot-adds and removes platform devices; bind and unbind drivers", () => {
    const m = buildMachine(
      machineDescription({
        extends: "platform-mock",
        devices: { late: { bus: "platform", present: false } },
      }),
    );
    expect(m.device("late")!.registered).toBe(false);
    m.hotAdd("late");
    const late = m.device("late")!;
    expect(groupOf(m, "late")).not.toBeNull();
    expect(m.bindDriver(late, "plat-drv").ok).toBe(true);
    expect(late.driver?.name).toBe("plat-drv");
    expect(groupOf(m, "late")!.ownerCnt).toBe(1);
    m.unbindDriver(late);
    expect(late.driver).toBeNull();
    expect(groupOf(m, "late")!.ownerCnt).toBe(0);
    expect(m.bindDriver(late, "vfio", true).ok).toBe(true);
    expect(groupOf(m, "late")!.ownerCnt).toBe(0);
    m.hotRemove("late");
    expect(late.registered).toBe(false);
    expect(late.driver).toBeNull();
  });

  it("boot options choose the default domain type", () => {
    const pt = buildMachine(
      machineDescription({ extends: "single-mock", boot: { "iommu.passthrough": 1 } }),
    );
    expect(domainType(pt, "dev0")).toBe("IDENTITY");
    const lazy = buildMachine(
      machineDescription({ extends: "single-mock", boot: { "iommu.strict": 0 } }),
    );
    expect(
      (lazy.core.toJSON() as { policy: { def_domain_type: string } }).policy.def_domain_type,
    ).toBe("DMA_FQ");
    const dd = buildMachine(
      machineDescription({
        extends: "single-mock",
        iommus: { iommu0: { options: { def_domain_type: "identity" } } },
      }),
    );
    expect(domainType(dd, "dev0")).toBe("IDENTITY");
  });

  it("multi-iommu: each instance has its own devices; domains do not cross instances", () => {
    const m = buildMachine("multi-iommu");
    const d0 = m.device("dev0")!;
    const d1 = m.device("dev1")!;
    expect(d0.iommu?.iommuDev?.name).toBe("iommu0");
    expect(d1.iommu?.iommuDev?.name).toBe("iommu1");
    expect(d0.iommu?.maxPasids).toBe(1 << 20);
    expect(d1.iommu?.maxPasids).toBe(1 << 8);
    const dom = m.core.pagingDomainAlloc(d0);
    expect(dom.ok).toBe(true);
    if (!dom.ok) return;
    expect(m.core.attachDevice(dom.value, d1)).toEqual({ ok: false, errno: "EINVAL" });
    expect(m.core.attachDevice(dom.value, d0).ok).toBe(true);
  });

  it("boot-time fault injection: a failed device probe fails the IOMMU's registration", () => {
    const m = buildMachine(
      parseMachineDescription(
        [
          "extends: platform-mock",
          "iommus:",
          "  iommu0:",
          "    options:",
          "      fault_injection: [{op: probe_device, errno: ENOMEM, dev: plat1}]",
        ].join("\n"),
        "f.yaml",
      ),
    );
    // bus_iommu_probe stops at the first error other than ENODEV; registration is undone.
    expect(m.bootLog).toEqual(["iommu_device_register(iommu0) failed: -ENOMEM"]);
    expect(m.iommus()).toEqual([]);
    expect(m.core.groups()).toEqual([]);
    expect(groupOf(m, "plat0")).toBeNull();
  });

  it("boots RISC-V IOMMUs: same groups as the mock, registered hardware, clean invariants", () => {
    const mock = buildMachine("pci-no-acs");
    const rv = buildMachine("pci-no-acs", { driver: "riscv" });
    expect(rv.bootLog).toEqual([]);
    expect(rv.iommu("iommu0")!.riscv?.probe.ok).toBe(true);
    expect(rv.device("nic0")!.iommu?.iommuDev?.name).toBe("iommu0");
    const groups = (m: Machine) => m.core.groups().map((g) => g.devices.map((x) => x.name));
    expect(groups(rv)).toEqual(groups(mock));
    expect(rv.checkInvariants()).toEqual([]);
    expect(rv.programmedDomain(rv.device("iso0")!)).toBe(groupOf(rv, "iso0")!.defaultDomain);
    const mixed = buildMachine(
      machineDescription({
        extends: "single-mock",
        devices: { p: { bus: "platform", pasid_num_bits: 8 } },
      }),
      { driver: "riscv" },
    );
    expect(groupOf(mixed, "p")).not.toBeNull();
    expect(mixed.device("p")!.iommu?.maxPasids).toBe(256);
  });

  it("rejects what it cannot build, with the description's location", () => {
    const msg = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as InputError).format();
      }
      return "built";
    };
    expect(
      msg(() =>
        buildMachine(
          machineDescription({ extends: "single-mock", iommus: { iommu0: { pasid_bits: 16 } } }),
          { driver: "riscv" },
        ),
      ),
    ).toBe(
      "iommus.iommu0.pasid_bits: a RISC-V IOMMU supports 0, 8, 17 or 20 PASID bits (PD8/PD17/PD20), not 16",
    );
    expect(
      msg(() =>
        parseMachineDescription(
          "iommus: {io: {driver: riscv, page_sizes: [4K], options: {capabilities: {PD21: true, PAS: 99}}}}\n",
          "r.yaml",
        ),
      ),
    ).toBe(
      [
        "r.yaml:1:42: iommus.io.page_sizes: a RISC-V IOMMU's page sizes follow its paging modes (options.capabilities), not page_sizes",
        'r.yaml:1:73: iommus.io.options.capabilities.PD21: unknown field (did you mean "PD20"?); expected one of version, Sv39, Sv48, Sv57, Svrsw60t59b, Svpbmt, Sv39x4, Sv48x4, Sv57x4, MSI_FLAT, AMO_HWAD, ATS, T2GPA, END, IGS, DBG, PAS, PD8, PD17, PD20, QOSID, NL, S',
        "r.yaml:1:90: iommus.io.options.capabilities.PAS: expected an integer in 32..56, got the number 99",
      ].join("\n"),
    );
  });

  it("one mock instance translates PCI functions and platform devices, each grouped by its bus", () => {
    const m = buildMachine(
      parseMachineDescription(
        "extends: single-mock\ndevices: {p: {bus: platform}, q: {bus: platform}}\n",
        "mixed.yaml",
      ),
    );
    const group = (n: string) => m.core.groupOf(m.device(n)!)!;
    expect(m.device("dev0")!.iommu!.iommuDev).toBe(m.iommu("iommu0")!.instance);
    expect(m.device("p")!.iommu!.iommuDev).toBe(m.iommu("iommu0")!.instance);
    // pci_device_group for the function (the root port is its own group), a new group per
    // platform device (generic_device_group).
    expect(new Set([group("rp0"), group("dev0"), group("p"), group("q")]).size).toBe(4);
    expect(m.checkInvariants()).toEqual([]);
  });

  it("a capability set the RISC-V IOMMU hardware cannot have is an input error", () => {
    const desc = machineDescription({
      extends: "default",
      iommus: { iommu1: { options: { capabilities: { Sv48: false } } } },
    });
    expect(() => buildMachine(desc)).toThrow(
      "iommus.iommu1.options: capabilities: Sv57 requires Sv48",
    );
  });

  it("is deterministic: the same description and seed give the same JSON view", () => {
    const a = JSON.stringify(buildMachine("default", { seed: 7 }).toJSON());
    const b = JSON.stringify(buildMachine("default", { seed: 7 }).toJSON());
    expect(a).toBe(b);
    const view = JSON.parse(a);
    expect(Object.keys(view)).toEqual([
      "name",
      "clock_ns",
      "memory",
      "policy",
      "iommus",
      "pci",
      "devices",
      "endpoints",
      "io_bridges",
      "processes",
      "dma",
      "mms",
      "drivers",
      "device_drivers",
      "groups",
      "domains",
      "global_pasids",
      "sva_mms",
      "iopf",
      "isolation",
      "boot_log",
      "warnings",
    ]);
    expect(view.devices.find((d: { name: string }) => d.name === "tb0")).toEqual({
      name: "tb0",
      present: false,
      device: null,
    });
  });
});
