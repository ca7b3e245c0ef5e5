import { describe, expect, it } from "vitest";
import {
  domainTypeFromName,
  domainTypeIsDma,
  domainTypeIsPaging,
  domainTypeName,
  IOMMU_DOMAIN_ALLOC_FLAGS,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_NESTED,
  IOMMU_DOMAIN_PLATFORM,
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_PASID_INVALID,
  iommuDomainTypeStr,
  sysfsTypeName,
} from "../../src/iommu/constants.js";

describe("domain types (§1.5)", () => {
  it("have the kernel's values and predicates", () => {
    expect([
      IOMMU_DOMAIN_BLOCKED,
      IOMMU_DOMAIN_IDENTITY,
      IOMMU_DOMAIN_UNMANAGED,
      IOMMU_DOMAIN_DMA,
      IOMMU_DOMAIN_DMA_FQ,
      IOMMU_DOMAIN_SVA,
      IOMMU_DOMAIN_PLATFORM,
      IOMMU_DOMAIN_NESTED,
    ]).toEqual([0, 4, 1, 3, 11, 16, 32, 64]);
    expect(IOMMU_DOMAIN_ALLOC_FLAGS).toBe(0x77);
    expect(
      [IOMMU_DOMAIN_UNMANAGED, IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ].every(domainTypeIsPaging),
    ).toBe(true);
    expect(
      [IOMMU_DOMAIN_IDENTITY, IOMMU_DOMAIN_SVA, IOMMU_DOMAIN_BLOCKED].some(domainTypeIsPaging),
    ).toBe(false);
    expect(domainTypeIsDma(IOMMU_DOMAIN_DMA_FQ)).toBe(true);
    expect(domainTypeIsDma(IOMMU_DOMAIN_UNMANAGED)).toBe(false);
    expect(IOMMU_PASID_INVALID).toBe(0xffffffff);
  });

  it("names them as the views, the kernel log and sysfs do", () => {
    expect(domainTypeName(IOMMU_DOMAIN_DMA_FQ)).toBe("DMA_FQ");
    expect(domainTypeName(0x80)).toBe("0x80");
    expect(domainTypeFromName("IDENTITY")).toBe(IOMMU_DOMAIN_IDENTITY);
    expect(domainTypeFromName("nope")).toBeUndefined();
    expect([0, 4, 1, 3, 11, 32, 16].map(iommuDomainTypeStr)).toEqual([
      "Blocked",
      "Passthrough",
      "Unmanaged",
      "Translated",
      "Translated",
      "Platform",
      "Unknown",
    ]);
    expect([0, 4, 1, 3, 11, 32].map(sysfsTypeName)).toEqual([
      "blocked",
      "identity",
      "unmanaged",
      "DMA",
      "DMA-FQ",
      "unknown",
    ]);
    expect(sysfsTypeName(null)).toBe("unknown");
  });
});
