// Shared Virtual Addressing (core §6) and I/O page faults (core §7): binding a process's address
// space to a device, the mm's PASID, IOPF queues, fault reports, and the mock driver's
// TRIGGER_IOPF test op.

import { SimError } from "../../base/errors.js";
import type { Device } from "../../bus/device.js";
import {
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
} from "../../iommu/fault.js";
import type { IopfQueue } from "../../iommu/iopf-queue.js";
import { IOMMU_SVA_BIND_SUPERVISOR, type IommuSva } from "../../iommu/sva.js";
import type { Machine } from "../../machine/machine.js";
import type { MmStruct } from "../../mm/mm-types.js";
import { DEV, MM, PASID } from "./kinds.js";
import {
  BOOL,
  type FunctionSpec,
  flags,
  int,
  object,
  param,
  returnsResult,
  returnsValue,
  TEXT,
  U32,
  U64,
  VOID,
} from "./types.js";

const HANDLE = param(object("sva"), { doc: "struct iommu_sva *handle" });
const QUEUE = param(object("iopf_queue"), { doc: "struct iopf_queue *queue" });

/** `iommu_fault_page_request.perm`. */
const FAULT_PERM = flags({
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
});

/** `iommu_fault_page_request.flags`. */
const FAULT_FLAGS = flags({
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
});

const GRPID = param(int(0, 0x1ff, "a page request group index (0..511)"), { doc: "grpid" });

/** The mock driver of the instance that translates `dev`. */
function mockOf(m: Machine, dev: Device) {
  const inst = dev.iommu?.iommuDev;
  const i = m.iommus().find((x) => x.instance === inst);
  if (!i?.mock) throw new SimError(`${dev.name} is not translated by a mock IOMMU`);
  return i.mock;
}

export const SVA: readonly FunctionSpec<Machine>[] = [
  {
    name: "iommu_sva_bind_device",
    area: "sva",
    params: {
      dev: DEV,
      mm: param(object("mm"), {
        nullable: true,
        doc: "struct mm_struct *mm (a process's name means its mm; null with the supervisor flag)",
      }),
      flags: param(flags({ IOMMU_SVA_BIND_SUPERVISOR }), {
        optional: true,
        doc: "historical (seed 003, removed in v6.2): IOMMU_SVA_BIND_SUPERVISOR binds init_mm",
      }),
    },
    returns: returnsResult(object("sva")),
    ts: "core.svaBindDevice(dev, mm, flags)",
    doc: "§6.2: binds the mm at its PASID (allocated on the first bind, from the global allocator) through an SVA domain of the device's IOMMU, reusing one of the mm's domains the device accepts; a second bind of the same (dev, mm) returns the same bond. ENODEV (no group), EBUSY (arch refuses the mm, or the PASID is taken), EOVERFLOW (PASID beyond the device), ENOSPC (no PASID), EOPNOTSUPP and driver errors.",
    call: (m, a) => {
      const f = (a.flags as number | undefined) ?? 0;
      return m.core.svaBindDevice(a.dev as Device, a.mm as MmStruct | null, f);
    },
  },
  {
    name: "iommu_sva_unbind_device",
    area: "sva",
    params: { handle: HANDLE },
    returns: VOID,
    ts: "core.svaUnbindDevice(handle)",
    doc: "§6.3: drops one bind; the last one detaches the PASID and frees the SVA domain when no device uses it. The PASID stays with the mm until its final mmdrop.",
    call: (m, a) => m.core.svaUnbindDevice(a.handle as IommuSva),
  },
  {
    name: "iommu_sva_get_pasid",
    area: "sva",
    params: { handle: HANDLE },
    returns: returnsValue(U32),
    ts: "core.svaGetPasid(handle)",
    doc: "§6.4: the bond's PASID (the mm's), or IOMMU_PASID_INVALID (0xffffffff).",
    call: (m, a) => m.core.svaGetPasid(a.handle as IommuSva),
  },
  {
    name: "mm_get_enqcmd_pasid",
    area: "sva",
    params: { mm: MM },
    returns: returnsValue(U32),
    ts: "core.mmGetPasid(mm)",
    doc: "The mm's PASID, what ENQCMD submits with; IOMMU_PASID_INVALID before any bind.",
    call: (m, a) => m.core.mmGetPasid(a.mm as MmStruct),
  },
  {
    name: "iopf_queue_alloc",
    area: "sva",
    params: { name: param(TEXT, { doc: "names the work queue iopf_queue/<name>" }) },
    returns: returnsValue(object("iopf_queue")),
    ts: "core.iopfQueueAlloc(name)",
    doc: "§7.1: a new IOPF queue with its work queue.",
    call: (m, a) => m.core.iopfQueueAlloc(a.name as string),
  },
  {
    name: "iopf_queue_add_device",
    area: "sva",
    params: { queue: QUEUE, dev: DEV },
    returns: returnsResult("void"),
    ts: "core.iopfQueueAddDevice(queue, dev)",
    doc: "§7.1: the device reports page faults through the queue. ENODEV (driver without page_response), EBUSY (already on a queue).",
    call: (m, a) => m.core.iopfQueueAddDevice(a.queue as IopfQueue, a.dev as Device),
  },
  {
    name: "iopf_queue_remove_device",
    area: "sva",
    params: { queue: QUEUE, dev: DEV },
    returns: VOID,
    ts: "core.iopfQueueRemoveDevice(queue, dev)",
    doc: "§7.1: partial requests dropped, every group still owed a response answered INVALID; WARNs if the device is not on the queue.",
    call: (m, a) => m.core.iopfQueueRemoveDevice(a.queue as IopfQueue, a.dev as Device),
  },
  {
    name: "iopf_queue_flush_dev",
    area: "sva",
    params: { dev: DEV },
    returns: returnsResult("void"),
    ts: "core.iopfQueueFlushDev(dev)",
    doc: "§7.1: runs the device's queued fault work to completion. ENODEV (WARN) when it is on no queue.",
    call: (m, a) => m.core.iopfQueueFlushDev(a.dev as Device),
  },
  {
    name: "iopf_queue_discard_partial",
    area: "sva",
    params: { queue: { ...QUEUE, nullable: true } },
    returns: returnsResult("void"),
    ts: "core.iopfQueueDiscardPartial(queue)",
    doc: "§7.1: drops every device's partial (non-last) requests, as after a page-request queue overflow. EINVAL for a null queue.",
    call: (m, a) => m.core.iopfQueueDiscardPartial(a.queue as IopfQueue | null),
  },
  {
    name: "iopf_queue_free",
    area: "sva",
    params: { queue: { ...QUEUE, nullable: true } },
    returns: VOID,
    ts: "core.iopfQueueFree(queue)",
    doc: "§7.1: removes every device, then destroys the work queue (null: nothing).",
    call: (m, a) => m.core.iopfQueueFree(a.queue as IopfQueue | null),
  },
  {
    name: "iommu_report_device_fault",
    area: "sva",
    params: {
      dev: DEV,
      flags: param(FAULT_FLAGS, { doc: "evt->prm.flags" }),
      pasid: PASID,
      grpid: GRPID,
      perm: param(FAULT_PERM, { doc: "evt->prm.perm" }),
      addr: param(U64, { doc: "evt->prm.addr" }),
    },
    returns: returnsResult("void"),
    ts: "core.reportDeviceFault(dev, {type: IOMMU_FAULT_PAGE_REQ, prm})",
    doc: "§7.2: a driver reports a page request (struct iommu_fault with these prm fields). No handler at the PASID: answered INVALID at once, EINVAL. A partial request waits; a last one forms a group with its grpid's partials for the domain's handler (FAILURE when it refuses).",
    call: (m, a) =>
      m.core.reportDeviceFault(a.dev as Device, {
        type: IOMMU_FAULT_PAGE_REQ,
        prm: {
          flags: a.flags as number,
          pasid: a.pasid as number,
          grpid: a.grpid as number,
          perm: a.perm as number,
          addr: a.addr as bigint,
          privateData: [0n, 0n],
        },
      }),
  },
  {
    name: "trigger_iopf",
    area: "sva",
    params: {
      dev: DEV,
      pasid: PASID,
      grpid: GRPID,
      perm: param(FAULT_PERM),
      addr: param(U64),
      last: param(BOOL, { optional: true, doc: "LAST_PAGE (default true)" }),
      needs_pasid: param(BOOL, {
        optional: true,
        doc: "IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID (default false)",
      }),
    },
    returns: returnsResult("void"),
    drivers: ["mock"],
    ts: "machine.iommu(…).mock.triggerIopf(dev, {pasid, grpid, perm, addr, last})",
    doc: "The iommufd selftest's IOMMU_TEST_OP_TRIGGER_IOPF: the mock driver reports a page request (PASID_VALID unless pasid is 0) for the device; the core's answer.",
    call: (m, a) =>
      mockOf(m, a.dev as Device).triggerIopf(a.dev as Device, {
        pasid: a.pasid as number,
        grpid: a.grpid as number,
        perm: a.perm as number,
        addr: a.addr as bigint,
        last: (a.last as boolean | undefined) ?? true,
        needsPasid: (a.needs_pasid as boolean | undefined) ?? false,
      }),
  },
];
