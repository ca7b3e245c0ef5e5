// The DSA-like engine as software drives it: the idxd driver configures work queues through the
// register BAR (CPU MMIO), user space submits 64-byte descriptors to a shared WQ with ENQCMD
// (carrying its mm's PASID) and the kernel to a dedicated WQ with MOVDIR64B; the engine runs
// when the machine settles, and the completion record tells how the descriptor ended.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { ok, type Result } from "../../base/result.js";
import type { Device } from "../../bus/device.js";
import { DsaDevice } from "../../hw/endpoints/dsa.js";
import {
  CMDSTS_ACTIVE,
  CMDSTS_ERR,
  CR_SIZE,
  DSA_CMD,
  DSA_COMP,
  DSA_COMP_STATUS_WRITE,
  DSA_OPCODE,
  DSA_REG,
  IDXD_OP_FLAG,
} from "../../hw/endpoints/dsa-regs.js";
import { IOMMU_PASID_INVALID } from "../../iommu/constants.js";
import { describedName, type Machine } from "../../machine/machine.js";
import type { Process } from "../../mm/process.js";
import { DMA_DRIVERS } from "./device-dma.js";
import { readMapped } from "./expect-cpu.js";
import { DEV } from "./kinds.js";
import {
  type Args,
  BOOL,
  enumOf,
  type Failure,
  type FunctionSpec,
  failure,
  flags,
  int,
  JSON_VALUE,
  object,
  param,
  returnsOrFails,
  U64,
} from "./types.js";

const WQ = param(int(0, 15, "a work queue index (0..15)"), { doc: "the work queue" });
const PASID20 = param(int(0, 0xf_ffff, "a 20-bit PASID"), { optional: true });

/** CMDSTS error names, lower case, as `error:` codes of register commands. */
const CMD_ERRORS: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(CMDSTS_ERR).map(([k, v]) => [v, k.toLowerCase()]),
);
const COMMAND_FAILURES = {
  what: "a command error of CMDSTS (wq_mode, pasid_en, dev_noten, …)",
  codes: Object.values(CMD_ERRORS).filter((c) => c !== "success"),
};

const SUBMIT_FAILURES = {
  what: "retry (ENQCMD: the shared WQ refused the descriptor)",
  codes: ["retry"],
};

export const OPCODES = {
  noop: DSA_OPCODE.NOOP,
  drain: DSA_OPCODE.DRAIN,
  memmove: DSA_OPCODE.MEMMOVE,
  memfill: DSA_OPCODE.MEMFILL,
  compare: DSA_OPCODE.COMPARE,
  compval: DSA_OPCODE.COMPVAL,
} as const;

export const OP_FLAGS = flags({
  IDXD_OP_FLAG_FENCE: IDXD_OP_FLAG.FENCE,
  IDXD_OP_FLAG_BOF: IDXD_OP_FLAG.BOF,
  IDXD_OP_FLAG_CRAV: IDXD_OP_FLAG.CRAV,
  IDXD_OP_FLAG_RCR: IDXD_OP_FLAG.RCR,
  IDXD_OP_FLAG_RCI: IDXD_OP_FLAG.RCI,
  IDXD_OP_FLAG_CR: IDXD_OP_FLAG.CR,
  IDXD_OP_FLAG_CC: IDXD_OP_FLAG.CC,
});

const COMMANDS: Readonly<Record<string, number>> = {
  enable_device: DSA_CMD.ENABLE_DEVICE,
  disable_device: DSA_CMD.DISABLE_DEVICE,
  drain_all: DSA_CMD.DRAIN_ALL,
  abort_all: DSA_CMD.ABORT_ALL,
  reset_device: DSA_CMD.RESET_DEVICE,
  enable_wq: DSA_CMD.ENABLE_WQ,
  disable_wq: DSA_CMD.DISABLE_WQ,
  drain_wq: DSA_CMD.DRAIN_WQ,
  abort_wq: DSA_CMD.ABORT_WQ,
  reset_wq: DSA_CMD.RESET_WQ,
  drain_pasid: DSA_CMD.DRAIN_PASID,
  abort_pasid: DSA_CMD.ABORT_PASID,
};

/** Completion status names (idxd's DSA_COMP_*), lower case. */
const COMP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(DSA_COMP).map(([k, v]) => [v, k.toLowerCase()]),
);

function dsaOf(m: Machine, dev: Device): DsaDevice {
  const e = m.endpoints.engineOf(describedName(dev));
  if (!(e instanceof DsaDevice)) throw new SimError(`${dev.name} is not a DSA-like engine`);
  return e;
}

function w32(d: DsaDevice, off: number, v: number): void {
  d.bridge.mmioWrite(d.registerAddress(off), 4, BigInt(v >>> 0));
}

function r32(d: DsaDevice, off: number): number {
  return Number(d.bridge.mmioRead(d.registerAddress(off), 4));
}

/**
 * Writes CMD and, once the command is no longer active (drains complete as the engine runs),
 * returns its CMDSTS error.
 */
function command(m: Machine, d: DsaDevice, cmd: number, operand: number): Result | Failure {
  w32(d, DSA_REG.CMD, (cmd << 20) | operand);
  let sts = r32(d, DSA_REG.CMDSTS);
  if (sts & CMDSTS_ACTIVE) {
    m.settle();
    sts = r32(d, DSA_REG.CMDSTS);
  }
  const code = sts & 0xff;
  if (code === CMDSTS_ERR.SUCCESS) return ok(undefined);
  const name = CMD_ERRORS[code] ?? `0x${code.toString(16)}`;
  return failure(name, { cmdsts: name, code });
}

/** The operation of a submitted descriptor. */
export const OPCODE = param(enumOf(Object.keys(OPCODES)), { doc: "the operation" });

/** A descriptor's operands after `opcode`, as its submitter names them (`descriptor` reads them). */
export const DESC_FIELDS = {
  src_addr: param(U64, { optional: true }),
  dst_addr: param(U64, { optional: true }),
  src2_addr: param(U64, { optional: true, doc: "compare: the second buffer" }),
  pattern: param(U64, { optional: true, doc: "memfill: the 8-byte pattern" }),
  comp_pattern: param(U64, { optional: true, doc: "compval: the 8-byte pattern" }),
  xfer_size: param(int(0, 0xffff_ffff, "a transfer size"), { optional: true }),
  expected_res: param(int(0, 255, "an expected result"), { optional: true }),
  completion_addr: param(U64, { optional: true, doc: "where the completion record goes" }),
  flags: param(OP_FLAGS, {
    optional: true,
    doc: "default CRAV | RCR with a completion address (add IDXD_OP_FLAG_BOF to block on faults)",
  }),
};

/** Whether a submission waits for its completion record. */
export const WAIT = param(BOOL, {
  optional: true,
  doc: "settle the machine and return the completion record (default true)",
});

/**
 * The 64-byte descriptor (idxd's `struct dsa_hw_desc`) of a submission's `opcode` and
 * `DESC_FIELDS`, with the PASID field and privilege bit given.
 */
export function descriptor(a: Args, pasid: number, priv: boolean): Uint8Array {
  const opcode = OPCODES[a.opcode as keyof typeof OPCODES];
  const fl =
    (a.flags as number | undefined) ??
    (a.completion_addr === undefined ? 0 : IDXD_OP_FLAG.CRAV | IDXD_OP_FLAG.RCR);
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  const u64 = (at: number, v: unknown) =>
    dv.setBigUint64(at, (v as bigint | undefined) ?? 0n, true);
  dv.setUint32(0, pasid | (priv ? 0x8000_0000 : 0), true);
  dv.setUint32(4, ((opcode << 24) | fl) >>> 0, true);
  u64(8, a.completion_addr);
  u64(16, a.src_addr ?? a.pattern);
  u64(24, a.dst_addr ?? a.src2_addr ?? a.comp_pattern);
  dv.setUint32(32, (a.xfer_size as number | undefined) ?? 0, true);
  b[40] = (a.expected_res as number | undefined) ?? 0;
  return b;
}

/** The completion record at `addr` as a process reads it: through its page table. */
export function taskRecord(task: Process, addr: bigint): Json {
  const rec = task.mm === null ? null : readMapped(task.mm, addr, CR_SIZE);
  return rec === null ? null : completionView(rec.data);
}

/**
 * The completion record at `addr` as its reader sees it: through the submitting process's page
 * table, or (kernel use) through the domain the device's requests at `pasid` (or its RID) use.
 */
function readRecord(
  m: Machine,
  dev: Device,
  addr: bigint,
  task: Process | null,
  pasid: number | undefined,
): Json {
  if (task !== null) return taskRecord(task, addr);
  const domain =
    pasid === undefined ? m.core.getDomainForDev(dev) : m.programmedPasidDomain(dev, pasid);
  const pa = domain === null ? addr : m.core.iovaToPhys(domain, addr);
  return pa === 0n ? null : completionView(m.memory.readBytes(pa, CR_SIZE));
}

/**
 * What a submission returns: with `wait` (the default) the machine settles and the completion
 * record `read` finds at `completion_addr` is returned (null without one); without, null at once.
 */
export function awaitCompletion(m: Machine, a: Args, read: (addr: bigint) => Json): Result<Json> {
  if (a.wait === false) return ok(null);
  m.settle();
  const addr = a.completion_addr as bigint | undefined;
  return ok(addr === undefined ? null : read(addr));
}

/** A completion record's view: {status, write_fault, result, bytes_completed, fault_addr}. */
export function completionView(bytes: Uint8Array): Json {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, CR_SIZE);
  const status = bytes[0]!;
  return {
    status: COMP_NAMES[status & 0x7f] ?? `0x${(status & 0x7f).toString(16)}`,
    write_fault: (status & DSA_COMP_STATUS_WRITE) !== 0,
    result: bytes[1]!,
    bytes_completed: dv.getUint32(4, true),
    fault_addr: `0x${dv.getBigUint64(8, true).toString(16)}`,
  };
}

export const DSA: readonly FunctionSpec<Machine>[] = [
  {
    name: "dsa_wq_enable",
    area: "dsa",
    params: {
      dev: DEV,
      wq: WQ,
      mode: param(enumOf(["shared", "dedicated"]), {
        doc: "shared (ENQCMD, the submitter's PASID) or dedicated (MOVDIR64B)",
      }),
      size: param(int(1, 128, "a WQ size"), { optional: true, doc: "entries (default 16)" }),
      block_on_fault: param(BOOL, {
        optional: true,
        doc: "descriptors may block on page faults (page requests)",
      }),
      pasid: { ...PASID20, doc: "a dedicated WQ's PASID (default none: the DMA API's RID)" },
      priv: param(BOOL, { optional: true, doc: "a dedicated WQ's privileged mode" }),
    },
    returns: returnsOrFails("void", COMMAND_FAILURES),
    drivers: DMA_DRIVERS,
    ts: "WQCFG writes, Enable Device, Enable WQ (CPU MMIO)",
    doc: "What idxd does to configure and enable a work queue: WQCFG written through the register BAR, the device enabled if it is not, then Enable WQ. Fails with the CMDSTS error (pasid_en: PASID not enabled on the function, wq_mode, …).",
    call: (m, a) => {
      const d = dsaOf(m, a.dev as Device);
      const wq = a.wq as number;
      if (wq >= d.wqs.length) throw new SimError(`${d.name} has ${d.wqs.length} work queues`);
      const base = DSA_REG.WQCFG + 32 * wq;
      w32(d, base, (a.size as number | undefined) ?? 16);
      const pasid = a.pasid as number | undefined;
      w32(
        d,
        base + 8,
        (a.mode === "dedicated" ? 1 : 0) |
          (a.block_on_fault ? 2 : 0) |
          ((pasid ?? 0) << 8) |
          (pasid !== undefined ? 1 << 28 : 0) |
          (a.priv ? 1 << 29 : 0),
      );
      if (!d.enabled) {
        const r = command(m, d, DSA_CMD.ENABLE_DEVICE, 0);
        if (!r.ok) return r;
      }
      return command(m, d, DSA_CMD.ENABLE_WQ, wq);
    },
  },
  {
    name: "dsa_command",
    area: "dsa",
    params: {
      dev: DEV,
      command: param(enumOf(Object.keys(COMMANDS)), { doc: "the CMD register's command" }),
      operand: param(int(0, 0xf_ffff, "a 20-bit operand"), {
        optional: true,
        doc: "WQ index or PASID (default 0)",
      }),
    },
    returns: returnsOrFails("void", COMMAND_FAILURES),
    drivers: DMA_DRIVERS,
    ts: "CMD write, CMDSTS read (CPU MMIO)",
    doc: "Writes a command (drain_pasid and abort_pasid are what a driver does before unbinding a PASID: the device stops using it, a Stop Marker follows outstanding page requests); drains wait until the engine completed what they cover. Fails with the CMDSTS error.",
    call: (m, a) =>
      command(
        m,
        dsaOf(m, a.dev as Device),
        COMMANDS[a.command as string]!,
        (a.operand as number | undefined) ?? 0,
      ),
  },
  {
    name: "dsa_submit",
    area: "dsa",
    params: {
      dev: DEV,
      wq: WQ,
      opcode: OPCODE,
      task: param(object("process"), {
        optional: true,
        doc: "the submitting process: ENQCMD carries its mm's PASID; its completion record is read through its page table",
      }),
      pasid: { ...PASID20, doc: "ENQCMD(S) with this PASID instead of a task's" },
      priv: param(BOOL, { optional: true, doc: "ENQCMDS: a privileged (supervisor) submission" }),
      ...DESC_FIELDS,
      wait: WAIT,
    },
    returns: returnsOrFails(JSON_VALUE, SUBMIT_FAILURES),
    drivers: DMA_DRIVERS,
    ts: "bridge.mmioEnqueue / mmioWriteBlock of the descriptor to the WQ portal",
    doc: "Submits a descriptor: ENQCMD to a shared WQ (with the task's PASID, or `pasid`; fails with retry when the WQ refuses it), MOVDIR64B to a dedicated WQ (posted). With wait (default), the machine settles — the engine runs, page requests are answered — and the completion record is returned: {status (success, page_fault_nobof, page_fault_ir, translation_fail, …), write_fault, result, bytes_completed, fault_addr}, or null when none was written.",
    call: (m, a) => {
      const dev = a.dev as Device;
      const d = dsaOf(m, dev);
      const wq = d.wqs[a.wq as number];
      if (!wq) throw new SimError(`${d.name} has ${d.wqs.length} work queues`);
      const task = (a.task as Process | undefined) ?? null;
      let pasid = a.pasid as number | undefined;
      if (pasid === undefined && task !== null) {
        if (task.mm === null) throw new SimError(`pid ${task.pid} has exited`);
        const p = m.core.mmGetPasid(task.mm);
        // ENQCMD without a valid IA32_PASID faults (#GP) on the CPU: nothing reaches the device.
        if (p === IOMMU_PASID_INVALID) throw new SimError(`pid ${task.pid}'s mm has no PASID`);
        pasid = p;
      }
      const desc = descriptor(a, pasid ?? 0, a.priv === true);
      const portal = d.portalAddress(a.wq as number);
      if (wq.dedicated) {
        d.bridge.mmioWriteBlock(portal, desc);
      } else {
        if (pasid === undefined)
          throw new SimError("ENQCMD to a shared WQ needs a task or a pasid");
        if (!d.bridge.mmioEnqueue(portal, desc, pasid, (a.priv as boolean | undefined) ?? false)) {
          return failure("retry", { wq: wq.index, pasid });
        }
      }
      return awaitCompletion(m, a, (addr) => {
        const recPasid = wq.dedicated ? (wq.pasidEnable ? wq.pasid : undefined) : pasid;
        return readRecord(m, dev, addr, task, recPasid);
      });
    },
  },
];
