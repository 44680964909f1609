import { JetStreamApiError } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { TimeoutError } from '@nats-io/transport-node';
import anyTest, { type TestFn } from 'ava';
import { InvalidConfigError } from '../../../runtime/base/errors.ts';
import {
  assertServerSupportsReplicas,
  checkNatsServerFor,
  connectNats,
  isTransientNatsError,
  parseNatsUrl,
  parseServerVersion,
} from '../../../runtime/nats/nats-connection.ts';
import { type NatsServer, startNatsServer } from '../../helpers/nats-server.ts';

interface Ctx {
  server: NatsServer;
  connections: NatsConnection[];
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context = { server: await startNatsServer({ jetstream: false }), connections: [] };
});

test.after.always(async (t) => {
  const { server, connections } = t.context ?? {};
  for (const nc of connections ?? []) await nc.close();
  await server?.shutdown();
});

/**
 * A connection whose server INFO has not arrived yet: `flush()` stays pending until
 * the test calls `connect(version)`, which sets the INFO and completes the flush, as
 * the first successful connect does.
 */
function connectingConnection(): { nc: NatsConnection; connect(version: string): void; flushes(): number } {
  let info: { version: string } | undefined;
  let pending: (() => void)[] = [];
  let flushes = 0;
  const nc = {
    get info() {
      return info;
    },
    isClosed: () => false,
    flush: () => {
      flushes++;
      return new Promise<void>((resolve) => pending.push(resolve));
    },
  };
  return {
    nc: nc as unknown as NatsConnection,
    connect(version) {
      info = { version };
      for (const resolve of pending) resolve();
      pending = [];
    },
    flushes: () => flushes,
  };
}

test('nats version - parses release, v-prefixed, pre-release and two-part versions', (t) => {
  t.deepEqual(parseServerVersion('2.9.10'), [2, 9, 10]);
  t.deepEqual(parseServerVersion('v2.15.2'), [2, 15, 2]);
  t.deepEqual(parseServerVersion('2.12.0-RC.1'), [2, 12, 0]);
  t.deepEqual(parseServerVersion('2.11.0-dev'), [2, 11, 0]);
  t.deepEqual(parseServerVersion('2.10'), [2, 10, 0]);
  t.deepEqual(parseServerVersion(' 3.0.1 '), [3, 0, 1]);
});

test('nats version - a string that is no version is refused with INVALID_CONFIG', (t) => {
  for (const bad of ['', 'nats', '2', 'x2.10.0', '2.10.0 and more']) {
    const err = t.throws(() => parseServerVersion(bad), { instanceOf: InvalidConfigError }, bad);
    t.is(err?.code, 'INVALID_CONFIG');
  }
});

test('nats version - 2.9.10 is refused for replicas=3, naming the replay bug', (t) => {
  const err = t.throws(() => assertServerSupportsReplicas('2.9.10', 3), { instanceOf: InvalidConfigError });
  t.is(err?.code, 'INVALID_CONFIG');
  t.regex(err?.message ?? '', /replicas=3/);
  t.regex(err?.message ?? '', /needs nats-server 2\.10 or newer/);
  t.regex(err?.message ?? '', /this server is 2\.9\.10/);
  t.regex(err?.message ?? '', /nats-io\/nats-server#4196/);
  t.regex(err?.message ?? '', /upgrade the servers or use replicas=1/);
});

test('nats version - a patched 2.9 is still refused for replicas > 1, without claiming it has the bug', (t) => {
  const err = t.throws(() => assertServerSupportsReplicas('2.9.25', 2), { instanceOf: InvalidConfigError });
  t.regex(err?.message ?? '', /this server is 2\.9\.25, an end-of-life release/);
  t.regex(err?.message ?? '', /nats-io\/nats-server#4196/);
  t.notRegex(err?.message ?? '', /fixed in/);
});

test('nats version - 2.9.10 is accepted for replicas=1', (t) => {
  t.notThrows(() => assertServerSupportsReplicas('2.9.10', 1));
});

test('nats version - 2.10.0 and newer are accepted for replicas=3', (t) => {
  for (const version of ['2.10.0', 'v2.15.2', '2.12.0-RC.1', '3.0.0']) {
    t.notThrows(() => assertServerSupportsReplicas(version, 3), version);
  }
});

test('nats version - checkNatsServerFor passes with replicas=3 on the started server', async (t) => {
  const nc = await connectNats(parseNatsUrl(t.context.server.url), 'nats-version-test');
  t.context.connections.push(nc);
  await t.notThrowsAsync(checkNatsServerFor(nc, 3));
  t.is(nc.info?.version, t.context.server.version);
});

test('nats version - checkNatsServerFor waits for the INFO of a connection that is still connecting', async (t) => {
  const conn = connectingConnection();
  const checked = checkNatsServerFor(conn.nc, 3, 10_000);
  t.is(conn.flushes(), 1);
  conn.connect('2.9.10');
  const err = await t.throwsAsync(checked, { instanceOf: InvalidConfigError });
  t.regex(err?.message ?? '', /nats-io\/nats-server#4196/);
});

test('nats version - checkNatsServerFor gives up with a transient TimeoutError when no INFO comes', async (t) => {
  const conn = connectingConnection();
  const err = await t.throwsAsync(checkNatsServerFor(conn.nc, 3, 100), { instanceOf: TimeoutError });
  t.regex(String((err?.cause as Error | undefined)?.message), /no INFO from a NATS server within 100 ms/);
});

test('nats version - checkNatsServerFor with replicas=1 neither waits nor checks', async (t) => {
  const conn = connectingConnection();
  await t.notThrowsAsync(checkNatsServerFor(conn.nc, 1, 60_000));
  t.is(conn.flushes(), 0);
});

test('nats errors - what an election or a replication in flight causes is transient, other API errors are not', (t) => {
  const api = (code: number, err_code: number, description: string) => new JetStreamApiError({ code, err_code, description });
  t.true(isTransientNatsError(api(503, 10008, 'JetStream system temporarily unavailable')));
  t.true(isTransientNatsError(api(500, 10118, 'stream is offline')));
  t.true(isTransientNatsError(api(500, 10005, 'no suitable peers for placement, peer offline')));
  t.true(isTransientNatsError(api(409, 10065, 'duplicate message id is in process')));
  t.false(isTransientNatsError(api(400, 10071, 'wrong last sequence: 4')));
  t.false(isTransientNatsError(api(404, 10059, 'stream not found')));
  t.false(isTransientNatsError(api(500, 10005, 'no suitable peers for placement, insufficient resources')));
});
