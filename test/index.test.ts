import { describe, expect, it } from "vitest";
import * as api from "../src/index.js";

describe("public surface", () => {
  it("boots the default machine and runs a kernel call through the public API alone", () => {
    const machine = api.buildMachine("default", { seed: 1 });
    expect(machine).toBeInstanceOf(api.Machine);
    const dev = machine.device(machine.presentDevices()[0]!)!;
    const domain = machine.core.pagingDomainAlloc(dev);
    expect(domain.ok).toBe(true);
    if (!domain.ok) return;
    expect(domain.value.type).toBe(api.IOMMU_DOMAIN_UNMANAGED);
    expect(machine.core.getDomainForDev(dev)).not.toBe(domain.value);
    expect(api.kernelReturn(api.err("EBUSY"))).toBe(-16);
  });

  it("runs a scenario through the public API", () => {
    const yaml = [
      "machine: single-mock",
      "steps:",
      "  - iommu_group_claim_dma_owner: {group: dev0, owner: user}",
      "  - iommu_device_use_default_domain: {dev: dev0}",
      "    error: EBUSY",
    ].join("\n");
    const scenario = api.loadScenario(yaml, "inline.yaml", api.machineHost);
    const [driver] = api.applicableDrivers(scenario, api.machineHost);
    const r = api.runScenario(scenario, api.machineHost, { driver: driver! });
    expect(r.status, api.formatScenarioResult(r)).toBe("pass");
  });

  it("lists only defined names", () => {
    for (const [name, value] of Object.entries(api)) expect(value, name).toBeDefined();
  });
});
