// A sparse array keyed by non-negative integers, like the kernel's xarray, with the reservation
// semantics the IOMMU core relies on: a reserved slot reads as empty but cannot be inserted into.

const RESERVED: unique symbol = Symbol("xa-reserved");

export class XArray<T> {
  readonly #slots = new Map<number, T | typeof RESERVED>();

  /** The entry at `index`; reserved and empty slots read as undefined. */
  load(index: number): T | undefined {
    const v = this.#slots.get(index);
    return v === RESERVED ? undefined : v;
  }

  isReserved(index: number): boolean {
    return this.#slots.get(index) === RESERVED;
  }

  /** Present or reserved (what `xa_insert` refuses). */
  isOccupied(index: number): boolean {
    return this.#slots.has(index);
  }

  /** Stores `value` only if the slot is free (not present, not reserved); false otherwise. */
  insert(index: number, value: T): boolean {
    if (this.#slots.has(index)) return false;
    this.#slots.set(index, value);
    return true;
  }

  /** Reserves a free slot; false if it is occupied or already reserved. */
  reserve(index: number): boolean {
    if (this.#slots.has(index)) return false;
    this.#slots.set(index, RESERVED);
    return true;
  }

  /** Drops a reservation; a present entry is left alone. */
  release(index: number): void {
    if (this.#slots.get(index) === RESERVED) this.#slots.delete(index);
  }

  /** Stores `value`, overwriting whatever was there (entry or reservation); returns the old entry. */
  store(index: number, value: T): T | undefined {
    const old = this.load(index);
    this.#slots.set(index, value);
    return old;
  }

  /** Empties the slot (entry or reservation); returns the old entry. */
  erase(index: number): T | undefined {
    const old = this.load(index);
    this.#slots.delete(index);
    return old;
  }

  /** True when no slot is present or reserved (the kernel's `xa_empty`). */
  isEmpty(): boolean {
    return this.#slots.size === 0;
  }

  /** Present entries (not reservations) in ascending index order. */
  entries(): Array<[number, T]> {
    const out: Array<[number, T]> = [];
    for (const [i, v] of this.#slots) if (v !== RESERVED) out.push([i, v]);
    return out.sort((a, b) => a[0] - b[0]);
  }

  /** Indices of reserved slots, ascending. */
  reservations(): number[] {
    const out: number[] = [];
    for (const [i, v] of this.#slots) if (v === RESERVED) out.push(i);
    return out.sort((a, b) => a - b);
  }
}
