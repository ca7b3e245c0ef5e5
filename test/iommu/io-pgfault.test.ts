// I/O page faults on the mock driver (core §7): IOPF queues and their errnos, handler lookup
// through attach handles, grouping by grpid, the responses (exactly one per group), and the SVA
// handler resolving requests through the bound mm on the IOPF work queue.

import { describe, expect, it } from "vitest";
import { err, OK, type Result, unwrap } from "../../src/base/result.js";
import { checkCore } from "../../src/check/invariants.js";
import { IOMMU_DOMAIN_NESTED, IOMMU_NO_PASID } from "../../src/iommu/constants.js";
import { IommuAttachHandle, type IopfGroup } from "../../src/iommu/domain.js";
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from "../../src/iommu/fault.js";
import type { IommuFaultParam } from "../../src/iommu/iopf-queue.js";
import { PROT_READ } from "../../src/mm/flags.js";
import { doMprotect } from "../../src/mm/mprotect.js";
import { traceFields } from "./setup.js";
import { type SvaBed, svaBed, UADDR } from "./sva-setup.js";

const RW = IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE;

function clean(b: SvaBed): void {
  expect(checkCore(b.core, { drivers: [b.mock] })).toEqual([]);
}

/** A paging domain whose iopf_handler keeps the groups it is given (like iommufd's). */
function keeper(b: SvaBed, dev: Parameters<SvaBed["core"]["pagingDomainAlloc"]>[0]) {
  const groups: IopfGroup[] = [];
  let answer: Result = OK;
  const dom = unwrap(b.core.pagingDomainAlloc(dev));
  dom.iopfHandler = (g) => {
    groups.push(g);
    return answer;
  };
  return {
    dom,
    groups,
    refuse(r: Result) {
      answer = r;
    },
  };
}

function attachKeeper(b: SvaBed, pasid = 5) {
  const d = b.pdev("d");
  const k = keeper(b, d);
  expect(b.core.attachDevicePasid(k.dom, d, pasid, new IommuAttachHandle("fault"))).toEqual(OK);
  return { d, ...k };
}

const responses = (b: SvaBed) => b.mock.pageResponses.map((r) => [r.pasid, r.grpid, r.code]);

describe("IOPF queues (core §7.1)", () => {
  it("iopf_queue_alloc makes the work queue iopf_queue/<name>; add_device: ENODEV without page_response, EBUSY when on a queue", () => {
    const b = svaBed();
    const q = b.core.iopfQueueAlloc("test");
    expect(q.wq.name).toBe("iopf_queue/test");
    expect(b.ctx.scheduler.queues()).toContain(q.wq);
    const d = b.pdev("d");
    expect(b.core.iopfQueueAddDevice(q, d)).toEqual(OK);
    expect(d.iommu!.faultParam).not.toBeNull();
    expect(b.core.iopfQueueAddDevice(b.mock.iopfQueue!, d)).toEqual(err("EBUSY"));
    const nr = svaBed({ pageResponse: false });
    expect(nr.core.iopfQueueAddDevice(nr.mock.iopfQueue!, nr.pdev("d"))).toEqual(err("ENODEV"));
    clean(b);
  });

  it("a fault-capable domain puts the device on mock-iopfq while attached (refcounted), like the selftest mock", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const k = keeper(b, d);
    expect(b.core.attachDevicePasid(k.dom, d, 5, new IommuAttachHandle("a"))).toEqual(OK);
    expect(b.core.attachDevicePasid(k.dom, d, 6, new IommuAttachHandle("b"))).toEqual(OK);
    expect(b.mock.iopfRefcount(d)).toBe(2);
    expect(b.mock.iopfQueue!.devices.map((p) => p.dev)).toEqual([d]);
    b.core.detachDevicePasid(k.dom, d, 5);
    expect(d.iommu!.faultParam).not.toBeNull();
    b.core.detachDevicePasid(k.dom, d, 6);
    expect(d.iommu!.faultParam).toBeNull();
    expect(b.mock.iopfQueue!.devices).toEqual([]);
    // Without a queue the driver cannot enable IOPF: the attach fails.
    const nq = svaBed({ iopfQueue: false });
    const e = nq.pdev("e");
    const k2 = keeper(nq, e);
    expect(nq.core.attachDevicePasid(k2.dom, e, 5, new IommuAttachHandle("x"))).toEqual(
      err("EINVAL"),
    );
    clean(b);
  });

  it("remove_device answers pending groups INVALID once and frees them; a handler touching one later WARNs (use after free); WARN when not on the queue", () => {
    const b = svaBed();
    const { d, groups } = attachKeeper(b);
    expect(b.mock.triggerIopf(d, { pasid: 5, grpid: 3, perm: RW, addr: 0x1000n })).toEqual(OK);
    expect(groups).toHaveLength(1);
    expect(groups[0]!.pending).toBe(true);
    const param = d.iommu!.faultParam as IommuFaultParam;
    expect(param.users).toBe(2);
    b.core.iopfQueueRemoveDevice(b.mock.iopfQueue!, d);
    expect(responses(b)).toEqual([[5, 3, IOMMU_PAGE_RESP_INVALID]]);
    // v6.14+: answered, unlinked and freed, with the group's and the queue's param references.
    expect(groups[0]!.pending).toBe(false);
    expect(groups[0]!.freed).toBe(true);
    expect(b.core.iopfGroups()).toEqual([]);
    expect(param.users).toBe(0);
    expect(d.iommu!.faultParam).toBeNull();
    clean(b);
    expect(b.ctx.warnings.list()).toEqual([]);
    b.core.iopfGroupResponse(groups[0]!, IOMMU_PAGE_RESP_SUCCESS);
    b.core.iopfFreeGroup(groups[0]!);
    expect(responses(b)).toHaveLength(1);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual([
      "iopf_group_response",
      "iopf_free_group",
    ]);
    b.core.iopfQueueRemoveDevice(b.mock.iopfQueue!, d);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_queue_remove_device"]);
  });

  it("iopf_queue_free drains the work still queued (destroy_workqueue), so an answered group's work frees it", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const bond = unwrap(b.core.svaBindDevice(d, b.spawn().mm!));
    const pasid = b.core.svaGetPasid(bond);
    expect(b.mock.triggerIopf(d, { pasid, grpid: 6, perm: RW, addr: UADDR })).toEqual(OK);
    const [g] = b.core.iopfGroups();
    // Answered early: no longer pending, so remove_device leaves it to its queued work.
    b.core.iopfGroupResponse(g!, IOMMU_PAGE_RESP_INVALID);
    b.core.iopfQueueFree(b.mock.iopfQueue!);
    expect(g!.freed).toBe(true);
    expect(b.core.iopfGroups()).toEqual([]);
    expect(responses(b)).toEqual([[pasid, 6, IOMMU_PAGE_RESP_INVALID]]);
    expect(b.ctx.warnings.list()).toEqual([]);
  });

  it("SVA work queued for a group that remove_device freed WARNs and does nothing when it runs", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const bond = unwrap(b.core.svaBindDevice(d, b.spawn().mm!));
    const pasid = b.core.svaGetPasid(bond);
    expect(b.mock.triggerIopf(d, { pasid, grpid: 4, perm: RW, addr: UADDR })).toEqual(OK);
    expect(b.mock.iopfQueue!.wq.pendingCount).toBe(1);
    b.core.iopfQueueRemoveDevice(b.mock.iopfQueue!, d);
    expect(responses(b)).toEqual([[pasid, 4, IOMMU_PAGE_RESP_INVALID]]);
    expect(b.core.iopfGroups()).toEqual([]);
    b.ctx.scheduler.settle();
    expect(responses(b)).toHaveLength(1);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iommu_sva_handle_iopf"]);
  });

  it("flush_dev runs the queued work, ENODEV (WARN) off any queue; discard_partial EINVAL for no queue; free removes devices and the work queue", () => {
    const b = svaBed();
    const d = b.pdev("d");
    expect(b.core.iopfQueueFlushDev(d)).toEqual(err("ENODEV"));
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_queue_flush_dev"]);
    const bond = unwrap(b.core.svaBindDevice(d, b.spawn().mm!));
    const pasid = b.core.svaGetPasid(bond);
    expect(b.mock.triggerIopf(d, { pasid, grpid: 1, perm: RW, addr: UADDR })).toEqual(OK);
    // The SVA handler only queued its work.
    expect(b.mock.iopfQueue!.wq.pendingCount).toBe(1);
    expect(responses(b)).toEqual([]);
    expect(b.core.iopfQueueFlushDev(d)).toEqual(OK);
    expect(b.mock.iopfQueue!.wq.pendingCount).toBe(0);
    expect(responses(b)).toEqual([[pasid, 1, IOMMU_PAGE_RESP_SUCCESS]]);
    expect(b.core.iopfQueueDiscardPartial(null)).toEqual(err("EINVAL"));
    const q = b.core.iopfQueueAlloc("q");
    const e = b.pdev("e");
    unwrap(b.core.iopfQueueAddDevice(q, e));
    b.core.iopfQueueFree(q);
    expect(q.freed).toBe(true);
    expect(e.iommu!.faultParam).toBeNull();
    expect(b.ctx.scheduler.queues()).not.toContain(q.wq);
    expect(b.core.iopfQueues()).not.toContain(q);
    b.core.iopfQueueFree(null);
    clean(b);
  });
});

describe("iommu_report_device_fault (core §7.2)", () => {
  it("nobody handles the PASID: INVALID at once (partial requests too) and EINVAL", () => {
    const b = svaBed();
    const d = b.pdev("d");
    const rec = b.ctx.trace.record();
    expect(b.mock.triggerIopf(d, { pasid: 7, grpid: 2, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    expect(b.mock.triggerIopf(d, { pasid: 7, grpid: 4, perm: RW, addr: 0n, last: false })).toEqual(
      err("EINVAL"),
    );
    expect(responses(b)).toEqual([
      [7, 2, IOMMU_PAGE_RESP_INVALID],
      [7, 4, IOMMU_PAGE_RESP_INVALID],
    ]);
    const r = rec.stop();
    expect(traceFields(r, "iommu_core:iopf_report").map((f) => f.result)).toEqual([
      "-EINVAL",
      "-EINVAL",
    ]);
    expect(traceFields(r, "iommu_core:iopf_response")).toEqual([
      { device: "d", pasid: 7, grpid: 2, code: "INVALID" },
      { device: "d", pasid: 7, grpid: 4, code: "INVALID" },
    ]);
    // A domain-tagged PASID (no handle) and a handle whose domain has no handler: not found.
    const plain = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevicePasid(plain, d, 7, null)).toEqual(OK);
    const other = unwrap(b.core.pagingDomainAlloc(d));
    expect(b.core.attachDevicePasid(other, d, 8, new IommuAttachHandle("h"))).toEqual(OK);
    expect(b.mock.triggerIopf(d, { pasid: 7, grpid: 5, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    expect(b.mock.triggerIopf(d, { pasid: 8, grpid: 6, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    expect(responses(b)).toHaveLength(4);
    clean(b);
  });

  it("a fault-capable domain whose device has no fault param: WARN, INVALID, EINVAL", () => {
    const b = svaBed();
    const { d, groups } = attachKeeper(b);
    b.core.iopfQueueRemoveDevice(b.mock.iopfQueue!, d);
    expect(b.mock.triggerIopf(d, { pasid: 5, grpid: 1, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iommu_report_device_fault"]);
    expect(responses(b)).toEqual([[5, 1, IOMMU_PAGE_RESP_INVALID]]);
    expect(groups).toEqual([]);
  });

  it("partial requests wait; the last one of a grpid takes them along in arrival order (grpid alone is compared)", () => {
    const b = svaBed();
    const { d, dom, groups } = attachKeeper(b);
    expect(b.core.attachDevicePasid(dom, d, 6, new IommuAttachHandle("six"))).toEqual(OK);
    const t = (grpid: number, addr: bigint, last: boolean, pasid = 5) =>
      b.mock.triggerIopf(d, { pasid, grpid, perm: RW, addr, last });
    expect(t(1, 0x1000n, false)).toEqual(OK);
    expect(t(2, 0x9000n, false)).toEqual(OK);
    // A partial of grpid 1 for another (handled) PASID still joins grpid 1's group.
    expect(t(1, 0x2000n, false, 6)).toEqual(OK);
    expect(groups).toEqual([]);
    expect(responses(b)).toEqual([]);
    expect(t(1, 0x3000n, true)).toEqual(OK);
    expect(groups).toHaveLength(1);
    const g = groups[0]!;
    expect(g.faults.map((f) => f.prm.addr)).toEqual([0x1000n, 0x2000n, 0x3000n]);
    expect(g.faultCount).toBe(3);
    expect(g.lastFault.prm.addr).toBe(0x3000n);
    expect(g.dev).toBe(d);
    expect(g.attachHandle.label).toBe("fault");
    expect(g.pending).toBe(true);
    clean(b);
    // grpid 2's partial stayed; a discard drops it, so its last request comes alone.
    expect(b.core.iopfQueueDiscardPartial(b.mock.iopfQueue!)).toEqual(OK);
    expect(t(2, 0xa000n, true)).toEqual(OK);
    expect(groups[1]!.faults.map((f) => f.prm.addr)).toEqual([0xa000n]);
    clean(b);
  });

  it("exactly one response per group: iopf_group_response answers once, with the last request's PASID and grpid", () => {
    const b = svaBed();
    const { d, groups } = attachKeeper(b);
    b.mock.triggerIopf(d, { pasid: 5, grpid: 9, perm: RW, addr: 0x5000n, needsPasid: true });
    const g = groups[0]!;
    b.core.iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
    b.core.iopfGroupResponse(g, IOMMU_PAGE_RESP_INVALID);
    expect(responses(b)).toEqual([[5, 9, IOMMU_PAGE_RESP_SUCCESS]]);
    expect(b.mock.pageResponses[0]!.flags).toBe(
      IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE | 4,
    );
    expect(g.pending).toBe(false);
    expect(g.responses).toBe(1);
    clean(b);
    b.core.iopfFreeGroup(g);
    expect(g.freed).toBe(true);
    expect(b.core.iopfGroups()).toEqual([]);
    b.core.iopfFreeGroup(g);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_free_group"]);
    // A response to a freed group is a use after free: WARN, nothing sent.
    b.core.iopfGroupResponse(g, IOMMU_PAGE_RESP_SUCCESS);
    expect(b.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_group_response"]);
    expect(responses(b)).toHaveLength(1);
  });

  it("a handler refusing the group: FAILURE for the group, freed, and the report still returns 0", () => {
    const b = svaBed();
    const { d, groups, refuse } = attachKeeper(b);
    refuse(err("ENOMEM"));
    expect(b.mock.triggerIopf(d, { pasid: 5, grpid: 2, perm: RW, addr: 0n })).toEqual(OK);
    expect(responses(b)).toEqual([[5, 2, IOMMU_PAGE_RESP_FAILURE]]);
    expect(groups[0]!.freed).toBe(true);
    expect(b.core.logs().at(-1)).toEqual({
      level: "warn",
      device: "d",
      message: "iopf with pasid 5 aborted",
    });
    clean(b);
  });

  it("RID faults go to a group handle at IOMMU_NO_PASID only; PASID faults fall back to a NESTED RID handle (user_pasid_table)", () => {
    const b = svaBed({ defaultDomain: "none" });
    const d = b.pdev("d");
    const g = b.core.groupOf(d)!;
    unwrap(b.core.deviceClaimDmaOwner(d, "iommufd"));
    const k = keeper(b, d);
    // A plain attach is not found through the handles.
    expect(b.core.attachGroup(k.dom, g)).toEqual(OK);
    expect(b.mock.triggerIopf(d, { pasid: 0, grpid: 1, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    b.core.detachGroup(k.dom, g);
    expect(b.core.attachGroupHandle(k.dom, g, new IommuAttachHandle("rid"))).toEqual(OK);
    expect(b.mock.triggerIopf(d, { pasid: 0, grpid: 2, perm: RW, addr: 0n })).toEqual(OK);
    expect(k.groups.map((x) => x.attachHandle.label)).toEqual(["rid"]);
    // An UNMANAGED RID handle does not take PASID faults…
    expect(b.mock.triggerIopf(d, { pasid: 3, grpid: 3, perm: RW, addr: 0n })).toEqual(
      err("EINVAL"),
    );
    b.core.detachGroupHandle(k.dom, g);
    // …a NESTED one does.
    const nested = keeper(b, d);
    nested.dom.type = IOMMU_DOMAIN_NESTED;
    expect(b.core.attachGroupHandle(nested.dom, g, new IommuAttachHandle("nested"))).toEqual(OK);
    expect(b.mock.triggerIopf(d, { pasid: 3, grpid: 4, perm: RW, addr: 0n })).toEqual(OK);
    expect(nested.groups.map((x) => x.lastFault.prm.pasid)).toEqual([3]);
    expect(unwrap(b.core.attachHandleGet(g, IOMMU_NO_PASID, 0)).label).toBe("nested");
  });
});

describe("the SVA fault handler (core §7.4)", () => {
  function bound() {
    const b = svaBed();
    const d = b.pdev("d");
    const p = b.spawn("proc", 4);
    const bond = unwrap(b.core.svaBindDevice(d, p.mm!));
    const pasid = b.core.svaGetPasid(bond);
    const fault = (grpid: number, addr: bigint, perm = RW, last = true) =>
      b.mock.triggerIopf(d, { pasid, grpid, perm, addr, last });
    return { ...b, d, p, mm: p.mm!, bond, pasid, fault };
  }

  it("queues the group; the work faults the page into the mm as a remote user write, then answers SUCCESS", () => {
    const b = bound();
    expect(b.mm.pgtable.lookup(UADDR + 0x1000n)).toBeNull();
    const rec = b.ctx.trace.record();
    expect(b.fault(1, UADDR + 0x1000n)).toEqual(OK);
    expect(b.core.iopfGroups()).toHaveLength(1);
    expect(b.core.iopfGroups()[0]!.pending).toBe(true);
    clean(b);
    expect(b.ctx.scheduler.settle()).toBeGreaterThan(0);
    expect(responses(b)).toEqual([[b.pasid, 1, IOMMU_PAGE_RESP_SUCCESS]]);
    expect(b.core.iopfGroups()).toEqual([]);
    const pte = b.mm.pgtable.lookup(UADDR + 0x1000n);
    expect(pte).not.toBeNull();
    expect(traceFields(rec.stop(), "mm:fault")).toEqual([
      { mm: b.mm.id, addr: UADDR + 0x1000n, flags: "WRITE|USER|REMOTE", result: "0" },
    ]);
    // Remote faults are charged to no task.
    expect(b.p.minFlt).toBe(0);
    clean(b);
  });

  it("a privileged read is not a user fault; an exec needs VM_EXEC", () => {
    const b = bound();
    const rec = b.ctx.trace.record();
    b.fault(1, UADDR, IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_PRIV);
    b.fault(2, UADDR, IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_EXEC);
    b.ctx.scheduler.settle();
    expect(traceFields(rec.stop(), "mm:fault").map((f) => f.flags)).toEqual(["REMOTE"]);
    expect(responses(b)).toEqual([
      [b.pasid, 1, IOMMU_PAGE_RESP_SUCCESS],
      [b.pasid, 2, IOMMU_PAGE_RESP_INVALID],
    ]);
  });

  it("INVALID outside any VMA, for a write to a read-only VMA, and once the process has exited", () => {
    const b = bound();
    unwrap(doMprotect(b.mm, UADDR, 0x1000n, PROT_READ));
    b.fault(1, UADDR + 0x10_0000n);
    b.fault(2, UADDR);
    b.fault(3, UADDR, IOMMU_FAULT_PERM_READ);
    b.ctx.scheduler.settle();
    expect(responses(b)).toEqual([
      [b.pasid, 1, IOMMU_PAGE_RESP_INVALID],
      [b.pasid, 2, IOMMU_PAGE_RESP_INVALID],
      [b.pasid, 3, IOMMU_PAGE_RESP_SUCCESS],
    ]);
    b.procs.exit(b.p);
    b.fault(4, UADDR + 0x2000n);
    b.ctx.scheduler.settle();
    expect(responses(b)[3]).toEqual([b.pasid, 4, IOMMU_PAGE_RESP_INVALID]);
    clean(b);
  });

  it("errors are sticky: after a bad request the rest of the group is not handled; one response", () => {
    const b = bound();
    b.fault(6, UADDR + 0x10_0000n, RW, false);
    b.fault(6, UADDR + 0x3000n, RW, true);
    b.ctx.scheduler.settle();
    expect(responses(b)).toEqual([[b.pasid, 6, IOMMU_PAGE_RESP_INVALID]]);
    expect(b.mm.pgtable.lookup(UADDR + 0x3000n)).toBeNull();
    clean(b);
  });

  it("unbind with a fault queued (core §7.5): the driver flushes the IOPF queue before the PASID goes, so the work runs before the domain is freed", () => {
    const b = bound();
    const dom = b.bond.domain!;
    b.fault(1, UADDR);
    expect(responses(b)).toEqual([]);
    const rec = b.ctx.trace.record();
    b.core.svaUnbindDevice(b.bond);
    const order = rec
      .stop()
      .filter((r) =>
        [
          "iommu_core:iopf_response",
          "iommu_core:detach_device_pasid",
          "iommu_core:domain_free",
        ].includes(r.event),
      )
      .map((r) => r.event);
    expect(order).toEqual([
      "iommu_core:iopf_response",
      "iommu_core:detach_device_pasid",
      "iommu_core:domain_free",
    ]);
    expect(responses(b)).toEqual([[b.pasid, 1, IOMMU_PAGE_RESP_SUCCESS]]);
    expect(dom.freed).toBe(true);
    expect(b.d.iommu!.faultParam).toBeNull();
    expect(b.ctx.warnings.list()).toEqual([]);
    clean(b);
  });
});
