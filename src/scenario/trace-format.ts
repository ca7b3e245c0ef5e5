// Trace exports: ftrace/trace-cmd-style text lines (the kernel's own tracepoints printed with
// their TP_printk formats, the simulator's events as key=value) and Chrome trace-event JSON that
// opens in ui.perfetto.dev (one process per subsystem, one thread per track: IOMMU instances,
// devices, `core`, …; named by metadata events).

import { hex } from "../base/bits.js";
import { type Json, jsonValue } from "../base/json.js";
import type { TraceRecord } from "../base/trace.js";
import { splitEventName } from "../base/trace.js";

/** The records of one run, named for the trace viewer (e.g. `file [driver]`). */
export interface TraceRun {
  readonly label: string;
  readonly records: readonly TraceRecord[];
  /** Stretches of virtual time with a name (scenario steps, the demo's acts): "X" events. */
  readonly spans?: readonly TraceSpan[];
}

export interface TraceSpan {
  readonly name: string;
  /** The track the span sits on (e.g. `steps`), in the `scenario` process. */
  readonly track: string;
  /** Start and length in virtual nanoseconds. */
  readonly ts: number;
  readonly dur: number;
  readonly args?: Json;
}

/** The subsystem of spans (the scenario's own steps and acts). */
export const SPAN_SYSTEM = "scenario";

// ---------------------------------------------------------------- text

/**
 * One trace-cmd report line per record, `<task>-<pid> [000] <sec.usec>: <event>: <fields>`: the
 * track plays the task (blanks turned into `_`, as a comm never has them in this format), its
 * id (in order of first appearance) the pid, one CPU. The timestamp is the exact virtual time,
 * which never decreases; lines with the same one are in the order the events happened.
 */
export function formatTraceText(records: readonly TraceRecord[]): string {
  const ids = new Map<string, number>();
  let out = "";
  for (const r of records) {
    let id = ids.get(r.track);
    if (id === undefined) {
      id = ids.size + 1;
      ids.set(r.track, id);
    }
    out += `${traceLine(r, id)}\n`;
  }
  return out;
}

/** ftrace's timestamp: seconds and microseconds (`%5lu.%06lu`). */
export function ftraceTimestamp(ns: number): string {
  const us = Math.floor(ns / 1000);
  const secs = Math.floor(us / 1_000_000);
  return `${String(secs).padStart(5)}.${String(us % 1_000_000).padStart(6, "0")}`;
}

/** A track as the task column prints it: one word, so `TASK-PID` splits back at the last `-`. */
export function ftraceComm(track: string): string {
  return track.length === 0 ? "<none>" : track.replace(/\s/g, "_");
}

function traceLine(r: TraceRecord, id: number): string {
  const { system, name } = splitEventName(r.event);
  const kernel = system === "iommu";
  const task = `${ftraceComm(r.track)}-${id}`.padStart(16);
  const event = kernel ? name : `${system}:${name}`;
  const body = kernel ? kernelText(name, r.fields) : keyValues(r.fields);
  return `${task} [000] ${ftraceTimestamp(r.ts)}: ${event}: ${body}`;
}

/** include/trace/events/iommu.h TP_printk formats. */
function kernelText(name: string, f: Readonly<Record<string, unknown>>): string {
  const x = (v: unknown) => hex(v as bigint, 16);
  switch (name) {
    case "add_device_to_group":
    case "remove_device_from_group":
      return `IOMMU: groupID=${f.gid} device=${f.device}`;
    case "attach_device_to_domain":
      return `IOMMU: device=${f.device}`;
    case "map":
      return `IOMMU: iova=${x(f.iova)} - ${x((f.iova as bigint) + (f.size as bigint))} paddr=${x(f.paddr)} size=${f.size}`;
    case "unmap":
      return `IOMMU: iova=${x(f.iova)} - ${x((f.iova as bigint) + (f.size as bigint))} size=${f.size} unmapped_size=${f.unmapped_size}`;
    case "io_page_fault":
      return `IOMMU:${f.driver} ${f.device} iova=${x(f.iova)} flags=${hex(f.flags as number, 4)}`;
    default:
      return keyValues(f);
  }
}

function keyValues(f: Readonly<Record<string, unknown>>): string {
  return Object.entries(f)
    .map(([k, v]) => `${k}=${typeof v === "bigint" ? hex(v) : String(v)}`)
    .join(" ");
}

// ---------------------------------------------------------------- Chrome / Perfetto JSON

/**
 * Chrome trace-event format: a process per subsystem (per run when there are several runs), a
 * thread per track with its name, an instant event ("i") per record with its fields as args,
 * and a complete event ("X") per span. Timestamps are microseconds of virtual time; every
 * track's events are in time order.
 */
export function traceToChromeJSON(runs: readonly TraceRun[]): Json {
  const meta: Json[] = [];
  const events: Json[] = [];
  const pids = new Map<string, number>();
  const tids = new Map<string, number>();
  const place = (run: number, system: string, track: string): [number, number] => {
    const pkey = `${run}\u0000${system}`;
    let pid = pids.get(pkey);
    if (pid === undefined) {
      pid = pids.size + 1;
      pids.set(pkey, pid);
      const name = runs.length > 1 ? `${system} — ${runs[run]!.label}` : system;
      meta.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name } });
      meta.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: pid } });
    }
    const tkey = `${pkey}\u0000${track}`;
    let tid = tids.get(tkey);
    if (tid === undefined) {
      tid = tids.size + 1;
      tids.set(tkey, tid);
      meta.push({ name: "thread_name", ph: "M", pid, tid, args: { name: track } });
    }
    return [pid, tid];
  };
  runs.forEach((run, i) => {
    for (const s of run.spans ?? []) {
      const [pid, tid] = place(i, SPAN_SYSTEM, s.track);
      events.push({
        name: s.name,
        cat: SPAN_SYSTEM,
        ph: "X",
        ts: s.ts / 1000,
        dur: s.dur / 1000,
        pid,
        tid,
        args: s.args ?? {},
      });
    }
    for (const r of run.records) {
      const { system, name } = splitEventName(r.event);
      const [pid, tid] = place(i, system, r.track);
      events.push({
        name,
        cat: system,
        ph: "i",
        s: "t",
        ts: r.ts / 1000,
        pid,
        tid,
        args: jsonValue(r.fields),
      });
    }
  });
  return { traceEvents: [...meta, ...events], displayTimeUnit: "ns" };
}
