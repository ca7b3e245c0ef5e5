import { describe, expect, it } from "vitest";
import { unwrap } from "../../src/base/result.js";
import { MOCK_FLAGS_DEVICE_PASID } from "../../src/drivers/mock/mock-iommu.js";
import { mockBed } from "./setup.js";

describe("smoke", () => {
  it("probes a mock device into its own group on the static blocked default domain", () => {
    const b = mockBed();
    const dev = unwrap(b.mock.mockDevCreate(MOCK_FLAGS_DEVICE_PASID));
    const g = b.core.groupOf(dev)!;
    expect(g.devices.map((d) => d.dev)).toEqual([dev]);
    expect(g.defaultDomain).toBe(b.mock.blockedDomain);
    expect(g.domain).toBe(b.mock.blockedDomain);
    expect(dev.iommu!.maxPasids).toBe(1 << 20);
    const d = unwrap(b.core.pagingDomainAlloc(dev));
    expect(b.core.attachDevice(d, dev)).toEqual({ ok: true, value: undefined });
    expect(b.mock.ridDomain(dev)).toBe(d);
    expect(b.core.map(d, 0x100000n, 0x200000n, 0x3000n, 3).ok).toBe(true);
    expect(b.core.iovaToPhys(d, 0x101234n)).toBe(0x201234n);
    expect(b.core.unmap(d, 0x100000n, 0x3000n)).toBe(0x3000n);
    expect(JSON.parse(JSON.stringify(b.core.toJSON())).groups.length).toBe(1);
  });
});
