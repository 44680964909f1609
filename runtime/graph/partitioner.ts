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

/** FNV-1a over the UTF-16 code units of a string: cheap, stable, well spread. */
function fnv1a(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  // Final avalanche (murmur3's fmix32) so that short keys spread over low bits too.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A stable 32-bit hash of a key's canonical encoding.
 *
 * @example
 * stableHash('word') // same number in every process, forever
 */
export function stableHash(key: unknown): number {
  return fnv1a(typeof key === 'string' ? `s${key}` : canonicalKey(key));
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

/**
 * A Map whose keys compare as the engine compares keys: primitives by value, arrays
 * and plain objects structurally. Primitive keys cost what a Map entry costs.
 *
 * @example
 * const m = new KeyMap<[string, number], number>();
 * m.set(['a', 1], 2); m.get(['a', 1]) // 2
 */
export class KeyMap<K, V> {
  #plain = new Map<K, V>();
  #structured = new Map<string, [K, V]>();

  get size(): number {
    return this.#plain.size + this.#structured.size;
  }

  get(key: K): V | undefined {
    if (isPrimitive(key)) return this.#plain.get(key);
    return this.#structured.get(canonicalKey(key))?.[1];
  }

  has(key: K): boolean {
    return isPrimitive(key) ? this.#plain.has(key) : this.#structured.has(canonicalKey(key));
  }

  set(key: K, value: V): this {
    if (isPrimitive(key)) this.#plain.set(key, value);
    else this.#structured.set(canonicalKey(key), [key, value]);
    return this;
  }

  delete(key: K): boolean {
    return isPrimitive(key) ? this.#plain.delete(key) : this.#structured.delete(canonicalKey(key));
  }

  clear(): void {
    this.#plain.clear();
    this.#structured.clear();
  }

  /** Entries in insertion order (primitive keys first, then structured keys). */
  *entries(): IterableIterator<[K, V]> {
    yield* this.#plain.entries();
    for (const entry of this.#structured.values()) yield [entry[0], entry[1]];
  }

  *keys(): IterableIterator<K> {
    yield* this.#plain.keys();
    for (const entry of this.#structured.values()) yield entry[0];
  }

  forEach(fn: (value: V, key: K) => void): void {
    this.#plain.forEach(fn);
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
    for (const [k, v] of this.#plain) {
      if (!expired(v)) break;
      out.push([k, v]);
    }
    for (const [c, entry] of this.#structured) {
      if (!expired(entry[1])) break;
      out.push(entry);
      this.#structured.delete(c);
    }
    for (const [k] of out) this.#plain.delete(k);
    return out;
  }

  /**
   * The keys and the values as two arrays, `values[i]` the value of `keys[i]`: a
   * copy of a large map in two fast passes (spreading a Map's iterators is about ten
   * times faster than building a pair per entry).
   */
  columns(): { keys: K[]; values: V[] } {
    const keys = [...this.#plain.keys()];
    const values = [...this.#plain.values()];
    for (const entry of this.#structured.values()) {
      keys.push(entry[0]);
      values.push(entry[1]);
    }
    return { keys, values };
  }

  /** The entries as an array of pairs. */
  toArray(): [K, V][] {
    // forEach and push: about twice as fast as spreading the entries generator.
    const out: [K, V][] = [];
    this.#plain.forEach((v, k) => {
      out.push([k, v]);
    });
    for (const entry of this.#structured.values()) out.push([entry[0], entry[1]]);
    return out;
  }
}
