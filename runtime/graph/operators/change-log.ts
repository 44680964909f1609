/**
 * The keys a stateful partition changed or removed since its last checkpoint
 * capture: what an incremental snapshot writes, so a checkpoint costs what the
 * touched keys cost rather than the whole state.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { KeyMap } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';

/** Entries restored between two turns of the event loop: a few ms of map writes. */
export const RESTORE_CHUNK_ENTRIES = 5_000;

/**
 * Calls `apply(from, to)` over `[0, count)` a chunk at a time, yielding to the event
 * loop between chunks: restoring a large state must not block the loop.
 *
 * @example
 * await inChunks(keys.length, (from, to) => { for (let i = from; i < to; i++) map.set(keys[i], values[i]); });
 */
export async function inChunks(count: number, apply: (from: number, to: number) => void): Promise<void> {
  for (let from = 0; from < count; from += RESTORE_CHUNK_ENTRIES) {
    if (from > 0) await yieldToLoop();
    apply(from, Math.min(count, from + RESTORE_CHUNK_ENTRIES));
  }
}

/** How values are written (SnapshotData's `written` and `timeOf`). */
type SnapshotForm = Pick<SnapshotData, 'written' | 'timeOf'>;

/** Changed keys a log always keeps: below it, a delta is cheap whatever share of the state it is. */
export const SATURATION_MIN_KEYS = 10_000;

/**
 * Whether `changed` keys of a state of `size` are enough to write a full snapshot
 * rather than a delta: over half of it, and over SATURATION_MIN_KEYS.
 */
export function mostOfState(changed: number, size: number): boolean {
  return changed > SATURATION_MIN_KEYS && changed * 2 > size;
}

/**
 * Tracks changed and removed keys; `capture` turns them into snapshot data. Once
 * more than half of the state (and over SATURATION_MIN_KEYS keys) has changed since
 * the last capture, the log stops
 * (the next capture is full): such a delta costs what the full snapshot costs to
 * write, and keeping the log would cost a map write per update on top.
 *
 * @example
 * const log = new ChangeLog<string>(() => state.size);
 * log.changed('a'); log.removed('b');
 * log.capture(false, (k) => state.get(k), () => state.columns(), meta)
 */
export class ChangeLog<K> {
  #changed = new KeyMap<K, true>();
  #removed = new KeyMap<K, true>();
  readonly #stateSize: () => number;
  /**
   * Off until the first capture (which is always full) or a restore: an app without
   * checkpoints never pays for a log as large as its state.
   */
  #active = false;
  /** More than half of the state changed since the last capture: the next one is full. */
  #saturated = false;

  /** `stateSize` gives the number of keys held now. */
  constructor(stateSize: () => number) {
    this.#stateSize = stateSize;
  }

  /** Starts logging (a partition restored from snapshots continues its chain). */
  activate(): void {
    this.#active = true;
  }

  /** Whether the next capture will be full whatever is asked (callers with meta of their own follow it). */
  get fullNext(): boolean {
    return !this.#active || this.#saturated;
  }

  /** `key` now has a (new) value. */
  changed(key: K): void {
    if (!this.#active || this.#saturated) return;
    if (this.#removed.size > 0) this.#removed.delete(key);
    this.#changed.set(key, true);
    if (mostOfState(this.#changed.size, this.#stateSize())) this.#saturate();
  }

  /** `key` no longer has a value. */
  removed(key: K): void {
    if (!this.#active || this.#saturated) return;
    this.#changed.delete(key);
    this.#removed.set(key, true);
  }

  #saturate(): void {
    this.#saturated = true;
    this.#changed = new KeyMap();
    this.#removed = new KeyMap();
  }

  /**
   * The snapshot of the committed state: all of `columns` when `full`, else the
   * changed keys' current values and the removed keys. Starts a new log. `form`,
   * when given, says what a value is written as and its time (see
   * {@link SnapshotData.written} and {@link SnapshotData.timeOf}).
   */
  capture<V>(
    full: boolean,
    valueFor: (key: K) => V,
    columns: () => { keys: readonly K[]; values: readonly V[] },
    meta: unknown,
    form: { written?: (value: V) => unknown; timeOf?: (value: V) => number } = {},
  ): SnapshotData {
    const changed = this.#changed;
    const removed = this.#removed;
    this.#changed = new KeyMap();
    this.#removed = new KeyMap();
    // Without a log since the last capture, only a full snapshot is correct.
    const wasActive = this.#active;
    const saturated = this.#saturated;
    this.#active = true;
    this.#saturated = false;
    if (full || !wasActive || saturated) return { kind: 'full', ...columns(), removed: [], meta, ...(form as SnapshotForm) };
    const keys = [...changed.keys()];
    const values = keys.map(valueFor);
    return { kind: 'delta', keys, values, removed: [...removed.keys()], meta, ...(form as SnapshotForm) };
  }
}

/**
 * Folds a snapshot chain (a full snapshot, then deltas) into entries in order, and
 * returns each snapshot's meta; a chunk of entries at a time (see {@link inChunks}).
 *
 * @example
 * const { entries, meta } = await foldChain(chain);
 */
export async function foldChain<K, V>(chain: readonly SnapshotData[]): Promise<{ entries: KeyMap<K, V>; meta: unknown[] }> {
  const entries = new KeyMap<K, V>();
  const meta: unknown[] = [];
  for (const data of chain) {
    const { keys, values } = data;
    if (data.kind === 'full') {
      entries.clear();
      // A full snapshot lists each key once, into an empty map.
      await inChunks(keys.length, (from, to) => {
        for (let i = from; i < to; i++) entries.set(keys[i] as K, values[i] as V);
      });
    } else {
      for (const k of data.removed) entries.delete(k as K);
      // Changed keys move to the end, as an update puts them.
      await inChunks(keys.length, (from, to) => {
        for (let i = from; i < to; i++) {
          entries.delete(keys[i] as K);
          entries.set(keys[i] as K, values[i] as V);
        }
      });
    }
    meta.push(data.meta);
  }
  return { entries, meta };
}

/**
 * What the deltas of a chain did, folded: the newest value of every key they
 * changed (in the order keys were first changed) and the keys they removed.
 */
export function foldDeltas<K, V>(deltas: readonly SnapshotData[]): { changed: KeyMap<K, V>; removed: KeyMap<K, true> } {
  const changed = new KeyMap<K, V>();
  const removed = new KeyMap<K, true>();
  for (const data of deltas) {
    for (const k of data.removed) {
      changed.delete(k as K);
      removed.set(k as K, true);
    }
    data.keys.forEach((k, i) => {
      removed.delete(k as K);
      changed.set(k as K, data.values[i] as V);
    });
  }
  return { changed, removed };
}

/** The index of the chain's last full snapshot (where folding starts), or -1. */
export function lastFull(chain: readonly SnapshotData[]): number {
  for (let i = chain.length - 1; i >= 0; i--) if (chain[i]?.kind === 'full') return i;
  return -1;
}

/**
 * Folds a snapshot chain into columns: the full snapshot's keys in order, each with
 * the value the deltas after it left (a removed key dropped), then the keys the
 * deltas added. A lone full snapshot's columns are returned as they are; the walk
 * goes a chunk at a time (see {@link inChunks}).
 *
 * @example
 * const { keys, values } = await foldColumns(chain);
 */
export async function foldColumns<K, V>(chain: readonly SnapshotData[]): Promise<{ keys: K[]; values: V[] }> {
  const base = lastFull(chain);
  const full = chain[base];
  if (full === undefined) return { keys: [], values: [] };
  if (base === chain.length - 1) return { keys: full.keys as K[], values: full.values as V[] };
  const { changed, removed } = foldDeltas<K, V>(chain.slice(base + 1));
  const keys: K[] = [];
  const values: V[] = [];
  await inChunks(full.keys.length, (from, to) => {
    for (let i = from; i < to; i++) {
      const k = full.keys[i] as K;
      if (removed.size > 0 && removed.has(k)) continue;
      const v = changed.size > 0 ? changed.get(k) : undefined;
      keys.push(k);
      if (v === undefined) values.push(full.values[i] as V);
      else {
        values.push(v);
        changed.delete(k);
      }
    }
  });
  changed.forEach((v, k) => {
    keys.push(k);
    values.push(v);
  });
  return { keys, values };
}
