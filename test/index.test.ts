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

  it("writes a Perfetto trace of a scenario run, one track per device", () => {
    const yaml = [
      "machine: default",
      "drivers: [riscv]",
      "steps:",
      "  - dma_set_mask_and_coherent: {dev: acc0, mask: 0xffffffffffffffff}",
      "  - dma_map_single: {dev: acc0, ptr: 0x80000000, size: 0x1000, dir: DMA_TO_DEVICE}",
      "    as: iova",
      "  - device_dma_read: {dev: acc0, addr: iova, len: 4}",
    ].join("\n");
    const scenario = api.loadScenario(yaml, "inline.yaml", api.machineHost);
    const names = new Map<string, string>();
    const r = api.runScenario(scenario, api.machineHost, {
      driver: "riscv",
      keepTrace: true,
      onBoot: (m) => api.addDeviceNames(m, names),
    });
    expect(r.status, api.formatScenarioResult(r)).toBe("pass");
    const json = api.traceToChromeJSON([api.traceRunOf(r, "inline", names)]) as {
      traceEvents: { ph: string; name: string; args: { name?: string } }[];
    };
    const threads = json.traceEvents
      .filter((e) => e.ph === "M" && e.name === "thread_name")
      .map((e) => e.args.name!);
    // acc0's kernel name (its PCI address) and its description name make one track.
    const kernel = [...names].find(([, described]) => described === "acc0")?.[0];
    expect(kernel).toMatch(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.\d$/);
    expect(threads.filter((t) => t.includes("acc0") || t.includes(kernel!))).toEqual([
      `acc0 (${kernel})`,
    ]);
    expect(api.formatTraceText(r.trace ?? [], names)).toContain(`acc0_(${kernel})-`);
  });

  it("lists only defined names", () => {
    for (const [name, value] of Object.entries(api)) expect(value, name).toBeDefined();
  });
});
