import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidConfigError, type NatsStreamOptions, StreamingContext } from '../../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../../runtime/api/testing.ts';
import { encodeValue } from '../../../runtime/base/cbor.ts';
import { deferred, quiet } from '../../helpers/checkpoint-kit.ts';
import { Collector, type NatsSuite, natsSuite, text, uniq, Watch } from '../../helpers/nats-kit.ts';

const test = natsSuite();

const enc = new TextEncoder();

/** A context with a ManualClock reading NATS at the test server. */
function context(t: { context: NatsSuite }, appName: string, clock = new ManualClock(), natsConfig = true): StreamingContext {
  const ssc = new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock,
    logger: quiet,
    // Without it, the connection comes from a nats:// checkpoint URL.
    ...(natsConfig ? { nats: { url: t.context.server.url } } : {}),
  });
  t.context.contexts.push(ssc);
  return ssc;
}

/** A started context with one natsStream collected batch by batch. */
async function started<T>(
  t: { context: NatsSuite },
  subject: string,
  options: NatsStreamOptions<T> = {},
): Promise<{ ssc: StreamingContext; watch: Watch; out: CollectedBatch<T>[] }> {
  const ssc = context(t, uniq('nats-app'));
  const watch = new Watch(ssc);
  const out = collectBatches(ssc.natsStream<T>(subject, options));
  await ssc.start();
  return { ssc, watch, out };
}

/** Publishes from the test's own connection and flushes, so the server has them all. */
async function publish(nc: NatsConnection, subject: string, payloads: readonly (string | Uint8Array)[]): Promise<void> {
  for (const p of payloads) nc.publish(subject, typeof p === 'string' ? enc.encode(p) : p);
  await nc.flush();
}

test('natsStream - published messages arrive in order, batch by batch, as utf8 text by default', async (t) => {
  t.timeout(20_000);
  const subject = uniq('nats.text.');
  const { ssc, watch, out } = await started<string>(t, subject);
  await publish(t.context.nc, subject, ['a', 'héllo wörld', '\u{1F600}']);
  await watch.received.until(3);
  await ssc.runBatches(1);
  await publish(t.context.nc, subject, ['b']);
  await watch.received.until(4);
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, ['a', 'héllo wörld', '\u{1F600}']],
      [2000, ['b']],
      [3000, []],
    ],
  );
  t.is(ssc.deadLetters, 0);
});

test('natsStream - a wildcard subject receives every matching subject', async (t) => {
  t.timeout(20_000);
  const base = uniq('nats.wild');
  const { ssc, watch, out } = await started<string>(t, `${base}.>`);
  await publish(t.context.nc, `${base}.x`, ['x1']);
  await publish(t.context.nc, `${base}.y.z`, ['yz1']);
  await publish(t.context.nc, `${base}x.nope`, ['not mine']);
  await watch.received.until(2);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['x1', 'yz1']);
});

test('natsStream - json decoder gives objects, arrays and numbers', async (t) => {
  t.timeout(20_000);
  const subject = uniq('nats.json.');
  const { ssc, watch, out } = await started<unknown>(t, subject, { decoder: 'json' });
  await publish(t.context.nc, subject, ['{"word":"a","n":1}', '[1,"two",null]', '3.5', '"text"']);
  await watch.received.until(4);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, [{ word: 'a', n: 1 }, [1, 'two', null], 3.5, 'text']);
});

test('natsStream - cbor decoder gives back what cbor-x encoded', async (t) => {
  t.timeout(20_000);
  const subject = uniq('nats.cbor.');
  const { ssc, watch, out } = await started<unknown>(t, subject, { decoder: 'cbor' });
  const values = [{ word: 'a', n: 1 }, ['k', 2], 'text', 42];
  await publish(
    t.context.nc,
    subject,
    values.map((v) => encodeValue(v)),
  );
  await watch.received.until(4);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, values);
});

test('natsStream - a custom decoder turns bytes into pairs that keyed operators use', async (t) => {
  t.timeout(20_000);
  const subject = uniq('nats.custom.');
  const ssc = context(t, uniq('nats-app'));
  const watch = new Watch(ssc);
  const pairs = ssc.natsStream<[string, number]>(subject, {
    decoder: (data) => {
      const [k, v] = text(data).split('=');
      return [k as string, Number(v)];
    },
  });
  const sums = collectBatches(pairs.reduceByKey((a, b) => a + b));
  await ssc.start();
  await publish(t.context.nc, subject, ['a=1', 'b=2', 'a=3']);
  await watch.received.until(3);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual([...(sums[0]?.records ?? [])].sort(), [
    ['a', 4],
    ['b', 2],
  ]);
});

/** An app counting records by value; bad messages go to the dead-letter subject. */
const deadLetterCase = test.macro(
  async (
    t,
    decoder: NatsStreamOptions<unknown>['decoder'],
    good: readonly (string | Uint8Array)[],
    bad: readonly Uint8Array[],
    expected: readonly unknown[],
  ) => {
    t.timeout(30_000);
    const subject = uniq('nats.dl.');
    const deadLetterSubject = uniq('nats.dead.');
    const dead = new Collector(t.context.nc, deadLetterSubject);
    t.context.collectors.push(dead);
    await t.context.nc.flush();
    const ssc = context(t, uniq('nats-app'));
    const watch = new Watch(ssc);
    const records = ssc.natsStream<unknown>(subject, { decoder, deadLetterSubject });
    const raw = collectBatches(records);
    const counts = collectBatches(
      records
        .map((r) => [JSON.stringify(r), 1] as [string, number])
        .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length),
    );
    await ssc.start();
    // Bad messages between good ones: neither the good ones nor the app suffer.
    const first = good.slice(0, 1);
    const rest = good.slice(1);
    await publish(t.context.nc, subject, [...first, ...bad]);
    await watch.deadLetters.until(bad.length);
    await dead.until(bad.length);
    await publish(t.context.nc, subject, rest);
    await watch.received.until(good.length);
    await ssc.runBatches(1);
    // The app keeps running: one more good message in the next batch.
    await publish(t.context.nc, subject, first);
    await watch.received.until(good.length + 1);
    await ssc.runBatches(1);
    await ssc.stop();

    t.is(ssc.deadLetters, bad.length);
    t.deepEqual(
      watch.deadLetterEvents.map((e) => [e.subject, e.total]),
      bad.map((_, i) => [deadLetterSubject, i + 1]),
    );
    for (const e of watch.deadLetterEvents) {
      t.regex(e.stream, /^natsStream/);
      t.true(e.error.length > 0);
    }
    t.is(dead.messages.length, bad.length);
    dead.messages.forEach((m, i) => {
      t.deepEqual(Buffer.from(m.data), Buffer.from(bad[i] as Uint8Array), `dead letter ${i} keeps the original bytes`);
      t.is(m.headers?.get('Tributary-Subject'), subject);
      const error = m.headers?.get('Tributary-Error') ?? '';
      t.true(error.length > 0 && error.length <= 200, `dead letter ${i} names the error: ${JSON.stringify(error)}`);
      const full = (watch.deadLetterEvents[i]?.error ?? '').replace(/[\r\n]+/g, ' ');
      t.true(full.startsWith(error), `the header is the start of the error on one line: ${JSON.stringify(error)}`);
    });
    t.deepEqual(raw[0]?.records, expected);
    t.deepEqual(raw[1]?.records, expected.slice(0, 1));
    const expectedCounts = new Map<string, number>();
    for (const r of [...expected, ...expected.slice(0, 1)])
      expectedCounts.set(JSON.stringify(r), (expectedCounts.get(JSON.stringify(r)) ?? 0) + 1);
    t.deepEqual([...(counts[1]?.records ?? [])].sort(), [...expectedCounts].sort());
  },
);

const u8 = (...b: number[]): Uint8Array => new Uint8Array(b);

test(
  'natsStream - invalid UTF-8 goes to the dead-letter subject, counted, and the app goes on',
  deadLetterCase,
  'utf8',
  ['ok-1', 'ok-2'],
  [u8(0xff, 0xfe, 0x41), u8(0x61, 0xc3), u8(0xed, 0xa0, 0x80)],
  ['ok-1', 'ok-2'],
);

test(
  'natsStream - bad JSON (also with a line break, and invalid UTF-8) goes to the dead-letter subject',
  deadLetterCase,
  'json',
  ['{"a":1}', '[2]'],
  [enc.encode('{"a":'), enc.encode('{"a":\n x}\r\n'), enc.encode('not json'), u8(0x22, 0xff, 0x22)],
  [{ a: 1 }, [2]],
);

test(
  'natsStream - bad CBOR (truncated, stray break, trailing bytes) goes to the dead-letter subject',
  deadLetterCase,
  'cbor',
  [encodeValue({ a: 1 }), encodeValue(['b', 2])],
  [u8(0x82, 0x01), u8(0xff), u8(0x01, 0x02), u8(0x1c)],
  [{ a: 1 }, ['b', 2]],
);

test(
  'natsStream - a custom decoder that throws (even a non-Error) dead-letters the message',
  deadLetterCase,
  (data: Uint8Array) => {
    const s = text(data);
    if (s.startsWith('!')) throw `refused ${s}`;
    if (s.startsWith('?')) throw new RangeError(`odd record\n${s}`);
    return s.toUpperCase();
  },
  ['x', 'y'],
  [enc.encode('!no'), enc.encode('?what')],
  ['X', 'Y'],
);

test('natsStream - the default dead-letter subject of a wildcard subscription does not feed itself back', async (t) => {
  t.timeout(20_000);
  const base = uniq('nats.loop');
  const dead = new Collector(t.context.nc, `${base}.dead-letter`);
  t.context.collectors.push(dead);
  await t.context.nc.flush();
  const { ssc, watch, out } = await started<unknown>(t, `${base}.>`, { decoder: 'json' });
  await publish(t.context.nc, `${base}.in`, ['{bad']);
  await dead.until(1);
  // The marker is published after the dead letter reached the server: were the dead
  // letter delivered back to the app, it would be handled before the marker.
  await publish(t.context.nc, `${base}.in`, ['"marker"']);
  await watch.received.until(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(ssc.deadLetters, 1);
  t.is(dead.messages.length, 1);
  t.is(dead.messages[0]?.headers?.get('Tributary-Subject'), `${base}.in`);
  t.deepEqual(out[0]?.records, ['marker']);
});

test('natsStream - a leading wildcard gives a default dead-letter subject one can subscribe to', async (t) => {
  t.timeout(20_000);
  const base = uniq('natslead');
  // `*.<base>` -> `<base>.dead-letter`, not `.<base>.dead-letter` (no subscription can match a leading dot).
  const dead = new Collector(t.context.nc, `${base}.dead-letter`);
  t.context.collectors.push(dead);
  await t.context.nc.flush();
  const { ssc, watch, out } = await started<unknown>(t, `*.${base}`, { decoder: 'json' });
  await publish(t.context.nc, `x.${base}`, ['nope', '1']);
  await dead.until(1);
  await watch.received.until(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(dead.messages[0]?.headers?.get('Tributary-Subject'), `x.${base}`);
  t.deepEqual(
    watch.deadLetterEvents.map((e) => e.subject),
    [`${base}.dead-letter`],
  );
  t.deepEqual(out[0]?.records, [1]);
});

test('natsStream - a queue group shares the messages between two apps without loss or duplicates', async (t) => {
  t.timeout(20_000);
  const subject = uniq('nats.queue.');
  const a = await started<string>(t, subject, { queue: 'workers' });
  const b = await started<string>(t, subject, { queue: 'workers' });
  const sent = Array.from({ length: 40 }, (_, i) => `m${i}`);
  await publish(t.context.nc, subject, sent);
  const total = () => a.watch.received.count + b.watch.received.count;
  // Each message goes to one member: wait until both together have all of them.
  for (let i = 0; i < 100 && total() < sent.length; i++) {
    await Promise.race([a.watch.received.until(a.watch.received.count + 1), b.watch.received.until(b.watch.received.count + 1)]);
  }
  await a.ssc.runBatches(1);
  await b.ssc.runBatches(1);
  await a.ssc.stop();
  await b.ssc.stop();
  const got = [...(a.out[0]?.records ?? []), ...(b.out[0]?.records ?? [])].sort();
  t.deepEqual(got, [...sent].sort());
});

test('natsStream - bad settings are refused where they are made; no NATS to connect to fails start()', async (t) => {
  const ssc = new StreamingContext({ appName: uniq('nats-bad'), batchDuration: 1000, clock: new ManualClock(), logger: quiet });
  t.context.contexts.push(ssc);
  t.throws(() => ssc.natsStream(''), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.natsStream('a b'), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.natsStream('a', { decoder: 'xml' as never }), { instanceOf: InvalidConfigError, message: /unknown decoder/ });
  ssc.natsStream('nats.none').foreachBatch(() => {});
  await t.throwsAsync(ssc.start(), { instanceOf: InvalidConfigError, message: /nats: \{ url \}/ });
});

// ---- exactly-once across a crash ------------------------------------------------

interface CrashRun {
  ssc: StreamingContext;
  watch: Watch;
  raw: Map<number, string[]>;
  counts: Map<string, number>;
}

/** A counting app; the raw output of batch `gate.at` waits for the test. */
function crashApp(
  t: { context: NatsSuite },
  appName: string,
  subject: string,
  clock: ManualClock,
  record: { raw: Map<number, string[]>; counts: Map<string, number> },
  intervalMs: number,
  natsConfig: boolean,
  gate?: { at: number; entered: () => void; open: Promise<void> },
): CrashRun {
  const ssc = context(t, appName, clock, natsConfig);
  const watch = new Watch(ssc);
  const lines = ssc.natsStream<string>(subject);
  lines.foreachBatch((r, time) => {
    record.raw.set(time, [...r].sort());
    if (gate && time === gate.at) {
      gate.entered();
      return gate.open;
    }
  });
  lines
    .map((l) => [l, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(intervalMs)
    .foreachBatch((r) => {
      record.counts = new Map(r);
    });
  return { ssc, watch, raw: record.raw, counts: record.counts };
}

const crashCase = test.macro(async (t, where: 'directory' | 'nats', intervalMs: number) => {
  t.timeout(60_000);
  const appName = uniq(`nats-crash-${where}-`);
  const subject = uniq('nats.crash.');
  const location = where === 'directory' ? await t.context.dirs.make('nats-crash') : t.context.server.url;
  const clock = new ManualClock();
  const before = { raw: new Map<number, string[]>(), counts: new Map<string, number>() };
  const entered = deferred();
  const open = deferred();
  const first = crashApp(t, appName, subject, clock, before, intervalMs, where === 'directory', {
    at: 2000,
    entered: () => entered.resolve(),
    open: open.promise,
  });
  first.ssc.checkpoint(location);
  await first.ssc.start();
  await publish(t.context.nc, subject, ['a1', 'a2', 'a3']);
  await first.watch.received.until(3);
  await first.ssc.runBatches(1);
  await publish(t.context.nc, subject, ['b1', 'b2', 'a1']);
  await first.watch.received.until(6);
  // Batch 2's block is journaled and allocated, its output is held when the process dies.
  const stuck = first.ssc.runBatches(1).catch(() => {});
  await entered.promise;
  first.ssc.crash();
  open.resolve();
  await stuck;
  t.deepEqual(before.raw.get(1000), ['a1', 'a2', 'a3']);
  t.deepEqual(before.raw.get(2000), ['a1', 'b1', 'b2']);

  const after = { raw: new Map<number, string[]>(), counts: new Map<string, number>() };
  let resumed: CrashRun | undefined;
  const ssc = await StreamingContext.getOrCreate(
    location,
    () => {
      resumed = crashApp(t, appName, subject, clock, after, intervalMs, where === 'directory');
      return resumed.ssc;
    },
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(0);
  await publish(t.context.nc, subject, ['c1']);
  await (resumed as CrashRun).watch.received.until(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.false(after.raw.has(1000), 'batch 1 completed before the crash: its output does not run again');
  t.deepEqual(after.raw.get(2000), ['a1', 'b1', 'b2'], 'the batch in flight runs again with exactly its records');
  t.deepEqual(after.raw.get(3000), ['c1']);
  t.deepEqual([...after.counts].sort(), [
    ['a1', 2],
    ['a2', 1],
    ['a3', 1],
    ['b1', 1],
    ['b2', 1],
    ['c1', 1],
  ]);
});

test(
  'natsStream - records accepted before a crash are counted exactly once after resume (directory checkpoint)',
  crashCase,
  'directory',
  10_000,
);
test('natsStream - exactly once across a crash after a state checkpoint (directory checkpoint)', crashCase, 'directory', 1000);
test('natsStream - records accepted before a crash are counted exactly once after resume (nats:// checkpoint)', crashCase, 'nats', 10_000);
test('natsStream - exactly once across a crash after a state checkpoint (nats:// checkpoint)', crashCase, 'nats', 1000);

const gracefulCase = test.macro(async (t, where: 'directory' | 'nats') => {
  t.timeout(60_000);
  const appName = uniq(`nats-stop-${where}-`);
  const subject = uniq('nats.stop.');
  const location = where === 'directory' ? await t.context.dirs.make('nats-stop') : t.context.server.url;
  const clock = new ManualClock();
  const before = { raw: new Map<number, string[]>(), counts: new Map<string, number>() };
  const first = crashApp(t, appName, subject, clock, before, 10_000, where === 'directory');
  first.ssc.checkpoint(location);
  await first.ssc.start();
  await publish(t.context.nc, subject, ['a1']);
  await first.watch.received.until(1);
  await first.ssc.runBatches(1);
  // Accepted after the last batch was cut: no batch holds them when the app stops.
  await publish(t.context.nc, subject, ['late1', 'late2']);
  await first.watch.received.until(3);
  await first.ssc.stop();

  const after = { raw: new Map<number, string[]>(), counts: new Map<string, number>() };
  let resumed: CrashRun | undefined;
  const ssc = await StreamingContext.getOrCreate(
    location,
    () => {
      resumed = crashApp(t, appName, subject, clock, after, 10_000, where === 'directory');
      return resumed.ssc;
    },
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(before.raw.get(1000), ['a1']);
  t.deepEqual(before.raw.get(2000), ['late1', 'late2'], 'a graceful stop runs one more batch for what was accepted');
  t.deepEqual(after.raw.get(3000) ?? [], [], 'nothing waits for the restart');
  t.deepEqual([...after.counts].sort(), [
    ['a1', 1],
    ['late1', 1],
    ['late2', 1],
  ]);
});

test('natsStream - a graceful stop processes the records accepted after the last batch (directory checkpoint)', gracefulCase, 'directory');
test('natsStream - a graceful stop processes the records accepted after the last batch (nats:// checkpoint)', gracefulCase, 'nats');
