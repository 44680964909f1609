/**
 * Benchmark 2: reduceByKeyAndWindow with an inverse function over 100k distinct
 * keys, every batch touching every key. With the inverse, a slide costs what the
 * entering and leaving batches cost, so a 30-batch window should cost about what a
 * 3-batch window costs. Per-batch time is the wall time of `runBatches(1)` plus the
 * state commit nact runs right after it (BatchInfo.processingMs, which leaves the
 * commit out, is shown too), taken only from batches after the window filled (after
 * batch 30 for the 30-batch window).
 */
import { StreamingContext } from '../runtime/api/index.ts';
import { ManualClock } from '../runtime/api/testing.ts';
import { ms, type Row, ratio, targetRow } from './table.ts';
import { fullGc, median, progress, quietLogger, runOneBatch, settle } from './util.ts';

/** Sizes of the windowed benchmark. */
export interface WindowedConfig {
  readonly keys: number;
  readonly windows: readonly [number, number];
  /** Batches measured after the window filled. */
  readonly measured: number;
  readonly runs: number;
  readonly partitions: number;
}

export const WINDOWED_DEFAULTS: WindowedConfig = {
  keys: 100_000,
  windows: [3, 30],
  measured: 12,
  runs: 3,
  partitions: 2,
};

const BATCH_MS = 1000;

interface BatchTimes {
  /** Wall time of each measured batch, its state commit included. */
  readonly wall: number[];
  /** BatchInfo.processingMs of each measured batch (the commit runs after it). */
  readonly processing: number[];
}

/** One run: `skip` batches to fill the window, then `measured` batches timed one by one. */
async function runWindow(
  batch: readonly [string, number][],
  windowBatches: number,
  skip: number,
  measured: number,
  partitions: number,
): Promise<BatchTimes> {
  const total = skip + measured;
  const queue = Array.from({ length: total }, () => batch);
  const ssc = new StreamingContext({
    appName: 'bench-window',
    batchDuration: BATCH_MS,
    partitions,
    clock: new ManualClock(),
    logger: quietLogger,
  });
  let lastSize = -1;
  let processingMs = Number.NaN;
  ssc
    .queueStream(queue)
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      windowBatches * BATCH_MS,
      BATCH_MS,
    )
    .foreachBatch((records) => {
      lastSize = records.length;
    });
  ssc.addStreamingListener({
    onBatchCompleted(info) {
      processingMs = info.processingMs;
    },
  });
  const times: BatchTimes = { wall: [], processing: [] };
  await ssc.start();
  for (let i = 1; i <= total; i++) {
    const wall = await runOneBatch(ssc);
    if (i > skip) {
      times.wall.push(wall);
      times.processing.push(processingMs);
    }
  }
  await ssc.stop();
  await settle();
  if (lastSize !== batch.length) throw new Error(`windowed: expected ${batch.length} keys in the window, got ${lastSize}`);
  return times;
}

/** Runs benchmark 2 and returns its table rows. */
export async function benchWindowed(cfg: WindowedConfig = WINDOWED_DEFAULTS): Promise<Row[]> {
  const name = '2. reduceByKeyAndWindow';
  const batch: [string, number][] = [];
  for (let i = 0; i < cfg.keys; i++) batch.push([`k${i}`, 1]);
  const [small, large] = cfg.windows;

  progress(`${name}: warm-up (window ${small}, ${small + 3} batches)`);
  await runWindow(batch, small, small, 3, cfg.partitions);

  const all: Record<number, BatchTimes> = { [small]: { wall: [], processing: [] }, [large]: { wall: [], processing: [] } };
  for (let run = 1; run <= cfg.runs; run++) {
    for (const w of [small, large]) {
      progress(`${name}: run ${run}/${cfg.runs}, window ${w} (${w} batches to fill it, then ${cfg.measured} measured)`);
      fullGc();
      const times = await runWindow(batch, w, w, cfg.measured, cfg.partitions);
      all[w]?.wall.push(...times.wall);
      all[w]?.processing.push(...times.processing);
    }
  }
  const a = all[small] as BatchTimes;
  const b = all[large] as BatchTimes;
  const value = (t: BatchTimes) => `${ms(median(t.wall))} (max ${ms(Math.max(...t.wall))}; processingMs ${ms(median(t.processing))})`;
  return [
    {
      bench: name,
      measure: `${cfg.keys / 1000}k keys, batches of ${cfg.keys / 1000}k [key, 1], slide 1; median of ${cfg.runs} runs x ${cfg.measured} batches`,
      value: '',
    },
    { bench: name, measure: `per-batch time incl. commit, window = ${small}`, value: value(a) },
    { bench: name, measure: `per-batch time incl. commit, window = ${large}`, value: value(b) },
    targetRow(name, `window ${large} / window ${small}`, median(b.wall) / median(a.wall), { op: '<=', limit: 1.3 }, ratio),
    {
      bench: name,
      measure: `same ratio on BatchInfo.processingMs`,
      value: '',
      ratio: ratio(median(b.processing) / median(a.processing)),
    },
  ];
}
