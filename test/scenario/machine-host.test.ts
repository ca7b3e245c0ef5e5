import { describe, expect, it } from "vitest";
import { InputError } from "../../src/base/errors.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { runScenario } from "../../src/scenario/run.js";

function errorsOf(text: string): string[] {
  try {
    loadScenario(text, "h.yaml", machineHost);
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.format());
    if (e instanceof InputError) return [e.format()];
    throw e;
  }
  throw new Error("expected the scenario to be rejected");
}

const run = (text: string) => runScenario(loadScenario(text, "h.yaml", machineHost), machineHost);

describe("scenarios on real machines", () => {
  it("names come from the description: devices, bridges, IOMMUs, buses", () => {
    const s = loadScenario(
      [
        "machine: default",
        "drivers: [mock]",
        "steps:",
        "  - iommu_probe_device: {dev: sw0p0}",
        "  - bus_iommu_probe: {bus: pci}",
        "  - inject_fault: {iommu: iommu1, op: attach_dev, errno: EIO, dev: legacy0}",
        "  - hot_add: {dev: tb0}",
      ].join("\n"),
      "h.yaml",
      machineHost,
    );
    expect(s.steps).toHaveLength(4);
    expect(
      errorsOf(
        [
          "machine: default",
          "drivers: [mock]",
          "steps:",
          "  - hot_add: {dev: sw0}",
          "  - inject_fault: {iommu: iommu3, op: attach_dev, errno: EIO}",
          "  - bus_iommu_probe: {bus: usb}",
          "  - iommu_map: {domain: x, iova: 0, paddr: 0, size: 0x1000, prot: [IOMMU_READ, IOMMU_RAED]}",
        ].join("\n"),
      ),
    ).toEqual([
      'h.yaml:4:20: steps[0].hot_add.dev: unknown device "sw0"',
      'h.yaml:5:27: steps[1].inject_fault.iommu: unknown iommu "iommu3" (did you mean "iommu0"?)',
      'h.yaml:6:28: steps[2].bus_iommu_probe.bus: unknown bus "usb"',
      'h.yaml:7:25: steps[3].iommu_map.domain: "x" is not bound (no earlier step has "as: x")',
      'h.yaml:7:80: steps[3].iommu_map.prot[1]: unknown flag "IOMMU_RAED" (did you mean "IOMMU_READ"?); flags: IOMMU_READ, IOMMU_WRITE, IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_MMIO, IOMMU_PRIV',
    ]);
  });

  it("machine description errors inside a scenario carry the scenario's positions", () => {
    expect(
      errorsOf("machine:\n  extends: default\n  devices: {nic0: {pasid_bits: 99}}\nsteps: []\n"),
    ).toEqual([
      "h.yaml:3:32: machine.devices.nic0.pasid_bits: expected an integer in 0..20, got the number 99",
    ]);
  });

  it("an invariant broken by the kernel's own behaviour fails the step", () => {
    // Reusing the attached handle with another domain: the handle is pointed at the new domain
    // before the reuse check, so pasid_array names a domain the driver never programmed.
    const r = run(
      [
        "machine: single-mock",
        "steps:",
        "  - iommu_paging_domain_alloc: {dev: dev0}",
        "    as: d1",
        "  - iommu_paging_domain_alloc: {dev: dev0}",
        "    as: d2",
        "  - iommu_attach_device_pasid: {domain: d1, dev: dev0, pasid: 3, handle: h1}",
        "  - iommu_replace_device_pasid: {domain: d2, dev: dev0, pasid: 3, handle: h1}",
        "    error: EINVAL",
      ].join("\n"),
    );
    expect(r.status).toBe("fail");
    const f = r.steps.find((s) => s.status === "fail")!;
    expect(f.step).toBe(4);
    expect(f.failure?.message).toMatch(/^invariant violated after this step: /);
  });

  it("runs on the RISC-V driver; a driver that does not exist is an input error at boot", () => {
    const s = loadScenario(
      "machine: single-mock\nsteps:\n  - iommu_paging_domain_alloc: {dev: dev0}\n    returns: {owner: riscv-iommu}\n",
      "h.yaml",
      machineHost,
    );
    expect(runScenario(s, machineHost, { driver: "riscv" }).status).toBe("pass");
    expect(runScenario(s, machineHost).status).toBe("fail");
    expect(() => runScenario(s, machineHost, { driver: "smmu" })).toThrow(
      "iommus.iommu0.driver: the smmu driver is not available yet (available: mock, riscv)",
    );
  });

  it("declared drivers: unknown ones are rejected, future ones accepted", () => {
    expect(errorsOf("drivers: [mock, rsicv]\nmachine: single-mock\nsteps: []\n")).toEqual([
      'h.yaml:1:17: drivers[1]: unknown driver "rsicv" (did you mean "riscv"?)',
    ]);
    expect(
      loadScenario(
        "drivers: [mock, riscv]\nmachine: single-mock\nsteps: []\n",
        "h.yaml",
        machineHost,
      ).drivers,
    ).toEqual(["mock", "riscv"]);
  });
});
