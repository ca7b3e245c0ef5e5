// The one typed table of trace events. Keys are `system:name`. The kernel's own tracepoints
// (system `iommu`) keep their names and fields exactly as include/trace/events/iommu.h has them;
// the other systems are the simulator's additions for hardware, core, devices, DMA API and mm.
// Add an event here, next to its siblings, before emitting it.

/** A value a trace field can hold. Addresses and sizes are bigint, like the kernel's u64. */
export type TraceValue = number | bigint | string | boolean | null;

export interface TraceEventMap {
  // ---- kernel tracepoints: include/trace/events/iommu.h (system "iommu") ----
  "iommu:add_device_to_group": { gid: number; device: string };
  "iommu:remove_device_from_group": { gid: number; device: string };
  "iommu:attach_device_to_domain": { device: string };
  "iommu:map": { iova: bigint; paddr: bigint; size: bigint };
  "iommu:unmap": { iova: bigint; size: bigint; unmapped_size: bigint };
  "iommu:io_page_fault": { device: string; driver: string; iova: bigint; flags: number };

  // ---- IOMMU core additions (no kernel tracepoint exists for these) ----
  "iommu_core:domain_alloc": { domain: number; type: string; device: string };
  "iommu_core:domain_free": { domain: number; type: string };
  "iommu_core:group_set_domain": { gid: number; domain: number; result: string };
  "iommu_core:dma_owner": { gid: number; op: string; owner_cnt: number; owner: string | null };
  "iommu_core:attach_device_pasid": {
    device: string;
    pasid: number;
    domain: number;
    result: string;
  };
  "iommu_core:replace_device_pasid": {
    device: string;
    pasid: number;
    domain: number;
    result: string;
  };
  "iommu_core:detach_device_pasid": { device: string; pasid: number; domain: number };
  "iommu_core:pasid_alloc": { pasid: number; device: string };
  "iommu_core:pasid_free": { pasid: number };
  "iommu_core:sva_bind": { device: string; mm: number; pasid: number; result: string };
  "iommu_core:sva_unbind": { device: string; mm: number; pasid: number };
  "iommu_core:iopf_report": {
    device: string;
    pasid: number | null;
    grpid: number;
    addr: bigint;
    perm: number;
    last: boolean;
    result: string;
  };
  "iommu_core:iopf_response": { device: string; pasid: number; grpid: number; code: string };
  "iommu_core:warning": { site: string; message: string };
  /** A kernel log line of the core (dev_err, dev_warn, pr_warn, dev_info). */
  "iommu_core:log": { level: string; device: string | null; message: string };

  // ---- RISC-V IOMMU hardware (system "riscv_iommu"); track = the IOMMU instance ----
  "riscv_iommu:translate": {
    device_id: number;
    pasid: number | null;
    iova: bigint;
    access: string;
    result: string;
    pa: bigint | null;
  };
  "riscv_iommu:iotlb_hit": { gscid: number; pscid: number; iova: bigint };
  "riscv_iommu:iotlb_miss": { gscid: number; pscid: number; iova: bigint };
  "riscv_iommu:walk": { stage: string; levels: number; ptes_read: number; result: string };
  "riscv_iommu:fault_record": {
    cause: number;
    ttyp: number;
    did: number;
    pid: number;
    pv: boolean;
    priv: boolean;
    iotval: bigint;
    iotval2: bigint;
  };
  "riscv_iommu:command": { opcode: string; fields: string; result: string };
  "riscv_iommu:page_request": {
    did: number;
    pid: number | null;
    addr: bigint;
    prgi: number;
    last: boolean;
    r: boolean;
    w: boolean;
    x: boolean;
    priv: boolean;
    result: string;
  };
  "riscv_iommu:page_response": { did: number; pid: number | null; prgi: number; code: number };
  "riscv_iommu:ats_inval": { did: number; pid: number | null; address: bigint; itag: number };
  "riscv_iommu:interrupt": { cause: string; vector: number };

  // ---- PCI Express fabric (system "pci"); track = the host bridge ----
  "pci:route": {
    device: string;
    rid: number;
    addr: bigint;
    kind: string;
    target: string | null;
    via: string | null;
    reason: string | null;
  };
  "pci:hotplug": { op: string; port: string; device: string };

  // ---- devices (system "device"); track = the device ----
  "device:dma": {
    rid: number;
    pasid: number | null;
    iova: bigint;
    size: number;
    dir: string;
    result: string;
  };
  "device:ats_translate": { rid: number; pasid: number | null; iova: bigint; result: string };
  "device:atc_inval": {
    rid: number;
    pasid: number | null;
    iova: bigint;
    size: bigint;
    global: boolean;
    itag: number;
    dropped: number;
  };
  "device:page_request": {
    rid: number;
    pasid: number | null;
    addr: bigint;
    prgi: number;
    r: boolean;
    w: boolean;
  };
  "device:page_response": { rid: number; pasid: number | null; prgi: number; code: string };
  "device:stop_marker": { rid: number; pasid: number };
  "device:descriptor": {
    wq: number;
    opcode: string;
    pasid: number | null;
    status: number;
    bytes: number;
    fault_addr: bigint | null;
  };
  "device:packet": { dir: string; ring_index: number; len: number; result: string };

  // ---- the DMA API (system "dma"); track = the device (flush_queue: the domain) ----
  /** A map call (kind page, sg entry, resource, alloc); iova = DMA_MAPPING_ERROR on failure. */
  "dma:map": {
    device: string;
    kind: string;
    iova: bigint;
    paddr: bigint;
    size: bigint;
    dir: string;
    attrs: number;
  };
  /** An unmap call; mode strict (iotlb_sync), lazy (flush queue) or direct (no IOMMU). */
  "dma:unmap": {
    device: string;
    kind: string;
    iova: bigint;
    size: bigint;
    dir: string;
    attrs: number;
    mode: string;
  };
  /** A flush-queue flush (reason full or timeout): entries freed, still pending, flushes done. */
  "dma:flush_queue": {
    domain: number;
    reason: string;
    entries: number;
    pending: number;
    flush_cnt: number;
  };
  /** A kernel log line of the DMA layer. */
  "dma:log": { level: string; device: string | null; message: string };

  // ---- device drivers (system "driver"); track = the device (vfio_dma: the owner) ----
  /** A kernel log line of a device driver (idxd, the e1000-like nic, vfio, iommufd). */
  "driver:log": { driver: string; level: string; device: string | null; message: string };
  /** A command the idxd driver wrote to CMD and the error code CMDSTS ended with. */
  "driver:idxd_cmd": { device: string; cmd: string; operand: number; status: number };
  /** A user DMA map or unmap of VFIO type1 / iommufd; result "ok" or the errno. */
  "driver:vfio_dma": {
    owner: string;
    op: string;
    iova: bigint;
    size: bigint;
    vaddr: bigint | null;
    result: string;
  };

  // ---- the CPU side (system "mm") ----
  "mm:fault": { mm: number; addr: bigint; flags: string; result: string };
  "mm:invalidate_range": { mm: number; start: bigint; end: bigint };
  "mm:release": { mm: number };
  "mm:mmap": { mm: number; addr: bigint; len: bigint; prot: number; flags: number; result: string };
  "mm:munmap": { mm: number; start: bigint; len: bigint; result: string };
  "mm:mprotect": { mm: number; start: bigint; len: bigint; prot: number; result: string };
  "mm:exit_mmap": { mm: number };
  "mm:mm_free": { mm: number };
  "mm:fork": { parent: number; child: number; result: string };
  "mm:process_exit": { pid: number; comm: string; code: number };
  /** vmap of init_mm: the kernel virtual address, or null when it failed (NULL). */
  "mm:vmap": { addr: bigint | null; pages: number };
  "mm:vunmap": { addr: bigint; pages: number };
  /** The CPUs' flush of a kernel range (no mmu notifier hears it). */
  "mm:flush_tlb_kernel_range": { start: bigint; end: bigint };

  // ---- checks (system "check"); track = the device ----
  /** An isolation-oracle finding (src/check/oracle.ts); pa/expected null when there is none. */
  "check:isolation": {
    kind: string;
    category: string;
    rid: number;
    pasid: number | null;
    iova: bigint;
    access: string;
    pa: bigint | null;
    expected: bigint | null;
  };
}

export type TraceEventName = keyof TraceEventMap;
