// JSON views. Every simulator object exposes `toJSON()` returning plain JSON data; the CLI,
// scenarios, `inspect`, trace export and the visualizer all read these same views.
// Conventions: 64-bit addresses and sizes are lower-case hex strings ("0x1000"); references to
// other objects are by their id or name, never nested copies.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A bigint or number address as the views print it. */
export function jsonAddr(x: bigint | number): string {
  return `0x${x.toString(16)}`;
}

/** Converts any trace/field value to JSON (bigint → hex string). */
export function jsonValue(x: unknown): Json {
  if (x === null || x === undefined) return null;
  if (typeof x === "bigint") return jsonAddr(x);
  if (typeof x === "number" || typeof x === "string" || typeof x === "boolean") return x;
  if (Array.isArray(x)) return x.map(jsonValue);
  if (typeof x === "object") {
    const maybe = x as { toJSON?: () => Json };
    if (typeof maybe.toJSON === "function") return maybe.toJSON();
    const out: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(x)) if (v !== undefined) out[k] = jsonValue(v);
    return out;
  }
  return String(x);
}
