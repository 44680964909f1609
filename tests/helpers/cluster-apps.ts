/**
 * Apps the cluster tests run both in one process and on worker processes, built
 * the same way in both (the same module is what `tributary worker` loads):
 *
 *   tributary worker tests/helpers/cluster-apps.ts --nats <url> -- <app> [<checkpoint>]
 *
 * - `windowed`: word count with a sliding window (inverse reduce) and running
 *   totals kept by updateStateByKey (uid `totals`);
 * - `join`: two keyed generator streams joined, and a leftOuterJoin;
 * - `sessions`: mapWithState with a timeout, and its stateSnapshots;
 * - `scaled`: a CPU-bound user function (`--cost-us` per record) and a keyed reduce (benchmarks).
 *
 * Set CLUSTER_APP_LOG=info to see the engine's log lines (on stderr) when a test fails.
 *
 * Outputs run on the driver: the driver's copy reports every batch's records to
 * `emit` (tests); a worker's copy never runs them.
 */
import type { Logger } from 'pino';
import { pino } from 'pino';
import { type Clock, defineApp, type State, StreamingContext, type StreamingContextConfig } from '../../runtime/api/index.ts';

export type ClusterAppName = 'windowed' | 'join' | 'sessions' | 'scaled' | 'windowed-other' | 'socket';

export const BATCH_MS = 1000;

/** How a test builds an app. */
export interface ClusterAppOptions {
  readonly clock?: Clock;
  readonly checkpoint?: string;
  readonly emit?: (output: string, time: number, records: unknown[]) => void;
  readonly logger?: Logger;
  readonly partitions?: number;
  /** `scaled` only: microseconds of CPU per record, and lines per second. */
  readonly costUs?: number;
  readonly rate?: number;
  /** `socket` only: the port of the line server on 127.0.0.1. */
  readonly port?: number;
  readonly batchMs?: number;
}

function spin(us: number): number {
  const end = performance.now() + us / 1000;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
}

/**
 * Builds app `name`.
 *
 * @example
 * const ssc = buildClusterApp('windowed', { clock, emit: (o, t, r) => seen.push([o, t, r]) });
 */
export function buildClusterApp(name: ClusterAppName, o: ClusterAppOptions = {}): StreamingContext {
  const config: StreamingContextConfig = {
    appName: `cluster-${name === 'windowed-other' ? 'windowed' : name}`,
    batchDuration: o.batchMs ?? BATCH_MS,
    partitions: o.partitions ?? 6,
    logger: o.logger ?? pino({ level: process.env.CLUSTER_APP_LOG ?? 'silent' }, pino.destination(2)),
    ...(o.clock ? { clock: o.clock } : {}),
  };
  const ssc = new StreamingContext(config);
  if (o.checkpoint) ssc.checkpoint(o.checkpoint);
  // Run by `tributary run`: one line per output and batch on stdout.
  const emit =
    o.emit ??
    ((output: string, time: number, records: unknown[]) => {
      let sum = 0;
      for (const r of records) if (Array.isArray(r) && typeof r[1] === 'number') sum += r[1];
      process.stdout.write(`out ${output} ${time} ${records.length} ${sum}\n`);
    });
  const words = (seed: number, rate: number) =>
    ssc
      .generatorStream({ ratePerSecond: rate, seed })
      .flatMap((l) => l.split(' '))
      .map((w) => [w, 1] as [string, number]);
  switch (name) {
    case 'windowed':
    case 'windowed-other': {
      const pairs = words(11, 40);
      pairs
        .reduceByKeyAndWindow(
          (a, b) => a + b,
          (a, b) => a - b,
          3 * BATCH_MS,
          BATCH_MS,
        )
        .foreachBatch((r, t) => emit('window', t, r));
      pairs
        .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((a, b) => a + b, 0))
        .uid('totals')
        .foreachBatch((r, t) => emit('totals', t, r));
      // A graph that differs from `windowed` in one operator (the refusal test).
      if (name === 'windowed-other') pairs.count().foreachBatch((r, t) => emit('count', t, r));
      break;
    }
    case 'join': {
      const left = words(21, 30).map(([w]) => [w.slice(0, 2), w.length] as [string, number]);
      const right = words(22, 30).map(([w]) => [w.slice(0, 2), w] as [string, string]);
      left
        .join(right)
        .map(([k, [n, w]]) => `${k}:${n}:${w}`)
        .foreachBatch((r, t) => emit('join', t, r));
      left
        .leftOuterJoin(right.window(2 * BATCH_MS, BATCH_MS))
        .count()
        .foreachBatch((r, t) => emit('left-outer-count', t, r));
      break;
    }
    case 'sessions': {
      const pairs = words(31, 25).filter(([w]) => w.length > 3);
      const spec = {
        update: (key: string, value: number | undefined, state: State<number>) => {
          if (state.isTimingOut()) return `${key} timed out at ${state.get()}`;
          const n = (state.exists() ? state.get() : 0) + (value ?? 0);
          state.update(n);
          return `${key}=${n}`;
        },
        timeout: 2 * BATCH_MS,
      };
      const mapped = pairs.mapWithState(spec).uid('sessions');
      mapped.foreachBatch((r, t) => emit('sessions', t, r));
      mapped.stateSnapshots().foreachBatch((r, t) => emit('snapshots', t, r));
      break;
    }
    case 'socket': {
      ssc
        .socketTextStream('127.0.0.1', o.port ?? 0)
        .flatMap((l) => l.split(' '))
        .map((w) => [w, 1] as [string, number])
        .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((a, b) => a + b, 0))
        .uid('totals')
        .foreachBatch((r, t) => emit('totals', t, r));
      break;
    }
    case 'scaled': {
      const cost = o.costUs ?? 20;
      ssc
        .generatorStream({ ratePerSecond: o.rate ?? 1000, seed: 41 })
        .map((line) => {
          spin(cost);
          return [line.length % 97, 1] as [number, number];
        })
        .reduceByKey((a, b) => a + b)
        .foreachBatch((r, t) => emit('scaled', t, r));
      break;
    }
  }
  return ssc;
}

export default defineApp(({ args }) => {
  const [name, checkpoint, ...rest] = args;
  const costArg = rest.find((a) => a.startsWith('--cost-us='));
  const rateArg = rest.find((a) => a.startsWith('--rate='));
  const portArg = rest.find((a) => a.startsWith('--port='));
  const batchArg = rest.find((a) => a.startsWith('--batch-ms='));
  return buildClusterApp((name ?? 'windowed') as ClusterAppName, {
    ...(checkpoint && checkpoint !== '-' ? { checkpoint } : {}),
    ...(costArg ? { costUs: Number(costArg.slice('--cost-us='.length)) } : {}),
    ...(rateArg ? { rate: Number(rateArg.slice('--rate='.length)) } : {}),
    ...(portArg ? { port: Number(portArg.slice('--port='.length)) } : {}),
    ...(batchArg ? { batchMs: Number(batchArg.slice('--batch-ms='.length)) } : {}),
  });
});
