// Running a validated scenario: boot its machine, execute the steps in order, check every
// expectation (errno, returned value, machine state, WARNs, invariants) and record per step the
// outcome, the virtual time it took and the trace events it produced. The first failing step
// ends the run; the rest are reported as skipped.

import type { SimContext } from "../base/context.js";
import { isErrno } from "../base/errno.js";
import { SimError } from "../base/errors.js";
import { type Json, jsonValue } from "../base/json.js";
import type { TraceRecord } from "../base/trace.js";
import type { MachinePlan, ScenarioHost, ScenarioMachine } from "./host.js";
import type { CallStep, ExpectStep, Scenario, WarnsExpectation } from "./load.js";
import { type Mismatch, match, ResolveError, type RunEnv, resolve } from "./values.js";
import { isResult, VALUE_KIND } from "./vocabulary/types.js";

export interface RunOptions<M = unknown> {
  /** Overrides the scenario's `seed:`. */
  readonly seed?: number;
  /** Runs every IOMMU instance of the machine with this driver. */
  readonly driver?: string;
  /** Check the machine's invariants after every step (default true). */
  readonly checkInvariants?: boolean;
  /** Keep every trace record (for `--trace`), the boot's included. */
  readonly keepTrace?: boolean;
  /** Called with the booted machine before the first step (to attach checkers, …). */
  readonly onBoot?: (m: M) => void;
  /** Called after each step with its result (progress reports). */
  readonly onStep?: (s: StepResult) => void;
  /** Run steps 1..stopAfter only (0: just boot); the rest are not run nor reported. */
  readonly stopAfter?: number;
}

export interface StepFailure {
  readonly message: string;
  readonly expected?: Json;
  readonly actual?: Json;
}

export interface StepResult {
  /** Position in `steps:`, from 1. */
  readonly step: number;
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly call: string;
  /** The title of a `section:` step (which calls nothing). */
  readonly section?: string;
  readonly status: "pass" | "fail" | "skipped";
  /** The JSON view of the returned value (calls that return something and succeeded). */
  readonly result?: Json;
  /** The errno the call failed with, if it failed (or its own failure code: a signal, …). */
  readonly errno?: string;
  /** What a failure other than an errno was (the signal's code and address, the DMA abort). */
  readonly fault?: Json;
  /** Virtual time when the step started, and how long it took. */
  readonly startNs: number;
  readonly durationNs: number;
  readonly traceEvents: number;
  /** WARN sites the step raised, in order. */
  readonly warnings: readonly string[];
  readonly failure?: StepFailure;
  readonly note?: string;
}

export interface ScenarioResult {
  readonly file: string;
  readonly name: string;
  readonly driver: string;
  readonly seed: number;
  readonly status: "pass" | "fail";
  readonly steps: readonly StepResult[];
  /** Every trace record of the run, when `keepTrace` was set. */
  readonly trace?: readonly TraceRecord[];
}

/**
 * The drivers a scenario runs against: those it declares (else those its machine uses) that
 * this build can run.
 */
export function applicableDrivers<M extends ScenarioMachine, P extends MachinePlan>(
  scenario: Scenario<M, P>,
  host: ScenarioHost<M, P>,
): string[] {
  const wanted = scenario.drivers ?? scenario.machine.drivers;
  return wanted.filter(
    (d) =>
      host.availableDrivers.includes(d) &&
      (scenario.onlyDrivers === undefined || scenario.onlyDrivers.includes(d)),
  );
}

export function runScenario<M extends ScenarioMachine, P extends MachinePlan>(
  scenario: Scenario<M, P>,
  host: ScenarioHost<M, P>,
  opts: RunOptions<M> = {},
): ScenarioResult {
  const seed = opts.seed ?? scenario.seed;
  let events = 0;
  const kept: TraceRecord[] = [];
  const sink = (r: TraceRecord) => {
    events++;
    if (opts.keepTrace) kept.push(r);
  };
  let stop: (() => void) | null = null;
  const m = host.boot(scenario.machine, {
    seed,
    ...(opts.driver === undefined ? {} : { driver: opts.driver }),
    // Tracing the boot costs time: only when the trace is kept.
    ...(opts.keepTrace ? { onContext: (c: SimContext) => (stop = c.trace.subscribe(sink)) } : {}),
  });
  const ctx = m.ctx;
  stop ??= ctx.trace.subscribe(sink);
  events = 0;
  opts.onBoot?.(m);
  const env: RunEnv<M> = { m, vocabulary: host.vocabulary, bindings: new Map() };
  const results: StepResult[] = [];
  let failed = false;
  const bootLog = [...m.bootLog];
  if (
    bootLog.length !== scenario.bootLog.length ||
    bootLog.some((l, i) => l !== scenario.bootLog[i])
  ) {
    // A silently failed boot would make every later result meaningless: step 0 fails.
    failed = true;
    results.push({
      step: 0,
      file: scenario.file,
      line: undefined,
      column: undefined,
      call: "boot",
      status: "fail",
      startNs: 0,
      durationNs: 0,
      traceEvents: 0,
      warnings: [],
      failure: {
        message: 'the boot log differs from the scenario\'s "boot_log:"',
        expected: [...scenario.bootLog],
        actual: bootLog,
      },
    });
  }
  try {
    for (const step of scenario.steps) {
      if (opts.stopAfter !== undefined && step.index >= opts.stopAfter) break;
      const base = {
        step: step.index + 1,
        file: scenario.file,
        line: step.loc.line,
        column: step.loc.column,
        call: step.text,
        ...(step.note === undefined ? {} : { note: step.note }),
      };
      if (failed || step.kind === "section") {
        const result: StepResult = {
          ...base,
          ...(step.kind === "section" ? { section: step.title } : {}),
          status: failed ? "skipped" : "pass",
          startNs: ctx.clock.now,
          durationNs: 0,
          traceEvents: 0,
          warnings: [],
        };
        results.push(result);
        opts.onStep?.(result);
        continue;
      }
      const t0 = ctx.clock.now;
      const e0 = events;
      const w0 = ctx.warnings.count;
      const outcome = execute(step, env);
      const warnings = ctx.warnings
        .list()
        .slice(w0)
        .map((w) => w.site);
      let failure = outcome.failure;
      if (!failure && step.warns) failure = checkWarns(step.warns, warnings);
      if (!failure && opts.checkInvariants !== false) {
        const broken = m.checkInvariants();
        if (broken.length > 0) {
          failure = {
            message: `invariant violated after this step: ${broken.join("; ")}`,
            actual: [...broken],
          };
        }
      }
      if (failure) failed = true;
      const result: StepResult = {
        ...base,
        status: failure ? "fail" : "pass",
        ...(outcome.result === undefined ? {} : { result: outcome.result }),
        ...(outcome.errno === undefined ? {} : { errno: outcome.errno }),
        ...(outcome.fault === undefined ? {} : { fault: outcome.fault }),
        startNs: t0,
        durationNs: ctx.clock.now - t0,
        traceEvents: events - e0,
        warnings,
        ...(failure ? { failure } : {}),
      };
      results.push(result);
      opts.onStep?.(result);
    }
  } finally {
    stop();
  }
  return {
    file: scenario.file,
    name: scenario.name,
    driver: opts.driver ?? scenario.machine.drivers.join("+"),
    seed,
    status: failed ? "fail" : "pass",
    steps: results,
    ...(opts.keepTrace ? { trace: kept } : {}),
  };
}

interface Outcome {
  readonly result?: Json;
  readonly errno?: string;
  readonly fault?: Json;
  readonly failure?: StepFailure;
}

/** How reports write a failure: `-EBUSY` for an errno, the code itself otherwise. */
export function failureText(code: string): string {
  return isErrno(code) ? `-${code}` : code;
}

function execute<M>(step: CallStep<M> | ExpectStep<M>, env: RunEnv<M>): Outcome {
  try {
    return step.kind === "call" ? executeCall(step, env) : executeExpect(step, env);
  } catch (e) {
    if (e instanceof ResolveError || e instanceof SimError) {
      return {
        failure: { message: e instanceof SimError ? `simulator error: ${e.message}` : e.message },
      };
    }
    // A bug of the simulator itself: the step fails (the run ends, its report is kept) and says
    // so, with where it happened, instead of the whole run dying with a stack trace.
    if (e instanceof Error) {
      const where = (e.stack ?? "")
        .split("\n")
        .slice(1, 6)
        .map((l) => l.trim());
      return {
        failure: {
          message: `simulator bug: ${e.name}: ${e.message} (please report)`,
          actual: where,
        },
      };
    }
    throw e;
  }
}

function executeCall<M>(step: CallStep<M>, env: RunEnv<M>): Outcome {
  const args: Record<string, unknown> = {};
  for (const [k, c] of step.args) args[k] = resolve(c, env);
  const raw = step.fn.call(env.m, args);
  let value: unknown = raw;
  if (step.fn.returns.fallible) {
    if (!isResult(raw))
      throw new SimError(`vocabulary entry ${step.fn.name} did not return a Result`);
    if (!raw.ok) {
      const fault = "detail" in raw ? { fault: raw.detail } : {};
      const also = "also" in raw ? raw.also : [];
      if (step.error !== undefined && (step.error === raw.errno || also.includes(step.error))) {
        return { errno: raw.errno, ...fault };
      }
      const expected = step.error ? failureText(step.error) : "success";
      return {
        errno: raw.errno,
        ...fault,
        failure: {
          message: `${step.fn.name} failed with ${failureText(raw.errno)}, expected ${expected}`,
          expected,
          actual: "detail" in raw ? raw.detail : failureText(raw.errno),
        },
      };
    }
    value = raw.value;
    if (step.error) {
      const got = value === undefined ? "0" : jsonValue(value);
      return {
        ...resultOf(value),
        failure: {
          message: `${step.fn.name} succeeded, expected ${failureText(step.error)}`,
          expected: failureText(step.error),
          actual: got,
        },
      };
    }
  }
  if (step.returns) {
    const mm = match(step.returns, value, env);
    if (mm)
      return {
        ...resultOf(value),
        failure: mismatchFailure(`${step.fn.name} returned an unexpected value`, mm),
      };
  }
  if (step.bind !== undefined && step.fn.returns.type !== "void") {
    const t = step.fn.returns.type;
    if (t.kind === "object") {
      if (value === null || value === undefined) {
        return {
          ...resultOf(value),
          failure: { message: `${step.fn.name} returned null: nothing to bind to "${step.bind}"` },
        };
      }
      env.bindings.set(step.bind, { kind: t.object, value });
    } else {
      env.bindings.set(step.bind, { kind: VALUE_KIND, value });
    }
  }
  return resultOf(value);
}

function resultOf(value: unknown): { result?: Json } {
  return value === undefined ? {} : { result: jsonValue(value) };
}

function executeExpect<M>(step: ExpectStep<M>, env: RunEnv<M>): Outcome {
  const subject = step.arg ? resolve(step.arg, env) : undefined;
  for (const check of step.checks) {
    const spec =
      check.prop === step.subject.name && step.subject.self
        ? step.subject.self
        : step.subject.props![check.prop]!;
    const actual = spec.getFor
      ? spec.getFor(env.m, subject, resolve(check.expected, env, subject))
      : spec.get(env.m, subject);
    const mm = match(check.expected, actual, env, subject);
    if (mm) {
      const what =
        check.prop === step.subject.name
          ? step.subject.name
          : `${check.prop} of ${step.subject.name}`;
      return { failure: mismatchFailure(`unexpected ${what}`, mm) };
    }
  }
  return {};
}

function mismatchFailure(message: string, mm: Mismatch): StepFailure {
  return {
    message: mm.at ? `${message} (at ${mm.at})` : message,
    expected: mm.expected,
    actual: mm.actual,
  };
}

function checkWarns(want: WarnsExpectation, got: readonly string[]): StepFailure | undefined {
  if ("count" in want) {
    return want.count === got.length
      ? undefined
      : {
          message: `expected ${want.count} kernel WARN(s), got ${got.length}`,
          expected: want.count,
          actual: [...got],
        };
  }
  const same = want.sites.length === got.length && want.sites.every((s, i) => s === got[i]);
  return same
    ? undefined
    : { message: "unexpected kernel WARN sites", expected: [...want.sites], actual: [...got] };
}
