/**
 * `mapWithState(spec)`: the function runs once per record, never for idle keys, so
 * a batch costs what its records cost whatever the size of the state. A key idle
 * for `timeout` is called once more with no value and `state.isTimingOut()`, then
 * removed. Entries are re-inserted on every update, so idle keys sit at the front
 * of the map and timeouts are found without a scan of the state.
 */

import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import { partitionOf } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';
import { ChangeLog, foldDeltas, inChunks, lastFull } from './change-log.ts';
import { UndoableKeyMap } from './undoable-key-map.ts';

/**
 * Spark's `State<S>`: what the mapping function may read and change for its key.
 *
 * @example
 * (key, value, state) => { const n = (state.exists() ? state.get() : 0) + 1; state.update(n); return [key, n]; }
 */
export class State<S> {
  #exists = false;
  #value: S | undefined;
  #updated = false;
  #removed = false;
  #timingOut = false;

  /** @internal Prepares the wrapper for one call. */
  reset(exists: boolean, value: S | undefined, timingOut: boolean): void {
    this.#exists = exists;
    this.#value = value;
    this.#updated = false;
    this.#removed = false;
    this.#timingOut = timingOut;
  }

  /** True when the key has a state. */
  exists(): boolean {
    return this.#exists;
  }

  /** The state; throws when there is none. */
  get(): S {
    if (!this.#exists) throw new Error('State.get() called on a key without state');
    return this.#value as S;
  }

  /** The state, or `undefined` when there is none. */
  getOption(): S | undefined {
    return this.#exists ? this.#value : undefined;
  }

  /** Replaces the state (not allowed while timing out). */
  update(value: S): void {
    if (this.#timingOut) throw new Error('State.update() cannot be called on a state that is timing out');
    if (this.#removed) throw new Error('State.update() cannot be called after remove()');
    this.#value = value;
    this.#exists = true;
    this.#updated = true;
  }

  /** Removes the key's state (not allowed while timing out). */
  remove(): void {
    if (this.#timingOut) throw new Error('State.remove() cannot be called on a state that is timing out');
    if (this.#removed) throw new Error('State.remove() called twice');
    this.#removed = true;
    this.#exists = false;
    this.#updated = false;
  }

  /** True during the extra call made when the key timed out. */
  isTimingOut(): boolean {
    return this.#timingOut;
  }

  /** @internal */
  get wasUpdated(): boolean {
    return this.#updated;
  }

  /** @internal */
  get wasRemoved(): boolean {
    return this.#removed;
  }
}

/** The mapping function: returns the record to emit, `undefined` emits nothing. */
export type MapWithStateFn<K, V, S, M> = (key: K, value: V | undefined, state: State<S>, time: number) => M | undefined;

/** What defines a mapWithState operator. */
export interface MapWithStateSpec<K, V, S, M> {
  /** Called once per record, and once more for a key that times out (`value` undefined). */
  readonly update: MapWithStateFn<K, V, S, M>;
  /** Idle time after which a key times out (ms); none when omitted. */
  readonly timeout?: number;
  /** State to start from. */
  readonly initial?: readonly [K, S][];
}

interface Entry<S> {
  s: S;
  t: number;
}

/** One partition of mapWithState. */
export class MapWithStateState<K, V, S, M> implements PartitionState {
  readonly #state = new UndoableKeyMap<K, Entry<S>>();
  readonly #spec: MapWithStateSpec<K, V, S, M>;
  readonly #wrapper = new State<S>();
  #pendingSeed: readonly [K, S][] | undefined;
  readonly #log = new ChangeLog<K>(() => this.#state.size);

  constructor(spec: MapWithStateSpec<K, V, S, M>, seed: readonly [K, S][], entries: readonly [K, Entry<S>][] = []) {
    this.#spec = spec;
    this.#pendingSeed = seed.length > 0 ? seed : undefined;
    for (const [k, e] of entries) this.#state.map.set(k, e);
  }

  step(
    input: unknown[],
    time: number,
    _emit: boolean,
    wantExtra: boolean,
    setAside?: (record: unknown, error: unknown) => void,
  ): StepResult {
    if (this.#pendingSeed !== undefined) {
      // Initial state counts as updated at the first batch (as in Spark). The seed is
      // kept until the batch commits, so a rolled-back first batch seeds again.
      for (const [k, s] of this.#pendingSeed) this.#state.set(k, { s, t: time });
    }
    const { update, timeout } = this.#spec;
    const state = this.#state;
    const wrapper = this.#wrapper;
    const output: M[] = [];
    for (const item of input) {
      const [k, v] = item as [K, V];
      const e = state.get(k);
      wrapper.reset(e !== undefined, e?.s, false);
      let mapped: M | undefined;
      if (setAside === undefined) mapped = update(k, v, wrapper, time);
      else {
        try {
          mapped = update(k, v, wrapper, time);
        } catch (error) {
          // Set aside: whatever the function did to the state before it threw is not applied.
          setAside(item, error);
          continue;
        }
      }
      if (wrapper.wasRemoved) state.delete(k);
      // With a timeout, data re-stamps an existing key even when it is not updated
      // (as Spark does), so a key that keeps receiving data never times out.
      else if (timeout !== undefined) {
        // Timeouts scan the map from the front: an update moves the key to the end.
        if (wrapper.wasUpdated || wrapper.exists()) state.setLast(k, { s: wrapper.get(), t: time });
      } else if (wrapper.wasUpdated) state.set(k, { s: wrapper.get(), t: time });
      if (mapped !== undefined) output.push(mapped);
    }
    if (timeout !== undefined) {
      const threshold = time - timeout;
      for (const [k, e] of state.map.takeExpired((entry) => entry.t < threshold)) {
        // takeExpired removed it from the map; record the removal for rollback.
        state.map.set(k, e);
        state.delete(k);
        wrapper.reset(true, e.s, true);
        let mapped: M | undefined;
        try {
          mapped = update(k, undefined, wrapper, time);
        } catch (error) {
          // The key times out either way; only its last call is set aside.
          if (setAside === undefined) throw error;
          setAside([k, undefined], error);
          continue;
        }
        if (mapped !== undefined) output.push(mapped);
      }
    }
    const extra = wantExtra ? state.map.toArray().map(([k, e]) => [k, e.s]) : undefined;
    return extra === undefined ? { output } : { output, extra };
  }

  commit(): void {
    this.#state.commit((key, present) => (present ? this.#log.changed(key) : this.#log.removed(key)));
    this.#pendingSeed = undefined;
  }

  /** Entries carry their update time, so a restore keeps timeouts exact. */
  /** Continues the change log of a snapshot chain this partition was restored from. */
  continueChain(): this {
    this.#log.activate();
    return this;
  }

  /**
   * A full capture copies the map's two columns (its entries are replaced, never
   * changed in place, so the copy holds); each entry is written as its state, with
   * its update time in a column of its own, a chunk at a time while the snapshot is
   * written.
   */
  capture(full: boolean): SnapshotData {
    const map = this.#state.map;
    return this.#log.capture(
      full,
      (k) => map.get(k) as Entry<S>,
      () => map.columns(),
      { seed: this.#pendingSeed ?? [] },
      { written: (e) => e.s, timeOf: (e) => e.t },
    );
  }

  /** Loads restored entries (keys in update-time order), a chunk at a time. */
  async load(keys: readonly K[], states: readonly S[], times: readonly number[]): Promise<this> {
    const map = this.#state.map;
    await inChunks(keys.length, (from, to) => {
      for (let i = from; i < to; i++) map.set(keys[i] as K, { s: states[i] as S, t: times[i] as number });
    });
    return this.continueChain();
  }

  rollback(): void {
    this.#state.rollback();
    if (this.#spec.timeout !== undefined) this.#orderByUpdateTime();
  }

  /**
   * Rollback puts the keys it restores at the end of the map, while timeouts are
   * found by scanning from the front and need the map in update-time order: rebuild
   * it (rollbacks are rare; the sort is stable, so ties keep their order).
   */
  #orderByUpdateTime(): void {
    const map = this.#state.map;
    const entries = map.toArray().sort((a, b) => a[1].t - b[1].t);
    map.clear();
    for (const [k, e] of entries) map.set(k, e);
  }

  toSnapshot(): unknown {
    return { entries: this.#state.map.toArray(), seed: this.#pendingSeed ?? [] };
  }

  keyCount(): number {
    return this.#state.size;
  }

  lookup(key: unknown): unknown {
    return this.#state.committed(key as K)?.s;
  }
}

/** A snapshot's entries as three columns: keys, states, update times. */
interface Columns<K, S> {
  keys: K[];
  states: S[];
  times: number[];
}

/** The columns of one snapshot (written before the times column: values are `[state, time]`). */
function columnsOf<K, S>(data: SnapshotData): Columns<K, S> {
  if (data.times !== undefined) return { keys: data.keys as K[], states: data.values as S[], times: data.times as number[] };
  const pairs = data.values as (readonly [S, number])[];
  return { keys: data.keys as K[], states: pairs.map((v) => v[0]), times: pairs.map((v) => v[1]) };
}

/**
 * The entries of a snapshot chain in update-time order, which the timeout scan relies
 * on. A full capture walks the map in that order, and a key a later delta changed was
 * updated after the full capture, so: the full snapshot's keys that no delta changed
 * or removed, in order, then the changed keys sorted by update time (the sort is
 * stable and only over the changed keys; without a timeout, order does not matter).
 */
async function restoreOrder<K, S>(chain: readonly SnapshotData[], byTime: boolean): Promise<Columns<K, S>> {
  const base = lastFull(chain);
  const full = chain[base];
  if (full === undefined) return { keys: [], states: [], times: [] };
  const first = columnsOf<K, S>(full);
  if (base === chain.length - 1) return first;
  const deltas = chain.slice(base + 1).map((data) => {
    const c = columnsOf<K, S>(data);
    return { ...data, values: c.states.map((s, i): [S, number] => [s, c.times[i] as number]) };
  });
  const { changed, removed } = foldDeltas<K, [S, number]>(deltas);
  const out: Columns<K, S> = { keys: [], states: [], times: [] };
  await inChunks(first.keys.length, (from, to) => {
    for (let i = from; i < to; i++) {
      const k = first.keys[i] as K;
      if (changed.has(k) || removed.has(k)) continue;
      out.keys.push(k);
      out.states.push(first.states[i] as S);
      out.times.push(first.times[i] as number);
    }
  });
  const later = changed.toArray();
  if (byTime) later.sort((a, b) => a[1][1] - b[1][1]);
  for (const [k, [s, t]] of later) {
    out.keys.push(k);
    out.states.push(s);
    out.times.push(t);
  }
  return out;
}

/**
 * The spec of mapWithState.
 *
 * @example
 * mapWithStateSpec({ update: (k, v, s) => { s.update((s.getOption() ?? 0) + 1); return k; } })
 */
export function mapWithStateSpec<K, V, S, M>(spec: MapWithStateSpec<K, V, S, M>): StatefulSpec {
  const own = (entries: readonly [K, unknown][], p: number, n: number) => entries.filter(([k]) => partitionOf(k, n) === p);
  return {
    restoreChain: async (chain) => {
      const last = chain[chain.length - 1]?.meta as { seed: [K, S][] } | undefined;
      const state = new MapWithStateState(spec, last?.seed ?? []);
      const { keys, states, times } = await restoreOrder<K, S>(chain, spec.timeout !== undefined);
      return state.load(keys, states, times);
    },
    create: (p, n) => new MapWithStateState(spec, own(spec.initial ?? [], p, n) as [K, S][]),
    restore: (snapshot, p, n) => {
      const s = snapshot as { entries: [K, Entry<S>][]; seed: [K, S][] };
      return new MapWithStateState(spec, own(s.seed, p, n) as [K, S][], own(s.entries, p, n) as [K, Entry<S>][]);
    },
  };
}
