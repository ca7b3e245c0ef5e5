// User SVA through idxd's character device: processes open the shared user WQ (an SVA bond on
// their mm, the mm's PASID), build descriptors in their own memory and submit them with ENQCMD;
// the engine works on process virtual addresses through the IOMMU, pages the process never
// touched arrive over PRI and the core's IOPF path, completion records land in process memory.
// Closing the file (or exiting) drains the PASID on the device before the unbind (core §7.5);
// the PASID is freed at the mm's final drop, and DMA tagged with it faults afterwards.

import { describe, expect, it } from "vitest";
import { unwrap } from "../../../src/base/result.js";
import type { TraceRecord } from "../../../src/base/trace.js";
import { decodeCompletionRecord, dsaHwDesc } from "../../../src/drivers/dsa/dsa-desc.js";
import { idxdCdevOpen } from "../../../src/drivers/dsa/idxd-cdev.js";
import { IDXD_PORTAL_LIMITED } from "../../../src/drivers/dsa/idxd-regs.js";
import {
  CR_SIZE,
  DSA_COMP,
  DSA_COMP_STATUS_WRITE,
  DSA_OPCODE,
  IDXD_OP_FLAG,
} from "../../../src/hw/endpoints/dsa-regs.js";
import { mmdrop, mmgrab } from "../../../src/mm/mm-refs.js";
import type { Process } from "../../../src/mm/process.js";
import { type DsaRig, dsaMachine, pattern, spawnWithBuffer } from "./fixture.js";

const VA = 0x4000_0000n;
/** Layout of the test process's buffer: descriptor, completion record, source, destination. */
const DESC_VA = VA;
const CR_VA = VA + 0x100n;
const SRC_VA = VA + 0x1000n;
const DST_VA = VA + 0x4000n;
const LEN = 0x2100;
const FLAGS = IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR | IDXD_OP_FLAG.BOF;

function userWq(r: DsaRig) {
  return r.idxd.wqs.find((w) => w.type === "user")!;
}

/** The process writes its source data and a memmove descriptor into its own memory. */
function prepare(r: DsaRig, p: Process, data: Uint8Array, flags = FLAGS): void {
  const cpu = r.m.cpu;
  expect(cpu.store(p.mm!, SRC_VA, data).ok).toBe(true);
  const desc = dsaHwDesc({
    opcode: DSA_OPCODE.MEMMOVE,
    flags,
    completionAddr: CR_VA,
    src: SRC_VA,
    dst: DST_VA,
    size: data.length,
  });
  expect(cpu.store(p.mm!, DESC_VA, desc).ok).toBe(true);
  expect(cpu.store(p.mm!, CR_VA, new Uint8Array(CR_SIZE)).ok).toBe(true);
}

function completion(r: DsaRig, p: Process) {
  const got = r.m.cpu.load(p.mm!, CR_VA, CR_SIZE);
  if (!got.ok) throw new Error("completion record unreadable");
  return decodeCompletionRecord(got.value);
}

/** The PASID (or `pid`, as the RISC-V IOMMU calls it) of every record of `event`. */
function pasidsOf(trace: readonly TraceRecord[], event: string): Set<number | null | undefined> {
  return new Set(
    trace
      .filter((t) => t.event === event)
      .map((t) => {
        const f = t.fields as { pasid?: number | null; pid?: number | null };
        return f.pasid ?? f.pid;
      }),
  );
}

describe("the shared WQ's limited portal", () => {
  it("idxd submits and maps user space through the limited portal, which takes threshold entries", () => {
    const r = dsaMachine({
      idxd: { wqs: [{ type: "user", mode: "shared", size: 4, threshold: 2, blockOnFault: true }] },
    });
    const wq = userWq(r);
    expect(wq.toJSON()).toMatchObject({ mode: "shared", size: 4, threshold: 2 });
    expect(wq.portal).toBe(r.idxd.regs.portal(wq.id, IDXD_PORTAL_LIMITED));
    const p = spawnWithBuffer(r, "app", VA, 8);
    const ctx = unwrap(idxdCdevOpen(wq, p)).ctx;
    prepare(r, p, pattern(64, 3));
    // Nothing runs until the machine settles: the third ENQCMD finds the WQ at its threshold.
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("retry");
    r.m.settle();
    expect(completion(r, p).status).toBe(DSA_COMP.SUCCESS);
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    r.m.settle();
    r.invariants();
  });

  it("a shared WQ without a threshold is not enabled (ENXIO, IDXD_SCMD_WQ_NO_THRESH)", () => {
    const r = dsaMachine({ idxd: { wqs: [{ type: "user", mode: "shared", size: 4 }] } });
    expect(r.idxd.logs).toContainEqual({
      level: "err",
      message: "wq0: Shared wq and threshold 0.",
    });
    expect(r.idxd.logs).toContainEqual({ level: "err", message: "wq0: enabling failed: -ENXIO" });
    expect(userWq(r)).toBeUndefined();
    expect(() =>
      dsaMachine({ idxd: { wqs: [{ type: "user", mode: "shared", size: 4, threshold: 5 }] } }),
    ).toThrow("WQ threshold 5 is not within 1..4");
  });
});

describe("two processes share the engine, each with its own PASID", () => {
  it("both copies land in the right address space; the destination pages came over PRI", () => {
    const r = dsaMachine();
    const a = spawnWithBuffer(r, "a", VA, 8);
    const b = spawnWithBuffer(r, "b", VA, 8);
    const ca = unwrap(idxdCdevOpen(userWq(r), a)).ctx;
    const cb = unwrap(idxdCdevOpen(userWq(r), b)).ctx;
    expect(ca.pasid).toBe(r.m.core.mmGetPasid(a.mm!));
    expect(cb.pasid).toBe(r.m.core.mmGetPasid(b.mm!));
    expect(new Set([ca.pasid, cb.pasid, r.idxd.pasid]).size).toBe(3);
    const da = pattern(LEN, 10);
    const db = pattern(LEN, 20);
    prepare(r, a, da);
    prepare(r, b, db);
    // The destination pages were never touched: absent from both page tables.
    expect(a.mm!.pgtable.lookup(DST_VA)).toBeNull();
    expect(b.mm!.pgtable.lookup(DST_VA)).toBeNull();
    const rec = r.m.ctx.trace.record();
    expect(ca.enqcmd(a, r.m.cpu, DESC_VA)).toEqual({ status: "accepted" });
    expect(cb.enqcmd(b, r.m.cpu, DESC_VA)).toEqual({ status: "accepted" });
    r.m.settle();
    const trace = rec.stop();
    expect(completion(r, a)).toMatchObject({ status: DSA_COMP.SUCCESS });
    expect(completion(r, b)).toMatchObject({ status: DSA_COMP.SUCCESS });
    expect(r.m.cpu.load(a.mm!, DST_VA, LEN)).toEqual({ ok: true, value: da });
    expect(r.m.cpu.load(b.mm!, DST_VA, LEN)).toEqual({ ok: true, value: db });
    expect(pasidsOf(trace, "device:descriptor")).toEqual(new Set([ca.pasid, cb.pasid]));
    // Page requests with each process's PASID went through the IOMMU's queue and the core.
    expect(pasidsOf(trace, "riscv_iommu:page_request")).toEqual(new Set([ca.pasid, cb.pasid]));
    expect(pasidsOf(trace, "iommu_core:iopf_report")).toEqual(new Set([ca.pasid, cb.pasid]));
    const faults = trace.filter((t) => t.event === "mm:fault");
    expect(faults.length).toBeGreaterThanOrEqual(6);
    expect(faults.every((t) => (t.fields as { flags: string }).flags.includes("REMOTE"))).toBe(
      true,
    );
    r.invariants();
  });

  it("without Block On Fault the descriptor ends at the absent page; the process touches it and resubmits", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "nobof", VA, 8);
    const ctx = unwrap(idxdCdevOpen(userWq(r), p)).ctx;
    const data = pattern(LEN, 30);
    prepare(r, p, data, IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR);
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    r.m.settle();
    const cr = completion(r, p);
    expect(cr.status).toBe(DSA_COMP.PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE);
    expect(cr.faultAddr).toBe(DST_VA);
    expect(cr.bytesCompleted).toBe(0);
    // The application faults the destination in and submits again.
    for (let off = 0n; off < 3n; off++) {
      expect(r.m.cpu.store(p.mm!, DST_VA + off * 4096n, new Uint8Array(1)).ok).toBe(true);
    }
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    r.m.settle();
    expect(completion(r, p).status).toBe(DSA_COMP.SUCCESS);
    expect(r.m.cpu.load(p.mm!, DST_VA, LEN)).toEqual({ ok: true, value: data });
    r.invariants();
  });

  it("ENODEV for a WQ without a character device (the kernel WQ)", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "x", VA, 1);
    const kernelWq = r.idxd.wqs.find((w) => w.type === "kernel")!;
    expect(idxdCdevOpen(kernelWq, p)).toEqual({ ok: false, errno: "ENODEV" });
    expect(p.fds()).toEqual([]);
  });
});

describe("release: Drain PASID, then unbind; the PASID lives until the mm's final drop", () => {
  function orderOf(trace: readonly TraceRecord[]): string[] {
    return trace
      .filter((t) =>
        [
          "driver:idxd_cmd",
          "iommu_core:sva_unbind",
          "iommu_core:pasid_free",
          "mm:exit_mmap",
          "device:descriptor",
        ].includes(t.event),
      )
      .map((t) => (t.event === "driver:idxd_cmd" ? (t.fields as { cmd: string }).cmd : t.event));
  }

  it("close with a descriptor still waiting for a page: the drain lets it finish before the unbind", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "closer", VA, 8);
    const { fd, ctx } = unwrap(idxdCdevOpen(userWq(r), p));
    const data = pattern(LEN, 40);
    prepare(r, p, data);
    expect(ctx.enqcmd(p, r.m.cpu, DESC_VA).status).toBe("accepted");
    // Nothing has run yet: the close comes first.
    const rec = r.m.ctx.trace.record();
    p.closeFile(fd);
    const trace = rec.stop();
    expect(orderOf(trace)).toEqual(["device:descriptor", "DRAIN_PASID", "iommu_core:sva_unbind"]);
    expect(completion(r, p).status).toBe(DSA_COMP.SUCCESS);
    expect(r.m.cpu.load(p.mm!, DST_VA, LEN)).toEqual({ ok: true, value: data });
    // The mm keeps its PASID while it lives; the device no longer has it attached.
    expect(r.m.core.mmGetPasid(p.mm!)).toBe(ctx.pasid);
    expect(r.m.programmedPasids(r.dev)).toEqual([r.idxd.pasid]);
    expect(userWq(r).refcount).toBe(0);
    r.invariants();
  });

  it("process exit: exit_mmap, then the file's release drains and unbinds; the final mmdrop frees the PASID", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "exiter", VA, 8);
    const ctx = unwrap(idxdCdevOpen(userWq(r), p)).ctx;
    const pasid = ctx.pasid;
    const mm = p.mm!;
    // Someone else (a /proc reader, say) holds the mm_struct: the PASID must outlive the bond.
    mmgrab(mm);
    const rec = r.m.ctx.trace.record();
    r.m.processes.exit(p);
    expect(orderOf(rec.stop())).toEqual(["mm:exit_mmap", "DRAIN_PASID", "iommu_core:sva_unbind"]);
    expect(ctx.closed).toBe(true);
    expect(r.m.core.toJSON()).toMatchObject({ global_pasids: [r.idxd.pasid, pasid] });
    expect(r.m.core.mmGetPasid(mm)).toBe(pasid);
    const drop = r.m.ctx.trace.record();
    mmdrop(mm);
    expect(orderOf(drop.stop())).toEqual(["iommu_core:pasid_free"]);
    expect(r.m.core.toJSON()).toMatchObject({ global_pasids: [r.idxd.pasid] });
    r.invariants();
  });

  it("after exit, a descriptor tagged with the old PASID is refused and writes nothing", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "gone", VA, 8);
    const pasid = unwrap(idxdCdevOpen(userWq(r), p)).ctx.pasid;
    r.m.processes.exit(p);
    expect(r.m.core.toJSON()).toMatchObject({ global_pasids: [r.idxd.pasid] });
    // A rogue submitter reuses the number: the engine runs it, the IOMMU has nothing there.
    const frames = r.m.frames.framesInUse;
    const desc = dsaHwDesc({
      opcode: DSA_OPCODE.MEMFILL,
      flags: FLAGS,
      completionAddr: CR_VA,
      src: 0x1111_1111_1111_1111n,
      dst: DST_VA,
      size: 0x1000,
    });
    const rec = r.m.ctx.trace.record();
    expect(r.idxd.regs.enqcmd(userWq(r).portal, desc, pasid, false)).toBe(true);
    r.m.settle();
    const trace = rec.stop();
    // RISC-V IOMMU "ATS": a PASID whose process context is invalid (cause 266) gets a Success
    // completion without permissions, as a page fault would. With no fault-capable domain left
    // the IOMMU driver turned PRI off: the device cannot ask for the page and gives up.
    expect(r.dev.fn.atsEnabled).toBe(true);
    expect(
      trace.filter((t) => t.event === "device:ats_translate").map((t) => t.fields),
    ).toContainEqual(
      expect.objectContaining({ pasid, result: expect.stringMatching(/^success r=0 w=0/) }),
    );
    expect(trace.some((t) => t.event === "device:page_request")).toBe(false);
    expect(trace.find((t) => t.event === "device:descriptor")!.fields).toMatchObject({
      pasid,
      status: DSA_COMP.PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE,
    });
    expect(trace.some((t) => t.event === "mm:fault")).toBe(false);
    // Nor can the completion record be written: the error goes to SWERR.
    expect(r.hw.swerr).toMatchObject({ valid: true, pasid, error: DSA_COMP.CRA_XLAT });
    expect(r.m.frames.framesInUse).toBe(frames);
  });
});

describe("driver unbind with user files open", () => {
  it("revokes each context (drain, unbind) before the device and the kernel PASID go; a later close is a no-op", () => {
    const r = dsaMachine();
    const p = spawnWithBuffer(r, "open", VA, 8);
    const { fd, ctx } = unwrap(idxdCdevOpen(userWq(r), p));
    const rec = r.m.ctx.trace.record();
    r.m.unbindDriver(r.dev);
    const order = rec
      .stop()
      .filter((t) =>
        ["driver:idxd_cmd", "iommu_core:sva_unbind", "iommu_core:detach_device_pasid"].includes(
          t.event,
        ),
      )
      .map((t) => (t.event === "driver:idxd_cmd" ? (t.fields as { cmd: string }).cmd : t.event));
    // WQ by WQ: the kernel WQ, then the user WQ (its file first), then the device.
    expect(order).toEqual([
      "DISABLE_WQ",
      "DRAIN_PASID",
      "iommu_core:detach_device_pasid",
      "iommu_core:sva_unbind",
      "DISABLE_WQ",
      "DISABLE_DEVICE",
      "iommu_core:detach_device_pasid",
    ]);
    expect(ctx.closed).toBe(true);
    p.closeFile(fd);
    expect(r.m.core.groupOf(r.dev)!.toJSON()).toMatchObject({ owner_cnt: 0, pasid_array: [] });
    r.invariants();
  });
});
