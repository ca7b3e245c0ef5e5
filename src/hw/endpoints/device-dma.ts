// A device's DMA front end: how its engines reach memory through the IO bridge.
//
// Without ATS (no ATC, or ATS not enabled in the function's capability) every access is an
// Untranslated request and the IOMMU translates it. With ATS the device first looks in its ATC;
// on a miss (or too few permissions) it sends an ATS Translation Request, caches a successful
// completion and issues a Translated request with the physical address; a completion marked
// Untranslated-only (U) makes it fall back to an Untranslated request for that range.
//
// A failed access is reported as the device can know it:
// - "page-fault": the page is not accessible but paging could fix it — an ATS completion that
//   grants too little (Success with R/W = 0), or an Untranslated request the IOMMU aborted for a
//   page fault (fault code `*_page_fault`). A PRI-capable engine may then ask for the page.
// - "abort": anything else (UR/CA to a Translation Request, a blocked route, an address no one
//   decodes, a configuration fault). Not recoverable by paging.

import { PAGE_SIZE } from "../../base/bits.js";
import { DmaAttrs, DmaStatus, type IoBridge } from "../pci/io-bridge.js";
import type { PciFunction } from "../pci/topology.js";
import { AtsCompletion, type TranslationFault } from "../pci/translation-agent.js";
import type { Atc } from "./atc.js";

export type AccessFaultKind = "none" | "page-fault" | "abort";

/** Whether a fault is one that making the page present could resolve. */
export function isPageFault(fault: TranslationFault | null): boolean {
  return fault?.code.endsWith("page_fault") ?? false;
}

export class DeviceDma {
  readonly fn: PciFunction;
  readonly atc: Atc | null;
  /** The bridge status of the last request issued. */
  readonly status = new DmaStatus();
  /** Bytes completed by the last access. */
  done = 0;
  /** How the last access failed ("none" when it did not). */
  faultKind: AccessFaultKind = "none";
  /** Device address (untranslated page and offset) of the failing access. */
  faultPage = 0;
  faultOffset = 0;
  faultWrite = false;
  /** Why, for logs and views: e.g. "CA translation-fault write_page_fault", "ats UR". */
  faultDetail = "";
  /** The IOMMU refused the access (a translation fault, or UR/CA to a Translation Request). */
  faultByIommu = false;
  readonly #bridge: IoBridge;
  readonly #attrs = new DmaAttrs();
  readonly #translated = new DmaAttrs();
  readonly #completion = new AtsCompletion();

  constructor(bridge: IoBridge, fn: PciFunction, atc: Atc | null) {
    this.#bridge = bridge;
    this.fn = fn;
    this.atc = atc;
    this.#translated.translated = true;
    // For observers of the bridge: what each Translated request stands for.
    this.#translated.atcOrigin = this.#attrs;
  }

  /** The device's own switch for ATS (e.g. a work queue configured not to use it). */
  allowAts = true;

  /** ATS in use: the device has an ATC, software enabled ATS and the device allows it. */
  get usesAts(): boolean {
    return this.allowAts && this.atc !== null && this.fn.atsEnabled;
  }

  /** Reads `len` bytes at `page`:`offset` into `buf`; false on failure (see fault*). */
  read(
    pasidValid: boolean,
    pasid: number,
    priv: boolean,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    len: number,
  ): boolean {
    return this.access(false, pasidValid, pasid, priv, page, offset, buf, bufOffset, len);
  }

  /** Writes `len` bytes of `buf` at `page`:`offset`; false on failure (see fault*). */
  write(
    pasidValid: boolean,
    pasid: number,
    priv: boolean,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    len: number,
  ): boolean {
    return this.access(true, pasidValid, pasid, priv, page, offset, buf, bufOffset, len);
  }

  /** `write` or `read` chosen by `write` (for engines whose direction is data). */
  access(
    write: boolean,
    pasidValid: boolean,
    pasid: number,
    priv: boolean,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    len: number,
  ): boolean {
    this.done = 0;
    this.faultKind = "none";
    const attrs = this.#attrs;
    attrs.pasidValid = pasidValid;
    attrs.pasid = pasidValid ? pasid : 0;
    attrs.privileged = pasidValid && priv;
    attrs.translated = false;
    if (!this.usesAts) {
      const st = this.#transfer(write, attrs, page, offset, buf, bufOffset, len);
      this.done = st.done;
      if (st.ok) return true;
      return this.#failed(st, write);
    }
    const atc = this.atc!;
    let p = page;
    let o = offset;
    let done = 0;
    while (done < len) {
      const n = Math.min(PAGE_SIZE - o, len - done);
      let e = atc.lookup(pasidValid, pasid, attrs.privileged, p);
      if (e !== null && !(write ? e.w : e.r)) e = null;
      if (e === null) {
        const c = this.#bridge.atsTranslate(this.fn, attrs, p, !write, this.#completion);
        if (c.status !== "success") {
          this.#fail("abort", p, o, write, `ats ${c.status}`, c.fault !== null);
          break;
        }
        if (!(write ? c.w : c.r)) {
          this.#fail("page-fault", p, o, write, `ats success r=${+c.r} w=${+c.w}`, true);
          break;
        }
        e = atc.fill(pasidValid, pasid, attrs.privileged, p, c)!;
      }
      let st: DmaStatus;
      if (e.u) {
        st = this.#transfer(write, attrs, p, o, buf, bufOffset + done, n);
      } else {
        this.#translated.atcPage = p;
        st = this.#transfer(
          write,
          this.#translated,
          e.ppn + (p - e.vpn),
          o,
          buf,
          bufOffset + done,
          n,
        );
      }
      if (!st.ok) {
        // A Translated request that fails is not a page fault: the translation was granted.
        if (e.u) this.#failed(st, write);
        else this.#fail("abort", p, o, write, detail(st), st.reason === "translation-fault");
        break;
      }
      done += n;
      p++;
      o = 0;
    }
    this.done = done;
    return this.faultKind === "none";
  }

  #transfer(
    write: boolean,
    attrs: DmaAttrs,
    page: number,
    offset: number,
    buf: Uint8Array,
    bufOffset: number,
    len: number,
  ): DmaStatus {
    const b = this.#bridge;
    return b.transferPages(write, this.fn, attrs, page, offset, buf, bufOffset, len, this.status);
  }

  #failed(st: DmaStatus, write: boolean): false {
    const kind =
      st.reason === "translation-fault" && isPageFault(st.fault) ? "page-fault" : "abort";
    this.#fail(kind, st.page, st.offset, write, detail(st), st.reason === "translation-fault");
    return false;
  }

  #fail(
    kind: AccessFaultKind,
    page: number,
    offset: number,
    write: boolean,
    why: string,
    byIommu: boolean,
  ): void {
    this.faultKind = kind;
    this.faultByIommu = byIommu;
    this.faultPage = page;
    this.faultOffset = offset;
    this.faultWrite = write;
    this.faultDetail = why;
  }

  /** The failing access's device address (bigint; off the hot path). */
  get faultAddress(): bigint {
    return (BigInt(this.faultPage) << 12n) | BigInt(this.faultOffset);
  }
}

function detail(st: DmaStatus): string {
  return `${st.completion} ${st.reason}${st.fault ? ` ${st.fault.code}` : ""}`;
}
