/**
 * Ownership on a cluster, held by NATS: a worker paused (SIGSTOP) past its lease
 * loses it and, resumed, commits nothing; a worker whose app graph differs is
 * refused with the differences named; a driver crashed mid-run is replaced by a
 * new one that resumes the journaled assignment, restores every partition on its
 * worker from the object store, replays, and goes on exactly as one process would.
 */
import test from 'ava';
import { BatchCoordinator } from '../../actors/batch-coordinator.ts';
import { Liveness, leaseKey, openClusterBucket, readLease, revokeLeases } from '../../actors/membership.ts';
import { NatsTransport } from '../../actors/transport/nats.ts';
import { DRIVER } from '../../actors/transport/transport.ts';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { encodeValue } from '../../runtime/base/cbor.ts';
import { delayMs } from '../../runtime/base/clock.ts';
import { compilePlan } from '../../runtime/graph/plan.ts';
import { BATCH_MS, buildClusterApp } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorker, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { readJetStreamJournal, within } from '../helpers/jetstream-journal-kit.ts';
import { connectTo, startNatsServer } from '../helpers/nats-server.ts';

const START_MS = 2_000_000 * BATCH_MS;

test('cluster - a worker paused past its lease finds it taken when resumed and commits nothing', async (t) => {
  t.timeout(90_000);
  const server = await startNatsServer();
  const nc = await connectTo(server.url);
  const worker = await startWorker(server.url, 'windowed', 'paused', { leaseMs: 1000 });
  // A bare coordinator, not a driver: a driver would fail the paused worker over, and this test is about the worker.
  const transport = await NatsTransport.open(nc, 'cluster-windowed', DRIVER);
  try {
    const app = buildClusterApp('windowed', { clock: new ManualClock(START_MS), emit: () => {} });
    const plan = compilePlan(app.graph.nodes, app.graph.outputs);
    const input = plan.inputs[0]?.id as number;
    const coordinator = new BatchCoordinator(transport, ['paused'], 30_000);
    await coordinator.assign({ epoch: 1, slots: Array(6).fill('paused'), inputs: { [String(input)]: 'paused' } }, START_MS);
    const batch = (time: number) =>
      coordinator.runBatch(time, new Map([[input, { type: 'sequence', from: time, to: time + 50 } as const]]), false);
    await batch(START_MS + BATCH_MS);
    await coordinator.commit(START_MS + BATCH_MS);
    const kv = await openClusterBucket(nc, 'cluster-windowed', 1, 1000);
    t.like(await readLease(kv, 0), { worker: 'paused', epoch: 1 });
    worker.child.kill('SIGSTOP');
    // As a driver does: the worker is lost once its registration stood still for a lease of reads; its leases are revoked.
    const seen = new Liveness(1000);
    await within(
      (async () => {
        for (;;) {
          const entry = await kv.get('workers.paused');
          seen.observe(new Map(entry ? [['paused', entry.revision]] : []));
          if (seen.isLost('paused')) return;
          await delayMs(100);
        }
      })(),
      15_000,
      'the paused worker going quiet',
    );
    t.deepEqual(await revokeLeases(kv, (w) => w === 'paused'), [0, 1, 2, 3, 4, 5]);
    t.is(await readLease(kv, 0), undefined);
    await kv.create(leaseKey(0), encodeValue({ worker: 'thief', epoch: 99 }));
    worker.child.kill('SIGCONT');
    await batch(START_MS + 2 * BATCH_MS);
    const error = await t.throwsAsync(coordinator.commit(START_MS + 2 * BATCH_MS));
    t.is((error as { code?: string }).code, 'FENCED', String(error));
    t.regex(String(error), /lost its lease on slot/);
    const capture = await t.throwsAsync(coordinator.capture(START_MS + 2 * BATCH_MS, []));
    t.is((capture as { code?: string }).code, 'FENCED', 'nor does it write a snapshot');
    t.like(await readLease(kv, 0), { worker: 'thief', epoch: 99 }, 'the resumed worker did not take the lease back');
  } finally {
    worker.child.kill('SIGCONT');
    await transport.close();
    await worker.stop();
    await nc.close();
    await server.stop();
  }
});

test('cluster - a worker running another graph is refused, naming the difference, and the driver goes on waiting', async (t) => {
  t.timeout(90_000);
  const server = await startNatsServer();
  const worker = await startWorker(server.url, 'windowed-other', 'other');
  try {
    const said: string[] = [];
    const ssc = buildClusterApp('windowed', { clock: new ManualClock(START_MS), emit: () => {} });
    ssc.cluster(server.url, { workers: 1, waitForWorkersMs: 3000, onWaiting: (text) => said.push(text) });
    const error = await t.throwsAsync(ssc.start(), { code: 'INVALID_CONFIG' });
    t.regex(error?.message ?? '', /0 of 1 workers registered/);
    t.true(
      said.some((s) => /worker other refused: its app graph differs/.test(s) && /count/.test(s)),
      said.join('\n'),
    );
    t.true(said.some((s) => /waiting for 1 workers of cluster-windowed: 0 registered/.test(s)));
    // The worker sees the driver's graph too, and stops with the same differences.
    t.is(await within(worker.exited, 20_000, 'the refused worker exiting'), 1);
    t.regex(worker.stderr(), /refused: the driver of cluster-windowed runs a different graph/);
  } finally {
    await worker.stop();
    await server.stop();
  }
});

test('cluster - a crashed driver is replaced on fewer workers: partitions restored on their new owners, outputs as one process', async (t) => {
  t.timeout(180_000);
  const server = await startNatsServer();
  const checkpoint = server.url;
  const reference = await runOutputs('windowed', START_MS, 18);

  const workers = await startWorkers(server.url, 'windowed', 3, 'r', { checkpoint });
  try {
    const first = new Map<string, unknown[]>();
    const one = await StreamingContext.getOrCreate(checkpoint, () =>
      buildClusterApp('windowed', { clock: new ManualClock(START_MS), emit: (o, time, r) => first.set(`${o}@${time}`, r) }),
    );
    one.cluster(server.url, { workers: 3 });
    await one.start();
    await one.runBatches(13);
    // A checkpoint after batch 10; batches 11 to 13 must be replayed by the next driver.
    one.crash();
    const firstAssignment = (await readJetStreamJournal(checkpoint, 'cluster-windowed')).filter((e) => e.type === 'assignment.changed');
    // r3 leaves: its slots move to r1 and r2, which load them from the object store.
    await (workers[2] as (typeof workers)[number]).stop();

    const second = new Map<string, unknown[]>();
    const clock = new ManualClock(START_MS + 13 * BATCH_MS);
    const two = await StreamingContext.getOrCreate(checkpoint, () =>
      buildClusterApp('windowed', { clock, emit: (o, time, r) => second.set(`${o}@${time}`, r) }),
    );
    two.cluster(server.url, { workers: 2 });
    await two.start();
    await two.runBatches(5);
    await two.stop();

    for (const [key, records] of first) t.deepEqual(records, reference.get(key), `first driver ${key}`);
    for (const [key, records] of second) t.deepEqual(records, reference.get(key), `second driver ${key}`);
    const time = (k: string) => Number(k.split('@')[1]);
    t.is(Math.max(...[...second.keys()].map(time)), START_MS + 18 * BATCH_MS);
    t.true(
      [...second.keys()].some((k) => time(k) === START_MS + 14 * BATCH_MS),
      'the second driver ran the batches after the crash',
    );

    const events = await readJetStreamJournal(checkpoint, 'cluster-windowed');
    type Assigned = Extract<(typeof events)[number], { type: 'assignment.changed' }>;
    const before = firstAssignment[firstAssignment.length - 1] as Assigned;
    t.deepEqual([...new Set(before.slots)].sort(), ['r1', 'r2', 'r3']);
    const assignments = events.filter((e) => e.type === 'assignment.changed');
    const last = assignments[assignments.length - 1] as Assigned;
    t.deepEqual([...new Set(last.slots)].sort(), ['r1', 'r2']);
    t.is(last.slots.length, 6);
    t.true(
      before.slots.every((w, q) => w === 'r3' || last.slots[q] === w),
      'only the slots of the worker that left moved',
    );
    const checkpoints = events.filter((e) => e.type === 'checkpoint.completed');
    t.true(checkpoints.length >= 1, 'workers wrote snapshots and the driver committed a checkpoint');
  } finally {
    await stopWorkers(workers);
    await server.stop();
  }
});
