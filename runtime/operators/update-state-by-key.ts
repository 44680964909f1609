/**
 * `updateStateByKey(update)`: every batch calls `update(values, state, {key, time})`
 * for every key in the state or in the batch (values `[]` when none); `undefined`
 * removes the key. The output is the whole state, every batch.
 */
import type { SnapshotData } from '../../snapshots/snapshot-data.ts';
import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import { KeyMap, partitionOf } from '../partitioner.ts';
import { ChangeLog, foldChain } from './change-log.ts';

/** What `update` learns besides the values and the state. */
export interface UpdateInfo<K> {
  readonly key: K;
  readonly time: number;
}

/** The user's state update function. */
export type UpdateFn<K, V, S> = (values: V[], state: S | undefined, info: UpdateInfo<K>) => S | undefined;

const NO_VALUES: never[] = [];

/**
 * One partition of updateStateByKey. Each batch touches every key, so the batch
 * builds the next state in a new map and swaps it in on commit (rollback drops it).
 */
export class UpdateStateByKeyState<K, V, S> implements PartitionState {
  #state: KeyMap<K, S>;
  #next: KeyMap<K, S> | undefined;
  readonly #update: UpdateFn<K, V, S>;
  readonly #log = new ChangeLog<K>();
  /** Keys the pending batch changed (true) or removed (false), applied to the log on commit. */
  #touched: [K, boolean][] = [];

  constructor(update: UpdateFn<K, V, S>, initial: KeyMap<K, S>) {
    this.#update = update;
    this.#state = initial;
  }

  step(input: unknown[], time: number): StepResult {
    const values = new KeyMap<K, V[]>();
    for (const item of input) {
      const [k, vs] = item as [K, V[]];
      values.set(k, vs);
    }
    const next = new KeyMap<K, S>();
    const output: [K, S][] = [];
    const touched: [K, boolean][] = [];
    const update = this.#update;
    this.#state.forEach((s, key) => {
      const vs = values.get(key);
      if (vs !== undefined) values.delete(key);
      const ns = update(vs ?? NO_VALUES, s, { key, time });
      if (ns !== undefined) {
        next.set(key, ns);
        output.push([key, ns]);
        // States are values: a new value, or new input, is a change to checkpoint.
        if (ns !== s || vs !== undefined) touched.push([key, true]);
      } else {
        touched.push([key, false]);
      }
    });
    values.forEach((vs, key) => {
      const ns = update(vs, undefined, { key, time });
      if (ns !== undefined) {
        next.set(key, ns);
        output.push([key, ns]);
        touched.push([key, true]);
      }
    });
    this.#next = next;
    this.#touched = touched;
    return { output };
  }

  commit(): void {
    if (this.#next !== undefined) this.#state = this.#next;
    this.#next = undefined;
    for (const [key, present] of this.#touched) {
      if (present) this.#log.changed(key);
      else this.#log.removed(key);
    }
    this.#touched = [];
  }

  rollback(): void {
    this.#next = undefined;
    this.#touched = [];
  }

  /** Continues the change log of a snapshot chain this partition was restored from. */
  continueChain(): this {
    this.#log.activate();
    return this;
  }

  capture(full: boolean): SnapshotData {
    const state = this.#state;
    return this.#log.capture(
      full,
      (k) => state.get(k),
      () => state.toArray(),
      null,
    );
  }

  toSnapshot(): unknown {
    return { entries: this.#state.toArray() };
  }

  lookup(key: unknown): unknown {
    return this.#state.get(key as K);
  }

  get size(): number {
    return this.#state.size;
  }
}

/**
 * The spec of updateStateByKey; `initial` pairs are seeded into the partition
 * that owns their key.
 *
 * @example
 * updateStateByKeySpec((vs, s = 0) => s + vs.length, [])
 */
export function updateStateByKeySpec<K, V, S>(update: UpdateFn<K, V, S>, initial: readonly [K, S][]): StatefulSpec {
  const seed = (entries: readonly [K, S][], partition: number, partitions: number): KeyMap<K, S> => {
    const m = new KeyMap<K, S>();
    for (const [k, s] of entries) if (partitionOf(k, partitions) === partition) m.set(k, s);
    return m;
  };
  return {
    create: (p, n) => new UpdateStateByKeyState(update, seed(initial, p, n)),
    restore: (snapshot, p, n) => new UpdateStateByKeyState(update, seed((snapshot as { entries: [K, S][] }).entries, p, n)),
    restoreChain: (chain) => new UpdateStateByKeyState(update, foldChain<K, S>(chain).entries).continueChain(),
  };
}
