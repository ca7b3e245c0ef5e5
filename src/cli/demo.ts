// `iommu-sim demo` (and `npm start`): reads the story (scenarios/demo/story.yaml, next to this
// package's sources), runs it on the default machine, prints the acts and the report (or JSON),
// and writes the whole run's trace when asked.

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../base/errors.js";
import { demoJSON, formatDemo, runDemo } from "../scenario/demo.js";
import { loadScenario } from "../scenario/load.js";
import { machineHost } from "../scenario/machine-host.js";
import { traceRunOf } from "../scenario/trace-format.js";
import { addDeviceNames } from "../scenario/trace-tracks.js";
import type { CliIo } from "./io.js";
import type { DemoCommandOptions } from "./program.js";
import { writeTraceFile } from "./trace-file.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The story, named relative to the package root so the output is the same from any directory. */
export const DEMO_STORY = "scenarios/demo/story.yaml";

export function demo(io: CliIo, opts: DemoCommandOptions): number {
  const path = join(ROOT, DEMO_STORY);
  let text: string;
  try {
    text = io.readFile(path);
  } catch {
    throw new InputError(`the demo's story is missing: ${relative(process.cwd(), path)}`);
  }
  // A story that does not validate is an input error like any scenario's (exit 2).
  const scenario = loadScenario(text, DEMO_STORY, machineHost);
  const progress = io.progress(scenario.steps.length, "demo");
  const run = runDemo(scenario, {
    ...(opts.seed === undefined ? {} : { seed: opts.seed }),
    keepTrace: opts.trace !== undefined,
    ...(progress ? { onStep: (s) => progress.tick(s.section ?? s.call.slice(0, 40)) } : {}),
  });
  progress?.stop();
  let trace: { file: string; events: number } | null = null;
  if (opts.trace !== undefined) {
    // The story plugs nothing out: the machine at its end knows every device's names.
    const devices = new Map<string, string>();
    addDeviceNames(run.machine, devices);
    const events = writeTraceFile(opts.trace, [traceRunOf(run.result, "demo", devices)], io);
    trace = { file: opts.trace, events };
  }
  io.stdout(
    opts.json ? `${JSON.stringify(demoJSON(run, trace), null, 2)}\n` : formatDemo(run, trace),
  );
  return run.result.status === "pass" ? 0 : 1;
}
