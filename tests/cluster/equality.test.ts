/**
 * The same apps, on the same deterministic input and the same batch times, run in
 * one process and on 3 worker processes over a real nats-server: every output of
 * every batch must be identical, in content and order (the running totals and the
 * mapWithState snapshots are the operators' whole state, batch by batch).
 */
import test from 'ava';
import { BATCH_MS, type ClusterAppName } from '../helpers/cluster-apps.ts';
import { runOutputs, startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const BATCHES = 8;
const START_MS = 1_000_000 * BATCH_MS;

async function onCluster(app: ClusterAppName, url: string): Promise<Map<string, unknown[]>> {
  const workers = await startWorkers(url, app, 3, `${app}-w`);
  try {
    return await runOutputs(app, START_MS, BATCHES, { url, workers: 3 });
  } finally {
    await stopWorkers(workers);
  }
}

for (const [app, outputsExpected] of [
  ['windowed', ['window', 'totals']],
  ['join', ['join', 'left-outer-count']],
  ['sessions', ['sessions', 'snapshots']],
] as const) {
  test(`cluster - ${app}: 3 worker processes give every batch's outputs exactly as one process does`, async (t) => {
    t.timeout(120_000);
    const server = await startNatsServer();
    try {
      const local = await runOutputs(app, START_MS, BATCHES);
      const cluster = await onCluster(app, server.url);
      t.deepEqual([...cluster.keys()].sort(), [...local.keys()].sort());
      for (const output of outputsExpected) {
        const keys = [...local.keys()].filter((k) => k.startsWith(`${output}@`));
        t.true(keys.length >= BATCHES - 2, `${output} ran in most batches`);
        t.true(
          keys.some((k) => (local.get(k) as unknown[]).length > 0),
          `${output} produced records`,
        );
      }
      for (const [key, records] of local) t.deepEqual(cluster.get(key), records, key);
      if (app === 'sessions') {
        t.true(
          [...local.values()].flat().some((r) => typeof r === 'string' && r.includes('timed out')),
          'some key timed out',
        );
      }
    } finally {
      await server.stop();
    }
  });
}
