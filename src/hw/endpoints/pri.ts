// A function's Page Request Interface logic (PCIe "Page Request Services"): the device asks the
// host to make a page resident, in a Page Request Group of one request (Last = 1), and waits for
// the PRG Response.
//
// What the function obeys, from its PRI capability (PciFunction.priRequest/priResponse keep the
// registers): requests only while PRI is enabled and no Response Failure is latched, and never
// more outstanding requests than software allocated — a request over the allocation waits in
// order until a response retires one. PRG indices are 9-bit, the lowest free one first, unique
// among the function's outstanding groups. A response for an unknown group sets Unexpected PRG
// Index (the capability does that) and is otherwise ignored.
//
// Response Failure (PCIe "Page Request Group Response", response code 1111b) disables the
// function's PRI: it ignores every later PRG Response until PRI is enabled again. So the groups
// still outstanding will never be answered as far as the device knows: their waiters fail at once
// (a modelling choice: the spec leaves what the device's engines do then to the device), and the
// late responses only retire the groups.
//
// Stopping a PASID (`stopPasid`): waiters for that PASID are abandoned and, when page requests
// for it are still outstanding, a Stop Marker (PASID, L=1, R=W=0) tells the host no more will
// follow; late responses for the abandoned groups still retire them.

import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import type { IoBridge } from "../pci/io-bridge.js";
import { PCI_PRI_STATUS, PCI_PRI_STATUS_RF } from "../pci/regs.js";
import type { PciFunction } from "../pci/topology.js";
import { PRG_RESPONSE_CODE, type PrgResponse } from "../pci/translation-agent.js";

export type PrgOutcome = "success" | "invalid" | "failure";

/** What a device waits for; `done` runs when the group's response arrives (inside the message). */
export interface PageRequestSpec {
  readonly pasidValid: boolean;
  readonly pasid: number;
  readonly privileged: boolean;
  readonly page: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly execute: boolean;
  readonly done: (outcome: PrgOutcome) => void;
}

interface Group {
  readonly prgIndex: number;
  readonly spec: PageRequestSpec;
  /** Abandoned by a PASID stop: the response only retires the group. */
  abandoned: boolean;
}

const PRG_INDICES = 512;

export class PageRequestInterface {
  readonly fn: PciFunction;
  readonly #bridge: IoBridge;
  readonly #groups = new Map<number, Group>();
  /** Requests over the outstanding allocation, oldest first. */
  readonly #waiting: PageRequestSpec[] = [];
  requests = 0;
  responses = 0;
  stopMarkers = 0;

  constructor(bridge: IoBridge, fn: PciFunction) {
    if (fn.caps.pri === 0) throw new SimError(`${fn.name} has no PRI capability`);
    this.fn = fn;
    this.#bridge = bridge;
  }

  /** PRI enabled and no Response Failure latched: requests may be sent. */
  get usable(): boolean {
    const fn = this.fn;
    if (!fn.priEnabled) return false;
    return (fn.config.peek(fn.caps.pri + PCI_PRI_STATUS, 2) & PCI_PRI_STATUS_RF) === 0;
  }

  get outstanding(): number {
    return this.#groups.size;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Asks for `spec.page`: "sent", "queued" (over the allocation; sent when one retires), or
   * "unavailable" (PRI disabled, Response Failure latched, no IOMMU): the caller gives up.
   * `done` may run before this returns when the IOMMU answers at once.
   */
  request(spec: PageRequestSpec): "sent" | "queued" | "unavailable" {
    if (!this.usable || this.#bridge.host.translationAgent === null) return "unavailable";
    if (this.#waiting.length > 0) {
      this.#waiting.push(spec);
      return "queued";
    }
    return this.#send(spec) ? "sent" : this.#queue(spec);
  }

  #queue(spec: PageRequestSpec): "queued" {
    this.#waiting.push(spec);
    return "queued";
  }

  #send(spec: PageRequestSpec): boolean {
    const prgi = this.#freeIndex();
    if (prgi < 0 || !this.fn.priRequest(prgi)) return false;
    this.#groups.set(prgi, { prgIndex: prgi, spec, abandoned: false });
    this.requests++;
    const trace = this.fn.host.ctx.trace;
    if (trace.enabled) {
      trace.emit("device:page_request", this.fn.name, {
        rid: this.#bridge.requesterId(this.fn),
        pasid: spec.pasidValid ? spec.pasid : null,
        addr: BigInt(spec.page) << 12n,
        prgi,
        r: spec.read,
        w: spec.write,
      });
    }
    this.#bridge.pageRequest(this.fn, {
      pasidValid: spec.pasidValid,
      pasid: spec.pasidValid ? spec.pasid : 0,
      privileged: spec.pasidValid && spec.privileged,
      execute: spec.pasidValid && spec.execute,
      read: spec.read,
      write: spec.write,
      last: true,
      prgIndex: prgi,
      page: spec.page,
    });
    return true;
  }

  #freeIndex(): number {
    for (let i = 0; i < PRG_INDICES; i++) if (!this.#groups.has(i)) return i;
    return -1;
  }

  /** A PRG Response for this function (EndpointPort.prgResponse). */
  response(msg: PrgResponse): void {
    const outcome: PrgOutcome =
      msg.responseCode === PRG_RESPONSE_CODE.success
        ? "success"
        : msg.responseCode === PRG_RESPONSE_CODE.invalid_request
          ? "invalid"
          : "failure";
    this.fn.priResponse(msg.prgIndex, outcome);
    this.responses++;
    const g = this.#groups.get(msg.prgIndex);
    const trace = this.fn.host.ctx.trace;
    if (trace.enabled) {
      trace.emit("device:page_response", this.fn.name, {
        rid: msg.deviceId,
        pasid: msg.pasidValid ? msg.pasid : null,
        prgi: msg.prgIndex,
        code: g ? (g.abandoned ? `${outcome} (abandoned)` : outcome) : `${outcome} (unexpected)`,
      });
    }
    if (!g) return;
    this.#groups.delete(msg.prgIndex);
    if (!g.abandoned) g.spec.done(outcome);
    if (outcome === "failure") this.#abandonOutstanding();
    // A retired request frees allocation for those waiting.
    while (this.#waiting.length > 0) {
      if (!this.usable) {
        for (const spec of this.#waiting.splice(0)) spec.done("failure");
        break;
      }
      if (!this.#send(this.#waiting[0]!)) break;
      this.#waiting.shift();
    }
  }

  /** After a Response Failure: no response will be heeded, so every waiter fails now. */
  #abandonOutstanding(): void {
    for (const g of [...this.#groups.values()].sort((a, b) => a.prgIndex - b.prgIndex)) {
      if (g.abandoned) continue;
      g.abandoned = true;
      g.spec.done("failure");
    }
  }

  /**
   * The device stops using `pasid`: waiters are abandoned, and a Stop Marker follows when page
   * requests of the PASID are outstanding. Returns whether a Stop Marker was sent.
   */
  stopPasid(pasid: number): boolean {
    for (let i = this.#waiting.length - 1; i >= 0; i--) {
      const w = this.#waiting[i]!;
      if (w.pasidValid && w.pasid === pasid) this.#waiting.splice(i, 1);
    }
    let outstanding = false;
    for (const g of this.#groups.values()) {
      if (g.spec.pasidValid && g.spec.pasid === pasid) {
        g.abandoned = true;
        outstanding = true;
      }
    }
    // A Stop Marker is a Page Request message: not sent once Response Failure disabled PRI.
    if (!outstanding || !this.usable) return false;
    this.stopMarkers++;
    const trace = this.fn.host.ctx.trace;
    if (trace.enabled) {
      trace.emit("device:stop_marker", this.fn.name, {
        rid: this.#bridge.requesterId(this.fn),
        pasid,
      });
    }
    return this.#bridge.pageRequest(this.fn, {
      pasidValid: true,
      pasid,
      privileged: false,
      execute: false,
      read: false,
      write: false,
      last: true,
      prgIndex: 0,
      page: 0,
    });
  }

  toJSON(): Json {
    return {
      enabled: this.fn.priEnabled,
      usable: this.usable,
      outstanding: [...this.#groups.values()]
        .sort((a, b) => a.prgIndex - b.prgIndex)
        .map((g) => ({
          prgi: g.prgIndex,
          pasid: g.spec.pasidValid ? g.spec.pasid : null,
          addr: `0x${(BigInt(g.spec.page) << 12n).toString(16)}`,
          write: g.spec.write,
          abandoned: g.abandoned,
        })),
      waiting: this.#waiting.length,
      requests: this.requests,
      responses: this.responses,
      stop_markers: this.stopMarkers,
    };
  }
}
