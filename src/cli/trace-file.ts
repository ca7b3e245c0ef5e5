// Writing `--trace FILE`: Chrome/Perfetto trace JSON when FILE ends in .json, else ftrace-style
// text, from the records of one or more scenario runs and their steps as spans.

import { InputError } from "../base/errors.js";
import type { ScenarioResult } from "../scenario/run.js";
import {
  formatTraceText,
  type TraceRun,
  type TraceSpan,
  traceToChromeJSON,
} from "../scenario/trace-format.js";
import type { CliIo } from "./io.js";

/** A run's trace: its records, and each step (and each section's stretch) as a span. */
export function traceRunOf(r: ScenarioResult, label: string): TraceRun {
  const spans: TraceSpan[] = [];
  let section: { name: string; ts: number } | null = null;
  const end = r.steps.reduce((t, s) => Math.max(t, s.startNs + s.durationNs), 0);
  const closeSection = (at: number) => {
    if (section !== null) {
      spans.push({ name: section.name, track: "sections", ts: section.ts, dur: at - section.ts });
    }
  };
  for (const s of r.steps) {
    if (s.status === "skipped") continue;
    if (s.section !== undefined) {
      closeSection(s.startNs);
      section = { name: s.section, ts: s.startNs };
      continue;
    }
    spans.push({
      name: s.call,
      track: "steps",
      ts: s.startNs,
      dur: s.durationNs,
      args: {
        step: s.step,
        status: s.status,
        ...(s.result === undefined ? {} : { result: s.result }),
        ...(s.errno === undefined ? {} : { errno: s.errno }),
      },
    });
  }
  closeSection(end);
  return { label, records: r.trace ?? [], spans };
}

/** Writes the runs' traces to `path`; returns how many records it holds. */
export function writeTraceFile(path: string, runs: readonly TraceRun[], io: CliIo): number {
  const text = path.endsWith(".json")
    ? `${JSON.stringify(traceToChromeJSON(runs))}\n`
    : runs.length === 1
      ? formatTraceText(runs[0]!.records)
      : runs.map((r) => `# ${r.label}\n${formatTraceText(r.records)}`).join("");
  try {
    io.writeFile(path, text);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why =
      code === "ENOENT"
        ? "no such directory"
        : code === "EACCES"
          ? "permission denied"
          : code === "EISDIR"
            ? "it is a directory"
            : e instanceof Error
              ? e.message
              : String(e);
    throw new InputError(`--trace: cannot write the file: ${why}`, { file: path });
  }
  return runs.reduce((n, r) => n + r.records.length, 0);
}
