// A fixed-capacity map from numbers to values with least-recently-used replacement. Deterministic:
// the victim is always the entry used longest ago. A hit moves the entry to the front without
// allocating.

interface Node<V> {
  key: number;
  value: V;
  prev: Node<V> | null;
  next: Node<V> | null;
}

export class LruMap<V> {
  readonly capacity: number;
  readonly #index = new Map<number, Node<V>>();
  #head: Node<V> | null = null;
  #tail: Node<V> | null = null;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.#index.size;
  }

  /** The value of `key`, marked most recently used; undefined on a miss. */
  get(key: number): V | undefined {
    const n = this.#index.get(key);
    if (n === undefined) return undefined;
    if (n !== this.#head) {
      this.#unlink(n);
      this.#pushFront(n);
    }
    return n.value;
  }

  /** The value without touching the replacement order. */
  peek(key: number): V | undefined {
    return this.#index.get(key)?.value;
  }

  /** Inserts or replaces `key`; returns the evicted value, if the cache was full. */
  set(key: number, value: V): V | undefined {
    const old = this.#index.get(key);
    if (old !== undefined) {
      old.value = value;
      this.get(key);
      return undefined;
    }
    let evicted: V | undefined;
    if (this.#index.size >= this.capacity && this.#tail !== null) {
      const victim = this.#tail;
      this.#unlink(victim);
      this.#index.delete(victim.key);
      evicted = victim.value;
    }
    const n: Node<V> = { key, value, prev: null, next: null };
    this.#index.set(key, n);
    this.#pushFront(n);
    return evicted;
  }

  delete(key: number): boolean {
    const n = this.#index.get(key);
    if (n === undefined) return false;
    this.#unlink(n);
    this.#index.delete(key);
    return true;
  }

  /** Deletes every entry for which `pred` holds; returns how many. */
  deleteWhere(pred: (key: number, value: V) => boolean): number {
    let count = 0;
    for (let n = this.#head; n !== null; ) {
      const next = n.next;
      if (pred(n.key, n.value)) {
        this.#unlink(n);
        this.#index.delete(n.key);
        count++;
      }
      n = next;
    }
    return count;
  }

  clear(): void {
    this.#index.clear();
    this.#head = null;
    this.#tail = null;
  }

  /** Entries from most to least recently used. */
  entries(): Array<[number, V]> {
    const out: Array<[number, V]> = [];
    for (let n = this.#head; n !== null; n = n.next) out.push([n.key, n.value]);
    return out;
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
