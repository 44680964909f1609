/**
 * Digests that a chaos check compares between a run with kills and a reference run:
 * of the records an output received in one batch, and of a stateful operator's
 * state. Both are multiset digests (a sum of per-record hashes), so they do not
 * depend on record order, which legitimately differs after a restore (a state map
 * rebuilt from a snapshot iterates in another order) or with shuffle arrival order.
 */
import { encodeValue } from '../base/cbor.ts';
import { canonicalKey } from '../graph/partitioner.ts';

/** The canonical text of one record; values with no structural encoding fall back to their CBOR bytes. */
function canonicalText(value: unknown): string {
  try {
    return canonicalKey(value);
  } catch {
    return `c${Buffer.from(encodeValue(value)).toString('base64')}`;
  }
}

/** Two independent 32-bit hashes of a string (FNV-1a and a murmur-style mix), for a 64-bit digest. */
function hashPair(text: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35);
  b ^= b >>> 16;
  return [a >>> 0, b >>> 0];
}

/** A running multiset digest: the count and two lanes of hash sums modulo 2^32. */
class MultisetDigest {
  count = 0;
  #a = 0;
  #b = 0;

  add(text: string): void {
    const [a, b] = hashPair(text);
    this.count++;
    this.#a = (this.#a + a) >>> 0;
    this.#b = (this.#b + b) >>> 0;
  }

  toString(): string {
    return `${this.count}:${this.#a.toString(16).padStart(8, '0')}${this.#b.toString(16).padStart(8, '0')}`;
  }
}

/**
 * The digest of a batch's records, `<count>:<16 hex digits>`: equal for the same
 * records in any order; a record repeated changes the count.
 *
 * @example
 * recordsDigest([['a', 1], ['b', 2]]) === recordsDigest([['b', 2], ['a', 1]]) // true
 */
export function recordsDigest(records: readonly unknown[]): string {
  const d = new MultisetDigest();
  for (const r of records) d.add(canonicalText(r));
  return d.toString();
}

/**
 * The digest of a stateful operator's state, from the snapshots of its partitions
 * (`toSnapshot()` shapes: `{ entries: [[k, v], ...] }`, `{ held: [{ time, records }], current }`,
 * ...). Each top-level array (and each `records` array of its elements) is taken as
 * a multiset, so the digest is the same whatever order a restore left the keys in.
 *
 * @example
 * stateDigest([{ entries: [['a', 1]] }, { entries: [['b', 2]] }])
 */
export function stateDigest(partitions: readonly unknown[]): string {
  const parts = new Map<string, MultisetDigest>();
  const into = (field: string) => {
    let d = parts.get(field);
    if (d === undefined) {
      d = new MultisetDigest();
      parts.set(field, d);
    }
    return d;
  };
  for (const snapshot of partitions) {
    if (snapshot === null || typeof snapshot !== 'object' || Array.isArray(snapshot)) {
      into('').add(canonicalText(snapshot));
      continue;
    }
    for (const [field, value] of Object.entries(snapshot as Record<string, unknown>)) {
      if (!Array.isArray(value)) {
        into(field).add(canonicalText(value));
        continue;
      }
      for (const element of value) into(field).add(elementText(element));
    }
  }
  return [...parts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([field, d]) => `${field || '-'}=${d}`)
    .join(' ');
}

/** An element of a state array: a held batch `{ time, records }` has its records taken as a multiset. */
function elementText(element: unknown): string {
  if (element !== null && typeof element === 'object' && !Array.isArray(element)) {
    const o = element as Record<string, unknown>;
    if (Array.isArray(o.records)) return `held ${canonicalText(o.time)} ${recordsDigest(o.records)}`;
  }
  return canonicalText(element);
}
