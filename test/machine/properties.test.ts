// Every description error points at the offending value: replace any leaf of a built-in
// machine's description with a value no field accepts, write it out as YAML, and one of the
// reported errors sits exactly at that value's line and column.

import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { stringify } from "yaml";
import { BUILTIN_MACHINES } from "../../src/machine/builtin.js";
import { InputErrors } from "../../src/machine/input/diagnostics.js";
import type { InputNode } from "../../src/machine/input/node.js";
import { parseYaml } from "../../src/machine/input/yaml.js";
import { parseMachineDescription } from "../../src/machine/load.js";

type Path = (string | number)[];

function leaves(v: unknown, path: Path = []): Path[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, [...path, i]));
  if (v !== null && typeof v === "object") {
    return Object.entries(v).flatMap(([k, x]) => leaves(x, [...path, k]));
  }
  return [path];
}

function setAt(v: unknown, path: Path, value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  if (Array.isArray(v)) return v.map((x, i) => (i === head ? setAt(x, rest, value) : x));
  const o = v as Record<string, unknown>;
  return { ...o, [head as string]: setAt(o[head as string], rest, value) };
}

function nodeAt(node: InputNode, path: Path): InputNode {
  let cur = node;
  for (const k of path) {
    if (cur.kind === "seq") cur = cur.items[k as number]!;
    else if (cur.kind === "map") cur = cur.entries.find((e) => e.key === k)!.value;
  }
  return cur;
}

const cases = Object.values(BUILTIN_MACHINES).flatMap((b) =>
  leaves(b.description).map((path) => ({ desc: b.description, path })),
);

test.prop([fc.constantFrom(...cases)], { numRuns: 2 * cases.length })(
  "a bad value anywhere is reported at its own line and column",
  ({ desc, path }) => {
    const text = stringify(setAt(desc, path, "%%bad%%"));
    const at = nodeAt(parseYaml(text, "m.yaml"), path).loc;
    let errors: string[] = [];
    try {
      parseMachineDescription(text, "m.yaml");
    } catch (e) {
      if (!(e instanceof InputErrors)) throw e;
      errors = e.errors.map((x) => `${x.location.line}:${x.location.column}`);
    }
    expect(errors).toContain(`${at.line}:${at.column}`);
  },
);
