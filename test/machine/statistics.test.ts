// machineStatistics: what the machine did, counted from the layers' own views.

import { describe, expect, it } from "vitest";
import { DMA_TO_DEVICE } from "../../src/dma/constants.js";
import type { TestDevice } from "../../src/hw/endpoints/test-device.js";
import { buildMachine } from "../../src/machine/build.js";
import { machineDescription } from "../../src/machine/load.js";
import { machineStatistics, statisticsJSON } from "../../src/machine/statistics.js";

describe("machineStatistics", () => {
  it("counts DMA API calls, IOTLB hits and misses, device ATCs and fault records by cause", () => {
    const m = buildMachine(
      machineDescription({
        extends: "default",
        devices: { nic0: { driver: null }, dsa0: { driver: null } },
      }),
    );
    const before = machineStatistics(m);
    expect(before.dma.maps).toBe(0);
    const acc = m.endpoints.model("legacy0") as TestDevice;
    const dev = m.device("legacy0")!;
    const frame = m.frames.alloc();
    const iova = m.dma.mapSingle(dev, BigInt(frame) << 12n, 0x1000n, DMA_TO_DEVICE);
    expect(acc.read(iova, 4).ok).toBe(true);
    expect(acc.read(iova + 8n, 4).ok).toBe(true);
    m.dma.unmapSingle(dev, iova, 0x1000n, DMA_TO_DEVICE);
    expect(acc.read(iova, 4).ok).toBe(false);
    m.settle();
    const s = machineStatistics(m);
    expect(s.dma).toMatchObject({ maps: 1, unmaps: 1, bytesMapped: 4096n, strictSyncs: 1 });
    const iommu1 = s.iommus.find((i) => i.name === "iommu1")!;
    // A miss fills the IOTLB, the second read hits; after the unmap the read misses and faults.
    expect(iommu1.iotlb).toMatchObject({ hits: 1, misses: 2 });
    expect(iommu1.iotlb!.hitRate).toBeCloseTo(1 / 3);
    expect(iommu1.faultsByCause).toEqual({ read_page_fault: 1 });
    expect(iommu1.queues!.fq).toMatchObject({ head: 1, tail: 1, records: 1 });
    // acc0 (ATS) is behind iommu1, dsa0 and nic0 behind iommu0.
    expect(iommu1.atcs.map((a) => a.device)).toEqual(["acc0"]);
    expect(s.iommus[0]!.atcs.map((a) => a.device)).toEqual(["dsa0", "nic0"]);
    const json = statisticsJSON(s) as { iommus: { iotlb: { hit_rate: number } }[] };
    expect(json.iommus[1]!.iotlb.hit_rate).toBe(0.3333);
  });

  it("the mock driver has no hardware to count", () => {
    const s = machineStatistics(buildMachine("single-mock"));
    expect(s.iommus[0]).toMatchObject({ driver: "mock", iotlb: null, queues: null, atcs: [] });
  });
});
