import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/base/clock.js";
import { SimError } from "../../src/base/errors.js";
import { Rng } from "../../src/base/rng.js";
import { Scheduler, Work, WorkQueue } from "../../src/base/workqueue.js";

describe("VirtualClock", () => {
  it("fires timers in (time, creation) order while advancing", () => {
    const clock = new VirtualClock();
    const seen: string[] = [];
    clock.schedule(20, "b", () => seen.push(`b@${clock.now}`));
    clock.schedule(10, "a", () => seen.push(`a@${clock.now}`));
    clock.schedule(20, "c", () => seen.push(`c@${clock.now}`));
    const t = clock.schedule(15, "cancelled", () => seen.push("x"));
    expect(t.cancel()).toBe(true);
    expect(t.cancel()).toBe(false);
    clock.advance(15);
    expect(seen).toEqual(["a@10"]);
    expect(clock.now).toBe(15);
    expect(clock.nextTimerAt()).toBe(20);
    clock.advance(100);
    expect(seen).toEqual(["a@10", "b@20", "c@20"]);
    expect(clock.now).toBe(115);
  });

  it("timers scheduled by timers run in the same advance", () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    clock.schedule(5, "outer", () => clock.schedule(5, "inner", () => seen.push(clock.now)));
    clock.advance(10);
    expect(seen).toEqual([10]);
  });

  it("refuses to go back", () => {
    const clock = new VirtualClock();
    clock.advance(10);
    expect(() => clock.advanceTo(5)).toThrow(SimError);
    expect(() => clock.schedule(-1, "bad", () => {})).toThrow(SimError);
  });
});

describe("WorkQueue and Scheduler", () => {
  it("refuses to queue pending work twice and runs FIFO", () => {
    const q = new WorkQueue("iopf");
    const seen: string[] = [];
    const a = new Work("a", () => seen.push("a"));
    const b = new Work("b", () => seen.push("b"));
    expect(q.queueWork(a)).toBe(true);
    expect(q.queueWork(a)).toBe(false);
    expect(q.queueWork(b)).toBe(true);
    expect(q.pendingLabels()).toEqual(["a", "b"]);
    expect(q.flush()).toBe(2);
    expect(seen).toEqual(["a", "b"]);
    expect(a.pending).toBe(false);
    expect(q.queueWork(a)).toBe(true);
  });

  it("settles every queue including work queued by work", () => {
    const s = new Scheduler();
    const q1 = s.createQueue("one");
    const q2 = s.createQueue("two");
    const seen: string[] = [];
    q1.queueWork(new Work("x", () => q2.queueWork(new Work("y", () => seen.push("y")))));
    q2.queueWork(new Work("z", () => seen.push("z")));
    expect(s.settle()).toBe(3);
    expect(seen).toEqual(["z", "y"]);
  });

  it("reports work that never settles", () => {
    const s = new Scheduler();
    const q = s.createQueue("loop");
    const w: Work = new Work("again", () => q.queueWork(w));
    q.queueWork(w);
    expect(() => s.settle(50)).toThrow(/did not settle/);
  });
});

describe("Rng", () => {
  it("is deterministic per seed and stays in range", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xs = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(xs);
    for (let i = 0; i < 1000; i++) {
      const v = a.int(-3, 3);
      expect(v).toBeGreaterThanOrEqual(-3);
      expect(v).toBeLessThanOrEqual(3);
    }
    expect(() => a.int(2, 1)).toThrow(SimError);
  });
});
