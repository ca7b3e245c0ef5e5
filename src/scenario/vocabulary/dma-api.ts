// The DMA API (kernel/dma/mapping.c over dma-iommu and dma-direct; docs/dma-api.md) as a kernel
// driver calls it, and the kernel memory its buffers live in. The simulator has no kernel
// virtual addresses: a buffer's `ptr` is its physical address, which the kernel reaches through
// its direct map (`phys_read`, `phys_write`).

import { SimError } from "../../base/errors.js";
import type { Device } from "../../bus/device.js";
import { devIsPci } from "../../bus/pci-dev.js";
import type { DmaCoherent } from "../../dma/coherent.js";
import {
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WEAK_ORDERING,
  DMA_ATTR_WRITE_COMBINE,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_NONE,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  type Gfp,
} from "../../dma/constants.js";
import { type Scatterlist, SgTable, sgInitTable, sgSetBuf } from "../../dma/scatterlist.js";
import type { Machine } from "../../machine/machine.js";
import {
  PAGE_KERNEL,
  PAGE_KERNEL_EXEC,
  PAGE_KERNEL_READ,
  PAGE_KERNEL_READ_EXEC,
} from "../../mm/pgprot.js";
import { vmap, vmUnmapAliases, vunmap } from "../../mm/vmalloc.js";
import { DEV } from "./kinds.js";
import { ACCESS_SIZE, accessSize, littleEndian } from "./process.js";
import {
  type Args,
  BYTES,
  Bytes,
  COUNT,
  constant,
  enumOf,
  type FunctionSpec,
  flags,
  int,
  object,
  type ParamSpec,
  param,
  returnsResult,
  returnsValue,
  U32,
  U64,
  VOID,
} from "./types.js";

const DIR: ParamSpec = param(
  constant({ DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_NONE }),
  { doc: "enum dma_data_direction" },
);

const ATTRS: ParamSpec = param(
  flags({
    DMA_ATTR_WEAK_ORDERING,
    DMA_ATTR_WRITE_COMBINE,
    DMA_ATTR_NO_KERNEL_MAPPING,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_ATTR_FORCE_CONTIGUOUS,
    DMA_ATTR_ALLOC_SINGLE_PAGES,
    DMA_ATTR_NO_WARN,
    DMA_ATTR_PRIVILEGED,
  }),
  { optional: true, doc: "unsigned long attrs (default 0)" },
);

const GFP: ParamSpec = param(enumOf(["GFP_KERNEL", "GFP_ATOMIC"]), {
  optional: true,
  doc: "gfp_t (default GFP_KERNEL)",
});

const CPU: ParamSpec = param(int(0, 63, "a CPU number"), {
  optional: true,
  doc: "the CPU the call runs on: its IOVA cache and flush-queue ring (default 0)",
});

const SIZE = param(U64, { doc: "size_t size" });

function dirOf(a: unknown): DmaDataDirection {
  return a as DmaDataDirection;
}

/** `__get_free_pages`: 2^order naturally aligned frames, lowest first (0 when none). */
function getFreePages(m: Machine, order: number): bigint {
  const n = 2 ** order;
  const ppn = m.frames.allocContiguous(n, n);
  if (ppn < 0) return 0n;
  for (let i = 0; i < n; i++) m.memory.zeroPage(ppn + i);
  return BigInt(ppn) << 12n;
}

/** An entry of an sg_table (for_each_sg's i). */
const ENTRY: ParamSpec = param(int(0, 1 << 16, "an entry index"), {
  doc: "the entry (for_each_sg's i)",
});

/** The parameters of every streaming unmap: the DMA address and what was mapped. */
const UNMAP_PARAMS = {
  dev: DEV,
  addr: param(U64, { doc: "dma_addr_t" }),
  size: SIZE,
  dir: DIR,
  attrs: ATTRS,
  cpu: CPU,
};

const SGT: ParamSpec = param(object("sg_table"), { doc: "struct sg_table *sgt" });
const SGL: ParamSpec = param(object("sg_table"), {
  doc: "struct scatterlist *sg: the list of an sg_table (sgt->sgl)",
});
const NENTS: ParamSpec = param(int(1, 1 << 16, "an entry count"), {
  doc: "int nents: the entries to map (for unmap: the count given to dma_map_sg, not its result)",
});

/** The optional `attrs` and `cpu` arguments, defaulted. */
function attrsCpu(a: Args): [number, number] {
  return [(a.attrs as number | undefined) ?? 0, (a.cpu as number | undefined) ?? 0];
}

/** The i-th entry of a table; a scenario mistake when out of range. */
function sgEntry(sgt: SgTable, i: number, fn: string): Scatterlist {
  const sg = sgt.sgl[i];
  if (sg === undefined || i >= sgt.origNents) {
    throw new SimError(`${fn}: entry ${i} is past the table's ${sgt.origNents} entries`);
  }
  return sg;
}

export const DMA_API: readonly FunctionSpec<Machine>[] = [
  {
    name: "dma_set_mask_and_coherent",
    area: "dma",
    params: { dev: DEV, mask: param(U64, { doc: "u64 mask, e.g. 0xffffffffffffffff" }) },
    returns: returnsResult("void"),
    ts: "machine.dma.setMaskAndCoherent(dev, mask)",
    doc: "Sets the streaming and coherent DMA masks. EIO when the device has no dma_mask or dma-direct cannot reach memory below the mask.",
    call: (m, a) => m.dma.setMaskAndCoherent(a.dev as Device, a.mask as bigint),
  },
  {
    name: "dma_set_mask",
    area: "dma",
    params: { dev: DEV, mask: param(U64) },
    returns: returnsResult("void"),
    ts: "machine.dma.setMask(dev, mask)",
    doc: "Sets the streaming DMA mask (EIO as dma_set_mask_and_coherent).",
    call: (m, a) => m.dma.setMask(a.dev as Device, a.mask as bigint),
  },
  {
    name: "dma_map_single",
    area: "dma",
    params: {
      dev: DEV,
      ptr: param(U64, { doc: "the buffer (its physical address stands for the kernel pointer)" }),
      size: SIZE,
      dir: DIR,
      attrs: ATTRS,
      cpu: CPU,
    },
    returns: returnsValue(U64),
    ts: "machine.dma.mapSingle(dev, ptr, size, dir, attrs, cpu)",
    doc: "Maps a buffer for DMA: an IOVA from the device's DMA domain mapped with the direction's permissions (dma-iommu), or the physical address (dma-direct). Returns DMA_MAPPING_ERROR (0xffffffffffffffff) on failure: no IOVA space, iommu_map failed, an untrusted device and a partial page, no dma_mask.",
    call: (m, a) =>
      m.dma.mapSingle(
        a.dev as Device,
        a.ptr as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_mapping_error",
    area: "dma",
    params: { dev: DEV, dma_addr: param(U64) },
    returns: returnsResult("void"),
    ts: "machine.dma.mappingError(dev, dma_addr)",
    doc: "ENOMEM for DMA_MAPPING_ERROR, else 0.",
    call: (m, a) => m.dma.mappingError(a.dev as Device, a.dma_addr as bigint),
  },
  {
    name: "dma_unmap_single",
    area: "dma",
    params: UNMAP_PARAMS,
    returns: VOID,
    ts: "machine.dma.unmapSingle(dev, addr, size, dir, attrs, cpu)",
    doc: "Unmaps: the page table is cleared, then strict domains invalidate the IOTLB before the IOVA is freed; lazy (DMA_FQ) domains queue the IOVA until a flush, and the device may still reach the old page until then. WARNs for an address the domain does not know.",
    call: (m, a) =>
      m.dma.unmapSingle(
        a.dev as Device,
        a.addr as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_alloc_coherent",
    area: "dma",
    params: { dev: DEV, size: SIZE, gfp: GFP, cpu: CPU },
    returns: returnsValue(object("dma_coherent")),
    ts: "machine.dma.allocCoherent(dev, size, gfp, cpu)",
    doc: "A coherent buffer: zeroed pages mapped for the device; bind it with as: (its .dma_handle and .cpu_addr are numbers), null when it cannot be had.",
    call: (m, a) =>
      m.dma.allocCoherent(
        a.dev as Device,
        a.size as bigint,
        ((a.gfp as string | undefined) ?? "GFP_KERNEL") as Gfp,
        (a.cpu as number | undefined) ?? 0,
      ),
  },
  {
    name: "dma_free_coherent",
    area: "dma",
    params: {
      dev: DEV,
      size: SIZE,
      cpu_addr: param(object("dma_coherent"), { nullable: true, doc: "the allocation" }),
      dma_handle: param(U64),
      cpu: CPU,
    },
    returns: VOID,
    ts: "machine.dma.freeCoherent(dev, size, cpu_addr, dma_handle, cpu)",
    doc: "Unmaps (strict or lazy, as dma_unmap_single) and frees a coherent buffer; null does nothing.",
    call: (m, a) =>
      m.dma.freeCoherent(
        a.dev as Device,
        a.size as bigint,
        a.cpu_addr as DmaCoherent | null,
        a.dma_handle as bigint,
        (a.cpu as number | undefined) ?? 0,
      ),
  },
  {
    name: "dma_map_page",
    area: "dma",
    params: {
      dev: DEV,
      page: param(U64, { doc: "struct page *page: the page's physical address" }),
      offset: param(U64, { doc: "size_t offset into the page" }),
      size: SIZE,
      dir: DIR,
      attrs: ATTRS,
      cpu: CPU,
    },
    returns: returnsValue(U64),
    ts: "machine.dma.mapPage(dev, page, offset, size, dir, attrs, cpu)",
    doc: "dma_map_page_attrs: as dma_map_single, for a page and an offset into it.",
    call: (m, a) =>
      m.dma.mapPage(
        a.dev as Device,
        a.page as bigint,
        a.offset as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_unmap_page",
    area: "dma",
    params: UNMAP_PARAMS,
    returns: VOID,
    ts: "machine.dma.unmapPage(dev, addr, size, dir, attrs, cpu)",
    doc: "dma_unmap_page_attrs: as dma_unmap_single.",
    call: (m, a) =>
      m.dma.unmapPage(
        a.dev as Device,
        a.addr as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "pci_resource_start",
    area: "dma",
    params: {
      dev: DEV,
      bar: param(int(0, 5, "a BAR number 0..5"), { optional: true, doc: "default 0" }),
    },
    returns: returnsValue(U64),
    ts: "fn.barAddress(bar)",
    doc: "The physical address of a PCI function's memory BAR as programmed (e.g. for dma_map_resource of a peer's registers).",
    call: (_m, a) => {
      const dev = a.dev as Device;
      if (!devIsPci(dev)) throw new SimError(`pci_resource_start: ${dev.name} is not a PCI device`);
      return dev.fn.barAddress((a.bar as number | undefined) ?? 0);
    },
  },
  {
    name: "dma_map_resource",
    area: "dma",
    params: {
      dev: DEV,
      phys_addr: param(U64, { doc: "phys_addr_t: an MMIO range, e.g. a peer device's BAR" }),
      size: SIZE,
      dir: DIR,
      attrs: ATTRS,
      cpu: CPU,
    },
    returns: returnsValue(U64),
    ts: "machine.dma.mapResource(dev, phys_addr, size, dir, attrs, cpu)",
    doc: "Maps an MMIO range for peer-to-peer DMA (IOMMU_MMIO, never bounced); DMA_MAPPING_ERROR on failure.",
    call: (m, a) =>
      m.dma.mapResource(
        a.dev as Device,
        a.phys_addr as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_unmap_resource",
    area: "dma",
    params: UNMAP_PARAMS,
    returns: VOID,
    ts: "machine.dma.unmapResource(dev, addr, size, dir, attrs, cpu)",
    doc: "Unmaps what dma_map_resource mapped.",
    call: (m, a) =>
      m.dma.unmapResource(
        a.dev as Device,
        a.addr as bigint,
        a.size as bigint,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_set_max_seg_size",
    area: "dma",
    params: { dev: DEV, size: param(U32, { doc: "unsigned int size" }) },
    returns: VOID,
    ts: "machine.dma.setMaxSegSize(dev, size)",
    doc: "The longest DMA segment dma_map_sg may build (default 64 KiB); WARNs without dma_parms.",
    call: (m, a) => m.dma.setMaxSegSize(a.dev as Device, a.size as number),
  },
  {
    name: "dma_set_seg_boundary",
    area: "dma",
    params: { dev: DEV, mask: param(U64, { doc: "unsigned long mask, 2^n - 1" }) },
    returns: VOID,
    ts: "machine.dma.setSegBoundary(dev, mask)",
    doc: "The boundary no DMA segment may cross (default 4 GiB); WARNs without dma_parms.",
    call: (m, a) => m.dma.setSegBoundary(a.dev as Device, a.mask as bigint),
  },
  {
    name: "sg_alloc_table",
    area: "dma",
    params: { nents: NENTS },
    returns: returnsValue(object("sg_table")),
    ts: "new SgTable(sgInitTable(nents))",
    doc: "An sg_table of nents empty entries; bind it with as: and fill it with sg_set_buf.",
    call: (_m, a) => new SgTable(sgInitTable(a.nents as number)),
  },
  {
    name: "sg_set_buf",
    area: "dma",
    params: {
      sgt: SGT,
      i: ENTRY,
      buf: param(U64, { doc: "the buffer (its physical address stands for the kernel pointer)" }),
      buflen: param(U32, { doc: "unsigned int buflen" }),
    },
    returns: VOID,
    ts: "sgSetBuf(sgt.sgl[i], buf, buflen)",
    doc: "Points entry i at a buffer: its page and the offset in that page, and its length.",
    call: (_m, a) =>
      sgSetBuf(
        sgEntry(a.sgt as SgTable, a.i as number, "sg_set_buf"),
        a.buf as bigint,
        a.buflen as number,
      ),
  },
  {
    name: "dma_map_sgtable",
    area: "dma",
    params: { dev: DEV, sgt: SGT, dir: DIR, attrs: ATTRS, cpu: CPU },
    returns: returnsResult("void"),
    ts: "machine.dma.mapSgtable(dev, sgt, dir, attrs, cpu)",
    doc: "Maps every entry; sets sgt.nents to the DMA segment count (dma-iommu maps the list as one IOVA range, so segments merge up to the maximum segment size without crossing the segment boundary). EINVAL, ENOMEM or EIO.",
    call: (m, a) =>
      m.dma.mapSgtable(a.dev as Device, a.sgt as SgTable, dirOf(a.dir), ...attrsCpu(a)),
  },
  {
    name: "dma_unmap_sgtable",
    area: "dma",
    params: { dev: DEV, sgt: SGT, dir: DIR, attrs: ATTRS, cpu: CPU },
    returns: VOID,
    ts: "machine.dma.unmapSgtable(dev, sgt, dir, attrs, cpu)",
    doc: "Unmaps what dma_map_sgtable mapped (strict or lazy, as dma_unmap_single).",
    call: (m, a) =>
      m.dma.unmapSgtable(a.dev as Device, a.sgt as SgTable, dirOf(a.dir), ...attrsCpu(a)),
  },
  {
    name: "dma_map_sg",
    area: "dma",
    params: { dev: DEV, sg: SGL, nents: NENTS, dir: DIR, attrs: ATTRS, cpu: CPU },
    returns: returnsValue(COUNT),
    ts: "machine.dma.mapSg(dev, sgt.sgl, nents, dir, attrs, cpu)",
    doc: "dma_map_sg_attrs: the DMA segment count (at most nents), 0 on failure.",
    call: (m, a) =>
      m.dma.mapSg(
        a.dev as Device,
        (a.sg as SgTable).sgl,
        a.nents as number,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "dma_unmap_sg",
    area: "dma",
    params: { dev: DEV, sg: SGL, nents: NENTS, dir: DIR, attrs: ATTRS, cpu: CPU },
    returns: VOID,
    ts: "machine.dma.unmapSg(dev, sgt.sgl, nents, dir, attrs, cpu)",
    doc: "dma_unmap_sg_attrs: nents is the count given to dma_map_sg, not the one it returned.",
    call: (m, a) =>
      m.dma.unmapSg(
        a.dev as Device,
        (a.sg as SgTable).sgl,
        a.nents as number,
        dirOf(a.dir),
        ...attrsCpu(a),
      ),
  },
  {
    name: "sg_dma_address",
    area: "dma",
    params: { sgt: SGT, i: ENTRY },
    returns: returnsValue(U64),
    ts: "sgt.sgl[i].dmaAddress",
    doc: "The DMA address of segment i (valid for i < sgt.nents after mapping).",
    call: (_m, a) => sgEntry(a.sgt as SgTable, a.i as number, "sg_dma_address").dmaAddress,
  },
  {
    name: "sg_dma_len",
    area: "dma",
    params: { sgt: SGT, i: ENTRY },
    returns: returnsValue(U32),
    ts: "sgt.sgl[i].dmaLength",
    doc: "The length of DMA segment i (0 past the last segment).",
    call: (_m, a) => sgEntry(a.sgt as SgTable, a.i as number, "sg_dma_len").dmaLength,
  },
  {
    name: "__get_free_pages",
    area: "dma",
    params: {
      gfp_mask: GFP,
      order: param(int(0, 10, "an order 0..10"), {
        optional: true,
        doc: "2^order pages (default 0)",
      }),
    },
    returns: returnsValue(U64),
    ts: "machine.frames.allocContiguous(1 << order)",
    doc: "Kernel memory: 2^order zeroed, naturally aligned pages; their (physical) address, 0 when none are free.",
    call: (m, a) => getFreePages(m, (a.order as number | undefined) ?? 0),
  },
  {
    name: "free_pages",
    area: "dma",
    params: {
      addr: param(U64),
      order: param(int(0, 10, "an order 0..10"), { optional: true, doc: "default 0" }),
    },
    returns: VOID,
    ts: "machine.frames.free(addr >> 12, 1 << order)",
    doc: "Gives kernel pages back (a device may still reach them through a stale mapping).",
    call: (m, a) => {
      const addr = a.addr as bigint;
      if ((addr & 0xfffn) !== 0n)
        throw new SimError(`free_pages: 0x${addr.toString(16)} is not a page address`);
      m.frames.free(Number(addr >> 12n), 2 ** ((a.order as number | undefined) ?? 0));
    },
  },
  {
    name: "vmap",
    area: "dma",
    params: {
      pages: param(U64, { doc: "physical address of the first page (the pages follow it)" }),
      count: param(int(1, 1 << 16, "a page count"), { doc: "unsigned int count" }),
      prot: param(
        constant({ PAGE_KERNEL, PAGE_KERNEL_READ, PAGE_KERNEL_EXEC, PAGE_KERNEL_READ_EXEC }),
        { optional: true, doc: "pgprot_t (default PAGE_KERNEL)" },
      ),
    },
    returns: returnsValue(U64),
    ts: "vmap(machine.mm, pfns, prot)",
    doc: "Maps kernel pages at a new address of init_mm's vmalloc area (supervisor, global PTEs) and returns it (bind it with as:), or 0 (NULL).",
    call: (m, a) => {
      const first = Number((a.pages as bigint) >> 12n);
      const pfns = Array.from({ length: a.count as number }, (_, i) => first + i);
      return vmap(m.mm, pfns, (a.prot as number | undefined) ?? PAGE_KERNEL) ?? 0n;
    },
  },
  {
    name: "vunmap",
    area: "dma",
    params: { addr: param(U64, { doc: "const void *addr" }) },
    returns: VOID,
    ts: "vunmap(machine.mm, addr)",
    doc: "Unmaps a vmap area: its PTEs go at once, the CPU TLB flush (flush_tlb_kernel_range) lazily — and no mmu notifier ever hears of it, so an IOMMU walking init_mm keeps what it cached. WARNs for an address in no area.",
    call: (m, a) => vunmap(m.mm, a.addr as bigint),
  },
  {
    name: "vm_unmap_aliases",
    area: "dma",
    params: {},
    returns: VOID,
    ts: "vmUnmapAliases(machine.mm)",
    doc: "Purges the lazily freed vmap areas now: one flush_tlb_kernel_range (CPUs only).",
    call: (m) => vmUnmapAliases(m.mm),
  },
  {
    name: "phys_write",
    area: "dma",
    params: {
      addr: param(U64, { doc: "physical address (the kernel's direct map)" }),
      data: param(BYTES),
    },
    returns: VOID,
    ts: "machine.memory.writeBytes(addr, data)",
    doc: "The kernel writes memory through its direct map.",
    call: (m, a) => m.memory.writeBytes(a.addr as bigint, (a.data as Bytes).data),
  },
  {
    name: "phys_store",
    area: "dma",
    params: {
      addr: param(U64),
      value: param(U64),
      size: ACCESS_SIZE,
    },
    returns: VOID,
    ts: "machine.memory.writeBytes(addr, littleEndian(value, size))",
    doc: "The kernel stores a little-endian value through its direct map (a descriptor's address field, …).",
    call: (m, a) =>
      m.memory.writeBytes(a.addr as bigint, littleEndian(a.value as bigint, accessSize(a.size))),
  },
  {
    name: "phys_read",
    area: "dma",
    params: { addr: param(U64), len: param(int(1, 1 << 24, "a length in bytes")) },
    returns: returnsValue(BYTES),
    ts: "machine.memory.readBytes(addr, len)",
    doc: "The kernel reads memory through its direct map.",
    call: (m, a) => new Bytes(m.memory.readBytes(a.addr as bigint, a.len as number)),
  },
];
