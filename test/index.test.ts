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

  it("lists only defined names", () => {
    for (const [name, value] of Object.entries(api)) expect(value, name).toBeDefined();
  });
});
