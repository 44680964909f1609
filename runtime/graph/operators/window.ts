/**
 * `window(w, s)`: the union of the parent's batches in `(t - w, t]`, emitted every
 * slide. The first windows are shorter, and windows keep firing after input stops.
 */

import type { PartitionState, StatefulSpec, StepResult } from '../graph.ts';
import type { SnapshotData } from '../wire.ts';

interface Held {
  time: number;
  records: unknown[];
}

/** The window buffer of one partition. */
export class WindowState implements PartitionState {
  readonly emitOnlyBuildsOutput = true;
  #held: Held[];
  #before: Held[] | undefined;
  readonly #windowMs: number;

  constructor(windowMs: number, held: Held[] = []) {
    this.#windowMs = windowMs;
    this.#held = held;
  }

  step(input: unknown[], time: number, emit: boolean): StepResult {
    this.#before = this.#held;
    // Batches at or before time - w can be in no later window: drop them now.
    this.#held = [...this.#held.filter((h) => h.time > time - this.#windowMs), { time, records: input }];
    if (!emit) return { output: undefined };
    const output: unknown[] = [];
    for (const h of this.#held) for (const r of h.records) output.push(r);
    return { output };
  }

  commit(): void {
    this.#before = undefined;
  }

  rollback(): void {
    if (this.#before !== undefined) this.#held = this.#before;
    this.#before = undefined;
  }

  toSnapshot(): unknown {
    return { held: this.#held };
  }

  /** Window buffers hold whole batches of records: always captured whole. */
  capture(): SnapshotData {
    return { kind: 'full', keys: [], values: [], removed: [], meta: { held: this.#held } };
  }
}

/**
 * The spec of a window operator.
 *
 * @example
 * windowSpec(3000)
 */
export function windowSpec(windowMs: number): StatefulSpec {
  return {
    create: () => new WindowState(windowMs),
    restore: (snapshot) => new WindowState(windowMs, (snapshot as { held: Held[] }).held),
    restoreChain: async (chain) => new WindowState(windowMs, (chain[chain.length - 1]?.meta as { held: Held[] } | undefined)?.held ?? []),
  };
}
