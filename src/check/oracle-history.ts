// What the OS has granted while the isolation oracle watched: for each address space (a domain,
// or an SVA mm), the translations accesses were checked against and found right, with the
// permissions the mapping gave. A later access that reaches a physical page the OS no longer
// maps there is stale when the OS once granted exactly that (a cache kept it), and a wrong
// target when it never did (the hardware went somewhere the OS never pointed it).
//
// Translations are kept per leaf mapping (a 2 MiB superpage is one record), since that is what
// an IOTLB or ATC entry caches: a stale superpage entry serves pages never accessed before.

/** Leaf size (log2 of 4 KiB pages) → first page → first physical page → grant bits. */
type SpaceHistory = Map<number, Map<number, Map<number, number>>>;

export class TranslationHistory {
  readonly #spaces = new WeakMap<object, SpaceHistory>();
  #records = 0;

  /** Translations recorded (leaf, target and grant combinations). */
  get size(): number {
    return this.#records;
  }

  /**
   * `space` maps `page`, inside a leaf of 2^`leafLog2` pages, to `ppn`, granting `grant`
   * (GRANT_* bits of oracle-view.ts).
   */
  record(space: object, page: number, ppn: number, leafLog2: number, grant: number): void {
    let sizes = this.#spaces.get(space);
    if (sizes === undefined) {
      sizes = new Map();
      this.#spaces.set(space, sizes);
    }
    let leaves = sizes.get(leafLog2);
    if (leaves === undefined) {
      leaves = new Map();
      sizes.set(leafLog2, leaves);
    }
    const into = page % 2 ** leafLog2;
    const first = page - into;
    let targets = leaves.get(first);
    if (targets === undefined) {
      targets = new Map();
      leaves.set(first, targets);
    }
    const base = ppn - into;
    const old = targets.get(base);
    if (old === undefined) this.#records++;
    targets.set(base, (old ?? 0) | grant);
  }

  /** The grant bits `space` ever gave for `page` → `ppn` while recorded (0: never). */
  granted(space: object, page: number, ppn: number): number {
    const sizes = this.#spaces.get(space);
    if (sizes === undefined) return 0;
    let grant = 0;
    for (const [log2, leaves] of sizes) {
      const into = page % 2 ** log2;
      const g = leaves.get(page - into)?.get(ppn - into);
      if (g !== undefined) grant |= g;
    }
    return grant;
  }
}
