// The shape of the scenario vocabulary: which kernel functions a scenario may call, with which
// kernel parameter names and types, what they return, and which machine state `expect:` can
// read. The tables (one file per area) are data of these types; the validator checks steps
// against them before anything runs, and the runner calls through them.

import type { Json } from "../../base/json.js";
import type { Result } from "../../base/result.js";

/** The type of a parameter, a return value or an expected value. */
export type ValueType =
  /** A simulator object, named in the scenario (device name, `as:` binding, …). */
  | { readonly kind: "object"; readonly object: string }
  | {
      readonly kind: "int";
      readonly min: number;
      readonly max: number;
      readonly what: string;
      /** Only these values (within min..max) are allowed. */
      readonly only?: readonly number[];
    }
  /** A 64-bit address or size (bigint at run time). */
  | { readonly kind: "u64" }
  | { readonly kind: "bool" }
  | { readonly kind: "enum"; readonly values: readonly string[] }
  /** A list of flag names (or one name, or an integer) OR-ed into a number. */
  | { readonly kind: "flags"; readonly bits: Readonly<Record<string, number>> }
  /** One named constant (e.g. `IOMMU_DOMAIN_SVA`) or its integer value. */
  | { readonly kind: "constant"; readonly values: Readonly<Record<string, number>> }
  | { readonly kind: "errno" }
  | { readonly kind: "text" }
  /**
   * A byte string: a list of byte values, text (its UTF-8 bytes), `{hex: "de ad"}` or
   * `{fill: byte, len: n}`. At run time a `Bytes`.
   */
  | { readonly kind: "bytes" }
  /**
   * Expected memory contents: a map from address to expected bytes (or null: not mapped). The
   * property reads exactly the addresses and lengths the expectation names.
   */
  | { readonly kind: "memory" }
  /** Anything; expectations compare it against the actual value's JSON view. */
  | { readonly kind: "json" };

export interface ParamSpec {
  readonly type: ValueType;
  readonly optional?: boolean;
  /** `null` is a meaningful argument (the kernel's NULL pointer). */
  readonly nullable?: boolean;
  readonly doc?: string;
}

export interface ReturnSpec {
  /** "void" for calls the kernel declares void. */
  readonly type: ValueType | "void";
  /** The call returns a Result (value or errno), i.e. the kernel returns -errno / ERR_PTR. */
  readonly fallible: boolean;
  /**
   * What the call fails with when it is not an errno: a CPU access raises a signal, a device
   * access aborts with the IOMMU's fault cause. The codes `error:` may name.
   */
  readonly failures?: FailureCodes;
}

/** The failure codes of a call that fails with something other than an errno. */
export interface FailureCodes {
  /** How the docs name them ("a signal", "a DMA abort"). */
  readonly what: string;
  readonly codes: readonly string[];
}

/**
 * A failure that is not an errno: its code (what `error:` names), broader codes that also match
 * it (`SIGSEGV` for `SEGV_ACCERR`), and what the step reports about it.
 */
export interface Failure {
  readonly ok: false;
  readonly errno: string;
  readonly also: readonly string[];
  readonly detail: Json;
}

export function failure(code: string, detail: Json, also: readonly string[] = []): Failure {
  return { ok: false, errno: code, also, detail };
}

/** A byte string argument or result; its view is lower-case hex. */
export class Bytes {
  constructor(readonly data: Uint8Array) {}

  equals(other: Bytes): boolean {
    const a = this.data;
    const b = other.data;
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  toJSON(): Json {
    let s = "";
    for (const x of this.data) s += x.toString(16).padStart(2, "0");
    return s;
  }
}

/** Arguments as the runner resolved them, keyed by kernel parameter name. */
export type Args = Readonly<Record<string, unknown>>;

export interface FunctionSpec<M> {
  /** The kernel's name (`iommu_attach_device_pasid`), or a machine action's name. */
  readonly name: string;
  /** The table it belongs to (`attach`, `ownership`, `pasid`, …, `machine`). */
  readonly area: string;
  /** Kernel parameters in the kernel's order. */
  readonly params: Readonly<Record<string, ParamSpec>>;
  readonly returns: ReturnSpec;
  /** The TypeScript form, for the docs (`core.attachDevicePasid(domain, dev, pasid, handle)`). */
  readonly ts: string;
  readonly doc: string;
  /**
   * The IOMMU drivers the call can run on (default: any). Device DMA needs hardware, which only
   * the riscv driver has; mock-driver test ops need the mock.
   */
  readonly drivers?: readonly string[];
  /** Runs the call: a Result when `returns.fallible`, else the plain value (undefined for void). */
  call(m: M, args: Args): unknown;
}

/** One property `expect:` can check on a subject. */
export interface PropSpec<M> {
  readonly type: ValueType;
  readonly doc: string;
  /** Special words the expected value may use, resolved against the subject (e.g. `default`). */
  readonly words?: Readonly<Record<string, (m: M, subject: unknown) => unknown>>;
  get(m: M, subject: unknown): unknown;
  /**
   * Reads what the expected value asks about (memory at the addresses it names); when present
   * the runner calls it with the resolved expected value instead of `get`.
   */
  readonly getFor?: (m: M, subject: unknown, expected: unknown) => unknown;
}

/**
 * An `expect:` form. The first key of the map names the subject: `expect: {dev: nic0, domain: d1}`
 * checks property `domain` of device nic0. Subjects without `arg` compare their own value:
 * `expect: {warnings: 0}`.
 */
export interface SubjectSpec<M> {
  readonly name: string;
  readonly doc: string;
  readonly arg?: ParamSpec;
  readonly props?: Readonly<Record<string, PropSpec<M>>>;
  readonly self?: PropSpec<M>;
}

/** How names of one object kind resolve. */
export interface ObjectKindSpec<M> {
  readonly doc: string;
  /** How messages name the kind (default: the kind's key). */
  readonly label?: string;
  /** Objects the machine names itself (devices): looked up at run time. */
  readonly lookup?: (m: M, name: string) => unknown;
  /** Objects of another kind that stand for one of this kind: `group: nic0` is nic0's group. */
  readonly via?: { readonly kind: string; map(m: M, other: unknown): unknown };
  /** A name not yet bound creates a fresh object (caller-allocated: attach handles, owner cookies). */
  readonly create?: (m: M, name: string) => unknown;
  /**
   * Numbers an object of this kind offers to value expressions: `buf.dma_handle + 0x10` where a
   * u64 or an integer is expected.
   */
  readonly fields?: Readonly<Record<string, (obj: unknown) => bigint | number>>;
}

/** The binding kind of `as:` on a call returning a number (u64 or an integer). */
export const VALUE_KIND = "value";

export interface Vocabulary<M> {
  readonly functions: readonly FunctionSpec<M>[];
  readonly subjects: readonly SubjectSpec<M>[];
  readonly kinds: Readonly<Record<string, ObjectKindSpec<M>>>;
}

/** The JSON view of a value: `toJSON()` of objects, hex strings for bigints. */
export type ViewOf = (value: unknown) => Json;

// ---- helpers for writing the tables ----

export function object(kind: string): ValueType {
  return { kind: "object", object: kind };
}

export function int(min: number, max: number, what = `an integer in ${min}..${max}`): ValueType {
  return { kind: "int", min, max, what };
}

/** One of a few integers (e.g. access sizes 1, 2, 4, 8). */
export function intOf(values: readonly number[], what: string): ValueType {
  return { kind: "int", min: Math.min(...values), max: Math.max(...values), what, only: values };
}

export const U32: ValueType = int(0, 0xffff_ffff, "a 32-bit unsigned integer");
export const U64: ValueType = { kind: "u64" };
export const BOOL: ValueType = { kind: "bool" };
export const TEXT: ValueType = { kind: "text" };
export const BYTES: ValueType = { kind: "bytes" };
export const JSON_VALUE: ValueType = { kind: "json" };

/** A count `expect:` reads (references, users, faults): a non-negative int. */
export const COUNT: ValueType = int(0, 0x7fff_ffff);

/** The `view` property of a subject: its JSON view. */
export const VIEW: PropSpec<unknown> = {
  type: JSON_VALUE,
  doc: "its JSON view",
  get: (_m, s) => (s as { toJSON(): Json }).toJSON(),
};

export function enumOf(values: readonly string[]): ValueType {
  return { kind: "enum", values };
}

export function flags(bits: Readonly<Record<string, number>>): ValueType {
  return { kind: "flags", bits };
}

export function constant(values: Readonly<Record<string, number>>): ValueType {
  return { kind: "constant", values };
}

export function param(type: ValueType, more: Omit<ParamSpec, "type"> = {}): ParamSpec {
  return { type, ...more };
}

export const VOID: ReturnSpec = { type: "void", fallible: false };

export function returnsResult(type: ValueType | "void"): ReturnSpec {
  return { type, fallible: true };
}

export function returnsValue(type: ValueType): ReturnSpec {
  return { type, fallible: false };
}

/** A call that returns `type` or fails with one of `failures` (not an errno). */
export function returnsOrFails(type: ValueType | "void", failures: FailureCodes): ReturnSpec {
  return { type, fallible: true, failures };
}

/** Narrows a call's returned Result for the runner (tables return the core's Results as is). */
export function isResult(x: unknown): x is Result<unknown> | Failure {
  return typeof x === "object" && x !== null && "ok" in x && typeof x.ok === "boolean";
}
