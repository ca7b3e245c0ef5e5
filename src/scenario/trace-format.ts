// Trace exports: ftrace/trace-cmd-style text lines (the kernel's own tracepoints printed with
// their TP_printk formats, the simulator's events as key=value) and Chrome trace-event JSON that
// opens in ui.perfetto.dev (the scenario's steps as slices, then a process per kind of track:
// IOMMUs, devices, groups, domains, processes, …, a thread per track). Given the run's device
// names, a device's kernel-named and description-named tracks are one (trace-tracks.ts).

import { hex } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonValue } from "../base/json.js";
import type { TraceRecord } from "../base/trace.js";
import { splitEventName } from "../base/trace.js";
import type { ScenarioResult } from "./run.js";
import { type DeviceNames, groupTracks, trackNamer } from "./trace-tracks.js";

/** The records of one run, named for the trace viewer (e.g. `file [driver]`). */
export interface TraceRun {
  readonly label: string;
  readonly records: readonly TraceRecord[];
  /**
   * The run's steps in order. Each owns the next `records` of `records`; those before the
   * first step's are the boot's.
   */
  readonly steps?: readonly TraceStep[];
  /**
   * The run's devices, kernel name → description name (see `addDeviceNames`): each device's
   * events are then one track, `nic0 (0000:04:00.0)`. Without it, tracks are as emitted.
   */
  readonly devices?: DeviceNames;
}

export interface TraceStep {
  /** The call as written, or a section's title. */
  readonly name: string;
  /** A section starts a stretch of steps that lasts until the next section. */
  readonly section?: boolean;
  /** How many records the step emitted. */
  readonly records: number;
  /** Virtual time at the step's start and end, in nanoseconds. */
  readonly startNs: number;
  readonly endNs: number;
  readonly args?: Json;
}

/** The process of the scenario's own tracks (`sections`, `steps`). */
export const SPAN_SYSTEM = "scenario";

/**
 * What each event or step boundary adds to the display timeline of the JSON export, in ns: the
 * virtual clock stands still between waits, so a run's events would all share one instant.
 */
export const DISPLAY_TICK_NS = 1000;

/**
 * A finished run as the exporters take it: its trace, its (not skipped) steps and, if given, the
 * names of its machine's devices.
 */
export function traceRunOf(r: ScenarioResult, label: string, devices?: DeviceNames): TraceRun {
  const steps: TraceStep[] = [];
  for (const s of r.steps) {
    if (s.status === "skipped") continue;
    if (s.section !== undefined) {
      steps.push({
        name: s.section,
        section: true,
        records: 0,
        startNs: s.startNs,
        endNs: s.startNs,
      });
      continue;
    }
    steps.push({
      name: s.call,
      records: s.traceEvents,
      startNs: s.startNs,
      endNs: s.startNs + s.durationNs,
      args: {
        step: s.step,
        status: s.status,
        ...(s.result === undefined ? {} : { result: s.result }),
        ...(s.errno === undefined ? {} : { errno: s.errno }),
      },
    });
  }
  return { label, records: r.trace ?? [], steps, ...(devices === undefined ? {} : { devices }) };
}

// ---------------------------------------------------------------- text

/**
 * One trace-cmd report line per record, `<task>-<pid> [000] <sec.usec>: <event>: <fields>`: the
 * track plays the task (named as in the JSON export, so with `devices` a device is one task,
 * `nic0_(0000:04:00.0)`; blanks turned into `_`, as a comm never has them in this format), its
 * id (in order of first appearance) the pid, one CPU. The timestamp is the exact virtual time,
 * which never decreases; lines with the same one are in the order the events happened.
 */
export function formatTraceText(records: readonly TraceRecord[], devices?: DeviceNames): string {
  const nameOf = trackNamer(devices);
  const tasks = new Map<string, string>();
  let out = "";
  for (const r of records) {
    const name = nameOf(r.track);
    let task = tasks.get(name);
    if (task === undefined) {
      task = `${ftraceComm(name)}-${tasks.size + 1}`.padStart(16);
      tasks.set(name, task);
    }
    out += `${traceLine(r, task)}\n`;
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

/** `task` is the padded `TASK-PID` column. */
function traceLine(r: TraceRecord, task: string): string {
  const { system, name } = splitEventName(r.event);
  const kernel = system === "iommu";
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
 * Chrome trace-event format. Per run: a `scenario` process with a `sections` and a `steps`
 * thread (a complete event, `X`, per section, per step and for the boot), then a process per
 * kind of track (IOMMUs, devices, groups, domains, processes, PCI, kernel) with a thread per
 * track (a device's two tracks one thread when the run has `devices`: `nic0 (0000:04:00.0)`),
 * all named and ordered by metadata events; every record is a thread-scoped instant
 * (`i`) named `system:event` with its fields and `virtual_ns` as args.
 *
 * `ts` is a display time in µs, not the virtual time: each record and each step boundary takes
 * one `DISPLAY_TICK_NS` tick after the previous one, on top of the virtual time (display =
 * virtual + ticks so far). So events keep their order and the gaps virtual time opens, events
 * of one virtual instant stand apart, and a step's slice spans exactly its events. The exact
 * virtual time is in each event's args (`virtual_ns`; `virtual_dur_ns` for slices). Events are
 * written in timeline order; the same runs give the same bytes.
 */
export function traceToChromeJSON(runs: readonly TraceRun[]): Json {
  const meta: Json[] = [];
  const events: Json[] = [];
  let nextPid = 1;
  let nextTid = 1;
  const process = (run: number, name: string): number => {
    const pid = nextPid++;
    const label = runs.length > 1 ? `${name} — ${runs[run]!.label}` : name;
    meta.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name: label } });
    meta.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: pid } });
    return pid;
  };
  const thread = (pid: number, name: string, sortIndex: number): number => {
    const tid = nextTid++;
    meta.push({ name: "thread_name", ph: "M", pid, tid, args: { name } });
    meta.push({ name: "thread_sort_index", ph: "M", pid, tid, args: { sort_index: sortIndex } });
    return tid;
  };
  runs.forEach((run, i) => {
    // Places: the scenario's threads first, then each track's, group by group.
    let spanPid = 0;
    let sectionsTid = 0;
    let stepsTid = 0;
    if (run.steps !== undefined) {
      spanPid = process(i, SPAN_SYSTEM);
      if (run.steps.some((s) => s.section)) sectionsTid = thread(spanPid, "sections", 0);
      stepsTid = thread(spanPid, "steps", 1);
    }
    const nameOf = trackNamer(run.devices);
    const places = new Map<string, [number, number]>();
    let group = "";
    let pid = 0;
    let sort = 0;
    for (const t of groupTracks(run.records, run.devices)) {
      if (t.group !== group) {
        group = t.group;
        pid = process(i, group);
        sort = 0;
      }
      places.set(t.track, [pid, thread(pid, t.track, sort++)]);
    }
    layOut(run, {
      record(r, ns) {
        const [p, t] = places.get(nameOf(r.track))!;
        const args = jsonValue(r.fields) as { [key: string]: Json };
        args.virtual_ns = r.ts;
        events.push({
          name: r.event,
          cat: splitEventName(r.event).system,
          ph: "i",
          s: "t",
          ts: us(ns),
          pid: p,
          tid: t,
          args,
        });
      },
      span(s, section) {
        const args: { [key: string]: Json } = {
          ...((s.args ?? {}) as { [key: string]: Json }),
          virtual_ns: s.startNs,
          virtual_dur_ns: s.endNs - s.startNs,
        };
        const event = {
          name: s.name,
          cat: SPAN_SYSTEM,
          ph: "X",
          ts: 0,
          dur: 0,
          pid: spanPid,
          tid: section ? sectionsTid : stepsTid,
          args,
        };
        events.push(event);
        return (startNs, endNs) => {
          event.ts = us(startNs);
          event.dur = us(endNs - startNs);
        };
      },
    });
  });
  return { traceEvents: [...meta, ...events], displayTimeUnit: "ns" };
}

function us(ns: number): number {
  return ns / 1000;
}

interface Layout {
  record(r: TraceRecord, displayNs: number): void;
  /** A slice starts; the returned function sets its display start and end once both are known. */
  span(s: TraceStep, section: boolean): (startNs: number, endNs: number) => void;
}

/**
 * Walks a run in timeline order, handing each record and slice its display time (virtual time +
 * one tick per record and per step boundary so far). A section lasts until the last tick before
 * the next section (or the run's end); the boot is a slice of its own when it traced anything.
 */
function layOut(run: TraceRun, out: Layout): void {
  const steps = run.steps ?? [];
  const stepped = steps.reduce((n, s) => n + s.records, 0);
  if (stepped > run.records.length) {
    throw new SimError(
      `trace run "${run.label}": its steps own ${stepped} records, it has ${run.records.length}`,
    );
  }
  let ticks = 0;
  let last = 0;
  // The max only matters for out-of-order input; the virtual clock never goes back.
  const tick = (virtualNs: number) => {
    last = Math.max(virtualNs + ++ticks * DISPLAY_TICK_NS, last + DISPLAY_TICK_NS);
    return last;
  };
  let next = 0;
  const slice = (s: TraceStep, section: boolean) => {
    const place = out.span(s, section);
    const start = tick(s.startNs);
    for (const end = next + s.records; next < end; next++) {
      const r = run.records[next]!;
      out.record(r, tick(r.ts));
    }
    if (!section) place(start, tick(Math.max(s.endNs, run.records[next - 1]?.ts ?? 0)));
    return { place, start, virtualNs: s.startNs };
  };
  if (run.steps === undefined) {
    for (const r of run.records) out.record(r, tick(r.ts));
    return;
  }
  const boot = run.records.length - stepped;
  if (boot > 0) {
    const endNs = run.records[boot - 1]!.ts;
    slice({ name: "boot", records: boot, startNs: 0, endNs, args: { records: boot } }, false);
  }
  let open: ReturnType<typeof slice> | null = null;
  const close = () => {
    // An empty section still gets a tick, so that its slice has a length.
    if (open !== null) open.place(open.start, last > open.start ? last : tick(open.virtualNs));
  };
  for (const s of steps) {
    if (s.section) {
      close();
      open = slice(s, true);
    } else {
      slice(s, false);
    }
  }
  close();
}
