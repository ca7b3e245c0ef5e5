// YAML text → located input nodes. Uses the `yaml` package (YAML 1.2 core schema) with integers
// as bigint, so 64-bit addresses survive exactly; every node keeps its line and column.

import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseAllDocuments,
  Scalar,
} from "yaml";
import type { InputLocation } from "../../base/errors.js";
import { Diagnostics } from "./diagnostics.js";
import type { InputEntry, InputNode } from "./node.js";

/**
 * Parses one YAML document. Syntax errors, duplicate keys, non-scalar keys, unknown tags and
 * extra documents are all reported together as an InputErrors naming file:line:column.
 */
export function parseYaml(text: string, file: string): InputNode {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
    intAsBigInt: true,
    prettyErrors: false,
    uniqueKeys: true,
    merge: true,
  });
  const d = new Diagnostics();
  const at = (offset: number): InputLocation => {
    const p = lines.linePos(offset);
    return { file, line: p.line, column: p.col };
  };
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    for (const e of [...doc.errors, ...doc.warnings]) {
      d.error(at(e.pos[0]), "", yamlMessage(e.code, e.message));
    }
  }
  if (list.length > 1) {
    d.error(at(list[1]!.range[0]), "", "a file holds one YAML document; found more than one");
  }
  const doc = list[0];
  const root =
    doc?.contents == null
      ? ({ kind: "scalar", loc: { file, line: 1, column: 1 }, value: null, quoted: false } as const)
      : convert(doc, doc.contents, at, d);
  d.throwIfAny();
  return root;
}

function convert(
  doc: Document,
  node: Node,
  at: (offset: number) => InputLocation,
  d: Diagnostics,
): InputNode {
  const loc = at(node.range?.[0] ?? 0);
  if (isAlias(node)) {
    const target = node.resolve(doc);
    if (!target) {
      d.error(loc, "", `unknown alias *${node.source}`);
      return { kind: "scalar", loc, value: null, quoted: false };
    }
    return convert(doc, target, at, d);
  }
  if (isMap(node)) {
    const entries: InputEntry[] = [];
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const k = pair.key as Node | null;
      const keyLoc = k?.range ? at(k.range[0]) : loc;
      if (!isScalar(k) || (typeof k.value !== "string" && typeof k.value !== "bigint")) {
        d.error(keyLoc, "", "map keys must be plain names");
        continue;
      }
      const value: InputNode = pair.value
        ? convert(doc, pair.value as Node, at, d)
        : { kind: "scalar", loc: keyLoc, value: null, quoted: false };
      entries.push({ key: String(k.value), keyLoc, value });
    }
    return { kind: "map", loc, entries };
  }
  if (isSeq(node)) {
    return { kind: "seq", loc, items: node.items.map((x) => convert(doc, x as Node, at, d)) };
  }
  if (isScalar(node)) {
    const v = node.value;
    const quoted = node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE;
    if (
      v === null ||
      typeof v === "string" ||
      typeof v === "number" ||
      typeof v === "bigint" ||
      typeof v === "boolean"
    ) {
      if (typeof v === "number" && !Number.isFinite(v)) {
        d.error(loc, "", `${node.source} is not a usable number`);
      }
      return { kind: "scalar", loc, value: v, quoted };
    }
    d.error(loc, "", "unsupported YAML value (use plain strings, numbers, booleans)");
    return { kind: "scalar", loc, value: null, quoted };
  }
  d.error(loc, "", "unsupported YAML node");
  return { kind: "scalar", loc, value: null, quoted: false };
}

/** The yaml package's message, made to read as a sentence about the user's file. */
function yamlMessage(code: string, message: string): string {
  const first = message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
  if (code === "DUPLICATE_KEY") return "duplicate key (each key may appear once in a map)";
  return `YAML syntax: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}
