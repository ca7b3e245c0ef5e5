// The "bad input" standard for machine descriptions (YAML or JSON files, plain data): whatever
// the input, reading it gives a description or throws an InputError whose every message starts
// with file:line:column (file: for plain data), never anything else; and a description that
// reads boots, or says why it cannot as an InputError.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { isScalar, parseDocument, parse as parseYamlPlain, stringify, visit } from "yaml";
import { InputError } from "../../src/base/errors.js";
import { buildMachine } from "../../src/machine/build.js";
import { BUILTIN_MACHINES } from "../../src/machine/builtin.js";
import type { MachineDescription } from "../../src/machine/description.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import { machineDescription, parseMachineDescription } from "../../src/machine/load.js";
import { ROOT, scenarioFiles } from "../scenario/scenario-files.js";

/** The errors reading `read()` raised: [] when it read; fails on anything but InputError. */
function readErrors(
  read: () => MachineDescription,
  located: RegExp,
): { errors: InputError[]; desc?: MachineDescription } {
  try {
    return { errors: [], desc: read() };
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    const list = e instanceof InputErrors ? e.errors : [e];
    expect(list.length).toBeGreaterThan(0);
    for (const line of e.format().split("\n")) expect(line).toMatch(located);
    return { errors: [...list] };
  }
}

const LOCATED = /^m\.(yaml|json)(:\d+:\d+)?: \S/;
const fromText = (text: string, file = "m.yaml") =>
  readErrors(() => parseMachineDescription(text, file), LOCATED);

/** Booting a description that read must not throw anything but an InputError. */
function bootsOrSaysWhy(desc: MachineDescription): void {
  try {
    buildMachine(desc, { seed: 1 });
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    expect(e.format()).toMatch(/\S/);
  }
}

/** The built-in machines written out, and the `machine:` sections of the shipped scenarios. */
const PLAIN: unknown[] = [
  ...Object.values(BUILTIN_MACHINES).map((b) => b.description),
  ...scenarioFiles()
    .map(
      (f) =>
        (
          parseYamlPlain(readFileSync(join(ROOT, f), "utf8"), { intAsBigInt: true }) as {
            machine?: unknown;
          }
        ).machine,
    )
    .filter((m) => typeof m === "object" && m !== null),
  { extends: "single-mock", boot: { "iommu.strict": 0 } },
  { extends: "pci-no-acs", devices: { nic0: null } },
];
const TEXTS = PLAIN.map((p) => stringify(p));
const JSONS = PLAIN.map((p) =>
  JSON.stringify(p, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 1),
);

const REPLACEMENTS = [
  "12345",
  "-1",
  "18446744073709551616",
  "0x1_0000_0000_0000_0000",
  "1.5",
  "1e400",
  '"é中😀"',
  `"${"x ".repeat(5000)}"`,
  "true",
  "[]",
  "{}",
  "[1, [2]]",
  "{a: {b: 1}}",
  "!!binary aGVsbG8=",
  "2001-12-14",
  "*nowhere",
  '"-4K"',
  '"99999999999T"',
];

function valueRanges(text: string): [number, number][] {
  const doc = parseDocument(text);
  const out: [number, number][] = [];
  const add = (v: unknown) => {
    const n = v as { range?: [number, number, number]; flow?: boolean } | null;
    if (n?.range && (isScalar(n) || n.flow)) out.push([n.range[0], n.range[1]]);
  };
  visit(doc, {
    Pair: (_k, pair) => add(pair.value),
    Seq: (_k, seq) => seq.items.forEach(add),
  });
  return out;
}

const lineOf = (text: string, offset: number) => text.slice(0, offset).split("\n").length;

const mutation = (texts: readonly string[]) => {
  const ranges = new Map(texts.map((t) => [t, valueRanges(t)]));
  return fc
    .constantFrom(...texts.filter((t) => ranges.get(t)!.length > 0))
    .chain((t) =>
      fc.tuple(
        fc.constant(t),
        fc.constantFrom(...ranges.get(t)!),
        fc.constantFrom(...REPLACEMENTS),
      ),
    );
};

describe("machine description files", () => {
  test.prop([fc.string({ unit: "grapheme", maxLength: 200 })], { numRuns: 200 })(
    "arbitrary text reads or gives located InputErrors",
    (text) => {
      fromText(text);
    },
  );

  test.prop([mutation(TEXTS)], { numRuns: 150 })(
    "a value of another type anywhere in a YAML description is reported at its own line, and what reads boots",
    ([text, [start, end], replacement]) => {
      const mutated = text.slice(0, start) + replacement + text.slice(end);
      const { errors, desc } = fromText(mutated);
      if (desc) {
        bootsOrSaysWhy(desc);
        return;
      }
      const line = lineOf(mutated, start);
      expect(
        errors.map((e) => e.location.line),
        `${mutated.split("\n")[line - 1]}\n${errors.map((e) => e.format()).join("\n")}`,
      ).toContain(line);
    },
  );

  test.prop([mutation(JSONS)], { numRuns: 80 })(
    "the same for JSON descriptions",
    ([text, [start, end], replacement]) => {
      const json =
        replacement.startsWith("!!") || replacement.startsWith("*") ? "null" : replacement;
      const mutated = text.slice(0, start) + json + text.slice(end);
      const { desc } = readErrors(() => parseMachineDescription(mutated, "m.json"), LOCATED);
      if (desc) bootsOrSaysWhy(desc);
    },
  );

  const lineMutation = fc.record({
    op: fc.constantFrom("delete", "duplicate", "swap", "indent", "outdent", "tab"),
    at: fc.nat(),
  });

  test.prop([fc.constantFrom(...TEXTS), fc.array(lineMutation, { minLength: 1, maxLength: 3 })], {
    numRuns: 150,
  })("line mutations give located InputErrors, and what reads boots", (text, mutations) => {
    const lines = text.split("\n");
    for (const m of mutations) {
      const i = m.at % lines.length;
      const j = (i + 1) % lines.length;
      if (m.op === "delete") lines.splice(i, 1);
      else if (m.op === "duplicate") lines.splice(i, 0, lines[i]!);
      else if (m.op === "swap") [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      else if (m.op === "indent") lines[i] = `  ${lines[i]}`;
      else if (m.op === "outdent") lines[i] = lines[i]!.replace(/^ {2}/, "");
      else lines[i] = `\t${lines[i]}`;
    }
    const { desc } = fromText(lines.join("\n"));
    if (desc) bootsOrSaysWhy(desc);
  });
});

describe("machine descriptions as plain data", () => {
  const json = fc.jsonValue({ maxDepth: 4 });
  const keys = fc.constantFrom(
    "extends",
    "name",
    "cpus",
    "memory",
    "boot",
    "iommus",
    "pci",
    "devices",
    "x",
  );

  test.prop([fc.dictionary(keys, json, { maxKeys: 5 })], { numRuns: 200 })(
    "arbitrary JSON data reads or gives InputErrors naming the file",
    (data) => {
      const { desc } = readErrors(() => machineDescription(data, "p.json"), /^p\.json: \S/);
      if (desc) bootsOrSaysWhy(desc);
    },
  );

  const plainMutation = fc
    .constantFrom(...PLAIN.filter((p) => typeof p === "object"))
    .chain((p) => fc.tuple(fc.constant(p), fc.nat(), json));

  test.prop([plainMutation], { numRuns: 150 })(
    "any leaf of a description replaced by any JSON value reads or gives InputErrors",
    ([p, at, value]) => {
      const data = JSON.parse(JSON.stringify(p, (_k, v) => (typeof v === "bigint" ? `${v}` : v)));
      const holders: [Record<string, unknown>, string][] = [];
      const walk = (o: unknown) => {
        if (o === null || typeof o !== "object") return;
        for (const [k, v] of Object.entries(o)) {
          holders.push([o as Record<string, unknown>, k]);
          walk(v);
        }
      };
      walk(data);
      const [holder, key] = holders[at % holders.length]!;
      holder[key] = value;
      const { desc } = readErrors(() => machineDescription(data, "p.json"), /^p\.json: \S/);
      if (desc) bootsOrSaysWhy(desc);
    },
  );
});

describe("extending a built-in machine", () => {
  test("removing an entry the built-in still names is reported at extends:, not in the built-in", () => {
    const { errors } = fromText("name: box\nextends: multi-iommu\niommus:\n  iommu1: null\n");
    expect(errors.map((e) => e.format())).toEqual([
      'm.yaml:2:10: devices.dev1.iommu: unknown IOMMU "iommu1" (did you mean "iommu0"?) (in the built-in machine "multi-iommu" it extends)',
    ]);
    const plain = readErrors(
      () => machineDescription({ extends: "pci-no-acs", pci: null }, "p.json"),
      /^p\.json: devices\.\w+\.parent: unknown PCI bridge "\w+" \(in the built-in machine "pci-no-acs" it extends\)$/,
    );
    expect(plain.errors.length).toBeGreaterThan(0);
  });
});
