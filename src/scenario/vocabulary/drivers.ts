// The device drivers as their users drive them (docs/device-drivers.md): a process opening an
// idxd user WQ and submitting work with ENQCMD under its PASID, a dmaengine client's kernel
// memcpy through idxd's system PASID, the NIC's transmit and NAPI poll, and user space handing a
// device to VFIO — the group path (group file, container, type1 maps) and the iommufd device
// path (cdev, bind, IOAS maps, attach). Names are the kernel functions the system calls end in.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, ok } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import type { DsaCompletionRecord } from "../../drivers/dsa/dsa-desc.js";
import { idxdCdevOpen } from "../../drivers/dsa/idxd-cdev.js";
import type { IdxdDevice } from "../../drivers/dsa/idxd-device.js";
import { idxdDmaMemcpy } from "../../drivers/dsa/idxd-kernel.js";
import type { NicAdapter } from "../../drivers/nic/e1000.js";
import type { VfioDevice } from "../../drivers/vfio/device.js";
import {
  VFIO_TYPE1v2_IOMMU,
  type VfioContainer,
  type VfioGroup,
} from "../../drivers/vfio/group.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IommufdCtx,
} from "../../drivers/vfio/iommufd.js";
import { VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE } from "../../drivers/vfio/type1.js";
import { NicDevice } from "../../hw/endpoints/nic.js";
import type { IommuGroup } from "../../iommu/group.js";
import { describedName, type Machine } from "../../machine/machine.js";
import type { Process } from "../../mm/process.js";
import { DMA_DRIVERS } from "./device-dma.js";
import { IdxdFile, IoasRef } from "./driver-objects.js";
import {
  awaitCompletion,
  completionView,
  DESC_FIELDS,
  descriptor,
  OPCODE,
  taskRecord,
  WAIT,
} from "./dsa.js";
import { DEV, GROUP } from "./kinds.js";
import { CPU_FAULTS, cpuFailure, liveTask, TASK } from "./process.js";
import {
  BOOL,
  BYTES,
  type Bytes,
  constant,
  enumOf,
  type FunctionSpec,
  failure,
  flags,
  int,
  JSON_VALUE,
  object,
  param,
  returnsOrFails,
  returnsResult,
  returnsValue,
  U64,
  VOID,
} from "./types.js";

// ---------------------------------------------------------------- lookups

/** The idxd state of a device the idxd driver drives. */
function idxdOf(m: Machine, dev: Device): IdxdDevice {
  const idxd = m.deviceDrivers.idxd.idxdOf(dev);
  if (idxd === undefined) throw new SimError(`the idxd driver does not drive ${dev.name}`);
  return idxd;
}

function adapterOf(m: Machine, dev: Device): NicAdapter {
  const a = m.deviceDrivers.nic.adapterOf(dev);
  if (a === undefined) throw new SimError(`the nic driver does not drive ${dev.name}`);
  return a;
}

function vfioGroupOf(m: Machine, group: IommuGroup): VfioGroup {
  const g = m.deviceDrivers.vfio.group(group);
  if (g === undefined) throw new SimError(`IOMMU group ${group.id} has no vfio-pci device`);
  return g;
}

function vfioDeviceOf(m: Machine, dev: Device): VfioDevice {
  const d = m.deviceDrivers.vfio.device(dev);
  if (d === undefined) throw new SimError(`vfio-pci is not bound to ${dev.name}`);
  return d;
}

/** Context names per machine: deterministic, in open order. */
const iommufdCount = new WeakMap<Machine, number>();

function recordJSON(cr: DsaCompletionRecord): Json {
  const b = new Uint8Array(32);
  b[0] = cr.status;
  b[1] = cr.result;
  const dv = new DataView(b.buffer);
  dv.setUint32(4, cr.bytesCompleted, true);
  dv.setBigUint64(8, cr.faultAddr, true);
  return completionView(b);
}

// ---------------------------------------------------------------- parameters

const FILE = param(object("idxd_file"), { doc: "the open WQ file (from idxd_cdev_open)" });
const CONTAINER = param(object("vfio_container"), {
  doc: "the container (from vfio_fops_open)",
});
const IOAS = param(object("ioas"), { doc: "the IOAS (from iommufd_ioas_alloc_ioctl)" });
const ICTX = param(object("iommufd"), { doc: "the iommufd context (from iommufd_fops_open)" });
const MAPPER = param(object("process"), {
  doc: "the process whose memory is mapped (the caller)",
});

const TYPE1_FLAGS = flags({
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
});
const IOAS_FLAGS = flags({
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_MAP_READABLE,
});

const ENQCMD_FAILURES = {
  what: "retry (the shared WQ refused the descriptor) or the signal writing or reading the descriptor",
  codes: ["retry", ...CPU_FAULTS.codes],
} as const;

// ---------------------------------------------------------------- idxd

const IDXD: readonly FunctionSpec<Machine>[] = [
  {
    name: "idxd_cdev_open",
    area: "drivers",
    params: {
      dev: DEV,
      task: TASK,
      wq: param(int(0, 15, "a work queue index (0..15)"), {
        optional: true,
        doc: "the WQ (default: the first enabled user WQ)",
      }),
    },
    returns: returnsResult(object("idxd_file")),
    drivers: DMA_DRIVERS,
    ts: "idxdCdevOpen(idxd.wqs[wq], task)",
    doc: "A process opens a user WQ's character device (/dev/dsa/wqD.Q): idxd binds the process's mm (iommu_sva_bind_device), takes its PASID and installs the file. Bind it with as: (its .fd and .pasid are numbers); close it with close. ENODEV for a WQ without a character device; the bind's errnos.",
    call: (m, a) => {
      const idxd = idxdOf(m, a.dev as Device);
      const task = liveTask(a.task as Process);
      const index = a.wq as number | undefined;
      const wq =
        index === undefined
          ? idxd.wqs.find((w) => w.type === "user" && w.enabled)
          : idxd.wqs[index];
      if (wq === undefined) {
        if (index === undefined) return err("ENODEV");
        throw new SimError(`${idxd.name} has ${idxd.wqs.length} work queues`);
      }
      const r = idxdCdevOpen(wq, task);
      return r.ok ? ok(new IdxdFile(task, r.value.fd, r.value.ctx)) : r;
    },
  },
  {
    name: "enqcmd",
    area: "drivers",
    params: {
      file: FILE,
      task: TASK,
      desc_addr: param(U64, {
        doc: "where in the process's memory it builds the 64-byte descriptor (64-byte aligned)",
      }),
      // The descriptor's fields hold process virtual addresses.
      opcode: OPCODE,
      ...DESC_FIELDS,
      wait: WAIT,
    },
    returns: returnsOrFails(JSON_VALUE, ENQCMD_FAILURES),
    drivers: DMA_DRIVERS,
    ts: "cpu.store(task.mm, desc_addr, desc); file.ctx.enqcmd(task, cpu, desc_addr)",
    doc: "User space submits work to the WQ it opened: it writes a descriptor (process virtual addresses) into its memory, then ENQCMD reads it and sends it to the WQ's portal with the process's PASID (IA32_PASID, the mm's). With wait (default) the machine settles — the engine runs, page faults are resolved over PRI — and the completion record is read through the process's page table: {status, write_fault, result, bytes_completed, fault_addr}, or null when none was written. Fails with retry when the shared WQ refuses the descriptor.",
    call: (m, a) => {
      const file = a.file as IdxdFile;
      const task = liveTask(a.task as Process);
      const addr = a.desc_addr as bigint;
      if ((addr & 63n) !== 0n) throw new SimError("ENQCMD needs a 64-byte aligned descriptor");
      // The PASID field is the CPU's to fill (ENQCMD puts IA32_PASID there).
      const desc = descriptor(a, 0, false);
      const fault = m.cpu.storeFrom(task.mm, addr, desc, task);
      if (fault !== null) return cpuFailure(fault);
      const r = file.ctx.enqcmd(task, m.cpu, addr);
      if (r.status === "fault") return cpuFailure(r.fault);
      if (r.status === "retry")
        return failure("retry", { wq: file.ctx.wq.id, pasid: file.ctx.pasid });
      return awaitCompletion(m, a, (addr) => taskRecord(task, addr));
    },
  },
  {
    name: "idxd_dma_memcpy",
    area: "drivers",
    params: {
      dev: DEV,
      dest: param(U64, { doc: "the destination kernel buffer (physical address)" }),
      src: param(U64, { doc: "the source kernel buffer (physical address)" }),
      len: param(int(0, 0xffff_ffff, "a length in bytes"), { doc: "bytes to copy" }),
    },
    returns: returnsResult(JSON_VALUE),
    drivers: DMA_DRIVERS,
    ts: "idxdDmaMemcpy(idxd, dest, src, len)",
    doc: "A dmaengine client's memcpy on idxd's kernel WQ: both buffers mapped with dma_map_single, a memmove descriptor with the IOVAs and idxd's system PASID (its DMA domain), MOVDIR64B, the completion record read, both unmapped. Returns the record {status, write_fault, result, bytes_completed, fault_addr}. ENOMEM (a mapping failed), EINVAL (0 bytes or beyond the maximum transfer), ENXIO (no kernel WQ), EAGAIN, ETIMEDOUT.",
    call: (m, a) => {
      const r = idxdDmaMemcpy(
        idxdOf(m, a.dev as Device),
        a.dest as bigint,
        a.src as bigint,
        a.len as number,
      );
      return r.ok ? ok(recordJSON(r.value)) : r;
    },
  },
];

// ---------------------------------------------------------------- nic

const NIC: readonly FunctionSpec<Machine>[] = [
  {
    name: "ndo_start_xmit",
    area: "drivers",
    params: { dev: DEV, data: param(BYTES, { doc: "the frame (skb data)" }) },
    returns: returnsValue(enumOf(["NETDEV_TX_OK", "NETDEV_TX_BUSY"])),
    drivers: DMA_DRIVERS,
    ts: "adapter.xmit(data)",
    doc: "The network stack transmits a frame (the nic driver's e1000_xmit_frame): the data is copied into a page mapped with dma_map_single(TO_DEVICE), a descriptor is queued and TDT written. NETDEV_TX_BUSY when the ring is full; a mapping error drops the frame (NETDEV_TX_OK, tx_dropped). The NIC sends it when the machine settles.",
    call: (m, a) => adapterOf(m, a.dev as Device).xmit((a.data as Bytes).data),
  },
  {
    name: "napi_poll",
    area: "drivers",
    params: { dev: DEV },
    returns: returnsValue(JSON_VALUE),
    drivers: DMA_DRIVERS,
    ts: "adapter.poll()",
    doc: "The interrupt and NAPI poll (e1000_intr, e1000_clean): the machine settles (the NIC works through its rings), then transmitted descriptors are unmapped and freed, received frames unmapped, read and handed up, the RX ring refilled with fresh mappings. Returns {tx, rx}: descriptors cleaned and frames received.",
    call: (m, a) => {
      const adapter = adapterOf(m, a.dev as Device);
      m.settle();
      return adapter.poll();
    },
  },
  {
    name: "wire_receive",
    area: "drivers",
    params: { dev: DEV, data: param(BYTES, { doc: "the frame" }) },
    returns: returnsValue(BOOL),
    drivers: DMA_DRIVERS,
    ts: "nic.receive(data)",
    doc: "A frame arrives at the NIC from the wire (hardware, not a kernel call): it waits in the NIC's receive FIFO until the NIC writes it into a posted RX buffer. False when the FIFO is full (dropped).",
    call: (m, a) => {
      const e = m.endpoints.engineOf(describedName(a.dev as Device));
      if (!(e instanceof NicDevice)) throw new SimError(`${(a.dev as Device).name} is not a NIC`);
      return e.receive((a.data as Bytes).data);
    },
  },
];

// ---------------------------------------------------------------- vfio: the group path

const VFIO_GROUP: readonly FunctionSpec<Machine>[] = [
  {
    name: "vfio_group_fops_open",
    area: "drivers",
    params: { group: GROUP },
    returns: returnsResult("void"),
    ts: "vfio.group(group).open()",
    doc: "User space opens /dev/vfio/<group id> (a group with vfio-pci devices). EBUSY while it is open, or while one of its devices is used through its cdev.",
    call: (m, a) => vfioGroupOf(m, a.group as IommuGroup).open(),
  },
  {
    name: "vfio_fops_open",
    area: "drivers",
    params: {},
    returns: returnsValue(object("vfio_container")),
    ts: "vfio.openContainer()",
    doc: "User space opens /dev/vfio/vfio: a new container (bind it with as:).",
    call: (m) => m.deviceDrivers.vfio.openContainer(),
  },
  {
    name: "vfio_group_ioctl_set_container",
    area: "drivers",
    params: { group: GROUP, container: CONTAINER },
    returns: returnsResult("void"),
    ts: "vfio.group(group).setContainer(container)",
    doc: "VFIO_GROUP_SET_CONTAINER: iommu_group_claim_dma_owner(group, vfio group) — the group now blocks all DMA (its blocking domain); with the container's IOMMU set, the group is attached to it. EPERM (a kernel driver uses the group), EBUSY (a non-core domain or PASIDs attached), EINVAL (firmware direct mappings refuse the blocking domain; a container already set).",
    call: (m, a) =>
      vfioGroupOf(m, a.group as IommuGroup).setContainer(a.container as VfioContainer),
  },
  {
    name: "vfio_ioctl_set_iommu",
    area: "drivers",
    params: {
      container: CONTAINER,
      type: param(constant({ VFIO_TYPE1v2_IOMMU }), {
        optional: true,
        doc: "default VFIO_TYPE1v2_IOMMU (the only backend modelled)",
      }),
    },
    returns: returnsResult("void"),
    ts: "container.setIommu(type)",
    doc: "VFIO_SET_IOMMU: the type1 backend allocates a paging domain (iommu_paging_domain_alloc) and attaches every group of the container (iommu_attach_group). EINVAL without groups, when set already, or for another type.",
    call: (_m, a) =>
      (a.container as VfioContainer).setIommu((a.type as number | undefined) ?? VFIO_TYPE1v2_IOMMU),
  },
  {
    name: "vfio_dma_do_map",
    area: "drivers",
    params: {
      container: CONTAINER,
      task: MAPPER,
      vaddr: param(U64, { doc: "process virtual address" }),
      iova: param(U64),
      size: param(U64),
      flags: param(TYPE1_FLAGS, { doc: "VFIO_DMA_MAP_FLAG_READ / _WRITE" }),
    },
    returns: returnsResult("void"),
    ts: "container.mapDma(task, vaddr, iova, size, flags)",
    doc: "VFIO_IOMMU_MAP_DMA: the process's pages are pinned (pin_user_pages, faulted in as needed) and iommu_map'ed at the IOVA in every domain of the container. EINVAL (no backend, size 0, misaligned, outside the IOVA ranges), EOVERFLOW, EEXIST (overlap), ENOSPC, the pin's EFAULT/ENOMEM.",
    call: (_m, a) =>
      (a.container as VfioContainer).mapDma(
        liveTask(a.task as Process),
        a.vaddr as bigint,
        a.iova as bigint,
        a.size as bigint,
        a.flags as number,
      ),
  },
  {
    name: "vfio_dma_do_unmap",
    area: "drivers",
    params: { container: CONTAINER, iova: param(U64), size: param(U64) },
    returns: returnsResult(U64),
    ts: "container.unmapDma(iova, size)",
    doc: "VFIO_IOMMU_UNMAP_DMA: every mapping inside the range is unmapped (IOTLB invalidated) and its pages unpinned; returns the bytes unmapped. EINVAL (no backend, size 0, unaligned, a mapping cut in two), EOVERFLOW.",
    call: (_m, a) => (a.container as VfioContainer).unmapDma(a.iova as bigint, a.size as bigint),
  },
  {
    name: "vfio_group_ioctl_unset_container",
    area: "drivers",
    params: { group: GROUP },
    returns: returnsResult("void"),
    ts: "vfio.group(group).unsetContainer()",
    doc: "VFIO_GROUP_UNSET_CONTAINER: the group is detached from the backend (blocking domain; with the last group the mappings go), then iommu_group_release_dma_owner: the default domain is back. EINVAL without a container.",
    call: (m, a) => vfioGroupOf(m, a.group as IommuGroup).unsetContainer(),
  },
  {
    name: "vfio_group_fops_release",
    area: "drivers",
    params: { group: GROUP },
    returns: VOID,
    ts: "vfio.group(group).close()",
    doc: "User space closes the group file: its container is unset first.",
    call: (m, a) => vfioGroupOf(m, a.group as IommuGroup).close(),
  },
];

// ---------------------------------------------------------------- vfio cdev + iommufd

const IOMMUFD: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommufd_fops_open",
    area: "drivers",
    params: {},
    returns: returnsValue(object("iommufd")),
    ts: "new IommufdCtx(core, name)",
    doc: "User space opens /dev/iommu: a new iommufd context (bind it with as:), the DMA owner of the devices it binds.",
    call: (m) => {
      const n = iommufdCount.get(m) ?? 0;
      iommufdCount.set(m, n + 1);
      return new IommufdCtx(m.core, `iommufd-${n}`);
    },
  },
  {
    name: "vfio_device_fops_cdev_open",
    area: "drivers",
    params: { dev: DEV },
    returns: returnsResult("void"),
    ts: "vfio.device(dev).openCdev()",
    doc: "User space opens the device's cdev (/dev/vfio/devices/vfioX). EBUSY while its group file is open.",
    call: (m, a) => vfioDeviceOf(m, a.dev as Device).openCdev(),
  },
  {
    name: "iommufd_device_bind",
    area: "drivers",
    params: { iommufd: ICTX, dev: DEV },
    returns: returnsResult("void"),
    ts: "vfio.device(dev).bindIommufd(iommufd)",
    doc: "VFIO_DEVICE_BIND_IOMMUFD on the open cdev: iommu_device_claim_dma_owner(dev, ictx) — devices of one group bound to the same context share the claim. EINVAL (bound already, no IOMMU_CAP_CACHE_COHERENCY, firmware direct mappings), ENODEV (no group), EPERM (a kernel driver uses the group), EBUSY.",
    call: (m, a) => vfioDeviceOf(m, a.dev as Device).bindIommufd(a.iommufd as IommufdCtx),
  },
  {
    name: "iommufd_ioas_alloc_ioctl",
    area: "drivers",
    params: { iommufd: ICTX },
    returns: returnsValue(object("ioas")),
    ts: "iommufd.ioasAlloc()",
    doc: "IOMMU_IOAS_ALLOC: a new I/O address space of the context (bind it with as:; its .id is a number).",
    call: (_m, a) => {
      const ictx = a.iommufd as IommufdCtx;
      return new IoasRef(ictx, ictx.ioasAlloc());
    },
  },
  {
    name: "iommufd_ioas_map",
    area: "drivers",
    params: {
      ioas: IOAS,
      task: MAPPER,
      user_va: param(U64, { doc: "process virtual address" }),
      iova: param(U64),
      length: param(U64),
      flags: param(IOAS_FLAGS, {
        doc: "IOMMU_IOAS_MAP_FIXED_IOVA (always: IOVA allocation is not modelled), _READABLE, _WRITEABLE",
      }),
    },
    returns: returnsResult("void"),
    ts: "ictx.ioasMap(ioas, task, user_va, iova, length, flags)",
    doc: "IOMMU_IOAS_MAP at a fixed IOVA: the pages are pinned and mapped into every HWPT (domain) of the IOAS. EINVAL (no permission, unaligned, 0 bytes, outside an attached domain's aperture or in a reserved region), EOVERFLOW, EEXIST.",
    call: (_m, a) => {
      const r = a.ioas as IoasRef;
      if (((a.flags as number) & IOMMU_IOAS_MAP_FIXED_IOVA) === 0) {
        throw new SimError("iommufd_ioas_map: only IOMMU_IOAS_MAP_FIXED_IOVA maps are modelled");
      }
      return r.ictx.ioasMap(
        r.ioas,
        liveTask(a.task as Process),
        a.user_va as bigint,
        a.iova as bigint,
        a.length as bigint,
        a.flags as number,
      );
    },
  },
  {
    name: "iommufd_ioas_unmap",
    area: "drivers",
    params: { ioas: IOAS, iova: param(U64), length: param(U64) },
    returns: returnsResult(U64),
    ts: "ictx.ioasUnmap(ioas, iova, length)",
    doc: "IOMMU_IOAS_UNMAP: the mappings inside the range are unmapped from every HWPT and unpinned; returns the bytes unmapped. ENOENT when a mapping is cut or none is covered.",
    call: (_m, a) => {
      const r = a.ioas as IoasRef;
      return r.ictx.ioasUnmap(r.ioas, a.iova as bigint, a.length as bigint);
    },
  },
  {
    name: "iommufd_device_attach",
    area: "drivers",
    params: { dev: DEV, ioas: IOAS },
    returns: returnsResult("void"),
    ts: "vfio.device(dev).attachIoasPt(ioas)",
    doc: "VFIO_DEVICE_ATTACH_IOMMUFD_PT with an IOAS: an automatic HWPT of the IOAS the device accepts is reused, else a paging domain is allocated and attached with the group's handle (iommu_attach_group_handle), the IOAS's mappings filled in. EINVAL (not bound; devices of a group must share one HWPT).",
    call: (m, a) => {
      const vdev = vfioDeviceOf(m, a.dev as Device);
      const r = a.ioas as IoasRef;
      if (vdev.idev !== null && vdev.idev.ictx !== r.ictx) {
        throw new SimError(
          `${vdev.dev.name} is bound to ${vdev.idev.ictx.name}, not ${r.ictx.name}`,
        );
      }
      return vdev.attachIoasPt(r.ioas);
    },
  },
  {
    name: "iommufd_device_detach",
    area: "drivers",
    params: { dev: DEV },
    returns: returnsResult("void"),
    ts: "vfio.device(dev).detachIoasPt()",
    doc: "VFIO_DEVICE_DETACH_IOMMUFD_PT: with the group's last device, iommu_detach_group_handle (the blocking domain again). EINVAL when not bound.",
    call: (m, a) => vfioDeviceOf(m, a.dev as Device).detachIoasPt(),
  },
  {
    name: "vfio_device_fops_release",
    area: "drivers",
    params: { dev: DEV },
    returns: VOID,
    ts: "vfio.device(dev).closeCdev()",
    doc: "User space closes the device's cdev: detach and unbind (iommu_device_release_dma_owner); with the group's last device the default domain is back.",
    call: (m, a) => vfioDeviceOf(m, a.dev as Device).closeCdev(),
  },
  {
    name: "iommufd_fops_release",
    area: "drivers",
    params: { iommufd: ICTX },
    returns: VOID,
    ts: "iommufd.close()",
    doc: "User space closes /dev/iommu: every device detached and unbound, every IOAS emptied.",
    call: (_m, a) => (a.iommufd as IommufdCtx).close(),
  },
];

export const DEVICE_DRIVER_CALLS: readonly FunctionSpec<Machine>[] = [
  ...IDXD,
  ...NIC,
  ...VFIO_GROUP,
  ...IOMMUFD,
];

/** What a device's driver holds for it: idxd's device, the NIC adapter, the vfio device. */
export function driverState(m: Machine, dev: Device): Json {
  const d = m.deviceDrivers;
  return (
    d.idxd.idxdOf(dev)?.toJSON() ??
    d.nic.adapterOf(dev)?.toJSON() ??
    d.vfio.device(dev)?.toJSON() ??
    null
  );
}

/** Frames the NIC driver handed up to the stack, oldest first. */
export function receivedFrames(m: Machine, dev: Device): Uint8Array[] {
  return m.deviceDrivers.nic.adapterOf(dev)?.received ?? [];
}
