/**
 * Recovery of every stateful operator: the same app runs uninterrupted (the oracle)
 * and with a checkpoint directory, crashed at several batches (before the first
 * checkpoint, right at one, just after one, between two; between batches and with a
 * batch in flight), resumed with getOrCreate on the same clock and finished. Every
 * batch's outputs after recovery must equal the oracle's, each batch time exactly
 * once except the batch in flight at a crash (at-least-once).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { pino } from 'pino';
import { type DStream, type State, StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import {
  type AppBuilder,
  BATCH_MS,
  bytesUnder,
  differences,
  type Emitted,
  type Interruption,
  type RunSpec,
  readJournal,
  runInterrupted,
  runUninterrupted,
  tempDir,
  wordBatches,
} from '../helpers/recovery-harness.ts';

interface Ctx {
  readonly dirs: string[];
}

const test = anyTest as TestFn<Ctx>;

test.before((t) => {
  t.context = { dirs: [] };
});

test.after.always(async (t) => {
  await Promise.all(t.context.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

async function newDir(t: ExecutionContext<Ctx>): Promise<string> {
  const dir = await tempDir();
  t.context.dirs.push(dir);
  return dir;
}

/** 24 batches of words, then 8 empty ones (windows drain, keys time out). */
const BATCHES = 32;
const input = wordBatches(7, 24);

type Pair = [string, number];

function pairs(ssc: Parameters<AppBuilder>[0]): DStream<Pair> {
  return ssc
    .queueStream(input)
    .flatMap((l) => l.split(' ').filter((w) => w.length > 0))
    .map((w) => [w, 1] as Pair);
}

const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;

/** Crash points with the default checkpoint interval (10 batches). */
const crashPoints: Interruption[][] = [
  // Before the first checkpoint.
  [{ at: 4, mode: 'between' }],
  [{ at: 4, mode: 'in-output' }],
  // Right at a checkpoint time: while it is written, once it is committed, and with its batch in flight.
  [{ at: 10, mode: 'between' }],
  [{ at: 10, mode: 'between', afterCheckpoint: 10 }],
  [{ at: 10, mode: 'in-output' }],
  // Just after one.
  [{ at: 11, mode: 'between', afterCheckpoint: 10, downtime: 2 }],
  [{ at: 11, mode: 'in-output', afterCheckpoint: 10 }],
  // Between two.
  [{ at: 15, mode: 'between', afterCheckpoint: 10 }],
  [{ at: 15, mode: 'in-output', afterCheckpoint: 10, downtime: 1 }],
  [{ at: 23, mode: 'in-output', afterCheckpoint: 20 }],
  [{ at: 26, mode: 'between' }],
];

function describe(steps: readonly Interruption[]): string {
  return steps
    .map(
      (s) => `${s.mode}@${s.at}${s.afterCheckpoint ? ` after checkpoint ${s.afterCheckpoint}` : ''}${s.downtime ? ` +${s.downtime}` : ''}`,
    )
    .join(', ');
}

/** Runs the oracle once, then every interruption script against it. */
async function checkRecovery(
  t: ExecutionContext<Ctx>,
  app: AppBuilder,
  scripts: Interruption[][] = crashPoints,
  spec: Partial<RunSpec> = {},
) {
  const runSpec: RunSpec = { batches: BATCHES, ...spec };
  const expected = await runUninterrupted(app, runSpec);
  t.true(expected.length >= BATCHES / 2, 'the oracle emitted batches');
  for (const interruptions of scripts) {
    const dir = await newDir(t);
    const got = await runInterrupted(app, dir, { ...runSpec, interruptions });
    t.log(`${describe(interruptions)}: resumed from checkpoints ${JSON.stringify(got.resumedFrom)}`);
    t.deepEqual(differences(expected, got), [], `crashes ${describe(interruptions)}`);
    t.deepEqual(finalBatch(got.emitted), finalBatch(expected), `final state after ${describe(interruptions)}`);
  }
  return expected;
}

/** The outputs of the last batch time, by output (the final state of stateful outputs). */
function finalBatch(emitted: readonly Emitted[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of emitted) if (e.time === BATCHES * BATCH_MS) out[e.op] = e.records;
  return out;
}

// ---- the operators -------------------------------------------------------------------

const updateState: AppBuilder = (ssc, out) => {
  const state = pairs(ssc).updateStateByKey<string, number, number>(
    // Idle keys with an even count are removed, so removals are recovered too.
    (vs, s) => (vs.length === 0 && s !== undefined && s % 2 === 0 ? undefined : (s ?? 0) + vs.reduce(add, 0)),
    {
      initial: [
        ['a', 100],
        ['z', 5],
        ['y', 4],
      ],
    },
  );
  out('state', state as DStream<unknown>);
};

test('recovery - updateStateByKey with initial state', async (t) => {
  await checkRecovery(t, updateState);
});

function reducedWindow(windowMs: number, slideMs: number, filter: boolean): AppBuilder {
  return (ssc, out) => {
    const w = pairs(ssc).reduceByKeyAndWindow(add, sub, windowMs, slideMs, filter ? { filter: ([, n]) => n > 0 } : {});
    out('window', w as DStream<unknown>);
  };
}

test('recovery - reduceByKeyAndWindow with inverse, no filter, slide 1', async (t) => {
  await checkRecovery(t, reducedWindow(5000, 1000, false));
});

test('recovery - reduceByKeyAndWindow with inverse and filter, slide 1', async (t) => {
  await checkRecovery(t, reducedWindow(5000, 1000, true));
});

test('recovery - reduceByKeyAndWindow with inverse, no filter, slide 2', async (t) => {
  await checkRecovery(t, reducedWindow(6000, 2000, false));
});

test('recovery - reduceByKeyAndWindow with inverse and filter, slide 2', async (t) => {
  await checkRecovery(t, reducedWindow(6000, 2000, true));
});

test('recovery - reduceByKeyAndWindow without inverse', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    out('window', pairs(ssc).reduceByKeyAndWindow(add, 4000, 2000) as DStream<unknown>);
    out('window1', pairs(ssc).reduceByKeyAndWindow(add, 3000) as DStream<unknown>);
  });
});

test('recovery - window(w, s)', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const words = ssc.queueStream(input).flatMap((l) => l.split(' ').filter((w) => w.length > 0));
    out('w3', words.window(3000) as DStream<unknown>);
    out('w4s2', words.window(4000, 2000) as DStream<unknown>);
  });
});

test('recovery - countByWindow', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const words = ssc.queueStream(input).flatMap((l) => l.split(' ').filter((w) => w.length > 0));
    out('count', words.countByWindow(3000, 1000) as DStream<unknown>);
  });
});

test('recovery - countByValueAndWindow', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const words = ssc.queueStream(input).flatMap((l) => l.split(' ').filter((w) => w.length > 0));
    out('byValue', words.countByValueAndWindow(4000, 2000) as DStream<unknown>);
  });
});

test('recovery - reduceByWindow', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const lengths = ssc.queueStream(input).map((l) => l.length);
    out('sum', lengths.reduceByWindow(add, 5000, 1000) as DStream<unknown>);
    out('sumInv', lengths.reduceByWindow(add, sub, 4000, 2000) as DStream<unknown>);
  });
});

test('recovery - groupByKeyAndWindow', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const indexed = ssc.queueStream(input).flatMap((l) => l.split(' ').map((w, i) => [w, i] as Pair));
    out('groups', indexed.groupByKeyAndWindow(3000, 1000) as DStream<unknown>);
  });
});

test('recovery - mapWithState with a timeout, and its stateSnapshots()', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const mapped = pairs(ssc).mapWithState<string, number, number, unknown>({
      update: (key, value, state: State<number>, time) => {
        if (state.isTimingOut()) return [key, 'timeout', state.get(), time];
        const n = (state.getOption() ?? 0) + (value ?? 0);
        // Some keys are removed by hand, some by the timeout.
        if (key === 'f' && n >= 3) state.remove();
        else state.update(n);
        return [key, n];
      },
      timeout: 3000,
      initial: [['z', 10]],
    });
    out('mapped', mapped as DStream<unknown>);
    out('snapshots', mapped.stateSnapshots() as DStream<unknown>);
  });
});

test('recovery - a join of a stateful and a stateless stream', async (t) => {
  await checkRecovery(t, (ssc, out) => {
    const words = pairs(ssc);
    const totals = words.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce(add, 0));
    out('join', totals.join(words.reduceByKey(add)) as DStream<unknown>);
  });
});

// ---- several interruptions, graceful stops, incremental snapshots -----------------------

/** Every stateful operator in one app, with checkpoints every 3 batches. */
const everything: AppBuilder = (ssc, out) => {
  updateState(ssc, out);
  const words = pairs(ssc);
  out('rbkw', words.reduceByKeyAndWindow(add, sub, 5000, 1000).checkpoint(3000) as DStream<unknown>);
  out('rbkwf', words.reduceByKeyAndWindow(add, sub, 4000, 1000, { filter: ([, n]) => n > 0 }) as DStream<unknown>);
  out('win', words.window(4000, 1000) as DStream<unknown>);
  const mapped = words.mapWithState<string, number, number, unknown>({
    update: (key, value, state: State<number>) => {
      if (state.isTimingOut()) return [key, 'timeout'];
      state.update((state.getOption() ?? 0) + (value ?? 0));
      return [key, state.get()];
    },
    timeout: 2000,
  });
  out('mws', mapped as DStream<unknown>);
  out('mwsState', mapped.stateSnapshots() as DStream<unknown>);
};

test('recovery - a second crash soon after the first resume', async (t) => {
  await checkRecovery(t, everything, [
    [
      { at: 7, mode: 'between' },
      { at: 8, mode: 'between' },
    ],
    [
      { at: 7, mode: 'in-output' },
      { at: 8, mode: 'in-output' },
    ],
    [
      { at: 10, mode: 'in-output' },
      { at: 11, mode: 'between' },
    ],
    [
      { at: 5, mode: 'between', downtime: 2 },
      { at: 8, mode: 'in-output' },
      { at: 9, mode: 'between' },
    ],
    // Crashes while the batches after the checkpoint are replayed.
    [
      { at: 8, mode: 'in-output', afterCheckpoint: 6, downtime: 1 },
      { at: 0, mode: 'in-replay' },
      { at: 0, mode: 'in-replay', downtime: 2 },
    ],
    [
      { at: 5, mode: 'between' },
      { at: 0, mode: 'in-replay' },
    ],
  ]);
});

test('recovery - a graceful stop then a resume replays nothing', async (t) => {
  const scripts: Interruption[][] = [
    [{ at: 5, mode: 'graceful' }],
    [{ at: 6, mode: 'graceful' }],
    [{ at: 9, mode: 'graceful' }],
    [
      { at: 4, mode: 'graceful', downtime: 2 },
      { at: 13, mode: 'graceful' },
    ],
  ];
  // Nothing is in flight, so `differences` allows no repeat at all.
  await checkRecovery(t, everything, scripts);
});

test('recovery - incremental snapshots survive several checkpoints in a row', async (t) => {
  const spec = { snapshotFullEvery: 3 };
  const app: AppBuilder = (ssc, out) => {
    const words = pairs(ssc);
    out(
      'state',
      words.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce(add, 0)).checkpoint(2000) as DStream<unknown>,
    );
    out('rbkw', words.reduceByKeyAndWindow(add, sub, 5000, 1000).checkpoint(2000) as DStream<unknown>);
    out('rbkw2', words.reduceByKeyAndWindow(add, sub, 6000, 2000, { filter: ([, n]) => n > 0 }).checkpoint(2000) as DStream<unknown>);
    const mapped = words.mapWithState<string, number, number, unknown>({
      update: (key, value, state: State<number>) => {
        if (state.isTimingOut()) return [key, 'timeout'];
        state.update((state.getOption() ?? 0) + (value ?? 0));
        return [key, state.get()];
      },
      timeout: 4000,
    });
    out('mws', mapped.checkpoint(2000).stateSnapshots() as DStream<unknown>);
  };
  // Checkpoints at 2, 4, 6, ...: full, delta, delta, full, ... per partition.
  await checkRecovery(
    t,
    app,
    [
      [{ at: 7, mode: 'between' }],
      [{ at: 13, mode: 'in-output' }],
      [
        { at: 11, mode: 'between' },
        { at: 15, mode: 'in-output' },
        { at: 19, mode: 'between' },
      ],
    ],
    spec,
  );
  // The journal of a run crashed after several deltas names a delta chain.
  const dir = await newDir(t);
  await runInterrupted(app, dir, { batches: BATCHES, ...spec, interruptions: [{ at: 13, mode: 'between' }] }).catch(() => undefined);
  const chains = (await readJournal(dir))
    .filter((e) => e.type === 'checkpoint.completed')
    .flatMap((e) => (e.type === 'checkpoint.completed' ? e.snapshots : []));
  t.true(
    chains.some((r) => r.kind === 'delta' && r.chain.length >= 2),
    'some checkpoint is a chain of deltas',
  );
});

test('recovery - the journal and snapshot dirs stay bounded over 1,000 batches', async (t) => {
  const dir = await newDir(t);
  const ssc = new StreamingContext({
    appName: 'bounded',
    batchDuration: BATCH_MS,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  ssc.checkpoint(dir);
  const words = ssc
    .generatorStream({ ratePerSecond: 20, seed: 3 })
    .flatMap((l) => l.split(' '))
    .map((w) => [w.slice(0, 2), 1] as Pair);
  words.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length).foreachBatch(() => {});
  words.reduceByKeyAndWindow(add, sub, 5000, 1000).foreachBatch(() => {});
  const sizes = async () => (await bytesUnder(path.join(dir, 'journal'))) + (await bytesUnder(path.join(dir, 'snapshots')));
  // Snapshots are written in the background: measure once the checkpoint of the
  // last batch run is committed, so every sample is taken at the same point.
  let committed = 0;
  let wake: (() => void) | undefined;
  ssc.addStreamingListener({
    onCheckpointCompleted: ({ time }) => {
      committed = time;
      wake?.();
    },
  });
  const committedUpTo = async (time: number) => {
    while (committed < time) await new Promise<void>((resolve) => (wake = resolve));
  };
  await ssc.start();
  let after100 = 0;
  let largest = 0;
  for (let i = 1; i <= 10; i++) {
    await ssc.runBatches(100);
    await committedUpTo(i * 100 * BATCH_MS);
    const size = await sizes();
    if (i === 1) after100 = size;
    largest = Math.max(largest, size);
  }
  await ssc.stop();
  const after1000 = await sizes();
  t.log(`bytes after 100 batches: ${after100}, largest: ${largest}, after 1,000 and a graceful stop: ${after1000}`);
  t.true(after100 > 0);
  t.true(after1000 < 4 * after100);
  t.true(largest < 4 * after100, `largest ${largest} bytes, after 100 batches ${after100} bytes`);
});
