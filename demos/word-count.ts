/**
 * Word count on a built-in deterministic text generator: per-batch counts, the
 * top words of a sliding 10 s window (incremental, with an inverse reduce) and
 * running totals kept with updateStateByKey.
 *
 *   npx tributary run demos/word-count.ts [--forever] [-- <ratePerSecond>]
 */
import { defineApp, StreamingContext, seconds } from '../runtime/index.ts';

type Pair = [string, number];

function top(pairs: Pair[], n: number): string {
  return [...pairs]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .map(([w, c]) => `${w}=${c}`)
    .join(' ');
}

export default defineApp(({ args }) => {
  const rate = Number(args[0] ?? 2000);
  const ssc = new StreamingContext({ appName: 'word-count', batchDuration: seconds(1), partitions: 2 });
  ssc.checkpoint('.tributary/word-count');
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
  return ssc;
});
