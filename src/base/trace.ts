// The trace bus: every layer emits typed events here; recorders and exporters subscribe.
// Hot paths guard with `if (trace.enabled)` so an idle bus costs one property read.

import type { VirtualClock } from "./clock.js";
import type { TraceEventMap, TraceEventName, TraceValue } from "./trace-events.js";

export interface TraceRecord<E extends TraceEventName = TraceEventName> {
  /** Position in the whole trace, from 0. */
  readonly seq: number;
  /** Virtual time in nanoseconds. */
  readonly ts: number;
  readonly event: E;
  /** What the event belongs to, e.g. an IOMMU instance, a device, `core`. */
  readonly track: string;
  readonly fields: TraceEventMap[E];
}

export type TraceSink = (record: TraceRecord) => void;

export class TraceBus {
  /** True while anything listens; emitters on hot paths check this first. */
  enabled = false;
  #seq = 0;
  #sinks: TraceSink[] = [];

  constructor(private readonly clock: VirtualClock) {}

  emit<E extends TraceEventName>(event: E, track: string, fields: TraceEventMap[E]): void {
    if (!this.enabled) return;
    const record: TraceRecord<E> = { seq: this.#seq++, ts: this.clock.now, event, track, fields };
    for (const sink of this.#sinks) sink(record as TraceRecord);
  }

  subscribe(sink: TraceSink): () => void {
    this.#sinks.push(sink);
    this.enabled = true;
    return () => {
      const i = this.#sinks.indexOf(sink);
      if (i >= 0) this.#sinks.splice(i, 1);
      this.enabled = this.#sinks.length > 0;
    };
  }

  /** Starts keeping every record; `stop()` detaches and returns them. */
  record(): TraceRecording {
    const records: TraceRecord[] = [];
    const stop = this.subscribe((r) => records.push(r));
    return {
      records,
      stop: () => {
        stop();
        return records;
      },
    };
  }
}

export interface TraceRecording {
  readonly records: TraceRecord[];
  stop(): TraceRecord[];
}

/** `system` and `name` halves of an event key. */
export function splitEventName(event: TraceEventName): { system: string; name: string } {
  const i = event.indexOf(":");
  return { system: event.slice(0, i), name: event.slice(i + 1) };
}

export type { TraceEventMap, TraceEventName, TraceValue };
