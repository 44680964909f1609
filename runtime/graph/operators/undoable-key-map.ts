/**
 * A KeyMap that remembers the first old value of every key a batch touches, so a
 * failed batch can be undone at the cost of the keys it touched, not of the state.
 */
import { KeyMap } from '../partitioner.ts';

interface Before<V> {
  had: boolean;
  value: V | undefined;
  /** Whether the key has a value now (kept by set and delete: commit asks no map). */
  has: boolean;
}

/**
 * Keyed state with commit and rollback.
 *
 * @example
 * const m = new UndoableKeyMap<string, number>();
 * m.set('a', 1); m.rollback(); m.has('a') // false
 */
export class UndoableKeyMap<K, V> {
  readonly map = new KeyMap<K, V>();
  #before = new KeyMap<K, Before<V>>();

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** The value as of the last commit (what a reader outside the batch may see). */
  committed(key: K): V | undefined {
    const before = this.#before.get(key);
    if (before !== undefined) return before.had ? before.value : undefined;
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  get size(): number {
    return this.map.size;
  }

  set(key: K, value: V): void {
    this.#remember(key).has = true;
    this.map.set(key, value);
  }

  /** Sets `key` and moves it to the end of the insertion order. */
  setLast(key: K, value: V): void {
    this.#remember(key).has = true;
    this.map.delete(key);
    this.map.set(key, value);
  }

  delete(key: K): void {
    this.#remember(key).has = false;
    this.map.delete(key);
  }

  /** Forgets the old values: the batch's changes are final. `touched` hears of each key changed. */
  commit(touched?: (key: K, present: boolean) => void): void {
    if (touched)
      this.#before.forEach((before, key) => {
        touched(key, before.has);
      });
    this.#before.clear();
  }

  /** Restores every touched key to its value before the batch. */
  rollback(): void {
    this.#before.forEach((before, key) => {
      if (before.had) this.map.set(key, before.value as V);
      else this.map.delete(key);
    });
    this.#before.clear();
  }

  #remember(key: K): Before<V> {
    const known = this.#before.get(key);
    if (known !== undefined) return known;
    const value = this.map.get(key);
    const had = value !== undefined || this.map.has(key);
    const before: Before<V> = { had, value, has: had };
    this.#before.set(key, before);
    return before;
  }
}
