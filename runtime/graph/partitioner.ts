/**
 * Stable key hashing and keyed maps.
 *
 * A key's partition is a hash of its canonical encoding, identical across
 * processes, restarts and machines: snapshots and multi-node ownership rely on it.
 * Primitives compare by value; arrays and plain objects compare structurally.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * The canonical text of a key: equal keys (structurally) give equal text, and the
 * text of different keys never collide: each value carries a type tag, and strings
 * inside arrays and objects are JSON-quoted so that no string can imitate a
 * separator (`['a,sb']` and `['a', 'b']` are different keys). A top-level string
 * is its tag and its text, which keeps the hash of the commonest key cheap.
 *
 * @example
 * canonicalKey(['a', 1]) === canonicalKey(['a', 1]) // true
 */
export function canonicalKey(key: unknown): string {
  return typeof key === 'string' ? `s${key}` : encodeKey(key);
}

/** The canonical text of a key nested in an array or object (strings quoted). */
function encodeKey(key: unknown): string {
  switch (typeof key) {
    case 'string':
      return `s${JSON.stringify(key)}`;
    case 'number':
      return Object.is(key, -0) ? 'n0' : `n${key}`;
    case 'bigint':
      return `b${key}`;
    case 'boolean':
      return key ? 'T' : 'F';
    case 'undefined':
      return 'u';
    case 'object': {
      if (key === null) return 'z';
      if (Array.isArray(key)) return `[${key.map(encodeKey).join(',')}]`;
      if (key instanceof Date) return `d${key.getTime()}`;
      const proto = Object.getPrototypeOf(key);
      if (proto !== Object.prototype && proto !== null) {
        // A Map, Set or class instance has no structural encoding: Object.keys would
        // see none of a Map's entries, and every Map would be the same key.
        throw new TypeError(`keys must be primitives, arrays, dates or plain objects, got ${proto?.constructor?.name ?? 'an object'}`);
      }
      const entries = Object.keys(key as object)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${encodeKey((key as Record<string, unknown>)[k])}`);
      return `{${entries.join(',')}}`;
    }
    default:
      throw new TypeError(`keys must be primitives, arrays, dates or plain objects, got ${typeof key}`);
  }
}

/** FNV-1a's state after the UTF-16 code units of `text`, from state `start`. */
function fnvState(text: string, start: number = FNV_OFFSET): number {
  let h = start;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h;
}

/** FNV-1a over the UTF-16 code units of a string: cheap, stable, well spread. */
function fnv1a(text: string, start: number = FNV_OFFSET): number {
  let h = fnvState(text, start);
  // Final avalanche (murmur3's fmix32) so that short keys spread over low bits too.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a's state after the `s` a string key's canonical text starts with: hashing the key alone then needs no concatenated copy. */
const S_PREFIXED = Math.imul(FNV_OFFSET ^ 0x73, FNV_PRIME);

/**
 * A stable 32-bit hash of a key's canonical encoding.
 *
 * @example
 * stableHash('word') // same number in every process, forever
 */
export function stableHash(key: unknown): number {
  return typeof key === 'string' ? fnv1a(key, S_PREFIXED) : fnv1a(canonicalKey(key));
}

/**
 * The partition (0 <= p < partitions) that owns `key`.
 *
 * @example
 * partitionOf('word', 4)
 */
export function partitionOf(key: unknown, partitions: number): number {
  return stableHash(key) % partitions;
}

/**
 * True for keys a JS Map already compares by value. Symbols are left out: they have
 * no canonical encoding, so a KeyMap refuses them as partitionOf does.
 */
function isPrimitive(key: unknown): boolean {
  const type = typeof key;
  return key === null || (type !== 'object' && type !== 'function' && type !== 'symbol');
}

/** Primitive entries past which a KeyMap spreads them over SHARDS maps. */
const SHARD_AT = 1 << 16;
const SHARDS = 64;

/**
 * The shard of a primitive key (within this process only: nothing stores it). A
 * string's FNV-1a; a number's integer part mixed (a JS Map equates -0 and 0, NaN
 * and NaN, and so does this); other primitives through their canonical text.
 */
function shardOf(key: unknown): number {
  if (typeof key === 'string') {
    const h = fnvState(key);
    return (h ^ (h >>> 16)) & (SHARDS - 1);
  }
  if (typeof key === 'number') return Math.imul((key | 0) ^ ((key / 4294967296) | 0), 0x9e3779b1) >>> 26;
  return fnv1a(canonicalKey(key)) & (SHARDS - 1);
}

/**
 * A Map whose keys compare as the engine compares keys: primitives by value, arrays
 * and plain objects structurally. Primitive keys cost what a Map entry costs.
 *
 * Past SHARD_AT primitive entries they are spread over SHARDS maps by a hash of the
 * key: a JS Map grows by rehashing all of itself at once, which at 2^19 entries
 * blocks the event loop ~90 ms for a single set; 64 maps each grow by 1/64 of that.
 * Iteration then goes shard by shard, each in insertion order.
 *
 * @example
 * const m = new KeyMap<[string, number], number>();
 * m.set(['a', 1], 2); m.get(['a', 1]) // 2
 */
export class KeyMap<K, V> {
  #plain = new Map<K, V>();
  /** The primitive entries once spread (then #plain is empty and unused). */
  #shards: Map<K, V>[] | undefined;
  #structured = new Map<string, [K, V]>();

  /** Primitive entries in the shards (kept as they change: summing 64 sizes per call would cost). */
  #sharded = 0;

  get size(): number {
    return (this.#shards === undefined ? this.#plain.size : this.#sharded) + this.#structured.size;
  }

  /** The map that holds primitive `key`. */
  #mapOf(key: K): Map<K, V> {
    return this.#shards === undefined ? this.#plain : (this.#shards[shardOf(key)] as Map<K, V>);
  }

  /** Every map of primitive entries, in iteration order. */
  #plainMaps(): readonly Map<K, V>[] {
    return this.#shards ?? [this.#plain];
  }

  get(key: K): V | undefined {
    if (isPrimitive(key)) return this.#mapOf(key).get(key);
    return this.#structured.get(canonicalKey(key))?.[1];
  }

  has(key: K): boolean {
    return isPrimitive(key) ? this.#mapOf(key).has(key) : this.#structured.has(canonicalKey(key));
  }

  set(key: K, value: V): this {
    if (isPrimitive(key)) {
      if (this.#shards !== undefined) {
        const m = this.#shards[shardOf(key)] as Map<K, V>;
        const before = m.size;
        this.#sharded += m.set(key, value).size - before;
      } else if (this.#plain.set(key, value).size > SHARD_AT) this.#spread();
    } else this.#structured.set(canonicalKey(key), [key, value]);
    return this;
  }

  /** Spreads the primitive entries over the shards, each keeping their order. */
  #spread(): void {
    const shards = Array.from({ length: SHARDS }, () => new Map<K, V>());
    this.#plain.forEach((v, k) => {
      (shards[shardOf(k)] as Map<K, V>).set(k, v);
    });
    this.#shards = shards;
    this.#sharded = this.#plain.size;
    this.#plain = new Map();
  }

  delete(key: K): boolean {
    if (!isPrimitive(key)) return this.#structured.delete(canonicalKey(key));
    const deleted = this.#mapOf(key).delete(key);
    if (deleted && this.#shards !== undefined) this.#sharded--;
    return deleted;
  }

  clear(): void {
    this.#plain.clear();
    this.#shards = undefined;
    this.#sharded = 0;
    this.#structured.clear();
  }

  /** Entries in insertion order (primitive keys first, then structured keys). */
  *entries(): IterableIterator<[K, V]> {
    for (const m of this.#plainMaps()) yield* m.entries();
    for (const entry of this.#structured.values()) yield [entry[0], entry[1]];
  }

  *keys(): IterableIterator<K> {
    for (const m of this.#plainMaps()) yield* m.keys();
    for (const entry of this.#structured.values()) yield entry[0];
  }

  forEach(fn: (value: V, key: K) => void): void {
    for (const m of this.#plainMaps()) m.forEach(fn);
    for (const entry of this.#structured.values()) fn(entry[1], entry[0]);
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /**
   * Removes and returns, from the front of each insertion-ordered part, the entries
   * for which `expired` holds, stopping at the first that does not. With entries
   * re-inserted on every update, this finds idle keys without scanning the rest.
   */
  takeExpired(expired: (value: V) => boolean): [K, V][] {
    const out: [K, V][] = [];
    for (const m of this.#plainMaps()) {
      const found: [K, V][] = [];
      for (const [k, v] of m) {
        if (!expired(v)) break;
        found.push([k, v]);
      }
      for (const [k] of found) m.delete(k);
      if (this.#shards !== undefined) this.#sharded -= found.length;
      for (const e of found) out.push(e);
    }
    for (const [c, entry] of this.#structured) {
      if (!expired(entry[1])) break;
      out.push(entry);
      this.#structured.delete(c);
    }
    return out;
  }

  /**
   * The keys and the values as two arrays, `values[i]` the value of `keys[i]`: a
   * copy of a large map in two fast passes (spreading a Map's iterators is about ten
   * times faster than building a pair per entry).
   */
  columns(): { keys: K[]; values: V[] } {
    if (this.#shards === undefined && this.#structured.size === 0)
      return { keys: [...this.#plain.keys()], values: [...this.#plain.values()] };
    const size = this.size;
    const keys = new Array<K>(size);
    const values = new Array<V>(size);
    let i = 0;
    for (const m of this.#plainMaps()) {
      m.forEach((v, k) => {
        keys[i] = k;
        values[i] = v;
        i++;
      });
    }
    for (const entry of this.#structured.values()) {
      keys[i] = entry[0];
      values[i] = entry[1];
      i++;
    }
    return { keys, values };
  }

  /** The entries as an array of pairs. */
  toArray(): [K, V][] {
    // forEach and push: about twice as fast as spreading the entries generator.
    const out: [K, V][] = [];
    for (const m of this.#plainMaps()) {
      m.forEach((v, k) => {
        out.push([k, v]);
      });
    }
    for (const entry of this.#structured.values()) out.push([entry[0], entry[1]]);
    return out;
  }
}
