// The IO bridge of one host bridge: the root complex's path for what endpoints send upstream and
// for what the CPU sends down to their BARs.
//
// Inbound memory requests (DMA) are routed page by page through the PCIe model (routeUpstream:
// bus mastering, ACS, peer-to-peer decode), translated at the root complex by the segment's
// TranslationAgent (the IOMMU; none means addresses are physical) with the requester ID it sees,
// and then read or written in PhysicalMemory. A page the IOMMU refuses aborts the transaction:
// RISC-V IOMMU "Process to translate an IOVA" asks the IO bridge to abort, and for PCIe a read's
// completion carries Completer Abort (hardware guidelines, "Aborting transactions"); fabric
// failures (blocked routes, addresses nothing decodes) are Unsupported Requests. Writes are posted,
// so a real device learns nothing of an aborted write; the status still says what happened, and a
// device model decides what it may know. Bytes of pages before the aborting page have landed.
//
// A peer's BAR is served by the device model attached to that function (`attach`). Translated
// physical addresses that are no RAM but a BAR of this hierarchy reach the peer through the root
// complex when the host routes peer-to-peer (PciHost.peerToPeer), else they are Unsupported.
//
// ATS Translation Requests and PRI messages travel to the TranslationAgent with the requester ID
// the root complex sees; they are never address-routed to peers (PCIe routes AT=Translation
// Requests and Page Requests to the root complex).
//
// An optional observer (`observer`, e.g. the isolation oracle of src/check) hears every page of
// inbound DMA and every ATS Translation Request once it is handled: who asked, for which
// untranslated page, and which physical page it reached or why it failed. It costs one null
// check per page when nobody observes; the bridge fills one reusable DmaPageEvent.
//
// Hot path (`readPages`/`writePages`): plain page numbers, one reusable route, request and
// response; no BigInt. Copying between a page and the device's buffer allocates nothing when it
// is up to 16 bytes (a byte loop), up to 128 bytes at 4-byte aligned places (a loop over 32-bit
// views: the page's own and one per device buffer, made once), a whole page into the buffer, or
// the whole buffer into a page (`set` with the array itself: JS has no bulk copy of part of an
// array into another without a view of the part). Other copies, larger and partial or
// misaligned, go through one short-lived subarray view per page, which V8 copies faster than
// any loop (256 bytes: ≈ 50 ns against ≈ 80 ns for words; 4 KiB: ≈ 80 ns against ≈ 3 µs).

import { PAGE_SHIFT, PAGE_SIZE } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import type { PhysicalMemory } from "../memory.js";
import type { PciHost } from "./host.js";
import { formatRid } from "./regs.js";
import {
  newPciRoute,
  PCI_REQ_PASID,
  PCI_REQ_TRANSLATED,
  type PciBlockReason,
  PciBridge,
  type PciFunction,
} from "./topology.js";
import {
  type AtsCompletion,
  AtsRequest,
  DmaRequest,
  DmaResponse,
  type EndpointPort,
  type PageRequestMessage,
  type TranslationAgent,
  type TranslationFault,
} from "./translation-agent.js";

/** What the device model behind a PCI function provides to the fabric. */
export interface PciDeviceModel extends EndpointPort {
  readonly name: string;
  /** A memory read of `out.length` bytes at `offset` of BAR `bar` (CPU MMIO or a peer's DMA). */
  barRead(bar: number, offset: number, out: Uint8Array): void;
  /** A memory write of `data` at `offset` of BAR `bar`. */
  barWrite(bar: number, offset: number, data: Uint8Array): void;
  /**
   * A Deferrable Memory Write (what ENQCMD/ENQCMDS emit): 64 bytes with the submitter's PASID.
   * True when the function accepted it, false for a Retry completion. A model without it
   * answers Unsupported Request (the CPU sees Retry too).
   */
  barDeferrableWrite?(
    bar: number,
    offset: number,
    data: Uint8Array,
    pasid: number,
    privileged: boolean,
  ): boolean;
}

/** Request attributes of a DMA, as the endpoint puts them in its TLPs. Reused by callers. */
export class DmaAttrs {
  /** A PASID TLP prefix. */
  pasidValid = false;
  pasid = 0;
  /** Privileged Mode Requested (meaningful with a PASID). */
  privileged = false;
  /** AT = Translated: the address is a translated (physical) address from the device's ATC. */
  translated = false;
  /** Devfn the request is tagged with (a DMA alias); negative: the function's own. */
  sourceDevfn = -1;
  /**
   * For a Translated request the device made from its ATC, what the TLP does not carry and only
   * observers read: the untranslated page the ATC entry translated (-1: unknown) and the
   * attributes (PASID, Privileged) of the untranslated request it stands for.
   */
  atcPage = -1;
  atcOrigin: DmaAttrs | null = null;

  static of(o: DmaOptions = {}): DmaAttrs {
    return new DmaAttrs().set(o);
  }

  set(o: DmaOptions): this {
    if (
      o.pasid !== undefined &&
      !(Number.isInteger(o.pasid) && o.pasid >= 0 && o.pasid < 1 << 20)
    ) {
      throw new SimError(`PASID ${o.pasid} is not a 20-bit value`);
    }
    this.pasidValid = o.pasid !== undefined;
    this.pasid = o.pasid ?? 0;
    this.privileged = o.privileged ?? false;
    this.translated = o.translated ?? false;
    this.sourceDevfn = o.sourceDevfn ?? -1;
    this.atcPage = -1;
    this.atcOrigin = null;
    return this;
  }
}

export interface DmaOptions {
  readonly pasid?: number;
  readonly privileged?: boolean;
  readonly translated?: boolean;
  readonly sourceDevfn?: number;
}

/** Why the bridge aborted a transaction. */
export type DmaAbortReason =
  | "translation-fault"
  | PciBlockReason
  | "not-memory"
  | "no-device-model";

/** SC (successful completion), or the UR / CA status an aborted read's completion carries. */
export type DmaCompletionStatus = "SC" | "UR" | "CA";

/** How a DMA ended. Filled by the bridge; callers reuse one per device. */
export class DmaStatus {
  ok = true;
  /** Bytes transferred before the abort (all of them when ok). */
  done = 0;
  completion: DmaCompletionStatus = "SC";
  reason: DmaAbortReason | null = null;
  /** The IOMMU's fault behind a "translation-fault" abort. */
  fault: TranslationFault | null = null;
  /** Device address (page and offset) of the access that aborted. */
  page = 0;
  offset = 0;
  /** Requester ID with segment (bits 23:16) the IOMMU saw last, or -1 when none reached it. */
  deviceId = -1;
  /** The peer whose BAR served the last page, or null. */
  peer: PciFunction | null = null;
  /** When non-null, the physical page of each page accessed (-1 for a peer's BAR) is appended. */
  pages: number[] | null = null;

  /** The aborting access's device address (bigint; off the hot path). */
  get address(): bigint {
    return (BigInt(this.page) << BigInt(PAGE_SHIFT)) | BigInt(this.offset);
  }

  toJSON(): Json {
    if (this.ok) return { ok: true, done: this.done };
    return {
      ok: false,
      done: this.done,
      completion: this.completion,
      reason: this.reason,
      fault: this.fault ? { code: this.fault.code, cause: this.fault.cause } : null,
      address: jsonAddr(this.address),
    };
  }
}

/** What kind of request a DmaPageEvent describes. */
export type DmaPageKind = "untranslated" | "translated" | "ats-translation";

/**
 * One page of inbound traffic as the root complex handled it: a page of a memory request, or an
 * ATS Translation Request. The bridge fills one object and reuses it: observers copy what they
 * keep.
 */
export class DmaPageEvent {
  /** The function that sent the request. */
  fn: PciFunction | null = null;
  kind: DmaPageKind = "untranslated";
  write = false;
  /**
   * The request's PASID prefix and Privileged Mode (only with a PASID); for a Translated request
   * from the device's ATC, those of the untranslated request the ATC entry stands for.
   */
  pasidValid = false;
  pasid = 0;
  privileged = false;
  /** Requester ID with segment the translation agent saw; -1 when the request never reached it. */
  deviceId = -1;
  /** The page of the address the request carried (for a Translated request, a physical page). */
  page = 0;
  /**
   * The untranslated page (IOVA or virtual address): the request's own page, except for a
   * Translated request, where it is the page the device's ATC translated (`fromAtc`), or -1 when
   * the device sent a physical address of its own.
   */
  iovaPage = 0;
  /** A Translated request the device made from an ATC entry. */
  fromAtc = false;
  /** The fabric routed the request to a peer's BAR below the root complex: nothing translated it. */
  routedToPeer = false;
  /**
   * The physical page the translation gave (what the access reached, or an ATS completion
   * granted with the permission asked for); -1 when nothing was translated.
   */
  ppn = -1;
  /** The peer whose BAR served the page, or null. */
  peer: PciFunction | null = null;
  /** The page was accessed (for ATS: the translation was granted with the permission asked for). */
  ok = false;
  /** The translation agent's fault, or null. */
  fault: TranslationFault | null = null;
  /** Why the page failed, or null. */
  reason: DmaAbortReason | null = null;
}

/** Hears every page of inbound traffic an IoBridge handles (see DmaPageEvent). */
export interface DmaObserver {
  observeDma(ev: DmaPageEvent): void;
}

/** All ones of 1, 2, 4 and 8 bytes: what a CPU load nothing claims returns. */
const ALL_ONES: readonly bigint[] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map(
  (n) => (1n << BigInt(8 * n)) - 1n,
);
const TWO32N = 1n << 32n;

/** Copies up to this size are byte loops; aligned ones up to WORD_COPY_MAX loop over words. */
const LOOP_COPY_MAX = 16;
const WORD_COPY_MAX = 128;

export class IoBridge {
  readonly host: PciHost;
  readonly memory: PhysicalMemory;
  readonly #models = new Map<PciFunction, PciDeviceModel>();
  /** Functions whose model is connected to `#portsAgent`, with the device_id used. */
  readonly #ports = new Map<PciFunction, number>();
  #portsAgent: TranslationAgent | null = null;
  readonly #route = newPciRoute();
  readonly #req = new DmaRequest();
  readonly #resp = new DmaResponse();
  readonly #atsReq = new AtsRequest();
  /** Hears every page of inbound traffic and every ATS Translation Request; null: nobody. */
  observer: DmaObserver | null = null;
  readonly #event = new DmaPageEvent();
  /** For a Translated request from an ATC entry: its untranslated page minus the physical one. */
  #iovaDelta = 0;
  /** CPU MMIO data of 1, 2, 4 and 8 bytes (views of one 8-byte scratch, by size). */
  readonly #scratch: readonly Uint8Array[];
  /** The BAR and offset `#mmioTarget` and `#claim` found. */
  #bar = 0;
  #offset = 0;
  /** 32-bit views of device buffers (whole ArrayBuffers), made on first use; the last one used. */
  readonly #words = new WeakMap<ArrayBufferLike, Uint32Array>();
  #lastBuffer: ArrayBufferLike | null = null;
  #lastWords: Uint32Array | null = null;

  constructor(host: PciHost, memory: PhysicalMemory) {
    this.host = host;
    this.memory = memory;
    const scratch = new Uint8Array(8);
    this.#scratch = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => scratch.subarray(0, n));
  }

  // ---------------------------------------------------------------- device models

  /**
   * Puts `model` behind `fn`: its BARs answer peer and CPU accesses, and it receives the
   * IOMMU's messages for the function's requester ID. After enumeration (RIDs are bus numbers).
   */
  attach(fn: PciFunction, model: PciDeviceModel): void {
    if (fn.host !== this.host)
      throw new SimError(`${fn.name} is not a function of ${this.host.name}`);
    if (!this.host.enumerated) {
      throw new SimError(
        `${model.name}: attach device models after ${this.host.name} is enumerated`,
      );
    }
    if (fn.isBridge) throw new SimError(`${fn.name} is a bridge: device models sit on endpoints`);
    const other = this.#models.get(fn);
    if (other) throw new SimError(`${fn.name} already has the device model ${other.name}`);
    this.#syncPorts();
    this.#models.set(fn, model);
    this.#connect(fn, model);
  }

  /** Removes the model behind `fn` (hot-remove, driver-less tests); false if there was none. */
  detach(fn: PciFunction): boolean {
    const had = this.#models.delete(fn);
    const id = this.#ports.get(fn);
    if (id !== undefined) {
      this.#portsAgent?.disconnectPort(id);
      this.#ports.delete(fn);
    }
    return had;
  }

  model(fn: PciFunction): PciDeviceModel | undefined {
    return this.#models.get(fn);
  }

  /** The device_id the IOMMU sees for `fn`'s own requests: segment in 23:16, then the RID. */
  requesterId(fn: PciFunction, sourceDevfn = -1): number {
    return (this.host.segment << 16) | this.host.upstreamRequesterId(fn, sourceDevfn);
  }

  #syncPorts(): void {
    const agent = this.host.translationAgent;
    if (agent === this.#portsAgent) return;
    const old = this.#portsAgent;
    if (old) for (const id of this.#ports.values()) old.disconnectPort(id);
    this.#ports.clear();
    this.#portsAgent = agent;
    if (agent) for (const [fn, model] of this.#models) this.#connect(fn, model);
  }

  #connect(fn: PciFunction, model: PciDeviceModel): void {
    const agent = this.#portsAgent;
    if (!agent) return;
    // Behind a bridge that takes ownership the IOMMU cannot address the function's messages.
    const rid = this.host.upstreamRequesterId(fn);
    if (rid !== fn.rid) return;
    const id = (this.host.segment << 16) | rid;
    agent.connectPort(id, model);
    this.#ports.set(fn, id);
  }

  // ---------------------------------------------------------------- DMA (hot path)

  /** `fn` reads `length` bytes at device address `page`:`offset` into `buf` at `bufOffset`. */
  readPages(
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    length: number,
    out: DmaStatus,
  ): DmaStatus {
    return this.transferPages(false, fn, attrs, page, offset, buf, bufOffset, length, out);
  }

  /** `fn` writes `length` bytes of `buf` from `bufOffset` at device address `page`:`offset`. */
  writePages(
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    length: number,
    out: DmaStatus,
  ): DmaStatus {
    return this.transferPages(true, fn, attrs, page, offset, buf, bufOffset, length, out);
  }

  // ---------------------------------------------------------------- DMA (convenience)

  /** A DMA read at a 64-bit device address; the data holds zeros past an abort. */
  read(
    fn: PciFunction,
    opts: DmaOptions,
    address: bigint,
    length: number,
  ): { data: Uint8Array; status: DmaStatus } {
    const data = new Uint8Array(length);
    const status = new DmaStatus();
    this.readPages(
      fn,
      DmaAttrs.of(opts),
      pageOf(address),
      offsetOf(address),
      data,
      0,
      length,
      status,
    );
    return { data, status };
  }

  /** A DMA write at a 64-bit device address. */
  write(fn: PciFunction, opts: DmaOptions, address: bigint, data: Uint8Array): DmaStatus {
    const status = new DmaStatus();
    return this.writePages(
      fn,
      DmaAttrs.of(opts),
      pageOf(address),
      offsetOf(address),
      data,
      0,
      data.length,
      status,
    );
  }

  /** `writePages` or `readPages` chosen by `write` (for callers whose direction is data). */
  transferPages(
    write: boolean,
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    length: number,
    out: DmaStatus,
  ): DmaStatus {
    if (!(offset >= 0 && offset < PAGE_SIZE && (offset | 0) === offset)) {
      throw new SimError(`DMA offset ${offset} is not within a page`);
    }
    if (!(length >= 0 && bufOffset >= 0 && bufOffset + length <= buf.length)) {
      throw new SimError(`DMA of ${length} bytes at ${bufOffset} does not fit its buffer`);
    }
    if (!(page >= 0 && page < 2 ** 52 && Math.floor(page) === page)) {
      throw new SimError(`DMA page ${page} is not a page number of a 64-bit address`);
    }
    out.ok = true;
    out.done = 0;
    out.completion = "SC";
    out.reason = null;
    out.fault = null;
    out.deviceId = -1;
    out.peer = null;
    this.#syncPorts();
    const agent = this.#portsAgent;
    const host = this.host;
    const flags =
      (attrs.translated ? PCI_REQ_TRANSLATED : 0) | (attrs.pasidValid ? PCI_REQ_PASID : 0);
    const route = this.#route;
    const observer = this.observer;
    if (observer !== null) this.#beginEvent(fn, attrs, write, page);
    let p = page;
    let o = offset;
    let done = 0;
    while (done < length) {
      const n = Math.min(PAGE_SIZE - o, length - done);
      host.routeUpstream(fn, p, route, flags, attrs.sourceDevfn);
      if (route.kind === "blocked") {
        abort(out, "UR", route.reason!, p, o);
        if (observer !== null) this.#observe(observer, p, -1, null, route.reason, null);
        break;
      }
      if (route.kind === "peer") {
        const target = route.target!;
        if (!this.#barAccess(target, route.bar, p, o, buf, bufOffset + done, n, write)) {
          abort(out, "UR", "no-device-model", p, o);
          if (observer !== null) this.#observe(observer, p, -1, target, "no-device-model", null);
          break;
        }
        out.peer = target;
        out.pages?.push(-1);
        if (observer !== null) this.#observe(observer, p, -1, target, null, null);
      } else {
        const id = (host.segment << 16) | route.rid;
        out.deviceId = id;
        let ppn = p;
        if (agent !== null) {
          const req = this.#req;
          req.deviceId = id;
          req.pasidValid = attrs.pasidValid;
          req.pasid = attrs.pasidValid ? attrs.pasid : 0;
          req.privileged = attrs.pasidValid && attrs.privileged;
          req.translated = attrs.translated;
          req.access = write ? "write" : "read";
          req.iovaPage = p;
          req.iovaOffset = o;
          const resp = this.#resp;
          agent.translate(req, resp);
          if (resp.fault !== null) {
            abort(out, "CA", "translation-fault", p, o);
            out.fault = resp.fault;
            if (observer !== null) {
              this.#observe(observer, p, -1, null, "translation-fault", resp.fault);
            }
            break;
          }
          ppn = resp.ppn;
        }
        if (this.#copyPage(write, ppn, o, buf, bufOffset + done, n)) {
          out.peer = null;
          out.pages?.push(ppn);
          if (observer !== null) this.#observe(observer, p, ppn, null, null, null);
        } else {
          const claim = host.peerToPeer ? this.#claim(ppn) : null;
          if (
            claim === null ||
            !this.#barAccess(claim, this.#bar, ppn, o, buf, bufOffset + done, n, write)
          ) {
            abort(out, "UR", "not-memory", p, o);
            if (observer !== null) this.#observe(observer, p, ppn, claim, "not-memory", null);
            break;
          }
          out.peer = claim;
          out.pages?.push(-1);
          if (observer !== null) this.#observe(observer, p, ppn, claim, null, null);
        }
      }
      done += n;
      p++;
      o = 0;
    }
    out.done = done;
    if (host.ctx.trace.enabled) this.#traceDma(fn, attrs, page, offset, length, write, out);
    return out;
  }

  /** The per-transfer part of the event: who sends what kind of request. */
  #beginEvent(fn: PciFunction, attrs: DmaAttrs, write: boolean, page: number): void {
    const ev = this.#event;
    const origin = attrs.translated && attrs.atcPage >= 0 ? attrs.atcOrigin : null;
    const a = origin ?? attrs;
    ev.fn = fn;
    ev.kind = attrs.translated ? "translated" : "untranslated";
    ev.write = write;
    ev.pasidValid = a.pasidValid;
    ev.pasid = a.pasidValid ? a.pasid : 0;
    ev.privileged = a.pasidValid && a.privileged;
    ev.fromAtc = origin !== null;
    this.#iovaDelta = origin !== null ? attrs.atcPage - page : 0;
  }

  /** Tells `observer` how page `p` of the current transfer ended (the route is `#route`'s). */
  #observe(
    observer: DmaObserver,
    p: number,
    ppn: number,
    peer: PciFunction | null,
    reason: DmaAbortReason | null,
    fault: TranslationFault | null,
  ): void {
    const ev = this.#event;
    const route = this.#route;
    ev.page = p;
    ev.iovaPage = ev.kind === "untranslated" ? p : ev.fromAtc ? p + this.#iovaDelta : -1;
    ev.routedToPeer = route.kind === "peer";
    ev.deviceId = route.kind === "root-complex" ? (this.host.segment << 16) | route.rid : -1;
    ev.ppn = ppn;
    ev.peer = peer;
    ev.ok = reason === null;
    ev.fault = fault;
    ev.reason = reason;
    observer.observeDma(ev);
  }

  /**
   * Copies `n` bytes between page `ppn` at `o` and `buf` at `at` (`write`: into the page);
   * false when the page is not RAM.
   */
  #copyPage(
    write: boolean,
    ppn: number,
    o: number,
    buf: Uint8Array,
    at: number,
    n: number,
  ): boolean {
    const mem = this.memory;
    const byte = buf.byteOffset + at;
    if (n > LOOP_COPY_MAX && n <= WORD_COPY_MAX && ((byte | o | n) & 3) === 0) {
      const words = this.#wordsOf(buf);
      if ((byte + n) >>> 2 <= words.length) {
        const pw = write ? mem.writablePageU32(ppn) : mem.pageU32(ppn);
        if (pw === null) return false;
        const b = byte >>> 2;
        const p = o >>> 2;
        const count = n >>> 2;
        if (write) for (let i = 0; i < count; i++) pw[p + i] = words[b + i]!;
        else for (let i = 0; i < count; i++) words[b + i] = pw[p + i]!;
        return true;
      }
    }
    const page = write ? mem.writablePageU8(ppn) : mem.pageU8(ppn);
    if (page === null) return false;
    if (n <= LOOP_COPY_MAX) {
      if (write) for (let i = 0; i < n; i++) page[o + i] = buf[at + i]!;
      else for (let i = 0; i < n; i++) buf[at + i] = page[o + i]!;
    } else if (!write && n === PAGE_SIZE) {
      buf.set(page, at);
    } else if (write && at === 0 && n === buf.length) {
      page.set(buf, o);
    } else if (write) {
      page.set(buf.subarray(at, at + n), o);
    } else {
      buf.set(page.subarray(o, o + n), at);
    }
    return true;
  }

  /** A 32-bit view of all of `buf`'s ArrayBuffer (too short if it was resized or detached). */
  #wordsOf(buf: Uint8Array): Uint32Array {
    const buffer = buf.buffer;
    if (buffer === this.#lastBuffer) return this.#lastWords!;
    let words = this.#words.get(buffer);
    if (words === undefined) {
      words = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
      this.#words.set(buffer, words);
    }
    this.#lastBuffer = buffer;
    this.#lastWords = words;
    return words;
  }

  /** An access of `n` bytes at `page`:`offset` in BAR `bar` of `target`; false without a model. */
  #barAccess(
    target: PciFunction,
    bar: number,
    page: number,
    offset: number,
    buf: Uint8Array,
    at: number,
    n: number,
    write: boolean,
  ): boolean {
    const model = this.#models.get(target);
    if (!model) return false;
    const off = (page - (target.barBase(bar) >>> 12)) * PAGE_SIZE + offset;
    const view = buf.subarray(at, at + n);
    if (write) model.barWrite(bar, off, view);
    else model.barRead(bar, off, view);
    return true;
  }

  /**
   * The endpoint whose BAR (then in `#bar`) decodes `page`, found the way the root complex routes
   * downstream.
   */
  #claim(page: number): PciFunction | null {
    let bus = this.host.rootBus;
    for (;;) {
      const f = bus.claimant(page);
      if (f === null) return null;
      if (!(f instanceof PciBridge)) {
        this.#bar = f.barForPage(page);
        return f;
      }
      bus = f.secondary;
    }
  }

  #traceDma(
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    offset: number,
    length: number,
    write: boolean,
    out: DmaStatus,
  ): void {
    this.host.ctx.trace.emit("device:dma", fn.name, {
      rid: out.deviceId >= 0 ? out.deviceId : fn.rid,
      pasid: attrs.pasidValid ? attrs.pasid : null,
      iova: (BigInt(page) << BigInt(PAGE_SHIFT)) | BigInt(offset),
      size: length,
      dir: `${attrs.translated ? "translated-" : ""}${write ? "write" : "read"}`,
      result: out.ok
        ? out.peer
          ? `peer ${out.peer.name}`
          : "ok"
        : `${out.completion} ${out.reason}${out.fault ? ` ${out.fault.code}` : ""}`,
    });
  }

  // ---------------------------------------------------------------- ATS and PRI messages

  /**
   * `fn` sends an ATS Translation Request for the untranslated page `page`; the completion lands
   * in `out`. UR when the function cannot master requests or no translation agent exists.
   */
  atsTranslate(
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    noWrite: boolean,
    out: AtsCompletion,
  ): AtsCompletion {
    this.#syncPorts();
    const agent = this.#portsAgent;
    const req = this.#atsReq;
    req.deviceId = this.requesterId(fn, attrs.sourceDevfn);
    req.pasidValid = attrs.pasidValid;
    req.pasid = attrs.pasidValid ? attrs.pasid : 0;
    req.privileged = attrs.pasidValid && attrs.privileged;
    req.executeRequested = false;
    req.noWrite = noWrite;
    req.iovaPage = page;
    if (agent === null || !fn.busMasterEnabled) {
      out.status = "UR";
      out.fault = null;
      out.r = out.w = out.x = false;
    } else {
      agent.atsTranslate(req, out);
    }
    const observer = this.observer;
    if (observer !== null)
      this.#observeAts(observer, fn, attrs, page, noWrite, agent !== null, out);
    const trace = this.host.ctx.trace;
    if (trace.enabled) {
      trace.emit("device:ats_translate", fn.name, {
        rid: req.deviceId,
        pasid: attrs.pasidValid ? attrs.pasid : null,
        iova: BigInt(page) << BigInt(PAGE_SHIFT),
        result:
          out.status === "success"
            ? `success r=${+out.r} w=${+out.w} pa=${jsonAddr(BigInt(out.ppn) << BigInt(PAGE_SHIFT))} size=${2 ** out.sizeShift}`
            : out.status,
      });
    }
    return out;
  }

  /** Tells `observer` what an ATS Translation Request for `page` was granted. */
  #observeAts(
    observer: DmaObserver,
    fn: PciFunction,
    attrs: DmaAttrs,
    page: number,
    noWrite: boolean,
    reached: boolean,
    c: AtsCompletion,
  ): void {
    const ev = this.#event;
    const granted = c.status === "success" && (noWrite ? c.r : c.w);
    ev.fn = fn;
    ev.kind = "ats-translation";
    ev.write = !noWrite;
    ev.pasidValid = attrs.pasidValid;
    ev.pasid = attrs.pasidValid ? attrs.pasid : 0;
    ev.privileged = attrs.pasidValid && attrs.privileged;
    ev.deviceId = reached && fn.busMasterEnabled ? this.#atsReq.deviceId : -1;
    ev.page = page;
    ev.iovaPage = page;
    ev.fromAtc = false;
    ev.routedToPeer = false;
    // The completion's address is the start of its (naturally aligned) range.
    ev.ppn = granted ? c.ppn + (page % 2 ** (c.sizeShift - PAGE_SHIFT)) : -1;
    ev.peer = null;
    ev.ok = granted;
    ev.fault = c.fault;
    ev.reason = granted ? null : ev.deviceId < 0 ? "unsupported-request" : "translation-fault";
    observer.observeDma(ev);
  }

  /** `fn` sends a Page Request (or Stop Marker) message; false when no agent can receive it. */
  pageRequest(fn: PciFunction, msg: Omit<PageRequestMessage, "deviceId">): boolean {
    this.#syncPorts();
    const agent = this.#portsAgent;
    if (agent === null) return false;
    agent.pageRequest({ ...msg, deviceId: this.requesterId(fn) });
    return true;
  }

  /** `fn` sends an Invalidation Completion message for the ITags set in `itagVector`. */
  invalidationCompletion(fn: PciFunction, itagVector: number): void {
    this.#syncPorts();
    this.#portsAgent?.invalidationCompletion(this.requesterId(fn), itagVector);
  }

  // ---------------------------------------------------------------- CPU MMIO (downstream)

  /** A CPU load of `size` bytes at physical address `pa`; all ones when nothing claims it. */
  mmioRead(pa: bigint, size: 1 | 2 | 4 | 8): bigint {
    const model = this.#mmioTarget(pa, size);
    if (model === null) return ALL_ONES[size]!;
    const b = this.#scratch[size]!;
    model.barRead(this.#bar, this.#offset, b);
    // Little-endian, in two 32-bit halves: one BigInt for up to 4 bytes.
    let lo = 0;
    for (let i = Math.min(size, 4) - 1; i >= 0; i--) lo = lo * 256 + b[i]!;
    if (size < 8) return BigInt(lo);
    let hi = 0;
    for (let i = 7; i >= 4; i--) hi = hi * 256 + b[i]!;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** A CPU store of `size` bytes at `pa` (dropped when nothing claims it). */
  mmioWrite(pa: bigint, size: 1 | 2 | 4 | 8, value: bigint): void {
    const model = this.#mmioTarget(pa, size);
    if (model === null) return;
    const b = this.#scratch[size]!;
    // The low `size` bytes of the value (two's complement, like the shifts of a wider store).
    const lo = Number(BigInt.asUintN(32, value));
    for (let i = 0; i < size && i < 4; i++) b[i] = (lo >>> (8 * i)) & 0xff;
    if (size === 8) {
      const hi = Number(BigInt.asUintN(32, value >> 32n));
      for (let i = 0; i < 4; i++) b[4 + i] = (hi >>> (8 * i)) & 0xff;
    }
    model.barWrite(this.#bar, this.#offset, b);
  }

  /** A CPU block store (e.g. MOVDIR64B's 64-byte posted write) at `pa`. */
  mmioWriteBlock(pa: bigint, data: Uint8Array): void {
    const model = this.#mmioTarget(pa, data.length);
    if (model !== null) model.barWrite(this.#bar, this.#offset, data);
  }

  /**
   * ENQCMD/ENQCMDS: a 64-byte Deferrable Memory Write with the submitter's PASID. True when the
   * target accepted it; false for Retry (also what the CPU reports when the target cannot).
   */
  mmioEnqueue(pa: bigint, data: Uint8Array, pasid: number, privileged = false): boolean {
    if (data.length !== 64) throw new SimError(`ENQCMD writes 64 bytes, not ${data.length}`);
    if (!(Number.isInteger(pasid) && pasid >= 0 && pasid < 1 << 20)) {
      throw new SimError(`ENQCMD PASID ${pasid} is not a 20-bit value`);
    }
    if ((pa & 63n) !== 0n)
      throw new SimError(`ENQCMD destination ${jsonAddr(pa)} is not 64-byte aligned`);
    const model = this.#mmioTarget(pa, 64);
    if (model === null || !model.barDeferrableWrite) return false;
    return model.barDeferrableWrite(this.#bar, this.#offset, data, pasid, privileged);
  }

  /** The model whose BAR (`#bar`, at `#offset`) a CPU access at `pa` reaches, or null. */
  #mmioTarget(pa: bigint, size: number): PciDeviceModel | null {
    if (pa < 0n || pa >= TWO32N) return null; // BARs are 32-bit here
    const address = Number(pa);
    const fn = this.#claim(Math.floor(address / PAGE_SIZE));
    if (fn === null) return null;
    const model = this.#models.get(fn);
    if (!model) return null;
    const bar = this.#bar;
    const offset = address - fn.barBase(bar);
    if (offset + size > fn.barSize(bar)) {
      throw new SimError(
        `MMIO access of ${size} bytes at ${jsonAddr(pa)} crosses the end of a BAR`,
      );
    }
    this.#offset = offset;
    return model;
  }

  // ---------------------------------------------------------------- views

  toJSON(): Json {
    const models: Json[] = [];
    for (const [fn, m] of this.#models) {
      const id = this.#ports.get(fn);
      models.push({
        function: fn.name,
        model: m.name,
        port:
          id === undefined
            ? null
            : `${(id >>> 16).toString(16).padStart(4, "0")}:${formatRid(id & 0xffff)}`,
      });
    }
    return {
      host: this.host.name,
      translation_agent: this.host.translationAgent !== null,
      models,
    };
  }
}

function abort(
  out: DmaStatus,
  completion: DmaCompletionStatus,
  reason: DmaAbortReason,
  page: number,
  offset: number,
): void {
  out.ok = false;
  out.completion = completion;
  out.reason = reason;
  out.page = page;
  out.offset = offset;
}

function pageOf(address: bigint): number {
  if (address < 0n || address >= 1n << 64n) {
    throw new SimError(`device address ${address} is not a 64-bit value`);
  }
  return Number(address >> BigInt(PAGE_SHIFT));
}

function offsetOf(address: bigint): number {
  return Number(address & BigInt(PAGE_SIZE - 1));
}
