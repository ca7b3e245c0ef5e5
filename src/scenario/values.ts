// Values in scenario steps: arguments and expected results. `compileValue` type-checks a node
// against a ValueType before anything runs (names, bindings, ranges, errno names); at run time
// `resolve` turns the compiled value into the object or number the call needs, and `match`
// compares an expected value with what the machine actually holds.

import { isErrno } from "../base/errno.js";
import { type Json, jsonValue } from "../base/json.js";
import type { Diagnostics } from "../machine/input/diagnostics.js";
import { childPath, describeNode, type InputNode } from "../machine/input/node.js";
import { NAME_PATTERN, scalarBigInt, suggest } from "../machine/input/schema.js";
import {
  Bytes,
  type PropSpec,
  VALUE_KIND,
  type ValueType,
  type Vocabulary,
} from "./vocabulary/types.js";

export type Compiled =
  /** A constant: number (int, flags), bigint (u64), boolean, string (enum, errno, text) or null. */
  | { readonly kind: "const"; readonly value: unknown }
  /** An object named in the scenario; `create` makes a fresh one under that name. */
  | {
      readonly kind: "object";
      readonly name: string;
      readonly object: string;
      readonly create: boolean;
    }
  /** `$name` in an expected value: the very object bound to (or named) `name`. */
  | { readonly kind: "ref"; readonly name: string }
  /**
   * A number computed from a binding: `iova` (a value bound with as:), `buf.dma_handle` (a field
   * of a bound object), optionally `+ n` / `- n`.
   */
  | {
      readonly kind: "expr";
      readonly name: string;
      readonly field: string | undefined;
      readonly delta: bigint;
      readonly as: "bigint" | "number";
    }
  /** A special word of a property (`default`, `blocking`), read from the subject at run time. */
  | {
      readonly kind: "word";
      readonly word: string;
      readonly get: (m: never, subject: unknown) => unknown;
    }
  | { readonly kind: "map"; readonly entries: readonly (readonly [string, Compiled])[] }
  | { readonly kind: "list"; readonly items: readonly Compiled[] };

/** What validation knows about names: the machine's own names and the bindings made so far. */
export class Scope {
  readonly #bindings = new Map<string, string>();

  constructor(
    private readonly vocabulary: Vocabulary<never>,
    private readonly names: Readonly<Record<string, readonly string[]>>,
  ) {}

  bindingKind(name: string): string | undefined {
    return this.#bindings.get(name);
  }

  /** Records `as: name` (or a created object); a machine name cannot be rebound. */
  bind(name: string, kind: string): string | undefined {
    for (const [k, list] of Object.entries(this.names)) {
      if (list.includes(name)) return `"${name}" already names a ${k} of the machine`;
    }
    this.#bindings.set(name, kind);
    return undefined;
  }

  /** Checks that `name` can stand for an object of `kind`; a message when it cannot. */
  check(kind: string, name: string): { create: boolean } | string {
    const spec = this.vocabulary.kinds[kind];
    if (!spec) return `no object kind "${kind}"`;
    const via = spec.via?.kind;
    const bound = this.#bindings.get(name);
    if (bound !== undefined) {
      if (bound === kind || bound === via) return { create: false };
      return `"${name}" is ${article(this.#label(bound))}, expected ${article(this.#label(kind))}`;
    }
    if (this.names[kind]?.includes(name) || (via && this.names[via]?.includes(name))) {
      return { create: false };
    }
    if (spec.create) return { create: true };
    const machineNamed = spec.lookup
      ? kind
      : via && this.vocabulary.kinds[via]?.lookup
        ? via
        : undefined;
    if (machineNamed) {
      const known = [...(this.names[machineNamed] ?? []), ...this.#boundOf(kind, via)];
      return `unknown ${this.#label(machineNamed)} "${name}"${suggest(name, known)}`;
    }
    for (const [k, list] of Object.entries(this.names)) {
      if (list.includes(name)) {
        return `"${name}" is ${article(this.#label(k))} of the machine, expected ${article(this.#label(kind))}`;
      }
    }
    return `"${name}" is not bound (no earlier step has "as: ${name}")${suggest(name, this.#boundOf(kind, via))}`;
  }

  /**
   * Checks a value expression's binding: a value bound with as:, or an object bound with as:
   * whose kind offers `field`. A message when it is neither.
   */
  checkExpr(name: string, field: string | undefined): string | undefined {
    const bound = this.#bindings.get(name);
    if (bound === undefined) {
      return `"${name}" is not bound (no earlier step has "as: ${name}")${suggest(name, [...this.#bindings.keys()])}`;
    }
    if (field === undefined) {
      return bound === VALUE_KIND
        ? undefined
        : `"${name}" is ${article(this.#label(bound))}, not a number${this.#fieldHint(bound)}`;
    }
    if (bound === VALUE_KIND) return `"${name}" is a number: it has no field "${field}"`;
    const fields = Object.keys(this.vocabulary.kinds[bound]?.fields ?? {});
    if (!fields.includes(field)) {
      return `${article(this.#label(bound))} has no field "${field}"${suggest(field, fields)}${fields.length ? `; fields: ${fields.join(", ")}` : ""}`;
    }
    return undefined;
  }

  #fieldHint(kind: string): string {
    const fields = Object.keys(this.vocabulary.kinds[kind]?.fields ?? {});
    return fields.length
      ? ` (use one of its fields: ${fields.map((f) => `.${f}`).join(", ")})`
      : "";
  }

  /** Checks a `$name` reference (any kind). */
  checkRef(name: string): string | undefined {
    if (this.#bindings.has(name)) return undefined;
    for (const list of Object.values(this.names)) if (list.includes(name)) return undefined;
    return `"$${name}" refers to nothing: "${name}" is not bound and names nothing in the machine`;
  }

  #label(kind: string): string {
    return this.vocabulary.kinds[kind]?.label ?? kind;
  }

  #boundOf(kind: string, via: string | undefined): string[] {
    return [...this.#bindings].filter(([, k]) => k === kind || k === via).map(([n]) => n);
  }
}

function article(kind: string): string {
  return /^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`;
}

export interface CompileOptions {
  /** Compiling an expected value (allows `$name`, special words, partial maps for objects). */
  readonly expected: boolean;
  readonly nullable?: boolean;
  readonly words?: PropSpec<never>["words"];
}

/** Type-checks `node` as a value of `type`; undefined (with errors reported) when it is not one. */
export function compileValue(
  node: InputNode,
  type: ValueType,
  scope: Scope,
  path: string,
  d: Diagnostics,
  opts: CompileOptions,
): Compiled | undefined {
  const bad = (what: string): undefined => {
    d.error(node.loc, path, `expected ${what}, got ${describeNode(node)}`);
    return undefined;
  };
  if (node.kind === "scalar" && node.value === null) {
    if (opts.nullable || opts.expected) return { kind: "const", value: null };
    return bad(`${typeName(type)} (null is not allowed here)`);
  }
  const s = node.kind === "scalar" && typeof node.value === "string" ? node.value : undefined;
  if (opts.expected && s?.startsWith("$")) {
    const ref = s.slice(1);
    // `$buf + 0x1000`, `$buf.dma_handle`: a number computed from a binding.
    const x = EXPR.exec(ref.trim());
    if (x && (x[2] !== undefined || x[3] !== undefined) && scope.bindingKind(x[1]!) !== undefined) {
      return (
        compileExpr(ref, type.kind === "int" ? "number" : "bigint", scope, node, path, d) ??
        undefined
      );
    }
    return compileRef(s, node, scope, path, d);
  }
  if (opts.expected && s !== undefined && opts.words?.[s]) {
    return {
      kind: "word",
      word: s,
      get: opts.words[s]! as (m: never, subject: unknown) => unknown,
    };
  }
  switch (type.kind) {
    case "object": {
      if (opts.expected && node.kind === "map") return compileJson(node, scope, path, d);
      if (s === undefined || !NAME_PATTERN.test(s)) {
        const words = opts.words ? Object.keys(opts.words) : [];
        return bad(
          `${article(type.object)} name${words.length ? ` or one of ${words.join(", ")}` : ""}`,
        );
      }
      const r = scope.check(type.object, s);
      if (typeof r === "string") {
        d.error(node.loc, path, r);
        return undefined;
      }
      if (r.create && opts.expected) {
        d.error(node.loc, path, `"${s}" is not bound (no earlier step has "as: ${s}")`);
        return undefined;
      }
      return { kind: "object", name: s, object: type.object, create: r.create };
    }
    case "int": {
      const e = s === undefined ? undefined : compileExpr(s, "number", scope, node, path, d);
      if (e !== undefined) return e ?? undefined;
      const v = scalarBigInt(node);
      if (v === undefined || v < BigInt(type.min) || v > BigInt(type.max)) return bad(type.what);
      if (type.only && !type.only.includes(Number(v))) return bad(type.what);
      return { kind: "const", value: Number(v) };
    }
    case "u64": {
      const e = s === undefined ? undefined : compileExpr(s, "bigint", scope, node, path, d);
      if (e !== undefined) return e ?? undefined;
      const v = scalarBigInt(node);
      if (v === undefined || v < 0n || v >= 1n << 64n) return bad("a 64-bit unsigned value");
      return { kind: "const", value: v };
    }
    case "bool":
      if (node.kind === "scalar" && typeof node.value === "boolean") {
        return { kind: "const", value: node.value };
      }
      return bad("true or false");
    case "enum":
      if (s !== undefined && type.values.includes(s)) return { kind: "const", value: s };
      if (s !== undefined) {
        d.error(
          node.loc,
          path,
          `unknown value "${s}"${suggest(s, type.values)}; expected one of ${type.values.join(", ")}`,
        );
        return undefined;
      }
      return bad(`one of ${type.values.join(", ")}`);
    case "flags":
      return compileFlags(node, type.bits, path, d);
    case "constant": {
      const n = scalarBigInt(node);
      if (n !== undefined && n >= 0n && n <= 0xffff_ffffn)
        return { kind: "const", value: Number(n) };
      const names = Object.keys(type.values);
      if (s !== undefined && type.values[s] !== undefined)
        return { kind: "const", value: type.values[s] };
      if (s !== undefined) {
        d.error(
          node.loc,
          path,
          `unknown constant "${s}"${suggest(s, names)}; expected one of ${names.join(", ")} or an integer`,
        );
        return undefined;
      }
      return bad(`one of ${names.join(", ")} or an integer`);
    }
    case "errno":
      if (s !== undefined && isErrno(s)) return { kind: "const", value: s };
      return bad("an errno name (EBUSY, EINVAL, …)");
    case "text":
      if (s !== undefined) return { kind: "const", value: s };
      return bad("text");
    case "bytes": {
      const b = compileBytes(node, path, d);
      return b === undefined ? undefined : { kind: "const", value: b };
    }
    case "memory":
      return compileMemory(node, path, d);
    case "json":
      return compileJson(node, scope, path, d);
  }
}

const EXPR =
  /^([A-Za-z_][\w-]*)(?:\.([A-Za-z_]\w*))?(?:\s*([+-])\s*(0x[0-9a-f_]+|0b[01_]+|\d[\d_]*))?$/i;

/**
 * `name`, `name.field`, `name + 0x1000`: a number computed from a binding. Undefined when the
 * text is no expression (not even a name); null when it is one but does not check (reported).
 */
function compileExpr(
  text: string,
  as: "bigint" | "number",
  scope: Scope,
  node: InputNode,
  path: string,
  d: Diagnostics,
): Compiled | null | undefined {
  const m = EXPR.exec(text.trim());
  if (!m) return undefined;
  // A bare word that names nothing is just a bad number: the type's own message says so.
  if (m[2] === undefined && m[3] === undefined && scope.bindingKind(m[1]!) === undefined) {
    return undefined;
  }
  const problem = scope.checkExpr(m[1]!, m[2]);
  if (problem) {
    d.error(node.loc, path, problem);
    return null;
  }
  const n = m[4] === undefined ? 0n : BigInt(m[4].replaceAll("_", ""));
  return { kind: "expr", name: m[1]!, field: m[2], delta: m[3] === "-" ? -n : n, as };
}

/** `{0x4000_0000: "hello", 0x4000_1000: null}`: address → expected bytes, or null (not mapped). */
function compileMemory(node: InputNode, path: string, d: Diagnostics): Compiled | undefined {
  if (node.kind !== "map") {
    d.error(
      node.loc,
      path,
      `expected a map from addresses to bytes (or null), got ${describeNode(node)}`,
    );
    return undefined;
  }
  const entries: [string, Compiled][] = [];
  let good = true;
  for (const e of node.entries) {
    const p = childPath(path, e.key);
    let addr: bigint | undefined;
    try {
      addr = /^(0x[0-9a-f_]+|0b[01_]+|\d[\d_]*)$/i.test(e.key)
        ? BigInt(e.key.replaceAll("_", ""))
        : undefined;
    } catch {
      addr = undefined;
    }
    if (addr === undefined || addr >= 1n << 64n) {
      d.error(e.keyLoc, p, `expected a 64-bit address as the key, got "${e.key}"`);
      good = false;
      continue;
    }
    if (e.value.kind === "scalar" && e.value.value === null) {
      entries.push([`0x${addr.toString(16)}`, { kind: "const", value: null }]);
      continue;
    }
    const b = compileBytes(e.value, p, d);
    if (b === undefined) good = false;
    else entries.push([`0x${addr.toString(16)}`, { kind: "const", value: b }]);
  }
  return good ? { kind: "map", entries } : undefined;
}

/** The UTF-8 encoding of `text` (no TextEncoder: the library runs without DOM or Node types). */
function utf8(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else
      out.push(
        0xf0 | (c >> 18),
        0x80 | ((c >> 12) & 0x3f),
        0x80 | ((c >> 6) & 0x3f),
        0x80 | (c & 0x3f),
      );
  }
  return Uint8Array.from(out);
}

/** Byte strings longer than this are a mistake (a page of data is 4096). */
const MAX_BYTES = 1 << 24;

/** A byte string: a list of bytes, UTF-8 text, `{hex: "…"}` or `{fill: byte, len: n}`. */
function compileBytes(node: InputNode, path: string, d: Diagnostics): Bytes | undefined {
  const bad = (): undefined => {
    d.error(
      node.loc,
      path,
      `expected bytes: a list of byte values, text, {hex: "de ad be ef"} or {fill: 0xaa, len: 4096}, got ${describeNode(node)}`,
    );
    return undefined;
  };
  if (node.kind === "scalar") {
    return typeof node.value === "string" ? new Bytes(utf8(node.value)) : bad();
  }
  if (node.kind === "seq") {
    const out = new Uint8Array(node.items.length);
    let good = true;
    node.items.forEach((item, i) => {
      const v = scalarBigInt(item);
      if (v === undefined || v < 0n || v > 255n) {
        d.error(
          item.loc,
          childPath(path, i),
          `expected a byte (0..255), got ${describeNode(item)}`,
        );
        good = false;
      } else {
        out[i] = Number(v);
      }
    });
    return good ? new Bytes(out) : undefined;
  }
  const keys = node.entries.map((e) => e.key).join(",");
  if (keys === "hex") {
    const v = node.entries[0]!.value;
    const hex =
      v.kind === "scalar" && typeof v.value === "string" ? v.value.replace(/\s+/g, "") : "";
    if (!/^([0-9a-f]{2})*$/i.test(hex) || v.kind !== "scalar") {
      d.error(
        v.loc,
        childPath(path, "hex"),
        `expected pairs of hex digits, got ${describeNode(v)}`,
      );
      return undefined;
    }
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return new Bytes(out);
  }
  const fill = node.entries.find((e) => e.key === "fill");
  const len = node.entries.find((e) => e.key === "len");
  if (fill && len && node.entries.length === 2) {
    const f = scalarBigInt(fill.value);
    const n = scalarBigInt(len.value);
    let good = true;
    if (f === undefined || f < 0n || f > 255n) {
      d.error(
        fill.value.loc,
        childPath(path, "fill"),
        `expected a byte (0..255), got ${describeNode(fill.value)}`,
      );
      good = false;
    }
    if (n === undefined || n < 0n || n > BigInt(MAX_BYTES)) {
      d.error(
        len.value.loc,
        childPath(path, "len"),
        `expected a length in 0..${MAX_BYTES}, got ${describeNode(len.value)}`,
      );
      good = false;
    }
    return good ? new Bytes(new Uint8Array(Number(n)).fill(Number(f))) : undefined;
  }
  return bad();
}

function compileFlags(
  node: InputNode,
  bits: Readonly<Record<string, number>>,
  path: string,
  d: Diagnostics,
): Compiled | undefined {
  const names = Object.keys(bits);
  const n = scalarBigInt(node);
  if (n !== undefined && n >= 0n && n <= 0xffff_ffffn) return { kind: "const", value: Number(n) };
  const items = node.kind === "seq" ? node.items : [node];
  let value = 0;
  let good = true;
  items.forEach((item, i) => {
    const s = item.kind === "scalar" && typeof item.value === "string" ? item.value : undefined;
    const p = node.kind === "seq" ? childPath(path, i) : path;
    if (s === undefined) {
      d.error(item.loc, p, `expected a flag name (${names.join(", ")}), got ${describeNode(item)}`);
      good = false;
    } else if (bits[s] === undefined) {
      d.error(item.loc, p, `unknown flag "${s}"${suggest(s, names)}; flags: ${names.join(", ")}`);
      good = false;
    } else {
      value |= bits[s];
    }
  });
  return good ? { kind: "const", value: value >>> 0 } : undefined;
}

function compileJson(
  node: InputNode,
  scope: Scope,
  path: string,
  d: Diagnostics,
): Compiled | undefined {
  if (node.kind === "map") {
    const entries: [string, Compiled][] = [];
    let good = true;
    for (const e of node.entries) {
      const c = compileJson(e.value, scope, childPath(path, e.key), d);
      if (c) entries.push([e.key, c]);
      else good = false;
    }
    return good ? { kind: "map", entries } : undefined;
  }
  if (node.kind === "seq") {
    const items: Compiled[] = [];
    let good = true;
    node.items.forEach((x, i) => {
      const c = compileJson(x, scope, childPath(path, i), d);
      if (c) items.push(c);
      else good = false;
    });
    return good ? { kind: "list", items } : undefined;
  }
  if (typeof node.value === "string" && node.value.startsWith("$")) {
    return compileRef(node.value, node, scope, path, d);
  }
  return { kind: "const", value: node.value };
}

/** `$name` in an expected value: a reference to a binding or a named object of the scope. */
function compileRef(
  text: string,
  node: InputNode,
  scope: Scope,
  path: string,
  d: Diagnostics,
): Compiled | undefined {
  const ref = text.slice(1);
  const problem = NAME_PATTERN.test(ref)
    ? scope.checkRef(ref)
    : `"${text}" is not a valid reference`;
  if (problem) {
    d.error(node.loc, path, problem);
    return undefined;
  }
  return { kind: "ref", name: ref };
}

function typeName(type: ValueType): string {
  switch (type.kind) {
    case "object":
      return article(type.object);
    case "int":
      return type.what;
    case "u64":
      return "a 64-bit value";
    case "bool":
      return "true or false";
    case "enum":
      return `one of ${type.values.join(", ")}`;
    case "flags":
      return "flags";
    case "constant":
      return "a constant";
    case "errno":
      return "an errno name";
    case "text":
      return "text";
    case "bytes":
      return "bytes";
    case "memory":
      return "a map from addresses to bytes";
    case "json":
      return "a value";
  }
}

// ---- run time ----

export interface Binding {
  readonly kind: string;
  readonly value: unknown;
}

export interface RunEnv<M> {
  readonly m: M;
  readonly vocabulary: Vocabulary<M>;
  readonly bindings: Map<string, Binding>;
}

/** Thrown when a name that validated cannot be resolved any more (e.g. a removed device). */
export class ResolveError extends Error {
  override readonly name = "ResolveError";
}

/** The run-time value of a compiled argument. */
export function resolve<M>(c: Compiled, env: RunEnv<M>, subject?: unknown): unknown {
  switch (c.kind) {
    case "const":
      return c.value;
    case "object":
      return resolveObject(c.name, c.object, c.create, env);
    case "ref":
      return resolveRef(c.name, env);
    case "word":
      return (c.get as (m: M, s: unknown) => unknown)(env.m, subject);
    case "expr":
      return resolveExpr(c, env);
    case "map":
      return Object.fromEntries(c.entries.map(([k, v]) => [k, resolve(v, env, subject)]));
    case "list":
      return c.items.map((x) => resolve(x, env, subject));
  }
}

function resolveObject<M>(name: string, kind: string, create: boolean, env: RunEnv<M>): unknown {
  const spec = env.vocabulary.kinds[kind]!;
  const b = env.bindings.get(name);
  if (b) {
    if (b.kind === kind) return b.value;
    if (spec.via && b.kind === spec.via.kind) return spec.via.map(env.m, b.value);
  }
  if (create && spec.create) {
    const value = spec.create(env.m, name);
    env.bindings.set(name, { kind, value });
    return value;
  }
  const direct = spec.lookup?.(env.m, name);
  if (direct !== undefined) return direct;
  if (spec.via) {
    const other = env.vocabulary.kinds[spec.via.kind]?.lookup?.(env.m, name);
    if (other !== undefined) return spec.via.map(env.m, other);
  }
  throw new ResolveError(`${kind} "${name}" does not exist (any more)`);
}

function resolveExpr<M>(c: Extract<Compiled, { kind: "expr" }>, env: RunEnv<M>): unknown {
  const b = env.bindings.get(c.name);
  if (!b) throw new ResolveError(`"${c.name}" is not bound`);
  const base =
    c.field === undefined ? b.value : env.vocabulary.kinds[b.kind]?.fields?.[c.field]?.(b.value);
  if (typeof base !== "bigint" && typeof base !== "number") {
    throw new ResolveError(
      `${c.field === undefined ? c.name : `${c.name}.${c.field}`} is not a number`,
    );
  }
  const v = BigInt(base) + c.delta;
  if (c.as === "number") {
    if (v < BigInt(Number.MIN_SAFE_INTEGER) || v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ResolveError(`${c.name} ${c.delta} does not fit an integer`);
    }
    return Number(v);
  }
  if (v < 0n || v >= 1n << 64n)
    throw new ResolveError(
      `${c.name}${c.field ? `.${c.field}` : ""} + ${c.delta} leaves the 64-bit range`,
    );
  return v;
}

function resolveRef<M>(name: string, env: RunEnv<M>): unknown {
  const b = env.bindings.get(name);
  if (b) return b.value;
  for (const spec of Object.values(env.vocabulary.kinds)) {
    const v = spec.lookup?.(env.m, name);
    if (v !== undefined) return v;
  }
  throw new ResolveError(`"$${name}" does not exist (any more)`);
}

export interface Mismatch {
  /** Where inside the value the first difference is (`""` for the whole value). */
  readonly at: string;
  readonly expected: Json;
  readonly actual: Json;
}

/**
 * Compares an expected value with an actual one. Objects compare by identity with `$name`/names,
 * and partially (only the keys given) against their JSON view for maps; lists compare item by
 * item with equal length; numbers compare by value whatever their representation.
 */
export function match<M>(
  c: Compiled,
  actual: unknown,
  env: RunEnv<M>,
  subject?: unknown,
): Mismatch | undefined {
  return matchAt(c, actual, env, subject, "");
}

function matchAt<M>(
  c: Compiled,
  actual: unknown,
  env: RunEnv<M>,
  subject: unknown,
  at: string,
): Mismatch | undefined {
  const fail = (expected: Json): Mismatch => ({ at, expected, actual: jsonValue(actual) });
  switch (c.kind) {
    case "expr": {
      const want = resolve(c, env, subject);
      return sameValue(want, isLive(actual) ? jsonValue(actual) : actual)
        ? undefined
        : fail(jsonValue(want));
    }
    case "object":
    case "ref":
    case "word": {
      const want = resolve(c, env, subject);
      if (sameValue(want, actual)) return undefined;
      // Inside JSON views other objects appear by their id or name.
      if (!isLive(actual) && want !== null && isLive(want) && sameValue(refOf(want), actual)) {
        return undefined;
      }
      return fail(describeWant(c, want));
    }
    case "const":
      if (c.value === null) return actual === null || actual === undefined ? undefined : fail(null);
      return sameValue(c.value, isLive(actual) ? jsonValue(actual) : actual)
        ? undefined
        : fail(jsonValue(c.value));
    case "map": {
      const view = isLive(actual) ? jsonValue(actual) : actual;
      if (typeof view !== "object" || view === null || Array.isArray(view)) {
        return fail(jsonValue(resolveForDisplay(c, env, subject)));
      }
      for (const [k, v] of c.entries) {
        const inner = (view as Record<string, unknown>)[k];
        if (inner === undefined && !(v.kind === "const" && v.value === null)) {
          return {
            at: childPath(at, k),
            expected: jsonValue(resolveForDisplay(v, env, subject)),
            actual: "(missing)",
          };
        }
        const m = matchAt(v, inner, env, subject, childPath(at, k));
        if (m) return m;
      }
      return undefined;
    }
    case "list": {
      const view = isLive(actual) ? jsonValue(actual) : actual;
      if (!Array.isArray(view) || view.length !== c.items.length) {
        return fail(jsonValue(resolveForDisplay(c, env, subject)));
      }
      for (let i = 0; i < c.items.length; i++) {
        const m = matchAt(c.items[i]!, view[i], env, subject, childPath(at, i));
        if (m) return m;
      }
      return undefined;
    }
  }
}

function describeWant(c: Compiled, want: unknown): Json {
  const name = c.kind === "word" ? c.word : c.kind === "object" || c.kind === "ref" ? c.name : "";
  if (want === null || want === undefined) return `${name} (null)`;
  return { [name]: jsonValue(want) };
}

function resolveForDisplay<M>(c: Compiled, env: RunEnv<M>, subject: unknown): unknown {
  try {
    return resolve(c, env, subject);
  } catch {
    return null;
  }
}

/** A class instance (not plain data): compared by identity, viewed through toJSON. */
function isLive(x: unknown): x is object {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto !== Object.prototype && proto !== null;
}

/** How a JSON view refers to an object: its numeric id, else its name. */
function refOf(x: object): unknown {
  const o = x as { id?: unknown; name?: unknown };
  if (typeof o.id === "number") return o.id;
  if (typeof o.name === "string") return o.name;
  return undefined;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Bytes) return b instanceof Bytes ? a.equals(b) : a.toJSON() === b;
  const na = numeric(a);
  const nb = numeric(b);
  return na !== undefined && nb !== undefined && na === nb;
}

function numeric(x: unknown): bigint | undefined {
  if (typeof x === "bigint") return x;
  if (typeof x === "number" && Number.isSafeInteger(x)) return BigInt(x);
  if (typeof x === "string" && /^0x[0-9a-f]+$/i.test(x)) return BigInt(x);
  return undefined;
}
