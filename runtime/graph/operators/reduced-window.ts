/**
 * `reduceByKeyAndWindow(f, inv, w, s)`: the new window's value of a key is the
 * previous window's value, minus (`inv`) the batches that left, plus (`f`) the
 * batches that entered, so a slide costs what the entering and leaving batches
 * cost, whatever the window length. Keys whose value the optional filter rejects
 * are dropped; without a filter they stay at their zero value (Spark's behaviour).
 */

import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import { KeyMap } from '../partitioner.ts';
import type { SnapshotData } from '../wire.ts';
import { ChangeLog, foldChain } from './change-log.ts';
import { UndoableKeyMap } from './undoable-key-map.ts';

type Reduce<V> = (a: V, b: V) => V;

/** What defines a reduced window. */
export interface ReducedWindowParams<K, V> {
  readonly reduce: Reduce<V>;
  readonly inverse: Reduce<V>;
  readonly windowMs: number;
  readonly slideMs: number;
  readonly filter?: (pair: [K, V]) => boolean;
}

interface Held {
  time: number;
  entries: [unknown, unknown][];
}

function reduceBatches<V>(batches: Held[], reduce: Reduce<V>): KeyMap<unknown, V> {
  const out = new KeyMap<unknown, V>();
  for (const b of batches) {
    for (const [k, v] of b.entries) {
      const prev = out.get(k);
      out.set(k, prev === undefined && !out.has(k) ? (v as V) : reduce(prev as V, v as V));
    }
  }
  return out;
}

/** One partition of a reduced window: the previous window's result and the batches in it. */
export class ReducedWindowState<K, V> implements PartitionState {
  readonly #p: ReducedWindowParams<K, V>;
  readonly #current = new UndoableKeyMap<unknown, V>();
  #held: Held[];
  #heldBefore: Held[] | undefined;
  readonly #log = new ChangeLog<unknown>(() => this.#current.size);
  /** Batches absorbed since the last capture, and the prune point reached (for deltas). */
  #heldAdded: Held[] = [];
  #prunedUpTo: number | null = null;
  #pending: { added: Held; prunedUpTo: number | null } | undefined;

  constructor(params: ReducedWindowParams<K, V>, held: Held[] = [], current: [unknown, V][] = []) {
    this.#p = params;
    this.#held = held;
    for (const [k, v] of current) this.#current.map.set(k, v);
  }

  step(input: unknown[], time: number, emit: boolean): StepResult {
    const { windowMs, slideMs, reduce, inverse, filter } = this.#p;
    this.#heldBefore = this.#held;
    const added: Held = { time, entries: input as [unknown, unknown][] };
    this.#held = [...this.#held, added];
    this.#pending = { added, prunedUpTo: emit ? time - windowMs : null };
    if (!emit) return { output: undefined };
    const leaving = reduceBatches(
      this.#held.filter((h) => h.time > time - windowMs - slideMs && h.time <= time - windowMs),
      reduce,
    );
    const entering = reduceBatches(
      this.#held.filter((h) => h.time > time - slideMs),
      reduce,
    );
    const touched = new KeyMap<unknown, true>();
    for (const k of leaving.keys()) touched.set(k, true);
    for (const k of entering.keys()) touched.set(k, true);
    touched.forEach((_, k) => {
      const had = this.#current.has(k);
      const gone = leaving.get(k);
      const came = entering.get(k);
      let value: V;
      if (!had) {
        if (came === undefined && !entering.has(k)) {
          throw new Error(
            `reduceByKeyAndWindow: key ${JSON.stringify(k)} left a window it was never in; ` +
              'does the filter drop keys that later batches still hold?',
          );
        }
        value = came as V;
      } else {
        value = this.#current.get(k) as V;
        if (leaving.has(k)) value = inverse(value, gone as V);
        if (entering.has(k)) value = reduce(value, came as V);
      }
      if (filter !== undefined && !filter([k as K, value])) this.#current.delete(k);
      else this.#current.set(k, value);
    });
    this.#held = this.#held.filter((h) => h.time > time - windowMs);
    return { output: this.#current.map.toArray() };
  }

  commit(): void {
    this.#current.commit((key, present) => (present ? this.#log.changed(key) : this.#log.removed(key)));
    this.#heldBefore = undefined;
    if (this.#pending) {
      this.#heldAdded.push(this.#pending.added);
      const cut = this.#pending.prunedUpTo;
      if (cut !== null) {
        this.#prunedUpTo = cut;
        // Batches that left the window are gone from the next delta too (and, with no
        // checkpoint to capture them, this list must not grow forever).
        this.#heldAdded = this.#heldAdded.filter((h) => h.time > cut);
      }
      this.#pending = undefined;
    }
  }

  rollback(): void {
    this.#current.rollback();
    if (this.#heldBefore !== undefined) this.#held = this.#heldBefore;
    this.#heldBefore = undefined;
    this.#pending = undefined;
  }

  /** Keyed changes of the window result, plus the batches absorbed since the last capture. */
  /** Continues the change log of a snapshot chain this partition was restored from. */
  continueChain(): this {
    this.#log.activate();
    return this;
  }

  capture(asked: boolean): SnapshotData {
    const full = asked || this.#log.fullNext;
    const meta = full ? { added: this.#held, prunedUpTo: null } : { added: this.#heldAdded, prunedUpTo: this.#prunedUpTo };
    this.#heldAdded = [];
    this.#prunedUpTo = null;
    const current = this.#current;
    return this.#log.capture(
      full,
      (k) => current.get(k),
      () => current.map.columns(),
      meta,
    );
  }

  toSnapshot(): unknown {
    return { held: this.#held, current: this.#current.map.toArray() };
  }

  /** Keys of the current window's result. */
  keyCount(): number {
    return this.#current.size;
  }

  lookup(key: unknown): unknown {
    return this.#current.committed(key);
  }
}

/**
 * The spec of a reduced window with an inverse function.
 *
 * @example
 * reducedWindowSpec({ reduce: (a, b) => a + b, inverse: (a, b) => a - b, windowMs: 3000, slideMs: 1000 })
 */
export function reducedWindowSpec<K, V>(params: ReducedWindowParams<K, V>): StatefulSpec {
  return {
    create: () => new ReducedWindowState(params),
    restore: (snapshot) => {
      const s = snapshot as { held: Held[]; current: [unknown, V][] };
      return new ReducedWindowState(params, s.held, s.current);
    },
    restoreChain: async (chain) => {
      let held: Held[] = [];
      for (const data of chain) {
        const meta = data.meta as { added: Held[]; prunedUpTo: number | null };
        const cut = meta.prunedUpTo;
        if (data.kind === 'full') held = [];
        if (cut !== null) held = held.filter((h) => h.time > cut);
        held = held.concat(meta.added);
      }
      return new ReducedWindowState(params, held, (await foldChain<unknown, V>(chain)).entries.toArray()).continueChain();
    },
  };
}
