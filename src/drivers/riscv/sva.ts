// SVA domains (domain_alloc_sva): a process context whose first stage is the process's own page
// table (the mm's Sv48/Sv39/Sv57 root in simulated memory), with the domain's PSCID and ENS = 0
// (User requests only). The driver keeps the IOMMU coherent with the CPU side through an mmu
// notifier on the mm (core §6.6, the Intel/SMMUv3 pattern):
//   - arch_invalidate_secondary_tlbs (after every CPU page-table change): IOTINVAL.VMA of the
//     range (per page below 2 MiB, else the whole PSCID), ATS.INVAL for ATS devices, IOFENCE.C;
//   - release (exit_mmap, before the page tables go): every PASID context of the domain is made
//     invalid (IODIR.INVAL_PDT), then the PSCID is invalidated, so the IOMMU stops walking the
//     dying page table; the PASIDs stay attached until the unbind removes them.
// Freeing the domain unregisters the notifier (which drops its mm reference).

import { type Json, jsonAddr } from "../../base/json.js";
import type { PagingMode } from "../../hw/pgtable/modes.js";
import { IOMMU_DOMAIN_SVA } from "../../iommu/constants.js";
import type { IommuDomainOps } from "../../iommu/domain.js";
import { type MmStruct, MmuNotifier } from "../../mm/mm-types.js";
import {
  FLUSH_ALL_END,
  mmuNotifierRegister,
  mmuNotifierUnregister,
} from "../../mm/mmu-notifier.js";
import { invalidatePasidContext, type RiscvIommuInfo } from "./context.js";
import { RiscvFirstStageDomain } from "./domain.js";
import type { RiscvIommuDevice } from "./iommu.js";

/** The domain's subscription on its mm. */
class SvaNotifier extends MmuNotifier {
  constructor(readonly domain: RiscvSvaDomain) {
    super({
      archInvalidateSecondaryTlbs: (sub, _mm, start, end) =>
        (sub as SvaNotifier).domain.invalidateRange(start, end),
      release: (sub) => (sub as SvaNotifier).domain.mmRelease(),
    });
  }
}

export class RiscvSvaDomain extends RiscvFirstStageDomain {
  readonly mmStruct: MmStruct;
  readonly notifier: SvaNotifier;
  /** ->release ran: the domain's PASID contexts are invalid. */
  released = false;
  /** Calls of arch_invalidate_secondary_tlbs (views). */
  notifications = 0;

  /**
   * A new SVA domain subscribed to `mm`'s notifier. `ops` are the driver's SVA domain ops.
   */
  constructor(
    iommu: RiscvIommuDevice,
    pscid: number,
    mm: MmStruct,
    ops: IommuDomainOps,
    supervisor = false,
  ) {
    super(iommu, pscid, { type: IOMMU_DOMAIN_SVA, ops });
    this.mmStruct = mm;
    // Historical supervisor SVA (seed 003): the kernel's table, walked for privileged requests.
    this.ens = supervisor;
    this.notifier = new SvaNotifier(this);
    mmuNotifierRegister(this.notifier, mm);
  }

  get fscMode(): number {
    return this.mmStruct.pgtable.mode.modeField;
  }

  get rootPpn(): number {
    return this.mmStruct.pgdPpn;
  }

  get pagingMode(): PagingMode {
    return this.mmStruct.pgtable.mode;
  }

  /** arch_invalidate_secondary_tlbs: [start, end), the whole mm for [0, 2^64 − 1). */
  invalidateRange(start: bigint, end: bigint): void {
    this.notifications++;
    if (start === 0n && end >= FLUSH_ALL_END) {
      this.iotlbInvalAll();
      return;
    }
    const first = Number(start >> 12n);
    const last = Number((end + 0xfffn) >> 12n);
    this.iotlbInval(first, Math.max(last, first + 1));
  }

  /** ->release: the PASID contexts go first, then what the IOTLB holds of the mm. */
  mmRelease(): void {
    this.released = true;
    for (const b of this.bonds) {
      if (b.pasid !== null) invalidatePasidContext(b.info as RiscvIommuInfo, b.pasid);
    }
    this.iotlbInvalAll();
  }

  /** The driver's free: unsubscribe (dropping the notifier's mm reference), free the PSCID. */
  free(): void {
    this.releaseFirstStage("riscv_iommu_free_sva_domain");
    mmuNotifierUnregister(this.notifier, this.mmStruct);
  }

  protected override moreJSON(): { [key: string]: Json } {
    return {
      mm_id: this.mmStruct.id,
      pgd: jsonAddr(this.mmStruct.pgdPpn * 4096),
      released: this.released,
      ens: this.ens,
      notifications: this.notifications,
    };
  }
}
