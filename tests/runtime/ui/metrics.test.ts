/**
 * Prometheus `/metrics` and `/api/state` of a running app (`StreamingContext({ ui })`):
 * an app on the ManualClock (queueStream, a map that dead-letters one record,
 * updateStateByKey checkpointed every 2 batches) runs 4 batches; the exposition is
 * parsed strictly (tests/helpers/prometheus-text.ts) and each metric must equal
 * what the streaming listeners reported and what the data implies. Then a restart
 * from the checkpoint must count as a recovery, a taken port must fail start()
 * cleanly, and the server must be gone once the context stops.
 */
import { createServer, type Server } from 'node:net';
import anyTest, { type TestFn } from 'ava';
import type { CheckpointStats } from '../../../actors/checkpointer.ts';
import type { BatchInfo } from '../../../actors/driver.ts';
import { StreamingContext, type StreamingListener } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { capturedLogger, TempDirs } from '../../helpers/checkpoint-kit.ts';
import { type Family, parsePrometheusText, sampleValue } from '../../helpers/prometheus-text.ts';

interface Ctx {
  dirs: TempDirs;
  contexts: StreamingContext[];
  servers: Server[];
}

const test = anyTest as TestFn<Ctx>;

const BATCH_MS = 1000;
const LINES = [['a b', 'a'], ['b c', 'bad'], ['d e f'], ['a']];
/** The words except the one the map throws on: the keys updateStateByKey must hold. */
const KEYS = 6;

test.before((t) => {
  t.context = { dirs: new TempDirs(), contexts: [], servers: [] };
});

test.after.always(async (t) => {
  for (const ssc of t.context.contexts) ssc.crash();
  for (const server of t.context.servers) server.close();
  await t.context.dirs.removeAll();
});

interface Reported {
  readonly batches: BatchInfo[];
  readonly checkpoints: CheckpointStats[];
  deadLetters: number;
  readonly recoveries: Parameters<NonNullable<StreamingListener['onRecovered']>>[0][];
  /** Resolves once `n` checkpoints were reported (they are written beside the batches). */
  checkpointsReached(n: number): Promise<void>;
}

function app(appName: string, dir: string, ui: string | undefined): { ssc: StreamingContext; reported: Reported } {
  const ssc = new StreamingContext({
    appName,
    batchDuration: BATCH_MS,
    clock: new ManualClock(),
    logger: capturedLogger().logger,
    onRecordError: 'dead-letter',
    ...(ui === undefined ? {} : { ui }),
  });
  ssc.checkpoint(dir);
  ssc
    .queueStream<string>(LINES)
    .flatMap((line) => line.split(' '))
    .map((word): [string, number] => {
      if (word === 'bad') throw new Error('a poison record');
      return [word, 1];
    })
    .updateStateByKey<string, number, number>((values, state) => (state ?? 0) + values.reduce((a, b) => a + b, 0))
    .uid('totals')
    .checkpoint(2 * BATCH_MS)
    .foreachBatch(() => {});
  const waiters: { n: number; resolve: () => void }[] = [];
  const reported: Reported = {
    batches: [],
    checkpoints: [],
    deadLetters: 0,
    recoveries: [],
    checkpointsReached: (n) =>
      reported.checkpoints.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve })),
  };
  ssc.addStreamingListener({
    onBatchCompleted: (info) => void reported.batches.push(info),
    onCheckpointCompleted: (stats) => {
      reported.checkpoints.push(stats);
      for (const w of waiters.filter((w) => w.n <= reported.checkpoints.length)) w.resolve();
    },
    onDeadLetter: () => void reported.deadLetters++,
    onRecovered: (info) => void reported.recoveries.push(info),
  });
  return { ssc, reported };
}

async function scrape(url: string): Promise<{ families: Map<string, Family>; contentType: string | null }> {
  const res = await fetch(`${url}metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return { families: parsePrometheusText(await res.text()), contentType: res.headers.get('content-type') };
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

test('metrics - /metrics parses as Prometheus text and equals what the listeners reported', async (t) => {
  const dir = await t.context.dirs.make('ui-metrics');
  const { ssc, reported } = app('metrics-app', dir, '127.0.0.1:0');
  t.context.contexts.push(ssc);
  await ssc.start();
  const ui = ssc.uiAddress;
  if (ui === undefined) throw new Error('no UI address after start');
  t.is(ui.host, '127.0.0.1');
  t.true(ui.port > 0);
  for (let i = 0; i < LINES.length; i++) await ssc.runBatches(1);
  await reported.checkpointsReached(2);

  const { families, contentType } = await scrape(ui.url);
  t.regex(contentType ?? '', /^text\/plain; version=0\.0\.4/);
  const app1 = { app: 'metrics-app' };
  t.is(sampleValue(families, 'tributary_batches_completed_total', app1), LINES.length);
  t.is(reported.batches.length, LINES.length);
  t.is(sampleValue(families, 'tributary_records_processed_total', app1), sum(reported.batches.map((b) => b.records)));
  t.is(sum(reported.batches.map((b) => b.records)), LINES.flat().length);
  t.is(
    sampleValue(families, 'tributary_records_received_total', { ...app1, stream: 'queueStream#1' }),
    sum(reported.batches.map((b) => b.inputRecords['queueStream#1'] ?? 0)),
  );
  t.is(sampleValue(families, 'tributary_records_received_total', { stream: 'queueStream#1' }), LINES.flat().length);

  t.is(sampleValue(families, 'tributary_batch_processing_seconds_count', app1), LINES.length);
  t.true(
    Math.abs(
      sampleValue(families, 'tributary_batch_processing_seconds_sum', app1) - sum(reported.batches.map((b) => b.processingMs)) / 1000,
    ) < 1e-9,
  );
  t.is(sampleValue(families, 'tributary_scheduling_delay_seconds_count', app1), LINES.length);
  t.is(sampleValue(families, 'tributary_scheduling_delay_seconds_sum', app1), sum(reported.batches.map((b) => b.schedulingDelayMs)) / 1000);
  t.is(families.get('tributary_batch_processing_seconds')?.type, 'histogram');
  t.is(families.get('tributary_scheduling_delay_seconds')?.type, 'histogram');
  t.is(families.get('tributary_batches_completed_total')?.type, 'counter');

  // The state's size: the engine's figure, and the number of distinct good words.
  t.is(reported.batches.at(-1)?.stateKeys.totals, KEYS);
  t.is(sampleValue(families, 'tributary_state_keys', { ...app1, operator: 'totals' }), KEYS);
  t.is(families.get('tributary_state_keys')?.type, 'gauge');

  t.is(reported.checkpoints.length, 2);
  t.deepEqual(
    reported.checkpoints.map((c) => [c.kind, c.operators.map((o) => o.kind)]),
    [
      ['full', ['full']],
      ['incremental', ['incremental']],
    ],
  );
  t.is(sampleValue(families, 'tributary_checkpoint_duration_seconds_count', app1), 2);
  t.true(
    Math.abs(
      sampleValue(families, 'tributary_checkpoint_duration_seconds_sum', app1) - sum(reported.checkpoints.map((c) => c.writeMs)) / 1000,
    ) < 1e-9,
  );
  const full = reported.checkpoints[0] as CheckpointStats;
  t.true(full.snapshotBytes > 0);
  t.is(full.operators[0]?.snapshotBytes, full.snapshotBytes);
  t.is(sampleValue(families, 'tributary_state_snapshot_bytes', { ...app1, operator: 'totals' }), full.snapshotBytes);
  t.is(sampleValue(families, 'tributary_checkpoint_bytes', app1), reported.checkpoints[1]?.snapshotBytes as number);

  t.is(reported.deadLetters, 1);
  t.is(sampleValue(families, 'tributary_dead_letters_total', app1), 1);
  t.is(sampleValue(families, 'tributary_recoveries_total', { ...app1, kind: 'restart' }), 0);

  // Every sample is labelled by app.
  const unlabelled = [...families.values()].flatMap((f) => f.samples).filter((s) => s.labels.app !== 'metrics-app');
  t.deepEqual(unlabelled, []);

  // The page's JSON holds the same figures.
  const state = (await (await fetch(`${ui.url}api/state`)).json()) as {
    totals: { batchesCompleted: number; deadLetters: number; checkpoints: number };
    operators: { operator: string; keys: number; stateBytes: number; lastSnapshotKind: string }[];
    batches: { records: number }[];
  };
  t.is(state.totals.batchesCompleted, LINES.length);
  t.is(state.totals.deadLetters, 1);
  t.is(state.totals.checkpoints, 2);
  t.deepEqual(state.operators, [
    {
      operator: 'totals',
      keys: KEYS,
      stateBytes: full.snapshotBytes,
      lastSnapshotBytes: reported.checkpoints[1]?.snapshotBytes,
      lastSnapshotKind: 'incremental',
    },
  ]);
  t.deepEqual(
    state.batches.map((b) => b.records),
    LINES.map((l) => l.length),
  );

  const url = ui.url;
  await ssc.stop();
  t.is(ssc.uiAddress, undefined);
  await t.throwsAsync(fetch(`${url}metrics`), undefined, 'the server stopped with the context');
});

test('metrics - a restart from the checkpoint is a recovery in /metrics and on the page', async (t) => {
  const dir = await t.context.dirs.make('ui-recovery');
  const first = app('recovery-app', dir, undefined);
  t.context.contexts.push(first.ssc);
  await first.ssc.start();
  await first.ssc.runBatches(3);
  await first.reported.checkpointsReached(1);
  // Batch 3 is journaled after the checkpoint of batch 2: the restart replays it.
  first.ssc.crash();

  const second = app('recovery-app', dir, '127.0.0.1:0');
  t.context.contexts.push(second.ssc);
  const ssc = await StreamingContext.getOrCreate(dir, () => second.ssc);
  await ssc.start();
  const ui = ssc.uiAddress;
  if (ui === undefined) throw new Error('no UI address after start');
  t.is(second.reported.recoveries.length, 1);
  const recovery = second.reported.recoveries[0];
  t.is(recovery?.kind, 'restart');
  t.is(recovery?.replayed, 1);
  t.is(recovery?.checkpoint, (first.reported.checkpoints[0] as CheckpointStats).time);

  const { families } = await scrape(ui.url);
  t.is(sampleValue(families, 'tributary_recoveries_total', { app: 'recovery-app', kind: 'restart' }), 1);
  t.is(sampleValue(families, 'tributary_recoveries_total', { app: 'recovery-app', kind: 'failover' }), 0);
  const state = (await (await fetch(`${ui.url}api/state`)).json()) as { recoveries: { kind: string; replayed: number }[] };
  t.deepEqual(
    state.recoveries.map((r) => [r.kind, r.replayed]),
    [['restart', 1]],
  );
  await ssc.stop();
});

test('metrics - a port already taken fails start() with the cause and leaves no server or context running', async (t) => {
  const taken = createServer();
  t.context.servers.push(taken);
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  const dir = await t.context.dirs.make('ui-taken');
  const { ssc } = app('taken-app', dir, `127.0.0.1:${port}`);
  t.context.contexts.push(ssc);
  const error = await t.throwsAsync(ssc.start());
  t.is((error as { code?: string }).code, 'EADDRINUSE');
  t.is(ssc.lifecycle, 'stopped');
  t.is(ssc.uiAddress, undefined);
  await t.throwsAsync(ssc.awaitTermination());
});

test('metrics - without ui no server is started', async (t) => {
  const dir = await t.context.dirs.make('ui-none');
  const { ssc } = app('no-ui-app', dir, undefined);
  t.context.contexts.push(ssc);
  await ssc.start();
  await ssc.runBatches(1);
  t.is(ssc.uiAddress, undefined);
  await ssc.stop();
});
