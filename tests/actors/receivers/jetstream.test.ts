import { jetstreamManager } from '@nats-io/jetstream';
import type { JournalEvent } from '../../../journal/events.ts';
import { InvalidConfigError, type JetStreamStreamOptions, StreamingContext } from '../../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../../runtime/api/testing.ts';
import { deferred, quiet } from '../../helpers/checkpoint-kit.ts';
import { addStream, bytes, Collector, type NatsSuite, natsSuite, publishAll, readStream, uniq, Watch } from '../../helpers/nats-kit.ts';
import { readJournal } from '../../helpers/recovery-harness.ts';

const test = natsSuite();

/** A context with a ManualClock; NATS from the config unless a nats:// checkpoint gives it. */
function context(t: { context: NatsSuite }, appName: string, clock = new ManualClock(), natsConfig = true): StreamingContext {
  const ssc = new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock,
    logger: quiet,
    ...(natsConfig ? { nats: { url: t.context.server.url } } : {}),
  });
  t.context.contexts.push(ssc);
  return ssc;
}

/** A started context reading one jetstreamStream, collected batch by batch. */
async function started<T = string>(
  t: { context: NatsSuite },
  options: JetStreamStreamOptions<T>,
): Promise<{ ssc: StreamingContext; watch: Watch; out: CollectedBatch<T>[] }> {
  const ssc = context(t, uniq('js-app'));
  const watch = new Watch(ssc);
  const out = collectBatches(ssc.jetstreamStream<T>(options));
  await ssc.start();
  return { ssc, watch, out };
}

const range = (prefix: string, from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`);
const batches = <T>(out: CollectedBatch<T>[]): [number, T[]][] => out.map((b) => [b.time, b.records]);

test('jetstreamStream - reads the stream batch by batch, at most maxPerBatch messages each', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSMAX');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, range('m', 1, 10));
  const { ssc, out } = await started(t, { stream, maxPerBatch: 4 });
  await ssc.runBatches(4);
  await publishAll(t.context.nc, `${stream}.in`, ['m11']);
  await ssc.runBatches(1);
  await ssc.stop();
  const jsm = await jetstreamManager(t.context.nc);
  t.is((await jsm.streams.info(stream)).state.consumer_count, 0, 'no consumer left behind by the batches');
  t.deepEqual(batches(out), [
    [1000, range('m', 1, 4)],
    [2000, range('m', 5, 8)],
    [3000, ['m9', 'm10']],
    [4000, []],
    [5000, ['m11']],
  ]);
});

test('jetstreamStream - a subject filter reads only its subject, within maxPerBatch', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSFILTER');
  await addStream(t.context.nc, stream);
  for (let i = 1; i <= 5; i++) {
    await publishAll(t.context.nc, `${stream}.a`, [`a${i}`]);
    await publishAll(t.context.nc, `${stream}.b`, [`b${i}`]);
  }
  const all = await started(t, { stream, subject: `${stream}.a` });
  await all.ssc.runBatches(1);
  await all.ssc.stop();
  t.deepEqual(all.out[0]?.records, range('a', 1, 5));

  const capped = await started(t, { stream, subject: `${stream}.a`, maxPerBatch: 3 });
  await capped.ssc.runBatches(5);
  await capped.ssc.stop();
  for (const b of capped.out) t.true(b.records.length <= 3, `batch ${b.time} has ${b.records.length} records`);
  t.deepEqual(
    capped.out.flatMap((b) => b.records),
    range('a', 1, 5),
  );
});

test('jetstreamStream - a wildcard filter matches several subjects in stream order', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSWILD');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.x.1`, ['x1']);
  await publishAll(t.context.nc, `${stream}.y.1`, ['y1']);
  await publishAll(t.context.nc, `${stream}.x.2`, ['x2']);
  const { ssc, out } = await started(t, { stream, subject: `${stream}.x.*` });
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['x1', 'x2']);
});

test('jetstreamStream - startAt first (the default) begins at the first message the stream still holds', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSFIRST');
  const jsm = await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, range('m', 1, 5));
  // Keeps messages from seq 3 on (seq 3 > 1, so the guarded purge never empties the stream).
  await jsm.streams.purge(stream, { seq: 3 });
  const { ssc, out } = await started(t, { stream });
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, range('m', 3, 5));
});

test('jetstreamStream - startAt new reads only what arrives after the start', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSNEW');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, ['old1', 'old2']);
  const { ssc, out } = await started(t, { stream, startAt: 'new' });
  await publishAll(t.context.nc, `${stream}.in`, ['new1', 'new2']);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['new1', 'new2']);
});

test('jetstreamStream - startAt a sequence begins at that sequence', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSSEQ');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, range('m', 1, 6));
  const { ssc, out } = await started(t, { stream, startAt: 4, maxPerBatch: 2 });
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(batches(out), [
    [1000, ['m4', 'm5']],
    [2000, ['m6']],
  ]);
});

test('jetstreamStream - an empty stream, a filter matching nothing and a range without matches do not hang', async (t) => {
  t.timeout(30_000);
  const empty = uniq('JSEMPTY');
  await addStream(t.context.nc, empty);
  const a = await started(t, { stream: empty });
  await a.ssc.runBatches(2);
  await a.ssc.stop();
  t.deepEqual(batches(a.out), [
    [1000, []],
    [2000, []],
  ]);

  const stream = uniq('JSNOMATCH');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.b`, ['b1', 'b2', 'b3']);
  await publishAll(t.context.nc, `${stream}.a`, ['a1']);
  const none = await started(t, { stream, subject: `${stream}.zzz` });
  await none.ssc.runBatches(2);
  await none.ssc.stop();
  t.deepEqual(batches(none.out), [
    [1000, []],
    [2000, []],
  ]);
  // The first range (seqs 1-2) holds no match while one lies beyond it (seq 4).
  const later = await started(t, { stream, subject: `${stream}.a`, maxPerBatch: 2 });
  await later.ssc.runBatches(3);
  await later.ssc.stop();
  t.deepEqual(batches(later.out), [
    [1000, []],
    [2000, ['a1']],
    [3000, []],
  ]);
});

test('jetstreamStream - deleted messages inside and at the end of a range are skipped without hanging', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSDELETED');
  const jsm = await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, range('m', 1, 6));
  await jsm.streams.deleteMessage(stream, 2);
  await jsm.streams.deleteMessage(stream, 3);
  await jsm.streams.deleteMessage(stream, 6);
  const { ssc, out } = await started(t, { stream, maxPerBatch: 3 });
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(batches(out), [
    [1000, ['m1']],
    [2000, ['m4', 'm5']],
    [3000, []],
  ]);
});

test('jetstreamStream - each allocation is a journaled sequence range', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSALLOC');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, range('m', 1, 5));
  const dir = await t.context.dirs.make('js-alloc');
  const ssc = context(t, uniq('js-alloc'));
  ssc.checkpoint(dir);
  ssc.jetstreamStream({ stream, maxPerBatch: 2 }).foreachBatch(() => {});
  await ssc.start();
  await ssc.runBatches(4);
  await ssc.stop();
  const allocated = (await readJournal(dir)).filter(
    (e): e is Extract<JournalEvent, { type: 'batch.allocated' }> => e.type === 'batch.allocated',
  );
  const ranges = new Map(allocated.map((e) => [e.time, Object.values(e.inputs)]));
  t.deepEqual(
    [...ranges].sort(([x], [y]) => x - y),
    [
      [1000, [{ type: 'jetstream', stream, from: 1, to: 3 }]],
      [2000, [{ type: 'jetstream', stream, from: 3, to: 5 }]],
      [3000, [{ type: 'jetstream', stream, from: 5, to: 6 }]],
      [4000, [{ type: 'jetstream', stream, from: 6, to: 6 }]],
    ],
  );
});

test('jetstreamStream - undecodable messages go to the dead-letter subject, counted, and the batch goes on', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSDEAD');
  await addStream(t.context.nc, stream);
  const dead = new Collector(t.context.nc, `tributary.${stream}.dead-letter`);
  t.context.collectors.push(dead);
  await t.context.nc.flush();
  const bad = [bytes('{"a":'), bytes('{"a":\n oops}'), new Uint8Array([0x22, 0xff, 0x22])];
  const seqs = await publishAll(t.context.nc, `${stream}.in`, [
    '{"n":1}',
    bad[0] as Uint8Array,
    '{"n":2}',
    bad[1] as Uint8Array,
    bad[2] as Uint8Array,
  ]);
  const { ssc, watch, out } = await started<{ n: number }>(t, { stream, decoder: 'json' });
  await ssc.runBatches(1);
  await publishAll(t.context.nc, `${stream}.in`, ['{"n":3}']);
  await ssc.runBatches(1);
  await dead.until(3);
  await ssc.stop();
  t.deepEqual(batches(out), [
    [1000, [{ n: 1 }, { n: 2 }]],
    [2000, [{ n: 3 }]],
  ]);
  t.is(ssc.deadLetters, 3);
  t.deepEqual(
    watch.deadLetterEvents.map((e) => [e.subject, e.total]),
    [1, 2, 3].map((n) => [`tributary.${stream}.dead-letter`, n]),
  );
  const badSeqs = [seqs[1], seqs[3], seqs[4]].map(String);
  t.deepEqual(
    dead.messages.map((m) => m.headers?.get('Tributary-Stream-Seq')),
    badSeqs,
  );
  dead.messages.forEach((m, i) => {
    t.deepEqual(Buffer.from(m.data), Buffer.from(bad[i] as Uint8Array));
    const error = m.headers?.get('Tributary-Error') ?? '';
    t.true(error.length > 0 && error.length <= 200 && !/[\r\n]/.test(error), JSON.stringify(error));
  });
});

test('jetstreamStream - dead letters that land in the stream being read are not read again', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSDEADIN');
  await addStream(t.context.nc, stream);
  const deadLetterSubject = `${stream}.dead`;
  await publishAll(t.context.nc, `${stream}.in`, ['{"n":1}', '{oops']);
  const { ssc, out } = await started<{ n: number }>(t, { stream, decoder: 'json', deadLetterSubject });
  await ssc.runBatches(1);
  await publishAll(t.context.nc, `${stream}.in`, ['{"n":2}']);
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.flatMap((b) => b.records),
    [{ n: 1 }, { n: 2 }],
  );
  t.is(ssc.deadLetters, 1, 'the dead letter stored in the stream is skipped, not dead-lettered again each batch');
  const subjects = (await readStream(t.context.nc, stream)).map((m) => m.subject);
  t.is(subjects.filter((s) => s === deadLetterSubject).length, 1);
});

test('jetstreamStream - after a graceful stop, a restart goes on where it stopped', async (t) => {
  t.timeout(30_000);
  const stream = uniq('JSSTOP');
  await addStream(t.context.nc, stream);
  await publishAll(t.context.nc, `${stream}.in`, ['a', 'b', 'c']);
  const dir = await t.context.dirs.make('js-stop');
  const appName = uniq('js-stop');
  const clock = new ManualClock();
  const options: JetStreamStreamOptions<string> = { stream, maxPerBatch: 2, startAt: 'new' };
  const before: Recorded = { raw: new Map(), counts: new Map() };
  const first = countingApp(t, appName, options, clock, before, 10_000, true);
  first.checkpoint(dir);
  await first.start();
  await publishAll(t.context.nc, `${stream}.in`, ['d', 'e', 'f']);
  await first.runBatches(1);
  await first.stop();
  await publishAll(t.context.nc, `${stream}.in`, ['g']);
  const after: Recorded = { raw: new Map(), counts: new Map() };
  const ssc = await StreamingContext.getOrCreate(dir, () => countingApp(t, appName, options, clock, after, 10_000, true), { clock });
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(before.raw.get(1000), ['d', 'e']);
  t.deepEqual(after.raw.get(2000), ['f', 'g']);
  t.deepEqual(after.raw.get(3000), []);
  t.deepEqual([...after.counts].sort(), countOf(['d', 'e', 'f', 'g']));
});

test('jetstreamStream - bad settings are refused where they are made; a missing stream fails start()', async (t) => {
  const ssc = context(t, uniq('js-bad'));
  t.throws(() => ssc.jetstreamStream({ stream: 'A.B' }), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.jetstreamStream({ stream: 'A', maxPerBatch: 0 }), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.jetstreamStream({ stream: 'A', startAt: 0 }), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.jetstreamStream({ stream: 'A', decoder: 'yaml' as never }), { instanceOf: InvalidConfigError });
  ssc.jetstreamStream({ stream: uniq('JSMISSING') }).foreachBatch(() => {});
  await t.throwsAsync(ssc.start(), { message: /stream not found/i });
});

// ---- crashes and recovery ---------------------------------------------------------

interface Recorded {
  raw: Map<number, string[]>;
  counts: Map<string, number>;
}

/** Counts words read from `stream`; the raw output of batch `gate.at` waits for the test. */
function countingApp(
  t: { context: NatsSuite },
  appName: string,
  options: JetStreamStreamOptions<string>,
  clock: ManualClock,
  record: Recorded,
  intervalMs: number,
  natsConfig: boolean,
  gate?: { at: number; entered: () => void; open: Promise<void> },
): StreamingContext {
  const ssc = context(t, appName, clock, natsConfig);
  const words = ssc.jetstreamStream<string>(options);
  words.foreachBatch((r, time) => {
    record.raw.set(time, [...r]);
    if (gate && time === gate.at) {
      gate.entered();
      return gate.open;
    }
  });
  words
    .map((w) => [w, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(intervalMs)
    .foreachBatch((r) => {
      record.counts = new Map(r);
    });
  return ssc;
}

function countOf(words: readonly string[]): [string, number][] {
  const m = new Map<string, number>();
  for (const w of words) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m].sort();
}

const crashCase = test.macro(async (t, where: 'directory' | 'nats', intervalMs: number) => {
  t.timeout(60_000);
  const stream = uniq('JSCRASH');
  const appName = uniq(`js-crash-${where}-`);
  await addStream(t.context.nc, stream);
  const subject = `${stream}.words`;
  const words = ['a', 'b', 'a', 'c', 'b', 'a', 'd', 'e', 'a', 'f', 'b'];
  await publishAll(t.context.nc, subject, words.slice(0, 5));
  const location = where === 'directory' ? await t.context.dirs.make('js-crash') : t.context.server.url;
  const options: JetStreamStreamOptions<string> = { stream, maxPerBatch: 3 };
  const clock = new ManualClock();
  const before: Recorded = { raw: new Map(), counts: new Map() };
  const entered = deferred();
  const open = deferred();
  const gate = { at: 2000, entered: () => entered.resolve(), open: open.promise };
  const first = countingApp(t, appName, options, clock, before, intervalMs, where === 'directory', gate);
  first.checkpoint(location);
  await first.start();
  await first.runBatches(1);
  await publishAll(t.context.nc, subject, words.slice(5, 7));
  // Batch 2 (seqs 4-6) is journaled and its output held when the process dies.
  const stuck = first.runBatches(1).catch(() => {});
  await entered.promise;
  first.crash();
  open.resolve();
  await stuck;
  t.deepEqual(before.raw.get(1000), ['a', 'b', 'a']);
  t.deepEqual(before.raw.get(2000), ['c', 'b', 'a']);

  // Downtime: more messages, and two batch times pass.
  await publishAll(t.context.nc, subject, words.slice(7));
  clock.advance(2000);
  const after: Recorded = { raw: new Map(), counts: new Map() };
  const ssc = await StreamingContext.getOrCreate(
    location,
    () => countingApp(t, appName, options, clock, after, intervalMs, where === 'directory'),
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.false(after.raw.has(1000), 'batch 1 completed before the crash');
  t.deepEqual(after.raw.get(2000), before.raw.get(2000), 'the replay reads the same sequence range, not the newer messages');
  t.deepEqual(after.raw.get(3000), ['d', 'e', 'a'], 'messages published while down are read after resume');
  t.deepEqual(after.raw.get(4000), ['f', 'b']);
  t.deepEqual(after.raw.get(5000), []);
  t.deepEqual([...after.counts].sort(), countOf(words), 'every message counted exactly once');
});

test(
  'jetstreamStream - a crash replays the same range, exactly once, and reads the downtime (directory checkpoint)',
  crashCase,
  'directory',
  10_000,
);
test('jetstreamStream - the same after a state checkpoint (directory checkpoint)', crashCase, 'directory', 1000);
test(
  'jetstreamStream - a crash replays the same range, exactly once, and reads the downtime (nats:// checkpoint)',
  crashCase,
  'nats',
  10_000,
);
test('jetstreamStream - the same after a state checkpoint (nats:// checkpoint)', crashCase, 'nats', 1000);

const startAtNewCrash = test.macro(async (t, intervalMs: number) => {
  t.timeout(60_000);
  const stream = uniq('JSNEWCRASH');
  await addStream(t.context.nc, stream);
  const subject = `${stream}.in`;
  await publishAll(t.context.nc, subject, ['old']);
  const dir = await t.context.dirs.make('js-new-crash');
  const appName = uniq('js-new-crash');
  const options: JetStreamStreamOptions<string> = { stream, startAt: 'new' };
  const clock = new ManualClock();
  const before: Recorded = { raw: new Map(), counts: new Map() };
  const first = countingApp(t, appName, options, clock, before, intervalMs, true);
  first.checkpoint(dir);
  await first.start();
  await publishAll(t.context.nc, subject, ['n1']);
  await first.runBatches(2);
  first.crash();
  await publishAll(t.context.nc, subject, ['n2', 'n3']);
  const after: Recorded = { raw: new Map(), counts: new Map() };
  const ssc = await StreamingContext.getOrCreate(dir, () => countingApp(t, appName, options, clock, after, intervalMs, true), { clock });
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(before.raw.get(1000), ['n1']);
  t.deepEqual(after.raw.get(3000), ['n2', 'n3'], 'startAt new means new at the first start, not at every restart');
  t.deepEqual([...after.counts].sort(), countOf(['n1', 'n2', 'n3']));
});

test('jetstreamStream - startAt new keeps messages published while down, crash before any checkpoint', startAtNewCrash, 10_000);
test('jetstreamStream - startAt new keeps messages published while down, crash after a checkpoint', startAtNewCrash, 1000);

test('jetstreamStream - decode failures in a replayed range are dead-lettered again and the state stays exact', async (t) => {
  t.timeout(60_000);
  const stream = uniq('JSDEADCRASH');
  await addStream(t.context.nc, stream);
  const subject = `${stream}.in`;
  const deadLetterSubject = uniq('js.dead.');
  const dead = new Collector(t.context.nc, deadLetterSubject);
  t.context.collectors.push(dead);
  await t.context.nc.flush();
  await publishAll(t.context.nc, subject, ['x', new Uint8Array([0xc3]), 'y']);
  const dir = await t.context.dirs.make('js-dead-crash');
  const appName = uniq('js-dead-crash');
  const options: JetStreamStreamOptions<string> = { stream, deadLetterSubject };
  const clock = new ManualClock();
  const before: Recorded = { raw: new Map(), counts: new Map() };
  const entered = deferred();
  const open = deferred();
  const first = countingApp(t, appName, options, clock, before, 10_000, true, {
    at: 1000,
    entered: () => entered.resolve(),
    open: open.promise,
  });
  const firstWatch = new Watch(first);
  first.checkpoint(dir);
  await first.start();
  const stuck = first.runBatches(1).catch(() => {});
  await entered.promise;
  first.crash();
  open.resolve();
  await stuck;
  t.is(firstWatch.deadLetters.count, 1);
  const after: Recorded = { raw: new Map(), counts: new Map() };
  let watch: Watch | undefined;
  const ssc = await StreamingContext.getOrCreate(
    dir,
    () => {
      const s = countingApp(t, appName, options, clock, after, 10_000, true);
      watch = new Watch(s);
      return s;
    },
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(0);
  await ssc.stop();
  await dead.until(2);
  t.deepEqual(after.raw.get(1000), ['x', 'y']);
  t.deepEqual([...after.counts].sort(), countOf(['x', 'y']));
  t.is(watch?.deadLetters.count, 1);
  t.is(ssc.deadLetters, 1);
  t.deepEqual(
    dead.messages.map((m) => m.headers?.get('Tributary-Stream-Seq')),
    ['2', '2'],
  );
});
