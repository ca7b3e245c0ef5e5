// iommu_map / iommu_unmap / iommu_iova_to_phys (core §3.5) and the legacy fault report path.
//
// The map/unmap path is hot (the DMA API calls it per mapping): internally it works on page
// numbers in 4 KiB units as plain numbers and allocates nothing. The bigint entry points check
// and convert their arguments once, without allocating (through 32-bit halves);
// `iommuMapPfn` / `iommuUnmapPfn` / `iommuUnmapFastPfn` are the BigInt-free forms.

import { SimError } from "../base/errors.js";
import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY } from "./constants.js";
import type { IommuDomain, IommuFaultHandler, IotlbGather } from "./domain.js";
import type { CoreState } from "./state.js";

const TWO32 = 0x1_0000_0000;
const TWO20 = 0x10_0000;
const MAX_PFN = 2 ** 52;
const U64_LIMIT = 1n << 64n;

/**
 * A u64 bigint's 32-bit halves, read without allocating: stored into a BigUint64Array, read back
 * through a Uint32Array over the same bytes (in the platform's byte order).
 */
const U64 = new BigUint64Array(1);
const HALVES = new Uint32Array(U64.buffer);
U64[0] = 1n;
const LO = HALVES[0] === 1 ? 0 : 1;
const HI = 1 - LO;

/** 2^n for n in [0, 63], so page sizes and counts never go through Math.pow. */
const POW2 = new Float64Array(64);
for (let i = 0; i < 64; i++) POW2[i] = 2 ** i;

/** `x` (an integer in [0, 2^53)) is not a multiple of 2^`order`. */
function misaligned(x: number, order: number): boolean {
  // The low 31 bits survive the int32 conversion of the bit operators.
  return order < 31 ? (x & ((1 << order) - 1)) !== 0 : x % POW2[order]! !== 0;
}

/** The u64 `x` is not a multiple of 2^`shift` (shift < 64); read through its halves. */
function misalignedU64(x: bigint, shift: number): boolean {
  U64[0] = x;
  const lo = HALVES[LO]!;
  if (shift < 32) return (lo & (POW2[shift]! - 1)) !== 0;
  return lo !== 0 || (HALVES[HI]! & (POW2[shift - 32]! - 1)) !== 0;
}

/** The 4 KiB page number of the u64 `x`; read through its halves. */
function pfnOfU64(x: bigint): number {
  U64[0] = x;
  return HALVES[HI]! * TWO20 + (HALVES[LO]! >>> 12);
}

/**
 * `iommu_pgsize` in page-number form (4 KiB units), `shifts` being the domain's page sizes as
 * ascending log2 byte shifts: the largest supported page allowed by the remaining size and the
 * alignment of both addresses (as a shift), and into `s.pgsizeCount` how many such pages to map
 * before a larger page size becomes usable. Bit operators see the low 32 bits of their operands
 * (exactly, for integers below 2^53), so the usual addresses need no division; nothing is
 * allocated.
 */
function iommuPgsize(
  s: CoreState,
  shifts: readonly number[],
  iovaPfn: number,
  paddrPfn: number,
  sizePages: number,
): number {
  // __fls(size): no page larger than what is left.
  let maxOrder =
    sizePages < TWO32 ? 31 - Math.clz32(sizePages) : 63 - Math.clz32(sizePages / TWO32);
  // __ffs(iova | paddr): no page larger than the alignment of both (unbounded when both are 0).
  const lo = iovaPfn | paddrPfn;
  if (lo !== 0) {
    const align = 31 - Math.clz32(lo & -lo);
    if (align < maxOrder) maxOrder = align;
  } else {
    const hi = (iovaPfn / TWO32) | (paddrPfn / TWO32);
    if (hi !== 0) {
      const align = 63 - Math.clz32(hi & -hi);
      if (align < maxOrder) maxOrder = align;
    }
  }
  const n = shifts.length;
  let idx = -1;
  while (idx + 1 < n && shifts[idx + 1]! - 12 <= maxOrder) idx++;
  if (idx < 0) throw new SimError("iommu_pgsize: no suitable page size (BUG_ON)");
  const order = shifts[idx]! - 12;
  let size = sizePages;
  if (idx + 1 < n) {
    // A bigger page is only possible when both addresses sit at the same offset in it; then
    // map only up to its boundary, if a whole bigger page fits after it.
    const next = shifts[idx + 1]! - 12;
    if (next < 31) {
      const mask = (1 << next) - 1;
      if (((iovaPfn ^ paddrPfn) & mask) === 0) {
        const offset = mask + 1 - (iovaPfn & mask);
        if (offset + mask + 1 <= size) size = offset;
      }
    } else {
      const m = POW2[next]!;
      const off = iovaPfn % m;
      if (off === paddrPfn % m && m - off + m <= size) size = m - off;
    }
  }
  // size >= 2^order, so below 2^31 the shift count is below 31 too.
  s.pgsizeCount = size < 0x8000_0000 ? size >>> order : Math.floor(size / POW2[order]!);
  return order + 12;
}

/** The checks iommu_map makes before alignment: null when they pass, else the failure. */
function mapPrecheck(s: CoreState, domain: IommuDomain): Result | null {
  domain.assertLive("iommu_map");
  if (!domain.isPaging()) return err("EINVAL");
  if (domain.ops === null || domain.ops.mapPages === undefined || domain.pgShifts.length === 0) {
    s.warnOn(true, "iommu_map", "domain has no map_pages or no page sizes");
    return err("ENODEV");
  }
  return null;
}

function checkAddr(x: bigint, what: string): void {
  if (x < 0n || x >= U64_LIMIT) throw new SimError(`${what} 0x${x.toString(16)} is not a u64`);
}

/** `iommu_map`: map `[iova, iova+size)` to `paddr`, split into the largest possible pages. */
export function iommuMap(
  s: CoreState,
  domain: IommuDomain,
  iova: bigint,
  paddr: bigint,
  size: bigint,
  prot: number,
): Result {
  checkAddr(iova, "iova");
  checkAddr(paddr, "paddr");
  checkAddr(size, "size");
  const pre = mapPrecheck(s, domain);
  if (pre !== null) return pre;
  const minShift = domain.pgShifts[0]!;
  if (
    !misalignedU64(iova, minShift) &&
    !misalignedU64(paddr, minShift) &&
    !misalignedU64(size, minShift)
  ) {
    return mapAligned(s, domain, pfnOfU64(iova), pfnOfU64(paddr), pfnOfU64(size), prot);
  }
  s.log(
    "err",
    null,
    `unaligned: iova 0x${iova.toString(16)} pa 0x${paddr.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${(1n << BigInt(minShift)).toString(16)}`,
  );
  return err("EINVAL");
}

/** `iommu_map` with page numbers and a page count (4 KiB units): the BigInt-free hot path. */
export function iommuMapPfn(
  s: CoreState,
  domain: IommuDomain,
  iovaPfn: number,
  paddrPfn: number,
  npages: number,
  prot: number,
): Result {
  const pre = mapPrecheck(s, domain);
  if (pre !== null) return pre;
  const minOrder = domain.pgShifts[0]! - 12;
  if (
    misaligned(iovaPfn, minOrder) ||
    misaligned(paddrPfn, minOrder) ||
    misaligned(npages, minOrder)
  ) {
    s.log("err", null, "unaligned iommu_map");
    return err("EINVAL");
  }
  return mapAligned(s, domain, iovaPfn, paddrPfn, npages, prot);
}

function mapAligned(
  s: CoreState,
  domain: IommuDomain,
  iovaPfn: number,
  paddrPfn: number,
  npages: number,
  prot: number,
): Result {
  if (iovaPfn + npages > MAX_PFN || paddrPfn + npages > MAX_PFN) {
    throw new SimError("iommu_map range beyond 2^64");
  }
  const ops = domain.ops!;
  const shifts = domain.pgShifts;
  const out = s.mapOut;
  let iova = iovaPfn;
  let paddr = paddrPfn;
  let left = npages;
  let r: Result = OK;
  while (left > 0) {
    const shift = iommuPgsize(s, shifts, iova, paddr, left);
    out.mappedPages = 0;
    r = ops.mapPages!(domain, iova, paddr, shift, s.pgsizeCount, prot, out);
    // Pages may have been mapped even on error: account for them so they get unmapped.
    left -= out.mappedPages;
    if (!r.ok) break;
    iova += out.mappedPages;
    paddr += out.mappedPages;
  }
  if (!r.ok) {
    iommuUnmapPfn(s, domain, iovaPfn, npages - left);
    return r;
  }
  if (s.ctx.trace.enabled) {
    s.ctx.trace.emit("iommu:map", "core", {
      iova: BigInt(iovaPfn) << 12n,
      paddr: BigInt(paddrPfn) << 12n,
      size: BigInt(npages) << 12n,
    });
  }
  if (ops.iotlbSyncMap !== undefined) {
    const sync = ops.iotlbSyncMap(domain, iovaPfn, npages);
    if (!sync.ok) {
      iommuUnmapPfn(s, domain, iovaPfn, npages);
      return sync;
    }
  }
  return OK;
}

/** `iommu_unmap`: bytes unmapped (0 for a non-paging domain or a misaligned range). */
export function iommuUnmap(s: CoreState, domain: IommuDomain, iova: bigint, size: bigint): bigint {
  checkAddr(iova, "iova");
  checkAddr(size, "size");
  domain.assertLive("iommu_unmap");
  const shifts = domain.pgShifts;
  const minShift = shifts.length > 0 ? shifts[0]! : 0;
  const aligned = !misalignedU64(iova, minShift) && !misalignedU64(size, minShift);
  if (!aligned && domain.isPaging() && domain.ops?.unmapPages) {
    s.log(
      "err",
      null,
      `unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${(1n << BigInt(minShift)).toString(16)}`,
    );
    s.gather.init();
    domain.ops.iotlbSync?.(domain, s.gather);
    return 0n;
  }
  return s.pagesToBytes(iommuUnmapPfn(s, domain, pfnOfU64(iova), pfnOfU64(size)));
}

/** `iommu_unmap` in page numbers: 4 KiB pages unmapped. */
export function iommuUnmapPfn(
  s: CoreState,
  domain: IommuDomain,
  iovaPfn: number,
  npages: number,
): number {
  const gather = s.gather;
  gather.init();
  const n = unmapPages(s, domain, iovaPfn, npages, gather);
  // iommu_iotlb_sync
  domain.ops?.iotlbSync?.(domain, gather);
  gather.init();
  return n;
}

/**
 * `iommu_unmap_fast` in page numbers: unmaps into the caller's `gather` without `iotlb_sync` (the
 * caller syncs it, or defers the invalidation to a flush queue); 4 KiB pages unmapped.
 */
export function iommuUnmapFastPfn(
  s: CoreState,
  domain: IommuDomain,
  iovaPfn: number,
  npages: number,
  gather: IotlbGather,
): number {
  return unmapPages(s, domain, iovaPfn, npages, gather);
}

/** `__iommu_unmap`. */
function unmapPages(
  s: CoreState,
  domain: IommuDomain,
  iovaPfn: number,
  npages: number,
  gather: IotlbGather,
): number {
  if (!domain.isPaging()) return 0;
  const ops = domain.ops;
  const shifts = domain.pgShifts;
  if (ops === null || ops.unmapPages === undefined || shifts.length === 0) {
    s.warnOn(true, "__iommu_unmap", "domain has no unmap_pages or no page sizes");
    return 0;
  }
  const minOrder = shifts[0]! - 12;
  if (misaligned(iovaPfn, minOrder) || misaligned(npages, minOrder)) {
    s.log("err", null, "unaligned iommu_unmap");
    return 0;
  }
  let iova = iovaPfn;
  let unmapped = 0;
  // Until `size` is covered or a hole is hit.
  while (unmapped < npages) {
    const shift = iommuPgsize(s, shifts, iova, iova, npages - unmapped);
    const n = ops.unmapPages(domain, iova, shift, s.pgsizeCount, gather);
    if (n === 0) break;
    // A driver that does not use the gather must still get its iotlb_sync.
    if (gather.isEmpty()) gather.addRange(iova, npages);
    iova += n;
    unmapped += n;
  }
  if (s.ctx.trace.enabled) {
    s.ctx.trace.emit("iommu:unmap", "core", {
      iova: BigInt(iovaPfn) << 12n,
      size: BigInt(npages) << 12n,
      unmapped_size: BigInt(unmapped) << 12n,
    });
  }
  return unmapped;
}

/** `iommu_iova_to_phys`: IDENTITY → iova, BLOCKED → 0, else the driver (0 = not mapped). */
export function iommuIovaToPhys(_s: CoreState, domain: IommuDomain, iova: bigint): bigint {
  domain.assertLive("iommu_iova_to_phys");
  if (domain.type === IOMMU_DOMAIN_IDENTITY) return iova;
  if (domain.type === IOMMU_DOMAIN_BLOCKED) return 0n;
  return domain.ops?.iovaToPhys?.(domain, iova) ?? 0n;
}

/**
 * `iommu_iova_to_phys` by page number (BigInt-free, for the DMA map/unmap path): the physical
 * page `iovaPfn` maps to, or -1. A driver without `iovaToPhysPfn` is asked through its bigint
 * op (0 = not mapped).
 */
export function iommuIovaToPhysPfn(_s: CoreState, domain: IommuDomain, iovaPfn: number): number {
  domain.assertLive("iommu_iova_to_phys");
  if (domain.type === IOMMU_DOMAIN_IDENTITY) return iovaPfn;
  if (domain.type === IOMMU_DOMAIN_BLOCKED) return -1;
  const ops = domain.ops;
  if (ops?.iovaToPhysPfn !== undefined) return ops.iovaToPhysPfn(domain, iovaPfn);
  const phys = ops?.iovaToPhys?.(domain, BigInt(iovaPfn) << 12n) ?? 0n;
  return phys === 0n ? -1 : Number(phys >> 12n);
}

/**
 * `iommu_set_fault_handler`: install the legacy per-domain handler; refused (WARN) when the
 * domain's cookie is already used for something else.
 */
export function iommuSetFaultHandler(
  s: CoreState,
  domain: IommuDomain,
  handler: IommuFaultHandler,
  token: unknown,
): void {
  if (
    s.warnOn(
      domain.cookieType !== "NONE",
      "iommu_set_fault_handler",
      `domain ${domain.id} cookie is ${domain.cookieType}`,
    )
  ) {
    return;
  }
  domain.cookieType = "FAULT_HANDLER";
  domain.handler = handler;
  domain.handlerToken = token;
}

/**
 * `report_iommu_fault`: the legacy handler's answer, or ENOSYS without one; always emits the
 * `io_page_fault` tracepoint.
 */
export function reportIommuFault(
  s: CoreState,
  domain: IommuDomain,
  dev: Device,
  iova: bigint,
  flags: number,
): Result {
  let r: Result = err("ENOSYS");
  if (domain.cookieType === "FAULT_HANDLER" && domain.handler !== null) {
    r = domain.handler(domain, dev, iova, flags, domain.handlerToken);
  }
  s.ctx.trace.emit("iommu:io_page_fault", dev.name, {
    device: dev.name,
    driver: dev.driver?.name ?? dev.bus.name,
    iova,
    flags,
  });
  return r;
}
