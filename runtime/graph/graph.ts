/**
 * The operator graph: a pure description of what each DStream computes. The driver
 * compiles it into steps; nothing here runs user code or touches actors.
 */

import type { InputSource } from './input-source.ts';
import type { SnapshotData } from './wire.ts';

/** Receives one record of a push chain. */
export type Sink<T> = (record: T) => void;

/** A per-record operator of a fused push chain (map, filter, flatMap, ...). */
export interface RecordOp {
  readonly type: 'record';
  wire(next: Sink<unknown>): Sink<unknown>;
}

/** A per-partition operator (glom, mapPartitions): sees a whole partition at once. */
export interface PartitionOp {
  readonly type: 'partition';
  apply(records: unknown[], time: number): unknown[];
}

/** A narrow operator: no data moves between partitions. */
export type NarrowOp = RecordOp | PartitionOp;

/** The map side of a shuffle for one map partition: a sink and its per-partition output. */
export interface MapSide {
  readonly sink: Sink<unknown>;
  /** Items for each output partition, in output-partition order. */
  finish(): unknown[][];
}

/** A shuffle: a map-side combiner per input partition and a reduce per output partition. */
export interface ShuffleSpec {
  mapSide(parentIndex: number, mapPartition: number, outPartitions: number): MapSide;
  /**
   * True when one map side may take several map partitions: it combines records by key
   * (its items hold each key once) with functions no app can tell apart from a map side
   * per partition (reduceByKey's one function, groupByKey's own). combineByKey's three
   * app functions keep one combiner per partition, as Spark calls them.
   */
  readonly combinesAcrossPartitions?: boolean;
  /**
   * `itemsPerParent[i]` holds parent i's items for this partition, map partitions in
   * order; `oneCombiner[i]` is true when they all came from one map side (each key once).
   */
  reduceSide(itemsPerParent: unknown[][], time: number, oneCombiner?: readonly boolean[]): unknown[];
}

/** What one stateful partition returns for one batch. */
export interface StepResult {
  /** Records of this partition when the operator emits at this time, else undefined. */
  readonly output: unknown[] | undefined;
  /** Records of a companion stream (mapWithState's stateSnapshots), when asked for. */
  readonly extra?: unknown[];
}

/**
 * One partition of a stateful operator. `step` may change the state; `commit` makes
 * the change final once the whole batch succeeded, `rollback` undoes it.
 */
export interface PartitionState {
  /**
   * `setAside`, when given (the `dead-letter` policy), takes what a user function
   * threw on (the record, or the key and its values) instead of the batch failing;
   * that key's state stays as it was. Operators without per-key functions ignore it.
   */
  step(input: unknown[], time: number, emit: boolean, wantExtra: boolean, setAside?: (record: unknown, error: unknown) => void): StepResult;
  /**
   * The same step in several turns of the event loop, for operators whose every batch
   * visits the whole state (the worker uses it when present).
   */
  stepInTurns?(
    input: unknown[],
    time: number,
    emit: boolean,
    wantExtra: boolean,
    setAside?: (record: unknown, error: unknown) => void,
  ): Promise<StepResult>;
  commit(): void;
  rollback(): void;
  /** A plain, encodable copy of the committed state (for checkpoints and reads). */
  toSnapshot(): unknown;
  /** The committed value of one key, for operators keyed by key. */
  lookup?(key: unknown): unknown;
  /** Keys held now, a batch in progress included (for monitoring); keyed operators only. */
  keyCount?(): number;
  /**
   * Captures the committed state for a checkpoint: all of it when `full`, else what
   * changed since the previous capture.
   */
  capture(full: boolean): SnapshotData;
  /**
   * True when `step(..., emit = false, ...)` only leaves the output out and moves the
   * state exactly as an emitting step would: a replayed batch whose output nothing
   * needs then skips building it. Operators that defer work to their emit times
   * (reduceByKeyAndWindow) leave it unset.
   */
  readonly emitOnlyBuildsOutput?: boolean;
}

/** Creates the state of one partition of a stateful operator. */
export interface StatefulSpec {
  create(partition: number, partitions: number): PartitionState;
  /** Rebuilds a partition's state from {@link PartitionState.toSnapshot}. */
  restore(snapshot: unknown, partition: number, partitions: number): PartitionState;
  /**
   * Rebuilds a partition from a full capture and the delta captures after it, in
   * order, yielding to the event loop as it goes (a large state takes many turns).
   */
  restoreChain(chain: readonly SnapshotData[], partition: number, partitions: number): Promise<PartitionState>;
}

/**
 * What a record that makes a user function throw does: `fail` fails the batch;
 * `dead-letter` sends the record, the operator, the batch time and the error to the
 * app's dead letters and the batch goes on without it (replays decide the same).
 */
export type RecordErrorPolicy = 'fail' | 'dead-letter';

/** A record set aside by the `dead-letter` policy. */
export interface DeadLetter {
  /** The operator whose function threw on the record (`map#3`, or its uid). */
  readonly operator: string;
  /** The time of the batch the record was in. */
  readonly time: number;
  /** The record as the operator was given it. */
  readonly record: unknown;
  /** What the function threw, as text. */
  readonly error: string;
}

/** Fields every node has. */
export interface NodeBase {
  readonly id: number;
  /** `<operator>#<id>`, or the uid when one is set: used in errors and fingerprints. */
  name: string;
  readonly operator: string;
  readonly parents: readonly GraphNode[];
  readonly slideMs: number;
  readonly partitions: number;
  uid?: string;
  checkpointIntervalMs?: number;
  /** What a record its function throws on does (the app's default when unset). */
  recordErrors?: RecordErrorPolicy;
  /** Durations and sizes that define compatibility of a checkpoint with this node. */
  readonly params: Readonly<Record<string, number | string | boolean>>;
}

/** A node of the operator graph. */
export type GraphNode =
  | (NodeBase & { readonly kind: 'input'; readonly source: InputSource<unknown> })
  | (NodeBase & { readonly kind: 'narrow'; readonly narrow: NarrowOp })
  | (NodeBase & { readonly kind: 'shuffle'; readonly shuffle: ShuffleSpec })
  | (NodeBase & { readonly kind: 'stateful'; readonly stateful: StatefulSpec; snapshotsWanted: boolean })
  | (NodeBase & {
      readonly kind: 'whole';
      readonly whole: (batches: unknown[][], time: number) => unknown[];
    })
  | (NodeBase & { readonly kind: 'state-view' });

/** An output operation registered on a stream (print, foreachBatch, saveAsTextFiles). */
export interface OutputOp {
  readonly id: number;
  readonly name: string;
  readonly stream: GraphNode;
  run(records: unknown[], time: number): void | Promise<void>;
}
