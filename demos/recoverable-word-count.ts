/**
 * Spark's RecoverableNetworkWordCount: words from a socket, running totals and a
 * 30 s window, recovered from the checkpoint after any crash.
 *
 *   nc -lk 9999 &    # or any line server
 *   npx tributary run demos/recoverable-word-count.ts --forever -- 127.0.0.1 9999 ./checkpoints/rwc
 *
 * Kill it with `kill -9`, start it again with the same arguments: the totals carry on
 * from the last checkpoint and nothing the receiver accepted is lost.
 */
import { defineApp, StreamingContext, seconds } from '../runtime/api/index.ts';

type Pair = [string, number];

/** The app's graph; `onTotals` sees the running totals of every batch. */
export function buildRecoverableWordCount(host: string, port: number, onTotals?: (totals: Pair[], time: number) => void): StreamingContext {
  const ssc = new StreamingContext({ appName: 'recoverable-word-count', batchDuration: seconds(1) });
  const words = ssc
    .socketTextStream(host, port)
    .flatMap((line) => line.split(/\s+/).filter((w) => w.length > 0))
    .map((w): Pair => [w, 1]);
  const totals = words
    .updateStateByKey<string, number, number>((values, state) => (state ?? 0) + values.reduce((a, b) => a + b, 0))
    .uid('totals');
  const windowed = words
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      seconds(30),
      seconds(10),
      { filter: ([, n]) => n > 0 },
    )
    .uid('last-30s');
  totals.foreachBatch((pairs, time) => {
    onTotals?.(pairs, time);
    const top = [...pairs].sort((a, b) => b[1] - a[1]).slice(0, 5);
    process.stdout.write(`[${time}] totals: ${top.map(([w, n]) => `${w}=${n}`).join(' ')}\n`);
  });
  windowed.foreachBatch((pairs, time) => {
    process.stdout.write(`[${time}] last 30 s: ${pairs.length} distinct words\n`);
  });
  return ssc;
}

export default defineApp(({ args }) => {
  const [host = '127.0.0.1', port = '9999', checkpoint = './checkpoints/recoverable-word-count'] = args.filter((a) => !a.startsWith('--'));
  return StreamingContext.getOrCreate(checkpoint, () => buildRecoverableWordCount(host, Number(port)));
});
