/**
 * `tributary inspect nats://...` on a real nats-server: the same app as the
 * directory tests, its checkpoint in JetStream (journal stream, head KV, snapshot
 * object store). The report must say what the run did, leave the stream, the head
 * and the bucket exactly as they were, and `--verify` must name a damaged journal
 * message by stream and sequence.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { headers } from '@nats-io/transport-node';
import type { ExecutionContext } from 'ava';
import { decodeHead } from '../../../journal/jetstream-head.ts';
import { journalNames } from '../../../journal/jetstream-journal.ts';
import { type InspectApp, inspectJson, startInspectApp, tributary } from '../../helpers/inspect-kit.ts';
import { type NatsSuite, natsSuite } from '../../helpers/nats-kit.ts';

// Serial: the first test finds its app alone on the server (no --app), the second adds two more.
const test = natsSuite();

/** A crashed run of the inspect app under `appName` after `batches` batches (a checkpoint every 3). */
async function crashedRun(t: ExecutionContext<NatsSuite>, appName: string, batches: number): Promise<InspectApp> {
  const app = await startInspectApp(t.context.server.url, appName);
  t.context.contexts.push(app.ssc);
  await app.ssc.runBatches(batches);
  // The newest checkpoint commits in the background: the crash comes after it.
  if (batches >= 3) await app.checkpointed(Math.floor(batches / 3) * 3000);
  app.ssc.crash();
  return app;
}

/** Everything inspect could change: the streams' messages and configuration, the head's revision and bytes. */
async function serverState(t: ExecutionContext<NatsSuite>, appName: string): Promise<unknown> {
  const jsm = await jetstreamManager(t.context.nc);
  const { stream, headBucket } = journalNames(appName);
  const names = [stream, `KV_${headBucket}`, `OBJ_TRIBUTARY_${appName}_SNAPSHOTS`];
  const state = [];
  for (const name of names) {
    const info = await jsm.streams.info(name);
    const head = name.startsWith('KV_') ? await jsm.streams.getMessage(name, { last_by_subj: `$KV.${headBucket}.head` }) : null;
    // Ephemeral consumers come and go by themselves (the object store reads through them): not a change.
    const { consumer_count: _, ...held } = info.state;
    state.push({ name, state: held, config: info.config, head: head ? [head.seq, Buffer.from(head.data).toString('hex')] : null });
  }
  return state;
}

test.serial(
  'inspect nats:// - reports the JetStream checkpoint as the run left it, changes nothing, and names a bad message',
  async (t) => {
    const appName = `inspect-js-${process.pid}`;
    const app = await crashedRun(t, appName, 8);
    t.deepEqual(app.checkpoints, [3000, 6000]);
    const url = t.context.server.url;
    const before = await serverState(t, appName);
    const { result, report } = await inspectJson([url, '--verify']);
    t.is(result.code, 0, result.stderr);
    t.deepEqual(await serverState(t, appName), before);

    const jsm = await jetstreamManager(t.context.nc);
    const { stream, headBucket } = journalNames(appName);
    const info = await jsm.streams.info(stream);
    const stored = await jsm.streams.getMessage(`KV_${headBucket}`, { last_by_subj: `$KV.${headBucket}.head` });
    const head = decodeHead((stored as { data: Uint8Array }).data, 'test');
    t.is(report.store, 'jetstream');
    t.is(report.location, url);
    t.like(report.app, { name: appName, batchDurationMs: 1000, stoppedCleanly: false });
    t.like(
      report.graph.find((g) => g.key === 'totals'),
      { operator: 'updateStateByKey', uid: 'totals', partitions: 2 },
    );
    t.deepEqual(report.writer, { epoch: head.epoch, state: null, pid: null, host: null });
    t.is(head.epoch, 1);
    const objects = await new Objm(t.context.nc).open(`TRIBUTARY_${appName}_SNAPSHOTS`);
    const sizes = await Promise.all([0, 1].map(async (q) => (await objects.info(`totals/${q}/6000`))?.size));
    t.deepEqual(report.lastCheckpoint?.snapshots, [
      { operator: 'totals', partition: 0, kind: 'incremental', bytes: sizes[0] as number, chain: [3000, 6000] },
      { operator: 'totals', partition: 1, kind: 'incremental', bytes: sizes[1] as number, chain: [3000, 6000] },
    ]);
    t.deepEqual(report.checkpoints, [3000, 6000]);
    t.is(report.resumeFrom, 6000);
    t.deepEqual(
      report.pendingReplay,
      app.batches.filter((b) => b > 6000).map((time) => ({ time, outputsDone: true })),
    );
    t.like(report.journal, {
      stream,
      messages: info.state.messages,
      bytes: info.state.bytes,
      firstSeq: info.state.first_seq,
      lastSeq: info.state.last_seq,
      replayFromSeq: head.replayFromSeq,
    });
    t.like(report.snapshots, { count: 4 });
    t.like(report.verify, { journalFrames: info.state.messages, snapshotsRead: 4 });
    t.deepEqual(report.damage, []);
    t.true(report.recoverable);

    // A message that is no frame, where recovery reads: named by stream and sequence, exit 1.
    const h = headers();
    h.set('Nats-Msg-Id', 'inspect-test-garbage');
    const ack = await jetstream(t.context.nc).publish(`tributary.${appName}.journal.batch_completed`, new Uint8Array([1, 2, 3]), {
      headers: h,
    });
    const damaged = await inspectJson([url, '--verify', '--app', appName]);
    t.is(damaged.result.code, 1, damaged.result.stderr);
    t.deepEqual(damaged.report.damage, [
      {
        kind: 'journal',
        where: `stream ${stream} message ${ack.seq}`,
        stream,
        seq: ack.seq,
        offset: 0,
        reason: `journal stream ${stream} message ${ack.seq} is not one whole frame`,
      },
    ]);
    t.false(damaged.report.recoverable);
    const table = await tributary(['inspect', url, '--verify']);
    t.is(table.code, 1);
    t.regex(table.stdout, new RegExp(`^journal +stream ${stream} message ${ack.seq} +0 +journal stream`, 'm'));
  },
);

test.serial('inspect nats:// - several apps on one server need --app; an unknown one or no server is a usage error', async (t) => {
  const a = `inspect-a-${process.pid}`;
  const b = `inspect-b-${process.pid}`;
  await crashedRun(t, a, 1);
  await crashedRun(t, b, 1);
  const url = t.context.server.url;
  const ambiguous = await tributary(['inspect', url]);
  t.is(ambiguous.code, 2);
  t.regex(ambiguous.stderr, /several apps: choose one with --app/);
  t.regex(ambiguous.stderr, new RegExp(`${a}.*${b}|${b}.*${a}`));
  const chosen = await inspectJson([url, '--app', b]);
  t.is(chosen.result.code, 0, chosen.result.stderr);
  t.is(chosen.report.app?.name, b);
  const unknown = await tributary(['inspect', url, '--app', 'no-such-app']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /holds no journal of app no-such-app/);
  // Port 1 on 127.0.0.1: nothing listens there, so the connection is refused at once.
  const down = await tributary(['inspect', 'nats://127.0.0.1:1']);
  t.is(down.code, 2);
  t.regex(down.stderr, /cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
});
