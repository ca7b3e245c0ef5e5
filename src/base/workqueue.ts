// Explicit queues for work the kernel defers (IOPF workqueue, flush-queue work, interrupt
// bottom halves). Nothing runs behind the caller's back: work runs when a queue is flushed or
// the scheduler settles, in FIFO order.

import { SimError } from "./errors.js";

/** A work item, like `struct work_struct`: queueing it twice before it runs is refused. */
export class Work {
  #pending = false;

  constructor(
    readonly label: string,
    readonly fn: () => void,
  ) {}

  get pending(): boolean {
    return this.#pending;
  }

  /** @internal used by WorkQueue */
  setPending(v: boolean): void {
    this.#pending = v;
  }
}

export class WorkQueue {
  readonly #items: Work[] = [];

  constructor(readonly name: string) {}

  /** Queues `work`; false (like `queue_work`) if it is already pending. */
  queueWork(work: Work): boolean {
    if (work.pending) return false;
    work.setPending(true);
    this.#items.push(work);
    return true;
  }

  get pendingCount(): number {
    return this.#items.length;
  }

  pendingLabels(): string[] {
    return this.#items.map((w) => w.label);
  }

  /** Runs the oldest item; false when the queue is empty. */
  runOne(): boolean {
    const w = this.#items.shift();
    if (!w) return false;
    w.setPending(false);
    w.fn();
    return true;
  }

  /** Runs work until the queue is empty, including work queued meanwhile (`flush_workqueue`). */
  flush(): number {
    let n = 0;
    while (this.runOne()) n++;
    return n;
  }
}

/** Every work queue of one machine, so the machine can run all deferred work to completion. */
export class Scheduler {
  readonly #queues: WorkQueue[] = [];

  createQueue(name: string): WorkQueue {
    const q = new WorkQueue(name);
    this.#queues.push(q);
    return q;
  }

  /** Removes a queue (its pending work is dropped, like `destroy_workqueue` after a flush). */
  destroyQueue(q: WorkQueue): void {
    const i = this.#queues.indexOf(q);
    if (i >= 0) this.#queues.splice(i, 1);
  }

  queues(): readonly WorkQueue[] {
    return this.#queues;
  }

  /** Runs all queues round-robin, one item at a time, until every queue is empty. */
  settle(limit = 1_000_000): number {
    let n = 0;
    for (let progress = true; progress; ) {
      progress = false;
      for (const q of this.#queues) {
        if (q.runOne()) {
          progress = true;
          if (++n >= limit) throw new SimError(`deferred work did not settle after ${limit} items`);
        }
      }
    }
    return n;
  }
}
