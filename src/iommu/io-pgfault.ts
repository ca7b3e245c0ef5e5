// I/O page faults (drivers/iommu/io-pgfault.c, core §7, v6.16 semantics): IOPF queues and their
// producer devices, `iommu_report_device_fault` (handler lookup through attach handles, grouping
// of partial requests by grpid, the immediate INVALID answer when nobody handles a request, the
// FAILURE answer when the handler refuses a group) and `iopf_group_response`, which sends exactly
// one response per group however many times it is called.
//
// Nothing runs behind the caller's back: handlers that defer work (SVA) queue it on the IOPF
// queue's work queue (`ctx.scheduler`), which runs when flushed (`iopf_queue_flush_dev`) or when
// the machine settles its deferred work.

import { SimError } from "../base/errors.js";
import { err, formatResult, OK, type Result } from "../base/result.js";
import { Work } from "../base/workqueue.js";
import type { Device } from "../bus/device.js";
import { IOMMU_DOMAIN_NESTED, IOMMU_NO_PASID } from "./constants.js";
import type { IommuAttachHandle, IopfGroup } from "./domain.js";
import {
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_NAMES,
  type IommuFault,
  type IommuPageResponseCode,
} from "./fault.js";
import { IommuFaultParam, IopfGroupRecord, IopfQueue, pasidOf } from "./iopf-queue.js";
import { iommuAttachHandleGet } from "./pasid.js";
import type { CoreState } from "./state.js";

/** `iopf_queue_alloc(name)`: a queue with its work queue `iopf_queue/<name>`. */
export function iopfQueueAlloc(s: CoreState, name: string): IopfQueue {
  const q = new IopfQueue(name, s.ctx.scheduler.createQueue(`iopf_queue/${name}`));
  s.iopf.queues.push(q);
  return q;
}

/** `iopf_queue_add_device`: ENODEV without `page_response`, EBUSY if already on a queue. */
export function iopfQueueAddDevice(s: CoreState, queue: IopfQueue, dev: Device): Result {
  liveQueue(queue, "iopf_queue_add_device");
  if (!s.devIommuOps(dev).pageResponse) return err("ENODEV");
  const di = s.devIommu(dev);
  if (di.faultParam !== null) return err("EBUSY");
  const param = new IommuFaultParam(dev, queue);
  queue.devices.unshift(param);
  di.faultParam = param;
  return OK;
}

/**
 * `iopf_queue_remove_device`: WARN unless the device is on `queue`. Partial requests are dropped;
 * every group still awaiting a response is answered INVALID, unlinked and freed (v6.14+: the
 * groups used to leak). A handler that touches such a group afterwards (a late response, its own
 * free, queued SVA work) uses freed memory in the kernel: the model WARNs and does nothing.
 * Drivers avoid that by flushing the IOPF work first (core §7.5).
 */
export function iopfQueueRemoveDevice(s: CoreState, queue: IopfQueue, dev: Device): void {
  const di = s.devIommu(dev);
  const param = faultParamOf(di.faultParam);
  if (
    s.warnOn(
      param === null || param.queue !== queue,
      "iopf_queue_remove_device",
      `${dev.name} is not on IOPF queue ${queue.name}`,
    )
  ) {
    return;
  }
  const p = param!;
  p.partial.length = 0;
  for (const group of [...p.faults]) {
    sendResponse(s, group, IOMMU_PAGE_RESP_INVALID);
    iopfFreeGroup(s, group);
  }
  queue.devices.splice(queue.devices.indexOf(p), 1);
  di.faultParam = null;
  putFaultParam(p);
}

/**
 * `iopf_queue_flush_dev`: waits until all work queued on the device's IOPF queue has run
 * (`flush_workqueue`). ENODEV (WARN) when the device is on no queue.
 */
export function iopfQueueFlushDev(s: CoreState, dev: Device): Result {
  const param = faultParamOf(s.devIommu(dev).faultParam);
  if (s.warnOn(param === null, "iopf_queue_flush_dev", `${dev.name} has no fault param`)) {
    return err("ENODEV");
  }
  param!.queue.wq.flush();
  return OK;
}

/** `iopf_queue_discard_partial`: drops every device's partial requests (after a PQ overflow). */
export function iopfQueueDiscardPartial(queue: IopfQueue | null): Result {
  if (queue === null) return err("EINVAL");
  for (const p of queue.devices) p.partial.length = 0;
  return OK;
}

/**
 * `iopf_queue_free`: removes every device, then destroys the work queue — `destroy_workqueue`
 * drains it first, so work still queued runs now.
 */
export function iopfQueueFree(s: CoreState, queue: IopfQueue | null): void {
  if (queue === null) return;
  liveQueue(queue, "iopf_queue_free");
  for (const p of [...queue.devices]) iopfQueueRemoveDevice(s, queue, p.dev);
  queue.wq.flush();
  s.ctx.scheduler.destroyQueue(queue.wq);
  queue.freed = true;
  s.iopf.queues.splice(s.iopf.queues.indexOf(queue), 1);
}

/**
 * `iommu_report_device_fault(dev, evt)` (core §7.2). No handler (or, a WARN, no fault param):
 * a page request is answered INVALID at once and the call fails with EINVAL. A partial request
 * waits on the device; a last one forms a group with the partials of its grpid and goes to the
 * domain's handler; a handler refusing it gets the group answered FAILURE, and the call still
 * returns 0.
 */
export function iommuReportDeviceFault(s: CoreState, dev: Device, evt: IommuFault): Result {
  const r = reportDeviceFault(s, dev, evt);
  s.ctx.trace.emit("iommu_core:iopf_report", dev.name, {
    device: dev.name,
    pasid: pasidOf(evt),
    grpid: evt.prm.grpid,
    addr: evt.prm.addr,
    perm: evt.prm.perm,
    last: (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0,
    result: formatResult(r),
  });
  return r;
}

function reportDeviceFault(s: CoreState, dev: Device, evt: IommuFault): Result {
  const handle = findFaultHandler(s, dev, evt);
  const param = handle === null ? null : getFaultParam(s, dev);
  if (handle === null || param === null) {
    if (evt.type === IOMMU_FAULT_PAGE_REQ) iopfErrorResponse(s, dev, evt);
    return err("EINVAL");
  }
  if ((evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) === 0) {
    // A request that is not the last needs no answer of its own.
    param.partial.unshift(evt);
    putFaultParam(param);
    return OK;
  }
  const group = iopfGroupAlloc(s, param, evt, handle);
  const handled = handle.domain!.iopfHandler!(group);
  if (!handled.ok) {
    s.log("warn", dev, `iopf with pasid ${evt.prm.pasid} aborted`);
    iopfGroupResponse(s, group, IOMMU_PAGE_RESP_FAILURE);
    iopfFreeGroup(s, group);
  }
  return OK;
}

/**
 * `find_fault_handler`: the attach handle at the request's PASID (with `user_pasid_table`, else
 * a NESTED handle at the RID), or at IOMMU_NO_PASID without a PASID; its domain must have an
 * `iopf_handler`.
 */
function findFaultHandler(s: CoreState, dev: Device, evt: IommuFault): IommuAttachHandle | null {
  const group = s.groupOf(dev);
  if (group === null) return null;
  let h: Result<IommuAttachHandle>;
  if (evt.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
    h = iommuAttachHandleGet(group, evt.prm.pasid, 0);
    if (!h.ok) {
      // Driver-managed (user) PASID tables: faults of any PASID go to the RID's NESTED domain.
      if (!s.devIommuOps(dev).userPasidTable) return null;
      h = iommuAttachHandleGet(group, IOMMU_NO_PASID, IOMMU_DOMAIN_NESTED);
    }
  } else {
    h = iommuAttachHandleGet(group, IOMMU_NO_PASID, 0);
  }
  if (!h.ok || h.value.domain?.iopfHandler == null) return null;
  return h.value;
}

/** `iopf_error_response`: INVALID for a request nobody will handle. */
function iopfErrorResponse(s: CoreState, dev: Device, evt: IommuFault): void {
  const code = IOMMU_PAGE_RESP_INVALID;
  traceResponse(s, dev, evt, code);
  s.devIommuOps(dev).pageResponse?.(dev, evt, { pasid: evt.prm.pasid, grpid: evt.prm.grpid, code });
}

/** `iopf_group_alloc`: the last request, preceded by the partials of its grpid in arrival order. */
function iopfGroupAlloc(
  s: CoreState,
  param: IommuFaultParam,
  evt: IommuFault,
  handle: IommuAttachHandle,
): IopfGroupRecord {
  const faults: IommuFault[] = [];
  // `partial` is newest first: walking it backwards gives arrival order. Only grpid is compared.
  for (let i = param.partial.length - 1; i >= 0; i--) {
    const f = param.partial[i]!;
    if (f.prm.grpid === evt.prm.grpid) {
      faults.push(f);
      param.partial.splice(i, 1);
    }
  }
  faults.push(evt);
  const group = new IopfGroupRecord(s.iopf.nextGroupId(), param, evt, faults, handle);
  group.pending = true;
  param.faults.unshift(group);
  s.iopf.groups.set(group.id, group);
  return group;
}

/**
 * `iopf_group_response(group, status)`: while the group is pending, one `page_response` with the
 * last request's PASID and grpid, then the group leaves the pending list; otherwise nothing. A
 * freed group (e.g. by `iopf_queue_remove_device`) is a kernel use-after-free: WARN, nothing sent.
 */
export function iopfGroupResponse(
  s: CoreState,
  group: IopfGroup,
  code: IommuPageResponseCode,
): void {
  const g = s.iopf.record(group);
  if (s.warnOn(g.freed, "iopf_group_response", `iopf group ${g.id} used after free`)) return;
  if (g.pending) sendResponse(s, g, code);
}

function sendResponse(s: CoreState, g: IopfGroupRecord, code: IommuPageResponseCode): void {
  const dev = g.dev;
  const last = g.lastFault;
  // Traced as the core decides; the driver's message to the device follows.
  traceResponse(s, dev, last, code);
  s.devIommuOps(dev).pageResponse?.(dev, last, {
    pasid: last.prm.pasid,
    grpid: last.prm.grpid,
    code,
  });
  const list = g.faultParam.faults;
  list.splice(list.indexOf(g), 1);
  g.pending = false;
  g.responses++;
}

/** `iopf_free_group`: drops the group's requests and its fault-param reference. */
export function iopfFreeGroup(s: CoreState, group: IopfGroup): void {
  const g = s.iopf.record(group);
  if (s.warnOn(g.freed, "iopf_free_group", `iopf group ${g.id} freed twice`)) return;
  if (g.pending) {
    // Freed while still linked: the kernel would leave a dangling pending_node.
    s.warnOn(true, "iopf_free_group", `iopf group ${g.id} freed without a response`);
    const list = g.faultParam.faults;
    list.splice(list.indexOf(g), 1);
    g.pending = false;
  }
  g.freed = true;
  s.iopf.groups.delete(g.id);
  putFaultParam(g.faultParam);
}

/**
 * Queues `fn` as the group's work on its device's IOPF queue (`INIT_WORK` + `queue_work` on
 * `fault_param->queue->wq`); false if that work is already queued.
 */
export function iopfGroupQueueWork(
  s: CoreState,
  group: IopfGroup,
  label: string,
  fn: () => void,
): boolean {
  const g = s.iopf.record(group);
  if (g.work?.pending) return false;
  g.work = new Work(label, fn);
  return g.faultParam.queue.wq.queueWork(g.work);
}

/** `iopf_get_dev_fault_param`: the device's fault param with one more user, or null. */
function getFaultParam(s: CoreState, dev: Device): IommuFaultParam | null {
  const param = faultParamOf(s.devIommu(dev).faultParam);
  if (s.warnOn(param === null, "iommu_report_device_fault", `${dev.name} has no fault param`)) {
    return null;
  }
  param!.users++;
  return param;
}

function putFaultParam(param: IommuFaultParam): void {
  if (param.users <= 0) throw new SimError(`fault param of ${param.dev.name}: reference underflow`);
  param.users--;
}

function faultParamOf(x: unknown): IommuFaultParam | null {
  if (x === null) return null;
  if (!(x instanceof IommuFaultParam)) throw new SimError("dev->iommu->fault_param is foreign");
  return x;
}

function liveQueue(queue: IopfQueue, what: string): void {
  if (queue.freed) throw new SimError(`${what}: IOPF queue ${queue.name} was freed`);
}

function traceResponse(
  s: CoreState,
  dev: Device,
  evt: IommuFault,
  code: IommuPageResponseCode,
): void {
  s.ctx.trace.emit("iommu_core:iopf_response", dev.name, {
    device: dev.name,
    pasid: evt.prm.pasid,
    grpid: evt.prm.grpid,
    code: IOMMU_PAGE_RESP_NAMES[code],
  });
}
