// The SVA and I/O page fault conformance suite (core §6–§7): what binding processes and
// answering page requests look like whatever driver and hardware sit below the core. Each driver
// runs it with a factory that builds a machine with processes, PASID- and PRI-capable devices on
// one or two instances, and a way to send page requests through the driver's own fault path and
// see the responses the device receives. Every invariant (with the driver's programming view) is
// checked after each step that changes state.

import { describe, expect, it } from "vitest";
import type { SimContext } from "../../../src/base/context.js";
import { err, OK, unwrap } from "../../../src/base/result.js";
import type { Device } from "../../../src/bus/device.js";
import { checkCore, type IommuProgrammingView } from "../../../src/check/invariants.js";
import type { IommuCore } from "../../../src/iommu/core.js";
import { IommuAttachHandle } from "../../../src/iommu/domain.js";
import { type IommuMmData, iommuMmOf } from "../../../src/iommu/sva.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/flags.js";
import { vmMmap } from "../../../src/mm/mmap.js";
import type { Process, ProcessTable } from "../../../src/mm/process.js";

export type ResponseCode = "SUCCESS" | "INVALID" | "FAILURE";

export interface PageRequestSpec {
  readonly pasid: number;
  readonly grpid: number;
  readonly addr: bigint;
  readonly write: boolean;
  /** Last request of its group (default true). */
  readonly last?: boolean;
}

export interface SvaConformanceMachine {
  readonly ctx: SimContext;
  readonly core: IommuCore;
  readonly view?: IommuProgrammingView;
  readonly procs: ProcessTable;
  /** 2 when devices can sit behind a second instance of the same driver. */
  readonly instances: 1 | 2;
  /** A device with at least 256 PASIDs that can send page requests, behind instance 0 or 1. */
  newDevice(instance?: 0 | 1): Device;
  /** A device without PASID support behind instance 0. */
  newPlainDevice(): Device;
  /** A device with exactly 4 PASIDs (max_pasids 4) behind instance 0. */
  newNarrowDevice(): Device;
  /** A device no IOMMU translates (no group). */
  newDeviceWithoutIommu(): Device;
  /** The device sends a page request; it reaches the driver, deferred work does not run yet. */
  pageRequest(dev: Device, r: PageRequestSpec): void;
  /** Page responses the device received, oldest first. */
  responses(dev: Device): Array<{ grpid: number; code: ResponseCode }>;
}

export type SvaConformanceFactory = () => SvaConformanceMachine;

const A = 0x4000_0000n;

export function runSvaConformance(driverName: string, factory: SvaConformanceFactory): void {
  const invariants = (m: SvaConformanceMachine) => {
    expect(checkCore(m.core, m.view ? { drivers: [m.view] } : {})).toEqual([]);
    expect(m.ctx.warnings.list()).toEqual([]);
  };
  const spawn = (m: SvaConformanceMachine, pages = 8): Process => {
    const p = unwrap(m.procs.spawn("proc"));
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    unwrap(vmMmap(p.mm!, A, BigInt(pages) << 12n, PROT_READ | PROT_WRITE, flags));
    return p;
  };
  const data = (p: Process): IommuMmData => iommuMmOf(p.mm!)!;

  describe(`SVA and IOPF conformance: ${driverName}`, () => {
    it("one bond per (device, mm) counts its binds; devices of an instance share the mm's domain; the last unbind frees it", () => {
      const m = factory();
      const a = m.newDevice();
      const b = m.newDevice();
      const p = spawn(m);
      const ba = unwrap(m.core.svaBindDevice(a, p.mm!));
      expect(unwrap(m.core.svaBindDevice(a, p.mm!))).toBe(ba);
      expect(ba.users).toBe(2);
      const bb = unwrap(m.core.svaBindDevice(b, p.mm!));
      expect(bb.domain).toBe(ba.domain);
      const dom = ba.domain!;
      expect(dom.users).toBe(2);
      expect(m.view?.pasidDomain(a, data(p).pasid) ?? dom).toBe(dom);
      invariants(m);
      m.core.svaUnbindDevice(ba);
      m.core.svaUnbindDevice(ba);
      expect(dom.freed).toBe(false);
      invariants(m);
      m.core.svaUnbindDevice(bb);
      expect(dom.freed).toBe(true);
      expect(data(p).svaDomains).toEqual([]);
      invariants(m);
    });

    it("a device of another instance gets a domain of its own, first in the mm's list", () => {
      const m = factory();
      if (m.instances < 2) return;
      const a = m.newDevice(0);
      const z = m.newDevice(1);
      const p = spawn(m);
      const da = unwrap(m.core.svaBindDevice(a, p.mm!)).domain!;
      const dz = unwrap(m.core.svaBindDevice(z, p.mm!)).domain!;
      expect(dz).not.toBe(da);
      expect(data(p).svaDomains).toEqual([dz, da]);
      expect(unwrap(m.core.svaBindDevice(m.newDevice(0), p.mm!)).domain).toBe(da);
      invariants(m);
    });

    it("ENOSPC for a device without PASIDs; the mm keeps one PASID across devices", () => {
      const m = factory();
      const p = spawn(m);
      expect(m.core.svaBindDevice(m.newPlainDevice(), p.mm!)).toEqual(err("ENOSPC"));
      const b1 = unwrap(m.core.svaBindDevice(m.newDevice(), p.mm!));
      const b2 = unwrap(m.core.svaBindDevice(m.newDevice(), p.mm!));
      expect(m.core.svaGetPasid(b1)).toBe(m.core.svaGetPasid(b2));
      invariants(m);
    });

    it("bind errno paths: ENODEV, EBUSY (architecture, another mm's bond, a non-SVA handle, a domain-tagged PASID), EOVERFLOW", () => {
      const m = factory();
      const p = spawn(m);
      expect(m.core.svaBindDevice(m.newDeviceWithoutIommu(), p.mm!)).toEqual(err("ENODEV"));
      m.core.setArchPgtableDmaCompat((mm) => mm !== p.mm);
      expect(m.core.svaBindDevice(m.newDevice(), p.mm!)).toEqual(err("EBUSY"));
      m.core.setArchPgtableDmaCompat(() => true);
      const x = m.newDevice();
      const bx = unwrap(m.core.svaBindDevice(x, p.mm!));
      const pasid = m.core.svaGetPasid(bx);
      // Another mm given the same PASID (the allocator misused): EBUSY on x.
      m.core.freeGlobalPasid(pasid);
      const q = spawn(m);
      const y = m.newDevice();
      expect(m.core.svaGetPasid(unwrap(m.core.svaBindDevice(y, q.mm!)))).toBe(pasid);
      expect(m.core.svaBindDevice(x, q.mm!)).toEqual(err("EBUSY"));
      expect(m.core.svaBindDevice(y, p.mm!)).toEqual(err("EBUSY"));
      // A non-SVA handle, and a domain-tagged entry, at the mm's PASID on a fresh device.
      const r = spawn(m);
      const z = m.newDevice();
      const w = m.newDevice();
      const zp = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(z, r.mm!)));
      const paging = unwrap(m.core.pagingDomainAlloc(w));
      expect(m.core.attachDevicePasid(paging, w, zp, new IommuAttachHandle("user")).ok).toBe(true);
      expect(m.core.svaBindDevice(w, r.mm!)).toEqual(err("EBUSY"));
      m.core.detachDevicePasid(paging, w, zp);
      expect(m.core.attachDevicePasid(paging, w, zp, null).ok).toBe(true);
      const rec = m.ctx.trace.record();
      expect(m.core.svaBindDevice(w, r.mm!)).toEqual(err("EBUSY"));
      const events = rec.stop().map((e) => e.event);
      expect(events.filter((e) => e === "iommu_core:domain_alloc")).toHaveLength(1);
      expect(events.filter((e) => e === "iommu_core:domain_free")).toHaveLength(1);
      m.core.detachDevicePasid(paging, w, zp);
      // EOVERFLOW: an mm whose PASID is beyond what a narrow device can send.
      const narrow = m.newNarrowDevice();
      for (let i = 0; i < 4; i++) m.core.allocGlobalPasid(x);
      const s = spawn(m);
      unwrap(m.core.svaBindDevice(x, s.mm!));
      expect(m.core.mmGetPasid(s.mm!)).toBeGreaterThanOrEqual(4);
      expect(m.core.svaBindDevice(narrow, s.mm!)).toEqual(err("EOVERFLOW"));
    });

    it("IOPF queue errno paths: EBUSY for a device already on a queue, ENODEV (WARN) flushing a device on none, EINVAL discarding no queue", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      unwrap(m.core.svaBindDevice(d, p.mm!));
      expect(d.iommu!.faultParam).not.toBeNull();
      const q = m.core.iopfQueueAlloc("other");
      expect(m.core.iopfQueueAddDevice(q, d)).toEqual(err("EBUSY"));
      expect(m.core.iopfQueueFlushDev(d)).toEqual(OK);
      const idle = m.newDevice();
      expect(m.core.iopfQueueFlushDev(idle)).toEqual(err("ENODEV"));
      expect(m.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_queue_flush_dev"]);
      m.core.iopfQueueRemoveDevice(q, idle);
      expect(m.ctx.warnings.take().map((w) => w.site)).toEqual(["iopf_queue_remove_device"]);
      expect(m.core.iopfQueueDiscardPartial(null)).toEqual(err("EINVAL"));
      m.core.iopfQueueFree(q);
      invariants(m);
    });

    it("the PASID outlives unbind and exit and is freed at the final mmdrop; a fork child gets its own", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      const child = unwrap(m.procs.fork(p));
      expect(child.mm!.iommuMm).toBeNull();
      const bond = unwrap(m.core.svaBindDevice(d, p.mm!));
      const pasid = m.core.svaGetPasid(bond);
      const cb = unwrap(m.core.svaBindDevice(d, child.mm!));
      expect(m.core.svaGetPasid(cb)).not.toBe(pasid);
      m.procs.exit(p);
      expect(m.core.toJSON()).toMatchObject({ global_pasids: expect.arrayContaining([pasid]) });
      invariants(m);
      const mm = bond.domain!.mm!;
      m.core.svaUnbindDevice(bond);
      m.ctx.scheduler.settle();
      expect(mm.state).toBe("freed");
      expect((m.core.toJSON() as { global_pasids: number[] }).global_pasids).not.toContain(pasid);
      invariants(m);
    });

    it("a page request of a bound PASID is resolved through the mm and answered SUCCESS; outside any VMA INVALID", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      const pasid = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(d, p.mm!)));
      expect(p.mm!.pgtable.lookup(A + 0x2000n)).toBeNull();
      m.pageRequest(d, { pasid, grpid: 3, addr: A + 0x2000n, write: true });
      m.pageRequest(d, { pasid, grpid: 4, addr: A + 0x100_0000n, write: false });
      m.ctx.scheduler.settle();
      expect(m.responses(d)).toEqual([
        { grpid: 3, code: "SUCCESS" },
        { grpid: 4, code: "INVALID" },
      ]);
      const pte = p.mm!.pgtable.lookup(A + 0x2000n);
      expect(pte).not.toBeNull();
      expect(m.core.iopfGroups()).toEqual([]);
      invariants(m);
    });

    it("a request for a PASID nobody bound is answered INVALID at once", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      unwrap(m.core.svaBindDevice(d, p.mm!));
      m.pageRequest(d, { pasid: 77, grpid: 5, addr: A, write: false });
      m.ctx.scheduler.settle();
      expect(m.responses(d)).toEqual([{ grpid: 5, code: "INVALID" }]);
      invariants(m);
    });

    it("a group of requests gets one response; a bad request makes the group INVALID (errors are sticky)", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      const pasid = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(d, p.mm!)));
      m.pageRequest(d, { pasid, grpid: 1, addr: A, write: true, last: false });
      m.pageRequest(d, { pasid, grpid: 1, addr: A + 0x1000n, write: true });
      m.pageRequest(d, { pasid, grpid: 2, addr: A + 0x100_0000n, write: true, last: false });
      m.pageRequest(d, { pasid, grpid: 2, addr: A + 0x3000n, write: true });
      m.ctx.scheduler.settle();
      expect(m.responses(d)).toEqual([
        { grpid: 1, code: "SUCCESS" },
        { grpid: 2, code: "INVALID" },
      ]);
      expect(p.mm!.pgtable.lookup(A)).not.toBeNull();
      expect(p.mm!.pgtable.lookup(A + 0x1000n)).not.toBeNull();
      expect(p.mm!.pgtable.lookup(A + 0x3000n)).toBeNull();
      invariants(m);
    });

    it("a process that exited while bound gets INVALID; unbinding with a request in flight answers it before the domain goes", () => {
      const m = factory();
      const d = m.newDevice();
      const p = spawn(m);
      const bond = unwrap(m.core.svaBindDevice(d, p.mm!));
      const pasid = m.core.svaGetPasid(bond);
      m.pageRequest(d, { pasid, grpid: 8, addr: A, write: true });
      const dom = bond.domain!;
      const rec = m.ctx.trace.record();
      m.core.svaUnbindDevice(bond);
      const order = rec
        .stop()
        .filter(
          (r) => r.event === "iommu_core:iopf_response" || r.event === "iommu_core:domain_free",
        )
        .map((r) => r.event);
      expect(order).toEqual(["iommu_core:iopf_response", "iommu_core:domain_free"]);
      expect(dom.freed).toBe(true);
      expect(m.responses(d)).toEqual([{ grpid: 8, code: "SUCCESS" }]);
      invariants(m);
      const q = spawn(m);
      const pasid2 = m.core.svaGetPasid(unwrap(m.core.svaBindDevice(d, q.mm!)));
      m.procs.exit(q);
      m.pageRequest(d, { pasid: pasid2, grpid: 9, addr: A, write: false });
      m.ctx.scheduler.settle();
      expect(m.responses(d).at(-1)).toEqual({ grpid: 9, code: "INVALID" });
      invariants(m);
    });
  });
}
