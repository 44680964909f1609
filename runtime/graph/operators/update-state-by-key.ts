/**
 * `updateStateByKey(update)`: every batch calls `update(values, state, {key, time})`
 * for every key in the state or in the batch (values `[]` when none); `undefined`
 * removes the key. The output is the whole state, every batch.
 */

import { setImmediate as nextTurn } from 'node:timers/promises';
import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import { KeyMap, partitionOf } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';
import { foldColumns, mostOfState } from './change-log.ts';

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

/** A removed key's slot until the columns are compacted. */
const GONE: unique symbol = Symbol('gone');

/**
 * Slots a step visits per turn of the event loop (stepInTurns): a visit costs
 * 0.1-0.8 us per key here (more when the output is built), so 50 ms at most.
 */
export const STEP_KEYS_PER_TURN = 60_000;

/** One batch's step over a partition, between its slices. */
interface StepRun<K, V, S> {
  /** The batch's values of keys not visited yet. */
  readonly values: KeyMap<K, V[]>;
  readonly pending: number;
  found: number;
  readonly output: [K, S][] | undefined;
  readonly undoSlots: number[];
  readonly undoValues: (S | typeof GONE)[];
  readonly update: (values: V[], state: S | undefined, info: UpdateInfo<K>) => S | undefined | typeof SET_ASIDE;
  readonly time: number;
  /** Slots when the step began: keys appended by it come after. */
  readonly slots: number;
}

/**
 * One partition of updateStateByKey, kept as two columns (keys, and their states):
 * every batch visits every key, which a walk over two arrays does fastest; new keys
 * are appended, removed ones leave a GONE slot until the columns are compacted. No
 * map is kept: a restore takes the snapshot's columns as they are, a full capture
 * copies them. A batch changes values in place and logs what it changed (slot and
 * old value); rollback puts them back and drops what it appended.
 */
export class UpdateStateByKeyState<K, V, S> implements PartitionState {
  readonly emitOnlyBuildsOutput = true;
  #keys: K[];
  #values: (S | typeof GONE)[];
  #gone = 0;
  readonly #update: UpdateFn<K, V, S>;
  /**
   * What changed since the last capture, for an incremental one: a flag per slot
   * (no hashing on the batch path) and the keys removed. Off until the first capture
   * or a restore; `#allChanged` once over half of the state (and SATURATION_MIN_KEYS)
   * changed, when the next capture is full anyway.
   */
  #logging = false;
  #allChanged = false;
  #dirty = new Uint8Array(0);
  #dirtyCount = 0;
  #removedKeys = new KeyMap<K, true>();
  /** The pending batch: slots it changed with their old values, and where its appended keys begin. */
  #undoSlots: number[] = [];
  #undoValues: (S | typeof GONE)[] = [];
  #appendedFrom = -1;
  /** Slot by key, built when a reader first asks (lookup), then kept up to date. */
  #index: KeyMap<K, number> | undefined;

  constructor(update: UpdateFn<K, V, S>, initial: KeyMap<K, S>) {
    this.#update = update;
    const { keys, values } = initial.columns();
    this.#keys = keys;
    this.#values = values;
  }

  /** A partition holding `keys` and their `values` (the arrays are taken, not copied). */
  static fromColumns<K, V, S>(update: UpdateFn<K, V, S>, keys: K[], values: S[]): UpdateStateByKeyState<K, V, S> {
    const state = new UpdateStateByKeyState<K, V, S>(update, new KeyMap());
    state.#keys = keys;
    state.#values = values;
    return state;
  }

  step(input: unknown[], time: number, emit = true, _wantExtra = false, setAside?: (record: unknown, error: unknown) => void): StepResult {
    const run = this.#begin(input, time, emit, setAside);
    this.#visit(run, 0, run.slots);
    return this.#end(run);
  }

  /**
   * The same step, `keysPerTurn` slots per turn of the event loop: a batch over a
   * large partition (every key is visited) holds the loop for one slice at a time.
   * The worker awaits it before a commit or a rollback, and readers see committed
   * values only (the undo log), so nothing observes a half-stepped partition.
   */
  async stepInTurns(
    input: unknown[],
    time: number,
    emit = true,
    _wantExtra = false,
    setAside?: (record: unknown, error: unknown) => void,
    keysPerTurn = STEP_KEYS_PER_TURN,
  ): Promise<StepResult> {
    const run = this.#begin(input, time, emit, setAside);
    for (let from = 0; from < run.slots; from += keysPerTurn) {
      if (from > 0) await nextTurn();
      this.#visit(run, from, Math.min(run.slots, from + keysPerTurn));
    }
    return this.#end(run);
  }

  #begin(
    input: unknown[],
    time: number,
    emit: boolean,
    setAside: ((record: unknown, error: unknown) => void) | undefined,
  ): StepRun<K, V, S> {
    const values = new KeyMap<K, V[]>();
    for (const item of input) {
      const [k, vs] = item as [K, V[]];
      values.set(k, vs);
    }
    const undoSlots: number[] = [];
    const undoValues: (S | typeof GONE)[] = [];
    this.#undoSlots = undoSlots;
    this.#undoValues = undoValues;
    const slots = this.#keys.length;
    this.#appendedFrom = slots;
    return {
      values,
      pending: values.size,
      found: 0,
      // Without an emit (a replayed batch whose output nothing needs), no output is built.
      output: emit ? [] : undefined,
      undoSlots,
      undoValues,
      update: setAside === undefined ? this.#update : guarded(this.#update, setAside),
      time,
      slots,
    };
  }

  /** Updates the keys in slots [from, to) of the columns as they were when the step began. */
  #visit(run: StepRun<K, V, S>, from: number, to: number): void {
    const keys = this.#keys;
    const states = this.#values;
    const { values, pending, output, undoSlots, undoValues, update, time } = run;
    let found = run.found;
    for (let i = from; i < to; i++) {
      const s = states[i] as S | typeof GONE;
      if (s === GONE) continue;
      const key = keys[i] as K;
      // Once every key of the batch was found, the rest of the state has no values.
      const vs = found < pending ? values.get(key) : undefined;
      if (vs !== undefined) {
        values.delete(key);
        found++;
      }
      const ns = update(vs ?? NO_VALUES, s, { key, time });
      if (ns === SET_ASIDE) {
        // The update threw and the key was set aside: its state stays, and still goes out.
        output?.push([key, s]);
        continue;
      }
      if (ns === undefined) {
        undoSlots.push(i);
        undoValues.push(s);
        states[i] = GONE;
        this.#gone++;
        continue;
      }
      // States are values: a new value, or new input, is a change to checkpoint.
      if (ns !== s || vs !== undefined) {
        undoSlots.push(i);
        undoValues.push(s);
        states[i] = ns;
      }
      output?.push([key, ns]);
    }
    run.found = found;
  }

  /** The keys of the batch that had no state: appended. */
  #end(run: StepRun<K, V, S>): StepResult {
    const { update, time, output } = run;
    run.values.forEach((vs, key) => {
      const ns = update(vs, undefined, { key, time });
      if (ns === undefined || ns === SET_ASIDE) return;
      this.#keys.push(key);
      this.#values.push(ns);
      output?.push([key, ns]);
    });
    return { output: output ?? [] };
  }

  commit(): void {
    const keys = this.#keys;
    const states = this.#values;
    const index = this.#index;
    const appendedFrom = this.#appendedFrom < 0 ? keys.length : this.#appendedFrom;
    if (this.#logging && !this.#allChanged) this.#logChanges(appendedFrom);
    if (index !== undefined) {
      for (const i of this.#undoSlots) if (states[i] === GONE) index.delete(keys[i] as K);
      for (let i = appendedFrom; i < keys.length; i++) index.set(keys[i] as K, i);
    }
    this.#clearUndo();
    // Removed slots are dropped once they are a quarter of the columns.
    if (this.#gone > 0 && this.#gone * 4 >= keys.length) this.#compact();
  }

  /** Flags the slots the batch being committed changed or appended; notes the keys it removed. */
  #logChanges(appendedFrom: number): void {
    const keys = this.#keys;
    const states = this.#values;
    if (this.#dirty.length < keys.length) {
      const grown = new Uint8Array(Math.max(keys.length, this.#dirty.length * 2, 1024));
      grown.set(this.#dirty);
      this.#dirty = grown;
    }
    const dirty = this.#dirty;
    const removed = this.#removedKeys;
    let count = this.#dirtyCount;
    for (const i of this.#undoSlots) {
      if (states[i] === GONE) {
        if (dirty[i] === 1) count--;
        dirty[i] = 0;
        removed.set(keys[i] as K, true);
      } else if (dirty[i] === 0) {
        dirty[i] = 1;
        count++;
      }
    }
    for (let i = appendedFrom; i < keys.length; i++) {
      dirty[i] = 1;
      count++;
      if (removed.size > 0) removed.delete(keys[i] as K);
    }
    this.#dirtyCount = count;
    if (mostOfState(count, keys.length - this.#gone)) this.#allChanged = true;
  }

  rollback(): void {
    const states = this.#values;
    for (let i = this.#undoSlots.length - 1; i >= 0; i--) {
      const slot = this.#undoSlots[i] as number;
      if (states[slot] === GONE) this.#gone--;
      states[slot] = this.#undoValues[i] as S;
    }
    if (this.#appendedFrom >= 0) {
      this.#keys.length = this.#appendedFrom;
      states.length = this.#appendedFrom;
    }
    this.#clearUndo();
  }

  #clearUndo(): void {
    this.#undoSlots = [];
    this.#undoValues = [];
    this.#appendedFrom = -1;
  }

  #compact(): void {
    const keys: K[] = [];
    const values: S[] = [];
    const oldKeys = this.#keys;
    const oldValues = this.#values;
    const oldDirty = this.#dirty;
    const dirty = new Uint8Array(oldDirty.length);
    for (let i = 0; i < oldKeys.length; i++) {
      const v = oldValues[i] as S | typeof GONE;
      if (v === GONE) continue;
      if (oldDirty[i] === 1) dirty[keys.length] = 1;
      keys.push(oldKeys[i] as K);
      values.push(v);
    }
    this.#dirty = dirty;
    this.#keys = keys;
    this.#values = values;
    this.#gone = 0;
    this.#index = undefined;
  }

  /**
   * The committed columns, copied (a full capture; the batches after it change the
   * originals): a batch in progress (between its step and commit, or between the
   * slices of its step) is taken out through its undo log.
   */
  #columns(): { keys: K[]; values: S[] } {
    const end = this.#appendedFrom >= 0 ? this.#appendedFrom : this.#keys.length;
    let current = this.#values;
    if (this.#undoSlots.length > 0) {
      current = current.slice(0, end);
      for (let i = 0; i < this.#undoSlots.length; i++) current[this.#undoSlots[i] as number] = this.#undoValues[i] as S | typeof GONE;
    }
    let gone = this.#gone;
    if (this.#undoSlots.length > 0) {
      gone = 0;
      for (let i = 0; i < end; i++) if (current[i] === GONE) gone++;
    }
    if (gone === 0) return { keys: this.#keys.slice(0, end), values: current.slice(0, end) as S[] };
    const keys: K[] = [];
    const values: S[] = [];
    for (let i = 0; i < end; i++) {
      const v = current[i] as S | typeof GONE;
      if (v === GONE) continue;
      keys.push(this.#keys[i] as K);
      values.push(v);
    }
    return { keys, values };
  }

  #slots(): KeyMap<K, number> {
    if (this.#index === undefined) {
      // Every slot, removed ones too: a key removed by the batch in progress is still
      // committed, and a key removed then added again ends at its newer slot.
      const index = new KeyMap<K, number>();
      this.#keys.forEach((k, i) => {
        index.set(k, i);
      });
      this.#index = index;
    }
    return this.#index;
  }

  /** Continues the change log of a snapshot chain this partition was restored from. */
  continueChain(): this {
    this.#logging = true;
    return this;
  }

  /** The committed state: all of it when `full` (or when the log says it must be), else what changed since the last capture. */
  capture(full: boolean): SnapshotData {
    const whole = full || !this.#logging || this.#allChanged;
    const dirty = this.#dirty;
    const removed = this.#removedKeys;
    this.#logging = true;
    this.#allChanged = false;
    this.#dirty = new Uint8Array(this.#keys.length);
    this.#dirtyCount = 0;
    this.#removedKeys = new KeyMap();
    if (whole) return { kind: 'full', ...this.#columns(), removed: [], meta: null };
    const keys: K[] = [];
    const values: S[] = [];
    // Captures come between batches; should one come during a batch, its changes are left out.
    const pending = this.#appendedFrom >= 0;
    const n = Math.min(dirty.length, this.#keys.length);
    for (let i = 0; i < n; i++) {
      if (dirty[i] !== 1) continue;
      const key = this.#keys[i] as K;
      keys.push(key);
      values.push((pending ? this.#committed(key) : this.#values[i]) as S);
    }
    return { kind: 'delta', keys, values, removed: [...removed.keys()], meta: null };
  }

  toSnapshot(): unknown {
    const { keys, values } = this.#columns();
    return { entries: keys.map((k, i) => [k, values[i]]) };
  }

  keyCount(): number {
    return this.#keys.length - this.#gone;
  }

  /** The committed value: a batch in progress is not visible. */
  lookup(key: unknown): unknown {
    return this.#committed(key as K);
  }

  #committed(key: K): S | undefined {
    const slots = this.#slots();
    const slot = slots.get(key);
    if (slot === undefined || (this.#appendedFrom >= 0 && slot >= this.#appendedFrom)) return undefined;
    const undo = this.#undoSlots.indexOf(slot);
    const v = undo >= 0 ? this.#undoValues[undo] : this.#values[slot];
    return v === GONE ? undefined : (v as S);
  }

  get size(): number {
    return this.keyCount();
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
    restoreChain: async (chain) => {
      const { keys, values } = await foldColumns<K, S>(chain);
      return UpdateStateByKeyState.fromColumns(update, keys, values).continueChain();
    },
  };
}
