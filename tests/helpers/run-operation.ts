/**
 * Spark's `TestSuiteBase.testOperation` for Tributary: feeds fixed input batches
 * through an operation on a ManualClock and returns what the operation emitted,
 * batch by batch. Operator suites ported from Spark use it so that each test reads
 * as Spark's does: input batches, the operation, the expected output batches.
 */
import { pino } from 'pino';
import type { DStream } from '../../runtime/api/index.ts';
import { StreamingContext } from '../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../runtime/api/testing.ts';

/** Options of {@link runOperation}. */
export interface RunOptions {
  /** Partitions of the inputs and default partitions of keyed operators (Spark's tests use 2). */
  readonly partitions?: number;
  /**
   * Sort every batch's records, for results whose order within a batch is not
   * defined (Spark's tests compare those as sets).
   */
  readonly sorted?: boolean;
}

/** Batch `i` (1-based) of a context started at ManualClock(0) runs at `i * BATCH_MS`. */
export const BATCH_MS = 1000;

const quietLogger = pino({ level: 'silent' });

/**
 * Runs `operation` over one queueStream of `inputBatches` for `numBatches` batches
 * and returns each emitted batch with its time.
 *
 * @example
 * const out = await runOperationBatches([[1], [2]], (s) => s.window(2000, 2000), 2);
 * out // [{ time: 2000, records: [1, 2] }]
 */
export async function runOperationBatches<I, O>(
  inputBatches: readonly (readonly I[])[],
  operation: (input: DStream<I>, ssc: StreamingContext) => DStream<O>,
  numBatches: number,
  options: RunOptions = {},
): Promise<CollectedBatch<O>[]> {
  return runStreams((ssc) => operation(ssc.queueStream<I>(inputBatches), ssc), numBatches, options);
}

/**
 * Runs `operation` over one queueStream of `inputBatches` for `numBatches` batches
 * and returns the records of each emitted batch.
 *
 * @example
 * const out = await runOperation([[1, 2], [3]], (s) => s.map((x) => x * 2), 2);
 * out // [[2, 4], [6]]
 */
export async function runOperation<I, O>(
  inputBatches: readonly (readonly I[])[],
  operation: (input: DStream<I>, ssc: StreamingContext) => DStream<O>,
  numBatches: number,
  options: RunOptions = {},
): Promise<O[][]> {
  const batches = await runOperationBatches(inputBatches, operation, numBatches, options);
  return batches.map((b) => b.records);
}

/**
 * The two-input form (Spark's `testOperation(input1, input2, operation, ...)`), for
 * cogroup, joins and transformWith.
 *
 * @example
 * const out = await runOperation2([['a']], [['a']], (l, r) => l.map((x) => [x, 1] as [string, number]).join(r.map((x) => [x, 'x'] as [string, string])), 1);
 */
export async function runOperation2<I1, I2, O>(
  inputBatches1: readonly (readonly I1[])[],
  inputBatches2: readonly (readonly I2[])[],
  operation: (first: DStream<I1>, second: DStream<I2>, ssc: StreamingContext) => DStream<O>,
  numBatches: number,
  options: RunOptions = {},
): Promise<O[][]> {
  const batches = await runStreams(
    (ssc) => operation(ssc.queueStream<I1>(inputBatches1), ssc.queueStream<I2>(inputBatches2), ssc),
    numBatches,
    options,
  );
  return batches.map((b) => b.records);
}

/**
 * Builds a context with a ManualClock(0), lets `build` declare the streams, collects
 * the returned stream (plus any extra streams `build` registered outputs on), runs
 * `numBatches` batches and stops.
 *
 * @example
 * const out = await runStreams((ssc) => ssc.queueStream([[1]]).count(), 1);
 */
export async function runStreams<O>(
  build: (ssc: StreamingContext) => DStream<O>,
  numBatches: number,
  options: RunOptions = {},
): Promise<CollectedBatch<O>[]> {
  const ssc = new StreamingContext({
    appName: 'run-operation',
    batchDuration: BATCH_MS,
    partitions: options.partitions ?? 2,
    clock: new ManualClock(0),
    logger: quietLogger,
  });
  const collected = collectBatches(build(ssc));
  try {
    await ssc.start();
    await ssc.runBatches(numBatches);
  } finally {
    await ssc.stop();
  }
  if (options.sorted) for (const b of collected) b.records.sort(compareValues);
  return collected;
}

/**
 * A total order on the values tests produce (undefined, null, booleans, numbers,
 * strings, arrays, plain objects), so batches whose order is not defined can be
 * compared with `deepEqual` after sorting.
 *
 * @example
 * [['b', 1], ['a', 10], ['a', 9]].sort(compareValues) // [['a', 9], ['a', 10], ['b', 1]]
 */
export function compareValues(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compareValues(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  if (rank(a) === RANK_OBJECT) {
    const ea = Object.entries(a as object).sort(([x], [y]) => compareValues(x, y));
    const eb = Object.entries(b as object).sort(([x], [y]) => compareValues(x, y));
    return compareValues(ea, eb);
  }
  return 0;
}

const RANK_OBJECT = 6;

function rank(v: unknown): number {
  if (v === undefined) return 0;
  if (v === null) return 1;
  if (typeof v === 'boolean') return 2;
  if (typeof v === 'number') return 3;
  if (typeof v === 'string') return 4;
  if (Array.isArray(v)) return 5;
  return RANK_OBJECT;
}

/**
 * Sorts a copy of `values` with {@link compareValues} (for grouped values, whose
 * order Spark's tests ignore by comparing sets).
 *
 * @example
 * sortedCopy([3, 1, 2]) // [1, 2, 3]
 */
export function sortedCopy<T>(values: readonly T[]): T[] {
  return [...values].sort(compareValues);
}
