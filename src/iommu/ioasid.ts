// The historical I/O ASID allocator (drivers/iommu/ioasid.c, ~v5.5–v6.3; core §5.3): one global
// ID space tagged with sets, private data per ID, reference counts (`ioasid_get/put`, v5.11+),
// lookup with set checking, and custom allocators (e.g. para-virtualised PASIDs) that take over
// the space while the default allocator has no outstanding ID.

import { SimError } from "../base/errors.js";
import { IDA_MAX, Ida } from "../base/ida.js";
import type { Json } from "../base/json.js";
import { err, OK, ok, type Result } from "../base/result.js";
import type { Warnings } from "../base/warnings.js";
import { INVALID_IOASID } from "./constants.js";

/** `struct ioasid_set` (`DECLARE_IOASID_SET`): only a tag, compared by identity. */
export class IoasidSet {
  constructor(readonly name: string) {}
}

/** `struct ioasid_allocator_ops`: a custom allocator's helpers and their private data. */
export interface IoasidAllocatorOps {
  /** An ID in [min, max], or INVALID_IOASID. */
  alloc(min: number, max: number, pdata: unknown): number;
  free(id: number, pdata: unknown): void;
  readonly pdata: unknown;
}

interface IoasidData {
  readonly id: number;
  readonly set: IoasidSet | null;
  private: unknown;
  refs: number;
}

/** `struct ioasid_allocator_data`: an allocator and the ID space it tracks. */
interface AllocatorData {
  /** The ops the allocator was registered with (its helpers allocate). */
  readonly ops: IoasidAllocatorOps;
  readonly custom: boolean;
  readonly xa: Map<number, IoasidData>;
  /** Registered ops sharing these helpers (and so this ID space). */
  readonly slist: IoasidAllocatorOps[];
}

/** ioasid.c `use_same_ops`: identical helper functions. */
function useSameOps(a: IoasidAllocatorOps, b: IoasidAllocatorOps): boolean {
  return a.alloc === b.alloc && a.free === b.free;
}

export class IoasidAllocator {
  readonly #defaultIda = new Ida();
  readonly #default: AllocatorData;
  #active: AllocatorData;
  /** `allocators_list`: registered custom allocators, registration order. */
  readonly #allocators: AllocatorData[] = [];

  constructor(private readonly warnings: Warnings) {
    const ida = this.#defaultIda;
    const defaultOps: IoasidAllocatorOps = {
      alloc: (min, max) => {
        const id = ida.alloc(min, Math.min(max, IDA_MAX));
        return id < 0 ? INVALID_IOASID : id;
      },
      free: (id) => {
        ida.free(id);
      },
      pdata: null,
    };
    this.#default = { ops: defaultOps, custom: false, xa: new Map(), slist: [defaultOps] };
    this.#active = this.#default;
  }

  /** Whether a custom allocator is active. */
  get customActive(): boolean {
    return this.#active.custom;
  }

  /** `ioasid_alloc(set, min, max, private)`: the lowest free ID in [min, max], or INVALID_IOASID. */
  alloc(set: IoasidSet | null, min: number, max: number, priv: unknown): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max > IDA_MAX) {
      throw new SimError(`ioasid_alloc: bad range [${min}, ${max}]`);
    }
    if (min > max) return INVALID_IOASID;
    const a = this.#active;
    const data: IoasidData = { id: -1, set, private: priv, refs: 1 };
    const id = a.ops.alloc(min, max, a.custom ? a.ops.pdata : data);
    if (id === INVALID_IOASID) return INVALID_IOASID;
    if (a.custom && a.xa.has(id)) {
      // The framework tracks custom allocators' results: a duplicate is refused.
      a.ops.free(id, a.ops.pdata);
      return INVALID_IOASID;
    }
    a.xa.set(id, { ...data, id });
    return id;
  }

  /** `ioasid_get(id)`: take a reference (WARN on an unknown ID). */
  get(id: number): void {
    const d = this.#active.xa.get(id);
    if (this.warnings.on(d === undefined, "ioasid_get", `unknown IOASID ${id}`)) return;
    d!.refs++;
  }

  /** `ioasid_put(id)`: drop a reference; the last one frees the ID. Returns whether it did. */
  put(id: number): boolean {
    const a = this.#active;
    const d = a.xa.get(id);
    // pr_err("Trying to free unknown IOASID")
    if (d === undefined) return false;
    if (--d.refs > 0) return false;
    a.ops.free(id, a.ops.pdata);
    a.xa.delete(id);
    return true;
  }

  /** `ioasid_free(id)` (before v5.11 and after refcounts left): free whatever the count. */
  free(id: number): void {
    const a = this.#active;
    if (!a.xa.has(id)) return;
    a.ops.free(id, a.ops.pdata);
    a.xa.delete(id);
  }

  /**
   * `ioasid_find(set, id, getter)`: the private data; ENOENT if not allocated, EACCES if `set` is
   * given and the ID belongs to another set; null if `getter` declines the object.
   */
  find(set: IoasidSet | null, id: number, getter?: (priv: unknown) => boolean): Result<unknown> {
    const d = this.#active.xa.get(id);
    if (d === undefined) return err("ENOENT");
    if (set !== null && d.set !== set) return err("EACCES");
    if (getter && !getter(d.private)) return ok(null);
    return ok(d.private);
  }

  /** `ioasid_set_data(id, data)`: ENOENT if the ID is not allocated. */
  setData(id: number, data: unknown): Result {
    const d = this.#active.xa.get(id);
    if (d === undefined) return err("ENOENT");
    d.private = data;
    return OK;
  }

  /** The IDs of the active allocator, ascending, with their set and reference count. */
  ids(): Array<{ id: number; set: IoasidSet | null; refs: number }> {
    return [...this.#active.xa.values()]
      .sort((a, b) => a.id - b.id)
      .map((d) => ({ id: d.id, set: d.set, refs: d.refs }));
  }

  /**
   * `ioasid_register_allocator(ops)`: the first custom allocator becomes active, but only while
   * the default allocator has no outstanding ID (EAGAIN); the same ops twice is EEXIST; ops
   * with the same helpers join that allocator's ID space.
   */
  registerAllocator(ops: IoasidAllocatorOps): Result {
    if (this.#allocators.length === 0) {
      this.warnings.on(
        this.#active !== this.#default,
        "ioasid_register_allocator",
        "active allocator is not the default",
      );
      if (this.#active.xa.size > 0) return err("EAGAIN");
      const a: AllocatorData = { ops, custom: true, xa: new Map(), slist: [ops] };
      this.#allocators.push(a);
      this.#active = a;
      return OK;
    }
    for (const a of this.#allocators) {
      if (a.ops === ops || a.slist.includes(ops)) return err("EEXIST");
      if (useSameOps(a.ops, ops)) {
        a.slist.push(ops);
        return OK;
      }
    }
    this.#allocators.push({ ops, custom: true, xa: new Map(), slist: [ops] });
    return OK;
  }

  /**
   * `ioasid_unregister_allocator(ops)`: removing the last ops of an allocator drops it (WARN if
   * it still has IDs); the next registered becomes active, or the default when none is left.
   */
  unregisterAllocator(ops: IoasidAllocatorOps): void {
    if (this.#allocators.length === 0) return;
    const i = this.#allocators.findIndex((a) => useSameOps(a.ops, ops));
    if (i < 0) return;
    const a = this.#allocators[i]!;
    if (a.slist.length === 1) {
      this.#allocators.splice(i, 1);
      // Every ID must be freed before the last user of these helpers goes.
      this.warnings.on(
        a.xa.size > 0,
        "ioasid_unregister_allocator",
        `${a.xa.size} IOASIDs outstanding`,
      );
      if (this.#allocators.length === 0) this.#active = this.#default;
      else if (a === this.#active) this.#active = this.#allocators[0]!;
      return;
    }
    // Shared helpers: keep the outstanding IDs.
    const j = a.slist.indexOf(ops);
    if (j >= 0) a.slist.splice(j, 1);
  }

  toJSON(): Json {
    return {
      active: this.#active.custom ? "custom" : "default",
      custom_allocators: this.#allocators.length,
      ids: this.ids().map((d) => ({ id: d.id, set: d.set?.name ?? null, refs: d.refs })),
    };
  }
}
