// Reports of scenario runs: a human-readable text form (what the CLI prints) and a JSON form
// (`--json`) that is identical byte for byte across runs of the same scenario and seed.

import type { Json } from "../base/json.js";
import { failureText, type ScenarioResult, type StepResult } from "./run.js";

/** The `--json` view of one run: per step the call, result or errno, virtual time, trace count. */
export function scenarioResultJSON(r: ScenarioResult): Json {
  return {
    file: r.file,
    name: r.name,
    driver: r.driver,
    seed: r.seed,
    status: r.status,
    steps: r.steps.map(stepJSON),
  };
}

function stepJSON(s: StepResult): Json {
  const out: { [k: string]: Json } = {
    step: s.step,
    line: s.line ?? null,
    call: s.call,
    status: s.status,
  };
  if (s.section !== undefined) out.section = s.section;
  if (s.result !== undefined) out.result = s.result;
  if (s.errno !== undefined) out.errno = s.errno;
  if (s.fault !== undefined) out.fault = s.fault;
  out.duration_ns = s.durationNs;
  out.trace_events = s.traceEvents;
  if (s.warnings.length > 0) out.warnings = [...s.warnings];
  if (s.failure) {
    const f: { [k: string]: Json } = { message: s.failure.message };
    if (s.failure.expected !== undefined) f.expected = s.failure.expected;
    if (s.failure.actual !== undefined) f.actual = s.failure.actual;
    out.failure = f;
  }
  if (s.note !== undefined) out.note = s.note;
  return out;
}

/** One line per scenario; a failing one adds the failing step, its call, expected and actual. */
export function formatScenarioResult(r: ScenarioResult, opts: { verbose?: boolean } = {}): string {
  const passed = r.steps.filter((s) => s.status === "pass").length;
  const lines = [
    `${r.status === "pass" ? "PASS" : "FAIL"} ${r.file} [${r.driver}] ${r.name} — ${passed}/${r.steps.length} steps`,
  ];
  for (const s of r.steps) {
    if (s.status === "pass" && !opts.verbose) continue;
    if (s.status === "skipped") continue;
    if (s.section !== undefined) {
      lines.push(`  § ${s.section}`);
      continue;
    }
    const where = `${s.file}${s.line === undefined ? "" : `:${s.line}${s.column === undefined ? "" : `:${s.column}`}`}`;
    // A passing step's whole view (a domain's is ~400 characters) would bury the listing.
    const outcome = s.errno
      ? ` = ${failureText(s.errno)}`
      : s.result !== undefined
        ? ` = ${short(s.result, s.status === "pass" ? 100 : 400)}`
        : "";
    lines.push(
      `  ${s.status === "fail" ? "✗" : "✓"} step ${s.step} (${where}): ${s.call}${outcome}`,
    );
    if (s.failure) {
      lines.push(`      ${s.failure.message}`);
      if (s.failure.expected !== undefined)
        lines.push(`      expected: ${short(s.failure.expected)}`);
      if (s.failure.actual !== undefined) lines.push(`      actual:   ${short(s.failure.actual)}`);
    }
    if (s.warnings.length > 0 && (opts.verbose || s.failure)) {
      lines.push(`      kernel WARN at: ${s.warnings.join(", ")}`);
    }
  }
  return lines.join("\n");
}

function short(x: Json, max = 400): string {
  const s = JSON.stringify(x);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
