/**
 * A worker SIGKILLed mid-run: its connection closes, the driver hands its slots
 * to the live workers, which restore them from the last checkpoint, and the batches
 * since run again. Every batch's outputs equal one process's, none is lost or
 * doubled.
 */
import test from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { BATCH_MS, buildClusterApp } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const START_MS = 4_000_000 * BATCH_MS;

test('cluster - a worker killed mid-run: its slots move to live workers and every output equals one process', async (t) => {
  t.timeout(180_000);
  const server = await startNatsServer();
  const reference = await runOutputs('windowed', START_MS, 18);

  const workers = await startWorkers(server.url, 'windowed', 3, 'f', { checkpoint: server.url });
  try {
    const seen = new Map<string, unknown[]>();
    const emitted: string[] = [];
    const ssc = await StreamingContext.getOrCreate(server.url, () =>
      buildClusterApp('windowed', {
        clock: new ManualClock(START_MS),
        emit: (o, time, r) => {
          const key = `${o}@${time}`;
          emitted.push(key);
          seen.set(key, r);
        },
      }),
    );
    ssc.cluster(server.url, { workers: 3 });
    const failovers: { lost: readonly string[]; closed: readonly string[]; replayed: number; ms: number }[] = [];
    let killedAt = 0;
    let recoveredMs: number | undefined;
    ssc.addStreamingListener({
      onWorkersLost: (info) => failovers.push(info),
      onBatchCompleted: () => {
        if (killedAt > 0 && recoveredMs === undefined) recoveredMs = performance.now() - killedAt;
      },
    });
    await ssc.start();
    await ssc.runBatches(12);
    const victim = workers[1] as (typeof workers)[number];
    victim.child.kill('SIGKILL');
    killedAt = performance.now();
    await within(ssc.runBatches(6), 60_000, 'the batches after the kill');
    await ssc.stop();

    t.is(failovers.length, 1);
    t.deepEqual(failovers[0]?.lost, ['f2']);
    t.deepEqual(failovers[0]?.closed, ['f2'], 'seen gone by its closed connection, not after a lease');
    t.true((failovers[0]?.replayed ?? 0) >= 2, 'batches 11 and 12, after checkpoint 10, ran again');
    t.deepEqual([...seen.keys()].sort(), [...reference.keys()].sort());
    for (const [key, records] of reference) t.deepEqual(seen.get(key), records, key);
    t.is(new Set(emitted).size, emitted.length, 'no output of a completed batch ran twice');
    t.log(`kill to first batch completed: ${Math.round(recoveredMs ?? -1)} ms; failover ${Math.round(failovers[0]?.ms ?? -1)} ms`);
  } finally {
    await stopWorkers(workers);
    await server.stop();
  }
});
