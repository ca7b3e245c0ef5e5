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
import { describeNode, type InputEntry, type InputNode } from "./node.js";

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

/** Deeper than any description or scenario needs; keeps every reader's recursion shallow. */
const MAX_DEPTH = 64;
/** Values aliases may add: plenty for sharing a few maps, far too few for an alias bomb. */
const MAX_ALIAS_VALUES = 10_000;

interface Walk {
  readonly doc: Document;
  readonly at: (offset: number) => InputLocation;
  readonly d: Diagnostics;
  /** Anchored nodes being expanded (an alias inside its own anchor would never end). */
  readonly expanding: Set<Node>;
  aliasValues: number;
  /** Set once a limit was hit: the rest of the tree is not converted (one message suffices). */
  stopped: boolean;
}

const NULL_AT = (loc: InputLocation): InputNode => ({
  kind: "scalar",
  loc,
  value: null,
  quoted: false,
});

function convert(
  doc: Document,
  node: Node,
  at: (offset: number) => InputLocation,
  d: Diagnostics,
): InputNode {
  const w: Walk = { doc, at, d, expanding: new Set(), aliasValues: 0, stopped: false };
  return convertNode(w, node, 0);
}

function convertNode(w: Walk, node: Node, depth: number): InputNode {
  const { doc, at, d } = w;
  const loc = at(node.range?.[0] ?? 0);
  if (w.stopped) return NULL_AT(loc);
  if (depth > MAX_DEPTH) {
    d.error(loc, "", `values nested too deeply (more than ${MAX_DEPTH} levels)`);
    w.stopped = true;
    return NULL_AT(loc);
  }
  if (w.expanding.size > 0 && ++w.aliasValues > MAX_ALIAS_VALUES) {
    d.error(
      loc,
      "",
      `aliases expand to more than ${MAX_ALIAS_VALUES} values; write the values out instead`,
    );
    w.stopped = true;
    return NULL_AT(loc);
  }
  if (isAlias(node)) {
    const target = node.resolve(doc);
    if (!target) {
      d.error(loc, "", `unknown alias *${node.source}`);
      return NULL_AT(loc);
    }
    if (w.expanding.has(target)) {
      d.error(loc, "", `alias *${node.source} is inside its own anchor &${node.source}`);
      return NULL_AT(loc);
    }
    w.expanding.add(target);
    const out = convertNode(w, target, depth);
    w.expanding.delete(target);
    return out;
  }
  if (isMap(node)) {
    const explicit = new Set<string>();
    for (const pair of node.items) {
      const k = isPair(pair) ? (pair.key as Node | null) : null;
      if (isScalar(k) && (typeof k.value === "string" || typeof k.value === "bigint")) {
        explicit.add(String(k.value));
      }
    }
    const entries: InputEntry[] = [];
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const k = pair.key as Node | null;
      const keyLoc = k?.range ? at(k.range[0]) : loc;
      if (isScalar(k) && typeof k.value === "symbol" && k.source === "<<") {
        mergeInto(w, entries, explicit, pair.value as Node | null, keyLoc, depth);
        continue;
      }
      if (!isScalar(k) || (typeof k.value !== "string" && typeof k.value !== "bigint")) {
        d.error(keyLoc, "", "map keys must be plain names");
        continue;
      }
      const value: InputNode = pair.value
        ? convertNode(w, pair.value as Node, depth + 1)
        : NULL_AT(keyLoc);
      entries.push({ key: String(k.value), keyLoc, value });
    }
    return { kind: "map", loc, entries };
  }
  if (isSeq(node)) {
    return {
      kind: "seq",
      loc,
      items: node.items.map((x) => convertNode(w, x as Node, depth + 1)),
    };
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
  return NULL_AT(loc);
}

/**
 * A merge key (`<<: *base` or `<<: [*a, *b]`): the merged maps' entries join the map where the
 * key stands, except keys the map writes itself; of several maps, the first that has a key wins.
 */
function mergeInto(
  w: Walk,
  entries: InputEntry[],
  explicit: ReadonlySet<string>,
  value: Node | null,
  keyLoc: InputLocation,
  depth: number,
): void {
  const merged = value ? convertNode(w, value, depth + 1) : NULL_AT(keyLoc);
  const maps = merged.kind === "seq" ? merged.items : [merged];
  for (const m of maps) {
    if (m.kind !== "map") {
      if (!w.stopped) {
        w.d.error(
          m.loc,
          "",
          `"<<" merges maps: expected a map or a list of maps, got ${describeNode(m)}`,
        );
      }
      continue;
    }
    for (const e of m.entries) {
      if (!explicit.has(e.key) && !entries.some((x) => x.key === e.key)) entries.push(e);
    }
  }
}

/** The yaml package's message, made to read as a sentence about the user's file. */
function yamlMessage(code: string, message: string): string {
  const first = message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
  if (code === "DUPLICATE_KEY") return "duplicate key (each key may appear once in a map)";
  // The parser recurses per level: a stack overflow there means absurd nesting.
  if (/call stack/i.test(first)) return `values nested too deeply (more than ${MAX_DEPTH} levels)`;
  return `YAML syntax: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}
