/**
 * The demos as a user runs them: the embedded HTTP app answers from live state,
 * the recoverable word count keeps its totals across a crash on a real socket,
 * and jetstream-trending publishes one top-N per window slide, exactly once across
 * a crash, against a real nats-server. Tests wait on listener events, HTTP
 * responses and NATS messages; contexts, servers and directories are stopped or
 * removed in teardown.
 */
import * as net from 'node:net';
import * as path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import anyTest, { type TestFn } from 'ava';
import { startEmbeddedApp } from '../../demos/embedded-app.ts';
import { buildTrending } from '../../demos/jetstream-trending.ts';
import { buildRecoverableWordCount } from '../../demos/recoverable-word-count.ts';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { TempDirs } from '../helpers/checkpoint-kit.ts';
import { Collector, publishAll, readStream, Tally, text } from '../helpers/nats-kit.ts';
import { connectTo, type NatsServer, startNatsServer } from '../helpers/nats-server.ts';

interface Ctx {
  dirs: TempDirs;
  /** Teardown steps, run last first; a test pushes to the array (ava clones the context object, not the array). */
  stops: (() => Promise<unknown> | unknown)[];
}

const test = anyTest as TestFn<Ctx>;

test.before((t) => {
  t.context = { dirs: new TempDirs(), stops: [] };
});

test.after.always(async (t) => {
  // Last registered first: contexts before the servers they use.
  for (const stop of t.context.stops.reverse()) await Promise.resolve(stop()).catch(() => {});
  await t.context.dirs.removeAll();
});

/** Word counts of lines, the oracle of the word-count demos. */
function countWords(lines: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) for (const w of line.split(/\s+/).filter((x) => x.length > 0)) counts.set(w, (counts.get(w) ?? 0) + 1);
  return counts;
}

/** Map entries sorted by key, for comparisons that ignore insertion order. */
const sorted = (m: ReadonlyMap<string, number>): [string, number][] => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

test('embedded-app - GET /counts/:word answers what was POSTed once a batch completed', async (t) => {
  const app = await startEmbeddedApp({ port: 0, batchDurationMs: 50 });
  t.context.stops.push(() => app.close());
  const processed = new Tally();
  app.ssc.addStreamingListener({ onBatchCompleted: (info) => processed.add(info.records) });
  const posted = ['to be or not to be', 'be quick'];
  const res = await fetch(`${app.url}/lines`, { method: 'POST', body: `${posted.join('\n')}\n` });
  t.is(res.status, 202);
  t.deepEqual(await res.json(), { accepted: 2 });
  // Both lines are in a completed batch: the state read now must count them.
  await processed.until(2);
  const oracle = countWords(posted);
  for (const word of [...oracle.keys(), 'absent']) {
    const answer = await fetch(`${app.url}/counts/${encodeURIComponent(word)}`);
    t.is(answer.status, 200);
    t.deepEqual(await answer.json(), { word, count: oracle.get(word) ?? 0 });
  }
  const more = await fetch(`${app.url}/lines`, { method: 'POST', body: 'be\n\nbe\n' });
  t.deepEqual(await more.json(), { accepted: 2 }, 'empty lines are not records');
  await processed.until(4);
  t.deepEqual(await (await fetch(`${app.url}/counts/be`)).json(), { word: 'be', count: 5 });
  t.is((await fetch(`${app.url}/nowhere`)).status, 404);
});

/** A line server for socketTextStream: remembers its connections, writes to the newest. */
async function lineServer(t: { context: Ctx }) {
  const sockets: net.Socket[] = [];
  const connected = new Tally();
  const server = net.createServer((socket) => {
    sockets.push(socket);
    connected.add();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.context.stops.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    connected,
    send: (line: string) => (sockets.at(-1) as net.Socket).write(`${line}\n`),
  };
}

test('recoverable-word-count - running totals on a real socket survive a crash and resume', async (t) => {
  const dir = path.join(await t.context.dirs.make('rwc'), 'ckpt');
  const lines = await lineServer(t);
  let latest = new Map<string, number>();
  const start = async (clock: ManualClock) => {
    const ssc = await StreamingContext.getOrCreate(
      dir,
      () =>
        buildRecoverableWordCount('127.0.0.1', lines.port, (totals) => {
          latest = new Map(totals);
        }),
      { clock },
    );
    t.context.stops.push(() => ssc.stop());
    const received = new Tally();
    const checkpoints = new Tally();
    ssc.addStreamingListener({
      onRecordsReceived: ({ records }) => received.add(records),
      onCheckpointCompleted: () => checkpoints.add(),
    });
    await ssc.start();
    return { ssc, received, checkpoints };
  };
  const sent: string[] = [];
  /** Sends lines and waits until the receiver accepted them (they then belong to the next batch). */
  const feed = async (received: Tally, batch: readonly string[]) => {
    const before = received.count;
    for (const l of batch) {
      lines.send(l);
      sent.push(l);
    }
    await received.until(before + batch.length);
  };

  const clock = new ManualClock(0);
  const first = await start(clock);
  await lines.connected.until(1);
  await feed(first.received, ['to be or not to be', 'that is the question']);
  await first.ssc.runBatches(1);
  t.deepEqual(sorted(latest), sorted(countWords(sent)));
  // Past the checkpoint at 10 s (Spark's default interval; written in the background), then more input journaled after it.
  await first.ssc.runBatches(10);
  await first.checkpoints.until(1);
  await feed(first.received, ['be quick', 'or be gone']);
  await first.ssc.runBatches(1);
  t.deepEqual(sorted(latest), sorted(countWords(sent)));
  const beforeCrash = new Map(latest);
  first.ssc.crash();

  // The clock keeps its time across the restart; the socket is reconnected.
  const second = await start(new ManualClock(clock.now()));
  await second.ssc.runBatches(0);
  await lines.connected.until(2);
  await second.ssc.runBatches(1);
  t.deepEqual(sorted(latest), sorted(beforeCrash), 'the restored totals are those before the crash');
  await feed(second.received, ['to be continued']);
  await second.ssc.runBatches(1);
  t.deepEqual(sorted(latest), sorted(countWords(sent)));
});

test('jetstream-trending - one top-N per window slide, and a crash and resume add no duplicate result', async (t) => {
  const server: NatsServer = await startNatsServer();
  t.context.stops.push(() => server.shutdown());
  const nc: NatsConnection = await connectTo(server.url);
  t.context.stops.push(() => nc.close());
  const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(nc);
  await jsm.streams.add({ name: 'TAGS', subjects: ['tags.>'] });
  await jsm.streams.add({ name: 'TOP', subjects: ['trending.top'] });
  const published = new Collector(nc, 'trending.top');
  t.context.stops.push(() => published.close());

  const start = async (clock: ManualClock) => {
    const ssc = await StreamingContext.getOrCreate(server.url, () => buildTrending(server.url, 'TAGS', 'trending.top', 2), { clock });
    t.context.stops.push(() => ssc.stop());
    await ssc.start();
    return ssc;
  };
  const tags = (...names: string[]) => names.map((tag) => JSON.stringify({ tag }));
  const clock = new ManualClock(0);
  const ssc = await start(clock);

  await publishAll(nc, 'tags.in', [...tags('nats', 'nats', 'rust', 'go', 'nats', 'rust'), '{"tag": 1}', 'not json']);
  // Five 2 s batches make one 10 s slide: one result, not one per batch.
  await ssc.runBatches(5);
  await published.until(1);
  t.is(ssc.deadLetters, 1, 'the malformed message went to the dead-letter subject');
  await publishAll(nc, 'tags.in', tags('go', 'go', 'go', 'go'));
  await ssc.runBatches(5);
  await published.until(2);
  t.is(published.messages.length, 2);

  // Crash as soon as the third result is out: its batch may not be journaled as completed yet.
  await publishAll(nc, 'tags.in', tags('rust', 'rust'));
  const third = published.until(3).then(() => ssc.crash());
  await ssc.runBatches(5).catch(() => {});
  await third;

  const resumed = await start(new ManualClock(clock.now()));
  await resumed.runBatches(0);
  await publishAll(nc, 'tags.in', tags('zig'));
  await resumed.runBatches(5);
  await published.until(4);

  t.log(`core messages seen: ${published.messages.length}`);
  const results = (await readStream(nc, 'TOP')).map((m) => JSON.parse(text(m.data)) as { time: number; top: [string, number][] });
  t.deepEqual(
    results.map((r) => r.time),
    [10_000, 20_000, 30_000, 40_000],
    'one result per slide, none repeated',
  );
  t.deepEqual(
    results.map((r) => r.top),
    [
      [
        ['nats', 3],
        ['rust', 2],
      ],
      [
        ['go', 5],
        ['nats', 3],
      ],
      [
        ['go', 5],
        ['rust', 4],
      ],
      [
        ['go', 5],
        ['rust', 4],
      ],
    ],
  );
});
