/**
 * Trending topics on JetStream: reads tags from a stream, counts them over a
 * sliding 60 s window with an inverse reduce (each slide costs what enters and
 * leaves, not the window), and publishes the top N every 10 s with `toJetStream`,
 * exactly once end to end (message ids dedupe a batch re-run after a crash).
 *
 *   npx tributary run demos/jetstream-trending.ts --forever -- nats://127.0.0.1:4222 TAGS trending.top
 *
 * Publish tags as JSON to the stream's subjects, e.g. {"tag": "nats"}; results are
 * JSON `{ time, top: [[tag, count], ...] }` on the output subject (which a stream
 * must capture).
 */
import { defineApp, StreamingContext, seconds } from '../runtime/api/index.ts';

/** The app's graph. */
export function buildTrending(url: string, stream: string, output: string, topN = 10): StreamingContext {
  const ssc = new StreamingContext({ appName: 'jetstream-trending', batchDuration: seconds(2), nats: { url } });
  ssc.checkpoint(url);
  ssc
    .jetstreamStream<{ tag?: unknown }>({ stream, decoder: 'json' })
    .filter((e) => typeof e.tag === 'string')
    .map((e) => [e.tag as string, 1] as [string, number])
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      seconds(60),
      seconds(10),
      { filter: ([, n]) => n > 0 },
    )
    .uid('tag-counts')
    .transform((pairs, time) => [{ time, top: [...pairs].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, topN) }])
    .toJetStream(output);
  return ssc;
}

export default defineApp(({ args }) => {
  const [url = 'nats://127.0.0.1:4222', stream = 'TAGS', output = 'trending.top'] = args.filter((a) => !a.startsWith('--'));
  return StreamingContext.getOrCreate(url, () => buildTrending(url, stream, output));
});
