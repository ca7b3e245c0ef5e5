// The demo (`iommu-sim demo`, `npm start`): the story scenario (scenarios/demo/story.yaml) run on
// the built-in default machine, told act by act — each `section:` is an act with a plain-language
// line, each call is shown with its result — then a report of what the machine is and what it
// did. The same as JSON with `--json`. Nothing here touches the host: the CLI reads the story
// and writes the output and the trace.

import { type Json, jsonValue } from "../base/json.js";
import type { TraceRecord } from "../base/trace.js";
import type { Machine } from "../machine/machine.js";
import { activityJSON, activityReport, machineReport, topologyJSON } from "../machine/report.js";
import { machineStatistics, statisticsJSON } from "../machine/statistics.js";
import type { CallStep, Scenario, Step } from "./load.js";
import type { MachineScenarioPlan } from "./machine-host.js";
import { machineHost } from "./machine-host.js";
import { failureText, runScenario, type ScenarioResult, type StepResult } from "./run.js";
import type { Compiled } from "./values.js";

export type DemoScenario = Scenario<Machine, MachineScenarioPlan>;

export interface DemoOptions {
  readonly seed?: number;
  /** Keep the whole run's trace (boot included). */
  readonly keepTrace?: boolean;
  readonly onStep?: (s: StepResult) => void;
}

export interface DemoRun {
  readonly scenario: DemoScenario;
  readonly result: ScenarioResult;
  readonly machine: Machine;
  readonly trace: readonly TraceRecord[] | null;
}

/** One act: a `section:` and the steps up to the next one. */
export interface DemoAct {
  readonly title: string;
  readonly note: string | undefined;
  readonly calls: readonly { readonly step: CallStep<Machine>; readonly result: StepResult }[];
  readonly checks: number;
  /** The notes of the act's checks, each after the calls that came before it. */
  readonly checkNotes: readonly {
    readonly step: number;
    readonly afterCalls: number;
    readonly note: string;
  }[];
  readonly failed: readonly StepResult[];
}

/** Runs the story; the machine is kept for the report. */
export function runDemo(scenario: DemoScenario, opts: DemoOptions = {}): DemoRun {
  let machine: Machine | null = null;
  const result = runScenario(scenario, machineHost, {
    ...(opts.seed === undefined ? {} : { seed: opts.seed }),
    keepTrace: opts.keepTrace ?? false,
    onBoot: (m) => {
      machine = m;
    },
    ...(opts.onStep ? { onStep: opts.onStep } : {}),
  });
  if (machine === null) throw new Error("the demo's machine did not boot");
  return { scenario, result, machine, trace: result.trace ?? null };
}

/** The story's acts, in order (steps before the first section form an untitled prologue). */
export function demoActs(run: DemoRun): DemoAct[] {
  const acts: { title: string; note: string | undefined; steps: [Step<Machine>, StepResult][] }[] =
    [];
  run.scenario.steps.forEach((step, i) => {
    const r = run.result.steps.find((s) => s.step === i + 1);
    if (r === undefined) return;
    if (step.kind === "section") {
      acts.push({ title: step.title, note: step.note, steps: [] });
      return;
    }
    if (acts.length === 0) acts.push({ title: "", note: undefined, steps: [] });
    acts[acts.length - 1]!.steps.push([step, r]);
  });
  return acts.map((a) => {
    let calls = 0;
    const checkNotes: { step: number; afterCalls: number; note: string }[] = [];
    for (const [s, r] of a.steps) {
      if (s.kind === "call") calls++;
      else if (s.kind === "expect" && s.note !== undefined && r.status === "pass")
        checkNotes.push({ step: r.step, afterCalls: calls, note: s.note });
    }
    return {
      title: a.title,
      note: a.note,
      calls: a.steps.flatMap(([s, r]) => (s.kind === "call" ? [{ step: s, result: r }] : [])),
      checks: a.steps.filter(([s, r]) => s.kind === "expect" && r.status === "pass").length,
      checkNotes,
      failed: a.steps.filter(([, r]) => r.status === "fail").map(([, r]) => r),
    };
  });
}

// ---------------------------------------------------------------- text

const WIDTH = 96;

/** The demo's text: a header, the acts, the report and where the trace went. */
export function formatDemo(run: DemoRun, trace: { file: string; events: number } | null): string {
  const m = run.machine;
  const out: string[] = [];
  out.push(run.scenario.name);
  if (run.scenario.description) for (const l of wrap(run.scenario.description, WIDTH)) out.push(l);
  out.push("");
  out.push(machineLine(m));
  out.push(
    `Seed ${run.result.seed}; story ${run.scenario.file} (each call shows its step number, as inspect --step counts).`,
  );
  let n = 0;
  for (const act of demoActs(run)) {
    out.push("");
    if (act.title !== "") out.push(`${++n}. ${act.title}`);
    if (act.note) for (const l of wrap(act.note, WIDTH - 3)) out.push(`   ${l}`);
    const checkNote = (calls: number) => {
      for (const c of act.checkNotes.filter((x) => x.afterCalls === calls)) {
        const [first, ...rest] = wrap(c.note, WIDTH - 7);
        out.push(`     ✓ ${first}`);
        for (const l of rest) out.push(`       ${l}`);
      }
    };
    checkNote(0);
    act.calls.forEach(({ step, result }, i) => {
      const mark = result.status === "fail" ? "✗" : result.status === "skipped" ? "·" : "→";
      const named = step.bind !== undefined && result.status === "pass" ? ` (as ${step.bind})` : "";
      // The step number, as `inspect --step N` counts it.
      out.push(
        `${String(result.step).padStart(3)} ${mark} ${step.text}${outcomeText(step, result)}${named}`,
      );
      if (step.note) for (const l of wrap(step.note, WIDTH - 8)) out.push(`       ${l}`);
      checkNote(i + 1);
    });
    if (act.checks > 0)
      out.push(
        `     ✓ ${act.checks} check${act.checks === 1 ? "" : "s"} of the machine's state held`,
      );
    for (const f of act.failed) {
      out.push(`   ✗ step ${f.step} (${f.file}:${f.line ?? "?"}): ${f.call}`);
      if (f.failure) out.push(`       ${f.failure.message}`);
    }
  }
  out.push("");
  const passed = run.result.steps.filter((s) => s.status === "pass").length;
  const calls = run.scenario.steps.filter((s) => s.kind === "call").length;
  const checks = run.scenario.steps.filter((s) => s.kind === "expect").length;
  out.push(
    run.result.status === "pass"
      ? `✓ All ${calls} calls returned what the kernel returns and all ${checks} checks of the machine's state held.`
      : `✗ The story FAILED: ${passed}/${run.result.steps.length} steps passed.`,
  );
  out.push("");
  out.push(rule("The machine now"));
  out.push(machineReport(m));
  out.push("");
  out.push(rule("What it did"));
  out.push(activityReport(m, machineStatistics(m)));
  out.push("");
  out.push(
    trace === null
      ? "Trace: not recorded (npx iommu-sim demo --trace FILE: .json for ui.perfetto.dev, else ftrace-style text)."
      : `Trace: ${trace.events} events written to ${trace.file}${trace.file.endsWith(".json") ? " (open it in ui.perfetto.dev)" : ""}.`,
  );
  out.push("");
  out.push("Next:");
  out.push(`  npx iommu-sim inspect ${run.scenario.file} --step N --domain ID`);
  out.push(
    "      the machine after step N (the numbers beside the calls), with domain ID's page table",
  );
  out.push("  npx iommu-sim run scenarios/*/*.yaml");
  out.push("      run every scenario of the project and check every expectation");
  out.push("  docs/scenario-language.md: how to write your own");
  return `${out.join("\n")}\n`;
}

/** `Machine "default": 2 RISC-V IOMMUs; 6 devices and 8 PCI bridges/ports in 12 IOMMU groups`. */
function machineLine(m: Machine): string {
  const iommus = m.iommus();
  const drivers = [...new Set(iommus.map((i) => i.description.driver))];
  const kind = drivers.length === 1 && drivers[0] === "riscv" ? "RISC-V IOMMUs" : "IOMMUs";
  const devices = m.presentDevices();
  const pciDevices = devices.filter((n) => m.pci.pciDev(n) !== undefined).length;
  const pciFunctions = (topologyJSON(m) as { functions: Json[] }[]).reduce(
    (n, s) => n + s.functions.length,
    0,
  );
  const groups = m.core.groups().length;
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? "" : "s"}`;
  return `Machine "${m.name}": ${iommus.length} ${kind}; ${n(devices.length, "device")} and ${pciFunctions - pciDevices} PCI bridges/ports in ${n(groups, "IOMMU group")}`;
}

function rule(title: string): string {
  return `── ${title} ${"─".repeat(Math.max(3, WIDTH - title.length - 4))}`;
}

/** ` = result` of a call: errno, the failure's code, or the value (bytes as text when printable). */
function outcomeText(step: CallStep<Machine>, r: StepResult): string {
  if (r.errno !== undefined) {
    const failures = step.fn.returns.failures;
    return failures ? ` ✗ ${failureText(r.errno)}` : ` = ${failureText(r.errno)}`;
  }
  if (r.result === undefined) return "";
  const type = step.fn.returns.type;
  if (type !== "void" && type.kind === "bytes" && typeof r.result === "string") {
    return ` = ${bytesText(r.result)}`;
  }
  return ` = ${valueText(shownPart(r.result, step))}`;
}

/** The part of an object result the step's `returns:` names (what the story cares about). */
function shownPart(v: Json, step: CallStep<Machine>): Json {
  const want = step.returns;
  if (want === undefined || v === null || typeof v !== "object" || Array.isArray(v)) return v;
  const keys = expectedKeys(want);
  if (keys === null) return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => keys.includes(k)));
}

/** The keys of a compiled map expectation, or null for anything else. */
function expectedKeys(c: Compiled): string[] | null {
  return c.kind === "map" ? c.entries.map(([k]) => k) : null;
}

function bytesText(hex: string): string {
  const bytes = hex.match(/../g)?.map((b) => Number.parseInt(b, 16)) ?? [];
  const printable = bytes.length > 0 && bytes.every((b) => b >= 0x20 && b < 0x7f);
  if (!printable) return bytes.length > 16 ? `${hex.slice(0, 32)}… (${bytes.length} bytes)` : hex;
  return JSON.stringify(String.fromCharCode(...bytes));
}

function valueText(v: Json): string {
  if (v === null || typeof v !== "object") return typeof v === "string" ? v : String(v);
  if (Array.isArray(v)) return `[${v.map(valueText).join(", ")}]`;
  const s = `{${Object.entries(v)
    .map(([k, x]) => `${k}: ${valueText(x)}`)
    .join(", ")}}`;
  return s.length > 120 ? `${s.slice(0, 117)}…}` : s;
}

function wrap(text: string, width: number): string[] {
  const words = text.trim().split(/\s+/);
  const lines: string[] = [];
  let cur = "";
  for (const w of words) {
    if (cur.length > 0 && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else {
      cur = cur.length > 0 ? `${cur} ${w}` : w;
    }
  }
  if (cur.length > 0) lines.push(cur);
  return lines;
}

// ---------------------------------------------------------------- JSON

/** The demo as JSON: the acts with every call and result, and the report's data. */
export function demoJSON(run: DemoRun, trace: { file: string; events: number } | null): Json {
  const m = run.machine;
  const oracle = m.isolationOracle;
  return {
    demo: run.scenario.name,
    story: run.scenario.file,
    machine: m.name,
    seed: run.result.seed,
    status: run.result.status,
    steps: {
      total: run.result.steps.length,
      passed: run.result.steps.filter((s) => s.status === "pass").length,
      calls: run.scenario.steps.filter((s) => s.kind === "call").length,
      checks: run.scenario.steps.filter((s) => s.kind === "expect").length,
    },
    acts: demoActs(run).map((a) => ({
      title: a.title,
      note: a.note ?? null,
      calls: a.calls.map(({ step, result }) => ({
        step: result.step,
        call: step.text,
        ...(step.bind === undefined ? {} : { as: step.bind }),
        status: result.status,
        ...(result.result === undefined ? {} : { result: result.result }),
        ...(result.errno === undefined ? {} : { errno: result.errno }),
        ...(step.note === undefined ? {} : { note: step.note }),
      })),
      checks: a.checks,
      check_notes: a.checkNotes.map((c) => ({ step: c.step, note: c.note })),
      failures: a.failed.map((f) => ({
        step: f.step,
        call: f.call,
        message: f.failure?.message ?? null,
      })),
    })),
    report: {
      topology: topologyJSON(m),
      groups: jsonValue((m.core.toJSON() as { groups?: Json }).groups ?? []),
      ...(activityJSON(m) as { [k: string]: Json }),
      statistics: statisticsJSON(machineStatistics(m)),
      isolation: oracle?.toJSON() ?? null,
      warnings: m.ctx.warnings.list().map((w) => ({ site: w.site, message: w.message })),
    },
    trace: trace === null ? null : { file: trace.file, events: trace.events },
  };
}
