import { describe, expect, it } from "vitest";
import {
  FAULT_CAUSES,
  FAULTS,
  faultOfCause,
  isGuestPageFault,
  reportedWhenDtf,
} from "../../../src/hw/riscv-iommu/faults.js";

describe("fault causes", () => {
  it("keep the spec's numbers and are shared frozen values", () => {
    expect(FAULTS.ddt_entry_not_valid).toEqual({ code: "ddt_entry_not_valid", cause: 258 });
    expect(Object.isFrozen(FAULTS.pt_data_corruption)).toBe(true);
    expect(faultOfCause(260)).toBe(FAULTS.transaction_type_disallowed);
    expect(faultOfCause(275)).toBeUndefined();
    expect(new Set(Object.values(FAULT_CAUSES)).size).toBe(Object.keys(FAULT_CAUSES).length);
  });

  it("DTF suppresses exactly the causes the table marks 'No'", () => {
    const yes = Object.values(FAULT_CAUSES).filter((c) => reportedWhenDtf(c));
    expect(yes.sort((a, b) => a - b)).toEqual([256, 257, 258, 259, 268, 272, 273]);
  });

  it("guest-page faults are 20, 21 and 23", () => {
    expect(Object.values(FAULT_CAUSES).filter(isGuestPageFault)).toEqual([20, 21, 23]);
  });
});
