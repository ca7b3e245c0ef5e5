// A device-side Address Translation Cache (PCIe ATS "ATC", the RISC-V IOMMU spec's DevATC):
// translations the device obtained with ATS Translation Requests, used to issue Translated
// requests, dropped only by ATS Invalidation Requests (or when evicted). A stale entry keeps
// being used until the IOMMU invalidates it: that is what the hardware does.
//
// Entries are tagged like the Translation Request that filled them: with or without a PASID,
// Privileged or not. An entry whose completion had Global set serves every PASID.
// Invalidation (PCIe Base 6.2 §10.3.8 "PASID and Global Invalidate"): a request without a PASID
// drops every entry of its range, whatever PASID it was requested with (there is no way to
// invalidate only the entries without one: Linux's arm_smmu_atc_inv_to_cmd says so), and nothing
// outside the range; with a PASID it drops that PASID's entries in the range and the global ones
// there, and with Global Invalidate (when the function supports it) the entries of every PASID in
// the range. Entries without a PASID survive an invalidation with one.
//
// Fixed capacity, least recently used replaced; lookups scan the slots and allocate nothing (each
// entry keeps the end of its range, computed when filled).

import { PAGE_SHIFT } from "../../base/bits.js";
import { SimError } from "../../base/errors.js";
import { type Json, jsonAddr } from "../../base/json.js";
import {
  type AtsCompletion,
  type InvalidationRequest,
  napotLog2Pages,
} from "../pci/translation-agent.js";

export class AtcEntry {
  valid = false;
  pasidValid = false;
  pasid = 0;
  priv = false;
  /** Global: usable for every PASID (first-stage G mapping). */
  global = false;
  /** First untranslated page of the range and log2 of its page count. */
  vpn = 0;
  log2Pages = 0;
  /** The page after the range: vpn + 2^log2Pages (set with them). */
  end = 0;
  /** First translated page. */
  ppn = 0;
  r = false;
  w = false;
  x = false;
  /** Untranslated access only: the device must use Untranslated requests for this range. */
  u = false;
  /** Last use, for LRU replacement. */
  stamp = 0;

  /** Whether `vpn` falls in this entry's range. */
  covers(vpn: number): boolean {
    return vpn >= this.vpn && vpn < this.end;
  }

  toJSON(): Json {
    return {
      pasid: this.pasidValid ? this.pasid : null,
      priv: this.priv,
      global: this.global,
      iova: jsonAddr(BigInt(this.vpn) << BigInt(PAGE_SHIFT)),
      pa: jsonAddr(BigInt(this.ppn) << BigInt(PAGE_SHIFT)),
      size: 2 ** (this.log2Pages + PAGE_SHIFT),
      r: this.r,
      w: this.w,
      x: this.x,
      u: this.u,
    };
  }
}

export class Atc {
  readonly capacity: number;
  readonly #slots: AtcEntry[];
  #clock = 0;
  hits = 0;
  misses = 0;
  fills = 0;
  evictions = 0;
  invalidationRequests = 0;
  invalidated = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 4096) {
      throw new SimError(`ATC capacity ${capacity} is not an integer in [1, 4096]`);
    }
    this.capacity = capacity;
    this.#slots = Array.from({ length: capacity }, () => new AtcEntry());
  }

  /** The entry translating `vpn` for this requester, or null (counts a hit or a miss). */
  lookup(pasidValid: boolean, pasid: number, priv: boolean, vpn: number): AtcEntry | null {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const e = slots[i]!;
      if (!e.valid || e.priv !== priv || !e.covers(vpn)) continue;
      if (e.pasidValid !== pasidValid) continue;
      if (pasidValid && e.pasid !== pasid && !e.global) continue;
      e.stamp = ++this.#clock;
      this.hits++;
      return e;
    }
    this.misses++;
    return null;
  }

  /**
   * Caches a successful completion for the Translation Request of `vpn`. Completions granting
   * neither read nor write are not cached (the page is not there: the device asks PRI instead).
   */
  fill(
    pasidValid: boolean,
    pasid: number,
    priv: boolean,
    vpn: number,
    c: AtsCompletion,
  ): AtcEntry | null {
    if (c.status !== "success" || (!c.r && !c.w)) return null;
    const log2Pages = c.sizeShift - PAGE_SHIFT;
    const span = 2 ** log2Pages;
    const base = vpn - (vpn % span);
    // One entry per range and requester: replace what the new range overlaps.
    let slot: AtcEntry | null = null;
    for (const e of this.#slots) {
      if (!e.valid || e.pasidValid !== pasidValid || e.priv !== priv) continue;
      if (pasidValid && e.pasid !== pasid) continue;
      if (e.vpn < base + span && base < e.end) {
        e.valid = false;
        slot ??= e;
      }
    }
    slot ??= this.#victim();
    slot.valid = true;
    slot.pasidValid = pasidValid;
    slot.pasid = pasidValid ? pasid : 0;
    slot.priv = priv;
    slot.global = pasidValid && c.global;
    slot.vpn = base;
    slot.log2Pages = log2Pages;
    slot.end = base + span;
    slot.ppn = c.ppn;
    slot.r = c.r;
    slot.w = c.w;
    slot.x = c.x;
    slot.u = c.u;
    slot.stamp = ++this.#clock;
    this.fills++;
    return slot;
  }

  /** Applies an ATS Invalidation Request; returns how many entries it dropped. */
  invalidate(msg: InvalidationRequest, globalInvalidateSupported: boolean): number {
    this.invalidationRequests++;
    const log2Pages = msg.s ? napotLog2Pages(msg.page) : 0;
    const first = log2Pages === 0 ? msg.page : msg.page - (msg.page % 2 ** log2Pages);
    const end = first + 2 ** log2Pages;
    const allPasids = msg.pasidValid && msg.global && globalInvalidateSupported;
    let dropped = 0;
    for (const e of this.#slots) {
      if (!e.valid) continue;
      const inRange = e.vpn < end && first < e.end;
      let drop: boolean;
      if (!msg.pasidValid) drop = inRange;
      else if (!e.pasidValid) drop = false;
      else drop = inRange && (allPasids || e.global || e.pasid === msg.pasid);
      if (drop) {
        e.valid = false;
        dropped++;
      }
    }
    this.invalidated += dropped;
    return dropped;
  }

  /** Drops every entry (ATS disabled, function reset). */
  clear(): void {
    for (const e of this.#slots) e.valid = false;
  }

  /** Valid entries, most recently used first. */
  entries(): AtcEntry[] {
    return this.#slots.filter((e) => e.valid).sort((a, b) => b.stamp - a.stamp);
  }

  get size(): number {
    let n = 0;
    for (const e of this.#slots) if (e.valid) n++;
    return n;
  }

  #victim(): AtcEntry {
    let best: AtcEntry | null = null;
    for (const e of this.#slots) {
      if (!e.valid) return e;
      if (best === null || e.stamp < best.stamp) best = e;
    }
    this.evictions++;
    return best!;
  }

  toJSON(): Json {
    return {
      capacity: this.capacity,
      entries: this.entries().map((e) => e.toJSON()),
      hits: this.hits,
      misses: this.misses,
      fills: this.fills,
      evictions: this.evictions,
      invalidation_requests: this.invalidationRequests,
      invalidated: this.invalidated,
    };
  }
}
