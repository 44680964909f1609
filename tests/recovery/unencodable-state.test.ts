/**
 * State a checkpoint cannot bring back (a function, a class instance that would be
 * restored as a plain object) fails the batch that checkpoints it, naming the
 * operator, instead of a log line per checkpoint while none is ever written again.
 */
import test from 'ava';
import { pino } from 'pino';
import { type BatchFailedError, StreamingContext, TributaryError } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { TempDirs } from '../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

class Session {
  constructor(readonly clicks: number) {}
  more(n: number): Session {
    return new Session(this.clicks + n);
  }
}

async function runWithState(t: import('ava').ExecutionContext, update: (values: number[], state: unknown) => unknown) {
  const dir = await dirs.make('unencodable');
  const ssc = new StreamingContext({
    appName: 'unencodable',
    batchDuration: 1000,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  ssc.checkpoint(dir);
  ssc
    .queueStream<string>([['a', 'b'], ['a'], ['b'], ['a'], ['a']])
    .map((w): [string, number] => [w, 1])
    .updateStateByKey(update as (values: number[], state: unknown) => unknown)
    .uid('sessions')
    .checkpoint(2000)
    .foreachBatch(() => {});
  await ssc.start();
  t.timeout(20_000);
  // The checkpoint is written behind the batches: its failure ends the app (awaitTermination).
  ssc.runBatches(5).catch(() => {});
  const error = (await t.throwsAsync(ssc.awaitTermination(), { instanceOf: TributaryError })) as BatchFailedError;
  return { error, ssc };
}

test('unencodable state - a class instance fails the checkpointing batch, naming the operator and the class', async (t) => {
  const { error, ssc } = await runWithState(t, (values, state) => ((state as Session | undefined) ?? new Session(0)).more(values.length));
  t.is(error.code, 'BATCH_FAILED');
  t.is(error.operator, 'sessions');
  t.is(error.batchTime, 2000, 'the first checkpoint');
  t.regex(error.message, /holds an instance of Session, which a checkpoint cannot restore/);
  t.is(ssc.lifecycle, 'stopped');
});

test('unencodable state - a function in the state fails the same way', async (t) => {
  const { error } = await runWithState(t, (values, state) => ({
    n: ((state as { n: number } | undefined)?.n ?? 0) + values.length,
    f: () => 1,
  }));
  t.is(error.code, 'BATCH_FAILED');
  t.is(error.operator, 'sessions');
  t.regex(error.message, /holds a function/);
});
