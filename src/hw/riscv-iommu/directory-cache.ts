// The directory caches of the IOATC: checked device contexts tagged by device_id and checked
// process contexts tagged by (device_id, process_id). Only leaf entries are cached, only valid
// and well-configured ones ("does not allow the caching of … whose V bit is clear"). A cached
// context is used as is until IODIR.INVAL_DDT / IODIR.INVAL_PDT drops it or it is replaced.

import type { Json } from "../../base/json.js";
import type { DeviceContext, ProcessContext } from "./context.js";
import { LruMap } from "./lru.js";

export class DirectoryCache {
  readonly ddt: LruMap<DeviceContext>;
  readonly pdt: LruMap<ProcessContext>;
  ddtHits = 0;
  ddtMisses = 0;
  pdtHits = 0;
  pdtMisses = 0;

  constructor(ddtEntries: number, pdtEntries: number) {
    this.ddt = new LruMap(ddtEntries);
    this.pdt = new LruMap(pdtEntries);
  }

  lookupDc(deviceId: number): DeviceContext | undefined {
    const dc = this.ddt.get(deviceId);
    if (dc === undefined) this.ddtMisses++;
    else this.ddtHits++;
    return dc;
  }

  fillDc(dc: DeviceContext): void {
    this.ddt.set(dc.deviceId, 0, dc);
  }

  lookupPc(deviceId: number, processId: number): ProcessContext | undefined {
    const pc = this.pdt.get(deviceId, processId);
    if (pc === undefined) this.pdtMisses++;
    else this.pdtHits++;
    return pc;
  }

  fillPc(pc: ProcessContext): void {
    this.pdt.set(pc.deviceId, pc.processId, pc);
  }

  /**
   * IODIR.INVAL_DDT: with `dv` the DC of `deviceId` and all its PCs, else every DC and PC.
   * Returns the number of entries dropped.
   */
  invalidateDdt(dv: boolean, deviceId: number): number {
    if (!dv) {
      const n = this.ddt.size + this.pdt.size;
      this.ddt.clear();
      this.pdt.clear();
      return n;
    }
    const dropped = this.ddt.delete(deviceId) ? 1 : 0;
    return dropped + this.pdt.deleteAll(deviceId);
  }

  /** IODIR.INVAL_PDT: the PC of (deviceId, processId). */
  invalidatePdt(deviceId: number, processId: number): number {
    return this.pdt.delete(deviceId, processId) ? 1 : 0;
  }

  toJSON(): Json {
    return {
      ddt: {
        capacity: this.ddt.capacity,
        hits: this.ddtHits,
        misses: this.ddtMisses,
        entries: this.ddt.values().map((dc) => dc.toJSON()),
      },
      pdt: {
        capacity: this.pdt.capacity,
        hits: this.pdtHits,
        misses: this.pdtMisses,
        entries: this.pdt.values().map((pc) => pc.toJSON()),
      },
    };
  }
}
