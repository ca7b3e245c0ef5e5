// Kernel WARN_ON conditions become machine warnings: recorded, traced, visible to checks and
// scenarios, never thrown.

import type { VirtualClock } from "./clock.js";
import type { TraceBus } from "./trace.js";
import type { TraceValue } from "./trace-events.js";

export interface Warning {
  readonly seq: number;
  readonly ts: number;
  /** The kernel function that warns, e.g. `__iommu_release_dma_ownership`. */
  readonly site: string;
  readonly message: string;
  readonly details: Readonly<Record<string, TraceValue>>;
}

export class Warnings {
  #list: Warning[] = [];
  #seq = 0;

  constructor(
    private readonly clock: VirtualClock,
    private readonly trace: TraceBus,
  ) {}

  warn(site: string, message: string, details: Record<string, TraceValue> = {}): void {
    this.#list.push({ seq: this.#seq++, ts: this.clock.now, site, message, details });
    this.trace.emit("iommu_core:warning", "core", { site, message });
  }

  /** Like the kernel's `WARN_ON(cond)`: records a warning when `cond` holds and returns it. */
  on(cond: boolean, site: string, message: string, details?: Record<string, TraceValue>): boolean {
    if (cond) this.warn(site, message, details);
    return cond;
  }

  get count(): number {
    return this.#list.length;
  }

  list(): readonly Warning[] {
    return this.#list;
  }

  /** Returns the warnings recorded so far and forgets them. */
  take(): Warning[] {
    const out = this.#list;
    this.#list = [];
    return out;
  }
}
