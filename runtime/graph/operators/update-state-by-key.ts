/**
 * `updateStateByKey(update)`: every batch calls `update(values, state, {key, time})`
 * for every key in the state or in the batch (values `[]` when none); `undefined`
 * removes the key. The output is the whole state, every batch.
 */

import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import { KeyMap, partitionOf } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';
import { ChangeLog, foldChain } from './change-log.ts';

/** What `update` learns besides the values and the state. */
export interface UpdateInfo<K> {
  /** The key whose state is updated. */
  readonly key: K;
  /** The time of the batch being computed. */
  readonly time: number;
}

/** The user's state update function. */
export type UpdateFn<K, V, S> = (values: V[], state: S | undefined, info: UpdateInfo<K>) => S | undefined;

/** What a guarded update returns for a key whose update threw (set aside). */
const SET_ASIDE: unique symbol = Symbol('set aside');

/** `update` that hands what it throws on to `setAside` and returns SET_ASIDE. */
function guarded<K, V, S>(
  update: UpdateFn<K, V, S>,
  setAside: (record: unknown, error: unknown) => void,
): (values: readonly V[], state: S | undefined, info: UpdateInfo<K>) => S | undefined | typeof SET_ASIDE {
  return (values, state, info) => {
    try {
      return update(values as V[], state, info);
    } catch (error) {
      setAside([info.key, values], error);
      return SET_ASIDE;
    }
  };
}

const NO_VALUES: never[] = [];

/**
 * One partition of updateStateByKey. Each batch touches every key, so the batch
 * builds the next state in a new map and swaps it in on commit (rollback drops it).
 */
export class UpdateStateByKeyState<K, V, S> implements PartitionState {
  readonly #state: KeyMap<K, S>;
  readonly #update: UpdateFn<K, V, S>;
  readonly #log = new ChangeLog<K>();
  /**
   * The pending batch's undo log: every key it changed with its old value (absent
   * keys were added). Each key is visited once per batch, so plain arrays do and a
   * batch costs one map write per changed key, not a rebuilt map.
   */
  #undoKeys: K[] = [];
  #undoValues: (S | undefined)[] = [];
  #undoHad: boolean[] = [];
  /** The old values by key, built only if a reader asks during a batch. */
  #undoIndex: KeyMap<K, S | undefined> | undefined;

  constructor(update: UpdateFn<K, V, S>, initial: KeyMap<K, S>) {
    this.#update = update;
    this.#state = initial;
  }

  step(input: unknown[], time: number, emit = true, _wantExtra = false, setAside?: (record: unknown, error: unknown) => void): StepResult {
    const values = new KeyMap<K, V[]>();
    for (const item of input) {
      const [k, vs] = item as [K, V[]];
      values.set(k, vs);
    }
    // Without an emit (a replayed batch whose outputs ran before), no output is built.
    const output: [K, S][] | undefined = emit ? [] : undefined;
    const state = this.#state;
    const undoKeys: K[] = [];
    const undoValues: (S | undefined)[] = [];
    const undoHad: boolean[] = [];
    this.#undoKeys = undoKeys;
    this.#undoValues = undoValues;
    this.#undoHad = undoHad;
    this.#undoIndex = undefined;
    const update = setAside === undefined ? this.#update : guarded(this.#update, setAside);
    state.forEach((s, key) => {
      const vs = values.get(key);
      if (vs !== undefined) values.delete(key);
      const ns = update(vs ?? NO_VALUES, s, { key, time });
      if (ns === SET_ASIDE) {
        // The update threw and the key was set aside: its state stays, and still goes out.
        output?.push([key, s]);
        return;
      }
      if (ns === undefined) {
        undoKeys.push(key);
        undoValues.push(s);
        undoHad.push(true);
        state.delete(key);
        return;
      }
      // States are values: a new value, or new input, is a change to checkpoint.
      if (ns !== s || vs !== undefined) {
        undoKeys.push(key);
        undoValues.push(s);
        undoHad.push(true);
        if (ns !== s) state.set(key, ns);
      }
      output?.push([key, ns]);
    });
    values.forEach((vs, key) => {
      const ns = update(vs, undefined, { key, time });
      if (ns === undefined || ns === SET_ASIDE) return;
      undoKeys.push(key);
      undoValues.push(undefined);
      undoHad.push(false);
      state.set(key, ns);
      output?.push([key, ns]);
    });
    return { output: output ?? [] };
  }

  commit(): void {
    const state = this.#state;
    for (const key of this.#undoKeys) {
      if (state.has(key)) this.#log.changed(key);
      else this.#log.removed(key);
    }
    this.#clearUndo();
  }

  rollback(): void {
    const state = this.#state;
    for (let i = this.#undoKeys.length - 1; i >= 0; i--) {
      const key = this.#undoKeys[i] as K;
      if (this.#undoHad[i]) state.set(key, this.#undoValues[i] as S);
      else state.delete(key);
    }
    this.#clearUndo();
  }

  #clearUndo(): void {
    this.#undoKeys = [];
    this.#undoValues = [];
    this.#undoHad = [];
    this.#undoIndex = undefined;
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

  keyCount(): number {
    return this.#state.size;
  }

  /** The committed value: a batch in progress is not visible. */
  lookup(key: unknown): unknown {
    if (this.#undoKeys.length > 0) {
      if (this.#undoIndex === undefined) {
        const index = new KeyMap<K, S | undefined>();
        this.#undoKeys.forEach((k, i) => {
          index.set(k, this.#undoHad[i] ? this.#undoValues[i] : undefined);
        });
        this.#undoIndex = index;
      }
      if (this.#undoIndex.has(key as K)) return this.#undoIndex.get(key as K);
    }
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
