// iommu_map / iommu_unmap / iommu_iova_to_phys (core §3.5) and the legacy fault report path.
//
// The map/unmap path is hot (the DMA API calls it per mapping): internally it works on page
// numbers in 4 KiB units as plain numbers and allocates nothing. The bigint entry points check
// and convert their arguments once; `iommuMapPfn` / `iommuUnmapPfn` are the BigInt-free forms.

import { SimError } from "../base/errors.js";
import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY } from "./constants.js";
import type { IommuDomain, IommuFaultHandler, IotlbGather } from "./domain.js";
import type { CoreState } from "./state.js";

const TWO32 = 0x1_0000_0000;
const MAX_PFN = 2 ** 52;

/** Trailing zero bits of a positive integer below 2^53. */
function ctz(x: number): number {
  const lo = x >>> 0;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(x / TWO32) >>> 0;
  return 32 + (31 - Math.clz32(hi & -hi));
}

/**
 * `iommu_pgsize` in page-number form: the largest supported page (log2 shift) allowed by the
 * remaining size and the alignment of both addresses, and (into `s.pgsizeCount`) how many such
 * pages to map before a larger page size becomes usable.
 */
function iommuPgsize(
  s: CoreState,
  shifts: readonly number[],
  iovaPfn: number,
  paddrPfn: number,
  sizePages: number,
): number {
  const align =
    iovaPfn === 0 && paddrPfn === 0
      ? Number.POSITIVE_INFINITY
      : Math.min(
          iovaPfn === 0 ? Number.POSITIVE_INFINITY : ctz(iovaPfn),
          paddrPfn === 0 ? Number.POSITIVE_INFINITY : ctz(paddrPfn),
        );
  let idx = -1;
  for (let i = 0; i < shifts.length; i++) {
    const order = shifts[i]! - 12;
    if (2 ** order > sizePages || order > align) break;
    idx = i;
  }
  if (idx < 0) throw new SimError("iommu_pgsize: no suitable page size (BUG_ON)");
  const shift = shifts[idx]!;
  const pages = 2 ** (shift - 12);
  let size = sizePages;
  const next = shifts[idx + 1];
  if (next !== undefined) {
    const m = 2 ** (next - 12);
    // A bigger page is only possible when both addresses sit at the same offset in it.
    if (iovaPfn % m === paddrPfn % m) {
      const offset = m - (iovaPfn % m);
      if (offset + m <= size) size = offset;
    }
  }
  s.pgsizeCount = Math.floor(size / pages);
  return shift;
}

/** The checks iommu_map makes before alignment: null when they pass, else the failure. */
function mapPrecheck(s: CoreState, domain: IommuDomain): Result | null {
  domain.assertLive("iommu_map");
  if (!domain.isPaging()) return err("EINVAL");
  if (
    s.warnOn(
      !domain.ops?.mapPages || domain.pgShifts.length === 0,
      "iommu_map",
      "domain has no map_pages or no page sizes",
    )
  ) {
    return err("ENODEV");
  }
  return null;
}

function checkAddr(x: bigint, what: string): void {
  if (x < 0n || x >= 1n << 64n) throw new SimError(`${what} 0x${x.toString(16)} is not a u64`);
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
  const minPg = 1n << BigInt(domain.pgShifts[0]!);
  if (((iova | paddr | size) & (minPg - 1n)) !== 0n) {
    s.log(
      "err",
      null,
      `unaligned: iova 0x${iova.toString(16)} pa 0x${paddr.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${minPg.toString(16)}`,
    );
    return err("EINVAL");
  }
  return mapAligned(
    s,
    domain,
    Number(iova >> 12n),
    Number(paddr >> 12n),
    Number(size >> 12n),
    prot,
  );
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
  const minPages = 2 ** (domain.pgShifts[0]! - 12);
  if (iovaPfn % minPages !== 0 || paddrPfn % minPages !== 0 || npages % minPages !== 0) {
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
  const sync = ops.iotlbSyncMap?.(domain, iovaPfn, npages) ?? OK;
  if (!sync.ok) {
    iommuUnmapPfn(s, domain, iovaPfn, npages);
    return sync;
  }
  return OK;
}

/** `iommu_unmap`: bytes unmapped (0 for a non-paging domain or a misaligned range). */
export function iommuUnmap(s: CoreState, domain: IommuDomain, iova: bigint, size: bigint): bigint {
  checkAddr(iova, "iova");
  checkAddr(size, "size");
  domain.assertLive("iommu_unmap");
  const minPg = domain.pgShifts.length > 0 ? 1n << BigInt(domain.pgShifts[0]!) : 1n;
  if (((iova | size) & (minPg - 1n)) !== 0n && domain.isPaging() && domain.ops?.unmapPages) {
    s.log(
      "err",
      null,
      `unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${minPg.toString(16)}`,
    );
    s.gather.init();
    domain.ops.iotlbSync?.(domain, s.gather);
    return 0n;
  }
  return BigInt(iommuUnmapPfn(s, domain, Number(iova >> 12n), Number(size >> 12n))) << 12n;
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
  if (
    s.warnOn(
      !ops?.unmapPages || domain.pgShifts.length === 0,
      "__iommu_unmap",
      "domain has no unmap_pages or no page sizes",
    )
  ) {
    return 0;
  }
  const minPages = 2 ** (domain.pgShifts[0]! - 12);
  if (iovaPfn % minPages !== 0 || npages % minPages !== 0) {
    s.log("err", null, "unaligned iommu_unmap");
    return 0;
  }
  let iova = iovaPfn;
  let unmapped = 0;
  // Until `size` is covered or a hole is hit.
  while (unmapped < npages) {
    const shift = iommuPgsize(s, domain.pgShifts, iova, iova, npages - unmapped);
    const n = ops!.unmapPages!(domain, iova, shift, s.pgsizeCount, gather);
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
