// Expected failures are values. A kernel-like call returns a Result carrying either its value or
// the errno name exactly where the kernel returns -errno or ERR_PTR(-errno).

import { type Errno, errnoValue } from "./errno.js";
import { SimError } from "./errors.js";

export interface Ok<T> {
  readonly ok: true;
  readonly value: T;
}

export interface Err {
  readonly ok: false;
  readonly errno: Errno;
}

export type Result<T = undefined> = Ok<T> | Err;

/** The one success value of calls that return nothing but 0. */
export const OK: Ok<undefined> = Object.freeze({ ok: true, value: undefined });

const ERRS = new Map<Errno, Err>();

export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

/** The failure for `errno`; one shared frozen object per name, so failing allocates nothing. */
export function err(errno: Errno): Err {
  let e = ERRS.get(errno);
  if (!e) {
    e = Object.freeze({ ok: false, errno });
    ERRS.set(errno, e);
  }
  return e;
}

/** Value of a result the caller knows cannot fail; a failure is a bug and throws. */
export function unwrap<T>(r: Result<T>, what = "call"): T {
  if (!r.ok) throw new SimError(`${what} failed unexpectedly with -${r.errno}`);
  return r.value;
}

/** The kernel's integer return for a Result: 0 or the negative errno. */
export function kernelReturn(r: Result<unknown>): number {
  return r.ok ? 0 : errnoValue(r.errno);
}

/** `"0"` or `"-EBUSY"`, the way the docs and traces print results. */
export function formatResult(r: Result<unknown>): string {
  return r.ok ? "0" : `-${r.errno}`;
}
