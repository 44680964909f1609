/**
 * DStream: a stream of batches, described as a node of the operator graph. Every
 * method adds a node (or an output) and returns at once; nothing runs before
 * `ssc.start()`.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { concatAll } from '../base/arrays.ts';
import { checkDuration, checkMultiple } from '../base/durations.ts';
import { InvalidConfigError, InvalidGraphError } from '../base/errors.ts';
import { formatPrint, formatRecord } from '../base/format.ts';
import type { GraphNode, NarrowOp, RecordErrorPolicy, ShuffleSpec, StatefulSpec } from '../graph/graph.ts';
import type { GraphBuilder } from '../graph/graph-builder.ts';
import { type MapWithStateSpec, mapWithStateSpec } from '../graph/operators/map-with-state.ts';
import {
  checkArray,
  filterOp,
  flatMapOp,
  flatMapValuesOp,
  glomOp,
  mapOp,
  mapPartitionsOp,
  mapValuesOp,
  requireSync,
} from '../graph/operators/narrow.ts';
import { reducedWindowSpec } from '../graph/operators/reduced-window.ts';
import {
  aggregateShuffle,
  cogroupShuffle,
  combineByKeyShuffle,
  partitionByKeyShuffle,
  repartitionShuffle,
} from '../graph/operators/shuffle.ts';
import { type UpdateFn, updateStateByKeySpec } from '../graph/operators/update-state-by-key.ts';
import { windowSpec } from '../graph/operators/window.ts';
import { jetStreamSink, type ToJetStreamOptions } from './jetstream-sink.ts';

/** Options of keyed operators. */
export interface PartitionOptions {
  /** Number of output partitions (default: the context's `partitions`). */
  readonly partitions?: number;
}

/** Options of `reduceByKeyAndWindow` with an inverse function. */
export interface ReducedWindowOptions<K, V> extends PartitionOptions {
  /** Keeps only the pairs for which it holds (e.g. drop zero counts). */
  readonly filter?: (pair: [K, V]) => boolean;
}

/** Options of `updateStateByKey`. */
export interface UpdateStateOptions<K, S> extends PartitionOptions {
  /** State to start from (Spark's `initialRDD`); a checkpoint's state replaces it on restart. */
  readonly initial?: readonly [K, S][];
}

/** Options of `mapWithState`. */
export interface MapWithStateOptions<K, V, S, M> extends MapWithStateSpec<K, V, S, M>, PartitionOptions {}

/**
 * A stream of batches of `T`: Spark Streaming's DStream.
 *
 * @example
 * const counts = lines.flatMap((l) => l.split(' ')).map((w) => [w, 1] as [string, number]).reduceByKey((a, b) => a + b);
 * counts.print();
 */
export class DStream<T> {
  /** @internal */
  readonly node: GraphNode;
  /** @internal */
  readonly graph: GraphBuilder;

  /** @internal Streams are made by the context and by operators, not by `new`. */
  constructor(graph: GraphBuilder, node: GraphNode) {
    this.graph = graph;
    this.node = node;
  }

  /** The time between two batches of this stream, in ms. */
  get slideDuration(): number {
    return this.node.slideMs;
  }

  // ---- narrow operators -------------------------------------------------------

  /** One output record per input record. */
  map<U>(f: (record: T) => U): DStream<U> {
    return this.#narrow('map', mapOp(requireSync('map', f)));
  }

  /** The records for which `p` holds. */
  filter(p: (record: T) => boolean): DStream<T> {
    return this.#narrow('filter', filterOp(requireSync('filter', p)));
  }

  /** Every element of what `f` returns for each record. */
  flatMap<U>(f: (record: T) => Iterable<U>): DStream<U> {
    return this.#narrow('flatMap', flatMapOp(requireSync('flatMap', f), 'flatMap'));
  }

  /** Each partition as one array record. */
  glom(): DStream<T[]> {
    return this.#narrow('glom', glomOp());
  }

  /** `f` maps a whole partition at once. */
  mapPartitions<U>(f: (records: T[], time: number) => U[]): DStream<U> {
    return this.#narrow('mapPartitions', mapPartitionsOp(requireSync('mapPartitions', f), 'mapPartitions'));
  }

  /** Values mapped, keys kept. */
  mapValues<K, V, W>(this: DStream<[K, V]>, f: (value: V) => W): DStream<[K, W]> {
    return this.#narrow('mapValues', mapValuesOp(requireSync('mapValues', f)));
  }

  /** Every element of `f(value)`, paired with the key. */
  flatMapValues<K, V, W>(this: DStream<[K, V]>, f: (value: V) => Iterable<W>): DStream<[K, W]> {
    return this.#narrow('flatMapValues', flatMapValuesOp(requireSync('flatMapValues', f)));
  }

  // ---- whole-batch operators ----------------------------------------------------

  /** `f` sees the whole batch (and its time) and returns the new batch. */
  transform<U>(f: (records: T[], time: number) => U[]): DStream<U> {
    requireSync('transform', f);
    return transformStreams(this.graph, [this], 'transform', (batches, time) => f(batches[0] as T[], time));
  }

  /** `f` sees this stream's and `other`'s batches of the same time. */
  transformWith<U, R>(other: DStream<U>, f: (mine: T[], theirs: U[], time: number) => R[]): DStream<R> {
    requireSync('transformWith', f);
    return transformStreams(this.graph, [this, other as DStream<unknown>], 'transformWith', (batches, time) =>
      f(batches[0] as T[], batches[1] as U[], time),
    );
  }

  /** This stream's and the others' records, batch by batch. */
  union(...others: DStream<T>[]): DStream<T> {
    return unionStreams(this.graph, [this, ...others]);
  }

  /** Redistributes the records over `partitions` partitions. */
  repartition(partitions: number): DStream<T> {
    return this.#shuffle('repartition', [this], repartitionShuffle(), checkPartitions('repartition', partitions));
  }

  // ---- global aggregates --------------------------------------------------------

  /** One record per batch: the number of records (`[0]` for an empty batch). */
  count(): DStream<number> {
    return this.#shuffle(
      'count',
      [this],
      aggregateShuffle<T, number>(
        0,
        (acc) => (acc ?? 0) + 1,
        (a, b) => a + b,
      ),
      1,
    );
  }

  /** One record per batch: all records reduced with `f` (`[]` for an empty batch). */
  reduce(f: (a: T, b: T) => T): DStream<T> {
    requireSync('reduce', f);
    return this.#shuffle(
      'reduce',
      [this],
      aggregateShuffle<T, T>(undefined, (acc, r) => (acc === undefined ? r : f(acc, r)), f),
      1,
    );
  }

  /** `[value, count]` for every distinct value of the batch. */
  countByValue(options: PartitionOptions = {}): DStream<[T, number]> {
    return this.map((r) => [r, 1] as [T, number]).reduceByKey((a, b) => a + b, options);
  }

  // ---- keyed operators ----------------------------------------------------------

  /** The values of each key reduced with `f`. */
  reduceByKey<K, V>(this: DStream<[K, V]>, f: (a: V, b: V) => V, options: PartitionOptions = {}): DStream<[K, V]> {
    requireSync('reduceByKey', f);
    return this.#keyed(
      'reduceByKey',
      combineByKeyShuffle<V, V>((v) => v, f, f, true),
      options,
    );
  }

  /** All values of each key. */
  groupByKey<K, V>(this: DStream<[K, V]>, options: PartitionOptions = {}): DStream<[K, V[]]> {
    return this.#keyed('groupByKey', groupShuffle<V>(), options);
  }

  /** Spark's general keyed aggregation. */
  combineByKey<K, V, C>(
    this: DStream<[K, V]>,
    create: (value: V) => C,
    merge: (combiner: C, value: V) => C,
    mergeCombiners: (a: C, b: C) => C,
    options: PartitionOptions = {},
  ): DStream<[K, C]> {
    for (const f of [create, merge, mergeCombiners]) requireSync('combineByKey', f);
    return this.#keyed('combineByKey', combineByKeyShuffle(create, merge, mergeCombiners), options);
  }

  /** For each key of either stream, the values of each side. */
  cogroup<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, options: PartitionOptions = {}): DStream<[K, [V[], W[]]]> {
    const partitions = checkPartitions('cogroup', options.partitions ?? this.graph.defaultPartitions);
    return this.#shuffle('cogroup', [this, other as DStream<unknown>], cogroupShuffle(2), partitions);
  }

  /** Pairs of values of keys present on both sides. */
  join<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, options: PartitionOptions = {}): DStream<[K, [V, W]]> {
    return this.#joined('join', other, options, false, false);
  }

  /** Every left value, with each right value or `undefined`. */
  leftOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, options: PartitionOptions = {}): DStream<[K, [V, W | undefined]]> {
    return this.#joined('leftOuterJoin', other, options, true, false);
  }

  /** Every right value, with each left value or `undefined`. */
  rightOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, options: PartitionOptions = {}): DStream<[K, [V | undefined, W]]> {
    return this.#joined('rightOuterJoin', other, options, false, true);
  }

  /** Every value of either side, the missing side `undefined`. */
  fullOuterJoin<K, V, W>(
    this: DStream<[K, V]>,
    other: DStream<[K, W]>,
    options: PartitionOptions = {},
  ): DStream<[K, [V | undefined, W | undefined]]> {
    return this.#joined('fullOuterJoin', other, options, true, true);
  }

  // ---- windows ------------------------------------------------------------------

  /** The records of the batches in `(t - window, t]`, every `slide` (default: this stream's slide). */
  window(windowMs: number, slideMs: number = this.node.slideMs): DStream<T> {
    return windowStream(this, 'window', windowMs, slideMs);
  }

  /** The number of records in each window. */
  countByWindow(windowMs: number, slideMs: number = this.node.slideMs): DStream<number> {
    return this.map(() => 1).reduceByWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      windowMs,
      slideMs,
    );
  }

  /** All records of each window reduced with `f` (with `inverse`: incrementally). */
  reduceByWindow(f: (a: T, b: T) => T, windowMs: number, slideMs?: number): DStream<T>;
  reduceByWindow(f: (a: T, b: T) => T, inverse: (a: T, b: T) => T, windowMs: number, slideMs: number): DStream<T>;
  reduceByWindow(f: (a: T, b: T) => T, second: number | ((a: T, b: T) => T), third?: number, fourth?: number): DStream<T> {
    requireSync('reduceByWindow', f);
    if (typeof second === 'function') requireSync('reduceByWindow', second);
    if (typeof second === 'function') {
      return this.map((r) => [0, r] as [number, T])
        .reduceByKeyAndWindow(f, second, third as number, fourth as number, { partitions: 1 })
        .map(([, v]) => v);
    }
    return this.reduce(f)
      .window(second, third ?? this.node.slideMs)
      .reduce(f);
  }

  /** `[value, count]` over each window; values whose count falls to zero are dropped. */
  countByValueAndWindow(windowMs: number, slideMs: number = this.node.slideMs, options: PartitionOptions = {}): DStream<[T, number]> {
    return this.map((r) => [r, 1] as [T, number]).reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      windowMs,
      slideMs,
      { ...options, filter: ([, n]) => n !== 0 },
    );
  }

  /** The values of each key over each window, reduced (with `inverse`: incrementally). */
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    windowMs: number,
    slideMs?: number,
    options?: PartitionOptions,
  ): DStream<[K, V]>;
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    inverse: (a: V, b: V) => V,
    windowMs: number,
    slideMs?: number,
    options?: ReducedWindowOptions<K, V>,
  ): DStream<[K, V]>;
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    second: number | ((a: V, b: V) => V),
    third?: number | PartitionOptions,
    fourth?: number | ReducedWindowOptions<K, V>,
    fifth?: ReducedWindowOptions<K, V>,
  ): DStream<[K, V]> {
    requireSync('reduceByKeyAndWindow', f);
    if (typeof second === 'function') requireSync('reduceByKeyAndWindow', second);
    if (typeof second !== 'function') {
      const slideMs = typeof third === 'number' ? third : this.node.slideMs;
      const options = (typeof third === 'object' ? third : (fourth as PartitionOptions | undefined)) ?? {};
      const windowMs = checkDuration('reduceByKeyAndWindow window', second);
      checkWindow(this.node, 'reduceByKeyAndWindow', windowMs, slideMs);
      return this.reduceByKey(f, options).window(windowMs, slideMs).reduceByKey(f, options);
    }
    const windowMs = third as number;
    const slideMs = typeof fourth === 'number' ? fourth : this.node.slideMs;
    const options = (typeof fourth === 'object' ? fourth : fifth) ?? {};
    checkWindow(this.node, 'reduceByKeyAndWindow', windowMs, slideMs);
    const reduced = this.reduceByKey(f, options);
    const spec = reducedWindowSpec<K, V>({
      reduce: f,
      inverse: second,
      windowMs,
      slideMs,
      ...(options.filter ? { filter: options.filter } : {}),
    });
    return statefulStream(reduced, 'reduceByKeyAndWindow', spec, slideMs, {
      windowMs,
      slideMs,
      filter: options.filter !== undefined,
    });
  }

  /** All values of each key over each window. */
  groupByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    windowMs: number,
    slideMs: number = this.node.slideMs,
    options: PartitionOptions = {},
  ): DStream<[K, V[]]> {
    return this.window(windowMs, slideMs).groupByKey(options);
  }

  // ---- state --------------------------------------------------------------------

  /**
   * Keeps a state per key across batches: `update(values, state, {key, time})` runs
   * for every key in the state or in the batch, every batch; `undefined` removes the
   * key. The output is the whole state every batch.
   */
  updateStateByKey<K, V, S>(this: DStream<[K, V]>, update: UpdateFn<K, V, S>, options: UpdateStateOptions<K, S> = {}): DStream<[K, S]> {
    requireSync('updateStateByKey', update);
    const grouped = this.#keyed('updateStateByKey.group', groupShuffle<V>(), options);
    return statefulStream(grouped, 'updateStateByKey', updateStateByKeySpec(update, options.initial ?? []), this.node.slideMs, {});
  }

  /**
   * Keeps a state per key, calling `update(key, value, state, time)` once per record
   * (never for idle keys); emits what it returns. See {@link MapWithStateDStream}.
   */
  mapWithState<K, V, S, M>(this: DStream<[K, V]>, spec: MapWithStateOptions<K, V, S, M>): MapWithStateDStream<K, S, M> {
    requireSync('mapWithState update', spec.update);
    if (spec.timeout !== undefined) checkDuration('mapWithState timeout', spec.timeout);
    const partitions = checkPartitions('mapWithState', spec.partitions ?? this.graph.defaultPartitions);
    const moved = this.#shuffle('mapWithState.partition', [this as DStream<unknown>], partitionByKeyShuffle(), partitions);
    const stream = statefulStream<M>(moved, 'mapWithState', mapWithStateSpec(spec), this.node.slideMs, {
      timeout: spec.timeout ?? 0,
    });
    return new MapWithStateDStream<K, S, M>(stream.graph, stream.node);
  }

  // ---- settings -----------------------------------------------------------------

  /** Sets how often this stream's state is checkpointed (a multiple of its slide). */
  checkpoint(intervalMs: number): this {
    this.graph.assertOpen('checkpoint');
    checkMultiple(`checkpoint interval of ${this.node.name}`, intervalMs, 'its slide', this.node.slideMs);
    this.node.checkpointIntervalMs = intervalMs;
    return this;
  }

  /**
   * What a record this operator's function throws on does, overriding the app's
   * `onRecordError`: `fail` fails the batch, `dead-letter` sets the record aside (see
   * {@link StreamingContextConfig.onRecordError}).
   */
  onRecordError(policy: RecordErrorPolicy): this {
    this.graph.assertOpen('onRecordError');
    checkRecordErrorPolicy(`onRecordError of ${this.node.name}`, policy);
    this.node.recordErrors = policy;
    return this;
  }

  /** Names this operator stably, so that it may be matched across app upgrades. */
  uid(name: string): this {
    this.graph.assertOpen('uid');
    if (typeof name !== 'string' || name.length === 0) throw new InvalidGraphError('uid must be a non-empty string');
    this.node.uid = name;
    this.node.name = name;
    return this;
  }

  // ---- outputs ------------------------------------------------------------------

  /** Prints the first `n` records of every batch, Spark's way. */
  print(n = 10): void {
    // A negative count would make slice() drop records from the end instead.
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidGraphError(`print needs a whole number >= 0 of records, got ${n}`);
    this.graph.addOutput(this.node, 'print', (records, time) => {
      process.stdout.write(formatPrint(records, time, n));
    });
  }

  /** Calls `f` with every batch (`[]` when empty); a returned promise is awaited. */
  foreachBatch(f: (records: T[], time: number) => void | Promise<void>): void {
    this.graph.addOutput(this.node, 'foreachBatch', (records, time) => f(records as T[], time));
  }

  /**
   * Publishes every record to a JetStream subject with message ids derived from the
   * app, this output, the batch time and the record's position: a batch re-run after
   * a crash adds no duplicates (exactly-once end to end within the stream's
   * duplicate window). Uses the context's NATS connection.
   */
  toJetStream(subject: string, options: ToJetStreamOptions<T> = {}): void {
    if (typeof subject !== 'string' || subject.length === 0 || /[\s*>]/.test(subject)) {
      throw new InvalidGraphError(`toJetStream needs a subject without spaces or wildcards, got ${JSON.stringify(subject)}`);
    }
    const graph = this.graph;
    let name = '';
    graph.addOutput(
      this.node,
      'toJetStream',
      jetStreamSink(
        () => graph.nats(),
        subject,
        graph.appName,
        () => name,
        options,
      ),
    );
    name = (graph.outputs[graph.outputs.length - 1] as { name: string }).name;
  }

  /**
   * Writes every batch to the directory `<prefix>-<timeMs>[.<suffix>]`, one record a
   * line in `part-00000`, through a temp directory renamed into place, so a reader
   * never sees half a batch and a re-run batch replaces its own output.
   */
  saveAsTextFiles(prefix: string, suffix?: string): void {
    this.graph.addOutput(this.node, 'saveAsTextFiles', async (records, time) => {
      const target = `${prefix}-${time}${suffix ? `.${suffix}` : ''}`;
      const temp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}`);
      await fs.rm(temp, { recursive: true, force: true });
      await fs.mkdir(temp, { recursive: true });
      const text = records.map((r) => `${formatRecord(r)}\n`).join('');
      const handle = await fs.open(path.join(temp, 'part-00000'), 'w');
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.writeFile(path.join(temp, '_SUCCESS'), '');
      await fs.rm(target, { recursive: true, force: true });
      await fs.rename(temp, target);
    });
  }

  // ---- helpers ------------------------------------------------------------------

  #narrow<U>(operator: string, narrow: NarrowOp): DStream<U> {
    const node = this.graph.add({
      kind: 'narrow',
      operator,
      narrow,
      parents: [this.node],
      slideMs: this.node.slideMs,
      partitions: this.node.partitions,
    });
    return new DStream<U>(this.graph, node);
  }

  #shuffle<U>(operator: string, parents: DStream<unknown>[], shuffle: ShuffleSpec, partitions: number): DStream<U> {
    checkSameGraph(this.graph, parents, operator);
    checkSameSlide(parents, operator);
    const node = this.graph.add({
      kind: 'shuffle',
      operator,
      shuffle,
      parents: parents.map((p) => p.node),
      slideMs: this.node.slideMs,
      partitions,
      params: { partitions },
    });
    return new DStream<U>(this.graph, node);
  }

  #keyed<U>(operator: string, shuffle: ShuffleSpec, options: PartitionOptions): DStream<U> {
    const partitions = checkPartitions(operator, options.partitions ?? this.graph.defaultPartitions);
    return this.#shuffle(operator, [this as DStream<unknown>], shuffle, partitions);
  }

  #joined<U>(operator: string, other: DStream<unknown>, options: PartitionOptions, keepLeft: boolean, keepRight: boolean): DStream<U> {
    const grouped = (this as unknown as DStream<[unknown, unknown]>).cogroup(other as DStream<[unknown, unknown]>, options);
    const pairUp = ([k, [vs, ws]]: [unknown, [unknown[], unknown[]]]) => {
      const out: [unknown, [unknown, unknown]][] = [];
      if (vs.length === 0) {
        if (keepRight) for (const w of ws) out.push([k, [undefined, w]]);
      } else if (ws.length === 0) {
        if (keepLeft) for (const v of vs) out.push([k, [v, undefined]]);
      } else {
        for (const v of vs) for (const w of ws) out.push([k, [v, w]]);
      }
      return out;
    };
    return grouped.#narrow<U>(operator, flatMapOp(pairUp, operator));
  }
}

/**
 * The stream returned by `mapWithState`: the mapped records, plus the whole state
 * on demand.
 */
export class MapWithStateDStream<K, S, M> extends DStream<M> {
  /** Every `[key, state]` pair after each batch. */
  stateSnapshots(): DStream<[K, S]> {
    const parent = this.node;
    if (parent.kind === 'stateful') parent.snapshotsWanted = true;
    const node = this.graph.add({
      kind: 'state-view',
      operator: 'stateSnapshots',
      parents: [parent],
      slideMs: parent.slideMs,
      partitions: parent.partitions,
    });
    return new DStream<[K, S]>(this.graph, node);
  }
}

function groupShuffle<V>(): ShuffleSpec {
  return combineByKeyShuffle<V, V[]>(
    (v) => [v],
    (c, v) => {
      c.push(v);
      return c;
    },
    (a, b) => a.concat(b),
    true,
  );
}

function checkPartitions(operator: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new InvalidGraphError(`${operator}: partitions must be a positive whole number, got ${String(n)}`);
  }
  return n;
}

function checkSameGraph(graph: GraphBuilder, streams: DStream<unknown>[], operator: string): void {
  for (const s of streams) {
    if (s.graph !== graph) throw new InvalidGraphError(`${operator}: streams of different StreamingContexts cannot be combined`);
  }
}

function checkSameSlide(streams: DStream<unknown>[], operator: string): void {
  const first = streams[0];
  for (const s of streams) {
    if (first !== undefined && s.node.slideMs !== first.node.slideMs) {
      throw new InvalidGraphError(
        `${operator}: all streams must have the same slide duration (${first.node.name}: ${first.node.slideMs} ms, ${s.node.name}: ${s.node.slideMs} ms)`,
      );
    }
  }
}

function checkWindow(parent: GraphNode, operator: string, windowMs: number, slideMs: number): void {
  checkMultiple(`${operator} window`, windowMs, `the parent slide of ${parent.name}`, parent.slideMs);
  checkMultiple(`${operator} slide`, slideMs, `the parent slide of ${parent.name}`, parent.slideMs);
}

function windowStream<T>(parent: DStream<T>, operator: string, windowMs: number, slideMs: number): DStream<T> {
  checkWindow(parent.node, operator, windowMs, slideMs);
  return statefulStream<T>(parent as DStream<unknown>, operator, windowSpec(windowMs), slideMs, { windowMs, slideMs });
}

function statefulStream<U>(
  parent: DStream<unknown>,
  operator: string,
  stateful: StatefulSpec,
  slideMs: number,
  params: Record<string, number | string | boolean>,
): DStream<U> {
  const node = parent.graph.add({
    kind: 'stateful',
    operator,
    stateful,
    snapshotsWanted: false,
    parents: [parent.node],
    slideMs,
    partitions: parent.node.partitions,
    params,
  });
  return new DStream<U>(parent.graph, node);
}

/** @internal `ssc.transform` and `DStream.transform(With)`. */
export function transformStreams<U>(
  graph: GraphBuilder,
  streams: DStream<unknown>[],
  operator: string,
  f: (batches: unknown[][], time: number) => U[],
): DStream<U> {
  if (streams.length === 0) throw new InvalidGraphError(`${operator} needs at least one stream`);
  checkSameGraph(graph, streams, operator);
  checkSameSlide(streams, operator);
  const first = streams[0] as DStream<unknown>;
  const node = graph.add({
    kind: 'whole',
    operator,
    whole: (batches: unknown[][], time: number) => checkArray(operator, f(batches, time)),
    parents: streams.map((s) => s.node),
    slideMs: first.node.slideMs,
    partitions: graph.defaultPartitions,
  });
  return new DStream<U>(graph, node);
}

/** @internal `ssc.union` and `DStream.union`. */
export function unionStreams<T>(graph: GraphBuilder, streams: DStream<T>[]): DStream<T> {
  return transformStreams<T>(graph, streams as DStream<unknown>[], 'union', (batches) => concatAll(batches) as T[]);
}

/**
 * Refuses a record-error policy other than `fail` or `dead-letter` (undefined is the default).
 *
 * @example
 * checkRecordErrorPolicy('onRecordError', config.onRecordError);
 */
export function checkRecordErrorPolicy(what: string, policy: unknown): void {
  if (policy !== undefined && policy !== 'fail' && policy !== 'dead-letter')
    throw new InvalidConfigError(`${what} must be 'fail' or 'dead-letter', got ${JSON.stringify(policy)}`);
}
