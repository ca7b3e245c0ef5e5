// The OS's view of one device access, for the isolation oracle (oracle.ts): what the kernel has
// mapped for the device at that moment, read from the core's and the drivers' own state — the
// group's RID domain or `pasid_array` entry, then the domain's mapping — never from the
// hardware's caches. Page tables are read with PageTable.lookup, which only loads PTEs: no A/D
// update, nothing cached.
//
// Per domain type:
//   - IDENTITY: physical address = IOVA;
//   - BLOCKED (and an attach slot holding nothing): nothing;
//   - paging (UNMANAGED, DMA, DMA_FQ): the domain's current mapping and its permissions (the
//     RISC-V driver's page table, the mock driver's PTE map, else `iommu_iova_to_phys`);
//   - SVA: the bound mm's current page table; a page the VMA allows but the table does not have
//     is a fault the I/O page fault handler resolves ("pri");
//   - supervisor SVA (historical, init_mm): the kernel's page table, for privileged requests.
// Privilege follows the PTEs' U bit: User requests reach U pages, and only a supervisor SVA
// domain lets Privileged requests reach the kernel's (U = 0) pages. Every other domain grants
// User requests only (the RISC-V driver programs ENS only for supervisor SVA).

import type { Device } from "../bus/device.js";
import { cookieOf } from "../dma/dma-iommu.js";
import { MockPagingDomain } from "../drivers/mock/mock-domain.js";
import { RiscvPagingDomain } from "../drivers/riscv/domain.js";
import type { PageTable } from "../hw/pgtable/page-table.js";
import { PTE_A, PTE_D, PTE_R, PTE_U, PTE_W } from "../hw/pgtable/pte.js";
import {
  domainTypeName,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_SVA,
  IOMMU_NO_PASID,
  IOMMU_READ,
  IOMMU_WRITE,
} from "../iommu/constants.js";
import type { IommuCore } from "../iommu/core.js";
import type { IommuDomain } from "../iommu/domain.js";
import type { IommuGroup } from "../iommu/group.js";
import { VM_READ, VM_WRITE } from "../mm/flags.js";
import type { MmStruct } from "../mm/mm-types.js";

/** Access bits of a grant: User read/write, Supervisor (Privileged) read/write. */
export const GRANT_USER_READ = 1;
export const GRANT_USER_WRITE = 2;
export const GRANT_SUPERVISOR_READ = 4;
export const GRANT_SUPERVISOR_WRITE = 8;
const GRANT_USER = GRANT_USER_READ | GRANT_USER_WRITE;

/** The grant bit an access needs. */
export function accessBit(write: boolean, privileged: boolean): number {
  if (privileged) return write ? GRANT_SUPERVISOR_WRITE : GRANT_SUPERVISOR_READ;
  return write ? GRANT_USER_WRITE : GRANT_USER_READ;
}

/** "ur", "uw", "sr", "sw" of a grant, for messages. */
export function grantString(grant: number): string {
  const parts: string[] = [];
  if (grant & GRANT_USER_READ) parts.push("ur");
  if (grant & GRANT_USER_WRITE) parts.push("uw");
  if (grant & GRANT_SUPERVISOR_READ) parts.push("sr");
  if (grant & GRANT_SUPERVISOR_WRITE) parts.push("sw");
  return parts.length === 0 ? "none" : parts.join(",");
}

/**
 * What the OS says of one access:
 * - "allowed": mapped with the permission the access needs (it must reach `ppn`);
 * - "denied": nothing mapped, or not for this access (it must fault);
 * - "pri": not mapped now, but the SVA fault handler will map it (a fault is right);
 * - "unchecked": the oracle cannot tell (`why` says why).
 */
export type OsViewStatus = "allowed" | "denied" | "pri" | "unchecked";

/** The OS view of one access. Filled by `osViewOf`; the oracle reuses one. */
export class OsView {
  status: OsViewStatus = "unchecked";
  /** Why the access is denied or unchecked ("blocked", "not mapped", …); "" when allowed. */
  why = "";
  /** The domain the access translates through (RID domain or PASID entry), or null. */
  domain: IommuDomain | null = null;
  /** The address space whose history applies: the domain, or the SVA domain's mm. */
  space: object | null = null;
  /** The mapping's physical page (also when it denies this access), or -1 without a mapping. */
  ppn = -1;
  /** Every access the mapping grants (GRANT_* bits). */
  grant = 0;
  /** log2 of the mapping's size in 4 KiB pages (a superpage maps many). */
  leafLog2 = 0;
  /** A fault is right too: the PTE lacks A (or D for a write), which the fault path sets. */
  soft = false;

  reset(): void {
    this.status = "unchecked";
    this.why = "";
    this.domain = null;
    this.space = null;
    this.ppn = -1;
    this.grant = 0;
    this.leafLog2 = 0;
    this.soft = false;
  }
}

/** One access, as the view needs it. */
export interface ViewedAccess {
  readonly pasidValid: boolean;
  readonly pasid: number;
  readonly privileged: boolean;
  readonly write: boolean;
  /** The untranslated page (IOVA or virtual address). */
  readonly iovaPage: number;
}

/** Fills `out` with the OS's view of `a` by `dev` now. */
export function osViewOf(core: IommuCore, dev: Device, a: ViewedAccess, out: OsView): OsView {
  out.reset();
  const group = core.groupOf(dev);
  if (group === null) return unchecked(out, "no IOMMU group");
  const domain = attachedDomain(group, dev, a, out);
  if (domain === null) return out;
  out.domain = domain;
  out.space = domain;
  if (domain.freed) return denied(out, `domain ${domain.id} was freed`);
  if (domain.type === IOMMU_DOMAIN_IDENTITY) {
    out.ppn = a.iovaPage;
    out.grant = GRANT_USER;
    return judge(out, a);
  }
  if (domain.type === IOMMU_DOMAIN_BLOCKED) return denied(out, "blocked domain");
  if (domain.type === IOMMU_DOMAIN_SVA) return svaView(domain, a, out);
  if (domain.isPaging()) return pagingView(core, domain, a, out);
  return unchecked(out, `${domainTypeName(domain.type)} domain`);
}

/** The domain the access goes to, or null (with `out` set to denied/unchecked). */
function attachedDomain(
  group: IommuGroup,
  dev: Device,
  a: ViewedAccess,
  out: OsView,
): IommuDomain | null {
  if (!a.pasidValid) {
    if (group.domain === null) denied(out, "no RID domain");
    return group.domain;
  }
  // The kernel never attaches IOMMU_NO_PASID: a PASID-0 prefix means nothing to it.
  if (a.pasid === IOMMU_NO_PASID) {
    unchecked(out, "PASID 0");
    return null;
  }
  const entry = group.pasidArray.load(a.pasid);
  if (entry === undefined) {
    denied(out, `nothing attached at PASID ${a.pasid}`);
    return null;
  }
  // A device that joined the group after the attach was never programmed for the PASID.
  if (!(group.pasidProgrammed.get(a.pasid)?.has(dev) ?? false)) {
    denied(out, `PASID ${a.pasid} not attached to ${dev.name}`);
    return null;
  }
  const domain = entry.kind === "domain" ? entry.domain : entry.handle.domain;
  if (domain === null) denied(out, `PASID ${a.pasid} handle without a domain`);
  return domain;
}

function pagingView(core: IommuCore, domain: IommuDomain, a: ViewedAccess, out: OsView): OsView {
  if (domain instanceof RiscvPagingDomain) {
    tableView(domain.pgtable, false, a, out);
    // No fault path sets A/D in a paging domain: hardware must (DC.tc.SADE) or the driver did.
    out.soft = false;
    return out;
  }
  if (domain instanceof MockPagingDomain) {
    const pte = domain.pfns.get(a.iovaPage);
    if (pte === undefined) return denied(out, "not mapped");
    out.ppn = pte.paddrPfn;
    out.grant =
      ((pte.prot & IOMMU_READ) !== 0 ? GRANT_USER_READ : 0) |
      ((pte.prot & IOMMU_WRITE) !== 0 ? GRANT_USER_WRITE : 0);
    return judge(out, a);
  }
  // A driver the oracle does not know: iommu_iova_to_phys, permissions unknown (both).
  const pa = core.iovaToPhys(domain, BigInt(a.iovaPage) << 12n);
  if (pa === 0n) return denied(out, "not mapped");
  out.ppn = Number(pa >> 12n);
  out.grant = GRANT_USER;
  return judge(out, a);
}

function svaView(domain: IommuDomain, a: ViewedAccess, out: OsView): OsView {
  const mm = domain.mm;
  if (mm === null) return unchecked(out, `SVA domain ${domain.id} without an mm`);
  out.space = mm;
  if (mm.state === "freed") return denied(out, `mm ${mm.id} was freed`);
  tableView(mm.pgtable, mm.kernel, a, out);
  if (out.status === "denied" && mightResolve(mm, a)) {
    out.status = "pri";
    out.why = "not present: the I/O page fault handler maps it";
  }
  return out;
}

/**
 * Whether the SVA I/O page fault handler would map the page: a live user mm whose VMA allows
 * the access (handle_mm_fault then makes the PTE present, or writable after COW).
 */
function mightResolve(mm: MmStruct, a: ViewedAccess): boolean {
  if (mm.kernel || mm.state !== "live" || a.privileged) return false;
  const vma = mm.vmas.lookup(a.iovaPage);
  return vma !== null && (vma.flags & (a.write ? VM_WRITE : VM_READ)) !== 0;
}

/** The view from a page table's leaf: `supervisor` lets Privileged requests reach U = 0 pages. */
function tableView(pt: PageTable, supervisor: boolean, a: ViewedAccess, out: OsView): OsView {
  const va = BigInt(a.iovaPage) << 12n;
  const m = pt.lookup(va);
  if (m === null) return denied(out, "not mapped");
  const first = Number(m.va >> 12n);
  out.ppn = Number(m.pa >> 12n) + (a.iovaPage - first);
  out.leafLog2 = Math.log2(Number(m.size >> 12n));
  const perm = m.perm;
  let grant = 0;
  if ((perm & PTE_R) !== 0) grant |= GRANT_USER_READ | GRANT_SUPERVISOR_READ;
  if ((perm & PTE_W) !== 0) grant |= GRANT_USER_WRITE | GRANT_SUPERVISOR_WRITE;
  // U = 1: User only (SUM = 0); U = 0: Supervisor only, and only where ENS is set.
  if ((perm & PTE_U) !== 0) grant &= GRANT_USER;
  else grant &= supervisor ? ~GRANT_USER : 0;
  out.grant = grant;
  out.soft = (perm & PTE_A) === 0 || (a.write && (perm & PTE_D) === 0);
  return judge(out, a);
}

function judge(out: OsView, a: ViewedAccess): OsView {
  if ((out.grant & accessBit(a.write, a.privileged)) !== 0) {
    out.status = "allowed";
    out.why = "";
    return out;
  }
  return denied(out, `mapped ${grantString(out.grant)}`);
}

function denied(out: OsView, why: string): OsView {
  out.status = "denied";
  out.why = why;
  return out;
}

function unchecked(out: OsView, why: string): OsView {
  out.status = "unchecked";
  out.why = why;
  return out;
}

/**
 * Whether `page` of `domain` was unmapped lazily and waits on the domain's flush queue for its
 * IOTLB flush: queued with a flush-start count no completed flush has passed yet.
 */
export function awaitsFlush(domain: IommuDomain, page: number): boolean {
  const cookie = cookieOf(domain);
  const fq = cookie?.fq ?? null;
  const iovad = cookie?.iovad ?? null;
  if (fq === null || iovad === null || fq.pending === 0) return false;
  const first = Math.floor((page * 4096) / iovad.granule);
  const last = Math.floor((page * 4096 + 4095) / iovad.granule);
  return fq.awaitsFlush(first, last);
}
