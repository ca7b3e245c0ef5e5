// Trace exports for scenario runs: ftrace/trace-cmd-like text lines (the kernel's own
// tracepoints printed with their TP_printk formats, the simulator's events as key=value) and
// Chrome trace-event JSON that opens in ui.perfetto.dev.

import { hex } from "../base/bits.js";
import { type Json, jsonValue } from "../base/json.js";
import type { TraceRecord } from "../base/trace.js";
import { splitEventName } from "../base/trace.js";

/** One trace-cmd style line per record: `track  [seconds]: event: text`. */
export function formatTraceText(records: readonly TraceRecord[]): string {
  return records.map(traceLine).join("\n") + (records.length > 0 ? "\n" : "");
}

function traceLine(r: TraceRecord): string {
  const secs = (r.ts / 1e9).toFixed(9);
  const { system, name } = splitEventName(r.event);
  const body = system === "iommu" ? kernelText(name, r.fields) : keyValues(r.fields);
  return `${r.track.padStart(16)} ${secs.padStart(15)}: ${system === "iommu" ? name : `${system}:${name}`}: ${body}`;
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

/** The records of one run, named for the trace viewer (e.g. `file [driver]`). */
export interface TraceRun {
  readonly label: string;
  readonly records: readonly TraceRecord[];
}

/**
 * Chrome trace-event format: one process per run, one thread per track, an instant event per
 * record with its fields as args; timestamps are microseconds of virtual time.
 */
export function traceToChromeJSON(runs: readonly TraceRun[]): Json {
  const events: Json[] = [];
  runs.forEach((run, i) => {
    const pid = i + 1;
    events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: run.label } });
    const tids = new Map<string, number>();
    for (const r of run.records) {
      let tid = tids.get(r.track);
      if (tid === undefined) {
        tid = tids.size + 1;
        tids.set(r.track, tid);
        events.push({ name: "thread_name", ph: "M", pid, tid, args: { name: r.track } });
      }
      const { system, name } = splitEventName(r.event);
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
  return { traceEvents: events, displayTimeUnit: "ns" };
}
