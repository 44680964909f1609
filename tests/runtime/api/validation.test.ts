import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import {
  BatchFailedError,
  type DStream,
  type ErrorCode,
  Receiver,
  StreamingContext,
  type StreamingContextConfig,
  SystemClock,
  TributaryError,
} from '../../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

const silent = pino({ level: 'silent' });

function context(appName: string, extra: Partial<StreamingContextConfig> = {}): StreamingContext {
  return new StreamingContext({ appName, batchDuration: 1000, partitions: 2, clock: new ManualClock(), logger: silent, ...extra });
}

/** Asserts that `fn` throws a TributaryError with `code` whose message matches every pattern. */
function throwsCode(t: ExecutionContext, fn: () => unknown, code: ErrorCode, ...patterns: RegExp[]): TributaryError {
  const error = t.throws(fn, { instanceOf: TributaryError }) as TributaryError;
  t.is(error.code, code, error.message);
  for (const p of patterns) t.regex(error.message, p);
  return error;
}

async function rejectsCode(
  t: ExecutionContext,
  promise: Promise<unknown>,
  code: ErrorCode,
  ...patterns: RegExp[]
): Promise<TributaryError> {
  const error = (await t.throwsAsync(promise, { instanceOf: TributaryError })) as TributaryError;
  t.is(error.code, code, error.message);
  for (const p of patterns) t.regex(error.message, p);
  return error;
}

// ---- durations ------------------------------------------------------------------

test('durations - window not a multiple of the parent slide is INVALID_DURATION naming the operator', (t) => {
  const ssc = context('v-window-multiple');
  const s = ssc.queueStream<number>([]);
  throwsCode(t, () => s.window(1500), 'INVALID_DURATION', /window/, /1500/, /queueStream#1/, /1000/);
});

test('durations - slide not a multiple of the parent slide is INVALID_DURATION naming the operator', (t) => {
  const ssc = context('v-slide-multiple');
  const s = ssc.queueStream<number>([]);
  throwsCode(t, () => s.window(3000, 2500), 'INVALID_DURATION', /window slide/, /2500/, /queueStream#1/);
});

test('durations - a window over a windowed stream must be a multiple of that window slide', (t) => {
  const ssc = context('v-window-of-window');
  const w = ssc.queueStream<number>([]).window(4000, 2000);
  throwsCode(t, () => w.window(3000), 'INVALID_DURATION', /3000/, /window#2/, /2000/);
  t.notThrows(() => w.window(6000, 4000));
});

test('durations - reduceByKeyAndWindow and countByValueAndWindow check window and slide', (t) => {
  const ssc = context('v-reduce-window');
  const pairs = ssc.queueStream<[string, number]>([]);
  throwsCode(t, () => pairs.reduceByKeyAndWindow((a, b) => a + b, 2500), 'INVALID_DURATION', /reduceByKeyAndWindow/, /2500/);
  throwsCode(
    t,
    () =>
      pairs.reduceByKeyAndWindow(
        (a, b) => a + b,
        (a, b) => a - b,
        3000,
        1500,
      ),
    'INVALID_DURATION',
    /reduceByKeyAndWindow/,
    /1500/,
  );
  throwsCode(t, () => pairs.groupByKeyAndWindow(1200), 'INVALID_DURATION', /1200/);
});

for (const bad of [0, -1000, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
  test(`durations - batchDuration ${bad} is INVALID_DURATION`, (t) => {
    throwsCode(t, () => context('v-batch', { batchDuration: bad }), 'INVALID_DURATION', /batchDuration/);
  });

  test(`durations - window and slide of ${bad} are INVALID_DURATION naming the operator`, (t) => {
    const ssc = context('v-window-bad');
    const s = ssc.queueStream<number>([]);
    throwsCode(t, () => s.window(bad), 'INVALID_DURATION', /window/, new RegExp(String(bad)));
    throwsCode(t, () => s.window(2000, bad), 'INVALID_DURATION', /window slide/);
  });

  test(`durations - checkpoint interval ${bad} is INVALID_DURATION naming the operator`, (t) => {
    const ssc = context('v-checkpoint-bad');
    const s = ssc.queueStream<[string, number]>([]).reduceByKey((a, b) => a + b);
    throwsCode(t, () => s.checkpoint(bad), 'INVALID_DURATION', /checkpoint interval/, /reduceByKey#2/);
  });

  test(`durations - mapWithState timeout ${bad} is INVALID_DURATION`, (t) => {
    const ssc = context('v-mws-bad');
    const s = ssc.queueStream<[string, number]>([]);
    throwsCode(t, () => s.mapWithState({ update: (_k, v) => v, timeout: bad }), 'INVALID_DURATION', /mapWithState timeout/);
  });
}

test('durations - a string batchDuration is INVALID_DURATION', (t) => {
  throwsCode(t, () => context('v-batch-str', { batchDuration: '1000' as unknown as number }), 'INVALID_DURATION', /batchDuration/);
});

test('durations - checkpoint interval not a multiple of the stream slide is INVALID_DURATION', (t) => {
  const ssc = context('v-checkpoint-multiple');
  const w = ssc.queueStream<number>([]).window(4000, 2000);
  throwsCode(t, () => w.checkpoint(3000), 'INVALID_DURATION', /checkpoint interval of window#2/, /3000/, /2000/);
  t.notThrows(() => w.checkpoint(10_000));
});

// ---- transform results ----------------------------------------------------------

async function transformFailure(t: ExecutionContext, appName: string, via: 'runBatches' | 'awaitTermination') {
  const ssc = context(appName);
  const s = ssc.queueStream<number>([[1, 2]]);
  const bad = s.transform(() => 42 as unknown as number[]);
  collectBatches(bad);
  await ssc.start();
  let error: TributaryError;
  if (via === 'runBatches') {
    error = await rejectsCode(t, ssc.runBatches(1), 'BATCH_FAILED', /transform#2/, /1000/);
    await rejectsCode(t, ssc.awaitTermination(), 'BATCH_FAILED');
  } else {
    const run = ssc.runBatches(1);
    run.catch(() => {});
    error = await rejectsCode(t, ssc.awaitTermination(), 'BATCH_FAILED', /transform#2/, /1000/);
    await t.throwsAsync(run);
  }
  t.true(error instanceof BatchFailedError);
  const failed = error as BatchFailedError;
  t.is(failed.operator, 'transform#2');
  t.is(failed.batchTime, 1000);
  t.is((failed.cause as TributaryError).code, 'INVALID_TRANSFORM_RESULT');
  t.regex((failed.cause as Error).message, /must return an array, got number/);
  t.is(ssc.lifecycle, 'stopped');
}

test('transform - a non-array result fails the batch, surfaced by runBatches', (t) => transformFailure(t, 'v-transform-run', 'runBatches'));

test('transform - a non-array result fails the batch, surfaced by awaitTermination', (t) =>
  transformFailure(t, 'v-transform-await', 'awaitTermination'));

test('transform - ssc.transform and transformWith check their result too', async (t) => {
  for (const make of [
    (ssc: StreamingContext, a: DStream<number>, _b: DStream<number>) => ssc.transform([a], () => null as unknown as number[]),
    (_ssc: StreamingContext, a: DStream<number>, b: DStream<number>) => a.transformWith(b, () => ({}) as unknown as number[]),
  ]) {
    const ssc = context('v-transform-both');
    const a = ssc.queueStream<number>([[1]]);
    const b = ssc.queueStream<number>([[2]]);
    collectBatches(make(ssc, a, b));
    await ssc.start();
    const error = await rejectsCode(t, ssc.runBatches(1), 'BATCH_FAILED', /transform/);
    t.is((error.cause as TributaryError).code, 'INVALID_TRANSFORM_RESULT');
  }
});

test('transform - mapPartitions with a non-array result fails the batch naming mapPartitions', async (t) => {
  const ssc = context('v-map-partitions');
  const s = ssc.queueStream<number>([[1, 2]]).mapPartitions(() => 'nope' as unknown as number[]);
  collectBatches(s);
  await ssc.start();
  const error = await rejectsCode(t, ssc.runBatches(1), 'BATCH_FAILED', /mapPartitions#2/);
  t.is((error.cause as TributaryError).code, 'INVALID_TRANSFORM_RESULT');
});

test('async - an async function given to a record or batch operator is refused when the graph is built, naming foreachBatch', (t) => {
  const ssc = context('v-async-define');
  const s = ssc.queueStream<number>([[1]]);
  const pairs = s.map((n) => [n, n] as [number, number]);
  const asyncFn = async (x: unknown) => x;
  const cases: [string, () => unknown][] = [
    ['map', () => s.map(asyncFn)],
    ['filter', () => s.filter(asyncFn as unknown as (n: number) => boolean)],
    ['flatMap', () => s.flatMap(asyncFn as unknown as (n: number) => number[])],
    ['mapPartitions', () => s.mapPartitions(asyncFn as unknown as (r: number[]) => number[])],
    ['transform', () => s.transform(asyncFn as unknown as (r: number[]) => number[])],
    ['reduceByKey', () => pairs.reduceByKey(asyncFn as unknown as (a: number, b: number) => number)],
    ['updateStateByKey', () => pairs.updateStateByKey(asyncFn as unknown as (v: number[], s: number | undefined) => number)],
  ];
  for (const [operator, define] of cases)
    throwsCode(t, define, 'INVALID_CONFIG', new RegExp(`^${operator}: async functions are not supported`), /foreachBatch/);
});

test('async - a plain function returning a Promise fails the batch instead of passing Promises on', async (t) => {
  for (const [name, define] of [
    ['map', (s: DStream<number>) => s.map((n) => Promise.resolve(n) as unknown as number)],
    ['filter', (s: DStream<number>) => s.filter((n) => Promise.resolve(n > 5) as unknown as boolean)],
    ['flatMap', (s: DStream<number>) => s.flatMap((n) => Promise.resolve([n]) as unknown as number[])],
    ['transform', (s: DStream<number>) => s.transform((r) => Promise.resolve(r) as unknown as number[])],
  ] as const) {
    const ssc = context(`v-async-${name}`);
    collectBatches(define(ssc.queueStream<number>([[1, 2]])));
    await ssc.start();
    const error = await rejectsCode(t, ssc.runBatches(1), 'BATCH_FAILED');
    t.is((error.cause as TributaryError).code, 'INVALID_TRANSFORM_RESULT', name);
    t.regex((error.cause as Error).message, /async functions are not supported here .*foreachBatch/, name);
  }
});

// ---- lifecycle ------------------------------------------------------------------

test('lifecycle - runBatches without a ManualClock is INVALID_STATE', async (t) => {
  const ssc = context('v-no-manual', { clock: new SystemClock() });
  collectBatches(ssc.queueStream<number>([]));
  await rejectsCode(t, ssc.runBatches(1), 'INVALID_STATE', /ManualClock/);
});

test('lifecycle - runBatches before start() is INVALID_STATE', async (t) => {
  const ssc = context('v-before-start');
  collectBatches(ssc.queueStream<number>([]));
  await rejectsCode(t, ssc.runBatches(1), 'INVALID_STATE', /initialized/);
});

test('lifecycle - runBatches with a bad count is INVALID_CONFIG', async (t) => {
  const ssc = context('v-run-count');
  collectBatches(ssc.queueStream<number>([]));
  await ssc.start();
  await rejectsCode(t, ssc.runBatches(-1), 'INVALID_CONFIG');
  await rejectsCode(t, ssc.runBatches(1.5), 'INVALID_CONFIG');
  await ssc.stop();
});

test('lifecycle - start() twice and start() after stop() are INVALID_STATE', async (t) => {
  const ssc = context('v-start-twice');
  collectBatches(ssc.queueStream<number>([]));
  await ssc.start();
  await rejectsCode(t, ssc.start(), 'INVALID_STATE', /active/);
  await ssc.stop();
  await rejectsCode(t, ssc.start(), 'INVALID_STATE', /stopped/);
  await rejectsCode(t, ssc.runBatches(1), 'INVALID_STATE', /stopped/);
});

test('lifecycle - operators added after start() are INVALID_GRAPH naming the operator', async (t) => {
  const ssc = context('v-after-start');
  const s = ssc.queueStream<[string, number]>([]);
  collectBatches(s);
  await ssc.start();
  throwsCode(t, () => s.map((x) => x), 'INVALID_GRAPH', /cannot add map after the StreamingContext started/);
  throwsCode(t, () => s.reduceByKey((a, b) => a + b), 'INVALID_GRAPH', /reduceByKey/);
  throwsCode(t, () => s.window(2000), 'INVALID_GRAPH', /window/);
  throwsCode(t, () => s.updateStateByKey((vs: number[], st: number | undefined) => (st ?? 0) + vs.length), 'INVALID_GRAPH');
  throwsCode(t, () => ssc.queueStream<number>([]), 'INVALID_GRAPH', /queueStream/);
  throwsCode(t, () => ssc.union([s, s]), 'INVALID_GRAPH', /union/);
  throwsCode(t, () => s.uid('late'), 'INVALID_GRAPH', /uid/);
  throwsCode(t, () => s.checkpoint(10_000), 'INVALID_GRAPH', /checkpoint/);
  throwsCode(t, () => ssc.checkpoint('/tmp/x'), 'INVALID_GRAPH', /checkpoint/);
  await ssc.stop();
});

test('lifecycle - outputs added after start() are INVALID_GRAPH naming the output', async (t) => {
  const ssc = context('v-output-after-start');
  const s = ssc.queueStream<number>([]);
  collectBatches(s);
  await ssc.start();
  throwsCode(t, () => s.foreachBatch(() => {}), 'INVALID_GRAPH', /foreachBatch/);
  throwsCode(t, () => s.print(), 'INVALID_GRAPH', /print/);
  throwsCode(t, () => s.saveAsTextFiles('/tmp/never'), 'INVALID_GRAPH', /saveAsTextFiles/);
  await ssc.stop();
});

test('lifecycle - start() without outputs is INVALID_GRAPH and the context can still be completed', async (t) => {
  const ssc = context('v-no-outputs');
  const s = ssc.queueStream<number>([[1]]).map((x) => x + 1);
  await rejectsCode(t, ssc.start(), 'INVALID_GRAPH', /no output operations/);
  t.is(ssc.lifecycle, 'initialized');
  const out = collectBatches(s);
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out, [{ time: 1000, records: [2] }]);
});

test('lifecycle - a source that fails to open rejects start() and ends the context with that error', async (t) => {
  class Broken extends Receiver<string> {
    onStart(): void {
      throw new Error('cannot connect');
    }
    onStop(): void {}
  }
  const ssc = context('v-open-fails');
  collectBatches(ssc.receiverStream(new Broken()));
  const error = await t.throwsAsync(ssc.start(), { message: 'cannot connect' });
  t.is(ssc.lifecycle, 'stopped');
  await t.throwsAsync(ssc.awaitTermination(), { is: error });
  await rejectsCode(t, ssc.runBatches(1), 'INVALID_STATE', /stopped/);
  await ssc.stop();
});

// ---- graph wiring ---------------------------------------------------------------

test('graph - union of streams with different slides is INVALID_GRAPH naming both streams', (t) => {
  const ssc = context('v-union-slides');
  const a = ssc.queueStream<number>([]);
  const w = a.window(4000, 2000);
  throwsCode(t, () => a.union(w), 'INVALID_GRAPH', /union/, /slide/, /queueStream#1: 1000 ms/, /window#2: 2000 ms/);
  throwsCode(t, () => ssc.union([w, a]), 'INVALID_GRAPH', /union/, /slide/);
});

test('graph - join and cogroup of streams with different slides are INVALID_GRAPH', (t) => {
  const ssc = context('v-join-slides');
  const a = ssc.queueStream<[string, number]>([]);
  const w = a.window(4000, 2000);
  throwsCode(t, () => a.join(w), 'INVALID_GRAPH', /slide/, /window#2: 2000 ms/);
  throwsCode(t, () => a.cogroup(w), 'INVALID_GRAPH', /cogroup/, /slide/);
  throwsCode(t, () => w.leftOuterJoin(a), 'INVALID_GRAPH', /slide/);
  throwsCode(t, () => a.transformWith(w, (x) => x), 'INVALID_GRAPH', /transformWith/, /slide/);
});

test('graph - streams of two contexts cannot be combined', (t) => {
  const one = context('v-two-a');
  const two = context('v-two-b');
  const a = one.queueStream<[string, number]>([]);
  const b = two.queueStream<[string, number]>([]);
  throwsCode(t, () => a.union(b), 'INVALID_GRAPH', /union/, /different StreamingContexts/);
  throwsCode(t, () => one.union([a, b]), 'INVALID_GRAPH', /different StreamingContexts/);
  throwsCode(t, () => a.join(b), 'INVALID_GRAPH', /different StreamingContexts/);
  throwsCode(t, () => a.transformWith(b, (x) => x), 'INVALID_GRAPH', /transformWith/, /different StreamingContexts/);
  throwsCode(t, () => one.transform([a, b], () => []), 'INVALID_GRAPH', /transform/, /different StreamingContexts/);
  t.is(one.graph.nodes.length, 1, 'a refused operator adds no node');
});

test('graph - a duplicate uid is INVALID_GRAPH naming the uid and both operators', async (t) => {
  const ssc = context('v-dup-uid');
  const s = ssc.queueStream<[string, number]>([]);
  const counts = s.reduceByKey((a, b) => a + b).uid('counts');
  const mapped = s.map((x) => x);
  collectBatches(counts);
  collectBatches(mapped);
  let error: TributaryError | undefined;
  try {
    mapped.uid('counts');
    await ssc.start();
  } catch (e) {
    error = e as TributaryError;
  }
  t.truthy(error, 'a duplicate uid is refused');
  t.is(error?.code, 'INVALID_GRAPH');
  t.regex(error?.message ?? '', /"counts"/);
  t.regex(error?.message ?? '', /reduceByKey/);
  t.regex(error?.message ?? '', /map/);
  t.not(ssc.lifecycle, 'active');
});

test('graph - an empty uid is INVALID_GRAPH', (t) => {
  const ssc = context('v-empty-uid');
  const s = ssc.queueStream<number>([]);
  throwsCode(t, () => s.uid(''), 'INVALID_GRAPH', /uid/);
});

test('graph - a bad partitions option is INVALID_GRAPH naming the operator', (t) => {
  const ssc = context('v-op-partitions');
  const s = ssc.queueStream<[string, number]>([]);
  throwsCode(t, () => s.reduceByKey((a, b) => a + b, { partitions: 0 }), 'INVALID_GRAPH', /reduceByKey/, /partitions/);
  throwsCode(t, () => s.repartition(1.5), 'INVALID_GRAPH', /repartition/);
  throwsCode(t, () => s.mapWithState({ update: (_k, v) => v, partitions: -1 }), 'INVALID_GRAPH', /mapWithState/);
});

// ---- config ---------------------------------------------------------------------

for (const appName of ['', 'has space', 'dots.not.allowed', 'slash/no', 42, undefined]) {
  test(`config - appName ${JSON.stringify(appName)} is INVALID_CONFIG`, (t) => {
    throwsCode(t, () => context('x', { appName: appName as string }), 'INVALID_CONFIG', /appName/);
  });
}

for (const partitions of [0, -1, 1.5, 1025, Number.NaN, '2']) {
  test(`config - partitions ${typeof partitions === 'string' ? JSON.stringify(partitions) : String(partitions)} is INVALID_CONFIG`, (t) => {
    throwsCode(t, () => context('v-partitions', { partitions: partitions as number }), 'INVALID_CONFIG', /partitions/);
  });
}

test('config - a missing config object is INVALID_CONFIG', (t) => {
  throwsCode(t, () => new StreamingContext(undefined as unknown as StreamingContextConfig), 'INVALID_CONFIG');
});

test('config - taskTimeoutMs must be a positive whole number', (t) => {
  throwsCode(t, () => context('v-timeout', { taskTimeoutMs: 0 }), 'INVALID_DURATION', /taskTimeoutMs/);
});

test('config - checkpoint needs a directory', (t) => {
  const ssc = context('v-checkpoint-dir');
  throwsCode(t, () => ssc.checkpoint(''), 'INVALID_CONFIG', /checkpoint/);
});

test('config - a good config starts with the defaults', async (t) => {
  const ssc = new StreamingContext({ appName: 'ok_name-1', batchDuration: 250, clock: new ManualClock(), logger: silent });
  t.is(ssc.partitions, 2);
  t.is(ssc.batchDurationMs, 250);
  collectBatches(ssc.queueStream<number>([]));
  await ssc.start();
  await ssc.stop();
  t.is(ssc.lifecycle, 'stopped');
});
