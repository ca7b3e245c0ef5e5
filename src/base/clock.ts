// Virtual time. Nothing in the simulator reads a real clock: time advances only when the machine
// is told to advance it, and timers fire in (time, creation) order, so runs are reproducible.

import { SimError } from "./errors.js";

export interface Timer {
  readonly at: number;
  readonly label: string;
  /** Cancels the timer; false if it already fired or was cancelled. */
  cancel(): boolean;
}

interface Entry {
  at: number;
  seq: number;
  label: string;
  fn: () => void;
  live: boolean;
}

export class VirtualClock {
  #now = 0;
  #seq = 0;
  #timers: Entry[] = [];

  /** Current virtual time in nanoseconds. */
  get now(): number {
    return this.#now;
  }

  /** Runs `fn` when the clock reaches now + delayNs. */
  schedule(delayNs: number, label: string, fn: () => void): Timer {
    if (!(delayNs >= 0) || !Number.isFinite(delayNs)) {
      throw new SimError(`timer "${label}": bad delay ${delayNs}`);
    }
    const entry: Entry = { at: this.#now + delayNs, seq: this.#seq++, label, fn, live: true };
    // Keep the list sorted by (at, seq): binary search for the insertion point.
    let lo = 0;
    let hi = this.#timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.#timers[mid]!;
      if (t.at < entry.at || (t.at === entry.at && t.seq < entry.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.#timers.splice(lo, 0, entry);
    return {
      at: entry.at,
      label,
      cancel: () => {
        if (!entry.live) return false;
        entry.live = false;
        this.#timers.splice(this.#timers.indexOf(entry), 1);
        return true;
      },
    };
  }

  /** Advances time by `ns`, firing every timer that falls due on the way. */
  advance(ns: number): void {
    if (!(ns >= 0)) throw new SimError(`clock cannot go back (${ns} ns)`);
    this.advanceTo(this.#now + ns);
  }

  advanceTo(t: number): void {
    if (t < this.#now) throw new SimError(`clock cannot go back to ${t} from ${this.#now}`);
    for (;;) {
      const next = this.#timers[0];
      if (!next || next.at > t) break;
      this.#timers.shift();
      next.live = false;
      this.#now = next.at;
      next.fn();
    }
    this.#now = t;
  }

  /** Time of the next pending timer, if any. */
  nextTimerAt(): number | undefined {
    return this.#timers[0]?.at;
  }

  /** Pending timers in firing order. */
  pending(): ReadonlyArray<{ at: number; label: string }> {
    return this.#timers.map((t) => ({ at: t.at, label: t.label }));
  }
}
