// Scenario files: YAML (or JSON, which is YAML) with `machine:` and `steps:`. Loading parses and
// validates the whole file before anything runs — unknown functions, parameters, types, names,
// bindings used before `as:` defines them, errno names — and reports every problem at once with
// file:line:column (an InputErrors).

import { type Errno, errnoNames, isErrno } from "../base/errno.js";
import type { InputLocation } from "../base/errors.js";
import { Diagnostics } from "../machine/input/diagnostics.js";
import {
  childPath,
  describeNode,
  entry,
  type InputMap,
  type InputNode,
} from "../machine/input/node.js";
import {
  integer,
  listOf,
  NAME_PATTERN,
  name,
  optional,
  struct,
  suggest,
  text,
} from "../machine/input/schema.js";
import { parseYaml } from "../machine/input/yaml.js";
import type { MachinePlan, ScenarioHost, ScenarioMachine } from "./host.js";
import { type Compiled, compileValue, Scope } from "./values.js";
import {
  type FailureCodes,
  type FunctionSpec,
  type SubjectSpec,
  VALUE_KIND,
  type Vocabulary,
} from "./vocabulary/types.js";

export interface CallStep<M> {
  readonly kind: "call";
  readonly index: number;
  readonly loc: InputLocation;
  readonly fn: FunctionSpec<M>;
  /** Compiled arguments in the kernel's parameter order; absent optional ones are omitted. */
  readonly args: readonly (readonly [string, Compiled])[];
  /** `name(param=value, …)` as written, for reports. */
  readonly text: string;
  readonly bind: string | undefined;
  /** The errno (or, for calls with their own failure codes, the code) the call must fail with. */
  readonly error: string | undefined;
  readonly returns: Compiled | undefined;
  readonly warns: WarnsExpectation | undefined;
  readonly note: string | undefined;
}

export interface ExpectStep<M> {
  readonly kind: "expect";
  readonly index: number;
  readonly loc: InputLocation;
  readonly subject: SubjectSpec<M>;
  readonly arg: Compiled | undefined;
  /** Property checks, in source order (`self` for subjects that compare their own value). */
  readonly checks: readonly { readonly prop: string; readonly expected: Compiled }[];
  readonly text: string;
  readonly warns: WarnsExpectation | undefined;
  readonly note: string | undefined;
}

/** `section: title` — starts a part of the scenario; reports show the title as a heading. */
export interface SectionStep {
  readonly kind: "section";
  readonly index: number;
  readonly loc: InputLocation;
  readonly title: string;
  readonly text: string;
  readonly warns: undefined;
  readonly note: string | undefined;
}

export type Step<M> = CallStep<M> | ExpectStep<M> | SectionStep;

/** `warns:` — the kernel WARN sites the step must raise, in order (or just how many). */
export type WarnsExpectation = { readonly count: number } | { readonly sites: readonly string[] };

export interface Scenario<M, P> {
  readonly file: string;
  readonly name: string;
  readonly description: string | undefined;
  /** Drivers the scenario applies to; undefined = those of its machine. */
  readonly drivers: readonly string[] | undefined;
  /**
   * The only drivers its calls can run on (device DMA needs the riscv driver's hardware), or
   * undefined when any driver will do.
   */
  readonly onlyDrivers: readonly string[] | undefined;
  readonly seed: number;
  /** What the boot is expected to log as failed (default: nothing). */
  readonly bootLog: readonly string[];
  readonly machine: P;
  readonly steps: readonly Step<M>[];
}

const TOP_FIELDS = ["name", "description", "drivers", "seed", "boot_log", "machine", "steps"];
/** Return types `as:` can bind: objects, and numbers (usable in later value expressions). */
const BINDABLE: readonly string[] = ["object", "u64", "int"];
const MODIFIERS = ["as", "error", "returns", "warns", "note"];

/** Parses and validates a scenario file's text. Throws InputErrors listing every problem. */
export function loadScenario<M extends ScenarioMachine, P extends MachinePlan>(
  source: string,
  file: string,
  host: ScenarioHost<M, P>,
): Scenario<M, P> {
  return readScenario(parseYaml(source, file), file, host);
}

/** Validates an already parsed scenario (e.g. a TS object through `fromPlain`). */
export function readScenario<M extends ScenarioMachine, P extends MachinePlan>(
  root: InputNode,
  file: string,
  host: ScenarioHost<M, P>,
): Scenario<M, P> {
  const d = new Diagnostics();
  if (root.kind !== "map") {
    d.error(
      root.loc,
      "",
      `a scenario is a map with "machine:" and "steps:", got ${describeNode(root)}`,
    );
    d.throwIfAny();
  }
  const map = root as InputMap;
  const head = struct({
    name: optional(text()),
    description: optional(text()),
    drivers: optional(listOf(name(), { single: true })),
    seed: optional(integer({ min: 0, max: 0xffff_ffff }), 1),
    boot_log: optional(listOf(text()), [] as string[]),
  })({ ...map, entries: map.entries.filter((e) => TOP_FIELDS.slice(0, 5).includes(e.key)) }, "", d);
  for (const e of map.entries) {
    if (!TOP_FIELDS.includes(e.key)) {
      d.error(
        e.keyLoc,
        e.key,
        `unknown field${suggest(e.key, TOP_FIELDS)}; expected one of ${TOP_FIELDS.join(", ")}`,
      );
    }
  }
  head?.drivers?.forEach((drv, i) => {
    if (!host.availableDrivers.includes(drv) && !KNOWN_FUTURE_DRIVERS.includes(drv)) {
      const loc = entry(map, "drivers")!.value;
      const at = loc.kind === "seq" ? loc.items[i]!.loc : loc.loc;
      d.error(
        at,
        childPath("drivers", i),
        `unknown driver "${drv}"${suggest(drv, [...host.availableDrivers, ...KNOWN_FUTURE_DRIVERS])}`,
      );
    }
  });

  const machineNode = entry(map, "machine");
  const plan = machineNode ? host.readMachine(machineNode.value, "machine", d) : undefined;
  if (!machineNode)
    d.error(root.loc, "", 'missing field "machine" (a built-in machine name or a description)');

  const stepsNode = entry(map, "steps");
  let steps: Step<M>[] = [];
  if (!stepsNode) {
    d.error(root.loc, "", 'missing field "steps"');
  } else if (stepsNode.value.kind !== "seq") {
    if (!(stepsNode.value.kind === "scalar" && stepsNode.value.value === null)) {
      d.error(
        stepsNode.value.loc,
        "steps",
        `expected a list of steps, got ${describeNode(stepsNode.value)}`,
      );
    }
  } else {
    // Without a valid machine the names it defines are unknown: skip name checks rather than
    // report every device name as unknown.
    const names = plan?.names ?? ANY_NAMES;
    const scope = new Scope(host.vocabulary as Vocabulary<never>, names);
    steps = stepsNode.value.items.flatMap((s, i) => {
      const step = readStep(s, i, host.vocabulary, scope, d);
      return step ? [step] : [];
    });
  }
  const onlyDrivers = checkDrivers(steps, head?.drivers ?? plan?.drivers, d);
  d.throwIfAny();
  return {
    file,
    name: head!.name ?? baseName(file),
    description: head!.description,
    drivers: head!.drivers,
    onlyDrivers,
    seed: head!.seed,
    bootLog: head!.boot_log,
    machine: plan!,
    steps,
  };
}

/**
 * Every call restricted to some drivers must run on all the scenario's drivers (those it
 * declares, else its machine's). Returns the drivers every restricted call accepts.
 */
function checkDrivers<M>(
  steps: readonly Step<M>[],
  wanted: readonly string[] | undefined,
  d: Diagnostics,
): string[] | undefined {
  let only: string[] | undefined;
  for (const step of steps) {
    if (step.kind !== "call" || step.fn.drivers === undefined) continue;
    const accepted = step.fn.drivers;
    only = (only ?? accepted).filter((x) => accepted.includes(x));
    const bad = (wanted ?? []).filter((x) => !accepted.includes(x));
    if (bad.length > 0) {
      d.error(
        step.loc,
        childPath(childPath("steps", step.index), step.fn.name),
        `${step.fn.name} runs on the ${accepted.join(" or ")} driver only, not on ${bad.join(", ")}; declare "drivers: [${accepted.join(", ")}]"`,
      );
    }
  }
  return only;
}

/** Drivers scenarios may already declare although no machine can use them yet. */
const KNOWN_FUTURE_DRIVERS = ["riscv"];

/** Stands in for the machine's names when the machine section itself was invalid. */
const ANY_NAMES: Record<string, readonly string[]> = new Proxy(
  {},
  { get: () => ({ includes: () => true }) },
) as Record<string, readonly string[]>;

function readStep<M>(
  node: InputNode,
  index: number,
  vocab: Vocabulary<M>,
  scope: Scope,
  d: Diagnostics,
): Step<M> | undefined {
  const path = childPath("steps", index);
  if (node.kind !== "map") {
    d.error(
      node.loc,
      path,
      `a step is a map like "iommu_attach_device: {domain: d1, dev: nic0}", got ${describeNode(node)}`,
    );
    return undefined;
  }
  const heads = node.entries.filter((e) => !MODIFIERS.includes(e.key));
  if (heads.length === 0) {
    d.error(node.loc, path, "a step needs a function to call, an expect: or a section:");
    return undefined;
  }
  for (const extra of heads.slice(1)) {
    const isFn =
      vocab.functions.some((f) => f.name === extra.key) ||
      extra.key === "expect" ||
      extra.key === "section";
    d.error(
      extra.keyLoc,
      childPath(path, extra.key),
      isFn
        ? `one call per step: "${heads[0]!.key}" already is this step's call`
        : `unknown step field${suggest(extra.key, MODIFIERS)}; a step has one call plus ${MODIFIERS.join(", ")}`,
    );
  }
  const head = heads[0]!;
  const mod = (k: string) => entry(node, k);
  const note = mod("note") ? text()(mod("note")!.value, childPath(path, "note"), d) : undefined;
  const warns = mod("warns")
    ? readWarns(mod("warns")!.value, childPath(path, "warns"), d)
    : undefined;
  if (head.key === "section") {
    for (const k of ["as", "error", "returns", "warns"]) {
      const m = mod(k);
      if (m) d.error(m.keyLoc, childPath(path, k), `"${k}:" belongs to calls, not to section:`);
    }
    const title = text()(head.value, childPath(path, "section"), d);
    if (title === undefined) return undefined;
    return { kind: "section", index, loc: node.loc, title, text: title, warns: undefined, note };
  }
  if (head.key === "expect") {
    for (const k of ["as", "error", "returns"]) {
      const m = mod(k);
      if (m) d.error(m.keyLoc, childPath(path, k), `"${k}:" belongs to calls, not to expect:`);
    }
    return readExpect(
      head.value,
      index,
      node.loc,
      childPath(path, "expect"),
      vocab,
      scope,
      d,
      warns,
      note,
    );
  }
  const errNode = mod("error");
  const fn = vocab.functions.find((f) => f.name === head.key);
  if (!fn) {
    if (errNode) readErrno(errNode.value, childPath(path, "error"), d);
    d.error(
      head.keyLoc,
      childPath(path, head.key),
      `unknown function "${head.key}"${suggest(head.key, [...vocab.functions.map((f) => f.name), "expect", "section"])}`,
    );
    return undefined;
  }
  const fpath = childPath(path, fn.name);
  const args = readArgs(head.value, fn, fpath, scope, d);

  let error: string | undefined;
  if (errNode) {
    const failures = fn.returns.failures;
    const code = failures
      ? readFailureCode(errNode.value, failures, childPath(path, "error"), d)
      : readErrno(errNode.value, childPath(path, "error"), d);
    if (code !== undefined && !fn.returns.fallible) {
      d.error(
        errNode.keyLoc,
        childPath(path, "error"),
        `${fn.name} cannot fail (the kernel declares it ${fn.returns.type === "void" ? "void" : "infallible"})`,
      );
    } else {
      error = code;
    }
  }
  let returns: Compiled | undefined;
  const retNode = mod("returns");
  if (retNode) {
    if (fn.returns.type === "void") {
      d.error(retNode.keyLoc, childPath(path, "returns"), `${fn.name} returns nothing`);
    } else if (errNode) {
      d.error(
        retNode.keyLoc,
        childPath(path, "returns"),
        'a step expecting an error returns nothing: drop "returns:" or "error:"',
      );
    } else {
      returns = compileValue(retNode.value, fn.returns.type, scope, childPath(path, "returns"), d, {
        expected: true,
      });
    }
  }
  let bind: string | undefined;
  const asNode = mod("as");
  if (asNode) {
    const n =
      asNode.value.kind === "scalar" && typeof asNode.value.value === "string"
        ? asNode.value.value
        : undefined;
    if (n === undefined || !NAME_PATTERN.test(n)) {
      d.error(
        asNode.value.loc,
        childPath(path, "as"),
        `expected a name to bind the result to, got ${describeNode(asNode.value)}`,
      );
    } else if (fn.returns.type === "void" || !BINDABLE.includes(fn.returns.type.kind)) {
      d.error(
        asNode.keyLoc,
        childPath(path, "as"),
        `${fn.name} returns no object or number to bind`,
      );
    } else if (errNode) {
      d.error(
        asNode.keyLoc,
        childPath(path, "as"),
        'a step expecting an error binds nothing: drop "as:" or "error:"',
      );
    } else {
      const t = fn.returns.type;
      const problem = scope.bind(n, t.kind === "object" ? t.object : VALUE_KIND);
      if (problem) d.error(asNode.value.loc, childPath(path, "as"), problem);
      else bind = n;
    }
  }
  if (!args) return undefined;
  return {
    kind: "call",
    index,
    loc: node.loc,
    fn,
    args: args.compiled,
    text: `${fn.name}(${args.text})`,
    bind,
    error,
    returns,
    warns,
    note,
  };
}

function readArgs<M>(
  node: InputNode,
  fn: FunctionSpec<M>,
  path: string,
  scope: Scope,
  d: Diagnostics,
): { compiled: [string, Compiled][]; text: string } | undefined {
  const params = Object.keys(fn.params);
  if (node.kind === "scalar" && node.value === null)
    node = { kind: "map", loc: node.loc, entries: [] };
  if (node.kind !== "map") {
    d.error(
      node.loc,
      path,
      `expected the parameters as a map {${params.join(", ")}}, got ${describeNode(node)}`,
    );
    return undefined;
  }
  let good = true;
  for (const e of node.entries) {
    if (!fn.params[e.key]) {
      d.error(
        e.keyLoc,
        childPath(path, e.key),
        `${fn.name} has no parameter "${e.key}"${suggest(e.key, params)}; parameters: ${params.join(", ") || "none"}`,
      );
      good = false;
    }
  }
  const compiled: [string, Compiled][] = [];
  const parts: string[] = [];
  const created: [string, string][] = [];
  for (const p of params) {
    const spec = fn.params[p]!;
    const e = entry(node, p);
    if (!e) {
      if (!spec.optional) {
        d.error(node.loc, path, `missing parameter "${p}"`);
        good = false;
      }
      continue;
    }
    const c = compileValue(e.value, spec.type, scope, childPath(path, p), d, {
      expected: false,
      nullable: spec.nullable ?? false,
    });
    if (!c) {
      good = false;
      continue;
    }
    if (c.kind === "object" && c.create) created.push([c.name, c.object]);
    compiled.push([p, c]);
    parts.push(`${p}=${argText(e.value, spec.type.kind === "u64")}`);
  }
  for (const [n, kind] of created) scope.bind(n, kind);
  return good ? { compiled, text: parts.join(", ") } : undefined;
}

function readExpect<M>(
  node: InputNode,
  index: number,
  stepLoc: InputLocation,
  path: string,
  vocab: Vocabulary<M>,
  scope: Scope,
  d: Diagnostics,
  warns: WarnsExpectation | undefined,
  note: string | undefined,
): ExpectStep<M> | undefined {
  const subjects = vocab.subjects.map((s) => s.name);
  if (node.kind !== "map" || node.entries.length === 0) {
    d.error(
      node.loc,
      path,
      `expected a map whose first key is one of ${subjects.join(", ")}, got ${describeNode(node)}`,
    );
    return undefined;
  }
  const first = node.entries[0]!;
  const subject = vocab.subjects.find((s) => s.name === first.key);
  if (!subject) {
    d.error(
      first.keyLoc,
      childPath(path, first.key),
      `unknown expect subject "${first.key}"${suggest(first.key, subjects)}; the first key names the subject: ${subjects.join(", ")}`,
    );
    return undefined;
  }
  const spath = childPath(path, subject.name);
  let good = true;
  let arg: Compiled | undefined;
  const checks: { prop: string; expected: Compiled }[] = [];
  const parts: string[] = [];
  if (subject.arg) {
    arg = compileValue(first.value, subject.arg.type, scope, spath, d, {
      expected: false,
      nullable: subject.arg.nullable ?? false,
    });
    if (!arg) good = false;
    parts.push(`${subject.name}=${argText(first.value)}`);
  } else if (subject.self) {
    const c = compileValue(first.value, subject.self.type, scope, spath, d, {
      expected: true,
      words: subject.self.words as never,
    });
    if (c) checks.push({ prop: subject.name, expected: c });
    else good = false;
    parts.push(`${subject.name} == ${argText(first.value)}`);
  }
  const props = subject.props ?? {};
  const propNames = Object.keys(props);
  for (const e of node.entries.slice(1)) {
    const p = props[e.key];
    if (!p) {
      d.error(
        e.keyLoc,
        childPath(path, e.key),
        `${subject.name} has no property "${e.key}"${suggest(e.key, propNames)}; properties: ${propNames.join(", ") || "none"}`,
      );
      good = false;
      continue;
    }
    const c = compileValue(e.value, p.type, scope, childPath(path, e.key), d, {
      expected: true,
      words: p.words as never,
    });
    if (c) checks.push({ prop: e.key, expected: c });
    else good = false;
    parts.push(`${e.key} == ${argText(e.value)}`);
  }
  if (subject.arg && node.entries.length === 1) {
    d.error(
      node.loc,
      path,
      `nothing to check on ${subject.name}: add one of ${propNames.join(", ")}`,
    );
    good = false;
  }
  if (!good) return undefined;
  return {
    kind: "expect",
    index,
    loc: stepLoc,
    subject,
    arg,
    checks,
    text: `expect ${parts.join(", ")}`,
    warns,
    note,
  };
}

function readWarns(node: InputNode, path: string, d: Diagnostics): WarnsExpectation | undefined {
  if (node.kind === "seq" || (node.kind === "scalar" && typeof node.value === "string")) {
    const sites = listOf(text({ pattern: /^\w+$/, what: "a kernel function name" }), {
      single: true,
    })(node, path, d);
    return sites ? { sites } : undefined;
  }
  const n = integer({
    min: 0,
    max: 1_000_000,
    what: "a count or a list of WARN sites (kernel function names)",
  })(node, path, d);
  return n === undefined ? undefined : { count: n };
}

function suggestErrno(s: string): string {
  return suggest(s.toUpperCase(), errnoNames());
}

/** `error: EBUSY` (a leading `-` is accepted). */
function readErrno(v: InputNode, path: string, d: Diagnostics): Errno | undefined {
  const s =
    v.kind === "scalar" && typeof v.value === "string" ? v.value.replace(/^-/, "") : undefined;
  if (s === undefined || !isErrno(s)) {
    d.error(
      v.loc,
      path,
      `unknown errno ${s === undefined ? describeNode(v) : `"${s}"`}${s ? suggestErrno(s) : ""}`,
    );
    return undefined;
  }
  return s;
}

/** `error:` of a call failing with its own codes (a signal, a DMA abort). */
function readFailureCode(
  v: InputNode,
  failures: FailureCodes,
  path: string,
  d: Diagnostics,
): string | undefined {
  const s = v.kind === "scalar" && typeof v.value === "string" ? v.value : undefined;
  if (s !== undefined && failures.codes.includes(s)) return s;
  d.error(
    v.loc,
    path,
    `expected ${failures.what}: ${s === undefined ? `got ${describeNode(v)}` : `unknown code "${s}"${suggest(s, failures.codes)}`}; one of ${failures.codes.join(", ")}`,
  );
  return undefined;
}

/**
 * A compact source-like rendering of an argument for reports: large numbers in hex (addresses,
 * sizes: `u64` parameters and expected values), text quoted when it is more than a word.
 */
function argText(node: InputNode, hexNumbers = true): string {
  switch (node.kind) {
    case "scalar":
      if (typeof node.value === "bigint" && hexNumbers && node.value > 0xffffn)
        return `0x${node.value.toString(16)}`;
      if (typeof node.value === "string" && !/^[\w.+\-:/$]+$/.test(node.value))
        return JSON.stringify(node.value);
      return String(node.value);
    case "seq":
      return `[${node.items.map((x) => argText(x, hexNumbers)).join(", ")}]`;
    case "map":
      return `{${node.entries.map((e) => `${e.key}: ${argText(e.value, hexNumbers)}`).join(", ")}}`;
  }
}

function baseName(file: string): string {
  const b = file.split(/[\\/]/).pop() ?? file;
  return b.replace(/\.(ya?ml|json)$/i, "");
}
