import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { TimeoutError } from '@nats-io/transport-node';
import anyTest, { type TestFn } from 'ava';
import type { NatsCluster, NatsServer } from './nats-server.ts';
import { connectTo, NatsServerError, startNatsCluster, startNatsServer } from './nats-server.ts';

interface Ctx {
  servers: NatsServer[];
  connections: NatsConnection[];
  /** The cluster the serial tests share: created by the first, stopped and restarted by the next ones. */
  shared: { cluster?: NatsCluster; stoppedLeader?: number };
}

const test = anyTest as TestFn<Ctx>;

/** Bounds on the cluster publish retries (the election after a SIGKILL takes 4-8 s here). */
const PUBLISH_ATTEMPTS_MAX = 20;
const PUBLISH_TIMEOUT_MS = 2_000;
/** Longest wait for a stream leader election after a publish found no leader. */
const ELECTION_WAIT_MS_MAX = 10_000;

const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const decode = (data: Uint8Array): string => new TextDecoder().decode(data);

/**
 * Counts the stream's leader-elected advisories, so that a publish that found no
 * leader can wait for the next election instead of spinning or sleeping. The new
 * leader subscribes to the stream's subjects before it sends the advisory, so a
 * publish made after the advisory finds it.
 */
class LeaderElections {
  #count = 0;
  #waiters: (() => void)[] = [];
  readonly #sub: Subscription;

  constructor(nc: NatsConnection, stream: string) {
    this.#sub = nc.subscribe(`$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${stream}`, {
      callback: () => {
        this.#count++;
        for (const wake of this.#waiters.splice(0)) wake();
      },
    });
  }

  get count(): number {
    return this.#count;
  }

  /** Resolves once more than `seen` elections happened, or after `ms` (the caller then just retries). */
  async after(seen: number, ms: number): Promise<void> {
    if (this.#count > seen) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#waiters.push(resolve);
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}

/**
 * Publishes with a msgID until the stream acks it, at most PUBLISH_ATTEMPTS_MAX times.
 * The failed attempt's error says when to try again: a timeout already waited, so
 * the next attempt goes at once; "no responders" means no leader, so the next one
 * waits for the leader-elected advisory. The msgID makes a retry of an attempt that
 * did land a duplicate.
 */
async function publishUntilAcked(
  js: JetStreamClient,
  elections: LeaderElections,
  subject: string,
  data: string,
  msgID: string,
): Promise<{ ack: PubAck; failures: string[] }> {
  const failures: string[] = [];
  const started = performance.now();
  while (failures.length < PUBLISH_ATTEMPTS_MAX) {
    const seen = elections.count;
    try {
      const ack = await js.publish(subject, encode(data), { msgID, timeout: PUBLISH_TIMEOUT_MS });
      return { ack, failures };
    } catch (err) {
      failures.push(`${Math.round(performance.now() - started)} ms: ${String(err)}`);
      if (!(err instanceof TimeoutError)) await elections.after(seen, ELECTION_WAIT_MS_MAX);
    }
  }
  throw new Error(`publish of ${msgID} failed ${failures.length} times: ${failures.join('; ')}`);
}

/** Rejects with `what` if `promise` has not settled after `ms`; a bound, not a pause. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves at the connection's next `reconnect` status. */
async function nextReconnect(nc: NatsConnection): Promise<string> {
  for await (const status of nc.status()) {
    if (status.type === 'reconnect') return status.server;
  }
  throw new Error('the connection closed without reconnecting');
}

async function connect(t: { context: Ctx }, urls: string | string[]): Promise<NatsConnection> {
  const nc = await connectTo(urls);
  t.context.connections.push(nc);
  return nc;
}

async function server(t: { context: Ctx }, options?: Parameters<typeof startNatsServer>[0]): Promise<NatsServer> {
  const started = await startNatsServer(options);
  t.context.servers.push(started);
  return started;
}

function sharedCluster(t: { context: Ctx }): NatsCluster {
  const cluster = t.context.shared.cluster;
  if (cluster === undefined) throw new Error('the cluster test that starts the cluster did not run or failed');
  return cluster;
}

test.before((t) => {
  t.context = { servers: [], connections: [], shared: {} };
});

test.after.always(async (t) => {
  await Promise.allSettled(t.context.connections.map((nc) => nc.close()));
  await Promise.allSettled(t.context.servers.map((s) => s.shutdown()));
  await t.context.shared.cluster?.shutdown();
});

test('nats-server - a single server starts, accepts a connection and a JetStream stream add + publish', async (t) => {
  const s = await server(t);
  t.regex(s.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  t.not(s.port, 4222);
  t.true(s.running);
  const nc = await connect(t, s.url);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'single', subjects: ['single.>'] });
  const ack = await jetstream(nc).publish('single.a', encode('hello'));
  t.is(ack.stream, 'single');
  t.is(ack.seq, 1);
  t.is(nc.info?.max_payload, 1024 * 1024);
});

test('nats-server - maxPayload and jetstream: false reach the server config', async (t) => {
  const s = await server(t, { maxPayload: 8 * 1024 * 1024, jetstream: false, name: 'plain' });
  const nc = await connect(t, s.url);
  t.is(nc.info?.max_payload, 8 * 1024 * 1024);
  t.is(nc.info?.server_name, 'plain');
  t.falsy(nc.info?.jetstream);
});

test('nats-server - stop() makes a publish fail; restart() keeps the stream and the client reconnects', async (t) => {
  const s = await server(t);
  const { port, url, storeDir } = s;
  const nc = await connect(t, s.url);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: 'durable', subjects: ['durable.>'] });
  for (const word of ['one', 'two', 'three']) await js.publish('durable.words', encode(word), { msgID: word });

  const reconnected = nextReconnect(nc);
  const pidBefore = s.pid;
  await s.stop();
  t.false(s.running);
  // The client buffers this publish while it reconnects, so the server may still store it
  // after restart(); the msgID makes the retry below a duplicate in that case.
  await t.throwsAsync(js.publish('durable.words', encode('four'), { msgID: 'four', timeout: 500 }));

  await s.restart();
  t.is(s.port, port);
  t.is(s.url, url);
  t.is(s.storeDir, storeDir);
  t.not(s.pid, pidBefore);
  t.is(await within(reconnected, 10_000, 'the reconnect of the client that stayed connected'), `127.0.0.1:${port}`);

  const retry = await js.publish('durable.words', encode('four'), { msgID: 'four' });
  t.is(retry.seq, 4);
  const info = await jsm.streams.info('durable');
  t.is(info.state.messages, 4);
  const words: string[] = [];
  for (let seq = 1; seq <= 4; seq++) {
    const msg = await jsm.streams.getMessage('durable', { seq });
    words.push(msg === null ? '<missing>' : decode(msg.data));
  }
  t.deepEqual(words, ['one', 'two', 'three', 'four']);
});

test('nats-server - an early exit reports the server stderr', async (t) => {
  const s = await server(t, { jetstream: false });
  await s.stop();
  // Taking the server's port makes its restart exit at once with "address already in use".
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(s.port, '127.0.0.1', () => resolve()));
  try {
    const err = await t.throwsAsync(s.restart(), { instanceOf: NatsServerError });
    t.is(err?.code, 'nats-server.exited');
    t.regex(err?.message ?? '', /nats-server.*exited with code 1 before it was ready/);
    t.regex(err?.message ?? '', /address already in use/);
    t.false(s.running);
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
  await s.restart();
  t.true(s.running);
});

test('nats-server - a started server reports its version, 2.10 or newer (the test run uses a current server)', async (t) => {
  const s = await server(t, { jetstream: false });
  t.regex(s.version, /^\d+\.\d+\.\d+/);
  const [major = 0, minor = 0] = s.version.split('.').map(Number);
  t.true(
    major > 2 || (major === 2 && minor >= 10),
    `nats-server ${s.version} is older than 2.10: run bash tests/helpers/ensure-nats-server.sh`,
  );
  // The server itself says the same in its INFO, so the version belongs to the binary that runs.
  const nc = await connect(t, s.url);
  t.is(nc.info?.version, s.version);
});

test('nats-server - a missing binary gives a clear error', async (t) => {
  const err = await t.throwsAsync(startNatsServer({ binary: '/nonexistent/nats-server' }), { instanceOf: NatsServerError });
  t.is(err?.code, 'nats-server.missing');
  t.regex(err?.message ?? '', /nats-server binary not found: \/nonexistent\/nats-server/);
  // The hint names the script that provides a current server, not Debian's 2.9 package.
  t.regex(err?.message ?? '', /bash tests\/helpers\/ensure-nats-server\.sh/);
  t.notRegex(err?.message ?? '', /apt-get/);
  await t.throwsAsync(startNatsCluster(3, { binary: '/nonexistent/nats-server' }), { instanceOf: NatsServerError });
});

test('nats-server - a binary that prints no nats-server version is refused before it starts', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-fake-nats-'));
  try {
    const fake = path.join(dir, 'nats-server');
    await fs.writeFile(fake, '#!/bin/sh\necho "not a nats server"\n', { mode: 0o755 });
    const err = await t.throwsAsync(startNatsServer({ binary: fake }), { instanceOf: NatsServerError });
    t.is(err?.code, 'nats-server.no-version');
    t.regex(err?.message ?? '', /--version printed no nats-server version: "not a nats server"/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.serial('nats-server - a 3-node cluster starts and an R3 stream takes publishes', async (t) => {
  const cluster = await startNatsCluster(3);
  t.context.shared.cluster = cluster;
  t.is(cluster.urls.length, 3);
  t.is(cluster.servers[0]?.version, cluster.version);
  t.is(new Set(cluster.urls).size, 3);
  for (const url of cluster.urls) t.regex(url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  const nc = await connect(t, cluster.urls);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'replicated', subjects: ['replicated.>'], num_replicas: 3 });
  const js = jetstream(nc);
  for (let i = 1; i <= 5; i++) {
    const ack = await js.publish('replicated.n', encode(`m${i}`), { msgID: `m${i}` });
    t.is(ack.seq, i);
  }
  const info = await jsm.streams.info('replicated');
  t.truthy(info.cluster?.leader);
  t.is(info.cluster?.replicas?.length, 2);
});

test.serial('nats-server - stopping the stream leader of a cluster keeps publishing working after the election', async (t) => {
  const cluster = sharedCluster(t);
  const nc = await connect(t, cluster.urls);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const before = await jsm.streams.info('replicated');
  const leader = cluster.servers.findIndex((s) => s.name === before.cluster?.leader);
  t.not(leader, -1);
  const elections = new LeaderElections(nc, 'replicated');
  await nc.flush(); // The advisory subscription is in place before the leader dies.
  await cluster.stop(leader);
  t.false(cluster.servers[leader]?.running);

  const { ack, failures } = await publishUntilAcked(js, elections, 'replicated.n', 'm6', 'm6');
  elections.close();
  t.log(`publish attempts that failed during the election: ${failures.length}`, failures);
  t.is(ack.seq, 6);
  const after = await jsm.streams.info('replicated');
  t.is(after.state.messages, 6);
  t.not(after.cluster?.leader, before.cluster?.leader);
  t.context.shared.stoppedLeader = leader;
});

test.serial('nats-server - a restarted cluster node rejoins: the stream needs it once another node stops', async (t) => {
  const cluster = sharedCluster(t);
  const stopped = t.context.shared.stoppedLeader ?? 0;
  const urlBefore = cluster.urls[stopped];
  await cluster.restart(stopped);
  t.true(cluster.servers[stopped]?.running);
  t.is(cluster.servers[stopped]?.url, urlBefore);

  // With another node down, 2 of 3 replicas make a quorum only if the restarted node is back.
  const other = (stopped + 1) % cluster.servers.length;
  const nc = await connect(t, cluster.urls);
  const js = jetstream(nc);
  const elections = new LeaderElections(nc, 'replicated');
  await nc.flush();
  await cluster.stop(other);
  const { ack, failures } = await publishUntilAcked(js, elections, 'replicated.n', 'm7', 'm7');
  elections.close();
  t.log(`publish attempts that failed: ${failures.length}`, failures);
  t.is(ack.seq, 7);
  await cluster.restart(other);
  // Right after a restart the JetStream API may not answer for a few seconds (an election): ask again, bounded.
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  let messages: number | undefined;
  for (let attempt = 1; messages === undefined; attempt++) {
    try {
      messages = (await jsm.streams.info('replicated')).state.messages;
    } catch (error) {
      if (!(error instanceof TimeoutError) || attempt >= 6) throw error;
    }
  }
  t.is(messages, 7);
});
