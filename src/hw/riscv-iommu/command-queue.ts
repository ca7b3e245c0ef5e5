// The command queue ("Command-Queue (CQ)"). Software writes 16-byte commands and advances `cqt`;
// the IOMMU processes them in order, synchronously, from the `cqt` write (or from whatever
// unblocks it: an error bit cleared, an ATS Invalidation Completion, a timeout).
//
// Time: an ATS.INVAL completes when the endpoint's Invalidation Completion arrives
// (`invalidationCompletion`), or times out `atsInvalidationTimeoutNs` of virtual time after it
// was sent (a timer on ctx.clock, so it fires inside `clock.advance`). The queue moves past an
// ATS.INVAL at once; an IOFENCE.C waits (`cqh` stays on it) until every earlier invalidation has
// completed or timed out; if any timed out it sets `cqcsr.cmd_to` and stops on the fence. An
// ATS.INVAL also waits while all 32 ITags of its destination are outstanding.
//
// Hot path (a driver's invalidations): commands are decoded from the 32-bit halves in place;
// the text of a trace record is built only while the trace bus listens (`traceBus.enabled`).

import type { VirtualClock } from "../../base/clock.js";
import type { Json } from "../../base/json.js";
import type { TraceBus } from "../../base/trace.js";
import {
  type InvalidationRequest,
  napotLog2Pages,
  type PrgResponse,
} from "../pci/translation-agent.js";
import type { IommuCapabilities } from "./capabilities.js";
import { deviceIdTooWide } from "./context.js";
import type { DirectoryCache } from "./directory-cache.js";
import type { ImplicitMemory } from "./implicit-memory.js";
import type { Iotlb } from "./iotlb.js";
import { nextIndex, QueueBase } from "./queue-base.js";
import { IPSR, QCSR } from "./registers.js";

const COMMAND_SIZE = 16;
const CQ_ERRORS = QCSR.mf | QCSR.bit9 | QCSR.cmd_ill;

export const OPCODE = { IOTINVAL: 1, IOFENCE: 2, IODIR: 3, ATS: 4 } as const;

/** What command execution acts on; provided by the IOMMU. */
export interface CommandEnv {
  readonly caps: IommuCapabilities;
  readonly mem: ImplicitMemory;
  readonly clock: VirtualClock;
  readonly name: string;
  readonly atsInvalidationTimeoutNs: number;
  readonly iotlb: Iotlb;
  readonly dir: DirectoryCache;
  be(): boolean;
  wsi(): boolean;
  /** `ddtp.iommu_mode` (IODIR's DID may not be wider than it supports). */
  ddtpMode(): number;
  raise(bits: number): void;
  sendInvalidation(msg: InvalidationRequest): void;
  sendPrgResponse(msg: PrgResponse): void;
  /** Only while it listens (`enabled`) are `trace` arguments built. */
  readonly traceBus: TraceBus;
  trace(opcode: string, fields: string, result: string): void;
}

interface Outstanding {
  readonly deviceId: number;
  readonly itag: number;
  readonly cancel: () => boolean;
}

/** The outcome of executing one command. */
type Step = "done" | "wait" | "illegal" | "memory-fault" | "timeout";

export class CommandQueue {
  readonly base: QueueBase;
  cqh = 0;
  cqt = 0;
  cqcsr = 0;
  /** Commands executed (advanced past), for views. */
  executed = 0;
  readonly #env: CommandEnv;
  /** Outstanding ATS invalidations in the order sent. */
  readonly #outstanding: Outstanding[] = [];
  /** ITags in use per destination device. */
  readonly #itags = new Map<number, number>();
  /** An ATS invalidation timed out since the last IOFENCE.C reported one. */
  #timedOut = false;
  #processing = false;
  #waitingOn = "";

  constructor(pasBits: number, env: CommandEnv) {
    this.base = new QueueBase(pasBits);
    this.#env = env;
  }

  get on(): boolean {
    return (this.cqcsr & QCSR.on) !== 0;
  }

  /** `ipsr.cip` conditions: an error bit or `fence_w_ip` with `cie`. */
  get conditions(): number {
    return (this.cqcsr & QCSR.ie) !== 0 && (this.cqcsr & (CQ_ERRORS | QCSR.fence_w_ip)) !== 0
      ? IPSR.cip
      : 0;
  }

  /** Number of ATS invalidations awaiting completion. */
  get outstandingInvalidations(): number {
    return this.#outstanding.length;
  }

  writeBase(half: 0 | 1, value: number): void {
    if ((this.cqcsr & (QCSR.on | QCSR.busy)) !== 0) return; // UNSPECIFIED while on: ignored
    this.base.write(half, value);
    this.cqt &= this.base.indexMask;
    this.cqh &= this.base.indexMask;
  }

  writeTail(value: number): void {
    this.cqt = (value & this.base.indexMask) >>> 0;
    this.process();
  }

  writeCsr(value: number): void {
    const wasEn = (this.cqcsr & QCSR.en) !== 0;
    const en = (value & QCSR.en) !== 0;
    let csr = this.cqcsr & ~(QCSR.en | QCSR.ie);
    csr |= value & (QCSR.en | QCSR.ie);
    csr &= ~(value & (CQ_ERRORS | QCSR.fence_w_ip)); // RW1C
    if (en && !wasEn) {
      this.cqh = 0;
      csr &= ~(CQ_ERRORS | QCSR.fence_w_ip);
      csr |= QCSR.on;
    } else if (!en && wasEn) {
      csr &= ~QCSR.on;
      this.#waitingOn = "";
    }
    this.cqcsr = csr >>> 0;
    this.#env.raise(this.conditions);
    this.process();
  }

  /** An Invalidation Completion from `deviceId` for the ITags set in `itagVector`. */
  invalidationCompletion(deviceId: number, itagVector: number): number {
    let completed = 0;
    for (let i = 0; i < this.#outstanding.length; ) {
      const o = this.#outstanding[i]!;
      if (o.deviceId === deviceId && (itagVector & (1 << o.itag)) !== 0) {
        o.cancel();
        this.#outstanding.splice(i, 1);
        this.#releaseItag(o.deviceId, o.itag);
        completed++;
      } else {
        i++;
      }
    }
    if (completed > 0) this.process();
    return completed;
  }

  /** Runs commands until the queue is empty, stopped by an error, or waiting. */
  process(): void {
    if (this.#processing) return; // re-entered from a completion delivered while sending
    this.#processing = true;
    try {
      while (this.on && (this.cqcsr & CQ_ERRORS) === 0 && this.cqh !== this.cqt) {
        const step = this.#executeAt(this.cqh);
        if (step === "wait") return;
        if (step === "illegal") {
          this.cqcsr |= QCSR.cmd_ill;
        } else if (step === "memory-fault") {
          this.cqcsr |= QCSR.mf;
        } else if (step === "timeout") {
          this.cqcsr |= QCSR.bit9;
        } else {
          this.cqh = nextIndex(this.cqh, this.base.entries);
          this.executed++;
          continue;
        }
        this.#env.raise(this.conditions);
        return;
      }
    } finally {
      this.#processing = false;
    }
  }

  #executeAt(index: number): Step {
    const env = this.#env;
    const ppn = this.base.pageOf(index, COMMAND_SIZE);
    const off = this.base.offsetOf(index, COMMAND_SIZE);
    const mem = env.mem;
    if (mem.load128(ppn, off, env.be()) !== 0) {
      if (env.traceBus.enabled) env.trace("fetch", `cqh=${index}`, "memory-fault");
      return "memory-fault";
    }
    const lo0 = mem.lo;
    const hi0 = mem.hi;
    const lo1 = mem.lo2;
    const hi1 = mem.hi2;
    const opcode = lo0 & 0x7f;
    const func3 = (lo0 >>> 7) & 7;
    switch (opcode) {
      case OPCODE.IOTINVAL:
        return this.#iotinval(func3, lo0, hi0, lo1, hi1);
      case OPCODE.IOFENCE:
        return this.#iofence(func3, lo0, hi0, lo1, hi1);
      case OPCODE.IODIR:
        return this.#iodir(func3, lo0, hi0, lo1, hi1);
      case OPCODE.ATS:
        return this.#ats(func3, lo0, hi0, lo1, hi1);
      default:
        return this.#illegal(`opcode ${opcode}`, lo0, hi0, lo1, hi1);
    }
  }

  #illegal(what: string, lo0: number, hi0: number, lo1: number, hi1: number): Step {
    if (this.#env.traceBus.enabled) {
      const raw = `${hex32(hi0)}${hex32(lo0, false)}_${hex32(hi1)}${hex32(lo1, false)}`;
      this.#env.trace("illegal", `${what} cmd=${raw}`, "cmd_ill");
    }
    return "illegal";
  }

  #iotinval(func3: number, lo0: number, hi0: number, lo1: number, hi1: number): Step {
    const caps = this.#env.caps;
    const name = func3 === 0 ? "IOTINVAL.VMA" : "IOTINVAL.GVMA";
    if (func3 > 1) return this.#illegal(`IOTINVAL func3 ${func3}`, lo0, hi0, lo1, hi1);
    const av = (lo0 & (1 << 10)) !== 0;
    const pscid = (lo0 >>> 12) & 0xf_ffff;
    const pscv = (hi0 & 1) !== 0;
    const gv = (hi0 & 2) !== 0;
    const nl = (hi0 & 4) !== 0;
    const gscid = (hi0 >>> 12) & 0xffff;
    const s = (lo1 & (1 << 9)) !== 0;
    // Reserved: bit 11, bits 43:35, 63:60; dword1 bits 8:0 and 63:62; NL and S without their
    // extensions.
    const reserved =
      (lo0 & (1 << 11)) !== 0 ||
      (hi0 & 0xff8) !== 0 ||
      (hi0 & 0xf000_0000) !== 0 ||
      (lo1 & 0x1ff) !== 0 ||
      (hi1 & 0xc000_0000) !== 0 ||
      (nl && !caps.NL) ||
      (s && !caps.S);
    if (reserved) return this.#illegal(`${name} reserved bits`, lo0, hi0, lo1, hi1);
    if (func3 === 1 && pscv) return this.#illegal("IOTINVAL.GVMA with PSCV=1", lo0, hi0, lo1, hi1);
    let addr = (lo1 >>> 10) + (hi1 & 0x3fff_ffff) * 0x40_0000;
    // With S the address operand is a NAPOT range (address range invalidation extension).
    const log2Pages = av && s ? napotLog2Pages(addr) : 0;
    if (log2Pages > 0) addr -= addr % 2 ** log2Pages;
    const iotlb = this.#env.iotlb;
    const dropped =
      func3 === 0
        ? iotlb.invalidateVma(gv, gscid, pscv, pscid, av, addr, log2Pages)
        : iotlb.invalidateGvma(gv, gscid, av, addr, log2Pages);
    if (this.#env.traceBus.enabled) {
      const fields = [
        `AV=${+av}`,
        func3 === 0 ? `PSCV=${+pscv}` : "",
        `GV=${+gv}`,
        pscv ? `PSCID=${pscid}` : "",
        gv ? `GSCID=${gscid}` : "",
        av ? `ADDR=0x${(addr * 4096).toString(16)}` : "",
        av && s ? `size=0x${(2 ** (log2Pages + 12)).toString(16)}` : "",
        nl ? "NL=1" : "",
      ]
        .filter((x) => x !== "")
        .join(" ");
      this.#env.trace(name, fields, `dropped=${dropped}`);
    }
    return "done";
  }

  #iofence(func3: number, lo0: number, hi0: number, lo1: number, hi1: number): Step {
    const env = this.#env;
    if (func3 !== 0) return this.#illegal(`IOFENCE func3 ${func3}`, lo0, hi0, lo1, hi1);
    const av = (lo0 & (1 << 10)) !== 0;
    const wsi = (lo0 & (1 << 11)) !== 0;
    // Reserved: bits 31:14 and dword1 bits 63:62; WSI when wire-signaled interrupts are off.
    if ((lo0 & 0xffff_c000) !== 0 || (hi1 & 0xc000_0000) !== 0 || (wsi && !env.wsi())) {
      return this.#illegal("IOFENCE.C reserved bits", lo0, hi0, lo1, hi1);
    }
    if (this.#outstanding.length > 0) {
      if (this.#waitingOn !== "IOFENCE.C") {
        this.#waitingOn = "IOFENCE.C";
        if (env.traceBus.enabled) {
          env.trace(
            "IOFENCE.C",
            fenceText(lo0),
            `waiting for ${this.#outstanding.length} ATS.INVAL`,
          );
        }
      }
      return "wait";
    }
    this.#waitingOn = "";
    if (this.#timedOut) {
      this.#timedOut = false;
      if (env.traceBus.enabled) env.trace("IOFENCE.C", fenceText(lo0), "cmd_to");
      return "timeout";
    }
    if (av) {
      // ADDR[63:2] is dword1 bits 61:0: the address is that times 4.
      const addrLo = (lo1 << 2) >>> 0;
      const addrHi = ((hi1 << 2) | (lo1 >>> 30)) >>> 0;
      const ppn = addrHi * 0x10_0000 + (addrLo >>> 12);
      if (!env.mem.inRange(ppn) || !env.mem.store32(ppn, addrLo & 0xffc, hi0, env.be())) {
        if (env.traceBus.enabled) env.trace("IOFENCE.C", fenceText(lo0), "cqmf");
        return "memory-fault";
      }
    }
    if (wsi) {
      this.cqcsr |= QCSR.fence_w_ip;
      env.raise(this.conditions);
    }
    if (env.traceBus.enabled) env.trace("IOFENCE.C", fenceText(lo0), "done");
    return "done";
  }

  #iodir(func3: number, lo0: number, hi0: number, lo1: number, hi1: number): Step {
    if (func3 > 1) return this.#illegal(`IODIR func3 ${func3}`, lo0, hi0, lo1, hi1);
    const name = func3 === 0 ? "IODIR.INVAL_DDT" : "IODIR.INVAL_PDT";
    const pid = (lo0 >>> 12) & 0xf_ffff;
    const dv = (hi0 & 2) !== 0;
    const did = hi0 >>> 8;
    // Reserved: bits 11:10, 32, 39:34 and all of dword1; PID for INVAL_DDT.
    if ((lo0 & 0xc00) !== 0 || (hi0 & 0xfd) !== 0 || lo1 !== 0 || hi1 !== 0) {
      return this.#illegal(`${name} reserved bits`, lo0, hi0, lo1, hi1);
    }
    // "When DV operand is 1, the value of the DID operand must not be wider than that supported
    // by the ddtp.iommu_mode"; the PID of INVAL_PDT not wider than the widest PDT supported.
    const env = this.#env;
    if (dv && deviceIdTooWide(did, env.ddtpMode(), env.caps.MSI_FLAT)) {
      return this.#illegal(`${name} DID wider than the DDT`, lo0, hi0, lo1, hi1);
    }
    const pidBits = env.caps.PD20 ? 20 : env.caps.PD17 ? 17 : 8;
    if (func3 === 1 && pid >>> pidBits !== 0) {
      return this.#illegal(`${name} PID wider than ${pidBits} bits`, lo0, hi0, lo1, hi1);
    }
    const dir = env.dir;
    let dropped: number;
    if (func3 === 0) {
      if (pid !== 0) return this.#illegal("IODIR.INVAL_DDT with PID", lo0, hi0, lo1, hi1);
      dropped = dir.invalidateDdt(dv, did);
      if (this.#env.traceBus.enabled) {
        this.#env.trace(name, dv ? `DV=1 DID=${did}` : "DV=0", `dropped=${dropped}`);
      }
    } else {
      if (!dv) return this.#illegal("IODIR.INVAL_PDT with DV=0", lo0, hi0, lo1, hi1);
      dropped = dir.invalidatePdt(did, pid);
      if (this.#env.traceBus.enabled)
        this.#env.trace(name, `DID=${did} PID=${pid}`, `dropped=${dropped}`);
    }
    return "done";
  }

  #ats(func3: number, lo0: number, hi0: number, lo1: number, hi1: number): Step {
    const env = this.#env;
    if (!env.caps.ATS) return this.#illegal("ATS without capabilities.ATS", lo0, hi0, lo1, hi1);
    if (func3 > 1) return this.#illegal(`ATS func3 ${func3}`, lo0, hi0, lo1, hi1);
    // Reserved: bits 11:10 and 39:34. The PAYLOAD is the message body, passed through.
    if ((lo0 & 0xc00) !== 0 || (hi0 & 0xfc) !== 0) {
      return this.#illegal("ATS reserved bits", lo0, hi0, lo1, hi1);
    }
    const pid = (lo0 >>> 12) & 0xf_ffff;
    const pv = (hi0 & 1) !== 0;
    const dsv = (hi0 & 2) !== 0;
    const rid = (hi0 >>> 8) & 0xffff;
    const dseg = hi0 >>> 24;
    // The destination: RID within segment DSEG when DSV, else within segment 0.
    const deviceId = ((dsv ? dseg : 0) << 16) | rid;
    const pasidText = pv && env.traceBus.enabled ? ` PID=${pid}` : "";
    if (func3 === 1) {
      const prgIndex = hi1 & 0x1ff;
      const responseCode = (hi1 >>> 12) & 0xf;
      env.sendPrgResponse({
        deviceId,
        pasidValid: pv,
        pasid: pv ? pid : 0,
        prgIndex,
        responseCode,
      });
      if (env.traceBus.enabled) {
        env.trace(
          "ATS.PRGR",
          `DID=${deviceId}${pasidText} PRGI=${prgIndex} code=${responseCode}`,
          "sent",
        );
      }
      return "done";
    }
    const used = this.#itags.get(deviceId) ?? 0;
    if (used === 0xffff_ffff) {
      if (this.#waitingOn !== "ATS.INVAL") {
        this.#waitingOn = "ATS.INVAL";
        if (env.traceBus.enabled)
          env.trace("ATS.INVAL", `DID=${deviceId}`, "waiting for a free ITag");
      }
      return "wait";
    }
    this.#waitingOn = "";
    let itag = 0;
    while ((used & (1 << itag)) !== 0) itag++;
    this.#itags.set(deviceId, (used | (1 << itag)) >>> 0);
    const timer = env.clock.schedule(
      env.atsInvalidationTimeoutNs,
      `${env.name}: ATS.INVAL timeout DID=${deviceId} ITag=${itag}`,
      () => this.#timeout(deviceId, itag),
    );
    this.#outstanding.push({ deviceId, itag, cancel: timer.cancel });
    const page = (lo1 >>> 12) + hi1 * 0x10_0000;
    const global = (lo1 & 1) !== 0;
    const s = (lo1 & (1 << 11)) !== 0;
    if (env.traceBus.enabled) {
      env.trace(
        "ATS.INVAL",
        `DID=${deviceId}${pasidText} G=${+global} S=${+s} ADDR=0x${(page * 4096).toString(16)}`,
        `ITag=${itag}`,
      );
    }
    env.sendInvalidation({ deviceId, pasidValid: pv, pasid: pv ? pid : 0, global, s, page, itag });
    return "done";
  }

  #timeout(deviceId: number, itag: number): void {
    const i = this.#outstanding.findIndex((o) => o.deviceId === deviceId && o.itag === itag);
    if (i < 0) return;
    this.#outstanding.splice(i, 1);
    this.#releaseItag(deviceId, itag);
    this.#timedOut = true;
    if (this.#env.traceBus.enabled)
      this.#env.trace("ATS.INVAL", `DID=${deviceId} ITag=${itag}`, "timed out");
    this.process();
  }

  #releaseItag(deviceId: number, itag: number): void {
    const used = (this.#itags.get(deviceId) ?? 0) & ~(1 << itag);
    if (used === 0) this.#itags.delete(deviceId);
    else this.#itags.set(deviceId, used >>> 0);
  }

  toJSON(): Json {
    return {
      cqb: this.base.toJSON(),
      cqh: this.cqh,
      cqt: this.cqt,
      cqcsr: {
        cqen: (this.cqcsr & QCSR.en) !== 0,
        cie: (this.cqcsr & QCSR.ie) !== 0,
        cqmf: (this.cqcsr & QCSR.mf) !== 0,
        cmd_to: (this.cqcsr & QCSR.bit9) !== 0,
        cmd_ill: (this.cqcsr & QCSR.cmd_ill) !== 0,
        fence_w_ip: (this.cqcsr & QCSR.fence_w_ip) !== 0,
        cqon: this.on,
        busy: false,
      },
      executed: this.executed,
      waiting: this.#waitingOn || null,
      outstanding_invalidations: this.#outstanding.map((o) => ({
        device_id: o.deviceId,
        itag: o.itag,
      })),
      timed_out: this.#timedOut,
    };
  }
}

/** The operands of an IOFENCE.C (dword 0 low half) for its trace record. */
function fenceText(lo0: number): string {
  const bit = (n: number) => (lo0 >>> n) & 1;
  return `AV=${bit(10)} WSI=${bit(11)} PR=${bit(12)} PW=${bit(13)}`;
}

function hex32(x: number, prefix = true): string {
  return `${prefix ? "0x" : ""}${(x >>> 0).toString(16).padStart(8, "0")}`;
}
