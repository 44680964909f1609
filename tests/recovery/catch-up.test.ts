/**
 * Catch-up after a NATS outage: the chaos word count runs on the real clock with its
 * journal in JetStream; its only nats-server is stopped for 30 s and started again.
 * The driver must then catch up (a completed batch with a scheduling delay under one
 * batch duration) within a bounded time, journal every batch exactly once (no
 * re-journaling that grows with the backlog), and end with every output and the
 * final state equal to the oracle's.
 */

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { holdMs } from '../../runtime/base/clock.ts';
import { verifyRun } from '../../runtime/cli/chaos/verify.ts';
import { appNameOf, buildWordCountWorkload, seqAt, type WorkloadOptions } from '../../runtime/cli/chaos/word-count-workload.ts';
import { deferred } from '../helpers/checkpoint-kit.ts';
import { journalHead, journalMessages, within } from '../helpers/jetstream-journal-kit.ts';
import { connectTo, type NatsServer, startNatsServer } from '../helpers/nats-server.ts';

interface Ctx {
  server: NatsServer;
  dir: string;
  contexts: StreamingContext[];
}

const test = anyTest as TestFn<Ctx>;

// The outage makes the app log every retried write; the assertions below say what matters.
process.env.TRIBUTARY_LOG_LEVEL = 'fatal';

test.before(async (t) => {
  t.context = {
    server: await startNatsServer(),
    dir: await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-catch-up-')),
    contexts: [],
  };
});

test.after.always(async (t) => {
  for (const ssc of t.context.contexts) if (ssc.lifecycle === 'active') ssc.crash();
  await t.context.server?.shutdown();
  await fs.rm(t.context.dir, { recursive: true, force: true });
});

const BATCH_MS = 200;
const OUTAGE_MS = 30_000;
/** A generous bound on the catch-up: a driver that re-journaled its backlog never caught up. */
const CATCH_UP_BOUND_MS = 60_000;

test('catch-up - a driver stalled by a 30 s NATS outage catches up within a bounded time, each batch journaled once', async (t) => {
  const options: WorkloadOptions = {
    runId: `catchup_${process.pid}`,
    seed: 4242,
    records: 40 * 500,
    ratePerSecond: 500,
    batchDurationMs: BATCH_MS,
    checkpoint: t.context.server.url,
    outDir: path.join(t.context.dir, 'out'),
  };
  await fs.mkdir(path.join(options.outDir, 'batches'), { recursive: true });
  const ssc = await StreamingContext.getOrCreate(options.checkpoint, () => buildWordCountWorkload(options));
  t.context.contexts.push(ssc);

  const warmedUp = deferred();
  const caughtUp = deferred();
  const finished = deferred();
  let restartedAt: number | undefined;
  let maxDelayMs = 0;
  ssc.addStreamingListener({
    onBatchCompleted: (info) => {
      if (info.time - ssc.zeroTime >= 10 * BATCH_MS) warmedUp.resolve();
      if (restartedAt !== undefined) {
        maxDelayMs = Math.max(maxDelayMs, info.schedulingDelayMs);
        if (info.schedulingDelayMs < BATCH_MS) caughtUp.resolve();
      }
      if (seqAt(options, ssc.zeroTime, info.time) >= options.records) finished.resolve();
    },
  });
  await ssc.start();
  await within(warmedUp.promise, 30_000, 'ten batches before the outage');

  await t.context.server.stop();
  // The fault itself lasts 30 s of real time (not a wait for anything to happen).
  await holdMs(OUTAGE_MS);
  await t.context.server.restart();
  restartedAt = performance.now();
  await within(caughtUp.promise, CATCH_UP_BOUND_MS, 'catching up after the outage');
  const catchUpMs = Math.round(performance.now() - restartedAt);
  t.log(
    `outage ${OUTAGE_MS} ms (${OUTAGE_MS / BATCH_MS} batches); caught up ${catchUpMs} ms after the server came back; worst delay ${maxDelayMs} ms`,
  );

  await within(finished.promise, 60_000, 'the rest of the input');
  await ssc.stop();

  const verdict = await verifyRun(options, ssc.zeroTime);
  t.deepEqual(
    { lost: verdict.recordsLost, missing: verdict.batchesMissing, wrong: verdict.batchesMismatched, state: verdict.finalStateMismatches },
    { lost: 0, missing: 0, wrong: 0, state: 0 },
  );
  t.true(verdict.batchesExpected >= 200);

  // Every batch time allocated exactly once in the journal: nothing is repeated per checkpoint.
  const nc = await connectTo(t.context.server.url);
  try {
    const app = appNameOf(options);
    const allocations = (await journalMessages(nc, app)).flatMap((m) => (m.event.type === 'batch.allocated' ? [m.event.time] : []));
    t.is(new Set(allocations).size, allocations.length, 'no batch allocation journaled twice');
    const head = await journalHead(nc, app);
    // The last 2, and back to one on an older chain: at most a whole chain (snapshotFullEvery 3) and one more.
    t.true((head?.checkpoints.length ?? 0) <= 4, 'the head holds the retained checkpoints only');
  } finally {
    await nc.close();
  }
});
