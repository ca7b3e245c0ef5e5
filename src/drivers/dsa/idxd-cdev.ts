// User SVA through a user WQ's character device (drivers/dma/idxd/cdev.c, the uacce pattern):
//   open    → iommu_sva_bind_device(dev, current->mm), iommu_sva_get_pasid, the context joins
//             wq->upasid_xa;
//   mmap    → the WQ's portal page in the process (VM_DONTCOPY: never in a fork child);
//   submit  → ENQCMD from user space: the CPU reads the 64-byte descriptor from process memory
//             and writes it to the portal as a Deferrable Memory Write carrying the task's PASID
//             (IA32_PASID, loaded from mm->pasid on first use); addresses in the descriptor,
//             completion record included, are process virtual addresses, translated by the
//             IOMMU through the process's own page table, page faults resolved over PRI;
//   release → (close, or exit_files at process exit after exit_mm) Drain PASID on the device,
//             then iommu_sva_unbind_device — the core §7.5 order: the device has stopped using
//             the PASID and its page requests are flushed before the PASID is detached. The
//             PASID itself stays with the mm until its final mmdrop.

import { invariant, SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { err, ok, type Result } from "../../base/result.js";
import { DESC, DESC_SIZE } from "../../hw/endpoints/dsa-regs.js";
import { IOMMU_PASID_INVALID } from "../../iommu/constants.js";
import type { IommuSva } from "../../iommu/sva.js";
import type { Cpu, CpuFault } from "../../mm/cpu.js";
import type { MmStruct } from "../../mm/mm-types.js";
import type { Process, ProcessFile } from "../../mm/process.js";
import type { IdxdWq, IdxdWqUser } from "./idxd-device.js";

/** What an ENQCMD did: accepted, Retry (the WQ is full), or a fault reading the descriptor. */
export type EnqcmdResult =
  | { readonly status: "accepted" | "retry" }
  | { readonly status: "fault"; readonly fault: CpuFault };

const ACCEPTED: EnqcmdResult = Object.freeze({ status: "accepted" });
const RETRY: EnqcmdResult = Object.freeze({ status: "retry" });

/** `struct idxd_user_context`: one open file of a user WQ. */
export class IdxdUserContext implements ProcessFile, IdxdWqUser {
  readonly name: string;
  /** The PASID of the bond (the mm's), or IOMMU_PASID_INVALID without SVA. */
  pasid = IOMMU_PASID_INVALID;
  sva: IommuSva | null = null;
  /** Released (closed, or revoked when the device went away). */
  closed = false;
  /** ENQCMD submissions (accepted, retried). */
  submitted = 0;
  retries = 0;

  constructor(
    readonly wq: IdxdWq,
    readonly pid: number,
    readonly mm: MmStruct,
  ) {
    this.name = `/dev/dsa/wq${wq.idxd.name}.${wq.id}`;
  }

  /**
   * ENQCMD of the descriptor at `descVa` in `task`'s memory to the WQ's portal (mapped in this
   * context's mm only). The CPU puts the task's PASID in the descriptor and the request.
   */
  enqcmd(task: Process, cpu: Cpu, descVa: bigint): EnqcmdResult {
    if (this.closed) throw new SimError(`${this.name}: ENQCMD after the file was released`);
    if (task.mm !== this.mm) {
      throw new SimError(`pid ${task.pid} has no mapping of ${this.name}'s portal`);
    }
    const desc = new Uint8Array(DESC_SIZE);
    const fault = cpu.loadInto(task.mm, descVa, desc, task);
    if (fault !== null) return { status: "fault", fault };
    // IA32_PASID: the #GP fixup loads the mm's PASID, which the bond gave it and which stays
    // until the mm's final drop (a task without one would get SIGSEGV).
    const pasid = this.wq.idxd.env.core.mmGetPasid(task.mm);
    invariant(pasid !== IOMMU_PASID_INVALID, `mm ${task.mm.id} lost its PASID while bound`);
    // ENQCMD (user): PASID field = IA32_PASID, privilege 0.
    desc[DESC.PASID] = pasid & 0xff;
    desc[DESC.PASID + 1] = (pasid >>> 8) & 0xff;
    desc[DESC.PASID + 2] = (pasid >>> 16) & 0x0f;
    desc[DESC.PASID + 3] = 0;
    if (this.wq.idxd.regs.enqcmd(this.wq.portal, desc, pasid, false)) {
      this.submitted++;
      return ACCEPTED;
    }
    this.retries++;
    return RETRY;
  }

  /** `idxd_cdev_release` → `idxd_file_dev_release`. */
  release(_task: Process): void {
    if (this.closed) return;
    idxdFileRelease(this);
  }

  revoke(): void {
    if (!this.closed) idxdFileRelease(this);
  }

  toJSON(): Json {
    return {
      file: this.name,
      pid: this.pid,
      mm: this.mm.id,
      pasid: this.pasid === IOMMU_PASID_INVALID ? null : this.pasid,
      bond: this.sva?.label ?? null,
      closed: this.closed,
      submitted: this.submitted,
      retries: this.retries,
    };
  }
}

/**
 * `idxd_cdev_open` by `task`: binds the task's mm to the device and installs the file. Returns
 * the fd and the context. ENODEV when the WQ has no character device (not an enabled user WQ),
 * EINVAL when the bond has no PASID, and the bind's errors.
 */
export function idxdCdevOpen(
  wq: IdxdWq,
  task: Process,
): Result<{ fd: number; ctx: IdxdUserContext }> {
  const mm = task.mm;
  if (mm === null) throw new SimError(`pid ${task.pid} has exited: it cannot open files`);
  if (wq.type !== "user" || !wq.enabled) return err("ENODEV");
  const idxd = wq.idxd;
  const core = idxd.env.core;
  const ctx = new IdxdUserContext(wq, task.pid, mm);
  if (idxd.userPasidEnabled) {
    const sva = core.svaBindDevice(idxd.pdev, mm);
    if (!sva.ok) {
      idxd.log("err", `pasid allocation failed: -${sva.errno}`);
      return sva;
    }
    const pasid = core.svaGetPasid(sva.value);
    if (pasid === IOMMU_PASID_INVALID) {
      core.svaUnbindDevice(sva.value);
      return err("EINVAL");
    }
    ctx.sva = sva.value;
    ctx.pasid = pasid;
    if (!wq.upasid.insert(pasid, ctx)) idxd.log("warn", "PASID entry already exist in xarray.");
  }
  wq.users.push(ctx);
  return ok({ fd: task.openFile(ctx), ctx });
}

/** `idxd_file_dev_release`: drain the PASID on the device, then unbind (core §7.5). */
function idxdFileRelease(ctx: IdxdUserContext): void {
  const wq = ctx.wq;
  const idxd = wq.idxd;
  ctx.closed = true;
  // Wait for in-flight operations to complete (only shared user WQs are modelled).
  if (ctx.pasid !== IOMMU_PASID_INVALID && idxd.state === "enabled") idxd.drainPasid(ctx.pasid);
  if (ctx.sva !== null) {
    idxd.env.core.svaUnbindDevice(ctx.sva);
    if (wq.upasid.load(ctx.pasid) === ctx) wq.upasid.erase(ctx.pasid);
    else idxd.log("warn", `xarray cmpxchg failed for pasid ${ctx.pasid}`);
  }
  const i = wq.users.indexOf(ctx);
  if (i >= 0) wq.users.splice(i, 1);
}
