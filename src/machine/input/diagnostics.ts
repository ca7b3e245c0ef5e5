// Collecting input errors. Validators report every problem they find instead of stopping at the
// first, and the whole batch is thrown once as one InputErrors, in source order.

import { InputError, type InputLocation } from "../../base/errors.js";

/** Several input errors reported together; `format()` prints one per line. */
export class InputErrors extends InputError {
  readonly errors: readonly InputError[];

  constructor(errors: readonly InputError[]) {
    super(
      errors.length === 1 ? errors[0]!.message : `${errors.length} errors`,
      errors[0]?.location,
    );
    this.errors = errors;
  }

  override format(): string {
    return this.errors.map((e) => e.format()).join("\n");
  }
}

export class Diagnostics {
  readonly #errors: InputError[] = [];
  readonly #seen = new Set<string>();

  /** Records `path: message` at `loc`; the same message at the same place is kept once. */
  error(loc: InputLocation, path: string, message: string): void {
    const text = path ? `${path}: ${message}` : message;
    const key = `${loc.file ?? ""}:${loc.line ?? ""}:${loc.column ?? ""}:${text}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#errors.push(new InputError(text, loc));
  }

  get count(): number {
    return this.#errors.length;
  }

  get errors(): readonly InputError[] {
    return this.#errors;
  }

  /** Takes over the errors of another batch (e.g. a thrown InputErrors). */
  absorb(e: InputError): void {
    const list = e instanceof InputErrors ? e.errors : [e];
    for (const x of list) {
      const key = `${x.location.file ?? ""}:${x.location.line ?? ""}:${x.location.column ?? ""}:${x.message}`;
      if (this.#seen.has(key)) continue;
      this.#seen.add(key);
      this.#errors.push(x);
    }
  }

  /** Throws everything recorded so far, sorted by position, as one InputErrors. */
  throwIfAny(): void {
    if (this.#errors.length === 0) return;
    throw new InputErrors(sortByLocation(this.#errors));
  }
}

function sortByLocation(errors: readonly InputError[]): InputError[] {
  // Stable: errors without a position keep their discovery order after positioned ones.
  return errors
    .map((e, i) => ({ e, i }))
    .sort((a, b) => {
      const la = a.e.location;
      const lb = b.e.location;
      const fa = la.file ?? "";
      const fb = lb.file ?? "";
      if (fa !== fb) return fa < fb ? -1 : 1;
      const pa = la.line === undefined ? Number.MAX_SAFE_INTEGER : la.line;
      const pb = lb.line === undefined ? Number.MAX_SAFE_INTEGER : lb.line;
      if (pa !== pb) return pa - pb;
      const ca = la.column ?? 0;
      const cb = lb.column ?? 0;
      if (ca !== cb) return ca - cb;
      return a.i - b.i;
    })
    .map((x) => x.e);
}
