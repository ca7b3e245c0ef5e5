// What every part of one simulated machine shares: time, randomness, the trace bus, the warning
// log and the deferred-work scheduler. One context per machine; nothing is global.

import { VirtualClock } from "./clock.js";
import { Rng } from "./rng.js";
import { TraceBus } from "./trace.js";
import { Warnings } from "./warnings.js";
import { Scheduler } from "./workqueue.js";

export interface SimContext {
  readonly clock: VirtualClock;
  readonly rng: Rng;
  readonly trace: TraceBus;
  readonly warnings: Warnings;
  readonly scheduler: Scheduler;
}

export function createContext(options: { seed?: number } = {}): SimContext {
  const clock = new VirtualClock();
  const trace = new TraceBus(clock);
  return {
    clock,
    rng: new Rng(options.seed ?? 1),
    trace,
    warnings: new Warnings(clock, trace),
    scheduler: new Scheduler(),
  };
}
