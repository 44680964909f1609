/**
 * The keys a stateful partition changed or removed since its last checkpoint
 * capture: what an incremental snapshot writes, so a checkpoint costs what the
 * touched keys cost rather than the whole state.
 */

import { KeyMap } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';

/**
 * Tracks changed and removed keys; `capture` turns them into snapshot data.
 *
 * @example
 * const log = new ChangeLog<string>();
 * log.changed('a'); log.removed('b');
 * log.capture(false, (k) => state.get(k), state.entries(), meta)
 */
export class ChangeLog<K> {
  #changed = new KeyMap<K, true>();
  #removed = new KeyMap<K, true>();
  /**
   * Off until the first capture (which is always full) or a restore: an app without
   * checkpoints never pays for a log as large as its state.
   */
  #active = false;

  /** Starts logging (a partition restored from snapshots continues its chain). */
  activate(): void {
    this.#active = true;
  }

  /** `key` now has a (new) value. */
  changed(key: K): void {
    if (!this.#active) return;
    this.#removed.delete(key);
    this.#changed.set(key, true);
  }

  /** `key` no longer has a value. */
  removed(key: K): void {
    if (!this.#active) return;
    this.#changed.delete(key);
    this.#removed.set(key, true);
  }

  /**
   * The snapshot of the committed state: all of `entries` when `full`, else the
   * changed keys' current values and the removed keys. Starts a new log.
   */
  capture<V>(full: boolean, valueFor: (key: K) => V, entries: () => [K, V][], meta: unknown): SnapshotData {
    const changed = this.#changed;
    const removed = this.#removed;
    this.#changed = new KeyMap();
    this.#removed = new KeyMap();
    // Without a log since the last capture, only a full snapshot is correct.
    const wasActive = this.#active;
    this.#active = true;
    if (full || !wasActive) return { kind: 'full', entries: entries(), removed: [], meta };
    const delta: [K, V][] = [];
    for (const k of changed.keys()) delta.push([k, valueFor(k)]);
    return { kind: 'delta', entries: delta, removed: [...removed.keys()], meta };
  }
}

/**
 * Folds a snapshot chain (a full snapshot, then deltas) into entries in order, and
 * returns the last snapshot's meta.
 *
 * @example
 * const { entries, meta } = foldChain(chain);
 */
export function foldChain<K, V>(chain: readonly SnapshotData[]): { entries: KeyMap<K, V>; meta: unknown[] } {
  const entries = new KeyMap<K, V>();
  const meta: unknown[] = [];
  for (const data of chain) {
    if (data.kind === 'full') entries.clear();
    for (const k of data.removed) entries.delete(k as K);
    for (const [k, v] of data.entries) {
      entries.delete(k as K);
      entries.set(k as K, v as V);
    }
    meta.push(data.meta);
  }
  return { entries, meta };
}
