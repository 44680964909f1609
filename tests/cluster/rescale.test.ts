/**
 * Live rescaling: a worker started while the job runs gets a fair share of the
 * slots, a worker stopped with SIGTERM hands its slots over and exits; each move
 * checkpoints the last batch first, so nothing is replayed, and every batch's output
 * holds the same records as one process's.
 */
import test from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { BATCH_MS, buildClusterApp } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorker, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const START_MS = 5_000_000 * BATCH_MS;

interface Moved {
  readonly joined: readonly string[];
  readonly leaving: readonly string[];
  readonly slots: readonly string[];
  readonly replayed: number;
  readonly ms: number;
}

test('cluster - a worker joining and one leaving with SIGTERM move slots live, with nothing replayed', async (t) => {
  t.timeout(180_000);
  const server = await startNatsServer();
  const reference = await runOutputs('windowed', START_MS, 18);

  const workers = await startWorkers(server.url, 'windowed', 2, 'g', { checkpoint: server.url });
  // A failed step must not leave the context running: its timers and web UI would keep
  // the test process alive, and the whole run would hang instead of failing.
  let context: StreamingContext | undefined;
  try {
    const seen = new Map<string, unknown[]>();
    const emitted: string[] = [];
    const ssc = await StreamingContext.getOrCreate(server.url, () =>
      buildClusterApp('windowed', {
        clock: new ManualClock(START_MS),
        emit: (o, time, r) => {
          emitted.push(`${o}@${time}`);
          seen.set(`${o}@${time}`, r);
        },
      }),
    );
    context = ssc;
    ssc.cluster(server.url, { workers: 2 });
    ssc.ui('127.0.0.1:0');
    const moves: Moved[] = [];
    let onMove: ((m: Moved) => void) | undefined;
    const lost: unknown[] = [];
    ssc.addStreamingListener({
      onRebalanced: (m) => {
        moves.push(m);
        onMove?.(m);
      },
      onWorkersLost: (info) => lost.push(info),
    });
    const nextMove = () => new Promise<Moved>((resolve) => (onMove = resolve));
    await ssc.start();
    await ssc.runBatches(6);

    const joining = nextMove();
    workers.push(await startWorker(server.url, 'windowed', 'g3', { checkpoint: server.url }));
    const joined = await within(joining, 30_000, 'the new worker getting slots');
    t.deepEqual(joined.joined, ['g3']);
    t.deepEqual([...new Set(joined.slots)].sort(), ['g1', 'g2', 'g3']);
    t.is(joined.slots.filter((w) => w === 'g3').length, 2, 'a fair share: 2 of 6 slots');
    t.is(joined.replayed, 0, 'the checkpoint of the last batch was restored');
    await ssc.runBatches(6);
    // The web UI's workers table shows the same owners, slot by slot.
    const ui = ssc.uiAddress as { url: string };
    const state = (await (await fetch(new URL('/api/state', ui.url))).json()) as { workers: { id: string; slots: number[] }[] };
    const owners: string[] = [];
    for (const w of state.workers) for (const slot of w.slots) owners[slot] = w.id;
    t.deepEqual(owners, [...joined.slots], 'the UI lists each worker with its partitions');

    const leaving = nextMove();
    const g1 = workers[0] as (typeof workers)[number];
    g1.child.kill('SIGTERM');
    const left = await within(leaving, 30_000, 'the leaving worker handing over');
    t.deepEqual(left.leaving, ['g1']);
    t.deepEqual([...new Set(left.slots)].sort(), ['g2', 'g3']);
    t.is(left.replayed, 0);
    t.is(await within(g1.exited, 30_000, 'the leaving worker exiting'), 0);
    t.regex(g1.stderr(), /stopped: data plane sent/);
    await ssc.runBatches(6);
    await ssc.stop();

    t.deepEqual(lost, [], 'no worker was treated as lost');
    t.deepEqual([...seen.keys()].sort(), [...reference.keys()].sort());
    // A partition rebuilt from a full snapshot and deltas lists its keys in another order than
    // one that never moved: each batch's records are compared as a multiset.
    const canonical = (records: readonly unknown[] | undefined) => (records ?? []).map((r) => JSON.stringify(r)).sort();
    for (const [key, records] of reference) t.deepEqual(canonical(seen.get(key)), canonical(records), key);
    t.is(new Set(emitted).size, emitted.length, 'no output ran twice');
    t.log(`join moved slots in ${Math.round(joined.ms)} ms, leave in ${Math.round(left.ms)} ms`);
  } finally {
    context?.crash();
    await stopWorkers(workers);
    await server.stop();
  }
});
