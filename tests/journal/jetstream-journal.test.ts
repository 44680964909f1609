/**
 * The JetStream journal and snapshot store against real nats-servers, each test once
 * on a single server (R1) and once on a 3-node cluster (R3): order across reopens,
 * envelope validation, fencing of a zombie writer, the head and its garbage
 * collection, a journal of the previous format, appends and snapshot writes that ride
 * out an outage, and snapshots larger than max_payload. Every test uses its own app
 * name (its own stream, head and bucket).
 */

import { readFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { pino } from 'pino';
import { encodeFrame } from '../../journal/codec.ts';
import type { JournalEvent } from '../../journal/events.ts';
import { decodeJournalMessage, JetStreamJournal, journalNames } from '../../journal/jetstream-journal.ts';
import { foldJournal } from '../../journal/recovery-plan.ts';
import { decodeValue, encodeValue } from '../../runtime/base/cbor.ts';
import type { SnapshotData } from '../../runtime/graph/wire.ts';
import { JetStreamSnapshotStore } from '../../snapshots/jetstream-snapshot-store.ts';
import type { SnapshotKey } from '../../snapshots/snapshot-codec.ts';
import { deferred, quiet } from '../helpers/checkpoint-kit.ts';
import { journalHead, journalMessages, within } from '../helpers/jetstream-journal-kit.ts';
import { connectTo, type NatsCluster, type NatsServer, startNatsCluster, startNatsServer } from '../helpers/nats-server.ts';

type Kind = 'single' | 'cluster';

/** Where a test's journal lives: one server, or a 3-node cluster with R3 streams. */
interface Target {
  readonly urls: string[];
  readonly replicas: number;
  /** Makes JetStream unavailable (the server, or two of the three nodes: no quorum). */
  down(): Promise<void>;
  /** Brings back what down() stopped. */
  up(): Promise<void>;
}

interface Ctx {
  server: NatsServer;
  cluster: NatsCluster;
  targets: Record<Kind, Target>;
  /** Connections of the test itself (inspection, publishing by hand). */
  connections: NatsConnection[];
  /** Journals opened by tests; each owns its connection, closed in teardown. */
  journals: JetStreamJournal[];
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const [server, cluster] = await Promise.all([startNatsServer(), startNatsCluster(3)]);
  const targets: Record<Kind, Target> = {
    single: { urls: [server.url], replicas: 1, down: () => server.stop(), up: () => server.restart() },
    cluster: {
      urls: cluster.urls,
      replicas: 3,
      down: async () => {
        await cluster.stop(0);
        await cluster.stop(1);
      },
      up: async () => {
        await cluster.restart(0);
        await cluster.restart(1);
        await clusterSettled(cluster.urls);
      },
    },
  };
  t.context = { server, cluster, targets, connections: [], journals: [] };
});

test.after.always(async (t) => {
  await Promise.allSettled(t.context.journals.map((j) => j.close()));
  await Promise.allSettled(t.context.connections.map((nc) => nc.close()));
  await t.context.server?.shutdown();
  await t.context.cluster?.shutdown();
});

let apps = 0;

/** An app name no other test of this run uses (each app has its own stream). */
function appName(what: string): string {
  return `jsj-${process.pid}-${++apps}-${what}`;
}

/**
 * Waits (bounded) until the cluster's JetStream answers and every stream has a leader
 * and current replicas: the tests after an outage must not meet its elections.
 */
async function clusterSettled(urls: string[]): Promise<void> {
  const nc = await connectTo(urls);
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
    await within(
      (async () => {
        for (;;) {
          const infos = await (async () => {
            const all = [];
            for await (const info of jsm.streams.list()) all.push(info);
            return all;
          })().catch(() => undefined);
          const settled = infos?.every((i) => i.cluster?.leader && (i.cluster.replicas ?? []).every((r) => r.current && !r.offline));
          if (infos !== undefined && settled) return;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      })(),
      60_000,
      'the cluster settling after an outage',
    );
  } finally {
    await nc.close();
  }
}

async function connectionTo(t: ExecutionContext<Ctx>, kind: Kind): Promise<NatsConnection> {
  const nc = await connectTo(t.context.targets[kind].urls);
  t.context.connections.push(nc);
  return nc;
}

/** A journal of `app` on a connection of its own (the journal closes it). */
async function journalOn(t: ExecutionContext<Ctx>, kind: Kind, app: string, logger = quiet): Promise<JetStreamJournal> {
  const target = t.context.targets[kind];
  const j = new JetStreamJournal(await connectTo(target.urls), app, target.replicas, logger);
  t.context.journals.push(j);
  return j;
}

function completed(time: number): JournalEvent {
  return { v: 1, type: 'batch.completed', time };
}

function allocated(time: number): JournalEvent {
  return { v: 1, type: 'batch.allocated', time, inputs: { 'queueStream#1': { type: 'queue', index: time / 1000 } as never } };
}

function started(epoch: number): JournalEvent {
  return {
    v: 1,
    type: 'context.started',
    appName: 'jsj',
    batchDurationMs: 1000,
    zeroTimeMs: 0,
    epoch,
    graph: [{ key: 'queueStream#1', operator: 'queueStream', uid: null, slideMs: 1000, partitions: 2, params: {} }],
  };
}

// ---- append, reopen, validation ------------------------------------------------------

function checkpoint(time: number): JournalEvent {
  return { v: 1, type: 'checkpoint.completed', time, snapshots: [], positions: { 'queueStream#1': time / 1000 } };
}

function sameData(t: ExecutionContext<Ctx>, actual: SnapshotData, expected: SnapshotData): void {
  if (isDeepStrictEqual(actual, expected)) {
    t.pass();
    return;
  }
  const k = actual.keys.findIndex((key, i) => !isDeepStrictEqual([key, actual.values[i]], [expected.keys[i], expected.values[i]]));
  t.fail(`snapshots differ (${actual.keys.length} vs ${expected.keys.length} entries; first difference at ${k})`);
}

/** Registers every test of the file for one kind of target. */
function register(kind: Kind): void {
  const connection = (t: ExecutionContext<Ctx>) => connectionTo(t, kind);
  const journal = (t: ExecutionContext<Ctx>, app: string, logger = quiet) => journalOn(t, kind, app, logger);
  const replicas = kind === 'single' ? 1 : 3;

  test(`jetstream journal (${kind}) - appends come back in order after a reopen, with a growing epoch`, async (t) => {
    const app = appName('order');
    const first = await journal(t, app);
    const fresh = await first.open();
    t.deepEqual(fresh, { epoch: 1, events: [], complete: true });
    const written: JournalEvent[] = [started(fresh.epoch)];
    for (let i = 1; i <= 30; i++) written.push(i % 2 === 1 ? allocated(i * 1000) : completed((i - 1) * 1000));
    for (const e of written) await first.append(e);
    await first.sync();
    await first.close();

    const second = await journal(t, app);
    const back = await second.open();
    t.deepEqual(back.events, written);
    t.is(back.epoch, 2);
    t.true(back.complete);
    await second.append(completed(31_000));
    await second.close();

    // The stream and its subjects are the documented ones.
    const nc = await connection(t);
    const { stream, prefix } = journalNames(app);
    t.is(stream, `TRIBUTARY_${app}`);
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    t.deepEqual(info.config.subjects, [`tributary.${app}.journal.*`]);
    const messages = await journalMessages(nc, app);
    t.is(messages.length, written.length + 1);
    // Each open fences the stream with a marker (left out here): the events sit between them, nothing twice.
    t.deepEqual(
      messages.map((m) => m.seq),
      [...messages.slice(0, written.length).map((_, k) => k + 2), written.length + 3],
    );
    t.is(messages[0]?.subject, `${prefix}.context_started`);
    t.is(messages[messages.length - 1]?.subject, `${prefix}.batch_completed`);
    t.deepEqual(messages[messages.length - 1]?.event, completed(31_000));
  });

  test(`jetstream journal (${kind}) - an invalid event is refused before anything is written`, async (t) => {
    const app = appName('invalid');
    const j = await journal(t, app);
    await j.open();
    await t.throwsAsync(j.append({ v: 1, type: 'batch.completed' } as unknown as JournalEvent), { message: /invalid event/ });
    await j.append(completed(1000));
    const nc = await connection(t);
    t.deepEqual(
      (await journalMessages(nc, app)).map((m) => m.event),
      [completed(1000)],
    );
  });

  test(`jetstream journal (${kind}) - a foreign message on the journal subject is CORRUPT_CHECKPOINT naming the stream and sequence`, async (t) => {
    const app = appName('foreign');
    const j = await journal(t, app);
    await j.open();
    await j.append(started(1));
    await j.append(completed(1000));
    await j.close();
    const { stream, prefix } = journalNames(app);
    const js = jetstream(await connection(t));

    // Not a frame at all.
    const ack = await js.publish(`${prefix}.batch_completed`, new TextEncoder().encode('{"v":1,"type":"batch.completed","time":2000}'));
    const error = await t.throwsAsync((await journal(t, app)).open());
    t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
    t.true(error?.message.includes(`journal stream ${stream} message ${ack.seq}`), error?.message);

    // A whole, checksummed frame whose content is not a journal event.
    const app2 = appName('foreign-shape');
    const j2 = await journal(t, app2);
    await j2.open();
    await j2.append(completed(1000));
    await j2.close();
    const p2 = journalNames(app2);
    const ack2 = await js.publish(`${p2.prefix}.batch_completed`, encodeFrame(encodeValue({ v: 1, type: 'batch.exploded', time: 2000 })));
    const error2 = await t.throwsAsync((await journal(t, app2)).open());
    t.is((error2 as { code?: string }).code, 'CORRUPT_CHECKPOINT');
    t.true(error2?.message.includes(`journal stream ${p2.stream} message ${ack2.seq}`), error2?.message);
    t.regex(error2?.message ?? '', /unknown event type "batch\.exploded"/);
  });

  // ---- fencing ---------------------------------------------------------------------------

  test(`jetstream journal (${kind}) - a zombie writer is FENCED once a newer one opened and appended`, async (t) => {
    const app = appName('zombie');
    const zombie = await journal(t, app);
    await zombie.open();
    await zombie.append(allocated(1000));
    await zombie.append(completed(1000));

    const successor = await journal(t, app);
    const contents = await successor.open();
    t.deepEqual(contents.events, [allocated(1000), completed(1000)]);
    await successor.append(allocated(2000));

    const error = await t.throwsAsync(zombie.append(completed(2000)));
    t.is((error as { code?: string }).code, 'FENCED');
    t.regex(error?.message ?? '', new RegExp(journalNames(app).stream));
    const rollError = await t.throwsAsync(zombie.roll([completed(1000)], 1));
    t.is((rollError as { code?: string }).code, 'FENCED');

    // The successor goes on; the zombie left nothing behind.
    await successor.append(completed(2000));
    const nc = await connection(t);
    t.deepEqual(
      (await journalMessages(nc, app)).map((m) => m.event),
      [allocated(1000), completed(1000), allocated(2000), completed(2000)],
    );
  });

  test(`jetstream journal (${kind}) - of two writers opened one after the other, the first is FENCED before it writes anything`, async (t) => {
    // The second open takes the head (epoch + 1) and fences the stream with a marker:
    // the first writer's next append fails, though the second has not appended yet.
    const app = appName('two-opens');
    const a = await journal(t, app);
    const b = await journal(t, app);
    const ea = await a.open();
    const eb = await b.open();
    t.is(eb.epoch, ea.epoch + 1);
    const error = await t.throwsAsync(a.append(started(ea.epoch)));
    t.is((error as { code?: string }).code, 'FENCED');
    const rollError = await t.throwsAsync(a.roll([started(ea.epoch)], 1));
    t.is((rollError as { code?: string }).code, 'FENCED');
    await b.append(started(eb.epoch));
    await b.append(completed(1000));
    const nc = await connection(t);
    t.deepEqual(
      (await journalMessages(nc, app)).map((m) => m.event),
      [started(eb.epoch), completed(1000)],
    );
    t.is((await journalHead(nc, app))?.epoch, eb.epoch);
  });

  // ---- roll and retention --------------------------------------------------------------

  test(`jetstream journal (${kind}) - roll moves the head to the oldest needed fact, re-journals nothing, and deletes only what lies before it`, async (t) => {
    const app = appName('roll-head');
    const j = await journal(t, app);
    await j.open();
    const nc = await connection(t);
    const jsm = await jetstreamManager(nc);
    const { stream } = journalNames(app);
    await j.append(started(1));
    for (let i = 1; i <= 5; i++) {
      await j.append(allocated(i * 1000));
      await j.append(completed(i * 1000));
    }
    // Batch 6 is allocated before checkpoint 5 commits: it is the oldest fact still needed.
    await j.append(allocated(6000));
    await j.append(checkpoint(5000));
    const before = await journalMessages(nc, app);
    const seq6 = before.find((m) => m.event.type === 'batch.allocated' && m.event.time === 6000)?.seq as number;
    await j.roll([started(1), checkpoint(5000), allocated(6000)], 1);

    const head = await journalHead(nc, app);
    t.is(head?.replayFromSeq, seq6);
    t.deepEqual(head?.started, started(1));
    t.deepEqual(head?.checkpoints, [checkpoint(5000)]);
    t.true(head?.truncated);
    const after = await journalMessages(nc, app);
    t.is(after.length, before.length - before.filter((m) => m.seq < seq6).length, 'nothing was journaled again');
    t.deepEqual((await jsm.streams.info(stream)).state.first_seq, seq6);
    t.deepEqual(
      after.map((m) => m.event),
      [allocated(6000), checkpoint(5000)],
    );

    // A new writer reads the head's events, then the stream from its replay start.
    await j.append(completed(6000));
    await j.close();
    const next = await journal(t, app);
    const contents = await next.open();
    t.false(contents.complete);
    t.is(contents.epoch, 2);
    t.deepEqual(contents.events, [started(1), checkpoint(5000), allocated(6000), checkpoint(5000), completed(6000)]);
  });

  test(`jetstream journal (${kind}) - roll(head, 2) keeps replaying from the previous roll, so the older checkpoint stays a fallback`, async (t) => {
    const app = appName('roll-keep');
    const j = await journal(t, app);
    await j.open();
    const nc = await connection(t);
    await j.append(started(1));
    const starts: number[] = [];
    const checkpoints: JournalEvent[] = [];
    for (let round = 1; round <= 6; round++) {
      const t0 = round * 10_000;
      await j.append(allocated(t0));
      await j.append(completed(t0));
      await j.append(allocated(t0 + 1000));
      await j.append(checkpoint(t0));
      checkpoints.push(checkpoint(t0));
      const seqOfNext = (await journalMessages(nc, app)).find((m) => m.event.type === 'batch.allocated' && m.event.time === t0 + 1000)
        ?.seq as number;
      starts.push(seqOfNext);
      await j.roll([started(1), ...checkpoints.slice(-2), allocated(t0 + 1000)], 2);
      await j.append(completed(t0 + 1000));
      const head = await journalHead(nc, app);
      t.is(head?.replayFromSeq, starts.at(-2) ?? starts[0], `round ${round}: the replay starts at the older kept roll`);
      t.deepEqual(head?.checkpoints, checkpoints.slice(-2));
      const messages = await journalMessages(nc, app);
      t.true(
        messages.length > 0 && (messages[0]?.seq as number) <= (head?.replayFromSeq as number),
        `round ${round}: nothing needed was deleted`,
      );
    }
    await t.throwsAsync(async () => j.roll([started(1)], 0), { instanceOf: RangeError });
  });

  test(`jetstream journal (${kind}) - a stream that lost what its head points at is CORRUPT_CHECKPOINT, never an empty journal`, async (t) => {
    const app = appName('lost-stream');
    const j = await journal(t, app);
    await j.open();
    await j.append(started(1));
    for (let i = 1; i <= 4; i++) await j.append(completed(i * 1000));
    await j.append(allocated(5000));
    await j.roll([started(1), checkpoint(4000), allocated(5000)], 1);
    await j.close();
    // The stream is recreated empty (as a replica that lost its data and took over would show it).
    const nc = await connection(t);
    await (await jetstreamManager(nc)).streams.delete(journalNames(app).stream);
    const error = await t.throwsAsync((await journal(t, app)).open());
    t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
    t.regex(error?.message ?? '', /lost messages the head needs/);
  });

  test(`jetstream journal (${kind}) - a roll with no fact to keep points past the stream end, and the stream is never emptied`, async (t) => {
    const app = appName('roll-empty');
    const j = await journal(t, app);
    await j.open();
    const nc = await connection(t);
    const jsm = await jetstreamManager(nc);
    await j.append(started(1));
    await j.append(completed(1000));
    await j.roll([started(1), checkpoint(1000)], 1);
    const info = await jsm.streams.info(journalNames(app).stream);
    t.true(info.state.messages > 0, 'the newest message stays');
    t.is((await journalHead(nc, app))?.replayFromSeq, info.state.last_seq + 1);
    await j.close();
    const next = await journal(t, app);
    t.deepEqual((await next.open()).events, [started(1), checkpoint(1000)]);
  });

  test(`jetstream journal (${kind}) - a journal of the previous format (segment heads, no KV head) opens and continues under a head`, async (t) => {
    // Recorded with the format-1 journal (tests/fixtures/journals/jetstream-v1): three rolls with
    // keepSegments 2, so the stream begins at a segment head, past sequence 1.
    const fixture = decodeValue(await readFile(new URL('../fixtures/journals/jetstream-v1/legacy-v1.cbor', import.meta.url))) as {
      app: string;
      firstSeq: number;
      messages: { seq: number; subject: string; segment: string | null; data: Uint8Array }[];
    };
    const app = appName('legacy');
    const { stream, prefix } = journalNames(app);
    const nc = await connection(t);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.*`], first_seq: fixture.firstSeq, num_replicas: replicas });
    const js = jetstream(nc);
    const events: JournalEvent[] = [];
    for (const m of fixture.messages) {
      const h = natsHeaders();
      if (m.segment) h.set('Tributary-Segment', m.segment);
      const ack = await js.publish(m.subject.replace(`tributary.${fixture.app}.`, `tributary.${app}.`), m.data, { headers: h });
      t.is(ack.seq, m.seq);
      events.push(decodeJournalMessage(m.data, stream, m.seq));
    }
    const j = await journal(t, app);
    const contents = await j.open();
    t.deepEqual(contents.events, events);
    t.false(contents.complete);
    t.is(contents.epoch, 2, 'one more than the recorded context.started');
    const folded = foldJournal(contents.events);
    t.deepEqual(
      folded.checkpoints.map((c) => c.time),
      [4000, 8000, 12_000],
    );
    t.true(folded.allocations.has(12_000) && !folded.completed.has(12_000), 'the batch in flight is still there');
    // It goes on as a head-based journal.
    await j.append(completed(12_000));
    await j.roll([started(2), ...folded.checkpoints], 2);
    const head = await journalHead(nc, app);
    t.is(head?.epoch, 2);
    t.deepEqual(head?.checkpoints, folded.checkpoints);
  });

  // ---- a server restart under appends ----------------------------------------------------

  test.serial(
    `jetstream journal (${kind}) - appends in flight across a server stop and restart complete, none lost or duplicated`,
    async (t) => {
      const app = appName('restart');
      const retried = deferred();
      const logger = pino(
        { level: 'warn' },
        { write: (line: string) => void (/retrying with the same message id/.test(line) && retried.resolve()) },
      );
      const j = await journal(t, app, logger);
      await j.open();
      const events: JournalEvent[] = [started(1)];
      for (let i = 1; i <= 60; i++) events.push(i % 2 === 1 ? allocated(i * 1000) : completed((i - 1) * 1000));
      const appends = events.map((e) => j.append(e));
      // Stop the server once a third is stored: the rest are queued or in flight.
      await appends[20];
      await t.context.targets[kind].down();
      // The journal notices (a publish timed out and is retried) before the server comes back.
      await within(retried.promise, 30_000, 'a retried journal append');
      await t.context.targets[kind].up();
      await within(Promise.all(appends), 60_000, 'the appends after the restart');

      const nc = await connection(t);
      const messages = await journalMessages(nc, app);
      t.deepEqual(
        messages.map((m) => m.event),
        events,
      );
      const reopened = await journal(t, app);
      t.deepEqual((await reopened.open()).events, events);
    },
  );

  test.serial(`jetstream snapshots (${kind}) - a write issued while the server is down completes once it is back`, async (t) => {
    const app = appName('store-outage');
    const nc = await connection(t);
    const retried = deferred();
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => void (/snapshot store operation failed; retrying/.test(line) && retried.resolve()) },
    );
    const store = new JetStreamSnapshotStore(nc, app, replicas, logger);
    const key: SnapshotKey = { operator: 'op', partition: 0, time: 1000 };
    const data: SnapshotData = { kind: 'full', keys: ['a'], values: [1], removed: [], meta: null };
    await t.context.targets[kind].down();
    // The store's first use (creating its bucket) fails while the server is down; the write retries.
    const writing = store.write(key, data);
    await within(retried.promise, 30_000, 'a retried snapshot write during the outage');
    await t.context.targets[kind].up();
    await within(writing, 60_000, 'the snapshot write after the restart');
    const back = await store.read(key);
    t.deepEqual([back.keys, back.values], [['a'], [1]]);
  });

  // ---- snapshot store --------------------------------------------------------------------

  test(`jetstream snapshots (${kind}) - a 200k-entry snapshot, larger than max_payload, round-trips in chunks`, async (t) => {
    const app = appName('big-snapshot');
    const nc = await connection(t);
    const store = new JetStreamSnapshotStore(nc, app, replicas);
    const keys: unknown[] = Array.from({ length: 200_000 }, (_, i) => (i % 3 === 0 ? `word-${i}` : ['k', i]));
    const values: unknown[] = Array.from({ length: 200_000 }, (_, i) => (i % 2 === 0 ? i : { n: i, s: `v${i}` }));
    const data: SnapshotData = { kind: 'full', keys, values, removed: ['gone', ['x', 1]], meta: { held: [[1000, [['a', 1]]]] } };
    const key: SnapshotKey = { operator: 'updateStateByKey-abc', partition: 1, time: 10_000 };
    const bytes = await store.write(key, data);
    const maxPayload = nc.info?.max_payload ?? 0;
    t.true(bytes > maxPayload, `${bytes} bytes vs max_payload ${maxPayload}`);
    const os = await new Objm(nc).open(`TRIBUTARY_${app}_SNAPSHOTS`);
    const info = await os.info('updateStateByKey-abc/1/10000');
    t.is(info?.size, bytes);
    t.true((info?.chunks ?? 0) > 1, `${info?.chunks} chunks`);
    sameData(t, await store.read(key), data);
    t.true((await store.sizeBytes()) >= bytes);
    // ObjectStore.get() left a consumer for 5 minutes per read, and every full snapshot is read back.
    const consumers = (await (await jetstreamManager(nc)).streams.info(`OBJ_TRIBUTARY_${app}_SNAPSHOTS`)).state.consumer_count;
    t.is(consumers, 0, 'a read leaves no consumer behind');
  });

  test(`jetstream snapshots (${kind}) - a missing or damaged object is CORRUPT_CHECKPOINT naming it`, async (t) => {
    const app = appName('missing');
    const nc = await connection(t);
    const store = new JetStreamSnapshotStore(nc, app, replicas);
    const key: SnapshotKey = { operator: 'op/with slash', partition: 0, time: 5000 };
    const missing = await t.throwsAsync(store.read(key));
    t.is((missing as { code?: string }).code, 'CORRUPT_CHECKPOINT');
    t.true(missing?.message.includes(`TRIBUTARY_${app}_SNAPSHOTS/op%2Fwith%20slash/0/5000`), missing?.message);

    // An object under the right name whose bytes are not snapshot frames.
    await store.write(key, { kind: 'full', keys: ['a'], values: [1], removed: [], meta: null });
    const os = await new Objm(nc).open(`TRIBUTARY_${app}_SNAPSHOTS`);
    await os.putBlob({ name: 'op%2Fwith%20slash/0/5000' }, new TextEncoder().encode('not a snapshot at all'));
    const damaged = await t.throwsAsync(store.read(key));
    t.is((damaged as { code?: string }).code, 'CORRUPT_CHECKPOINT');
    t.regex(damaged?.message ?? '', /op%2Fwith%20slash\/0\/5000/);

    // A valid snapshot stored under another key's name is refused too.
    const other: SnapshotKey = { operator: 'op/with slash', partition: 0, time: 6000 };
    await store.write(other, { kind: 'full', keys: ['b'], values: [2], removed: [], meta: null });
    const otherBytes = await os.getBlob('op%2Fwith%20slash/0/6000');
    await os.putBlob({ name: 'op%2Fwith%20slash/0/5000' }, otherBytes);
    const swapped = await t.throwsAsync(store.read(key));
    t.is((swapped as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  });

  test(`jetstream snapshots (${kind}) - retain deletes what was written before the oldest kept snapshot, never a kept one`, async (t) => {
    const app = appName('retain');
    const nc = await connection(t);
    const store = new JetStreamSnapshotStore(nc, app, replicas);
    // Written as checkpoints write them: time after time, every operator and partition at each.
    const keys: SnapshotKey[] = [];
    for (const time of [1000, 2000, 3000])
      for (const operator of ['a', 'b']) for (const partition of [0, 1]) keys.push({ operator, partition, time });
    for (const key of keys) await store.write(key, { kind: 'full', keys: [key.time], values: [key.partition], removed: [], meta: null });
    const keep = (k: SnapshotKey): boolean => k.time >= 2000 && !(k.operator === 'b' && k.partition === 1 && k.time === 2000);
    const jsm = await jetstreamManager(nc);
    const stream = `OBJ_TRIBUTARY_${app}_SNAPSHOTS`;
    const before = (await jsm.streams.info(stream)).state;
    await store.retain(keep);
    const after = (await jsm.streams.info(stream)).state;
    // ObjectStore.list() left a consumer for 5 minutes per call: at a checkpoint a second, nats-server 2.15's
    // 1,000 consumers per stream ran out.
    t.is(after.consumer_count, 0, 'retention lists the objects without leaving a consumer');
    // One purge by sequence: everything before the oldest kept object, nothing by subject.
    t.true(after.first_seq > before.first_seq, 'the old snapshots were purged');
    t.is(after.last_seq, before.last_seq);
    t.is(after.messages, after.last_seq - after.first_seq + 1, 'no gap: nothing was deleted by subject');
    const key = (k: SnapshotKey) => `${k.operator}/${k.partition}/${k.time}`;
    for (const k of keys) {
      if (k.time === 1000) {
        const error = await t.throwsAsync(store.read(k));
        t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT', `${key(k)} was deleted`);
      } else {
        // Kept ones, and the one rejected after the oldest kept (it goes with the next cut).
        const back = await store.read(k);
        t.deepEqual([back.keys, back.values], [[k.time], [k.partition]], `${key(k)} is there`);
      }
    }
    const os = await new Objm(nc).open(`TRIBUTARY_${app}_SNAPSHOTS`);
    const live = (await os.list()).filter((i) => !i.deleted).map((i) => i.name);
    t.deepEqual(
      live.sort(),
      keys
        .filter((k) => k.time > 1000)
        .map(key)
        .sort(),
    );
    // Retaining again with the same rule deletes nothing more; a later rule moves the cut on.
    await store.retain(keep);
    t.is((await os.list()).filter((i) => !i.deleted).length, 8);
    await store.retain((k) => k.time >= 3000);
    t.deepEqual(
      (await os.list())
        .filter((i) => !i.deleted)
        .map((i) => i.name)
        .sort(),
      keys
        .filter((k) => k.time === 3000)
        .map(key)
        .sort(),
    );
  });
}

register('single');
register('cluster');
