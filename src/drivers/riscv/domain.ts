// Domains that translate through a first-stage page table (`struct riscv_iommu_domain`): the
// common part — PSCID, the IOMMU instance, the bonds to the devices (and PASIDs) that use it,
// and IOTLB invalidation (riscv_iommu_iotlb_inval) — and the paging domain, whose page table
// (a PageTable in the widest Sv mode the IOMMU walks) the driver builds in simulated memory.
//
// Invalidation follows the kernel: IOTINVAL.VMA of the domain's PSCID, one per 4 KiB page for
// ranges below 2 MiB, else the whole PSCID; then, for devices with ATS enabled, an ATS.INVAL of
// the range (IOATC first: "software must first invalidate the IOATC"); then IOFENCE.C. A domain
// with no bonds has nothing cached and sends nothing. When the last bond of the domain goes, its
// PSCID is invalidated (riscv_iommu_bond_unlink), so a freed PSCID never has stale entries.
//
// Like the kernel's, the page table keeps its intermediate tables when unmaps empty them (they
// are reused, and freed with the domain), so unmaps invalidate leaves only. A superpage mapped
// over an emptied table frees that table: then, as riscv_iommu_map_pages does for its freelist,
// the whole PSCID is invalidated (AV=0 also drops cached non-leaf entries, "IOTINVAL.VMA").

import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import { err, OK, type Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import type { PagingMode } from "../../hw/pgtable/modes.js";
import {
  type PageTable,
  PT_EXISTS,
  PT_NO_MEMORY,
  PT_OK,
  PT_OUT_OF_RANGE,
  PT_STATUS_NAMES,
  PT_WOULD_SPLIT,
} from "../../hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W } from "../../hw/pgtable/pte.js";
import { IOMMU_WRITE } from "../../iommu/constants.js";
import {
  IommuDomain,
  type IommuDomainInit,
  type IotlbGather,
  type MapOut,
} from "../../iommu/domain.js";
import type { RiscvIommuDevice } from "./iommu.js";
import { ATS_ALL_PAGES, RiscvIommuCommand } from "./iommu-bits.js";

/** Ranges of this many 4 KiB pages or more are invalidated as a whole PSCID (2 MiB). */
export const IOTLB_INVAL_LIMIT_PAGES = 512;

/** What a bond needs to know of a device (implemented by the per-device info). */
export interface BondDevice {
  readonly dev: Device;
  /** The device's own device_id: where ATS messages go. */
  readonly requesterId: number;
  /** ATS is enabled in the device context and on the device. */
  readonly atsEnabled: boolean;
}

/** A device (RID traffic, or one PASID) translating through a domain. */
export interface Bond {
  readonly info: BondDevice;
  /** null: the device's RID (no-PASID) traffic. */
  readonly pasid: number | null;
}

export abstract class RiscvFirstStageDomain extends IommuDomain {
  readonly iommu: RiscvIommuDevice;
  readonly pscid: number;
  readonly bonds: Bond[] = [];
  /** IOTLB invalidation requests (riscv_iommu_iotlb_inval calls that sent commands). */
  invalidations = 0;
  /** `PC.ta.ENS`: supervisor requests allowed (historical supervisor SVA only). */
  ens = false;
  readonly #cmd = new RiscvIommuCommand();

  constructor(iommu: RiscvIommuDevice, pscid: number, init: IommuDomainInit) {
    super(init);
    this.iommu = iommu;
    this.pscid = pscid;
  }

  /** `PC.fsc.MODE` / `iosatp.MODE` of the table. */
  abstract get fscMode(): number;
  /** Root page of the table. */
  abstract get rootPpn(): number;
  /** The paging mode of the table. */
  abstract get pagingMode(): PagingMode;

  /** riscv_iommu_bond_link. */
  bondLink(info: BondDevice, pasid: number | null): void {
    this.bonds.push({ info, pasid });
  }

  /**
   * riscv_iommu_bond_unlink: when no other bond of this domain remains on the IOMMU, its PSCID
   * is invalidated (IOTINVAL.VMA PSCV=1, IOFENCE.C).
   */
  bondUnlink(info: BondDevice, pasid: number | null): void {
    const i = this.bonds.findIndex((b) => b.info === info && b.pasid === pasid);
    if (i < 0) return;
    this.bonds.splice(i, 1);
    if (this.bonds.length > 0) return;
    this.iommu.cmdSend(this.#cmd.invalVma().setPscid(this.pscid));
    this.iommu.cmdSync();
  }

  /** The IOTLB (and device ATCs) for the whole domain. */
  iotlbInvalAll(): void {
    this.iotlbInval(0, 0);
  }

  /**
   * riscv_iommu_iotlb_inval for IOVA pages [startPfn, endPfn); an empty range means the whole
   * PSCID.
   */
  iotlbInval(startPfn: number, endPfn: number): void {
    if (this.bonds.length === 0) return;
    const iommu = this.iommu;
    const cmd = this.#cmd;
    const pages = endPfn - startPfn;
    this.invalidations++;
    if (!iommu.inject.skipIotinval) {
      if (pages > 0 && pages < IOTLB_INVAL_LIMIT_PAGES) {
        for (let p = startPfn; p < endPfn; p++) {
          iommu.cmdSend(cmd.invalVma().setPscid(this.pscid).setAddr(p));
        }
      } else {
        iommu.cmdSend(cmd.invalVma().setPscid(this.pscid));
      }
    }
    this.#atsInval(startPfn, endPfn);
    iommu.cmdSync();
  }

  /** One ATS.INVAL per ATS-enabled (device, PASID) bond, covering the range naturally aligned. */
  #atsInval(startPfn: number, endPfn: number): void {
    const bonds = this.bonds;
    let page = ATS_ALL_PAGES;
    let s = true;
    if (endPfn > startPfn) {
      // The smallest naturally aligned power-of-two span holding the range (PCIe size encoding).
      let k = 0;
      while (Math.floor(startPfn / 2 ** k) !== Math.floor((endPfn - 1) / 2 ** k)) k++;
      const base = startPfn - (startPfn % 2 ** k);
      s = k > 0;
      page = s ? base + 2 ** (k - 1) - 1 : base;
    }
    for (let i = 0; i < bonds.length; i++) {
      const b = bonds[i]!;
      if (!b.info.atsEnabled) continue;
      let dup = false;
      for (let j = 0; j < i; j++) {
        const o = bonds[j]!;
        if (o.info.requesterId === b.info.requesterId && o.pasid === b.pasid) dup = true;
      }
      if (dup) continue;
      this.iommu.cmdSend(this.#cmd.atsInval(b.info.requesterId, b.pasid ?? -1, false, s, page));
    }
  }

  /** The driver's free ran. */
  protected tornDown = false;

  /** Driver-side checks before the core frees the domain. */
  protected releaseFirstStage(site: string): void {
    this.tornDown = true;
    this.iommu.ctx.warnings.on(
      this.bonds.length > 0,
      site,
      `domain ${this.id} freed while ${this.bonds.length} device(s) still use it`,
    );
    this.iommu.freePscid(this.pscid);
  }

  protected override extraJSON(): { [key: string]: Json } {
    return {
      iommu: this.iommu.name,
      pscid: this.pscid,
      mode: this.pagingMode.name,
      // After the driver's free the table (or the mm) may be gone.
      root: this.tornDown ? null : jsonAddr(this.rootPpn * 4096),
      bonds: this.bonds.map((b) => ({ device: b.info.dev.name, pasid: b.pasid })),
      invalidations: this.invalidations,
      ...(this.tornDown ? {} : this.moreJSON()),
    };
  }

  protected moreJSON(): { [key: string]: Json } {
    return {};
  }
}

/** A paging domain (UNMANAGED / DMA / DMA_FQ): the driver's own first-stage table. */
export class RiscvPagingDomain extends RiscvFirstStageDomain {
  readonly pgtable: PageTable;
  /** Hardware A/D updating (capabilities.AMO_HWAD): writable PTEs start without D. */
  readonly amoEnabled: boolean;
  #pteWrite: number;
  #pteRead: number;

  constructor(
    iommu: RiscvIommuDevice,
    pscid: number,
    pgtable: PageTable,
    amoEnabled: boolean,
    init: IommuDomainInit,
  ) {
    super(iommu, pscid, init);
    this.pgtable = pgtable;
    this.amoEnabled = amoEnabled;
    // _PAGE_BASE (V, A, U) | R [| W [| D]]: V is added by the page table.
    this.#pteRead = PTE_A | PTE_U | PTE_R;
    this.#pteWrite = this.#pteRead | PTE_W | (amoEnabled ? 0 : PTE_D);
  }

  get fscMode(): number {
    return this.pgtable.mode.modeField;
  }

  get rootPpn(): number {
    return this.pgtable.rootPpn;
  }

  get pagingMode(): PagingMode {
    return this.pgtable.mode;
  }

  /**
   * riscv_iommu_map_pages. A mapping already present is refused with EEXIST (and a warning):
   * the page table never replaces a live entry behind the IOTLB's back.
   */
  mapPages(
    iovaPfn: number,
    paddrPfn: number,
    pgshift: number,
    pgcount: number,
    prot: number,
    out: MapOut,
  ): Result {
    const perm = (prot & IOMMU_WRITE) !== 0 ? this.#pteWrite : this.#pteRead;
    const pt = this.pgtable;
    const per = 2 ** (pgshift - 12);
    let tablesFreed = false;
    let r: Result = OK;
    for (let i = 0; i < pgcount; i++) {
      const iova = iovaPfn + i * per;
      const pa = paddrPfn + i * per;
      let st: number;
      if (pgshift === 12) {
        st = pt.map4k(iova, pa, perm);
      } else {
        // A superpage allocates tables only when its slot was empty: fewer table pages after
        // the map means it replaced (and freed) an emptied table.
        const before = pt.tablePages;
        st = codeOf(pt.map(BigInt(iova) << 12n, BigInt(pa) << 12n, 1n << BigInt(pgshift), perm));
        if (pt.tablePages < before) tablesFreed = true;
      }
      if (st === PT_OK) {
        out.mappedPages += per;
        continue;
      }
      if (st === PT_NO_MEMORY) {
        r = err("ENOMEM");
      } else if (st === PT_OUT_OF_RANGE) {
        r = err("ERANGE");
      } else if (st === PT_EXISTS) {
        this.iommu.ctx.warnings.warn(
          "riscv_iommu_map_pages",
          `IOVA page 0x${iova.toString(16)} of domain ${this.id} is already mapped`,
        );
        r = err("EEXIST");
      } else {
        throw new SimError(
          `map of 2^${pgshift} at page 0x${iova.toString(16)}: ${PT_STATUS_NAMES[st]}`,
        );
      }
      break;
    }
    if (tablesFreed) this.iotlbInvalAll();
    return r;
  }

  /**
   * riscv_iommu_unmap_pages: unmaps whole leaves from `iovaPfn` until the size is covered, a hole
   * is met, or a leaf starts before the address (partial unmap is refused); 4 KiB pages unmapped.
   */
  unmapPages(iovaPfn: number, pgshift: number, pgcount: number, gather: IotlbGather): number {
    const total = 2 ** (pgshift - 12) * pgcount;
    const pt = this.pgtable;
    let done = 0;
    let iova = iovaPfn;
    while (done < total) {
      let n = 0;
      const st = pt.unmap4k(iova);
      if (st === PT_OK) {
        n = 1;
      } else if (st === PT_WOULD_SPLIT) {
        const m = pt.lookup(BigInt(iova) << 12n);
        if (m === null) break;
        const pages = Number(m.size >> 12n);
        if (iova % pages !== 0) break;
        if (pt.unmap(m.va, m.size).status !== "ok") break;
        n = pages;
      } else {
        // PT_NOT_MAPPED (a hole) or PT_OUT_OF_RANGE: nothing more to unmap.
        break;
      }
      this.#gatherAddPage(gather, iova, n);
      iova += n;
      done += n;
    }
    return done;
  }

  /** iommu_iotlb_gather_add_page: a disjoint range or another page size syncs first. */
  #gatherAddPage(gather: IotlbGather, pfn: number, pages: number): void {
    const shift = 12 + Math.log2(pages);
    if (
      !gather.isEmpty() &&
      ((gather.pgshift !== 0 && gather.pgshift !== shift) ||
        pfn + pages < gather.start ||
        pfn > gather.end)
    ) {
      this.iotlbSync(gather);
      gather.init();
    }
    gather.pgshift = shift;
    gather.addRange(pfn, pages);
  }

  /** riscv_iommu_iotlb_sync. */
  iotlbSync(gather: IotlbGather): void {
    if (gather.isEmpty()) {
      // Nothing was unmapped: the kernel's loop sends no IOTINVAL, only the fence.
      if (this.bonds.length > 0) this.iommu.cmdSync();
      return;
    }
    this.iotlbInval(gather.start, gather.end);
  }

  /** riscv_iommu_iotlb_flush_all. */
  flushIotlbAll(): void {
    this.iotlbInvalAll();
  }

  /** riscv_iommu_iova_to_phys (0 when unmapped). */
  iovaToPhys(iova: bigint): bigint {
    if (iova < 0n || iova >= 1n << 64n) return 0n;
    return this.pgtable.iovaToPhys(iova);
  }

  /** riscv_iommu_iova_to_phys by page number: the 4 KiB physical page, or -1. */
  iovaToPhysPfn(iovaPfn: number): number {
    return this.pgtable.lookupPpn(iovaPfn);
  }

  /** riscv_iommu_free_paging_domain. */
  free(): void {
    this.releaseFirstStage("riscv_iommu_free_paging_domain");
    this.pgtable.destroy();
  }

  /** Leaf mappings (for views). */
  mappingCount(): number {
    return this.pgtable.mappings().length;
  }

  protected override moreJSON(): { [key: string]: Json } {
    return {
      amo: this.amoEnabled,
      table_pages: this.pgtable.tablePages,
      mappings: this.mappingCount(),
    };
  }
}

function codeOf(status: string): number {
  return PT_STATUS_NAMES.indexOf(status as (typeof PT_STATUS_NAMES)[number]);
}

/** The kernel's aperture and page sizes for a table of `mode`: VA bits − 1, 4K/2M/1G/512G. */
export function pagingGeometry(mode: PagingMode): {
  apertureEnd: bigint;
  pgsizeBitmap: bigint;
} {
  const vaMask = (1n << BigInt(mode.vaBits - 1)) - 1n;
  const sizes = (1n << 12n) | (1n << 21n) | (1n << 30n) | (1n << 39n);
  return { apertureEnd: vaMask, pgsizeBitmap: sizes & vaMask };
}
