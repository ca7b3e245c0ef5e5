// The isolation oracle: for every page a device reaches (or fails to reach) through an IO
// bridge, it compares what the device actually got with what the OS had mapped for that device
// and PASID at that moment (oracle-view.ts), and reports, as values, every access the OS view
// does not explain:
//   - "stale": it succeeded through a translation the OS once had but no longer has — the lazy
//     flush-queue window after dma_unmap, a missed invalidation, supervisor SVA's kernel
//     mappings nothing flushes, the device's previous domain — served from the IOMMU ("iotlb")
//     or from the device's ATC ("atc");
//   - "wrong-target": it reached a page the OS never mapped there (hardware misprogrammed);
//   - "unexpected-fault": it faulted although the OS maps the page for it;
//   - "p2p-bypass": the fabric routed it to a peer's BAR, so no IOMMU saw it (no ACS).
// Faults the OS view agrees with (not mapped, blocked, permissions) and faults the SVA fault
// handler resolves are not findings. docs/isolation-oracle.md gives the rules in full.
//
// The oracle only observes: it sits on the bridges' DmaObserver hook, reads the core's and the
// drivers' state and page tables without side effects (no cache fills, no A/D updates) and so
// never changes what the machine does. It allocates per access (it is a checker); detached, it
// costs the bridges one null check per page.
//
//   const oracle = attachOracle(machine);       // before devices start DMA
//   …                                           // run the workload
//   oracle.verdict().summary                    // "isolated: …" or "NOT isolated: …"
//   oracle.findings(); oracle.toJSON(); oracle.detach();

import type { SimContext } from "../base/context.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonAddr } from "../base/json.js";
import type { BusType } from "../bus/device.js";
import { PciBusType } from "../bus/pci-dev.js";
import type { DmaObserver, DmaPageEvent, IoBridge } from "../hw/pci/io-bridge.js";
import type { PciFunction } from "../hw/pci/topology.js";
import type { IommuCore } from "../iommu/core.js";
import {
  type FindingKind,
  findingJSON,
  type IsolationCounts,
  type IsolationFinding,
  type StaleCause,
  type StaleVia,
  sortedCounts,
} from "./oracle-finding.js";
import { TranslationHistory } from "./oracle-history.js";
import { accessBit, awaitsFlush, OsView, osViewOf } from "./oracle-view.js";

/** What the oracle watches. */
export interface IsolationOracleParts {
  readonly core: IommuCore;
  /** The PCI bus type: it maps the functions that DMA to their pci_devs. */
  readonly pci: BusType;
  /** The IO bridges whose traffic is checked (every host bridge of the machine). */
  readonly bridges: readonly IoBridge[];
}

export interface IsolationOracleOptions {
  /** Findings kept for `findings()` (all are counted). Default 10000. */
  readonly maxFindings?: number;
}

/** What a machine offers the oracle (a `Machine` has all of it). */
export interface OracleMachine {
  readonly core: IommuCore;
  readonly buses: { readonly pci: BusType };
  readonly endpoints: { readonly bridges: readonly IoBridge[] };
}

/**
 * The machine's oracle: the one already watching every IO bridge of `machine` (its options stay
 * as they were), else a new one on them all, attached.
 */
export function attachOracle(
  machine: OracleMachine,
  options: IsolationOracleOptions = {},
): IsolationOracle {
  const bridges = machine.endpoints.bridges;
  const current = bridges[0]?.observer;
  if (current instanceof IsolationOracle && bridges.every((b) => b.observer === current)) {
    return current;
  }
  const parts = {
    core: machine.core,
    pci: machine.buses.pci,
    bridges: machine.endpoints.bridges,
  };
  return new IsolationOracle(parts, options).attach();
}

/** What the oracle saw, finding or not. */
export interface IsolationStats {
  /** Pages of DMA and ATS Translation Requests observed. */
  readonly pages: number;
  /** Compared with an OS view. */
  readonly checked: number;
  /** Translated to exactly what the OS maps. */
  readonly agreed: number;
  /**
   * ATS completions granting a translation the OS does not give (no finding by themselves: the
   * device's accesses through the ATC entry are).
   */
  readonly staleGrants: number;
  /** Faults the OS view agrees with (not mapped, blocked, permissions). */
  readonly expectedFaults: number;
  /** Faults of SVA pages the I/O page fault handler maps. */
  readonly priFaults: number;
  /** Stopped in the fabric before any IOMMU (bus mastering off, ACS, no decoder). */
  readonly fabric: number;
  /** Not comparable, by reason (no IOMMU group, PASID 0, a Translated request of its own, …). */
  readonly unchecked: Readonly<Record<string, number>>;
}

/** The oracle's conclusion. */
export interface IsolationVerdict {
  /** No stale, wrong-target or unexpected-fault access. */
  readonly isolated: boolean;
  /** Stale, wrong-target and unexpected-fault findings. */
  readonly findings: number;
  /** Peer-to-peer accesses that bypassed the IOMMU (reported apart: the topology allows them). */
  readonly p2pBypasses: number;
  /** One line for a report: "isolated: …" or "NOT isolated: …". */
  readonly summary: string;
}

const DEFAULT_MAX_FINDINGS = 10_000;

/** The end of a stale finding's detail, by cause. */
const STALE_WHY: Readonly<Record<StaleCause, string>> = {
  "lazy flush window": "unmapped lazily, its IOTLB flush still waits on the flush queue",
  "missed invalidation": "no flush is pending: an invalidation was missed",
  "kernel mapping not flushed": "a kernel mapping: nothing flushes the IOMMU for init_mm",
  "previous domain": "a translation of the address space the device used before",
};

export class IsolationOracle implements DmaObserver {
  readonly #core: IommuCore;
  readonly #ctx: SimContext;
  readonly #pci: PciBusType;
  readonly #bridges: readonly IoBridge[];
  readonly #maxFindings: number;
  readonly #view = new OsView();
  readonly #history = new TranslationHistory();
  /** The address spaces each (function, PASID or -1) was checked against, in order. */
  readonly #spaces = new Map<PciFunction, Map<number, object[]>>();
  readonly #findings: IsolationFinding[] = [];
  readonly #byKind = new Map<string, number>();
  readonly #byCategory = new Map<string, number>();
  readonly #byDevice = new Map<string, number>();
  readonly #unchecked = new Map<string, number>();
  #total = 0;
  #p2p = 0;
  #pages = 0;
  #checked = 0;
  #agreed = 0;
  #staleGrants = 0;
  #expectedFaults = 0;
  #priFaults = 0;
  #fabric = 0;
  #attached = false;

  constructor(parts: IsolationOracleParts, options: IsolationOracleOptions = {}) {
    if (!(parts.pci instanceof PciBusType)) {
      throw new SimError(
        `the isolation oracle needs the PCI bus type, not bus "${parts.pci.name}"`,
      );
    }
    const max = options.maxFindings ?? DEFAULT_MAX_FINDINGS;
    if (!Number.isInteger(max) || max < 0) {
      throw new SimError(`maxFindings must be a count, got ${max}`);
    }
    this.#core = parts.core;
    this.#ctx = parts.core.ctx;
    this.#pci = parts.pci;
    this.#bridges = [...parts.bridges];
    this.#maxFindings = max;
  }

  /** Starts observing every bridge. A bridge observed by someone else is a misuse. */
  attach(): this {
    if (this.#attached) return this;
    for (const b of this.#bridges) {
      if (b.observer !== null) {
        throw new SimError(`${b.host.name} already has a DMA observer`);
      }
    }
    for (const b of this.#bridges) b.observer = this;
    this.#attached = true;
    return this;
  }

  /** Stops observing (what was found stays). */
  detach(): void {
    if (!this.#attached) return;
    for (const b of this.#bridges) if (b.observer === this) b.observer = null;
    this.#attached = false;
  }

  get attached(): boolean {
    return this.#attached;
  }

  /** The findings kept, oldest first (at most `maxFindings`). */
  findings(): readonly IsolationFinding[] {
    return this.#findings;
  }

  /** Findings counted past `maxFindings` and not kept. */
  get dropped(): number {
    return this.#total - this.#findings.length;
  }

  counts(): IsolationCounts {
    return {
      byKind: sortedCounts(this.#byKind),
      byCategory: sortedCounts(this.#byCategory),
      byDevice: sortedCounts(this.#byDevice),
    };
  }

  stats(): IsolationStats {
    return {
      pages: this.#pages,
      checked: this.#checked,
      agreed: this.#agreed,
      staleGrants: this.#staleGrants,
      expectedFaults: this.#expectedFaults,
      priFaults: this.#priFaults,
      fabric: this.#fabric,
      unchecked: sortedCounts(this.#unchecked),
    };
  }

  verdict(): IsolationVerdict {
    const findings = this.#total - this.#p2p;
    const isolated = findings === 0;
    let summary: string;
    if (isolated) {
      summary = `isolated: ${this.#checked} device accesses checked, none stale, misdirected or wrongly refused`;
    } else {
      const parts: string[] = [];
      for (const [category, n] of Object.entries(sortedCounts(this.#byCategory))) {
        if (category !== "p2p-bypass") parts.push(`${n} ${category}`);
      }
      summary = `NOT isolated: ${findings} finding${findings === 1 ? "" : "s"} in ${this.#checked} checked accesses (${parts.join(", ")})`;
    }
    if (this.#p2p > 0) {
      summary += `; ${this.#p2p} peer-to-peer access${this.#p2p === 1 ? "" : "es"} bypassed the IOMMU`;
    }
    return { isolated, findings, p2pBypasses: this.#p2p, summary };
  }

  /** Forgets findings and statistics; what the OS granted so far stays known. */
  clear(): void {
    this.#findings.length = 0;
    for (const m of [this.#byKind, this.#byCategory, this.#byDevice, this.#unchecked]) m.clear();
    this.#total = 0;
    this.#p2p = 0;
    this.#pages = 0;
    this.#checked = 0;
    this.#agreed = 0;
    this.#staleGrants = 0;
    this.#expectedFaults = 0;
    this.#priFaults = 0;
    this.#fabric = 0;
  }

  toJSON(): Json {
    const v = this.verdict();
    const s = this.stats();
    const c = this.counts();
    return {
      attached: this.#attached,
      verdict: {
        isolated: v.isolated,
        findings: v.findings,
        p2p_bypasses: v.p2pBypasses,
        summary: v.summary,
      },
      stats: {
        pages: s.pages,
        checked: s.checked,
        agreed: s.agreed,
        stale_grants: s.staleGrants,
        expected_faults: s.expectedFaults,
        pri_faults: s.priFaults,
        fabric: s.fabric,
        unchecked: { ...s.unchecked },
      },
      counts: {
        by_kind: { ...c.byKind },
        by_category: { ...c.byCategory },
        by_device: { ...c.byDevice },
      },
      findings: this.#findings.map(findingJSON),
      dropped: this.dropped,
      translations_known: this.#history.size,
    };
  }

  // ---------------------------------------------------------------- observing

  /** DmaObserver: one page of inbound traffic. */
  observeDma(ev: DmaPageEvent): void {
    this.#pages++;
    if (ev.routedToPeer) {
      if (ev.ok) this.#p2pBypass(ev);
      else this.#fabric++;
      return;
    }
    // Stopped before the translation agent (or no ATS without one): nothing to compare.
    if (ev.deviceId < 0) {
      this.#fabric++;
      return;
    }
    const fn = ev.fn!;
    const dev = this.#pci.pciDevOf(fn);
    if (dev === undefined) {
      this.#skip("no pci_dev");
      return;
    }
    if (ev.iovaPage < 0) {
      this.#skip("Translated request of the device's own");
      return;
    }
    const view = osViewOf(this.#core, dev, ev, this.#view);
    if (view.status === "unchecked") {
      this.#skip(view.why);
      return;
    }
    this.#checked++;
    const spaces = this.#noteSpace(fn, ev, view.space);
    if (ev.fault === null && ev.ppn >= 0) {
      if (view.status === "allowed" && view.ppn === ev.ppn) {
        this.#agreed++;
        this.#history.record(view.space!, ev.iovaPage, ev.ppn, view.leafLog2, view.grant);
      } else if (ev.kind === "ats-translation") {
        // Not an access yet: what the device then reaches through its ATC is judged.
        this.#staleGrants++;
      } else {
        this.#mismatch(ev, view, spaces);
      }
      return;
    }
    if (view.status === "allowed" && !view.soft) this.#unexpectedFault(ev, view);
    else if (view.status === "pri") this.#priFaults++;
    else this.#expectedFaults++;
  }

  /**
   * The address spaces the (function, PASID) of `ev` was checked against, oldest first, after
   * noting `space` (null: nothing attached now) as its latest.
   */
  #noteSpace(fn: PciFunction, ev: DmaPageEvent, space: object | null): readonly object[] {
    let byPasid = this.#spaces.get(fn);
    if (byPasid === undefined) {
      byPasid = new Map();
      this.#spaces.set(fn, byPasid);
    }
    const key = ev.pasidValid ? ev.pasid : -1;
    let list = byPasid.get(key);
    if (list === undefined) {
      list = [];
      byPasid.set(key, list);
    }
    if (space !== null && list[list.length - 1] !== space) list.push(space);
    return list;
  }

  /** A translation the OS view does not give: stale when the OS once granted it, else wrong. */
  #mismatch(ev: DmaPageEvent, view: OsView, spaces: readonly object[]): void {
    const bit = accessBit(ev.write, ev.privileged);
    const history = this.#history;
    const space = view.space;
    let cause: StaleCause | null = null;
    if (space !== null && (history.granted(space, ev.iovaPage, ev.ppn) & bit) !== 0) {
      if (view.domain !== null && awaitsFlush(view.domain, ev.iovaPage)) {
        cause = "lazy flush window";
      } else if (view.domain?.mm?.kernel === true) {
        cause = "kernel mapping not flushed";
      } else {
        cause = "missed invalidation";
      }
    } else {
      for (const s of spaces) {
        if (s !== space && (history.granted(s, ev.iovaPage, ev.ppn) & bit) !== 0) {
          cause = "previous domain";
          break;
        }
      }
    }
    const os = osText(view);
    if (cause === null) {
      const what = `, which the OS never mapped there; ${os}`;
      this.#report("wrong-target", "wrong-target", ev, view, what);
      return;
    }
    const via: StaleVia = ev.fromAtc ? "atc" : "iotlb";
    const entry = via === "atc" ? "the device's ATC" : "a stale IOMMU translation";
    const what = ` through ${entry}; ${os}; ${STALE_WHY[cause]}`;
    this.#report("stale", `stale-${via}: ${cause}`, ev, view, what);
  }

  #unexpectedFault(ev: DmaPageEvent, view: OsView): void {
    const why = ev.fault?.code ?? ev.reason ?? "refused";
    this.#report(
      "unexpected-fault",
      "unexpected-fault",
      ev,
      view,
      ` failed (${why}) although the OS maps it to ${page(view.ppn)}`,
    );
  }

  #p2pBypass(ev: DmaPageEvent): void {
    this.#p2p++;
    const peer = ev.peer?.name ?? "a peer";
    this.#report(
      "p2p-bypass",
      "p2p-bypass",
      ev,
      null,
      ` went peer-to-peer to ${peer}'s BAR: no IOMMU translated it`,
    );
  }

  #skip(why: string): void {
    this.#unchecked.set(why, (this.#unchecked.get(why) ?? 0) + 1);
  }

  #report(
    kind: FindingKind,
    category: string,
    ev: DmaPageEvent,
    view: OsView | null,
    what: string,
  ): void {
    const fn = ev.fn!;
    const device = fn.name;
    this.#total++;
    bump(this.#byKind, kind);
    bump(this.#byCategory, category);
    bump(this.#byDevice, device);
    if (this.#findings.length >= this.#maxFindings) return;
    const rid = ev.deviceId >= 0 ? ev.deviceId : (fn.host.segment << 16) | fn.rid;
    const iovaPage = view === null ? ev.page : ev.iovaPage;
    const iova = BigInt(iovaPage) << 12n;
    const pa =
      ev.ppn >= 0 ? BigInt(ev.ppn) << 12n : ev.routedToPeer ? BigInt(ev.page) << 12n : null;
    const expected = view !== null && view.ppn >= 0 ? BigInt(view.ppn) << 12n : null;
    const access = ev.write ? "write" : "read";
    const pasid = ev.pasidValid ? ev.pasid : null;
    const tag = pasid === null ? "" : ` (PASID ${pasid}${ev.privileged ? ", privileged" : ""})`;
    const reached = pa === null || view === null ? "" : ` reached ${jsonAddr(pa)}`;
    const detail = `${device} ${access}${tag} of ${jsonAddr(iova)}${reached}${what}`;
    const finding: IsolationFinding = {
      kind,
      category,
      device,
      rid,
      pasid,
      privileged: ev.privileged,
      access,
      request: ev.kind,
      fromAtc: ev.fromAtc,
      iova,
      pa,
      expected,
      domain: view?.domain?.id ?? null,
      mm: view?.domain?.mm?.id ?? null,
      fault: kind === "unexpected-fault" ? (ev.fault?.code ?? null) : null,
      peer: ev.peer?.name ?? null,
      time: this.#ctx.clock.now,
      traceSeq: this.#trace(kind, category, device, rid, pasid, iova, access, pa, expected),
      detail,
    };
    this.#findings.push(finding);
  }

  /**
   * Emits the finding's check:isolation record while a trace is being recorded and returns its
   * seq (a sink subscribed for that one record; the bus stays enabled for its other sinks).
   */
  #trace(
    kind: string,
    category: string,
    device: string,
    rid: number,
    pasid: number | null,
    iova: bigint,
    access: string,
    pa: bigint | null,
    expected: bigint | null,
  ): number | null {
    const trace = this.#ctx.trace;
    if (!trace.enabled) return null;
    let seq: number | null = null;
    const stop = trace.subscribe((r) => {
      if (seq === null && r.event === "check:isolation") seq = r.seq;
    });
    trace.emit("check:isolation", device, {
      kind,
      category,
      rid,
      pasid,
      iova,
      access,
      pa,
      expected,
    });
    stop();
    return seq;
  }
}

function bump(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

function page(ppn: number): string {
  return jsonAddr(BigInt(ppn) << 12n);
}

/** What the OS view says, for details: "OS maps it to 0x…" or "OS: not mapped". */
function osText(view: OsView): string {
  return view.status === "allowed" ? `OS maps it to ${page(view.ppn)}` : `OS: ${view.why}`;
}
