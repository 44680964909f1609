import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { type BatchInfo, Driver } from '../../actors/driver.ts';
import { startActorSystem, stopActor } from '../../actors/system.ts';
import { BatchFailedError, type DStream, StreamingContext, type StreamingContextConfig } from '../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../runtime/api/testing.ts';
import type { GraphNode } from '../../runtime/graph/graph.ts';
import type { OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import { partitionOf } from '../../runtime/graph/partitioner.ts';
import { compilePlan } from '../../runtime/graph/plan.ts';

const silent = pino({ level: 'silent' });

function context(appName: string, extra: Partial<StreamingContextConfig> = {}): StreamingContext {
  return new StreamingContext({ appName, batchDuration: 1000, partitions: 2, clock: new ManualClock(), logger: silent, ...extra });
}

interface Deferred<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Records what listeners report, and lets a test wait until a batch time was submitted. */
function observe(ssc: StreamingContext) {
  const infos: BatchInfo[] = [];
  const started: { time: number; schedulingDelayMs: number }[] = [];
  const submitted: number[] = [];
  const waiting = new Map<number, Deferred>();
  ssc.addStreamingListener({
    onBatchSubmitted: ({ time }) => {
      submitted.push(time);
      waiting.get(time)?.resolve();
    },
    onBatchStarted: (info) => started.push(info),
    onBatchCompleted: (info) => infos.push(info),
  });
  return {
    infos,
    started,
    submitted,
    /** Resolves once the batch of `time` is generated and queued. */
    submittedAt(time: number): Promise<void> {
      if (submitted.includes(time)) return Promise.resolve();
      const d = deferred();
      waiting.set(time, d);
      return d.promise;
    },
  };
}

/** A foreachBatch that holds the batch of `heldTime` until `release()`. */
function holdingOutput<T>(stream: DStream<T>, heldTime: number) {
  const entered = deferred();
  const gate = deferred();
  const seen: number[] = [];
  stream.foreachBatch(async (_records, time) => {
    seen.push(time);
    if (time === heldTime) {
      entered.resolve();
      await gate.promise;
    }
  });
  return { seen, entered: entered.promise, release: () => gate.resolve() };
}

// ---- queueing -------------------------------------------------------------------

test('scheduler - a slow output queues later batches, reports the wait and drops nothing', async (t) => {
  const ssc = context('s-queue');
  const events = observe(ssc);
  const held = holdingOutput(ssc.queueStream<number>([[1], [2], [3], [4], [5]]), 1000);
  await ssc.start();
  const first = ssc.runBatches(1);
  await held.entered;
  const later = ssc.runBatches(3);
  await events.submittedAt(4000);
  t.deepEqual(held.seen, [1000], 'queued batches wait for the running one');
  held.release();
  await first;
  await later;
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(held.seen, [1000, 2000, 3000, 4000, 5000]);
  t.deepEqual(
    events.infos.map((i) => [i.time, i.schedulingDelayMs, i.queuedBatches, i.records]),
    [
      [1000, 0, 3, 1],
      [2000, 2000, 2, 1],
      [3000, 1000, 1, 1],
      [4000, 0, 0, 1],
      [5000, 0, 0, 1],
    ],
  );
  t.deepEqual(
    events.started.map((s) => [s.time, s.schedulingDelayMs]),
    [
      [1000, 0],
      [2000, 2000],
      [3000, 1000],
      [4000, 0],
      [5000, 0],
    ],
  );
  t.deepEqual(events.submitted, [1000, 2000, 3000, 4000, 5000]);
  for (const info of events.infos) t.true(info.processingMs >= 0);
});

test('scheduler - scheduling delay grows with the clock while a batch waits', async (t) => {
  const ssc = context('s-delay');
  const clock = ssc.clock as ManualClock;
  const events = observe(ssc);
  const held = holdingOutput(ssc.queueStream<number>([]), 1000);
  await ssc.start();
  const first = ssc.runBatches(1);
  await held.entered;
  const second = ssc.runBatches(1);
  await events.submittedAt(2000);
  // Time passes without new ticks crossing a batch boundary, then crosses several.
  clock.advance(999);
  clock.advance(4001);
  await events.submittedAt(7000);
  held.release();
  await first;
  await second;
  await ssc.runBatches(0);
  await ssc.stop();
  const delays = new Map(events.infos.map((i) => [i.time, i.schedulingDelayMs]));
  t.is(delays.get(2000), 5000);
  t.is(delays.get(3000), 4000);
  t.is(delays.get(7000), 0);
  t.deepEqual(held.seen, [1000, 2000, 3000, 4000, 5000, 6000, 7000]);
});

// ---- batch times ----------------------------------------------------------------

test('scheduler - batches run at zeroTime + i * batchDuration exactly', async (t) => {
  const clock = new ManualClock(1234);
  const ssc = context('s-times', { clock });
  const events = observe(ssc);
  const s = ssc.queueStream<number>([]);
  const all = collectBatches(s);
  const windowed = collectBatches(s.window(4000, 2000));
  await ssc.start();
  t.is(ssc.zeroTime, 1000);
  await ssc.runBatches(2);
  clock.advance(500);
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    all.map((b) => b.time),
    [2000, 3000, 4000, 5000, 6000],
  );
  t.deepEqual(
    windowed.map((b) => b.time),
    [3000, 5000],
  );
  t.deepEqual(
    events.infos.map((i) => i.time),
    [2000, 3000, 4000, 5000, 6000],
  );
});

test('scheduler - a clock starting on a batch boundary uses it as zero time', async (t) => {
  const ssc = context('s-boundary', { clock: new ManualClock(5000), batchDuration: 250 });
  const out = collectBatches(ssc.queueStream<number>([]));
  await ssc.start();
  await ssc.runBatches(4);
  await ssc.stop();
  t.is(ssc.zeroTime, 5000);
  t.deepEqual(
    out.map((b) => b.time),
    [5250, 5500, 5750, 6000],
  );
});

// ---- failures -------------------------------------------------------------------

interface FailureCase {
  readonly title: string;
  readonly operator: string;
  /** Builds a graph whose user function throws `boom` in the batch of 2000. */
  build(ssc: StreamingContext, boom: Error): void;
}

const explode = (boom: Error) => {
  throw boom;
};

const failureCases: FailureCase[] = [
  {
    title: 'map fused into reduceByKey',
    operator: 'map#2',
    build: (ssc, boom) => {
      ssc
        .queueStream<string>([['a'], ['b', 'bad']])
        .map((w) => (w === 'bad' ? explode(boom) : ([w, 1] as [string, number])))
        .reduceByKey((a, b) => a + b)
        .foreachBatch(() => {});
    },
  },
  {
    title: 'filter in the middle of a fused chain',
    operator: 'filter#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<string>([['a'], ['b', 'bad']])
        .map((w) => w.toUpperCase())
        .filter((w) => (w === 'BAD' ? explode(boom) : true))
        .flatMap((w) => [w, w])
        .foreachBatch(() => {});
    },
  },
  {
    title: 'flatMap fused into countByValue',
    operator: 'flatMap#2',
    build: (ssc, boom) => {
      ssc
        .queueStream<string>([['a b'], ['c bad']])
        .flatMap((l) => (l.includes('bad') ? explode(boom) : l.split(' ')))
        .countByValue()
        .foreachBatch(() => {});
    },
  },
  {
    title: 'reduceByKey function',
    operator: 'reduceByKey#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<string>([
          ['a', 'a'],
          ['b', 'b', 'b', 'b'],
        ])
        .map((w) => [w, 1] as [string, number])
        .reduceByKey((x, y) => (x + y > 2 ? explode(boom) : x + y))
        .foreachBatch(() => {});
    },
  },
  {
    title: 'reduceByKey map-side combine',
    operator: 'reduceByKey#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<string>([['a'], ['b', 'b', 'b']])
        .map((w) => [w, 1] as [string, number])
        .reduceByKey((x, y) => (x + y === 2 ? explode(boom) : x + y), { partitions: 1 })
        .foreachBatch(() => {});
    },
  },
  {
    title: 'updateStateByKey update',
    operator: 'updateStateByKey#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<[string, number]>([[['a', 1]], [['bad', 1]]])
        .updateStateByKey<string, number, number>((vs, s, { key }) => (key === 'bad' ? explode(boom) : (s ?? 0) + vs.length))
        .foreachBatch(() => {});
    },
  },
  {
    title: 'foreachBatch',
    operator: 'foreachBatch#2',
    build: (ssc, boom) => {
      ssc.queueStream<number>([[1], [2]]).foreachBatch((_records, time) => {
        if (time === 2000) throw boom;
      });
    },
  },
  {
    title: 'async foreachBatch',
    operator: 'foreachBatch#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<number>([[1], [2]])
        .map((x) => x)
        .foreachBatch(async (_records, time) => {
          await Promise.resolve();
          if (time === 2000) throw boom;
        });
    },
  },
  {
    title: 'transform',
    operator: 'transform#2',
    build: (ssc, boom) => {
      ssc
        .queueStream<number>([[1], [2]])
        .transform((records, time) => (time === 2000 ? explode(boom) : records))
        .foreachBatch(() => {});
    },
  },
  {
    title: 'mapPartitions fused between maps',
    operator: 'mapPartitions#3',
    build: (ssc, boom) => {
      ssc
        .queueStream<number>([[1], [2]])
        .map((x) => x * 10)
        .mapPartitions((records, time) => (time === 2000 && records.length > 0 ? explode(boom) : records))
        .map((x) => [x, 1] as [number, number])
        .reduceByKey((a, b) => a + b)
        .foreachBatch(() => {});
    },
  },
];

for (const c of failureCases) {
  test(`failures - a throwing ${c.title} fails the batch naming ${c.operator.replace(/#\d+$/, '')} and the batch time`, async (t) => {
    const ssc = context(`s-fail-${c.operator.replace(/[#.]/g, '-')}`);
    const boom = new Error(`boom in ${c.title}`);
    const errors: Error[] = [];
    ssc.addStreamingListener({ onError: (e) => errors.push(e) });
    c.build(ssc, boom);
    await ssc.start();
    await ssc.runBatches(1);
    const error = await t.throwsAsync(ssc.runBatches(1), { instanceOf: BatchFailedError });
    const failed = error as BatchFailedError;
    t.is(failed.code, 'BATCH_FAILED');
    t.is(failed.operator, c.operator);
    t.is(failed.batchTime, 2000);
    t.is(failed.cause, boom, 'the original error is the cause');
    t.is(failed.message, `batch 2000 failed in ${c.operator}: ${boom.message}`);
    await t.throwsAsync(ssc.awaitTermination(), { is: failed });
    t.deepEqual(errors, [failed]);
    t.is(ssc.lifecycle, 'stopped');
  });
}

test('failures - a non-Error thrown value is kept as the cause', async (t) => {
  const ssc = context('s-fail-string');
  ssc
    .queueStream<number>([[1]])
    .map((x) => {
      if (x === 1) throw 'plain string';
      return x;
    })
    .count()
    .foreachBatch(() => {});
  await ssc.start();
  const error = (await t.throwsAsync(ssc.runBatches(1), { instanceOf: BatchFailedError })) as BatchFailedError;
  t.is(error.operator, 'map#2');
  t.is(error.cause, 'plain string');
});

test('failures - a key without a canonical encoding fails the batch naming the keyed operator', async (t) => {
  const ssc = context('s-fail-key');
  ssc
    .queueStream<number>([[1]])
    .map((x) => [new Map([[x, x]]), 1] as [Map<number, number>, number])
    .reduceByKey((a, b) => a + b)
    .foreachBatch(() => {});
  await ssc.start();
  const error = (await t.throwsAsync(ssc.runBatches(1), { instanceOf: BatchFailedError })) as BatchFailedError;
  t.is(error.operator, 'reduceByKey#3');
  t.true(error.cause instanceof TypeError);
  t.regex(error.message, /keys must be primitives, arrays, dates or plain objects, got Map/);
});

test('failures - a listener that throws does not stop the batches', async (t) => {
  const ssc = context('s-listener-throws');
  ssc.addStreamingListener({
    onBatchSubmitted: () => {
      throw new Error('listener bug');
    },
    onBatchCompleted: () => {
      throw new Error('listener bug');
    },
  });
  const events = observe(ssc);
  const out = collectBatches(ssc.queueStream<number>([[1], [2]]));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.time),
    [1000, 2000],
  );
  t.deepEqual(
    events.infos.map((i) => i.time),
    [1000, 2000],
  );
});

test('failures - no batch runs after a failed one', async (t) => {
  const ssc = context('s-fail-stops');
  const seen: number[] = [];
  const held = deferred();
  const entered = deferred();
  const events = observe(ssc);
  ssc.queueStream<number>([[1], [2], [3]]).foreachBatch(async (_r, time) => {
    seen.push(time);
    if (time === 1000) {
      entered.resolve();
      await held.promise;
      throw new Error('first batch fails');
    }
  });
  await ssc.start();
  const run = ssc.runBatches(3);
  await entered.promise;
  await events.submittedAt(3000);
  held.resolve();
  const error = (await t.throwsAsync(run, { instanceOf: BatchFailedError })) as BatchFailedError;
  t.is(error.batchTime, 1000);
  await t.throwsAsync(ssc.awaitTermination());
  t.deepEqual(seen, [1000]);
  t.deepEqual(events.infos, []);
});

// ---- state after a failure ------------------------------------------------------

/** Runs a compiled graph on a Driver of its own, so state actors outlive a failed batch. */
async function driverHarness(ssc: StreamingContext) {
  const plan = compilePlan(ssc.graph.nodes, ssc.graph.outputs);
  const system = startActorSystem();
  const inputs = new Map<number, OpenInput<unknown>>();
  for (const node of plan.inputs) {
    if (node.kind === 'input') inputs.set(node.id, await node.source.open({} as SourceEnv));
  }
  const completed: number[] = [];
  const failure = deferred<Error>();
  const done = new Map<number, Deferred>();
  const driver = new Driver(system, {
    plan,
    clock: ssc.clock,
    zeroTimeMs: 0,
    taskTimeoutMs: 60_000,
    inputs,
    listener: {
      batchCompleted: (info) => {
        completed.push(info.time);
        done.get(info.time)?.resolve();
      },
      failed: (error) => failure.resolve(error),
    },
  });
  const stateful = (operator: string): GraphNode => plan.stateful.find((n) => n.operator === operator) as GraphNode;
  return {
    driver,
    completed,
    failure: failure.promise,
    /** Runs the batch of `time` and resolves when it completed. */
    run(time: number): Promise<void> {
      const d = deferred();
      done.set(time, d);
      driver.tick(time);
      return d.promise;
    },
    /** The committed state of every partition of the stateful operator `operator`. */
    snapshots(operator: string): Promise<unknown[]> {
      return driver.stateSnapshots(stateful(operator).id);
    },
    stop: () => stopActor(system),
  };
}

function keysByPartition(partitions: number): string[] {
  const found: string[] = [];
  for (let i = 0; found.length < partitions && i < 1000; i++) {
    const key = `k${i}`;
    if (found[partitionOf(key, partitions)] === undefined) found[partitionOf(key, partitions)] = key;
  }
  return found;
}

test('state - a failing update on one partition leaves every partition at its committed state', async (t) => {
  const [k0, k1] = keysByPartition(2) as [string, string];
  const bad = keysByPartition(2).length === 2 ? findKeyIn(1, 2, 'bad') : 'bad';
  const ssc = context('s-state-partial');
  const calls: string[] = [];
  ssc
    .queueStream<[string, number]>([
      [
        [k0, 1],
        [k1, 1],
      ],
      [
        [k0, 5],
        [k1, 5],
        [bad, 1],
      ],
    ])
    .updateStateByKey<string, number, number>((vs, s, { key }) => {
      calls.push(key);
      if (key === bad) throw new Error('bad key');
      return (s ?? 0) + vs.reduce((a, b) => a + b, 0);
    })
    .foreachBatch(() => {});
  const h = await driverHarness(ssc);
  t.teardown(h.stop);
  await h.run(1000);
  const before = await h.snapshots('updateStateByKey');
  t.deepEqual(before, [{ entries: [[k0, 1]] }, { entries: [[k1, 1]] }]);
  calls.length = 0;
  h.driver.tick(2000);
  const error = (await h.failure) as BatchFailedError;
  t.is(error.operator, 'updateStateByKey#3');
  t.is(error.batchTime, 2000);
  t.true(calls.includes(k0), 'the healthy partition stepped');
  t.deepEqual(await h.snapshots('updateStateByKey'), before);
  t.deepEqual(h.completed, [1000]);
});

function findKeyIn(partition: number, partitions: number, prefix: string): string {
  for (let i = 0; i < 1000; i++) if (partitionOf(`${prefix}${i}`, partitions) === partition) return `${prefix}${i}`;
  throw new Error('no key found');
}

test('state - an output failing after the state stepped rolls back every state operator', async (t) => {
  const ssc = context('s-state-output');
  const s = ssc.queueStream<[string, number]>([[['a', 1]], [['a', 1]]]);
  const totals = s.updateStateByKey<string, number, number>((vs, st) => (st ?? 0) + vs.length);
  const windowed = s.window(3000);
  totals.foreachBatch(() => {});
  windowed.foreachBatch((_r, time) => {
    if (time === 2000) throw new Error('sink down');
  });
  const h = await driverHarness(ssc);
  t.teardown(h.stop);
  await h.run(1000);
  const totalsBefore = await h.snapshots('updateStateByKey');
  const windowBefore = await h.snapshots('window');
  h.driver.tick(2000);
  const error = (await h.failure) as BatchFailedError;
  t.is(error.operator, 'foreachBatch#6');
  t.deepEqual(await h.snapshots('updateStateByKey'), totalsBefore);
  t.deepEqual(await h.snapshots('window'), windowBefore);
});

test('state - mapWithState changes made before a throw in the same partition are undone', async (t) => {
  const ssc = context('s-state-mws');
  ssc
    .queueStream<[string, number]>([
      [
        ['a', 1],
        ['b', 1],
      ],
      [
        ['a', 1],
        ['c', 1],
        ['boom', 1],
      ],
    ])
    .mapWithState<string, number, number, string>({
      partitions: 1,
      update: (key, value, state) => {
        if (key === 'boom') throw new Error('boom');
        state.update((state.exists() ? state.get() : 0) + (value ?? 0));
        return key;
      },
    })
    .foreachBatch(() => {});
  const h = await driverHarness(ssc);
  t.teardown(h.stop);
  await h.run(1000);
  // Entries are compared as sets: a rollback may leave restored keys in another order.
  const sorted = (snapshots: unknown[]) =>
    snapshots.map((s) => {
      const { entries, seed } = s as { entries: [string, unknown][]; seed: unknown };
      return { entries: [...entries].sort(([a], [b]) => a.localeCompare(b)), seed };
    });
  const before = sorted(await h.snapshots('mapWithState'));
  t.deepEqual(
    (before[0]?.entries ?? []).map(([k]) => k),
    ['a', 'b'],
  );
  h.driver.tick(2000);
  const error = (await h.failure) as BatchFailedError;
  t.is(error.operator, 'mapWithState#3');
  t.deepEqual(sorted(await h.snapshots('mapWithState')), before);
});

// ---- stop and crash -------------------------------------------------------------

test('lifecycle - graceful stop() finishes the running and queued batches', async (t) => {
  const ssc = context('s-graceful');
  const events = observe(ssc);
  const held = holdingOutput(ssc.queueStream<number>([[1], [2], [3]]), 1000);
  await ssc.start();
  const run = ssc.runBatches(3);
  await held.entered;
  await events.submittedAt(3000);
  const stopped = ssc.stop();
  t.is(ssc.lifecycle, 'stopped');
  held.release();
  await stopped;
  await run;
  await ssc.awaitTermination();
  t.deepEqual(held.seen, [1000, 2000, 3000]);
  t.deepEqual(
    events.infos.map((i) => i.records),
    [1, 1, 1],
  );
});

test('lifecycle - stop() right after the clock moved still runs the batches of those ticks', async (t) => {
  const ssc = context('s-stop-ticks');
  const clock = ssc.clock as ManualClock;
  const out = collectBatches(ssc.queueStream<number>([[1], [2], [3]]));
  await ssc.start();
  clock.advance(3000);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, [1]],
      [2000, [2]],
      [3000, [3]],
    ],
  );
});

test('lifecycle - stop() before start() and twice is harmless', async (t) => {
  const ssc = context('s-stop-twice');
  collectBatches(ssc.queueStream<number>([]));
  await ssc.stop();
  await ssc.stop();
  await ssc.awaitTermination();
  t.is(ssc.lifecycle, 'stopped');
});

test('lifecycle - crash() resolves awaitTermination and runs no further batch', async (t) => {
  const ssc = context('s-crash');
  const events = observe(ssc);
  const held = holdingOutput(ssc.queueStream<number>([[1], [2], [3]]), 1000);
  await ssc.start();
  const run = ssc.runBatches(3);
  await held.entered;
  await events.submittedAt(3000);
  ssc.crash();
  await ssc.awaitTermination();
  await t.throwsAsync(run, { code: 'INVALID_STATE', message: /crashed/ });
  held.release();
  await drainWithAnotherContext();
  t.deepEqual(held.seen, [1000]);
  t.deepEqual(events.infos, [], 'the abandoned batch reports nothing');
  t.is(ssc.lifecycle, 'stopped');
});

test('lifecycle - crash() of an idle context resolves awaitTermination', async (t) => {
  const ssc = context('s-crash-idle');
  const out = collectBatches(ssc.queueStream<number>([[1]]));
  await ssc.start();
  await ssc.runBatches(1);
  ssc.crash();
  await ssc.awaitTermination();
  ssc.crash();
  t.deepEqual(
    out.map((b) => b.time),
    [1000],
  );
});

/**
 * Runs two batches of a fresh context to completion. Its actor messages share the
 * event loop's queues with the crashed context's, in order, and two whole batches
 * take more turns than any abandoned step of the crashed context would need: once
 * they are done, whatever the crashed context still had scheduled has run.
 */
async function drainWithAnotherContext(): Promise<void> {
  const other = context('s-drain');
  collectBatches(
    other
      .queueStream<number>([[1], [2]])
      .map((x) => [x, 1] as [number, number])
      .reduceByKey((a, b) => a + b),
  );
  await other.start();
  await other.runBatches(2);
  await other.stop();
}

// ---- fusion ---------------------------------------------------------------------

test('fusion - map, filter and flatMap fuse into the map side of reduceByKey', (t) => {
  const ssc = context('s-fusion-plan');
  const input = ssc.queueStream<string>([]);
  const m = input.map((l) => l.trim());
  const f = m.filter((l) => l.length > 0);
  const fm = f.flatMap((l) => l.split(' '));
  const pairs = fm.map((w) => [w, 1] as [string, number]);
  const counts = pairs.reduceByKey((a, b) => a + b);
  counts.foreachBatch(() => {});
  const plan = compilePlan(ssc.graph.nodes, ssc.graph.outputs);
  t.deepEqual(
    plan.order.map((n) => n.name),
    [input.node.name, counts.node.name],
  );
  const feed = plan.feedOf(pairs.node);
  t.is(feed.source, input.node);
  t.deepEqual(
    feed.nodes.map((n) => n.name),
    ['map#2', 'filter#3', 'flatMap#4', 'map#5'],
  );
  t.is(feed.ops.length, 4);
});

test('fusion - a fused chain calls each user function once per record, in one pass', async (t) => {
  const ssc = context('s-fusion-run');
  const calls = { map: 0, filter: 0, flatMap: 0, reduce: 0 };
  const counts = ssc
    .queueStream<string>([['a b', ' ', 'b c c'], ['c']])
    .map((l) => {
      calls.map++;
      return l.trim();
    })
    .filter((l) => {
      calls.filter++;
      return l.length > 0;
    })
    .flatMap((l) => {
      calls.flatMap++;
      return l.split(' ').map((w) => [w, 1] as [string, number]);
    })
    .reduceByKey((a, b) => {
      calls.reduce++;
      return a + b;
    });
  const out = collectBatches(counts);
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(calls, { map: 4, filter: 4, flatMap: 3, reduce: 2 });
  t.deepEqual(
    out.map((b) => [b.time, b.records.sort()]),
    [
      [
        1000,
        [
          ['a', 1],
          ['b', 2],
          ['c', 2],
        ],
      ],
      [2000, [['c', 1]]],
    ],
  );
});

test('fusion - a narrow node with two consumers is materialized and computed once per batch', async (t) => {
  const ssc = context('s-fusion-shared');
  let calls = 0;
  const shared = ssc.queueStream<number>([[1, 2, 3], [4]]).map((x) => {
    calls++;
    return x * 10;
  });
  const evens = collectBatches(shared.filter((x) => x % 20 === 0));
  const sums = collectBatches(shared.map((x) => [x % 20, x] as [number, number]).reduceByKey((a, b) => a + b));
  const plan = compilePlan(ssc.graph.nodes, ssc.graph.outputs);
  t.true(plan.order.includes(shared.node), 'the shared node is computed on its own');
  t.is(plan.feedOf(shared.node).ops.length, 0);
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.is(calls, 4, 'one call per input record, whatever the number of consumers');
  t.deepEqual(
    evens.map((b) => b.records),
    [[20], [40]],
  );
  t.deepEqual(
    sums.map((b) => b.records.sort()),
    [
      [
        [0, 20],
        [10, 40],
      ],
      [[0, 40]],
    ],
  );
});

test('fusion - a narrow node with an output and a consumer is computed once per batch', async (t) => {
  const ssc = context('s-fusion-output');
  let calls = 0;
  const words = ssc.queueStream<string>([['a', 'b', 'a']]).map((w) => {
    calls++;
    return [w, 1] as [string, number];
  });
  const raw = collectBatches(words);
  const counts = collectBatches(words.reduceByKey((a, b) => a + b));
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(calls, 3);
  t.is(raw[0]?.records.length, 3);
  t.deepEqual(counts[0]?.records.sort(), [
    ['a', 2],
    ['b', 1],
  ]);
});

test('fusion - operators no output depends on never run', async (t) => {
  const ssc = context('s-fusion-dead');
  let dead = 0;
  const input = ssc.queueStream<number>([[1, 2]]);
  input.map((x) => {
    dead++;
    return x;
  });
  input
    .map((x) => [x, x] as [number, number])
    .updateStateByKey<number, number, number>(() => {
      dead++;
      return 1;
    });
  const out = collectBatches(input);
  const plan = compilePlan(ssc.graph.nodes, ssc.graph.outputs);
  t.deepEqual(
    plan.order.map((n) => n.name),
    [input.node.name],
  );
  t.deepEqual(plan.stateful, []);
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(dead, 0);
  t.deepEqual(out[0]?.records, [1, 2]);
});

test('fusion - a self-join reads its materialized parent once', async (t: ExecutionContext) => {
  const ssc = context('s-fusion-self-join');
  let calls = 0;
  const pairs = ssc.queueStream<string>([['a', 'b']]).map((w) => {
    calls++;
    return [w, 1] as [string, number];
  });
  const joined = collectBatches(pairs.join(pairs));
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(calls, 2);
  t.deepEqual(joined[0]?.records.sort(), [
    ['a', [1, 1]],
    ['b', [1, 1]],
  ]);
});
