/**
 * The app of the cluster benchmark, loaded by the driver (the benchmark process)
 * and by each `tributary worker bench/cluster-app.ts --nats <url> -- <kind>`:
 *
 * - `cpu`: a user function that burns COST_US of CPU per record, then a keyed
 *   reduce over 97 keys: the work spreads over the workers' cores;
 * - `words`: the stateless word count of benchmark 1 (flatMap split, map, reduceByKey):
 *   little work per record, so it shows what the data plane costs.
 */
import { pino } from 'pino';
import { type Clock, defineApp, StreamingContext, textLine } from '../runtime/api/index.ts';

export type BenchAppKind = 'cpu' | 'words';

export const BATCH_MS = 1000;
/** CPU per record of the `cpu` app. */
export const COST_US = 20;
/** Partitions: a multiple of the worker counts compared (1 and 2). */
export const PARTITIONS = 4;

function spin(us: number): number {
  const end = performance.now() + us / 1000;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
}

/**
 * Builds the benchmark app; `rate` records a batch.
 *
 * @example
 * const ssc = buildBenchApp('cpu', 4000, { clock, emit });
 */
export function buildBenchApp(
  kind: BenchAppKind,
  rate: number,
  o: { readonly clock?: Clock; readonly emit?: (time: number, records: unknown[]) => void } = {},
): StreamingContext {
  const ssc = new StreamingContext({
    appName: `bench-${kind}`,
    batchDuration: BATCH_MS,
    partitions: PARTITIONS,
    logger: pino({ level: 'silent' }),
    ...(o.clock ? { clock: o.clock } : {}),
  });
  const emit = o.emit ?? (() => {});
  if (kind === 'cpu') {
    ssc
      .generatorStream({ ratePerSecond: rate, seed: 5 })
      .map((line) => {
        spin(COST_US);
        return [line.length % 97, 1] as [number, number];
      })
      .reduceByKey((a, b) => a + b)
      .foreachBatch((r, t) => emit(t, r));
  } else {
    ssc
      .generatorStream({
        ratePerSecond: rate,
        seed: 42,
        record: (seq, seed) => textLine(seq, seed, { vocabulary: 10_000, wordsPerLine: 8 }),
      })
      .flatMap((l) => l.split(' '))
      .map((w) => [w, 1] as [string, number])
      .reduceByKey((a, b) => a + b)
      .foreachBatch((r, t) => emit(t, r));
  }
  return ssc;
}

export default defineApp(({ args }) => buildBenchApp((args[0] ?? 'cpu') as BenchAppKind, Number(args[1] ?? 4000)));
