/**
 * A step of the data plane that gets no answer within stallMs (a message lost while
 * a NATS server restarts, a worker stuck for a moment) is not waited for until
 * taskTimeoutMs: the driver restores every worker from the last checkpoint and runs
 * the batches since again. Here a worker is paused for less than its lease (it is
 * not failed over): the batch stalls, the driver recovers, and every output still
 * equals one process's, none emitted twice.
 */
import test from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { BATCH_MS, buildClusterApp } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const START_MS = 5_000_000 * BATCH_MS;

test('cluster - a stalled batch is run again from the checkpoint, not waited for, and outputs equal one process', async (t) => {
  t.timeout(180_000);
  const server = await startNatsServer();
  const reference = await runOutputs('windowed', START_MS, 16);
  const workers = await startWorkers(server.url, 'windowed', 2, 'st', { checkpoint: server.url });
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
    ssc.cluster(server.url, { workers: 2, stallMs: 1000 });
    const lost: unknown[] = [];
    const stalls: string[] = [];
    let stalled: () => void = () => {};
    const firstStall = new Promise<void>((resolve) => {
      stalled = resolve;
    });
    ssc.addStreamingListener({
      onWorkersLost: (info) => lost.push(info),
      onStalled: ({ reason }) => {
        stalls.push(reason);
        stalled();
      },
    });
    await ssc.start();
    await ssc.runBatches(12);
    const paused = workers[1] as (typeof workers)[number];
    paused.child.kill('SIGSTOP');
    const rest = ssc.runBatches(4);
    // Without stall detection batch 13 would wait for the paused worker (10 min by taskTimeoutMs).
    await within(firstStall, 20_000, 'the driver noticing the stall');
    paused.child.kill('SIGCONT');
    await within(rest, 60_000, 'the batches after the stall');
    await ssc.stop();

    t.deepEqual(lost, [], 'a pause shorter than the lease is not a lost worker');
    t.regex(stalls[0] ?? '', /no answer within 1000 ms \(stallMs\)/);
    t.deepEqual([...seen.keys()].sort(), [...reference.keys()].sort());
    for (const [key, records] of reference) t.deepEqual(seen.get(key), records, key);
    t.is(new Set(emitted).size, emitted.length, 'no output of a completed batch ran twice');
  } finally {
    for (const w of workers) w.child.kill('SIGCONT');
    await stopWorkers(workers);
    await server.stop();
  }
});
