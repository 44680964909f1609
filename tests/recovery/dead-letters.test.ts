/**
 * Poison records: with `onRecordError: 'dead-letter'` (per app or per operator) a
 * record a user function throws on is set aside, with the operator, the batch time
 * and the error, in `<checkpoint>/dead-letters/<time>.jsonl`, and the batch goes on;
 * a crash and replay decides the same, so state stays exactly-once and each dead
 * letter is written once. The default still fails the batch.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { type DeadLetter, type RecordErrorPolicy, StreamingContext, TributaryError } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { TempDirs } from '../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

const quiet = pino({ level: 'silent' });
const input = [['a b', 'c'], ['a poison', 'b'], ['c c'], ['a heavy:x heavy:x'], ['b'], ['a'], ['c']];

interface Options {
  readonly app?: RecordErrorPolicy;
  readonly map?: RecordErrorPolicy;
  readonly reduce?: RecordErrorPolicy;
}

/** Word totals; `map` throws on "poison", the keyed reduce when it meets a second "heavy:" word. */
function build(clock: ManualClock, totals: Map<number, [string, number][]>, o: Options): StreamingContext {
  const ssc = new StreamingContext({
    appName: 'poison',
    batchDuration: 1000,
    clock,
    logger: quiet,
    ...(o.app ? { onRecordError: o.app } : {}),
  });
  const words = ssc.queueStream(input).flatMap((l) => l.split(' '));
  const pairs = words.map((w): [string, number] => {
    if (w === 'poison') throw new Error('poison word');
    return [w, w.startsWith('heavy:') ? -1 : 1];
  });
  if (o.map) pairs.onRecordError(o.map);
  const perBatch = pairs.reduceByKey((a, b) => {
    if (a < 0 || b < 0) throw new RangeError('negative count');
    return a + b;
  });
  if (o.reduce) perBatch.onRecordError(o.reduce);
  perBatch
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((x, y) => x + y, 0))
    .uid('totals')
    .checkpoint(3000)
    .foreachBatch((r, t) => {
      totals.set(
        t,
        [...r].sort(([a], [b]) => (a < b ? -1 : 1)),
      );
    });
  return ssc;
}

async function deadLetters(dir: string): Promise<Map<string, DeadLetter[]>> {
  const out = new Map<string, DeadLetter[]>();
  const where = path.join(dir, 'dead-letters');
  for (const f of (await fs.readdir(where).catch(() => [])).sort()) {
    const lines = (await fs.readFile(path.join(where, f), 'utf8')).trim().split('\n');
    out.set(
      f,
      lines.map((l) => JSON.parse(l) as DeadLetter),
    );
  }
  return out;
}

test('dead letters - the app policy sets poison records aside and every batch completes', async (t) => {
  const dir = await dirs.make('dead-letters');
  const totals = new Map<number, [string, number][]>();
  const ssc = build(new ManualClock(), totals, { app: 'dead-letter' });
  ssc.checkpoint(dir);
  const seen: string[] = [];
  ssc.addStreamingListener({ onDeadLetter: (info) => seen.push(`${info.stream}: ${info.error}`) });
  await ssc.start();
  await ssc.runBatches(input.length);
  await ssc.stop();

  const letters = await deadLetters(dir);
  t.deepEqual([...letters.keys()], ['2000.jsonl', '4000.jsonl']);
  const [poison] = letters.get('2000.jsonl') ?? [];
  t.like(poison, { time: 2000, record: 'poison', error: 'Error: poison word' });
  t.regex(poison?.operator ?? '', /^map#/);
  const [heavy] = letters.get('4000.jsonl') ?? [];
  t.like(heavy, { time: 4000, error: 'RangeError: negative count' });
  t.regex(heavy?.operator ?? '', /^reduceByKey#/);
  t.deepEqual(heavy?.record, ['heavy:x', -1], 'the pair the reduce was given');
  t.is(seen.length, 2);
  // Every other word is counted, nothing of "poison", and of the two "heavy:x" only the first,
  // which the reduce had taken before it threw on the second.
  t.deepEqual(totals.get(7000), [
    ['a', 4],
    ['b', 3],
    ['c', 4],
    ['heavy:x', -1],
  ]);
});

test('dead letters - the default policy fails the batch naming the operator', async (t) => {
  const ssc = build(new ManualClock(), new Map(), {});
  await ssc.start();
  const error = (await t.throwsAsync(ssc.runBatches(3), { instanceOf: TributaryError })) as TributaryError & { operator: string };
  t.is(error.code, 'BATCH_FAILED');
  t.regex(error.operator, /^map#/);
  t.regex(error.message, /poison word/);
});

test('dead letters - an operator policy overrides the app: only that operator sets records aside', async (t) => {
  const dir = await dirs.make('dead-letters-op');
  const ssc = build(new ManualClock(), new Map(), { map: 'dead-letter' });
  ssc.checkpoint(dir);
  await ssc.start();
  await ssc.runBatches(3);
  t.deepEqual([...(await deadLetters(dir)).keys()], ['2000.jsonl']);
  const error = (await t.throwsAsync(ssc.runBatches(1), { instanceOf: TributaryError })) as TributaryError;
  t.regex(error.message, /reduceByKey#\d+: .*negative count|negative count/);
  t.regex((error as unknown as { operator: string }).operator, /^reduceByKey#/, 'the reduce keeps the app default: fail');
  // Both ways round: the app sets aside, the reduce fails.
  const other = build(new ManualClock(), new Map(), { app: 'dead-letter', reduce: 'fail' });
  await other.start();
  await other.runBatches(3);
  await t.throwsAsync(other.runBatches(1), { instanceOf: TributaryError, message: /negative count/ });
});

test('dead letters - a crash after a poison batch and a replay decide the same: exact state, each letter once', async (t) => {
  const reference = new Map<number, [string, number][]>();
  const ref = build(new ManualClock(), reference, { app: 'dead-letter' });
  await ref.start();
  await ref.runBatches(input.length);
  await ref.stop();

  const dir = await dirs.make('dead-letters-crash');
  const got = new Map<number, [string, number][]>();
  const clock = new ManualClock();
  const first = build(clock, got, { app: 'dead-letter' });
  first.checkpoint(dir);
  await first.start();
  // Checkpoint at 3000; batches 4000 and 5000 (a poison one among them) run again after the crash.
  await first.runBatches(5);
  first.crash();
  const second = await StreamingContext.getOrCreate(dir, () => build(clock, got, { app: 'dead-letter' }), { clock });
  await second.start();
  await second.runBatches(input.length - 5);
  await second.stop();
  t.deepEqual(
    [...got].sort(([a], [b]) => a - b),
    [...reference].sort(([a], [b]) => a - b),
  );
  const letters = await deadLetters(dir);
  t.deepEqual([...letters.keys()], ['2000.jsonl', '4000.jsonl']);
  t.deepEqual(
    [...letters.values()].map((ls) => ls.length),
    [1, 1],
    'one letter per poison record',
  );
});

test('dead letters - a bad policy is refused', (t) => {
  t.throws(() => build(new ManualClock(), new Map(), { app: 'skip' as RecordErrorPolicy }), {
    message: /onRecordError must be 'fail' or 'dead-letter', got "skip"/,
  });
  t.throws(() => build(new ManualClock(), new Map(), { map: 'ignore' as RecordErrorPolicy }), {
    message: /onRecordError of map#\d+ must be/,
  });
});

test('dead letters - a state update that throws sets its key aside for the batch; the state of the key stays', async (t) => {
  const dir = await dirs.make('dead-letters-state');
  const ssc = new StreamingContext({ appName: 'poison-state', batchDuration: 1000, clock: new ManualClock(), logger: quiet });
  ssc.checkpoint(dir);
  const totals = new Map<number, [string, number][]>();
  const mapped: string[][] = [];
  const pairs = ssc
    .queueStream([
      ['a', 'b'],
      ['a', 'boom'],
      ['b', 'a'],
    ])
    .map((w): [string, number] => [w, 1]);
  pairs
    .updateStateByKey<string, number, number>((vs, s, { key, time }) => {
      if (key === 'a' && time === 2000) throw new Error('a twice');
      return (s ?? 0) + vs.length;
    })
    .uid('totals')
    .onRecordError('dead-letter')
    .foreachBatch((r, time) => {
      totals.set(
        time,
        [...r].sort(([x], [y]) => (x < y ? -1 : 1)),
      );
    });
  pairs
    .mapWithState<string, number, number, string>({
      update: (key, _v, state) => {
        if (key === 'boom') throw new Error('boom key');
        state.update((state.getOption() ?? 0) + 1);
        return `${key}=${state.get()}`;
      },
    })
    .uid('sessions')
    .onRecordError('dead-letter')
    .foreachBatch((r) => {
      mapped.push([...r].sort());
    });
  await ssc.start();
  await ssc.runBatches(3);
  await ssc.stop();

  const letters = await deadLetters(dir);
  t.deepEqual([...letters.keys()], ['2000.jsonl']);
  const at2000 = (letters.get('2000.jsonl') ?? []).map((l) => [l.operator, l.record, l.error]).sort();
  t.deepEqual(at2000, [
    ['sessions', ['boom', 1], 'Error: boom key'],
    ['totals', ['a', [1]], 'Error: a twice'],
  ]);
  t.deepEqual(
    totals.get(2000),
    [
      ['a', 1],
      ['b', 1],
      ['boom', 1],
    ],
    "a's state stayed at 1 in the batch its update threw",
  );
  t.deepEqual(totals.get(3000), [
    ['a', 2],
    ['b', 2],
    ['boom', 1],
  ]);
  t.deepEqual(mapped, [['a=1', 'b=1'], ['a=2'], ['a=3', 'b=2']]);
});
