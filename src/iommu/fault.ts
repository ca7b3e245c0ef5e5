// The I/O page fault records of §1.9 (`struct iommu_fault_page_request`, `struct iommu_fault`,
// `struct iommu_page_response`): what a driver reports and what the core answers. The IOPF
// machinery that routes them (§7) builds on these.

/** `iommu_fault_page_request.flags`. */
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID = 1 << 2;

/** `iommu_fault_page_request.perm`. */
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** `enum iommu_fault_type`. */
export const IOMMU_FAULT_PAGE_REQ = 1;

/** `struct iommu_fault_page_request`. */
export interface IommuFaultPageRequest {
  readonly flags: number;
  readonly pasid: number;
  readonly grpid: number;
  readonly perm: number;
  readonly addr: bigint;
  readonly privateData: readonly [bigint, bigint];
}

/** `struct iommu_fault`. */
export interface IommuFault {
  readonly type: typeof IOMMU_FAULT_PAGE_REQ;
  readonly prm: IommuFaultPageRequest;
}

/** `enum iommu_page_response_code`. */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;
export type IommuPageResponseCode =
  | typeof IOMMU_PAGE_RESP_SUCCESS
  | typeof IOMMU_PAGE_RESP_INVALID
  | typeof IOMMU_PAGE_RESP_FAILURE;

/** The codes' names without the prefix, indexed by code: SUCCESS, INVALID, FAILURE. */
export const IOMMU_PAGE_RESP_NAMES = ["SUCCESS", "INVALID", "FAILURE"] as const;

/** `struct iommu_page_response`. */
export interface IommuPageResponse {
  readonly pasid: number;
  readonly grpid: number;
  readonly code: IommuPageResponseCode;
}
