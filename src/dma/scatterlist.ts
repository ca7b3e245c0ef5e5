// `struct scatterlist` and `struct sg_table` (include/linux/scatterlist.h), reduced to what the
// DMA API reads and writes: each entry names a page by its physical address, an offset and a
// length (the CPU side), and receives a DMA address and length when the list is mapped (the
// device side). Entries are an array; `sg_next` is the next index. As in the kernel, a mapped list
// may have fewer DMA segments than entries: the first `count` entries carry them, the entry after
// the last has `dmaLength` 0.

import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import { DMA_MAPPING_ERROR } from "./constants.js";

/** `sg->dma_flags` bits (CONFIG_NEED_SG_DMA_FLAGS). */
export const SG_DMA_BUS_ADDRESS = 1 << 0;
export const SG_DMA_SWIOTLB = 1 << 1;

const UINT_MAX = 0xffff_ffff;

export class Scatterlist {
  /** `sg_page`: physical address of the (4 KiB aligned) page. */
  page = 0n;
  /** Byte offset of the buffer from `page` (unsigned int). */
  offset = 0;
  /** Buffer length in bytes (unsigned int). */
  length = 0;
  /** `sg_dma_address`. */
  dmaAddress = DMA_MAPPING_ERROR;
  /** `sg_dma_len`. */
  dmaLength = 0;
  /** `sg->dma_flags`: SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB. */
  dmaFlags = 0;

  toJSON(): Json {
    return {
      page: jsonAddr(this.page),
      offset: this.offset,
      length: this.length,
      dma_address: jsonAddr(this.dmaAddress),
      dma_length: this.dmaLength,
    };
  }
}

/** `sg_phys`: the physical address of the entry's first byte. */
export function sgPhys(sg: Scatterlist): bigint {
  return sg.page + BigInt(sg.offset);
}

/** `sg_init_table`: `nents` empty entries. */
export function sgInitTable(nents: number): Scatterlist[] {
  if (!Number.isInteger(nents) || nents < 1) {
    throw new SimError(`sg_init_table: nents ${nents} is not a positive integer`);
  }
  const sgl: Scatterlist[] = [];
  for (let i = 0; i < nents; i++) sgl.push(new Scatterlist());
  return sgl;
}

/** `sg_set_page`: `len` bytes at `offset` from the page at physical address `page`. */
export function sgSetPage(sg: Scatterlist, page: bigint, len: number, offset: number): void {
  if (page < 0n || (page & 0xfffn) !== 0n) {
    throw new SimError(`sg_set_page: page 0x${page.toString(16)} is not a page address`);
  }
  checkUint(len, "sg_set_page: len");
  checkUint(offset, "sg_set_page: offset");
  sg.page = page;
  sg.length = len;
  sg.offset = offset;
}

/** `sg_set_buf`: the buffer at physical address `paddr` (its page and offset in the page). */
export function sgSetBuf(sg: Scatterlist, paddr: bigint, len: number): void {
  if (paddr < 0n) throw new SimError(`sg_set_buf: negative address ${paddr}`);
  sgSetPage(sg, paddr & ~0xfffn, len, Number(paddr & 0xfffn));
}

/** `struct sg_table`: `nents` is the mapped segment count, `origNents` the entries. */
export class SgTable {
  nents: number;

  constructor(
    readonly sgl: readonly Scatterlist[],
    readonly origNents: number = sgl.length,
  ) {
    if (origNents < 1 || origNents > sgl.length) {
      throw new SimError(`sg_table: ${origNents} entries but a list of ${sgl.length}`);
    }
    this.nents = origNents;
  }

  toJSON(): Json {
    return {
      nents: this.nents,
      orig_nents: this.origNents,
      sgl: this.sgl.slice(0, this.origNents).map((s) => s.toJSON()),
    };
  }
}

/** `sg_alloc_table` then `sg_set_buf` for each `[paddr, len]` buffer. */
export function sgTableFromBuffers(buffers: ReadonlyArray<readonly [bigint, number]>): SgTable {
  const sgl = sgInitTable(buffers.length);
  buffers.forEach(([paddr, len], i) => {
    sgSetBuf(sgl[i]!, paddr, len);
  });
  return new SgTable(sgl);
}

function checkUint(x: number, what: string): void {
  if (!Number.isInteger(x) || x < 0 || x > UINT_MAX) {
    throw new SimError(`${what} ${x} is not an unsigned int`);
  }
}
