/**
 * The row of each track id (row i of embeddings.f32 is track_ids.json[i]) as an open-addressing hash table over
 * typed arrays: FNV-1a of the id's UTF-16 code units, linear probing, a table of at least twice the ids. A Map of
 * 1M strings took 0.5-0.7 s to build at start-up (and ~50 MB); this one takes a fraction of that and 4 bytes a
 * slot, and finds a repeated id while it is built. It reads like the Map it replaces (`ReadonlyMap`, entries
 * in row order); ids crafted to collide make it a Map (MAX_MEAN_PROBES), never a hang.
 */

/** FNV-1a (32-bit) of the UTF-16 code units of `s`. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * Probes allowed per id while building, on average, before the table gives way to a Map: ids crafted to collide
 * (FNV-1a is not seeded) would make the probing quadratic and hang the start-up; V8's Map hashes strings with a
 * per-process seed, so such a file costs what a Map costs, never more. Honest ids average under 1.
 */
const MAX_MEAN_PROBES = 8;

export class RowIndex implements ReadonlyMap<string, number> {
  /** row + 1 per slot, 0 for an empty slot */
  private readonly slots: Int32Array;
  private readonly mask: number;
  /** the lookup when the table gave way (crafted collisions), else null */
  private map: Map<string, number> | null = null;

  private constructor(private readonly ids: readonly string[]) {
    let cap = 16;
    while (cap < ids.length * 2) cap *= 2;
    this.slots = new Int32Array(cap);
    this.mask = cap - 1;
  }

  /**
   * The index of `ids` (every one a string), or the first row whose id repeats an earlier one.
   */
  static build(ids: readonly string[]): { index: RowIndex } | { repeatRow: number } {
    const index = new RowIndex(ids);
    const { slots, mask } = index;
    // the hashes first, then the inserts: two tight loops (a string is compared only when its hash is equal)
    const hashes = new Int32Array(ids.length);
    for (let row = 0; row < ids.length; row++) hashes[row] = fnv1a(ids[row]!);
    let budget = MAX_MEAN_PROBES * ids.length + 1024;
    for (let row = 0; row < ids.length; row++) {
      const h = hashes[row]!;
      let at = h & mask;
      for (;;) {
        const r = slots[at]!;
        if (r === 0) {
          slots[at] = row + 1;
          break;
        }
        if (hashes[r - 1] === h && ids[r - 1] === ids[row]) return { repeatRow: row };
        if (--budget < 0) return RowIndex.withMap(index, ids);
        at = (at + 1) & mask;
      }
    }
    return { index };
  }

  /** `index` answering from a Map (built anew, refusing repeats as `build` does). */
  private static withMap(index: RowIndex, ids: readonly string[]): { index: RowIndex } | { repeatRow: number } {
    const map = new Map<string, number>();
    for (let row = 0; row < ids.length; row++) {
      if (map.has(ids[row]!)) return { repeatRow: row };
      map.set(ids[row]!, row);
    }
    index.map = map;
    return { index };
  }

  get size(): number {
    return this.ids.length;
  }

  get(id: string): number | undefined {
    if (typeof id !== 'string') return undefined;
    if (this.map !== null) return this.map.get(id);
    const { slots, mask, ids } = this;
    let at = fnv1a(id) & mask;
    for (;;) {
      const r = slots[at]!;
      if (r === 0) return undefined;
      if (ids[r - 1] === id) return r - 1;
      at = (at + 1) & mask;
    }
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  forEach(fn: (row: number, id: string, map: ReadonlyMap<string, number>) => void, thisArg?: unknown): void {
    this.ids.forEach((id, row) => fn.call(thisArg, row, id, this));
  }

  *entries(): MapIterator<[string, number]> {
    for (let row = 0; row < this.ids.length; row++) yield [this.ids[row]!, row];
  }

  *keys(): MapIterator<string> {
    yield* this.ids;
  }

  *values(): MapIterator<number> {
    for (let row = 0; row < this.ids.length; row++) yield row;
  }

  [Symbol.iterator](): MapIterator<[string, number]> {
    return this.entries();
  }
}
