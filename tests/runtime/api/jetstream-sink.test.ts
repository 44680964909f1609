import { setTimeout as delay } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  BatchFailedError,
  InvalidConfigError,
  InvalidGraphError,
  StreamingContext,
  type ToJetStreamOptions,
} from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { decodeValue } from '../../../runtime/base/cbor.ts';
import { deferred, quiet } from '../../helpers/checkpoint-kit.ts';
import { addStream, Collector, type NatsSuite, natsSuite, readStream, type Stored, text, uniq } from '../../helpers/nats-kit.ts';

const test = natsSuite();

interface Rec {
  readonly b: number;
  readonly r: number;
}

/** `sizes[i]` records in batch i + 1. */
const batchesOf = (sizes: readonly number[]): Rec[][] => sizes.map((n, i) => Array.from({ length: n }, (_, r) => ({ b: i + 1, r })));

/** Hooks into an app run: hold the output after the sink, or crash from the encoder. */
interface Hooks {
  /** The output registered after the sink waits for `open` at batch `at`. */
  readonly gate?: { at: number; entered: () => void; open: Promise<void> };
  /** Called with every record the encoder sees (after the default json encoding). */
  readonly onEncode?: (record: Rec) => void;
}

/** Publishes each batch of `queue` to `subject`, then a foreachBatch output (the hooks). */
function sinkApp(
  t: { context: NatsSuite },
  appName: string,
  subject: string,
  clock: ManualClock,
  queue: readonly Rec[][],
  hooks: Hooks = {},
): StreamingContext {
  const ssc = new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock,
    logger: quiet,
    nats: { url: t.context.server.url },
  });
  t.context.contexts.push(ssc);
  const records = ssc.queueStream(queue);
  const onEncode = hooks.onEncode;
  records.toJetStream(
    subject,
    onEncode
      ? {
          encode: (r) => {
            onEncode(r);
            return new TextEncoder().encode(JSON.stringify(r));
          },
        }
      : {},
  );
  records.foreachBatch((_, time) => {
    const gate = hooks.gate;
    if (gate && time === gate.at) {
      gate.entered();
      return gate.open;
    }
  });
  return ssc;
}

const parsed = (stored: readonly Stored[]): Rec[] => stored.map((m) => JSON.parse(text(m.data)) as Rec);
const byKey = (a: Rec, b: Rec): number => a.b - b.b || a.r - b.r;

/** Runs `queue` without interruption into a new stream; returns what the stream holds. */
async function oracle(t: { context: NatsSuite }, appName: string, queue: readonly Rec[][], batches: number): Promise<Stored[]> {
  const stream = uniq('SINKORACLE');
  await addStream(t.context.nc, stream);
  const ssc = sinkApp(t, appName, `${stream}.out`, new ManualClock(), queue);
  await ssc.start();
  await ssc.runBatches(batches);
  await ssc.stop();
  return readStream(t.context.nc, stream);
}

test('toJetStream - publishes every record of every batch, in order, with app-output-time-index ids', async (t) => {
  t.timeout(60_000);
  const stream = uniq('SINKALL');
  await addStream(t.context.nc, stream);
  const appName = uniq('sink-all');
  // 600 records cross the publish window (256) twice; batch 2 is empty.
  const queue = batchesOf([3, 0, 600, 1]);
  const ssc = sinkApp(t, appName, `${stream}.out`, new ManualClock(), queue);
  await ssc.start();
  await ssc.runBatches(4);
  await ssc.stop();
  const stored = await readStream(t.context.nc, stream);
  t.is(stored.length, 604);
  t.deepEqual(parsed(stored), queue.flat(), 'every record, json by default, in batch and record order');
  const ids = stored.map((m) => /^(.+)-(toJetStream[^-]*)-(\d+)-(\d+)$/.exec(m.msgID ?? ''));
  t.true(
    ids.every((m) => m !== null),
    'every message has a Nats-Msg-Id',
  );
  t.deepEqual(new Set(ids.map((m) => m?.[1])), new Set([appName]));
  t.is(new Set(ids.map((m) => m?.[2])).size, 1, 'one output name');
  t.deepEqual(
    ids.map((m) => [Number(m?.[3]), Number(m?.[4])]),
    queue.flat().map((r) => [r.b * 1000, r.r]),
  );
});

test('toJetStream - encode options: json (default), utf8, cbor and a function', async (t) => {
  t.timeout(30_000);
  const stream = uniq('SINKENC');
  await addStream(t.context.nc, stream);
  const ssc = new StreamingContext({
    appName: uniq('sink-enc'),
    batchDuration: 1000,
    clock: new ManualClock(),
    logger: quiet,
    nats: { url: t.context.server.url },
  });
  t.context.contexts.push(ssc);
  const values: unknown[] = [{ w: 'a', n: 1 }, ['k', 2], 'text', 7];
  const records = ssc.queueStream([values]);
  const encodings: [string, ToJetStreamOptions<unknown>][] = [
    ['default', {}],
    ['json', { encode: 'json' }],
    ['utf8', { encode: 'utf8' }],
    ['cbor', { encode: 'cbor' }],
    ['fn', { encode: (r) => new Uint8Array([typeof r === 'string' ? 1 : 2, ...new TextEncoder().encode(JSON.stringify(r))]) }],
  ];
  for (const [name, options] of encodings) records.toJetStream(`${stream}.${name}`, options);
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  const stored = await readStream(t.context.nc, stream);
  const of = (name: string) => stored.filter((m) => m.subject === `${stream}.${name}`).map((m) => m.data);
  t.deepEqual(
    of('default').map((d) => JSON.parse(text(d))),
    values,
  );
  t.deepEqual(
    of('json').map((d) => JSON.parse(text(d))),
    values,
  );
  t.deepEqual(of('utf8').map(text), values.map(String));
  t.deepEqual(
    of('cbor').map((d) => decodeValue(d)),
    values,
  );
  t.deepEqual(
    of('fn').map((d) => [d[0], JSON.parse(text(d.subarray(1)))]),
    values.map((v) => [typeof v === 'string' ? 1 : 2, v]),
  );
  // Five outputs, five message id prefixes: the same record of two outputs is not a duplicate.
  t.is(new Set(stored.map((m) => m.msgID?.replace(/-\d+-\d+$/, ''))).size, 5);
});

test('toJetStream - bad settings are refused at graph time; no NATS to connect to fails the batch', async (t) => {
  const ssc = new StreamingContext({ appName: uniq('sink-bad'), batchDuration: 1000, clock: new ManualClock(), logger: quiet });
  t.context.contexts.push(ssc);
  const records = ssc.queueStream([[1]]);
  t.throws(() => records.toJetStream('out.*'), { instanceOf: InvalidGraphError });
  t.throws(() => records.toJetStream('out x'), { instanceOf: InvalidGraphError });
  t.throws(() => records.toJetStream('out', { encode: 'xml' as never }), { instanceOf: InvalidConfigError });
  records.toJetStream('out');
  await ssc.start();
  const error = await t.throwsAsync(ssc.runBatches(1), { instanceOf: BatchFailedError });
  t.regex(String((error as { cause?: unknown } | undefined)?.cause), /nats: \{ url \}/);
});

/**
 * The app of `queue` on checkpoint `dir`, crashing from its encoder at record 300 of
 * batch 2: in the second publish window, so the first window is stored by then.
 */
function crashingAtRecord300(
  t: { context: NatsSuite },
  appName: string,
  subject: string,
  clock: ManualClock,
  queue: readonly Rec[][],
  dir: string,
): { ssc: StreamingContext; crashed: ReturnType<typeof deferred> } {
  const crashed = deferred();
  let first: StreamingContext | undefined;
  first = sinkApp(t, appName, subject, clock, queue, {
    onEncode: (r) => {
      if (r.b === 2 && r.r === 300 && first) {
        first.crash();
        first = undefined;
        crashed.resolve();
      }
    },
  });
  first.checkpoint(dir);
  return { ssc: first, crashed };
}

/** Resumes `appName` from `dir`, runs until batch `until`, and returns the stream's messages. */
async function resume(
  t: { context: NatsSuite },
  dir: string,
  appName: string,
  subject: string,
  clock: ManualClock,
  queue: readonly Rec[][],
  until: number,
): Promise<void> {
  const ssc = await StreamingContext.getOrCreate(dir, () => sinkApp(t, appName, subject, clock, queue), { clock });
  await ssc.start();
  await ssc.runBatches(Math.max(0, until - clock.now() / 1000));
  await ssc.stop();
}

/** The checks of a crashed-and-resumed run against the uninterrupted one. */
function sameAsOracle(
  t: { deepEqual(a: unknown, b: unknown, m?: string): void; is(a: unknown, b: unknown, m?: string): void },
  got: Stored[],
  want: Stored[],
): void {
  t.is(got.length, want.length, 'as many messages as the uninterrupted run');
  t.is(new Set(got.map((m) => m.msgID)).size, got.length, 'no message id twice');
  t.deepEqual(parsed(got).sort(byKey), parsed(want).sort(byKey), 'the same records');
  t.deepEqual(got.map((m) => m.msgID).sort(), want.map((m) => m.msgID).sort(), 'the same message ids');
}

test('toJetStream - a crash after the sink ran, before the batch completed: the re-run adds no duplicates', async (t) => {
  t.timeout(60_000);
  const appName = uniq('sink-after');
  const queue = batchesOf([5, 300, 4]);
  const want = await oracle(t, appName, queue, 3);
  t.is(want.length, 309);

  const stream = uniq('SINKAFTER');
  await addStream(t.context.nc, stream);
  const subject = `${stream}.out`;
  const dir = await t.context.dirs.make('sink-after');
  const clock = new ManualClock();
  const entered = deferred();
  const open = deferred();
  const first = sinkApp(t, appName, subject, clock, queue, { gate: { at: 2000, entered: () => entered.resolve(), open: open.promise } });
  first.checkpoint(dir);
  await first.start();
  await first.runBatches(1);
  const stuck = first.runBatches(1).catch(() => {});
  await entered.promise;
  // The sink published all of batch 2; batch.completed is not journaled yet.
  t.is((await readStream(t.context.nc, stream)).length, 305);
  first.crash();
  open.resolve();
  await stuck;

  await resume(t, dir, appName, subject, clock, queue, 3);
  sameAsOracle(t, await readStream(t.context.nc, stream), want);
});

test('toJetStream - a crash inside the sink (from its encoder, mid-batch) and a resume: no duplicates, nothing missing', async (t) => {
  t.timeout(60_000);
  const appName = uniq('sink-inside');
  const queue = batchesOf([2, 700, 3]);
  const want = await oracle(t, appName, queue, 3);

  const stream = uniq('SINKINSIDE');
  await addStream(t.context.nc, stream);
  const subject = `${stream}.out`;
  const dir = await t.context.dirs.make('sink-inside');
  const clock = new ManualClock();
  const { ssc, crashed } = crashingAtRecord300(t, appName, subject, clock, queue, dir);
  // Sees when the crashed sink's run of batch 2 ends (graph is internal; the test only wraps the run).
  const sink = ssc.graph.outputs.find((op) => op.name.startsWith('toJetStream'));
  if (sink === undefined) throw new Error('no toJetStream output');
  const run = sink.run;
  const sinkEnded = deferred<string>();
  (sink as { run: typeof run }).run = (records, time) => {
    const ran = Promise.resolve(run(records, time));
    if (time === 2000)
      ran.then(
        () => sinkEnded.resolve('completed'),
        (e: unknown) => sinkEnded.resolve(`failed: ${String(e)}`),
      );
    return ran;
  };
  await ssc.start();
  await ssc.runBatches(1);
  const stuck = ssc.runBatches(1).catch(() => {});
  await crashed.promise;
  await stuck;
  // A crashed app's sink must not keep publishing on a closed connection (it retried for ~30 s).
  let bound: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    sinkEnded.promise,
    new Promise<string>((resolve) => {
      bound = setTimeout(() => resolve('still retrying after 10 s'), 10_000);
    }),
  ]);
  clearTimeout(bound);
  t.regex(ended, /^failed: /, 'the sink gives up once its connection is closed');
  const partial = (await readStream(t.context.nc, stream)).length;
  t.true(partial >= 2 + 256 && partial < 2 + 700, `part of batch 2 was stored before the crash (${partial})`);

  await resume(t, dir, appName, subject, clock, queue, 3);
  sameAsOracle(t, await readStream(t.context.nc, stream), want);
});

test('toJetStream - a crash while the target stream is receiving the batch: the resume completes it exactly once', async (t) => {
  t.timeout(60_000);
  const appName = uniq('sink-mid');
  const queue = batchesOf([1, 1000, 2]);
  const want = await oracle(t, appName, queue, 3);

  const stream = uniq('SINKMID');
  await addStream(t.context.nc, stream);
  const subject = `${stream}.out`;
  // The test sees what the server stored and pulls the plug once 400 records of batch 2 arrived.
  const watcher = new Collector(t.context.nc, subject);
  t.context.collectors.push(watcher);
  await t.context.nc.flush();
  const dir = await t.context.dirs.make('sink-mid');
  const clock = new ManualClock();
  const entered = deferred();
  const open = deferred();
  // The output after the sink holds batch 2 anyway, so the crash always finds it in flight.
  const first = sinkApp(t, appName, subject, clock, queue, { gate: { at: 2000, entered: () => entered.resolve(), open: open.promise } });
  first.checkpoint(dir);
  await first.start();
  await first.runBatches(1);
  const stuck = first.runBatches(1).catch(() => {});
  await watcher.until(1 + 400);
  first.crash();
  open.resolve();
  await stuck;

  await resume(t, dir, appName, subject, clock, queue, 3);
  watcher.close();
  sameAsOracle(t, await readStream(t.context.nc, stream), want);
});

test('toJetStream - a resume after the duplicate window has passed still publishes nothing twice', async (t) => {
  t.timeout(60_000);
  const appName = uniq('sink-window');
  const queue = batchesOf([2, 700, 3]);
  const want = await oracle(t, appName, queue, 3);

  const stream = uniq('SINKWINDOW');
  const jsm = await jetstreamManager(t.context.nc);
  // The shortest window the server takes (100 ms): the test waits it out before resuming.
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], duplicate_window: 100_000_000 });
  const subject = `${stream}.out`;
  const dir = await t.context.dirs.make('sink-window');
  const clock = new ManualClock();
  const { ssc, crashed } = crashingAtRecord300(t, appName, subject, clock, queue, dir);
  await ssc.start();
  await ssc.runBatches(1);
  const stuck = ssc.runBatches(1).catch(() => {});
  await crashed.promise;
  await stuck;
  const partial = (await readStream(t.context.nc, stream)).length;
  t.true(partial >= 2 + 256 && partial < 2 + 700, `part of batch 2 was stored before the crash (${partial})`);

  // Proof that the window passed: an id published again is stored again (ids older than it are too).
  const js = jetstream(t.context.nc);
  await js.publish(`${stream}.probe`, new Uint8Array(0), { msgID: 'probe' });
  let deduplicated = true;
  for (let attempt = 0; deduplicated && attempt < 500; attempt++) {
    // Polls the server's state (its window timer), bounded at 5 s.
    await delay(10);
    deduplicated = (await js.publish(`${stream}.probe`, new Uint8Array(0), { msgID: 'probe' })).duplicate;
  }
  t.false(deduplicated, 'the duplicate window passed');

  await resume(t, dir, appName, subject, clock, queue, 3);
  const got = (await readStream(t.context.nc, stream)).filter((m) => m.subject === subject);
  sameAsOracle(t, got, want);
});
