// What every device model here shares: it sits behind one PCI function (attached to the host's
// IO bridge), answers the IOMMU's messages (ATS Invalidation Requests on its ATC, PRG Responses
// to its Page Request Interface), and does its work on its own work queue.
//
// Timing model: register and portal writes take effect at once (state changes, descriptors
// queued) and schedule the device's processing as a Work item on `ctx.scheduler`; the work runs
// when the machine settles its scheduler or the device's `run()` is called, one unit (a
// descriptor, a packet) per item, re-queued while more remains — devices interleave
// deterministically. A device waiting for a PRG Response does nothing until the response
// arrives; the response schedules its resumption. ATS Invalidation Requests are answered
// synchronously: the ATC drops the entries and the Invalidation Completion goes back inside
// the request, so an IOFENCE.C after ATS.INVAL completes. No virtual time passes in devices.

import type { SimContext } from "../../base/context.js";
import { SimError } from "../../base/errors.js";
import type { Json } from "../../base/json.js";
import { Work, type WorkQueue } from "../../base/workqueue.js";
import type { IoBridge, PciDeviceModel } from "../pci/io-bridge.js";
import { PCI_ATS_CAP, PCI_ATS_CAP_GLOBAL_INV, PCI_ATS_CTRL } from "../pci/regs.js";
import type { PciFunction } from "../pci/topology.js";
import {
  decodeNapotPages,
  type InvalidationRequest,
  type PrgResponse,
} from "../pci/translation-agent.js";
import { Atc } from "./atc.js";
import { DeviceDma } from "./device-dma.js";
import { PageRequestInterface } from "./pri.js";

export interface EndpointOptions {
  /** Name of the device (default: the function's name). */
  readonly name?: string;
  /** ATC entries when the function has an ATS capability (default 64). */
  readonly atcEntries?: number;
}

export abstract class Endpoint implements PciDeviceModel {
  readonly name: string;
  readonly fn: PciFunction;
  readonly bridge: IoBridge;
  readonly ctx: SimContext;
  /** The device's ATC, when its function implements ATS. */
  readonly atc: Atc | null;
  /** The device's PRI logic, when its function implements PRI. */
  readonly pri: PageRequestInterface | null;
  readonly dma: DeviceDma;
  readonly queue: WorkQueue;
  #attached = true;

  constructor(bridge: IoBridge, fn: PciFunction, opts: EndpointOptions) {
    this.name = opts.name ?? fn.name;
    this.fn = fn;
    this.bridge = bridge;
    this.ctx = bridge.host.ctx;
    this.atc = fn.caps.ats !== 0 ? new Atc(opts.atcEntries ?? 64) : null;
    if (opts.atcEntries !== undefined && this.atc === null) {
      throw new SimError(`${this.name}: atcEntries given but ${fn.name} has no ATS capability`);
    }
    this.pri = fn.caps.pri !== 0 ? new PageRequestInterface(bridge, fn) : null;
    this.dma = new DeviceDma(bridge, fn, this.atc);
    this.queue = this.ctx.scheduler.createQueue(`device:${this.name}`);
    bridge.attach(fn, this);
    if (this.atc !== null) {
      // Clearing ATS Enable empties the ATC: its translations may no longer be used.
      const at = fn.caps.ats + PCI_ATS_CTRL;
      fn.config.onWrite(at, 2, () => {
        if (this.#attached && !fn.atsEnabled) this.atc!.clear();
      });
    }
  }

  /** A work item of this device (`fn` does one unit of work and kicks again while more remains). */
  protected newWork(what: string, fn: () => void): Work {
    return new Work(`${this.name}: ${what}`, fn);
  }

  /** Schedules `work` on the device's queue (no-op while it is pending or the device is gone). */
  protected kick(work: Work): void {
    if (this.#attached) this.queue.queueWork(work);
  }

  /** Runs this device's pending work until it is idle or waits; returns the items run. */
  run(limit = 1_000_000): number {
    let n = 0;
    while (this.queue.runOne()) {
      if (++n >= limit)
        throw new SimError(`${this.name}: work did not settle after ${limit} items`);
    }
    return n;
  }

  abstract barRead(bar: number, offset: number, out: Uint8Array): void;
  abstract barWrite(bar: number, offset: number, data: Uint8Array): void;

  // ---- messages from the IOMMU (EndpointPort) ----

  invalidationRequest(msg: InvalidationRequest): void {
    const fn = this.fn;
    // A function without ATS does not support the message (PCIe: an unsupported Vendor_Defined
    // Type 0 message is an Unsupported Request): no Invalidation Completion, the IOMMU times out.
    if (fn.caps.ats === 0) return;
    const global =
      fn.caps.ats !== 0 &&
      (fn.config.peek(fn.caps.ats + PCI_ATS_CAP, 2) & PCI_ATS_CAP_GLOBAL_INV) !== 0;
    const dropped = this.atc?.invalidate(msg, global) ?? 0;
    const trace = this.ctx.trace;
    if (trace.enabled) {
      const { first, log2Pages } = decodeNapotPages(msg.page, msg.s);
      trace.emit("device:atc_inval", this.name, {
        rid: msg.deviceId,
        pasid: msg.pasidValid ? msg.pasid : null,
        iova: BigInt(first) << 12n,
        size: 1n << BigInt(log2Pages + 12),
        global: msg.global,
        itag: msg.itag,
        dropped,
      });
    }
    this.bridge.invalidationCompletion(fn, 2 ** msg.itag);
  }

  prgResponse(msg: PrgResponse): void {
    // A function without PRI treats the message as unexpected and drops it.
    this.pri?.response(msg);
  }

  /** Unplugs the model from the bridge; pending work is dropped. */
  detach(): void {
    if (!this.#attached) return;
    this.#attached = false;
    this.bridge.detach(this.fn);
    this.ctx.scheduler.destroyQueue(this.queue);
  }

  get attached(): boolean {
    return this.#attached;
  }

  /** The view every device starts from: identity, ATC and PRI state. */
  protected endpointJSON(kind: string): { [key: string]: Json } {
    return {
      name: this.name,
      kind,
      function: this.fn.name,
      bdf: this.fn.bdf,
      device_id: this.bridge.requesterId(this.fn),
      ats: this.atc === null ? null : { enabled: this.fn.atsEnabled, atc: this.atc.toJSON() },
      pri: this.pri === null ? null : this.pri.toJSON(),
      pending_work: this.queue.pendingCount,
    };
  }
}
