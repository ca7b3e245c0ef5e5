// The demo's machine and activity reports: ownership and cache wording, oracle findings.

import { describe, expect, it } from "vitest";
import { DMA_TO_DEVICE } from "../../src/dma/constants.js";
import type { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { buildMachine } from "../../src/machine/build.js";
import { machineDescription } from "../../src/machine/load.js";
import { activityReport, machineReport } from "../../src/machine/report.js";
import { machineStatistics } from "../../src/machine/statistics.js";

/** The two lines a group takes in the machine report. */
function groupLines(report: string, device: string): string {
  const lines = report.split("\n");
  const i = lines.findIndex((l) => new RegExp(`^  group \\d+ +${device}$`).test(l));
  expect(i).toBeGreaterThan(-1);
  return `${lines[i]}\n${lines[i + 1]}`;
}

describe("machine report", () => {
  it("says who owns a group's DMA: nobody, kernel drivers on the DMA API, or a claimed owner", () => {
    const m = buildMachine(machineDescription("default"));
    // nic0 is driven by the NIC driver, acc0 by nobody.
    expect(groupLines(machineReport(m), "nic0")).toContain("; 1 kernel driver on the DMA API");
    expect(groupLines(machineReport(m), "acc0")).toContain("; no DMA owner");
    const group = m.core.groupOf(m.device("acc0")!)!;
    expect(m.core.groupClaimDmaOwner(group, "vfio").ok).toBe(true);
    expect(groupLines(machineReport(m), "acc0")).toMatch(/; owned by .*vfio/);
  });
});

describe("activity report", () => {
  it("gives every cache's hit rate with its counts", () => {
    const m = buildMachine(
      machineDescription({ extends: "default", devices: { nic0: { driver: null } } }),
    );
    const dev = m.device("legacy0")!;
    const acc = m.endpoints.model("legacy0") as TestDevice;
    const iova = m.dma.mapSingle(dev, BigInt(m.frames.alloc()) << 12n, 0x1000n, DMA_TO_DEVICE);
    expect(acc.read(iova, 4).ok).toBe(true);
    expect(acc.read(iova + 8n, 4).ok).toBe(true);
    const text = activityReport(m, machineStatistics(m));
    const iommu1 = text.slice(text.indexOf("iommu1 (riscv):"));
    expect(iommu1).toMatch(/\n {2}IOTLB 50\.0% hits \(1 hit, 1 miss\), 1 of \d+ entries in use\n/);
    expect(iommu1).toMatch(/\n {2}DDT cache [\d.]+% hits \(\d+ hits?, \d+ miss(es)?\); PDT cache /);
  });
});
