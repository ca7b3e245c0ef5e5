// A fixed-capacity map from pairs of small integers (below 2^31, so V8 keeps them unboxed) to
// values, with least-recently-used replacement. Deterministic: the victim is always the entry
// used longest ago. A hit moves the entry to the front without allocating.

interface Node<V> {
  a: number;
  b: number;
  value: V;
  prev: Node<V> | null;
  next: Node<V> | null;
}

export class LruMap<V> {
  readonly capacity: number;
  readonly #index = new Map<number, Map<number, Node<V>>>();
  #size = 0;
  #head: Node<V> | null = null;
  #tail: Node<V> | null = null;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.#size;
  }

  /** The value of (a, b), marked most recently used; undefined on a miss. */
  get(a: number, b = 0): V | undefined {
    const head = this.#head;
    // The most recent entry answers repeated lookups without touching the maps.
    if (head !== null && head.a === a && head.b === b) return head.value;
    const n = this.#index.get(a)?.get(b);
    if (n === undefined) return undefined;
    if (n !== this.#head) {
      this.#unlink(n);
      this.#pushFront(n);
    }
    return n.value;
  }

  /** The value without touching the replacement order. */
  peek(a: number, b = 0): V | undefined {
    return this.#index.get(a)?.get(b)?.value;
  }

  /** Inserts or replaces (a, b); returns the evicted value, if the cache was full. */
  set(a: number, b: number, value: V): V | undefined {
    const old = this.#index.get(a)?.get(b);
    if (old !== undefined) {
      old.value = value;
      this.get(a, b);
      return undefined;
    }
    let evicted: V | undefined;
    if (this.#size >= this.capacity && this.#tail !== null) {
      evicted = this.#tail.value;
      this.#delete(this.#tail);
    }
    const n: Node<V> = { a, b, value, prev: null, next: null };
    let inner = this.#index.get(a);
    if (inner === undefined) {
      inner = new Map();
      this.#index.set(a, inner);
    }
    inner.set(b, n);
    this.#size++;
    this.#pushFront(n);
    return evicted;
  }

  delete(a: number, b = 0): boolean {
    const n = this.#index.get(a)?.get(b);
    if (n === undefined) return false;
    this.#delete(n);
    return true;
  }

  /** Deletes every entry with first key `a`; returns how many. */
  deleteAll(a: number): number {
    const inner = this.#index.get(a);
    if (inner === undefined) return 0;
    const nodes = [...inner.values()];
    for (const n of nodes) this.#delete(n);
    return nodes.length;
  }

  clear(): void {
    this.#index.clear();
    this.#size = 0;
    this.#head = null;
    this.#tail = null;
  }

  /** Values from most to least recently used. */
  values(): V[] {
    const out: V[] = [];
    for (let n = this.#head; n !== null; n = n.next) out.push(n.value);
    return out;
  }

  #delete(n: Node<V>): void {
    const inner = this.#index.get(n.a)!;
    inner.delete(n.b);
    if (inner.size === 0) this.#index.delete(n.a);
    this.#unlink(n);
    this.#size--;
  }

  #unlink(n: Node<V>): void {
    if (n.prev) n.prev.next = n.next;
    else this.#head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.#tail = n.prev;
    n.prev = null;
    n.next = null;
  }

  #pushFront(n: Node<V>): void {
    n.next = this.#head;
    if (this.#head) this.#head.prev = n;
    this.#head = n;
    if (this.#tail === null) this.#tail = n;
  }
}
