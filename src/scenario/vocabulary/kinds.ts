// The objects a scenario names, and the parameter types shared by the vocabulary tables.
// Devices, buses and IOMMU instances are named by the machine; domains, groups got from
// `iommu_group_get`, processes, SVA bonds … are named by `as:`; attach handles and DMA-owner
// cookies are caller-allocated in the kernel, so a new name simply creates one. Some kinds stand
// in for another: a device's name means its group, a process's name its mm.

import type { DmaCoherent } from "../../dma/coherent.js";
import type { SgTable } from "../../dma/scatterlist.js";
import { IOMMU_CAP } from "../../iommu/constants.js";
import { IommuAttachHandle } from "../../iommu/domain.js";
import { IoasidSet } from "../../iommu/ioasid.js";
import type { IommuSva } from "../../iommu/sva.js";
import type { Machine, MachineIommu } from "../../machine/machine.js";
import type { Process } from "../../mm/process.js";
import { ResolveError } from "../values.js";
import type { IdxdFile, IoasRef } from "./driver-objects.js";
import {
  constant,
  enumOf,
  flags,
  type ObjectKindSpec,
  object,
  type ParamSpec,
  param,
} from "./types.js";

export const KINDS: Readonly<Record<string, ObjectKindSpec<Machine>>> = {
  device: {
    doc: "a device: its name in the machine description (PCI functions and bridges included), or a binding",
    lookup: (m, name) => m.device(name),
  },
  device_name: {
    label: "device",
    doc: "a described device, present or not (for machine actions such as hot_add)",
    lookup: (m, name) => (m.description.devices.some((d) => d.name === name) ? name : undefined),
  },
  group: {
    doc: "an IOMMU group: a device's name means that device's group; or a binding (iommu_group_get)",
    via: {
      kind: "device",
      map: (m, dev) => {
        const g = m.core.groupOf(dev as Parameters<Machine["core"]["groupOf"]>[0]);
        if (g === null)
          throw new ResolveError(`device ${(dev as { name: string }).name} has no IOMMU group`);
        return g;
      },
    },
  },
  domain: {
    doc: "an IOMMU domain, bound with as: (e.g. from iommu_paging_domain_alloc); an SVA bond's name means its domain",
    via: {
      kind: "sva",
      map: (_m, bond) => {
        const d = (bond as IommuSva).domain;
        if (d === null)
          throw new ResolveError(`SVA bond ${(bond as IommuSva).label} has no domain`);
        return d;
      },
    },
  },
  handle: {
    doc: "an attach handle (caller-allocated: a new name creates a fresh handle)",
    create: (_m, name) => new IommuAttachHandle(name),
  },
  owner: {
    doc: "a DMA-owner cookie (a new name creates one; equal names are the same owner)",
    create: (_m, name) => name,
  },
  ioasid_set: {
    label: "IOASID set",
    doc: "an ioasid_set (a new name creates one; equal names are the same set)",
    create: (_m, name) => new IoasidSet(name),
  },
  pasid_consumer: {
    label: "PASID consumer",
    doc: "a PASID consumer of seed 002, bound with as: from iommu_pasid_init",
  },
  bus: {
    doc: "a bus type: platform or pci",
    lookup: (m, name) => m.model.bus(name),
  },
  iommu: {
    doc: "an IOMMU instance, by its name in the machine description",
    lookup: (m, name) => m.iommu(name),
  },
  process: {
    doc: "a process (task), bound with as: from spawn or fork",
  },
  mm: {
    label: "address space",
    doc: "an address space (mm_struct): a process's name means its mm; or a binding (get_task_mm)",
    via: {
      kind: "process",
      map: (_m, task) => {
        const p = task as Process;
        if (p.mm === null) throw new ResolveError(`pid ${p.pid} (${p.comm}) has no mm: it exited`);
        return p.mm;
      },
    },
  },
  sva: {
    label: "SVA bond",
    doc: "an SVA bond (struct iommu_sva), bound with as: from iommu_sva_bind_device",
  },
  dma_coherent: {
    label: "coherent DMA buffer",
    doc: "a coherent DMA buffer, bound with as: from dma_alloc_coherent; its .dma_handle and .cpu_addr (physical address of its first byte; pages are contiguous with GFP_ATOMIC or a single page) are numbers",
    fields: {
      dma_handle: (b) => (b as DmaCoherent).dmaHandle,
      cpu_addr: (b) => (b as DmaCoherent).phys(0n),
    },
  },
  sg_table: {
    label: "scatter-gather table",
    doc: "an sg_table, bound with as: from sg_alloc_table; its .nents (DMA segments once mapped) and .orig_nents are numbers",
    fields: {
      nents: (t) => (t as SgTable).nents,
      orig_nents: (t) => (t as SgTable).origNents,
    },
  },
  idxd_file: {
    label: "idxd WQ file",
    doc: "an open file of an idxd user WQ, bound with as: from idxd_cdev_open; its .fd and .pasid (the process's PASID) are numbers",
    fields: {
      fd: (f) => (f as IdxdFile).fd,
      pasid: (f) => (f as IdxdFile).ctx.pasid,
    },
  },
  vfio_container: {
    label: "VFIO container",
    doc: "a VFIO container (/dev/vfio/vfio), bound with as: from vfio_fops_open",
  },
  iommufd: {
    label: "iommufd context",
    doc: "an iommufd context (/dev/iommu), bound with as: from iommufd_fops_open",
  },
  ioas: {
    label: "IOAS",
    doc: "an iommufd I/O address space, bound with as: from iommufd_ioas_alloc_ioctl; its .id is a number",
    fields: { id: (r) => (r as IoasRef).ioas.id },
  },
  iopf_queue: {
    label: "IOPF queue",
    doc: "an IOPF queue: an IOMMU's name means the queue its driver allocated; or a binding (iopf_queue_alloc)",
    via: {
      kind: "iommu",
      map: (_m, iommu) => {
        const i = iommu as MachineIommu;
        const q = i.riscv?.iommu.iopfQueue ?? i.mock?.iopfQueue ?? null;
        if (q === null) throw new ResolveError(`IOMMU ${i.name} has no IOPF queue`);
        return q;
      },
    },
  },
};

// ---- shared parameter specs ----

export const DEV: ParamSpec = param(object("device"), { doc: "struct device *dev" });
export const GROUP: ParamSpec = param(object("group"), { doc: "struct iommu_group *group" });
export const DOMAIN: ParamSpec = param(object("domain"), { doc: "struct iommu_domain *domain" });
export const HANDLE: ParamSpec = param(object("handle"), {
  nullable: true,
  doc: "struct iommu_attach_handle *handle (null allowed)",
});

export const MM: ParamSpec = param(object("mm"), { doc: "struct mm_struct *mm" });

/** Seed 004's `enum iommu_dma_owner` (the typed owners of the Dec 2021 series). */
export const DMA_OWNER_TYPE = enumOf([
  "DMA_OWNER_DMA_API",
  "DMA_OWNER_PRIVATE_DOMAIN",
  "DMA_OWNER_PRIVATE_DOMAIN_USER",
]);

/** Domain types by their kernel constant names; 0 means "any" / "no preference". */
export const DOMAIN_TYPE = constant({
  IOMMU_DOMAIN_BLOCKED: 0,
  IOMMU_DOMAIN_IDENTITY: 4,
  IOMMU_DOMAIN_UNMANAGED: 1,
  IOMMU_DOMAIN_DMA: 3,
  IOMMU_DOMAIN_DMA_FQ: 11,
  IOMMU_DOMAIN_SVA: 16,
  IOMMU_DOMAIN_PLATFORM: 32,
  IOMMU_DOMAIN_NESTED: 64,
});

/** `enum iommufd_hwpt_alloc_flags`. */
export const HWPT_ALLOC_FLAGS = flags({
  IOMMU_HWPT_ALLOC_NEST_PARENT: 1 << 0,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING: 1 << 1,
  IOMMU_HWPT_ALLOC_PASID: 1 << 3,
});

/** Mapping protection bits. */
export const PROT = flags({
  IOMMU_READ: 1 << 0,
  IOMMU_WRITE: 1 << 1,
  IOMMU_CACHE: 1 << 2,
  IOMMU_NOEXEC: 1 << 3,
  IOMMU_MMIO: 1 << 4,
  IOMMU_PRIV: 1 << 5,
});

/** `enum iommu_cap`. */
export const CAP = constant({
  IOMMU_CAP_CACHE_COHERENCY: IOMMU_CAP.CACHE_COHERENCY,
  IOMMU_CAP_NOEXEC: IOMMU_CAP.NOEXEC,
  IOMMU_CAP_PRE_BOOT_PROTECTION: IOMMU_CAP.PRE_BOOT_PROTECTION,
  IOMMU_CAP_ENFORCE_CACHE_COHERENCY: IOMMU_CAP.ENFORCE_CACHE_COHERENCY,
  IOMMU_CAP_DEFERRED_FLUSH: IOMMU_CAP.DEFERRED_FLUSH,
  IOMMU_CAP_DIRTY_TRACKING: IOMMU_CAP.DIRTY_TRACKING,
});

/** `ioasid_t`: any 32-bit value, IOMMU_PASID_INVALID (0xffffffff) included. */
export const PASID: ParamSpec = param(
  { kind: "int", min: 0, max: 0xffff_ffff, what: "a PASID (0..0xffffffff)" },
  { doc: "ioasid_t pasid" },
);
