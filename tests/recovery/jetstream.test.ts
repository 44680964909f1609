/**
 * Recovery with checkpoints in JetStream (`ssc.checkpoint('nats://...')`) against real
 * nats-servers: the file-journal crash scenarios on a JetStream journal and object
 * store, a graceful stop, a wrong graph, two drivers on one app (the older one is
 * FENCED), a server killed and restarted mid-run, and the SIGKILL of the journal
 * stream's leader on a 3-node cluster with an R3 journal. One server for the file
 * (plus the cluster of the cluster test); every run has its own app name, so its own
 * stream and bucket.
 */
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { pino } from 'pino';
import type { JournalEvent } from '../../journal/events.ts';
import { journalNames } from '../../journal/jetstream-journal.ts';
import { type DStream, type State, StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import type { Logger } from '../../runtime/base/logger.ts';
import { waitForReplicaAgreement } from '../../runtime/cli/chaos/replicas.ts';
import { isTransientNatsError } from '../../runtime/nats/nats-connection.ts';
import { deferred, quiet } from '../helpers/checkpoint-kit.ts';
import { type JournalMessage, journalMessages, within } from '../helpers/jetstream-journal-kit.ts';
import { connectTo, type NatsCluster, type NatsServer, startNatsCluster, startNatsServer } from '../helpers/nats-server.ts';
import {
  type AppBuilder,
  BATCH_MS,
  canonical,
  differences,
  type Emitted,
  type Interruption,
  type RunSpec,
  runInterrupted,
  runUninterrupted,
  wordBatches,
} from '../helpers/recovery-harness.ts';

interface Ctx {
  server: NatsServer;
  /** Clusters started by tests (an array: ava gives each test a shallow copy of the context). */
  clusters: NatsCluster[];
  connections: NatsConnection[];
  /** Contexts started by tests; stopped in teardown if a test failed before it stopped them. */
  contexts: StreamingContext[];
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context = { server: await startNatsServer(), clusters: [], connections: [], contexts: [] };
});

test.after.always(async (t) => {
  for (const ssc of t.context.contexts) if (ssc.lifecycle === 'active') ssc.crash();
  await Promise.allSettled(t.context.connections.map((nc) => nc.close()));
  await t.context.server?.shutdown();
  await Promise.allSettled(t.context.clusters.map((c) => c.shutdown()));
});

let apps = 0;

/** An app name no other run of this file uses (each app has its own stream and bucket). */
function appName(what: string): string {
  return `jsr-${process.pid}-${++apps}-${what}`;
}

async function connection(t: ExecutionContext<Ctx>, urls: string | string[]): Promise<NatsConnection> {
  const nc = await connectTo(urls);
  t.context.connections.push(nc);
  return nc;
}

/** 24 batches of words, then 8 empty ones (windows drain, keys time out). */
const BATCHES = 32;
const input = wordBatches(11, 24);

type Pair = [string, number];

function pairs(ssc: StreamingContext): DStream<Pair> {
  return ssc
    .queueStream(input)
    .flatMap((l) => l.split(' ').filter((w) => w.length > 0))
    .map((w) => [w, 1] as Pair);
}

const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;

// ---- the apps --------------------------------------------------------------------------

const updateState: AppBuilder = (ssc, out) => {
  const state = pairs(ssc).updateStateByKey<string, number, number>(
    // Idle keys with an even count are removed, so removals are recovered too.
    (vs, s) => (vs.length === 0 && s !== undefined && s % 2 === 0 ? undefined : (s ?? 0) + vs.reduce(add, 0)),
    { initial: [['a', 100]] },
  );
  out('state', state as DStream<unknown>);
};

const reducedWindow: AppBuilder = (ssc, out) => {
  const words = pairs(ssc);
  out('window', words.reduceByKeyAndWindow(add, sub, 5000, 1000) as DStream<unknown>);
  out('filtered', words.reduceByKeyAndWindow(add, sub, 6000, 2000, { filter: ([, n]) => n > 0 }) as DStream<unknown>);
};

const windowed: AppBuilder = (ssc, out) => {
  const words = ssc.queueStream(input).flatMap((l) => l.split(' ').filter((w) => w.length > 0));
  out('w3', words.window(3000) as DStream<unknown>);
  out('w4s2', words.window(4000, 2000) as DStream<unknown>);
};

const mappedWithState: AppBuilder = (ssc, out) => {
  const mapped = pairs(ssc).mapWithState<string, number, number, unknown>({
    update: (key, value, state: State<number>, time) => {
      if (state.isTimingOut()) return [key, 'timeout', state.get(), time];
      const n = (state.getOption() ?? 0) + (value ?? 0);
      if (key === 'f' && n >= 3) state.remove();
      else state.update(n);
      return [key, n];
    },
    timeout: 3000,
    initial: [['z', 10]],
  });
  out('mapped', mapped as DStream<unknown>);
  out('snapshots', mapped.stateSnapshots() as DStream<unknown>);
};

/** Several stateful operators with checkpoints every 3 batches. */
const everything: AppBuilder = (ssc, out) => {
  updateState(ssc, out);
  const words = pairs(ssc);
  out('rbkw', words.reduceByKeyAndWindow(add, sub, 5000, 1000).checkpoint(3000) as DStream<unknown>);
  out('win', words.window(4000, 1000) as DStream<unknown>);
  const mapped = words.mapWithState<string, number, number, unknown>({
    update: (key, value, state: State<number>) => {
      if (state.isTimingOut()) return [key, 'timeout'];
      state.update((state.getOption() ?? 0) + (value ?? 0));
      return [key, state.get()];
    },
    timeout: 2000,
  });
  out('mwsState', mapped.stateSnapshots() as DStream<unknown>);
};

// ---- crash points ------------------------------------------------------------------------

/** Crash points with the default checkpoint interval (10 batches). */
const crashPoints: Interruption[][] = [
  [{ at: 4, mode: 'in-output' }],
  [{ at: 10, mode: 'between' }],
  [{ at: 11, mode: 'between', afterCheckpoint: 10, downtime: 2 }],
  [{ at: 15, mode: 'in-output', afterCheckpoint: 10, downtime: 1 }],
  [{ at: 23, mode: 'in-output', afterCheckpoint: 20 }],
  [
    { at: 7, mode: 'in-output' },
    { at: 0, mode: 'in-replay', downtime: 2 },
  ],
];

function describe(steps: readonly Interruption[]): string {
  return steps
    .map(
      (s) => `${s.mode}@${s.at}${s.afterCheckpoint ? ` after checkpoint ${s.afterCheckpoint}` : ''}${s.downtime ? ` +${s.downtime}` : ''}`,
    )
    .join(', ');
}

/** The outputs of the last batch time, by output (the final state of stateful outputs). */
function finalBatch(emitted: readonly Emitted[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of emitted) if (e.time === BATCHES * BATCH_MS) out[e.op] = e.records;
  return out;
}

/**
 * Runs the oracle once, then every script on a JetStream checkpoint of its own;
 * resolves with the checkpoint each run resumed from, at each resume.
 */
async function checkRecovery(
  t: ExecutionContext<Ctx>,
  name: string,
  app: AppBuilder,
  scripts: Interruption[][] = crashPoints,
): Promise<(number | undefined)[][]> {
  const spec: RunSpec = { batches: BATCHES };
  const expected = await runUninterrupted(app, spec);
  t.true(expected.length >= BATCHES / 2, 'the oracle emitted batches');
  const resumedFrom: (number | undefined)[][] = [];
  for (const interruptions of scripts) {
    const got = await runInterrupted(app, t.context.server.url, { ...spec, interruptions, appName: appName(name) });
    t.log(`${describe(interruptions)}: resumed from checkpoints ${JSON.stringify(got.resumedFrom)}`);
    t.deepEqual(differences(expected, got), [], `crashes ${describe(interruptions)}`);
    t.deepEqual(finalBatch(got.emitted), finalBatch(expected), `final state after ${describe(interruptions)}`);
    resumedFrom.push(got.resumedFrom);
  }
  return resumedFrom;
}

test('jetstream recovery - updateStateByKey', async (t) => {
  await checkRecovery(t, 'ustate', updateState);
});

test('jetstream recovery - reduceByKeyAndWindow with inverse (with and without filter)', async (t) => {
  await checkRecovery(t, 'rbkw', reducedWindow);
});

test('jetstream recovery - window(w, s)', async (t) => {
  await checkRecovery(t, 'window', windowed);
});

test('jetstream recovery - mapWithState with a timeout, and its stateSnapshots()', async (t) => {
  await checkRecovery(t, 'mws', mappedWithState);
});

test('jetstream recovery - a graceful stop then a resume replays nothing', async (t) => {
  const scripts: Interruption[][] = [
    [{ at: 5, mode: 'graceful' }],
    [{ at: 9, mode: 'graceful', downtime: 2 }],
    [
      { at: 4, mode: 'graceful' },
      { at: 13, mode: 'graceful', afterCheckpoint: 12 },
    ],
  ];
  // Nothing is in flight, so `differences` allows no repeated output at all.
  const resumedFrom = await checkRecovery(t, 'graceful', everything, scripts);
  // Each stop checkpointed its last batch: the resume starts there, with no batch to replay.
  t.deepEqual(
    resumedFrom,
    scripts.map((steps) => steps.map((s) => s.at)),
  );
});

// ---- contexts built by hand ------------------------------------------------------------------

/**
 * A context of `updateState` named `app` whose outputs land in `emitted`; `intervalBatches`
 * sets its checkpoint interval (default: Spark's, 10 batches here).
 */
function stateApp(
  t: ExecutionContext<Ctx>,
  app: string,
  clock: ManualClock,
  emitted: Emitted[],
  { logger = quiet, intervalBatches }: { logger?: Logger; intervalBatches?: number } = {},
): StreamingContext {
  const ssc = new StreamingContext({ appName: app, batchDuration: BATCH_MS, partitions: 2, clock, logger });
  updateState(ssc, (name, stream) =>
    (intervalBatches === undefined ? stream : stream.checkpoint(intervalBatches * BATCH_MS)).foreachBatch(
      (records, time) => void emitted.push({ op: name, time, records: canonical(records) }),
    ),
  );
  t.context.contexts.push(ssc);
  return ssc;
}

/** Far beyond the runs below: no checkpoint, so no segment head repeating facts, until the graceful stop. */
const NO_CHECKPOINT_IN_RUN = 1000;

/**
 * Checks the journal of a run without checkpoints before its graceful stop: every batch 1..n has exactly one
 * `batch.allocated` and one `batch.completed`, in time order, the completion after the allocation.
 */
function assertJournaledOnce(t: ExecutionContext<Ctx>, messages: readonly JournalMessage[], n: number): void {
  // Nothing is journaled twice: the head lives in KV, so every message is the run's own.
  const run = messages.map((m) => m.event);
  const times = Array.from({ length: n }, (_, i) => (i + 1) * BATCH_MS);
  t.deepEqual(timesOf(run, 'batch.allocated'), times, 'each allocation journaled once, in order');
  t.deepEqual(timesOf(run, 'batch.completed'), times, 'each completion journaled once, in order');
  for (const time of times) {
    const a = run.findIndex((e) => e.type === 'batch.allocated' && e.time === time);
    const c = run.findIndex((e) => e.type === 'batch.completed' && e.time === time);
    if (a > c) t.fail(`batch ${time} was journaled as completed before its allocation`);
  }
  const last = messages
    .map((m) => m.event)
    .filter((e) => e.type === 'checkpoint.completed')
    .pop();
  t.is(last?.time, n * BATCH_MS, 'the graceful stop checkpointed the last batch');
}

/** The batch times of `type` events among `events`, in journal order. */
function timesOf(events: readonly JournalEvent[], type: 'batch.allocated' | 'batch.completed'): number[] {
  return events.flatMap((e) => (e.type === type ? [e.time] : []));
}

/** `emitted` by batch time (each time exactly once), for comparison with the oracle. */
function byTime(emitted: readonly Emitted[], from: number, to: number): Map<number, unknown[]> {
  const out = new Map<number, unknown[]>();
  for (const e of emitted) {
    if (e.time < from * BATCH_MS || e.time > to * BATCH_MS) continue;
    if (out.has(e.time)) throw new Error(`batch ${e.time} emitted twice`);
    out.set(e.time, e.records);
  }
  return out;
}

test('jetstream recovery - a different graph on the same app is INCOMPATIBLE_CHECKPOINT and changes nothing', async (t) => {
  const app = appName('graph');
  const url = t.context.server.url;
  const emitted: Emitted[] = [];
  const first = stateApp(t, app, new ManualClock(), emitted);
  first.checkpoint(url);
  await first.start();
  await first.runBatches(3);
  await first.stop();
  const nc = await connection(t, url);
  const before = await journalMessages(nc, app);

  const other = await StreamingContext.getOrCreate(
    url,
    () => {
      const ssc = new StreamingContext({ appName: app, batchDuration: BATCH_MS, partitions: 2, clock: new ManualClock(), logger: quiet });
      pairs(ssc)
        .reduceByKeyAndWindow(add, 3000)
        .foreachBatch(() => {});
      t.context.contexts.push(ssc);
      return ssc;
    },
    { clock: new ManualClock(3 * BATCH_MS) },
  );
  const error = await t.throwsAsync(other.start());
  t.is((error as { code?: string }).code, 'INCOMPATIBLE_CHECKPOINT');
  t.regex(error?.message ?? '', /different graph/);
  t.true(((error as { differences?: string[] }).differences ?? []).length > 0, 'the differences are listed');
  t.is(other.lifecycle, 'stopped');
  await t.throwsAsync(other.awaitTermination(), { message: /different graph/ });
  t.deepEqual(await journalMessages(nc, app), before, 'the refused start wrote nothing');

  // The right graph still resumes from it.
  const again: Emitted[] = [];
  const resumed = await StreamingContext.getOrCreate(url, () => stateApp(t, app, new ManualClock(), again), {
    clock: new ManualClock(3 * BATCH_MS),
  });
  await resumed.start();
  await resumed.runBatches(2);
  await resumed.stop();
  const expected = await runUninterrupted(updateState, { batches: 5 });
  t.deepEqual(byTime(again, 4, 5), byTime(expected, 4, 5));
});

test('jetstream recovery - a second driver on the same app fences the first at its next batch; the second runs on', async (t) => {
  const app = appName('two-drivers');
  const url = t.context.server.url;
  const expected = await runUninterrupted(updateState, { batches: 8 });
  const firstOut: Emitted[] = [];
  const clock1 = new ManualClock();
  const first = stateApp(t, app, clock1, firstOut);
  first.checkpoint(url);
  await first.start();
  await first.runBatches(3);

  const secondOut: Emitted[] = [];
  const clock2 = new ManualClock(clock1.now());
  const second = await StreamingContext.getOrCreate(url, () => stateApp(t, app, clock2, secondOut), { clock: clock2 });
  await second.start();
  t.is(first.lifecycle, 'active', 'the first does not know yet');

  // The zombie's next batch cannot journal its allocation: it stops with FENCED.
  const runError = await t.throwsAsync(first.runBatches(1));
  t.is((runError as { code?: string }).code, 'FENCED');
  const ended = await t.throwsAsync(first.awaitTermination());
  t.is((ended as { code?: string }).code, 'FENCED');
  t.regex(ended?.message ?? '', new RegExp(journalNames(app).stream));
  t.is(first.lifecycle, 'stopped');
  t.false(
    firstOut.some((e) => e.time > 3 * BATCH_MS),
    'the zombie emitted nothing after it was fenced',
  );

  await second.runBatches(5);
  await second.stop();
  t.deepEqual(byTime(firstOut, 1, 3), byTime(expected, 1, 3));
  t.deepEqual(byTime(secondOut, 4, 8), byTime(expected, 4, 8));

  // The journal: the first driver's start and batches, then the second's start and batches only (none of the zombie's).
  const nc = await connection(t, url);
  const events = (await journalMessages(nc, app)).map((m) => m.event);
  const starts = events.flatMap((e, i) => (e.type === 'context.started' ? [[i, e.epoch]] : []));
  t.is(starts[0]?.[1], 1);
  t.is(starts[1]?.[1], 2);
  const afterSecond = events.slice((starts[1]?.[0] ?? 0) + 1);
  t.deepEqual(
    afterSecond.filter((e) => e.type === 'batch.allocated').map((e) => (e.type === 'batch.allocated' ? e.time : 0)),
    [4, 5, 6, 7, 8].map((i) => i * BATCH_MS),
  );
});

// ---- a server killed and restarted mid-run --------------------------------------------------

/** A logger that counts the lines matching `pattern` (`first` resolves at the first one) and keeps errors. */
function countingLogger(pattern: RegExp): { logger: Logger; first: Promise<void>; count(): number; errors: string[] } {
  const first = deferred();
  const errors: string[] = [];
  let count = 0;
  const logger = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        if ((JSON.parse(line) as { level: number }).level >= 50) errors.push(line);
        if (!pattern.test(line)) return;
        count++;
        first.resolve();
      },
    },
  );
  return { logger, first: first.promise, count: () => count, errors };
}

test.serial('jetstream recovery - a nats-server killed and restarted mid-run: the batches wait, then go on', async (t) => {
  const app = appName('outage');
  const server = t.context.server;
  const N = 24;
  const expected = await runUninterrupted(updateState, { batches: N });
  const emitted: Emitted[] = [];
  const clock = new ManualClock();
  const retries = countingLogger(/retrying with the same message id/);
  const ssc = stateApp(t, app, clock, emitted, { logger: retries.logger, intervalBatches: NO_CHECKPOINT_IN_RUN });
  ssc.checkpoint(server.url);
  await ssc.start();
  await ssc.runBatches(6);

  await server.stop();
  let finished = false;
  const running = ssc.runBatches(8).then(() => {
    finished = true;
  });
  // The batches wait on the journal: its appends time out and are retried while the server is down.
  await within(retries.first, 30_000, 'a retried journal append during the outage');
  t.false(finished, 'no batch completed while the journal was unreachable');
  t.true(
    emitted.every((e) => e.time <= 6 * BATCH_MS),
    'nothing ran past the last journaled batch',
  );
  await server.restart();
  await within(running, 60_000, 'the batches of the outage after the restart');
  await ssc.runBatches(N - 14);
  await ssc.stop();
  t.log(`journal appends retried: ${retries.count()}`);
  t.deepEqual(retries.errors, [], 'nothing failed');

  t.deepEqual(byTime(emitted, 1, N), byTime(expected, 1, N));
  // The retried appends were not stored twice, and none is missing.
  assertJournaledOnce(t, await journalMessages(await connection(t, server.url), app), N);
});

// ---- an R3 journal on a 3-node cluster: SIGKILL of the stream leader -----------------------------

test.serial('jetstream recovery - SIGKILL of the R3 journal leader mid-run loses no acked event and changes no output', async (t) => {
  const cluster = await startNatsCluster(3);
  t.context.clusters.push(cluster);
  const url = `nats://${cluster.urls.map((u) => u.replace('nats://', '')).join(',')}?replicas=3`;
  const app = appName('r3');
  const { stream } = journalNames(app);
  const N = 30;
  const KILL_AT = 12;
  const RESTART_AFTER = 20;
  const expected = await runUninterrupted(updateState, { batches: N + 5 });

  const emitted: Emitted[] = [];
  const clock = new ManualClock();
  const retries = countingLogger(/retrying with the same message id/);
  const ssc = stateApp(t, app, clock, emitted, { logger: retries.logger, intervalBatches: NO_CHECKPOINT_IN_RUN });
  ssc.checkpoint(url);
  await ssc.start();
  await ssc.runBatches(8);

  const nc = await connection(t, cluster.urls);
  const jsm = await jetstreamManager(nc);
  const before = await jsm.streams.info(stream);
  t.is(before.config.num_replicas, 3);
  const leader = cluster.servers.findIndex((s) => s.name === before.cluster?.leader);
  t.not(leader, -1, `leader ${before.cluster?.leader} is a cluster member`);

  // The leader dies while batches are in flight: when batch KILL_AT completes, later ones are being journaled.
  let killed: Promise<void> | undefined;
  ssc.addStreamingListener({
    onBatchCompleted: ({ time }) => {
      if (time === KILL_AT * BATCH_MS) killed = cluster.stop(leader);
    },
  });
  await within(ssc.runBatches(RESTART_AFTER - 8), 90_000, 'the batches across the leader election');
  await killed;
  t.false(cluster.servers[leader]?.running);
  const during = await jsm.streams.info(stream);
  t.not(during.cluster?.leader, before.cluster?.leader, 'a new leader was elected');
  await cluster.restart(leader);
  await ssc.runBatches(N - RESTART_AFTER);
  await ssc.stop();

  t.log(`journal appends retried during the election: ${retries.count()}`);
  t.deepEqual(retries.errors, [], 'nothing failed');
  t.true(retries.count() > 0, 'appends failed while the stream had no leader');

  t.deepEqual(byTime(emitted, 1, N), byTime(expected, 1, N));
  assertJournaledOnce(t, await journalMessages(nc, app), N);

  // The R3 checkpoint written after the failover resumes the app.
  const resumedOut: Emitted[] = [];
  const resumed = await StreamingContext.getOrCreate(
    url,
    () => stateApp(t, app, clock, resumedOut, { intervalBatches: NO_CHECKPOINT_IN_RUN }),
    { clock },
  );
  await resumed.start();
  await resumed.runBatches(5);
  await resumed.stop();
  t.deepEqual(byTime(resumedOut, N + 1, N + 5), byTime(expected, N + 1, N + 5));
  t.is(byTime(resumedOut, 1, N).size, 0, 'the resume replayed nothing');
});

/** A checkpoint URL for every server of `cluster`, with R3 streams. */
function clusterUrl(cluster: NatsCluster): string {
  return `nats://${cluster.urls.map((u) => u.replace('nats://', '')).join(',')}?replicas=3`;
}

/** Stream info, asked again while the test's connection moves to another node or the stream elects a leader. */
async function infoOf(nc: NatsConnection, stream: string): Promise<StreamInfo> {
  const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
  return within(
    (async () => {
      for (;;) {
        const info = await jsm.streams
          .info(stream)
          .catch((error: unknown) => (isTransientNatsError(error) ? undefined : Promise.reject(error)));
        if (info?.cluster?.leader) return info;
      }
    })(),
    30_000,
    `stream info of ${stream}`,
  );
}

/** Index of the server that leads `stream` now. */
async function leaderOf(t: ExecutionContext<Ctx>, cluster: NatsCluster, nc: NatsConnection, stream: string): Promise<number> {
  const info = await infoOf(nc, stream);
  const i = cluster.servers.findIndex((s) => s.name === info.cluster?.leader);
  t.not(i, -1, `${stream} has a leader among the cluster's servers`);
  return i;
}

/** Waits (bounded) until every replica of `streams` reports itself current with no lag. */
async function replicasCaughtUp(nc: NatsConnection, streams: readonly string[]): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
  for (const stream of streams) {
    await within(
      (async () => {
        for (;;) {
          const info = await jsm.streams.info(stream).catch(() => undefined);
          const replicas = info?.cluster?.replicas ?? [];
          if (info?.cluster?.leader && replicas.length === 2 && replicas.every((r) => r.current && !r.offline && !r.lag)) return;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })(),
      30_000,
      `the replicas of ${stream} catching up`,
    );
  }
}

/** Resolves (bounded) once `ssc` has completed a checkpoint at `time` or later. */
function checkpointed(ssc: StreamingContext, time: number): Promise<void> {
  const done = deferred();
  ssc.addStreamingListener({ onCheckpointCompleted: (stats) => void (stats.time >= time && done.resolve()) });
  return within(done.promise, 60_000, `a checkpoint at ${time}`);
}

/** Crashes `ssc` (as kill -9), resumes the app from `url` and runs `more` batches; returns the resumed outputs. */
async function crashAndResume(t: ExecutionContext<Ctx>, ssc: StreamingContext, url: string, app: string, clock: ManualClock, more: number) {
  ssc.crash();
  const resumedOut: Emitted[] = [];
  const resumed = await StreamingContext.getOrCreate(url, () => stateApp(t, app, clock, resumedOut, { intervalBatches: 2 }), { clock });
  await resumed.start();
  await resumed.runBatches(more);
  await resumed.stop();
  return resumedOut;
}

/** Batches of the two cluster fault tests before their resume. */
const N = 30;

/**
 * A 3-node cluster and the updateStateByKey app on it with a checkpoint every 2 batches
 * (every other batch moves the head and purges behind it), 4 batches run; with the
 * fault-free outputs of N + 5 batches and the journal stream's current leader.
 */
async function runningOnCluster(t: ExecutionContext<Ctx>, what: string) {
  const cluster = await startNatsCluster(3);
  t.context.clusters.push(cluster);
  const url = clusterUrl(cluster);
  const app = appName(what);
  const { stream, headBucket } = journalNames(app);
  const expected = await runUninterrupted(updateState, { batches: N + 5 });
  const emitted: Emitted[] = [];
  const clock = new ManualClock();
  const ssc = stateApp(t, app, clock, emitted, { intervalBatches: 2 });
  ssc.checkpoint(url);
  await ssc.start();
  await ssc.runBatches(4);
  const nc = await connection(t, cluster.urls);
  const leader = await leaderOf(t, cluster, nc, stream);
  return { cluster, url, app, stream, headBucket, expected, emitted, clock, ssc, nc, leader };
}

test.serial(
  'jetstream recovery - the journal leader killed during a roll and its purge: the replay equals the fault-free run',
  async (t) => {
    const { cluster, url, app, stream, headBucket, expected, emitted, clock, ssc, nc, leader } = await runningOnCluster(t, 'roll-kill');

    // The head's update is seen here as the server stores it, before the driver's purge behind it:
    // SIGKILL the journal's leader then, so the purge (and what follows) meets an election.
    let heads = 0;
    let killed: Promise<void> | undefined;
    const killing = deferred();
    const sub = nc.subscribe(`$KV.${headBucket}.head`, {
      callback: () => {
        if (++heads < 2 || killed !== undefined) return;
        killed = cluster.stop(leader);
        killing.resolve();
      },
    });
    await nc.flush();
    // Checkpoints are written behind the batches: the kill lands while they move the head.
    await ssc.runBatches(12);
    await within(killing.promise, 60_000, 'a head update to kill the leader during');
    sub.unsubscribe();
    await killed;
    await checkpointed(ssc, 16 * BATCH_MS);
    t.not(await leaderOf(t, cluster, nc, stream), leader, 'a new leader was elected');
    await cluster.restart(leader);
    await ssc.runBatches(N - 16);
    t.deepEqual(byTime(emitted, 1, N), byTime(expected, 1, N), 'outputs during the faults');

    const resumedOut = await crashAndResume(t, ssc, url, app, clock, 5);
    t.deepEqual(byTime(resumedOut, N + 1, N + 5), byTime(expected, N + 1, N + 5), 'the state recovered after the faults');
    const messages = await journalMessages(nc, app);
    const allocations = messages.flatMap((m) => (m.event.type === 'batch.allocated' ? [m.event.time] : []));
    t.is(new Set(allocations).size, allocations.length, 'no allocation journaled twice');
  },
);

test.serial(
  'jetstream recovery - a replica that missed purges comes back in step, and a replay through it equals the fault-free run',
  async (t) => {
    const { cluster, url, app, stream, headBucket, expected, emitted, clock, ssc, nc, leader } = await runningOnCluster(t, 'missed-purges');
    const streams = [stream, `KV_${headBucket}`, `OBJ_TRIBUTARY_${app}_SNAPSHOTS`];
    const follower = (leader + 1) % 3;

    // A follower is down while six checkpoints move the head and purge the journal and old snapshots.
    await cluster.stop(follower);
    const before = await infoOf(nc, stream);
    await ssc.runBatches(12);
    await checkpointed(ssc, 16 * BATCH_MS);
    const after = await infoOf(nc, stream);
    t.true(after.state.first_seq > before.state.first_seq, 'the journal was purged while the follower was down');
    await cluster.restart(follower);
    await replicasCaughtUp(nc, streams);

    // Then the leader goes: the follower that missed the purges is one of the two left.
    await cluster.stop(leader);
    await ssc.runBatches(8);
    t.not(await leaderOf(t, cluster, nc, stream), leader);
    await cluster.restart(leader);
    await ssc.runBatches(N - 24);
    t.deepEqual(byTime(emitted, 1, N), byTime(expected, 1, N), 'outputs during the faults');

    const resumedOut = await crashAndResume(t, ssc, url, app, clock, 5);
    t.deepEqual(byTime(resumedOut, N + 1, N + 5), byTime(expected, N + 1, N + 5), 'the state recovered after the faults');
    await replicasCaughtUp(nc, streams);
    const check = await waitForReplicaAgreement(cluster.servers, { include: (name) => streams.includes(name) });
    t.deepEqual([...check.streams].sort(), [...streams].sort(), 'every stream of the app was compared');
    t.deepEqual(check.divergences, [], 'the replicas of the journal, head and snapshots agree');
  },
);
