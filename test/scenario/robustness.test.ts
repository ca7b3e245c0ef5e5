// The "bad input" standard for scenario files: whatever the text, loadScenario returns a scenario
// or throws an InputError whose every message starts with file:line:column (or file: for the
// whole file), quickly; it never throws anything else and never expands an alias bomb. And
// whatever a loaded scenario calls, runScenario returns a result: a misuse inside a step is that
// step's failure, with a message.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { isScalar, parseDocument, stringify, visit } from "yaml";
import { InputError } from "../../src/base/errors.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { loadScenario } from "../../src/scenario/load.js";
import { machineHost } from "../../src/scenario/machine-host.js";
import { runScenario } from "../../src/scenario/run.js";
import type { ParamSpec, ValueType } from "../../src/scenario/vocabulary/types.js";
import { ROOT, scenarioFiles } from "./scenario-files.js";

const FILE = "s.yaml";
const LOCATED = /^s\.yaml(:\d+:\d+)?: \S/;

/** The errors loading `text` raised: [] when it loaded; fails on anything but InputError. */
function loadErrors(text: string): InputError[] {
  try {
    loadScenario(text, FILE, machineHost);
    return [];
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    const list = e instanceof InputErrors ? e.errors : [e];
    expect(list.length).toBeGreaterThan(0);
    for (const line of e.format().split("\n")) expect(line).toMatch(LOCATED);
    return [...list];
  }
}

const SOURCES = scenarioFiles().map((f) => ({ f, text: readFileSync(join(ROOT, f), "utf8") }));
const source = fc.constantFrom(...SOURCES);

/** Replacement scalars and flow collections of every type, including the awkward ones. */
const REPLACEMENTS = [
  "12345",
  "-1",
  "-0x10",
  "18446744073709551616",
  "0x1_0000_0000_0000_0000",
  "340282366920938463463374607431768211456",
  "1.5",
  ".inf",
  ".nan",
  "1e400",
  '"x"',
  '""',
  "true",
  "null",
  "~",
  "[]",
  "{}",
  "[1, [2, [3]]]",
  "{a: {b: {c: 1}}}",
  '"é中😀\\u0000"',
  `"${"x ".repeat(10_000)}"`,
  "!!binary aGVsbG8=",
  "!!set {a, b}",
  "!foo bar",
  "2001-12-14",
  "*nowhere",
  "$nothing",
  "$",
  "d + 0xffffffffffffffffff",
];

/** Every value node (not a key) that is a scalar or a flow collection: its source range. */
function valueRanges(text: string): [number, number][] {
  const doc = parseDocument(text);
  const out: [number, number][] = [];
  visit(doc, {
    Pair(_k, pair) {
      const v = pair.value as { range?: [number, number, number]; flow?: boolean } | null;
      if (v?.range && (isScalar(v) || v.flow)) out.push([v.range[0], v.range[1]]);
    },
    Seq(_k, seq) {
      for (const v of seq.items as { range?: [number, number, number]; flow?: boolean }[]) {
        if (v?.range && (isScalar(v) || v.flow)) out.push([v.range[0], v.range[1]]);
      }
    },
  });
  return out;
}

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split("\n").length;
}

describe("loading scenario files", () => {
  test.prop([fc.string({ unit: "grapheme", maxLength: 200 })], { numRuns: 300 })(
    "arbitrary text loads or gives located InputErrors",
    (text) => {
      loadErrors(text);
    },
  );

  const yamlish = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.constantFrom(null, true, 0, -1, 2 ** 53, "dev0", "single-mock", "$d", "EINVAL"),
      fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
      fc.string({ maxLength: 8 }),
      fc.array(tie("v"), { maxLength: 4 }),
      fc.dictionary(
        fc.constantFrom("machine", "steps", "as", "error", "expect", "dev", "domain", "name", "x"),
        tie("v"),
        { maxKeys: 4 },
      ),
    ),
  })).v;

  test.prop([yamlish, yamlish], { numRuns: 200 })(
    "arbitrary YAML documents with machine: and steps: give located InputErrors",
    (machine, steps) => {
      loadErrors(stringify({ machine, steps }));
      loadErrors(
        JSON.stringify({ machine, steps }, (_k, v) => (typeof v === "bigint" ? `${v}` : v)),
      );
    },
  );

  const lineMutation = fc.oneof(
    fc.record({ op: fc.constant("delete" as const), at: fc.nat() }),
    fc.record({ op: fc.constant("duplicate" as const), at: fc.nat() }),
    fc.record({ op: fc.constant("swap" as const), at: fc.nat() }),
    fc.record({
      op: fc.constant("indent" as const),
      at: fc.nat(),
      by: fc.integer({ min: -4, max: 4 }),
    }),
    fc.record({ op: fc.constant("tab" as const), at: fc.nat() }),
    fc.record({ op: fc.constant("document" as const), at: fc.nat() }),
  );

  test.prop([source, fc.array(lineMutation, { minLength: 1, maxLength: 3 })], { numRuns: 300 })(
    "line mutations of the shipped scenarios (delete, duplicate, swap, indent, tab, ---) give located InputErrors",
    ({ text }, mutations) => {
      const lines = text.split("\n");
      for (const m of mutations) {
        const i = m.at % lines.length;
        if (m.op === "delete") lines.splice(i, 1);
        else if (m.op === "duplicate") lines.splice(i, 0, lines[i]!);
        else if (m.op === "swap")
          [lines[i], lines[(i + 1) % lines.length]] = [lines[(i + 1) % lines.length]!, lines[i]!];
        else if (m.op === "indent")
          lines[i] = m.by >= 0 ? " ".repeat(m.by) + lines[i] : lines[i]!.slice(-m.by);
        else if (m.op === "tab") lines[i] = `\t${lines[i]}`;
        else lines.splice(i, 0, "---");
      }
      loadErrors(lines.join("\n"));
    },
  );

  const RANGES = new Map(SOURCES.map((s) => [s, valueRanges(s.text)]));
  const valueMutation = source.chain((s) =>
    fc.tuple(fc.constant(s), fc.constantFrom(...RANGES.get(s)!), fc.constantFrom(...REPLACEMENTS)),
  );

  test.prop([valueMutation], { numRuns: 200 })(
    "a value of another type anywhere in a shipped scenario is reported at its own line",
    ([{ text }, [start, end], replacement]) => {
      const mutated = text.slice(0, start) + replacement + text.slice(end);
      const errors = loadErrors(mutated);
      // null may legitimately mean "none" (an IOMMU-less device, a key removed from extends:),
      // and "x" is a good name (a binding renamed leaves its later uses unbound).
      if (errors.length === 0 || ["null", "~", '"x"'].includes(replacement)) return;
      const line = lineOf(mutated, start);
      expect(
        errors.map((e) => e.location.line),
        `${mutated.split("\n")[line - 1]!.slice(0, 200)}\n${errors.map((e) => e.format()).join("\n")}`,
      ).toContain(line);
    },
  );
});

describe("YAML features a scenario may not abuse", () => {
  const bomb = (levels: number): string => {
    const out = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i <= levels; i++) {
      out.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(", ")}]`,
      );
    }
    return out.join("\n");
  };

  test("an alias bomb (billion laughs) is refused, not expanded", () => {
    const t0 = performance.now();
    const errors = loadErrors(`${bomb(9)}\nmachine: *a9\nsteps: []\n`);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(errors.some((e) => /alias/.test(e.message))).toBe(true);
  });

  test("an alias inside its own anchor is refused (no endless recursion)", () => {
    const errors = loadErrors("machine: &m [*m]\nsteps: []\n");
    expect(errors[0]!.format()).toMatch(/^s\.yaml:1:\d+: .*alias \*m/);
  });

  test("nesting deeper than any scenario needs is refused clearly", () => {
    for (const text of [
      `machine: ${"[".repeat(5000)}${"]".repeat(5000)}\nsteps: []\n`,
      `machine: single-mock\nsteps: ${"{a: ".repeat(3000)}1${"}".repeat(3000)}\n`,
    ]) {
      const errors = loadErrors(text);
      expect(errors.map((e) => e.message).join("\n")).toMatch(/nested too deeply/);
    }
  });

  test("aliases chained into deep nesting are refused, not a stack overflow", () => {
    const deep = (n: number, inner: string) => `${"[".repeat(n)}${inner}${"]".repeat(n)}`;
    const lines = [`a0: &a0 ${deep(150, "1")}`];
    for (let i = 1; i < 40; i++) lines.push(`a${i}: &a${i} ${deep(150, `*a${i - 1}`)}`);
    const errors = loadErrors(`${lines.join("\n")}\nmachine: *a39\nsteps: []\n`);
    expect(errors.map((e) => e.message).join("\n")).toMatch(/nested too deeply/);
  });

  test("anchors, aliases and merge keys work where they make sense", () => {
    const text = [
      "machine: single-mock",
      "steps:",
      "  - iommu_paging_domain_alloc: &dev {dev: dev0}",
      "    as: d",
      "  - iommu_paging_domain_alloc: *dev",
      "  - iommu_map:",
      "      <<: [{domain: d, iova: 0x12000}, {iova: 0x19000, paddr: 0x80001000}]",
      "      size: 0x1000",
      "      prot: IOMMU_READ",
      "      gfp: GFP_KERNEL",
      "  - iommu_map: {<<: {domain: d, iova: 0x12000, size: 0x1000}, iova: 0x13000, paddr: 0, prot: 1, gfp: GFP_KERNEL}",
      "",
    ].join("\n");
    expect(loadErrors(text)).toEqual([]);
    const s = loadScenario(text, FILE, machineHost);
    expect(s.steps[1]!.text).toBe(s.steps[0]!.text);
    // Of the merged maps, the first that has a key wins; the map's own keys win over all.
    expect(s.steps[2]!.text).toMatch(/iova=0x12000, paddr=0x80001000, size=4096/);
    expect(s.steps[3]!.text).toMatch(/domain=d, iova=0x13000, paddr=0, size=4096/);
  });

  test("merge keys of something other than maps are reported where they are", () => {
    const errors = loadErrors("machine: single-mock\nsteps:\n  - iommu_map: {<<: 5}\n");
    expect(errors[0]!.format()).toMatch(/^s\.yaml:3:\d+: .*<</);
  });

  test("a machine: that removes what its built-in still names is reported in the scenario", () => {
    const text = "machine:\n  extends: multi-iommu\n  iommus: {iommu1: null}\nsteps: []\n";
    expect(loadErrors(text).map((e) => e.format())).toEqual([
      's.yaml:2:12: machine.devices.dev1.iommu: unknown IOMMU "iommu1" (did you mean "iommu0"?) (in the built-in machine "multi-iommu" it extends)',
    ]);
  });

  test("duplicate keys and extra documents are reported at their place", () => {
    expect(loadErrors("machine: single-mock\nmachine: default\nsteps: []\n")[0]!.format()).toMatch(
      /^s\.yaml:2:1: duplicate key/,
    );
    expect(loadErrors("machine: single-mock\nsteps: []\n---\nx: 1\n")[0]!.format()).toMatch(
      /^s\.yaml:3:1: /,
    );
  });
});

// ---- running ----

const machine = loadScenario("machine: default\nsteps: []\n", FILE, machineHost).machine;
const NAMES = machine.names;
const FUNCTIONS = machineHost.vocabulary.functions.filter(
  (f) => f.drivers === undefined || f.drivers.some((d) => machine.drivers.includes(d)),
);

const U64S = [
  0n,
  1n,
  0xfffn,
  0x1000n,
  0x1001n,
  0x8000_0000n,
  0x8000_1000n,
  1n << 39n,
  1n << 63n,
  (1n << 64n) - 1n,
];

function valueArb(t: ValueType, bound: readonly string[]): fc.Arbitrary<string> {
  switch (t.kind) {
    case "object": {
      const names = [...(NAMES[t.object] ?? []), ...bound, "fresh0"];
      return fc.constantFrom(...names);
    }
    case "int": {
      const only = t.only;
      if (only) return fc.constantFrom(...only).map(String);
      return fc
        .oneof(
          fc.constantFrom(t.min, t.max, Math.min(t.max, t.min + 1)),
          fc.integer({ min: Math.max(t.min, -(2 ** 31)), max: Math.min(t.max, 2 ** 31) }),
        )
        .map(String);
    }
    case "u64":
      return fc
        .oneof(fc.constantFrom(...U64S), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))
        .map((v) => `0x${v.toString(16)}`);
    case "bool":
      return fc.boolean().map(String);
    case "enum":
      return fc.constantFrom(...t.values);
    case "flags": {
      const names = Object.keys(t.bits);
      return fc.subarray(names).map((xs) => `[${xs.join(", ")}]`);
    }
    case "constant":
      return fc.oneof(fc.constantFrom(...Object.keys(t.values)), fc.nat(0xffff_ffff).map(String));
    case "errno":
      return fc.constantFrom("EINVAL", "EBUSY", "ENOMEM", "EIO");
    case "text":
      return fc.constantFrom("x", "handled", "EIO", '"a b"');
    case "bytes":
      return fc.oneof(
        fc.constantFrom('"hello"', "[1, 2, 255]", '{hex: "deadbeef"}', "[]"),
        fc.nat(1 << 16).map((n) => `{fill: 0xaa, len: ${n}}`),
      );
    case "memory":
      return fc.constant("{0x80000000: [1]}");
    case "json":
      return fc.constant("null");
  }
}

function stepArb(bound: readonly string[], i: number): fc.Arbitrary<string> {
  return fc.constantFrom(...FUNCTIONS).chain((fn) => {
    const params = Object.entries(fn.params) as [string, ParamSpec][];
    const args = params.map(([k, p]) =>
      (p.nullable
        ? fc.oneof(valueArb(p.type, bound), fc.constant("null"))
        : valueArb(p.type, bound)
      ).map((v) => `${k}: ${v}`),
    );
    const ret = fn.returns.type;
    const binds =
      ret !== "void" && (ret.kind === "object" || ret.kind === "u64" || ret.kind === "int");
    return fc
      .tuple(...args)
      .map((xs) => `  - ${fn.name}: {${xs.join(", ")}}${binds ? `\n    as: b${i}` : ""}`);
  });
}

/** Random steps, kept only while the scenario still loads (valid by type and by name). */
const scenarioArb = fc.array(fc.nat(), { minLength: 4, maxLength: 14 }).chain((seeds) =>
  fc.constant(seeds).map((xs) => {
    const steps: string[] = [];
    const bound: string[] = [];
    xs.forEach((x, i) => {
      const s = fc.sample(stepArb(bound, i), { seed: x, numRuns: 1 })[0]!;
      const text = `machine: default\nsteps:\n${[...steps, s].join("\n")}\n`;
      try {
        loadScenario(text, FILE, machineHost);
      } catch (e) {
        if (e instanceof InputError) return;
        throw e;
      }
      steps.push(s);
      if (s.includes(`as: b${i}`)) bound.push(`b${i}`);
    });
    return steps;
  }),
);

describe("running scenarios", () => {
  test("a simulator bug inside a step is that step's failure, not an exception out of the run", () => {
    // Hot-removing the root-complex integrated gpu0 hits a TypeError in machine/pci.ts (reported).
    const text = "machine: default\nsteps:\n  - hot_remove: {dev: gpu0}\n  - advance: {ns: 1}\n";
    const r = runScenario(loadScenario(text, FILE, machineHost), machineHost);
    expect(r.steps).toHaveLength(2);
    const [first, second] = r.steps;
    if (first!.status === "fail") {
      expect(first!.failure!.message).toMatch(/^simulator (bug|error): \S/);
      expect(second!.status).toBe("skipped");
    }
  });

  test.prop([scenarioArb], { numRuns: 20 })(
    "random calls with random arguments on the default machine: every failure is the step's",
    (steps) => {
      let lines = [...steps];
      // Each run stops at its first failure: expect that errno next time, or drop the step.
      for (let round = 0; round < 12 && lines.length > 0; round++) {
        const text = `machine: default\nsteps:\n${lines.join("\n")}\n`;
        // Dropping a step that bound a name leaves later uses unbound: then stop here.
        if (loadErrors(text).length > 0) return;
        const s = loadScenario(text, FILE, machineHost);
        const r = runScenario(s, machineHost);
        const failed = r.steps.find((x) => x.status === "fail");
        if (!failed) return;
        expect(failed.failure?.message).toMatch(/\S/);
        expect(failed.failure!.message).not.toMatch(
          /TypeError|RangeError|undefined|is not a function/,
        );
        const i = failed.step - 1;
        if (failed.errno !== undefined && !lines[i]!.includes("as:")) {
          lines[i] = `${lines[i]}\n    error: ${failed.errno}`;
        } else {
          lines = lines.filter((_, j) => j !== i);
        }
      }
    },
  );
});
