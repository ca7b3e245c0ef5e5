// Small composable readers that validate located input nodes into typed values. A reader reports
// every problem to the Diagnostics (with the field path and position) and returns undefined for
// a value it could not read, so one pass finds all the errors of a file.

import type { InputLocation } from "../../base/errors.js";
import type { Diagnostics } from "./diagnostics.js";
import { childPath, describeNode, type InputMap, type InputNode } from "./node.js";

export type Reader<T> = (node: InputNode, path: string, d: Diagnostics) => T | undefined;

const U64_MAX = (1n << 64n) - 1n;

/** A whole number in [min, max] (a plain number: PASIDs, bit widths, counts). */
export function integer(opts: { min?: number; max?: number; what?: string } = {}): Reader<number> {
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const what = opts.what ?? `an integer in ${min}..${max}`;
  return (node, path, d) => {
    const v = scalarBigInt(node);
    if (v === undefined || v < BigInt(min) || v > BigInt(max)) {
      d.error(node.loc, path, `expected ${what}, got ${describeNode(node)}`);
      return undefined;
    }
    return Number(v);
  };
}

/** A 64-bit unsigned value: an integer, `0x…` text, or a size like `4K`/`2MiB` when `sizes`. */
export function u64(
  opts: { sizes?: boolean; what?: string; nonZero?: boolean } = {},
): Reader<bigint> {
  const what =
    opts.what ?? (opts.sizes ? "a size (e.g. 4096, 0x1000, 4K, 2M, 1G)" : "a 64-bit address");
  return (node, path, d) => {
    let v = scalarBigInt(node);
    if (v === undefined && opts.sizes && node.kind === "scalar" && typeof node.value === "string") {
      v = parseSize(node.value);
    }
    if (v === undefined || v < 0n || v > U64_MAX || (opts.nonZero && v === 0n)) {
      d.error(node.loc, path, `expected ${what}, got ${describeNode(node)}`);
      return undefined;
    }
    return v;
  };
}

export function boolean(): Reader<boolean> {
  return (node, path, d) => {
    if (node.kind === "scalar" && typeof node.value === "boolean") return node.value;
    d.error(node.loc, path, `expected true or false, got ${describeNode(node)}`);
    return undefined;
  };
}

/** Text; `pattern` restricts it (e.g. names). */
export function text(opts: { pattern?: RegExp; what?: string } = {}): Reader<string> {
  const what = opts.what ?? "text";
  return (node, path, d) => {
    if (node.kind === "scalar" && typeof node.value === "string") {
      if (!opts.pattern || opts.pattern.test(node.value)) return node.value;
    }
    d.error(node.loc, path, `expected ${what}, got ${describeNode(node)}`);
    return undefined;
  };
}

/** A name for something the user refers to later (device, port, IOMMU, binding). */
export const NAME_PATTERN = /^[A-Za-z_][\w.-]*$/;

export function name(): Reader<string> {
  return text({ pattern: NAME_PATTERN, what: "a name (letters, digits, _ . -)" });
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(values: readonly T[]): Reader<T> {
  return (node, path, d) => {
    if (node.kind === "scalar" && typeof node.value === "string") {
      if ((values as readonly string[]).includes(node.value)) return node.value as T;
      d.error(
        node.loc,
        path,
        `unknown value ${JSON.stringify(node.value)}${suggest(node.value, values)}; expected one of ${values.join(", ")}`,
      );
      return undefined;
    }
    d.error(node.loc, path, `expected one of ${values.join(", ")}, got ${describeNode(node)}`);
    return undefined;
  };
}

/** A list of items; also accepts a single item written without brackets when `single`. */
export function listOf<T>(item: Reader<T>, opts: { single?: boolean } = {}): Reader<T[]> {
  return (node, path, d) => {
    if (node.kind !== "seq") {
      if (opts.single && node.kind === "scalar" && node.value !== null) {
        const v = item(node, path, d);
        return v === undefined ? undefined : [v];
      }
      d.error(node.loc, path, `expected a list, got ${describeNode(node)}`);
      return undefined;
    }
    const out: T[] = [];
    let bad = false;
    node.items.forEach((x, i) => {
      const v = item(x, childPath(path, i), d);
      if (v === undefined) bad = true;
      else out.push(v);
    });
    return bad ? undefined : out;
  };
}

export interface Named<T> {
  readonly name: string;
  /** Where the name (the map key) is written. */
  readonly keyLoc: InputLocation;
  readonly value: T;
}

/** A map from names (checked against NAME_PATTERN) to items, kept in source order. */
export function namedMap<T>(item: Reader<T>): Reader<Named<T>[]> {
  return (node, path, d) => {
    if (isEmpty(node)) return [];
    if (node.kind !== "map") {
      d.error(node.loc, path, `expected a map of names to entries, got ${describeNode(node)}`);
      return undefined;
    }
    const out: Named<T>[] = [];
    let bad = false;
    for (const e of node.entries) {
      if (!NAME_PATTERN.test(e.key)) {
        d.error(e.keyLoc, childPath(path, e.key), "not a valid name (letters, digits, _ . -)");
        bad = true;
        continue;
      }
      const v = item(e.value, childPath(path, e.key), d);
      if (v === undefined) bad = true;
      else out.push({ name: e.key, keyLoc: e.keyLoc, value: v });
    }
    return bad ? undefined : out;
  };
}

/** null or the inner reader. */
export function nullable<T>(inner: Reader<T>): Reader<T | null> {
  return (node, path, d) => (isNull(node) ? null : inner(node, path, d));
}

/** `read`, then `check` the value: a returned message is reported at the node. */
export function refine<T>(read: Reader<T>, check: (v: T) => string | undefined): Reader<T> {
  return (node, path, d) => {
    const v = read(node, path, d);
    if (v === undefined) return undefined;
    const problem = check(v);
    if (problem === undefined) return v;
    d.error(node.loc, path, problem);
    return undefined;
  };
}

export interface Field<T> {
  readonly read: Reader<T>;
  readonly required: boolean;
  readonly fallback?: () => T;
}

export function required<T>(read: Reader<T>): Field<T> {
  return { read, required: true };
}

/** An optional field; absent reads as `fallback` (or undefined). */
export function optional<T>(read: Reader<T>): Field<T | undefined>;
export function optional<T>(read: Reader<T>, fallback: T): Field<T>;
export function optional<T>(read: Reader<T>, fallback?: T): Field<T | undefined> {
  return { read, required: false, fallback: () => fallback };
}

export type StructOf<F> = { -readonly [K in keyof F]: F[K] extends Field<infer T> ? T : never };

/** A struct reader also lists its field names (for docs and their tests). */
export type StructReader<T> = Reader<T> & { readonly fields: readonly string[] };

/** A map with known fields: unknown keys (with a suggestion) and missing ones are errors. */
export function struct<F extends Record<string, Field<unknown>>>(
  fields: F,
): StructReader<StructOf<F>> {
  const known = Object.keys(fields);
  const read: Reader<StructOf<F>> = (node, path, d) => {
    if (isEmpty(node) && known.every((k) => !fields[k]!.required)) node = EMPTY_MAP(node);
    if (node.kind !== "map") {
      d.error(node.loc, path, `expected a map, got ${describeNode(node)}`);
      return undefined;
    }
    let bad = !checkKeys(node, path, known, d);
    const out: Record<string, unknown> = {};
    for (const k of known) {
      const f = fields[k]!;
      const e = node.entries.find((x) => x.key === k);
      if (!e) {
        if (f.required) {
          d.error(node.loc, path, `missing field "${k}"`);
          bad = true;
        } else {
          out[k] = f.fallback?.();
        }
        continue;
      }
      const v = f.read(e.value, childPath(path, k), d);
      if (v === undefined) bad = true;
      out[k] = v;
    }
    return bad ? undefined : (out as StructOf<F>);
  };
  return Object.assign(read, { fields: known });
}

/** Reports keys of `map` that are not in `known`; false if there was any. */
export function checkKeys(
  map: InputMap,
  path: string,
  known: readonly string[],
  d: Diagnostics,
): boolean {
  let good = true;
  for (const e of map.entries) {
    if (!known.includes(e.key)) {
      d.error(
        e.keyLoc,
        childPath(path, e.key),
        `unknown field${suggest(e.key, known)}; expected one of ${known.join(", ")}`,
      );
      good = false;
    }
  }
  return good;
}

/**
 * ` (did you mean "x"?)` for the closest of `candidates`, or nothing. Close means a few typos
 * (transpositions count once) for the word's length, or one word being a prefix of the other.
 */
export function suggest(word: string, candidates: readonly string[]): string {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDist = Math.max(1, Math.floor(w.length / 3)) + 1;
  for (const c of candidates) {
    const lc = c.toLowerCase();
    let dist = typoDistance(w, lc);
    if (
      dist >= bestDist &&
      Math.min(w.length, lc.length) >= 3 &&
      (lc.startsWith(w) || w.startsWith(lc))
    ) {
      dist = bestDist - 0.5;
    }
    if (dist < bestDist) {
      best = c;
      bestDist = dist;
    }
  }
  return best === undefined ? "" : ` (did you mean "${best}"?)`;
}

/** Sizes: `4096`, `4K`, `4KiB`, `2M`, `1G`, `1T` (binary multiples). */
export function parseSize(s: string): bigint | undefined {
  const m = /^(\d+)\s*([KMGT])(?:i?B)?$/i.exec(s.trim());
  if (!m) return undefined;
  const shift = { K: 10n, M: 20n, G: 30n, T: 40n }[m[2]!.toUpperCase() as "K" | "M" | "G" | "T"];
  return BigInt(m[1]!) << shift;
}

/** A scalar integer as bigint: YAML integers, safe JS numbers, and `0x…`/decimal text. */
export function scalarBigInt(node: InputNode): bigint | undefined {
  if (node.kind !== "scalar") return undefined;
  const v = node.value;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (typeof v === "string" && /^(0x[0-9a-f_]+|0b[01_]+|\d[\d_]*)$/i.test(v.trim())) {
    return BigInt(v.trim().replaceAll("_", ""));
  }
  return undefined;
}

function isNull(node: InputNode): boolean {
  return node.kind === "scalar" && node.value === null;
}

/** A key written with nothing after it (`boot:`) reads as an empty map or list. */
function isEmpty(node: InputNode): boolean {
  return isNull(node);
}

function EMPTY_MAP(node: InputNode): InputMap {
  return { kind: "map", loc: node.loc, entries: [] };
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions, transpositions. */
function typoDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, rows[i - 2]![j - 2]! + 1);
      }
      row.push(v);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}
