// User input as a tree of located nodes. YAML files, JSON files and plain TypeScript objects all
// become this one shape, so every validator reads one form and every message can say where the
// offending value came from (file:line:column when the input was text).

import type { InputLocation } from "../../base/errors.js";
import { SimError } from "../../base/errors.js";

export type ScalarValue = string | number | bigint | boolean | null;

export type InputNode = InputMap | InputSeq | InputScalar;

export interface InputEntry {
  readonly key: string;
  readonly keyLoc: InputLocation;
  readonly value: InputNode;
}

export interface InputMap {
  readonly kind: "map";
  readonly loc: InputLocation;
  /** In source order; keys are unique. */
  readonly entries: readonly InputEntry[];
}

export interface InputSeq {
  readonly kind: "seq";
  readonly loc: InputLocation;
  readonly items: readonly InputNode[];
}

export interface InputScalar {
  readonly kind: "scalar";
  readonly loc: InputLocation;
  readonly value: ScalarValue;
  /** True when the source wrote the scalar in quotes: `"5"` is text, never a number. */
  readonly quoted: boolean;
}

/** The node for plain data (a TS object or parsed JSON). Positions are unknown; `file` is kept. */
export function fromPlain(value: unknown, file?: string): InputNode {
  const loc: InputLocation = file === undefined ? {} : { file };
  const seen = new Set<unknown>();
  const walk = (v: unknown): InputNode => {
    if (v === undefined || v === null) return { kind: "scalar", loc, value: null, quoted: false };
    if (typeof v === "string") return { kind: "scalar", loc, value: v, quoted: true };
    if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") {
      return { kind: "scalar", loc, value: v, quoted: false };
    }
    if (typeof v !== "object") throw new SimError(`cannot use a ${typeof v} as input`);
    if (seen.has(v)) throw new SimError("input data contains a cycle");
    seen.add(v);
    let node: InputNode;
    if (Array.isArray(v)) {
      node = { kind: "seq", loc, items: v.map(walk) };
    } else {
      const entries: InputEntry[] = [];
      for (const [key, x] of Object.entries(v)) {
        if (x !== undefined) entries.push({ key, keyLoc: loc, value: walk(x) });
      }
      node = { kind: "map", loc, entries };
    }
    seen.delete(v);
    return node;
  };
  return walk(value);
}

/** The plain data a node stands for (maps become objects, in source order). */
export function toPlain(node: InputNode): unknown {
  switch (node.kind) {
    case "scalar":
      return node.value;
    case "seq":
      return node.items.map(toPlain);
    case "map": {
      const out: Record<string, unknown> = {};
      for (const e of node.entries) out[e.key] = toPlain(e.value);
      return out;
    }
  }
}

export function entry(map: InputMap, key: string): InputEntry | undefined {
  return map.entries.find((e) => e.key === key);
}

export function isNull(node: InputNode): boolean {
  return node.kind === "scalar" && node.value === null;
}

/**
 * `over` laid onto `base`: maps merge key by key (recursively), anything else in `over` replaces
 * what `base` had, and a null value in `over` removes the key. Each node keeps its own location.
 */
export function mergeNodes(base: InputNode, over: InputNode): InputNode {
  if (base.kind !== "map" || over.kind !== "map") return over;
  const entries: InputEntry[] = [];
  for (const b of base.entries) {
    const o = entry(over, b.key);
    if (!o) entries.push(b);
    else if (!isNull(o.value)) entries.push({ ...o, value: mergeNodes(b.value, o.value) });
  }
  for (const o of over.entries) {
    if (!entry(base, o.key) && !isNull(o.value)) entries.push(o);
  }
  return { kind: "map", loc: over.loc, entries };
}

/** How a node reads in a message: `a map`, `a list`, `the string "x"`, `the number 5`, `null`. */
export function describeNode(node: InputNode): string {
  if (node.kind === "map") return "a map";
  if (node.kind === "seq") return "a list";
  const v = node.value;
  if (v === null) return "null";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "boolean") return `the boolean ${v}`;
  return `the number ${v}`;
}

/** `devices.nic0` + `pasid_bits` → `devices.nic0.pasid_bits`; odd keys are quoted. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  const k = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : JSON.stringify(key);
  return path ? `${path}.${k}` : k;
}
