// Constants of include/linux/iommu.h with their kernel values: domain type bits and types (§1.5),
// mapping prot bits, capabilities, iommufd allocation flags, PASID sentinels (§5.1).

/** Domain type flag bits (`__IOMMU_DOMAIN_*`). */
export const __IOMMU_DOMAIN_PAGING = 1 << 0;
export const __IOMMU_DOMAIN_DMA_API = 1 << 1;
export const __IOMMU_DOMAIN_PT = 1 << 2;
export const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
export const __IOMMU_DOMAIN_SVA = 1 << 4;
export const __IOMMU_DOMAIN_PLATFORM = 1 << 5;
export const __IOMMU_DOMAIN_NESTED = 1 << 6;

/** Domain types (`IOMMU_DOMAIN_*`). */
export const IOMMU_DOMAIN_BLOCKED = 0;
export const IOMMU_DOMAIN_IDENTITY = __IOMMU_DOMAIN_PT;
export const IOMMU_DOMAIN_UNMANAGED = __IOMMU_DOMAIN_PAGING;
export const IOMMU_DOMAIN_DMA = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API;
export const IOMMU_DOMAIN_DMA_FQ =
  __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ;
export const IOMMU_DOMAIN_SVA = __IOMMU_DOMAIN_SVA;
export const IOMMU_DOMAIN_PLATFORM = __IOMMU_DOMAIN_PLATFORM;
export const IOMMU_DOMAIN_NESTED = __IOMMU_DOMAIN_NESTED;

/** Every type bit a driver may be asked to allocate (all but DMA_FQ, which the core sets). */
export const IOMMU_DOMAIN_ALLOC_FLAGS = ~__IOMMU_DOMAIN_DMA_FQ & 0x7f;

/** A domain type value (0 is BLOCKED, or "no preference" where a type is requested). */
export type IommuDomainType = number;

const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [IOMMU_DOMAIN_BLOCKED, "BLOCKED"],
  [IOMMU_DOMAIN_IDENTITY, "IDENTITY"],
  [IOMMU_DOMAIN_UNMANAGED, "UNMANAGED"],
  [IOMMU_DOMAIN_DMA, "DMA"],
  [IOMMU_DOMAIN_DMA_FQ, "DMA_FQ"],
  [IOMMU_DOMAIN_SVA, "SVA"],
  [IOMMU_DOMAIN_PLATFORM, "PLATFORM"],
  [IOMMU_DOMAIN_NESTED, "NESTED"],
]);

/** The constant's name without its prefix (`"DMA_FQ"`), used by views and traces. */
export function domainTypeName(type: IommuDomainType): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16)}`;
}

/** The type for a name accepted by `domainTypeName` (`"DMA"` → 3). */
export function domainTypeFromName(name: string): IommuDomainType | undefined {
  for (const [v, n] of TYPE_NAMES) if (n === name) return v;
  return undefined;
}

/** `iommu_domain_type_str`: the names the kernel logs ("Translated" for DMA and DMA-FQ). */
export function iommuDomainTypeStr(type: IommuDomainType): string {
  switch (type) {
    case IOMMU_DOMAIN_BLOCKED:
      return "Blocked";
    case IOMMU_DOMAIN_IDENTITY:
      return "Passthrough";
    case IOMMU_DOMAIN_UNMANAGED:
      return "Unmanaged";
    case IOMMU_DOMAIN_DMA:
    case IOMMU_DOMAIN_DMA_FQ:
      return "Translated";
    case IOMMU_DOMAIN_PLATFORM:
      return "Platform";
    default:
      return "Unknown";
  }
}

/** What sysfs `iommu_groups/<id>/type` shows for a default domain type. */
export function sysfsTypeName(type: IommuDomainType | null): string {
  switch (type) {
    case IOMMU_DOMAIN_BLOCKED:
      return "blocked";
    case IOMMU_DOMAIN_IDENTITY:
      return "identity";
    case IOMMU_DOMAIN_UNMANAGED:
      return "unmanaged";
    case IOMMU_DOMAIN_DMA:
      return "DMA";
    case IOMMU_DOMAIN_DMA_FQ:
      return "DMA-FQ";
    default:
      return "unknown";
  }
}

/** "is paging": the domain supports `iommu_map` / `iommu_unmap`. */
export function domainTypeIsPaging(type: IommuDomainType): boolean {
  return (type & __IOMMU_DOMAIN_PAGING) !== 0;
}

/** `iommu_is_dma_domain`: used by the DMA API. */
export function domainTypeIsDma(type: IommuDomainType): boolean {
  return (type & __IOMMU_DOMAIN_DMA_API) !== 0;
}

/** Mapping protection bits (`IOMMU_READ` …). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

/** `report_iommu_fault` flags. */
export const IOMMU_FAULT_READ = 0x0;
export const IOMMU_FAULT_WRITE = 0x1;

/** `enum iommu_cap`. */
export const IOMMU_CAP = {
  CACHE_COHERENCY: 0,
  NOEXEC: 1,
  PRE_BOOT_PROTECTION: 2,
  ENFORCE_CACHE_COHERENCY: 3,
  DEFERRED_FLUSH: 4,
  DIRTY_TRACKING: 5,
} as const;
export type IommuCap = (typeof IOMMU_CAP)[keyof typeof IOMMU_CAP];

/** `enum iommufd_hwpt_alloc_flags` (the `flags` of `domain_alloc_paging_flags`). */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

/** `ioasid_t` sentinels (§5.1). */
export const IOMMU_NO_PASID = 0;
export const IOMMU_FIRST_GLOBAL_PASID = 1;
export const IOMMU_PASID_INVALID = 0xffff_ffff;
/** The historical IOASID allocator's `INVALID_IOASID` ((ioasid_t)-1), same value. */
export const INVALID_IOASID = IOMMU_PASID_INVALID;

/** `enum iommu_domain_cookie_type` (v6.15+): which member of the domain's cookie union is live. */
export type IommuCookieType = "NONE" | "DMA_IOVA" | "DMA_MSI" | "FAULT_HANDLER" | "SVA" | "IOMMUFD";
