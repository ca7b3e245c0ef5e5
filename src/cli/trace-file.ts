// Writing `--trace FILE`: Chrome/Perfetto trace JSON when FILE ends in .json, else ftrace-style
// text, from the records of one or more scenario runs and their steps as spans; each run's
// device names make a device one track (one task) under both of its names.

import { InputError } from "../base/errors.js";
import { formatTraceText, type TraceRun, traceToChromeJSON } from "../scenario/trace-format.js";
import type { CliIo } from "./io.js";

/** Writes the runs' traces to `path`; returns how many records it holds. */
export function writeTraceFile(path: string, runs: readonly TraceRun[], io: CliIo): number {
  const text = path.endsWith(".json")
    ? `${JSON.stringify(traceToChromeJSON(runs))}\n`
    : runs.length === 1
      ? formatTraceText(runs[0]!.records, runs[0]!.devices)
      : runs.map((r) => `# ${r.label}\n${formatTraceText(r.records, r.devices)}`).join("");
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
