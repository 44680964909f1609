/**
 * The monitor behind the web UI and /metrics, without a server: what it keeps from
 * listener callbacks (batches, state size per operator across full and incremental
 * checkpoints, recoveries, a cluster's workers and their partitions, the status),
 * the events it sends, its history limit, and the metrics those events produce.
 */
import test from 'ava';
import type { BatchInfo } from '../../../actors/driver.ts';
import { type AppInfo, AppMonitor, MONITOR_LIMITS, type MonitorEvent } from '../../../runtime/ui/app-monitor.ts';
import { PrometheusMetrics } from '../../../runtime/ui/prometheus-metrics.ts';
import { parsePrometheusText, sampleValue } from '../../helpers/prometheus-text.ts';

const APP: AppInfo = {
  appName: 'monitored',
  batchDurationMs: 500,
  partitions: 4,
  inputs: ['socketTextStream#1'],
  operators: [
    { name: 'totals', key: 'totals' },
    { name: 'updateStateByKey#7', key: 'updateStateByKey-0badcafe' },
  ],
  cluster: true,
};

function batch(time: number, records: number, stateKeys: Record<string, number> = {}): BatchInfo {
  return {
    time,
    records,
    schedulingDelayMs: 20,
    processingMs: 30,
    queuedBatches: 1,
    stateKeys,
    inputRecords: { 'socketTextStream#1': records },
  };
}

function monitored(): { monitor: AppMonitor; events: MonitorEvent[]; metrics: PrometheusMetrics } {
  let now = 10_000;
  const monitor = new AppMonitor(APP, () => now++);
  const events: MonitorEvent[] = [];
  const metrics = new PrometheusMetrics(APP.appName);
  monitor.subscribe((e) => events.push(e));
  monitor.subscribe((e) => metrics.apply(e));
  return { monitor, events, metrics };
}

test('app monitor - batches give rates, delays, totals and keys per operator', (t) => {
  const { monitor, events } = monitored();
  monitor.onBatchCompleted(batch(500, 100, { totals: 7 }));
  monitor.onBatchCompleted(batch(1000, 50, { totals: 9, 'updateStateByKey#7': 2 }));
  const s = monitor.snapshot();
  t.deepEqual(s.batches[1], {
    time: 1000,
    records: 50,
    inputRate: 100,
    schedulingDelayMs: 20,
    processingMs: 30,
    totalDelayMs: 50,
    queuedBatches: 1,
  });
  t.is(s.totals.batchesCompleted, 2);
  t.is(s.totals.recordsProcessed, 150);
  t.deepEqual(s.totals.inputRecords, { 'socketTextStream#1': 150 });
  t.deepEqual(
    s.operators.map((o) => [o.operator, o.keys]),
    [
      ['totals', 9],
      ['updateStateByKey#7', 2],
    ],
  );
  t.deepEqual(
    events.map((e) => e.type),
    ['batch.completed', 'batch.completed'],
  );
});

test('app monitor - checkpoints map snapshot names to operators; state bytes are the last full snapshot', (t) => {
  const { monitor } = monitored();
  const op = (operator: string, snapshotBytes: number, kind: 'full' | 'incremental') => ({ operator, snapshotBytes, entries: 1, kind });
  monitor.onCheckpointCompleted({
    time: 1000,
    snapshotBytes: 1500,
    entries: 2,
    writeMs: 12,
    kind: 'full',
    operators: [op('totals', 1000, 'full'), op('updateStateByKey-0badcafe', 500, 'full')],
  });
  monitor.onCheckpointCompleted({
    time: 2000,
    snapshotBytes: 80,
    entries: 2,
    writeMs: 3,
    kind: 'incremental',
    operators: [op('totals', 60, 'incremental'), op('updateStateByKey-0badcafe', 20, 'incremental')],
  });
  const s = monitor.snapshot();
  t.deepEqual(s.operators, [
    { operator: 'totals', keys: null, stateBytes: 1000, lastSnapshotBytes: 60, lastSnapshotKind: 'incremental' },
    { operator: 'updateStateByKey#7', keys: null, stateBytes: 500, lastSnapshotBytes: 20, lastSnapshotKind: 'incremental' },
  ]);
  t.deepEqual(
    s.checkpoints.map((c) => [c.time, c.durationMs, c.bytes, c.kind]),
    [
      [1000, 12, 1500, 'full'],
      [2000, 3, 80, 'incremental'],
    ],
  );
  t.is(s.totals.checkpoints, 2);
});

test('app monitor - a cluster shows each worker with its partition slots, after every move', (t) => {
  const { monitor, metrics } = monitored();
  monitor.onAssigned({ slots: ['w-b', 'w-a', 'w-b', 'w-a'] });
  t.deepEqual(monitor.snapshot().workers, [
    { id: 'w-a', slots: [1, 3] },
    { id: 'w-b', slots: [0, 2] },
  ]);
  monitor.onWorkersLost({ lost: ['w-b'], closed: ['w-b'], slots: ['w-a', 'w-a', 'w-c', 'w-c'], replayed: 3, ms: 420 });
  monitor.onRecovered({ kind: 'failover', replayed: 3, ms: 420, workers: ['w-b'] });
  const s = monitor.snapshot();
  t.deepEqual(s.workers, [
    { id: 'w-a', slots: [0, 1] },
    { id: 'w-c', slots: [2, 3] },
  ]);
  t.deepEqual(s.recoveries, [{ at: 10_000, kind: 'failover', replayed: 3, ms: 420, workers: ['w-b'], checkpoint: null }]);
  return metrics.text().then((text) => {
    const families = parsePrometheusText(text);
    t.is(sampleValue(families, 'tributary_worker_partitions', { worker: 'w-a' }), 2);
    t.is(sampleValue(families, 'tributary_worker_partitions', { worker: 'w-c' }), 2);
    t.throws(
      () => sampleValue(families, 'tributary_worker_partitions', { worker: 'w-b' }),
      { message: /0 samples/ },
      'a lost worker leaves the gauge',
    );
    t.is(sampleValue(families, 'tributary_recoveries_total', { kind: 'failover' }), 1);
  });
});

test('app monitor - receivers, dead letters and an error reach the totals and the status', (t) => {
  const { monitor, events } = monitored();
  monitor.onRecordsReceived({ stream: 'socketTextStream#1', records: 40 });
  monitor.onRecordsReceived({ stream: 'socketTextStream#1', records: 2 });
  monitor.onDeadLetter({ stream: 'map#3', subject: '/ckpt/dead-letters/500.jsonl', error: 'Error: boom', total: 1 });
  monitor.onError(Object.assign(new Error('batch 500 failed'), { name: 'BatchFailedError' }));
  monitor.stopped();
  const s = monitor.snapshot();
  t.deepEqual(s.totals.recordsAccepted, { 'socketTextStream#1': 42 });
  t.deepEqual(s.deadLetters, [{ at: 10_000, stream: 'map#3', where: '/ckpt/dead-letters/500.jsonl', error: 'Error: boom' }]);
  t.is(s.status, 'failed', 'a failed app stays failed when it stops');
  t.is(s.error, 'BatchFailedError: batch 500 failed');
  t.deepEqual(events.at(-1), { type: 'status', status: 'failed', error: 'BatchFailedError: batch 500 failed' });
});

test('app monitor - history is bounded: the newest batches are kept', (t) => {
  const { monitor } = monitored();
  const n = MONITOR_LIMITS.batches + 25;
  for (let i = 1; i <= n; i++) monitor.onBatchCompleted(batch(i * 500, i));
  const s = monitor.snapshot();
  t.is(s.batches.length, MONITOR_LIMITS.batches);
  t.is(s.batches[0]?.time, 26 * 500);
  t.is(s.batches.at(-1)?.time, n * 500);
  t.is(s.totals.batchesCompleted, n);
});
