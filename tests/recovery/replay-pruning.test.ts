/**
 * A replayed batch whose outputs already ran computes only what the states need:
 * operators that feed nothing but outputs do not run again, and updateStateByKey
 * does not build an output nobody reads. States still come out exact.
 */
import test from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import type { RecordErrorPolicy } from '../../runtime/graph/graph.ts';
import { deferred, quiet, TempDirs } from '../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

const input = Array.from({ length: 12 }, (_, i) => [`a b${i % 3}`, `c${i % 4} a`, i === 7 ? 'bad' : 'a']);

interface Calls {
  /** Batch times at which the output-only map ran. */
  readonly outputOnly: number[];
  /** Batch times at which the map feeding the state ran. */
  readonly forState: number[];
  readonly totals: Map<number, [string, number][]>;
}

function build(clock: ManualClock, calls: Calls, onRecordError: RecordErrorPolicy = 'fail'): StreamingContext {
  const ssc = new StreamingContext({ appName: 'prune', batchDuration: 1000, clock, logger: quiet, onRecordError });
  const lines = ssc.queueStream(input);
  const words = lines
    .transform((records, time) => {
      calls.forState.push(time);
      return records;
    })
    .flatMap((l) => l.split(' '))
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(4000)
    .foreachBatch((r, t) => {
      calls.totals.set(t, [...r].sort());
    });
  lines
    .transform((records, time) => {
      calls.outputOnly.push(time);
      return records;
    })
    .map((l) => {
      if (l === 'bad' && onRecordError === 'dead-letter') throw new Error('bad line');
      return l.length;
    })
    .foreachBatch(() => {});
  return ssc;
}

const fresh = (): Calls => ({ outputOnly: [], forState: [], totals: new Map() });

async function crashAndResume(policy: RecordErrorPolicy): Promise<{ first: Calls; second: Calls; expected: Calls }> {
  const expected = fresh();
  const ref = build(new ManualClock(), expected, policy);
  await ref.start();
  await ref.runBatches(10);
  await ref.stop();

  const dir = await dirs.make('prune');
  const clock = new ManualClock();
  const first = fresh();
  const a = build(clock, first, policy);
  a.checkpoint(dir);
  const checkpointed = deferred();
  a.addStreamingListener({ onCheckpointCompleted: (stats) => stats.time === 4000 && checkpointed.resolve() });
  await a.start();
  await a.runBatches(7);
  await checkpointed.promise;
  a.crash();
  const second = fresh();
  const b = await StreamingContext.getOrCreate(dir, () => build(clock, second, policy), { clock });
  await b.start();
  await b.runBatches(3);
  await b.stop();
  return { first, second, expected };
}

test('replay pruning - completed batches replay only what feeds the state', async (t) => {
  const { second, expected, first } = await crashAndResume('fail');
  // The checkpoint at 4000 holds the state; 5000..7000 completed before the crash and replay.
  t.deepEqual(second.forState, [5000, 6000, 7000, 8000, 9000, 10000]);
  t.deepEqual(second.outputOnly, [8000, 9000, 10000], 'the output-only branch does not run for completed batches');
  // updateStateByKey built no output for them either: its foreachBatch saw only new batches.
  t.deepEqual([...second.totals.keys()], [8000, 9000, 10000]);
  for (const time of [8000, 9000, 10000]) t.deepEqual(second.totals.get(time), expected.totals.get(time), `state at ${time}`);
  t.deepEqual(first.outputOnly, [1000, 2000, 3000, 4000, 5000, 6000, 7000]);
});

test('replay pruning - with a dead-letter policy every operator replays (its letters are written again)', async (t) => {
  const { second, expected } = await crashAndResume('dead-letter');
  t.deepEqual(second.outputOnly, [5000, 6000, 7000, 8000, 9000, 10000]);
  for (const time of [8000, 9000, 10000]) t.deepEqual(second.totals.get(time), expected.totals.get(time), `state at ${time}`);
});
