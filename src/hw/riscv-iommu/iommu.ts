// A RISC-V IOMMU (ratified specification, version 1.0 with its later ratified updates): the
// memory-mapped register file with its WARL behaviour, and the glue between the translation
// process, the IOATC, the three in-memory queues and interrupt generation.
//
// Software (a driver) reaches it only through `read32/write32/read64/write64` at register offsets
// and through memory. Devices reach it through the TranslationAgent interface. Everything happens
// synchronously inside those calls, except ATS invalidation timeouts (timers on ctx.clock).
//
// Choices where the specification leaves room (all documented at the register concerned):
// busy bits read 0 (everything completes synchronously); writes the specification calls
// UNSPECIFIED (fctl while not Off or with a queue on, a queue base while the queue is on, ddtp
// from one DDT depth straight to another) are ignored; accesses of a size other than 4 or 8
// bytes, misaligned, or 8 bytes wide on a 4-byte register are simulator misuse (SimError).

import { hex } from "../../base/bits.js";
import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import type { PhysicalMemory } from "../memory.js";
import {
  type AtsCompletion,
  type AtsRequest,
  DmaRequest,
  DmaResponse,
  type EndpointPort,
  encodeNapotPage,
  type InvalidationRequest,
  type PageRequestMessage,
  PRG_RESPONSE_CODE,
  type PrgResponse,
  type TranslationAgent,
} from "../pci/translation-agent.js";
import {
  capabilitiesJson,
  encodeCapabilities,
  type IommuCapabilities,
  type IommuConfig,
  type ResolvedIommuConfig,
  resolveConfig,
} from "./capabilities.js";
import { CommandQueue } from "./command-queue.js";
import type { DeviceContext, ProcessContext } from "./context.js";
import { DirectoryCache } from "./directory-cache.js";
import { FaultQueue, FaultRecord } from "./fault-queue.js";
import { FAULTS, type IommuFault, PCIE_MESSAGE_CODE, reportedWhenDtf, TTYP } from "./faults.js";
import { ImplicitMemory } from "./implicit-memory.js";
import { type InterruptSink, Interrupts } from "./interrupts.js";
import { Iotlb, type IotlbEntry } from "./iotlb.js";
import { PageRequestQueue } from "./page-request-queue.js";
import {
  DDTP_MODE,
  DDTP_MODE_NAMES,
  FCTL,
  ppnOfHalves,
  REG,
  REG_SPACE,
  REG64,
  TR_REQ_CTL,
} from "./registers.js";
import { type TranslateEnv, Translator } from "./translate.js";

/** Read-only view of the IOMMU address-translation caches (for inspection and tests). */
export interface IoatcView {
  iotlbEntries(): ReadonlyArray<Readonly<IotlbEntry>>;
  deviceContexts(): readonly DeviceContext[];
  processContexts(): readonly ProcessContext[];
  readonly stats: {
    readonly iotlbHits: number;
    readonly iotlbMisses: number;
    readonly ddtHits: number;
    readonly ddtMisses: number;
    readonly pdtHits: number;
    readonly pdtMisses: number;
  };
}

export class RiscvIommu implements TranslationAgent, TranslateEnv {
  readonly name: string;
  readonly config: ResolvedIommuConfig;
  readonly caps: IommuCapabilities;
  readonly physical: PhysicalMemory;
  readonly mem: ImplicitMemory;
  readonly iotlb: Iotlb;
  readonly dir: DirectoryCache;
  readonly rcidBits: number;
  readonly mcidBits: number;
  readonly #ctx: SimContext;
  readonly #capsLo: number;
  readonly #capsHi: number;
  readonly #cq: CommandQueue;
  readonly #fq: FaultQueue;
  readonly #pq: PageRequestQueue;
  readonly #irq: Interrupts;
  readonly #translator: Translator;
  readonly #ports = new Map<number, EndpointPort>();
  readonly #rec = new FaultRecord();
  #fctl: number;
  #ddtpLo = 0;
  #ddtpHi = 0;
  #qosid = 0;
  // debug translation interface
  #trIovaLo = 0;
  #trIovaHi = 0;
  #trCtlLo = 0;
  #trCtlHi = 0;
  #trRespLo = 0;
  #trRespHi = 0;
  readonly #trReq = new DmaRequest();
  readonly #trResp = new DmaResponse();
  /** Fault records suppressed by DC.tc.DTF. */
  #suppressed = 0;

  constructor(ctx: SimContext, memory: PhysicalMemory, name: string, config: IommuConfig = {}) {
    this.#ctx = ctx;
    this.physical = memory;
    this.name = name;
    this.config = resolveConfig(config);
    const caps = this.config.caps;
    this.caps = caps;
    this.rcidBits = this.config.rcidBits;
    this.mcidBits = this.config.mcidBits;
    if (caps.Svrsw60t59b) {
      throw new SimError(
        "capabilities.Svrsw60t59b: the pgtable walker treats PTE bits 60:59 as reserved",
      );
    }
    const enc = encodeCapabilities(caps);
    this.#capsLo = enc.lo;
    this.#capsHi = enc.hi;
    this.#fctl = caps.IGS === "WSI" ? FCTL.WSI : 0;
    this.mem = new ImplicitMemory(memory, caps.PAS);
    this.iotlb = new Iotlb(this.config.iotlbEntries);
    this.dir = new DirectoryCache(this.config.ddtCacheEntries, this.config.pdtCacheEntries);
    const be = () => this.be;
    this.#irq = new Interrupts({
      vectors: this.config.vectors,
      msi: caps.IGS !== "WSI",
      mem: this.mem,
      wsi: () => (this.#fctl & FCTL.WSI) !== 0,
      be,
      onEvent: (cause, vector) => {
        if (ctx.trace.enabled) ctx.trace.emit("riscv_iommu:interrupt", name, { cause, vector });
      },
      onMsiFault: (lo, hi) => this.#msiWriteFault(lo, hi),
    });
    const raise = (bits: number) => this.#irq.raise(bits);
    this.#fq = new FaultQueue(caps.PAS, this.mem, be, raise);
    this.#pq = new PageRequestQueue(caps.PAS, this.mem, be, raise);
    this.#cq = new CommandQueue(caps.PAS, {
      caps,
      mem: this.mem,
      clock: ctx.clock,
      name,
      atsInvalidationTimeoutNs: this.config.atsInvalidationTimeoutNs,
      iotlb: this.iotlb,
      dir: this.dir,
      be,
      wsi: () => (this.#fctl & FCTL.WSI) !== 0,
      ddtpMode: () => this.ddtpMode,
      raise,
      sendInvalidation: (m) => this.#sendInvalidation(m),
      sendPrgResponse: (m) => this.#sendPrgResponse(m),
      traceBus: ctx.trace,
      trace: (opcode, fields, result) =>
        this.#ctx.trace.emit("riscv_iommu:command", name, { opcode, fields, result }),
    });
    this.#translator = new Translator(this);
  }

  // ---------------------------------------------------------------- state the walks read

  /** `fctl.BE` */
  get be(): boolean {
    return (this.#fctl & FCTL.BE) !== 0;
  }

  /** `fctl.GXL` (read-only 0: Sv32x4 is not modelled). */
  get gxl(): boolean {
    return false;
  }

  get trace() {
    return this.#ctx.trace;
  }

  /** `ddtp.iommu_mode` */
  get ddtpMode(): number {
    return this.#ddtpLo & 0xf;
  }

  /** `ddtp.PPN` */
  get ddtpPpn(): number {
    return ppnOfHalves(this.#ddtpLo, this.#ddtpHi);
  }

  /** The platform's interrupt controller (WSI wires and MSI messages). */
  set interruptSink(sink: InterruptSink | null) {
    this.#irq.sink = sink;
  }

  get interruptSink(): InterruptSink | null {
    return this.#irq.sink;
  }

  // ---------------------------------------------------------------- device side

  translate(req: DmaRequest, out: DmaResponse): void {
    this.#translator.translate(req, out);
  }

  atsTranslate(req: AtsRequest, out: AtsCompletion): void {
    this.#translator.atsTranslate(req, out);
  }

  connectPort(deviceId: number, port: EndpointPort): void {
    if (!Number.isInteger(deviceId) || deviceId < 0 || deviceId >= 0x100_0000) {
      throw new SimError(`device_id ${deviceId} is not a 24-bit value`);
    }
    if (this.#ports.has(deviceId)) {
      throw new SimError(`${this.name}: device_id ${hex(deviceId)} already has a port`);
    }
    this.#ports.set(deviceId, port);
  }

  disconnectPort(deviceId: number): void {
    this.#ports.delete(deviceId);
  }

  /**
   * A "Page Request" or "Stop Marker" message ("PCIe ATS Page Request handling"): queued in the
   * PQ when the device's DC enables ATS and PRI, else answered by the IOMMU itself when the
   * message needs a response (Last=1 and not a Stop Marker).
   */
  pageRequest(msg: PageRequestMessage): void {
    checkMessage(msg);
    const stopMarker = msg.pasidValid && msg.last && !msg.read && !msg.write;
    const needsResponse = msg.last && !stopMarker;
    const fault = this.#translator.locateForMessage(msg.deviceId);
    const dc = this.#translator.located;
    let result: string;
    let code = -1;
    let prpr = false;
    if (fault !== null) {
      // No DC: PRPR assumed 0. Bare mode and a too-wide device_id are Invalid Request, the
      // faults locating the DC Response Failure.
      this.#messageFault(fault, msg.deviceId, msg, PCIE_MESSAGE_CODE.page_request, false);
      code =
        fault.cause === 260
          ? PRG_RESPONSE_CODE.invalid_request
          : PRG_RESPONSE_CODE.response_failure;
      result = fault.code;
    } else if (!dc!.EN_ATS || !dc!.EN_PRI) {
      this.#messageFault(
        FAULTS.transaction_type_disallowed,
        msg.deviceId,
        msg,
        PCIE_MESSAGE_CODE.page_request,
        dc!.DTF,
      );
      code = PRG_RESPONSE_CODE.invalid_request;
      prpr = dc!.PRPR;
      result = "EN_PRI=0";
    } else {
      const outcome = this.#pq.enqueue(msg);
      result = outcome;
      prpr = dc!.PRPR;
      if (outcome === "off" || outcome === "memory-fault")
        code = PRG_RESPONSE_CODE.response_failure;
      else if (outcome === "overflow") code = PRG_RESPONSE_CODE.success;
    }
    if (this.trace.enabled) {
      this.trace.emit("riscv_iommu:page_request", this.name, {
        did: msg.deviceId,
        pid: msg.pasidValid ? msg.pasid : null,
        addr: BigInt(msg.page) << 12n,
        prgi: msg.prgIndex,
        last: msg.last,
        r: msg.read,
        w: msg.write,
        x: msg.execute,
        priv: msg.privileged,
        result: stopMarker ? `stop-marker ${result}` : result,
      });
    }
    if (code < 0 || !needsResponse) return;
    // Response Failure carries the PASID of a request that had one; Success and Invalid Request
    // only when PRPR is 1.
    const withPasid = msg.pasidValid && (code === PRG_RESPONSE_CODE.response_failure || prpr);
    this.#sendPrgResponse({
      deviceId: msg.deviceId,
      pasidValid: withPasid,
      pasid: withPasid ? msg.pasid : 0,
      prgIndex: msg.prgIndex,
      responseCode: code,
    });
  }

  /** An "Invalidation Completion" message: needs a DC with EN_ATS, like other ATS traffic. */
  invalidationCompletion(deviceId: number, itagVector: number): void {
    const fault = this.#translator.locateForMessage(deviceId);
    const none = { pasidValid: false, pasid: 0, privileged: false };
    if (fault !== null) {
      this.#messageFault(fault, deviceId, none, PCIE_MESSAGE_CODE.invalidate_completion, false);
      return;
    }
    const dc = this.#translator.located!;
    if (!dc.EN_ATS) {
      this.#messageFault(
        FAULTS.transaction_type_disallowed,
        deviceId,
        none,
        PCIE_MESSAGE_CODE.invalidate_completion,
        dc.DTF,
      );
      return;
    }
    this.#cq.invalidationCompletion(deviceId, itagVector >>> 0);
  }

  // ---------------------------------------------------------------- faults

  /** Queues `rec` in the FQ unless DC.tc.DTF suppresses its cause ("Fault record CAUSE"). */
  report(rec: FaultRecord, dtf: boolean): void {
    if (dtf && !reportedWhenDtf(rec.cause)) {
      this.#suppressed++;
      return;
    }
    if (this.trace.enabled) {
      this.trace.emit("riscv_iommu:fault_record", this.name, {
        cause: rec.cause,
        ttyp: rec.ttyp,
        did: rec.did,
        pid: rec.pid,
        pv: rec.pv,
        priv: rec.priv,
        iotval: rec.iotval,
        iotval2: rec.iotval2,
      });
    }
    this.#fq.report(rec);
  }

  #messageFault(
    fault: IommuFault,
    deviceId: number,
    msg: { pasidValid: boolean; pasid: number; privileged: boolean },
    messageCode: number,
    dtf: boolean,
  ): void {
    const rec = this.#rec.clear();
    rec.cause = fault.cause;
    rec.ttyp = TTYP.pcie_message_request;
    rec.did = deviceId;
    rec.pv = msg.pasidValid;
    rec.pid = msg.pasidValid ? msg.pasid : 0;
    rec.priv = msg.pasidValid && msg.privileged;
    rec.iotvalLo = messageCode;
    this.report(rec, dtf);
  }

  #msiWriteFault(addrLo: number, addrHi: number): void {
    // "IOMMU MSI write access fault": TTYP 0, iotval = msi_addr.
    const rec = this.#rec.clear();
    rec.cause = FAULTS.iommu_msi_write_access_fault.cause;
    rec.iotvalLo = addrLo;
    rec.iotvalHi = addrHi;
    this.report(rec, false);
  }

  // ---------------------------------------------------------------- messages to endpoints

  #sendInvalidation(m: InvalidationRequest): void {
    if (this.trace.enabled) {
      this.trace.emit("riscv_iommu:ats_inval", this.name, {
        did: m.deviceId,
        pid: m.pasidValid ? m.pasid : null,
        address: BigInt(m.page) << 12n,
        itag: m.itag,
      });
    }
    this.#ports.get(m.deviceId)?.invalidationRequest(m);
  }

  #sendPrgResponse(m: PrgResponse): void {
    if (this.trace.enabled) {
      this.trace.emit("riscv_iommu:page_response", this.name, {
        did: m.deviceId,
        pid: m.pasidValid ? m.pasid : null,
        prgi: m.prgIndex,
        code: m.responseCode,
      });
    }
    this.#ports.get(m.deviceId)?.prgResponse(m);
  }

  // ---------------------------------------------------------------- MMIO

  /** A 4-byte register read at `offset`. */
  read32(offset: number): number {
    checkAccess(offset, 4);
    return this.#readHalf(offset) >>> 0;
  }

  /** A 4-byte register write at `offset`. */
  write32(offset: number, value: number): void {
    checkAccess(offset, 4);
    if (!Number.isInteger(value) || value < -0x8000_0000 || value > 0xffff_ffff) {
      throw new SimError(`${this.name}: register value ${value} is not 32-bit`);
    }
    this.#writeHalf(offset, value >>> 0);
  }

  /** An 8-byte register read (only 8-byte registers). */
  read64(offset: number): bigint {
    checkAccess(offset, 8);
    const lo = this.#readHalf(offset) >>> 0;
    const hi = this.#readHalf(offset + 4) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** An 8-byte register write: as the high half then the low half, which the spec permits. */
  write64(offset: number, value: bigint): void {
    checkAccess(offset, 8);
    if (value < 0n || value >= 1n << 64n) {
      throw new SimError(`${this.name}: register value ${value} is not 64-bit`);
    }
    this.#writeHalf(offset + 4, Number(value >> 32n));
    this.#writeHalf(offset, Number(value & 0xffff_ffffn));
  }

  #readHalf(off: number): number {
    const caps = this.caps;
    switch (off) {
      case REG.capabilities:
        return this.#capsLo;
      case REG.capabilities + 4:
        return this.#capsHi;
      case REG.fctl:
        return this.#fctl;
      case REG.ddtp:
        return this.#ddtpLo; // busy reads 0
      case REG.ddtp + 4:
        return this.#ddtpHi;
      case REG.cqb:
        return this.#cq.base.lo;
      case REG.cqb + 4:
        return this.#cq.base.hi;
      case REG.cqh:
        return this.#cq.cqh;
      case REG.cqt:
        return this.#cq.cqt;
      case REG.fqb:
        return this.#fq.base.lo;
      case REG.fqb + 4:
        return this.#fq.base.hi;
      case REG.fqh:
        return this.#fq.head;
      case REG.fqt:
        return this.#fq.tail;
      case REG.pqb:
        return caps.ATS ? this.#pq.base.lo : 0;
      case REG.pqb + 4:
        return caps.ATS ? this.#pq.base.hi : 0;
      case REG.pqh:
        return caps.ATS ? this.#pq.head : 0;
      case REG.pqt:
        return caps.ATS ? this.#pq.tail : 0;
      case REG.cqcsr:
        return this.#cq.cqcsr;
      case REG.fqcsr:
        return this.#fq.csr;
      case REG.pqcsr:
        return caps.ATS ? this.#pq.csr : 0;
      case REG.ipsr:
        return this.#irq.ipsr;
      case REG.tr_req_iova:
        return caps.DBG ? this.#trIovaLo : 0;
      case REG.tr_req_iova + 4:
        return caps.DBG ? this.#trIovaHi : 0;
      case REG.tr_req_ctl:
        return caps.DBG ? this.#trCtlLo : 0;
      case REG.tr_req_ctl + 4:
        return caps.DBG ? this.#trCtlHi : 0;
      case REG.tr_response:
        return caps.DBG ? this.#trRespLo : 0;
      case REG.tr_response + 4:
        return caps.DBG ? this.#trRespHi : 0;
      case REG.iommu_qosid:
        return caps.QOSID ? this.#qosid : 0;
      case REG.icvec:
        return this.#irq.icvec;
      default:
        if (off >= REG.msi_cfg_tbl && off < REG.msi_cfg_tbl + 256) {
          return this.#irq.readMsi(off - REG.msi_cfg_tbl);
        }
        // HPM (capabilities.HPM is 0), reserved and custom space: read-only zero.
        return 0;
    }
  }

  #writeHalf(off: number, v: number): void {
    const caps = this.caps;
    switch (off) {
      case REG.fctl:
        this.#writeFctl(v);
        return;
      case REG.ddtp:
        this.#writeDdtp(v, this.#ddtpHi);
        return;
      case REG.ddtp + 4:
        this.#writeDdtp(this.#ddtpLo, v);
        return;
      case REG.cqb:
      case REG.cqb + 4:
        this.#cq.writeBase(off === REG.cqb ? 0 : 1, v);
        return;
      case REG.cqt:
        this.#cq.writeTail(v);
        return;
      case REG.fqb:
      case REG.fqb + 4:
        this.#fq.writeBase(off === REG.fqb ? 0 : 1, v);
        return;
      case REG.fqh:
        this.#fq.writeHead(v);
        return;
      case REG.pqb:
      case REG.pqb + 4:
        if (caps.ATS) this.#pq.writeBase(off === REG.pqb ? 0 : 1, v);
        return;
      case REG.pqh:
        if (caps.ATS) this.#pq.writeHead(v);
        return;
      case REG.cqcsr:
        this.#cq.writeCsr(v);
        return;
      case REG.fqcsr:
        this.#fq.writeCsr(v);
        return;
      case REG.pqcsr:
        if (caps.ATS) this.#pq.writeCsr(v);
        return;
      case REG.ipsr:
        this.#irq.writeIpsr(v, this.#conditions());
        return;
      case REG.tr_req_iova:
        if (caps.DBG && !this.#trBusy) this.#trIovaLo = v & 0xffff_f000;
        return;
      case REG.tr_req_iova + 4:
        if (caps.DBG && !this.#trBusy) this.#trIovaHi = v;
        return;
      case REG.tr_req_ctl:
        if (caps.DBG && !this.#trBusy) {
          // Go/Busy is RW1S; Priv, Exe, NW and PID are WARL; bits 11:4 reserved.
          this.#trCtlLo = v & 0xffff_f00f;
          if ((v & TR_REQ_CTL.go) !== 0) this.#debugTranslate();
        }
        return;
      case REG.tr_req_ctl + 4:
        if (caps.DBG && !this.#trBusy) this.#trCtlHi = v & 0xffff_ff01; // PV, DID
        return;
      case REG.iommu_qosid:
        if (caps.QOSID) {
          const rcid = v & 0xfff & (2 ** this.rcidBits - 1);
          const mcid = (v >>> 16) & 0xfff & (2 ** this.mcidBits - 1);
          this.#qosid = (rcid | (mcid << 16)) >>> 0;
        }
        return;
      case REG.icvec:
        this.#irq.writeIcvec(v & 0xffff);
        return;
      default:
        if (off >= REG.msi_cfg_tbl && off < REG.msi_cfg_tbl + 256) {
          if (caps.IGS !== "WSI") this.#irq.writeMsi(off - REG.msi_cfg_tbl, v);
        }
      // Read-only, HPM, reserved and custom registers ignore writes.
    }
  }

  #writeFctl(v: number): void {
    // UNSPECIFIED while the IOMMU is not Off or a queue is enabled: ignored here.
    const busy =
      this.ddtpMode !== DDTP_MODE.Off ||
      ((this.#cq.cqcsr | this.#fq.csr | this.#pq.csr) & 0x1_0001) !== 0;
    if (busy) return;
    let f = this.#fctl;
    if (this.caps.END) f = (f & ~FCTL.BE) | (v & FCTL.BE);
    if (this.caps.IGS === "BOTH") f = (f & ~FCTL.WSI) | (v & FCTL.WSI);
    this.#fctl = f;
    this.#irq.refresh();
  }

  #writeDdtp(lo: number, hi: number): void {
    const old = this.ddtpMode;
    let mode = lo & 0xf;
    // WARL: reserved and custom modes keep the old value; a direct change between DDT depths is
    // UNSPECIFIED and ignored (software goes through Off or Bare).
    if (mode > DDTP_MODE["3LVL"]) mode = old;
    if (old >= DDTP_MODE["1LVL"] && mode >= DDTP_MODE["1LVL"] && mode !== old) mode = old;
    const pasPpnBits = this.caps.PAS - 12;
    const loPpnMask = pasPpnBits >= 22 ? 0xffff_fc00 : ((2 ** pasPpnBits - 1) << 10) >>> 0;
    const hiPpnMask = pasPpnBits > 22 ? 2 ** (pasPpnBits - 22) - 1 : 0;
    this.#ddtpLo = ((lo & loPpnMask) | mode) >>> 0;
    this.#ddtpHi = (hi & hiPpnMask) >>> 0;
  }

  #conditions(): number {
    return this.#cq.conditions | this.#fq.conditions | this.#pq.conditions;
  }

  get #trBusy(): boolean {
    return (this.#trCtlLo & TR_REQ_CTL.go) !== 0;
  }

  /** The debug interface: an Untranslated request from tr_req_iova/tr_req_ctl. */
  #debugTranslate(): void {
    const req = this.#trReq;
    const ctl = this.#trCtlLo;
    req.deviceId = this.#trCtlHi >>> 8;
    req.pasidValid = (this.#trCtlHi & 1) !== 0;
    req.pasid = ctl >>> 12;
    req.privileged = (ctl & TR_REQ_CTL.priv) !== 0;
    req.translated = false;
    // Exe: read for execute; NW=1: read only; NW=0: read and write.
    req.access =
      (ctl & TR_REQ_CTL.exe) !== 0 ? "execute" : (ctl & TR_REQ_CTL.nw) !== 0 ? "read" : "write";
    req.iovaPage = (this.#trIovaLo >>> 12) + this.#trIovaHi * 0x10_0000;
    req.iovaOffset = 0;
    const out = this.#trResp;
    this.#translator.translate(req, out);
    if (out.fault !== null) {
      this.#trRespLo = 1;
      this.#trRespHi = 0;
    } else {
      const s = out.pageShift > 12;
      const field = encodeNapotPage(out.ppn, out.pageShift);
      // fault 0 | PBMT 8:7 | S 9 | PPN 53:10
      this.#trRespLo = ((out.pbmt << 7) | (s ? 1 << 9 : 0) | ((field % 0x40_0000) << 10)) >>> 0;
      this.#trRespHi = Math.floor(field / 0x40_0000) >>> 0;
    }
    this.#trCtlLo &= ~TR_REQ_CTL.go;
  }

  // ---------------------------------------------------------------- views

  /** Read-only view of the caches with their counters. */
  get ioatc(): IoatcView {
    const iotlb = this.iotlb;
    const dir = this.dir;
    return {
      iotlbEntries: () => iotlb.entries(),
      deviceContexts: () => dir.ddt.values(),
      processContexts: () => dir.pdt.values(),
      stats: {
        iotlbHits: iotlb.hits,
        iotlbMisses: iotlb.misses,
        ddtHits: dir.ddtHits,
        ddtMisses: dir.ddtMisses,
        pdtHits: dir.pdtHits,
        pdtMisses: dir.pdtMisses,
      },
    };
  }

  /** Fault-injection hook: reads of page `ppn` by the IOMMU report data corruption. */
  setPoisoned(ppn: number, poisoned: boolean): void {
    this.mem.setPoisoned(ppn, poisoned);
  }

  /** Number of fault records suppressed by DC.tc.DTF. */
  get suppressedFaults(): number {
    return this.#suppressed;
  }

  registersJson(): Json {
    return {
      capabilities: capabilitiesJson(this.caps),
      fctl: {
        BE: (this.#fctl & FCTL.BE) !== 0,
        WSI: (this.#fctl & FCTL.WSI) !== 0,
        GXL: false,
      },
      ddtp: {
        iommu_mode: DDTP_MODE_NAMES[this.ddtpMode] ?? this.ddtpMode,
        busy: false,
        PPN: hex(this.ddtpPpn),
      },
      ...(this.caps.DBG
        ? {
            tr_req_iova: hex((BigInt(this.#trIovaHi) << 32n) | BigInt(this.#trIovaLo)),
            tr_req_ctl: hex((BigInt(this.#trCtlHi) << 32n) | BigInt(this.#trCtlLo)),
            tr_response: hex((BigInt(this.#trRespHi) << 32n) | BigInt(this.#trRespLo)),
          }
        : {}),
      ...(this.caps.QOSID
        ? { iommu_qosid: { RCID: this.#qosid & 0xfff, MCID: this.#qosid >>> 16 } }
        : {}),
    };
  }

  queuesJson(): Json {
    return {
      cq: this.#cq.toJSON(),
      fq: this.#fq.toJSON(),
      ...(this.caps.ATS ? { pq: this.#pq.toJSON() } : {}),
    };
  }

  cachesJson(): Json {
    return { iotlb: this.iotlb.toJSON(), ...(this.dir.toJSON() as { [k: string]: Json }) };
  }

  toJSON(): Json {
    return {
      name: this.name,
      registers: this.registersJson(),
      queues: this.queuesJson(),
      interrupts: this.#irq.toJSON(),
      caches: this.cachesJson(),
      suppressed_faults: this.#suppressed,
    };
  }
}

/** Offsets that may be accessed 8 bytes wide. */
function isReg64(offset: number): boolean {
  if (REG64.has(offset)) return true;
  if (offset >= REG.msi_cfg_tbl && offset < REG.msi_cfg_tbl + 256) return (offset & 0xf) === 0;
  return offset >= REG.iohpmctr && offset < REG.tr_req_iova; // iohpmctr1-31, iohpmevt1-31
}

function checkAccess(offset: number, size: 4 | 8): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > REG_SPACE) {
    throw new SimError(`IOMMU register offset ${offset} is outside the 4-KiB register page`);
  }
  if (offset % size !== 0) {
    throw new SimError(`IOMMU register access of ${size} bytes at ${hex(offset)} is misaligned`);
  }
  if (size === 8 && !isReg64(offset)) {
    throw new SimError(`8-byte access at ${hex(offset)} spans 4-byte registers`);
  }
}

function checkMessage(msg: PageRequestMessage): void {
  if (!Number.isInteger(msg.deviceId) || msg.deviceId < 0 || msg.deviceId >= 0x100_0000) {
    throw new SimError(`page request: device_id ${msg.deviceId} is not a 24-bit value`);
  }
  if (msg.pasidValid && !(Number.isInteger(msg.pasid) && msg.pasid >= 0 && msg.pasid < 0x10_0000)) {
    throw new SimError(`page request: PASID ${msg.pasid} is not a 20-bit value`);
  }
  if (!Number.isInteger(msg.prgIndex) || msg.prgIndex < 0 || msg.prgIndex > 0x1ff) {
    throw new SimError(`page request: PRG index ${msg.prgIndex} is not 9-bit`);
  }
  if (!Number.isInteger(msg.page) || msg.page < 0 || msg.page >= 2 ** 52) {
    throw new SimError(`page request: page ${msg.page} is not a 52-bit page number`);
  }
}
