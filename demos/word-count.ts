/**
 * Word count on a built-in deterministic text generator: per-batch counts, the
 * top words of a sliding 10 s window (incremental, with an inverse reduce) and
 * running totals kept with updateStateByKey.
 *
 * State is checkpointed to the embedded file journal in `.tributary/word-count`.
 * Each run starts afresh unless given `--resume`: then it continues from the last
 * checkpoint (kill it with `kill -9` and resume to see the totals carry on).
 *
 *   npx tributary run demos/word-count.ts [--forever] [--resume] [<ratePerSecond>]
 */
import { rmSync } from 'node:fs';
import { defineApp, StreamingContext, seconds } from '../runtime/api/index.ts';

const CHECKPOINT_DIR = '.tributary/word-count';

type Pair = [string, number];

function top(pairs: Pair[], n: number): string {
  return [...pairs]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .map(([w, c]) => `${w}=${c}`)
    .join(' ');
}

export default defineApp(async ({ args }) => {
  const resume = args.includes('--resume');
  const rate = Number(args.find((a) => /^\d+$/.test(a)) ?? 2000);
  if (!resume) rmSync(CHECKPOINT_DIR, { recursive: true, force: true });
  return StreamingContext.getOrCreate(CHECKPOINT_DIR, () => build(rate));
});

function build(rate: number): StreamingContext {
  const ssc = new StreamingContext({ appName: 'word-count', batchDuration: seconds(1), partitions: 2 });
  const words = ssc
    .generatorStream({ ratePerSecond: rate, seed: 42 })
    .flatMap((line) => line.split(' '))
    .map((w): Pair => [w, 1]);
  const perBatch = words.reduceByKey((a, b) => a + b);
  const windowed = words
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      seconds(10),
      seconds(2),
      { filter: ([, n]) => n > 0 },
    )
    .uid('window-counts');
  const totals = words.updateStateByKey<string, number, number>((values, state) => (state ?? 0) + values.length).uid('totals');

  perBatch.foreachBatch((pairs, time) => {
    const n = pairs.reduce((s, [, c]) => s + c, 0);
    process.stdout.write(`[${new Date(time).toISOString().slice(11, 19)}] ${n} words, ${pairs.length} distinct | top: ${top(pairs, 3)}\n`);
  });
  windowed.foreachBatch((pairs) => {
    process.stdout.write(`    last 10 s top 5: ${top(pairs, 5)}\n`);
  });
  totals.foreachBatch((pairs) => {
    const n = pairs.reduce((s, [, c]) => s + c, 0);
    process.stdout.write(`    running total: ${n} words, ${pairs.length} distinct | top: ${top(pairs, 3)}\n`);
  });
  ssc.addStreamingListener({
    onCheckpointCompleted: (c) =>
      process.stdout.write(
        `    checkpoint at ${new Date(c.time).toISOString().slice(11, 19)}: ${c.entries} entries, ${c.snapshotBytes} bytes\n`,
      ),
  });
  return ssc;
}
