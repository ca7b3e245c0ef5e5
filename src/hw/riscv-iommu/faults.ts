// Fault causes and transaction types of the RISC-V IOMMU (chapter "In-memory queue interface",
// "Fault/Event-Queue"). A fault is a value: one frozen object per cause, keyed by a string code
// that keeps the spec's cause number, so reporting a fault allocates nothing.

/** Every cause of the "Fault record CAUSE field encodings" table, by code. */
export const FAULT_CAUSES = {
  instruction_access_fault: 1,
  read_address_misaligned: 4,
  read_access_fault: 5,
  write_address_misaligned: 6,
  write_access_fault: 7,
  instruction_page_fault: 12,
  read_page_fault: 13,
  write_page_fault: 15,
  instruction_guest_page_fault: 20,
  read_guest_page_fault: 21,
  write_guest_page_fault: 23,
  all_inbound_transactions_disallowed: 256,
  ddt_entry_load_access_fault: 257,
  ddt_entry_not_valid: 258,
  ddt_entry_misconfigured: 259,
  transaction_type_disallowed: 260,
  msi_pte_load_access_fault: 261,
  msi_pte_not_valid: 262,
  msi_pte_misconfigured: 263,
  mrif_access_fault: 264,
  pdt_entry_load_access_fault: 265,
  pdt_entry_not_valid: 266,
  pdt_entry_misconfigured: 267,
  ddt_data_corruption: 268,
  pdt_data_corruption: 269,
  msi_pt_data_corruption: 270,
  msi_mrif_data_corruption: 271,
  internal_data_path_error: 272,
  iommu_msi_write_access_fault: 273,
  pt_data_corruption: 274,
} as const;

export type FaultCode = keyof typeof FAULT_CAUSES;

/** A fault: its code and the spec's cause number. `{ code: "ddt_entry_not_valid", cause: 258 }`. */
export type IommuFault = {
  [C in FaultCode]: { readonly code: C; readonly cause: (typeof FAULT_CAUSES)[C] };
}[FaultCode];

/** The one shared fault object of each code. */
export const FAULTS: { readonly [C in FaultCode]: Extract<IommuFault, { code: C }> } =
  Object.freeze(
    Object.fromEntries(
      Object.entries(FAULT_CAUSES).map(([code, cause]) => [code, Object.freeze({ code, cause })]),
    ),
  ) as never;

const BY_CAUSE = new Map<number, IommuFault>(Object.values(FAULTS).map((f) => [f.cause, f]));

/** The fault of a cause number, or undefined for reserved and custom numbers. */
export function faultOfCause(cause: number): IommuFault | undefined {
  return BY_CAUSE.get(cause);
}

/**
 * Causes still reported when `DC.tc.DTF` is 1 (the "Reported if DTF is 1?" column): those not
 * related to the address-translation process.
 */
const REPORTED_DESPITE_DTF = new Set<number>([256, 257, 258, 259, 268, 272, 273]);

export function reportedWhenDtf(cause: number): boolean {
  return REPORTED_DESPITE_DTF.has(cause);
}

/** The guest-page-fault causes: they report the guest physical address in `iotval2`. */
export function isGuestPageFault(cause: number): boolean {
  return cause === 20 || cause === 21 || cause === 23;
}

/** Fault record TTYP encodings ("Fault record TTYP field encodings"). */
export const TTYP = {
  none: 0,
  untranslated_execute: 1,
  untranslated_read: 2,
  untranslated_write: 3,
  translated_execute: 5,
  translated_read: 6,
  translated_write: 7,
  ats_translation_request: 8,
  pcie_message_request: 9,
} as const;

/** PCIe message codes the IOMMU exchanges with endpoints (reported in `iotval` for TTYP 9). */
export const PCIE_MESSAGE_CODE = {
  invalidate_request: 0x01,
  invalidate_completion: 0x02,
  page_request: 0x04,
  prg_response: 0x05,
} as const;
