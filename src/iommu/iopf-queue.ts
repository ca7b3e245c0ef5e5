// The I/O page fault structures of §1.9 that hold state: `struct iopf_queue` (a work queue and
// its producer devices), `struct iommu_fault_param` (one device's partial requests and the groups
// awaiting a response) and `struct iopf_group`. The behaviour that moves requests through them
// (report, group, respond, flush, remove) is io-pgfault.ts.

import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { Work, WorkQueue } from "../base/workqueue.js";
import type { Device } from "../bus/device.js";
import type { IommuAttachHandle, IopfGroup } from "./domain.js";
import { IOMMU_FAULT_PAGE_REQUEST_PASID_VALID, type IommuFault } from "./fault.js";

/** `struct iopf_queue`: an unbound work queue `iopf_queue/<name>` and its producer devices. */
export class IopfQueue {
  /** `devices`: fault params of the devices added, newest first (list_add). */
  readonly devices: IommuFaultParam[] = [];
  /** `iopf_queue_free` ran: the work queue is gone. */
  freed = false;

  constructor(
    readonly name: string,
    /** `wq`: where fault handlers (SVA) queue their work. */
    readonly wq: WorkQueue,
  ) {}

  toJSON(): Json {
    return {
      name: this.name,
      wq: this.wq.name,
      devices: this.devices.map((p) => p.dev.name),
      queued_work: this.wq.pendingCount,
      freed: this.freed,
    };
  }
}

/** `struct iommu_fault_param`: `dev->iommu->fault_param` while the device is on a queue. */
export class IommuFaultParam {
  /** `users`: the queue's reference plus one per group and per report in flight. */
  users = 1;
  /** `partial`: non-last requests waiting for their group's last one, newest first. */
  readonly partial: IommuFault[] = [];
  /** `faults`: groups awaiting a response, newest first (list_add of `pending_node`). */
  readonly faults: IopfGroupRecord[] = [];

  constructor(
    readonly dev: Device,
    readonly queue: IopfQueue,
  ) {}

  toJSON(): Json {
    return {
      device: this.dev.name,
      queue: this.queue.name,
      users: this.users,
      partial: this.partial.map(faultJSON),
      pending_groups: this.faults.map((g) => g.id),
    };
  }
}

/** The core's `struct iopf_group`: what handlers see (`IopfGroup`) plus the core's links. */
export class IopfGroupRecord implements IopfGroup {
  pending = false;
  responses = 0;
  freed = false;
  /** `work`: the SVA handler's work item, once queued. */
  work: Work | null = null;
  readonly faultCount: number;

  constructor(
    readonly id: number,
    readonly faultParam: IommuFaultParam,
    readonly lastFault: IommuFault,
    readonly faults: readonly IommuFault[],
    readonly attachHandle: IommuAttachHandle,
  ) {
    this.faultCount = faults.length;
  }

  get dev(): Device {
    return this.faultParam.dev;
  }

  toJSON(): Json {
    return {
      id: this.id,
      device: this.dev.name,
      pasid: pasidOf(this.lastFault),
      grpid: this.lastFault.prm.grpid,
      fault_count: this.faultCount,
      faults: this.faults.map(faultJSON),
      domain: this.attachHandle.domain?.id ?? null,
      pending: this.pending,
      responses: this.responses,
      freed: this.freed,
    };
  }
}

/** The IOPF state of one core: queues and the groups not yet freed. */
export class IopfState {
  readonly queues: IopfQueue[] = [];
  /** Groups handed to a handler and not yet released with `iopf_free_group`, by id. */
  readonly groups = new Map<number, IopfGroupRecord>();
  #nextGroupId = 1;

  nextGroupId(): number {
    return this.#nextGroupId++;
  }

  /** The core's record behind a group a handler was given (`container_of`). */
  record(group: IopfGroup): IopfGroupRecord {
    if (!(group instanceof IopfGroupRecord)) {
      throw new SimError("not an iopf_group built by the IOMMU core");
    }
    return group;
  }

  toJSON(): Json {
    return {
      queues: this.queues.map((q) => q.toJSON()),
      groups: [...this.groups.values()].map((g) => g.toJSON()),
    };
  }
}

/** The PASID of a request, or null without PASID_VALID. */
export function pasidOf(f: IommuFault): number | null {
  return f.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? f.prm.pasid : null;
}

function faultJSON(f: IommuFault): Json {
  return {
    flags: f.prm.flags,
    pasid: f.prm.pasid,
    grpid: f.prm.grpid,
    perm: f.prm.perm,
    addr: `0x${f.prm.addr.toString(16)}`,
  };
}
