// Two kinds of thrown errors, and only these two: expected failures are values (see result.ts).

/**
 * Misuse of the simulator itself: a foreign object, a broken argument type, a call the model
 * cannot express. Always a bug in the caller, never a kernel or hardware outcome.
 */
export class SimError extends Error {
  override readonly name = "SimError";
}

/** Where a piece of user input came from: a file position, or a CLI argument. */
export interface InputLocation {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
}

/**
 * Bad user input (scenario file, machine description, CLI argument). The CLI prints its message
 * with the location and no stack trace.
 */
export class InputError extends Error {
  override readonly name = "InputError";
  readonly location: InputLocation;

  constructor(message: string, location: InputLocation = {}) {
    super(message);
    this.location = location;
  }

  /** `file:line:column: message`, omitting what is unknown. */
  format(): string {
    const { file, line, column } = this.location;
    let where = file ?? "";
    if (line !== undefined) where += `${where ? ":" : ""}${line}`;
    if (line !== undefined && column !== undefined) where += `:${column}`;
    return where ? `${where}: ${this.message}` : this.message;
  }
}

/** Throws a SimError when `cond` is false. For preconditions a caller can violate by mistake. */
export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new SimError(message);
}
