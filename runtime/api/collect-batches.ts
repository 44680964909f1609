/**
 * A test helper that records every batch of a stream, as Spark's TestOutputStream.
 */
import type { DStream } from './dstream.ts';

/** One recorded batch. */
export interface CollectedBatch<T> {
  /** The batch time. */
  readonly time: number;
  /** The batch's records, copied. */
  readonly records: T[];
}

/**
 * Registers an output on `stream` that appends each batch to the returned array.
 *
 * @example
 * const out = collectBatches(counts);
 * await ssc.start(); await ssc.runBatches(3);
 * out.map((b) => b.records)
 */
export function collectBatches<T>(stream: DStream<T>): CollectedBatch<T>[] {
  const batches: CollectedBatch<T>[] = [];
  stream.foreachBatch((records, time) => {
    batches.push({ time, records: [...records] });
  });
  return batches;
}
