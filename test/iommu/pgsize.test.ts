// The page-size splitting of iommu_map / iommu_unmap (`iommu_pgsize`) against a reference: a
// direct BigInt transcription of the kernel's loop (drivers/iommu/iommu.c), compared call by
// call over random page-size bitmaps, addresses and sizes up to the 64-bit limits.

import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { OK } from "../../src/base/result.js";
import { IOMMU_DOMAIN_UNMANAGED, IOMMU_READ } from "../../src/iommu/constants.js";
import { IommuDomain, IotlbGather } from "../../src/iommu/domain.js";
import { bed } from "./setup.js";

const PAGE = 12n;

/** `GENMASK(h, 0)`. */
function genmask(h: bigint): bigint {
  return (1n << (h + 1n)) - 1n;
}

/** `__fls(x)`: index of the highest set bit (x > 0). */
function fls(x: bigint): bigint {
  return BigInt(x.toString(2).length - 1);
}

/** `__ffs(x)`: index of the lowest set bit (x > 0). */
function ffs(x: bigint): bigint {
  return fls(x & -x);
}

/** The kernel's `iommu_pgsize(domain, iova, paddr, size, &count)`, in bytes: [pgsize log2, count]. */
function refPgsize(bitmap: bigint, iova: bigint, paddr: bigint, size: bigint): [bigint, bigint] {
  const addrMerge = iova | paddr;
  let pgsizes = bitmap & genmask(fls(size));
  if (addrMerge !== 0n) pgsizes &= genmask(ffs(addrMerge));
  if (pgsizes === 0n) throw new Error("BUG_ON(!pgsizes)");
  const idx = fls(pgsizes);
  const bigger = bitmap & ~genmask(idx);
  if (bigger !== 0n) {
    const next = 1n << ffs(bigger);
    if (((iova ^ paddr) & (next - 1n)) === 0n) {
      const offset = next - (addrMerge & (next - 1n));
      if (offset + next <= size) size = offset;
    }
  }
  return [idx, size >> idx];
}

/** `iommu_map`'s loop: the `map_pages` calls as "iovaPfn paddrPfn shift count". */
function refMapCalls(bitmap: bigint, iova: bigint, paddr: bigint, size: bigint): string[] {
  const calls: string[] = [];
  while (size > 0n) {
    const [shift, count] = refPgsize(bitmap, iova, paddr, size);
    calls.push(`${iova >> PAGE} ${paddr >> PAGE} ${shift} ${count}`);
    const mapped = count << shift;
    iova += mapped;
    paddr += mapped;
    size -= mapped;
  }
  return calls;
}

/** `__iommu_unmap`'s loop (no holes): the `unmap_pages` calls as "iovaPfn shift count". */
function refUnmapCalls(bitmap: bigint, iova: bigint, size: bigint): string[] {
  const calls: string[] = [];
  while (size > 0n) {
    const [shift, count] = refPgsize(bitmap, iova, iova, size);
    calls.push(`${iova >> PAGE} ${shift} ${count}`);
    iova += count << shift;
    size -= count << shift;
  }
  return calls;
}

/** A paging domain whose ops only record the calls the core makes (every page "maps"). */
function recordingDomain(bitmap: bigint) {
  const calls: string[] = [];
  const domain = new IommuDomain({
    type: IOMMU_DOMAIN_UNMANAGED,
    pgsizeBitmap: bitmap,
    ops: {
      mapPages: (_d, iova, paddr, shift, count, _prot, out) => {
        calls.push(`${iova} ${paddr} ${shift} ${count}`);
        out.mappedPages += count * 2 ** (shift - 12);
        return OK;
      },
      unmapPages: (_d, iova, shift, count) => {
        calls.push(`${iova} ${shift} ${count}`);
        return count * 2 ** (shift - 12);
      },
    },
  });
  return { domain, calls };
}

const MAX_PFN = 1n << 52n;

/**
 * A page size bitmap (bits 12..63) and an iova, paddr and size (4 KiB page numbers) aligned to
 * its smallest page, the ranges ending at or below 2^64 and the size below it. Addresses are drawn with a random
 * alignment, often a shared offset, so every branch of the splitter is taken.
 */
const mapCase = fc
  .record({
    bits: fc.uniqueArray(fc.integer({ min: 12, max: 63 }), { minLength: 1, maxLength: 6 }),
    iova: fc.bigInt({ min: 0n, max: MAX_PFN - 1n }),
    paddr: fc.bigInt({ min: 0n, max: MAX_PFN - 1n }),
    iovaAlign: fc.integer({ min: 0, max: 52 }),
    paddrAlign: fc.integer({ min: 0, max: 52 }),
    sameOffset: fc.boolean(),
    size: fc.oneof(
      fc.bigInt({ min: 1n, max: 5000n }),
      fc.bigInt({ min: 1n, max: 1n << 30n }),
      fc.bigInt({ min: 1n, max: MAX_PFN }),
    ),
  })
  .map((c) => {
    const bitmap = c.bits.reduce((a, b) => a | (1n << BigInt(b)), 0n);
    const minOrder = BigInt(Math.min(...c.bits) - 12);
    const align = (x: bigint, order: bigint) => (x >> order) << order;
    const iova = align(c.iova, BigInt(Math.max(c.iovaAlign, Number(minOrder))));
    let paddr = align(c.paddr, BigInt(Math.max(c.paddrAlign, Number(minOrder))));
    if (c.sameOffset) paddr = (paddr & ~genmask(40n)) | (iova & genmask(40n));
    // Room up to 2^64, less a page: a size_t cannot say 2^64 bytes.
    let room = MAX_PFN - (iova > paddr ? iova : paddr);
    if (room === MAX_PFN) room = MAX_PFN - 1n;
    let size = align(c.size > room ? room : c.size, minOrder);
    if (size === 0n) size = 1n << minOrder;
    return { bitmap, iova, paddr, size, fits: iova + size <= MAX_PFN && paddr + size <= MAX_PFN };
  })
  .filter((c) => c.fits);

describe("iommu_pgsize: the map/unmap splitter against the kernel's loop", () => {
  test.prop([mapCase], { numRuns: 600 })(
    "map_pages and unmap_pages calls equal the reference, page-number and byte forms",
    ({ bitmap, iova, paddr, size }) => {
      const b = bed();
      const { domain, calls } = recordingDomain(bitmap);
      const expected = refMapCalls(bitmap, iova << PAGE, paddr << PAGE, size << PAGE);
      expect(b.core.mapPfn(domain, Number(iova), Number(paddr), Number(size), IOMMU_READ)).toBe(OK);
      expect(calls.splice(0)).toEqual(expected);
      expect(b.core.map(domain, iova << PAGE, paddr << PAGE, size << PAGE, IOMMU_READ)).toBe(OK);
      expect(calls.splice(0)).toEqual(expected);
      const unmapExpected = refUnmapCalls(bitmap, iova << PAGE, size << PAGE);
      expect(b.core.unmapPfn(domain, Number(iova), Number(size))).toBe(Number(size));
      expect(calls.splice(0)).toEqual(unmapExpected);
      expect(b.core.unmap(domain, iova << PAGE, size << PAGE)).toBe(size << PAGE);
      expect(calls.splice(0)).toEqual(unmapExpected);
      const gather = new IotlbGather();
      expect(b.core.unmapFastPfn(domain, Number(iova), Number(size), gather)).toBe(Number(size));
      expect(calls.splice(0)).toEqual(unmapExpected);
    },
  );
});
