// A plain test device: raw DMA reads and writes of N bytes at an address, with or without a PASID
// and Privileged mode, Untranslated, Translated (the address used as a physical address as is),
// or translated through its own ATC/ATS first. Each call is one transaction issued at once (the
// caller is the device's engine); a bounded log keeps every transaction with the physical pages
// it touched, for isolation checks. Its BARs are plain memory, a target for peers' DMA.
//
// The device obeys its configuration space: no PASID prefix unless PASID is enabled (Privileged
// only with Privileged Mode Enable), no Translated request or ATS unless ATS is enabled; such a
// request is refused before it leaves the device. A `rogue` device ignores those enables and
// sends what it is told, like a malicious or broken device would.

import { hex, PAGE_SHIFT, PAGE_SIZE } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import { DmaAttrs, type DmaStatus, type IoBridge } from "../pci/io-bridge.js";
import { PCI_PASID_CTRL, PCI_PASID_CTRL_PRIV } from "../pci/regs.js";
import type { PciFunction } from "../pci/topology.js";
import { Endpoint, type EndpointOptions } from "./endpoint.js";

export interface TestDeviceOptions extends EndpointOptions {
  /** Transactions the log keeps, newest last (default 1024; 0 keeps none and allocates nothing). */
  readonly logCapacity?: number;
  /** Sends requests its configuration space does not enable (a misbehaving device). */
  readonly rogue?: boolean;
}

export interface TestDmaOptions {
  readonly pasid?: number;
  readonly privileged?: boolean;
  /** A Translated request: the address is a physical address, used as is. */
  readonly translated?: boolean;
  /** Translate through the ATC (ATS Translation Requests on a miss), then Translated requests. */
  readonly ats?: boolean;
  /** Tag the requests with this devfn (a DMA alias) instead of the function's own. */
  readonly sourceDevfn?: number;
}

export type TestDmaMode = "untranslated" | "translated" | "ats";

/** One transaction in the log. */
export interface TestTransaction {
  readonly seq: number;
  readonly dir: "read" | "write";
  readonly address: bigint;
  readonly length: number;
  readonly pasid: number | null;
  readonly privileged: boolean;
  readonly mode: TestDmaMode;
  readonly ok: boolean;
  readonly done: number;
  /** "ok", "refused: …", or how it aborted. */
  readonly result: string;
  /** Device address of the access that failed. */
  readonly faultAddress: bigint | null;
  /** Physical page of each page accessed, in order (-1: a peer's BAR). */
  readonly pages: readonly number[];
}

export interface TestDmaResult {
  readonly ok: boolean;
  /** Bytes transferred before a failure. */
  readonly done: number;
  /** Read data (zeros past a failure); the written data for writes. */
  readonly data: Uint8Array;
  /** "ok", "refused: …", or how it failed (e.g. "CA translation-fault read_page_fault"). */
  readonly result: string;
  readonly faultAddress: bigint | null;
}

export class TestDevice extends Endpoint {
  readonly rogue: boolean;
  readonly logCapacity: number;
  readonly #log: TestTransaction[] = [];
  #seq = 0;
  readonly #bars: Uint8Array[];
  readonly #attrs = new DmaAttrs();
  reads = 0;
  writes = 0;
  failures = 0;

  constructor(bridge: IoBridge, fn: PciFunction, opts: TestDeviceOptions = {}) {
    super(bridge, fn, opts);
    const cap = opts.logCapacity ?? 1024;
    if (!Number.isInteger(cap) || cap < 0) throw new SimError(`log capacity ${cap} is not a count`);
    this.logCapacity = cap;
    this.rogue = opts.rogue ?? false;
    this.#bars = [];
    for (let i = 0; i < fn.barCount; i++) this.#bars.push(new Uint8Array(fn.barSize(i)));
  }

  /** Reads `length` bytes at device address `address`. */
  read(address: bigint, length: number, opts: TestDmaOptions = {}): TestDmaResult {
    if (!Number.isInteger(length) || length < 0) throw new SimError(`DMA length ${length}`);
    return this.#transaction(false, address, new Uint8Array(length), opts);
  }

  /** Writes `data` at device address `address`. */
  write(address: bigint, data: Uint8Array, opts: TestDmaOptions = {}): TestDmaResult {
    return this.#transaction(true, address, data, opts);
  }

  /**
   * Hot path: an Untranslated read (or Translated with `attrs.translated`) of `length` bytes at
   * `page`:`offset` into `buf`, not logged and without enable checks. Returns the bridge status.
   */
  readInto(
    attrs: DmaAttrs,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    length: number,
  ): DmaStatus {
    this.reads++;
    return this.bridge.readPages(
      this.fn,
      attrs,
      page,
      offset,
      buf,
      bufOffset,
      length,
      this.dma.status,
    );
  }

  #transaction(write: boolean, address: bigint, buf: Uint8Array, o: TestDmaOptions): TestDmaResult {
    if (address < 0n || address >= 1n << 64n)
      throw new SimError(`address ${address} is not 64-bit`);
    if (o.ats && o.translated)
      throw new SimError("a request is either ats or translated, not both");
    const mode: TestDmaMode = o.ats ? "ats" : o.translated ? "translated" : "untranslated";
    if (write) this.writes++;
    else this.reads++;
    const page = Number(address >> BigInt(PAGE_SHIFT));
    const offset = Number(address & BigInt(PAGE_SIZE - 1));
    const attrs = this.#attrs.set({
      ...(o.pasid !== undefined ? { pasid: o.pasid } : {}),
      privileged: o.privileged ?? false,
      translated: o.translated ?? false,
      sourceDevfn: o.sourceDevfn ?? -1,
    });
    const refused = this.rogue ? null : this.#refusal(o, mode);
    const pages: number[] = [];
    let ok: boolean;
    let done: number;
    let result: string;
    let faultAddress: bigint | null = null;
    if (refused !== null) {
      ok = false;
      done = 0;
      result = `refused: ${refused}`;
    } else if (mode === "ats") {
      const dma = this.dma;
      dma.status.pages = pages;
      ok = dma.access(
        write,
        attrs.pasidValid,
        attrs.pasid,
        attrs.privileged,
        page,
        offset,
        buf,
        0,
        buf.length,
      );
      dma.status.pages = null;
      done = dma.done;
      result = ok ? "ok" : `${dma.faultKind}: ${dma.faultDetail}`;
      if (!ok) faultAddress = dma.faultAddress;
    } else {
      const st = this.dma.status;
      st.pages = pages;
      this.bridge.transferPages(write, this.fn, attrs, page, offset, buf, 0, buf.length, st);
      st.pages = null;
      ok = st.ok;
      done = st.done;
      result = ok ? "ok" : `${st.completion} ${st.reason}${st.fault ? ` ${st.fault.code}` : ""}`;
      if (!ok) faultAddress = st.address;
    }
    if (!ok) this.failures++;
    if (this.logCapacity > 0) {
      if (this.#log.length >= this.logCapacity) this.#log.shift();
      this.#log.push({
        seq: this.#seq++,
        dir: write ? "write" : "read",
        address,
        length: buf.length,
        pasid: attrs.pasidValid ? attrs.pasid : null,
        privileged: attrs.privileged,
        mode,
        ok,
        done,
        result,
        faultAddress,
        pages,
      });
    }
    return { ok, done, data: buf, result, faultAddress };
  }

  /** Why the device's configuration forbids this request, or null. */
  #refusal(o: TestDmaOptions, mode: TestDmaMode): string | null {
    const fn = this.fn;
    if (o.pasid !== undefined && !fn.pasidEnabled) return "PASID not enabled";
    if (o.privileged && o.pasid !== undefined) {
      const ctrl = fn.config.peek(fn.caps.pasid + PCI_PASID_CTRL, 2);
      if ((ctrl & PCI_PASID_CTRL_PRIV) === 0) return "Privileged Mode not enabled";
    }
    if (mode === "translated" && !fn.atsEnabled) return "ATS not enabled";
    if (mode === "ats" && !this.dma.usesAts) return "ATS not enabled";
    return null;
  }

  /** The transactions kept, oldest first. */
  log(): readonly TestTransaction[] {
    return this.#log;
  }

  clearLog(): void {
    this.#log.length = 0;
  }

  // ---- BARs: plain memory ----

  barRead(bar: number, offset: number, out: Uint8Array): void {
    out.set(this.#barBytes(bar, offset, out.length).subarray(offset, offset + out.length));
  }

  barWrite(bar: number, offset: number, data: Uint8Array): void {
    this.#barBytes(bar, offset, data.length).set(data, offset);
  }

  /** BAR `bar`'s memory (what peers wrote). */
  barMemory(bar: number): Uint8Array {
    const m = this.#bars[bar];
    if (!m) throw new SimError(`${this.name} has no BAR ${bar}`);
    return m;
  }

  #barBytes(bar: number, offset: number, length: number): Uint8Array {
    const m = this.barMemory(bar);
    if (offset < 0 || offset + length > m.length) {
      throw new SimError(`${this.name}: BAR ${bar} access at ${hex(offset)} of ${length} bytes`);
    }
    return m;
  }

  toJSON(): Json {
    return {
      ...this.endpointJSON("test-device"),
      rogue: this.rogue,
      counters: { reads: this.reads, writes: this.writes, failures: this.failures },
      log: this.#log.map((t) => ({
        seq: t.seq,
        dir: t.dir,
        address: jsonAddr(t.address),
        length: t.length,
        pasid: t.pasid,
        privileged: t.privileged,
        mode: t.mode,
        ok: t.ok,
        done: t.done,
        result: t.result,
        fault_addr: t.faultAddress === null ? null : jsonAddr(t.faultAddress),
        pages: t.pages.map((p) => (p < 0 ? "peer" : jsonAddr(BigInt(p) << BigInt(PAGE_SHIFT)))),
      })),
    };
  }
}
