/**
 * The data plane's parts on their own: the NATS transport against a real
 * nats-server (chunking past max_payload, order, credit-based flow control with a
 * receiver that is really stopped), the failure codec and the assignment.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { assign, ownerOf } from '../../../actors/assignment.ts';
import { decodeFailure, encodeFailure } from '../../../actors/transport/failure-codec.ts';
import { LocalHub } from '../../../actors/transport/local.ts';
import { CREDIT_WINDOW, NatsTransport } from '../../../actors/transport/nats.ts';
import type { ClusterMessage } from '../../../actors/transport/transport.ts';
import { decodeValue, encodeValue } from '../../../runtime/base/cbor.ts';
import { BatchFailedError, FencedError, OperatorFailure } from '../../../runtime/base/errors.ts';
import { connectTo, startNatsServer } from '../../helpers/nats-server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('nats transport - a message larger than max_payload arrives whole, messages in order', async (t) => {
  const server = await startNatsServer({ maxPayload: 16 * 1024 });
  const ncA = await connectTo(server.url);
  const ncB = await connectTo(server.url);
  try {
    const a = await NatsTransport.open(ncA, 'tt', 'a');
    const b = await NatsTransport.open(ncB, 'tt', 'b');
    const got: ClusterMessage[] = [];
    const all = new Promise<void>((resolve) =>
      b.onMessage((from, m) => {
        t.is(from, 'a');
        got.push(m);
        if (got.length === 3) resolve();
      }),
    );
    const big = Array.from({ length: 20_000 }, (_, i) => [`key-${i}`, i]);
    await a.send('b', { type: 'piece', key: '1|in|1|0', records: ['small'] });
    await a.send('b', { type: 'piece', key: '1|in|1|1', records: big });
    await a.send('b', { type: 'batch.done', time: 1, records: 3 });
    await all;
    t.true(encodeValue(big).length > 10 * 16 * 1024, 'the big message needs many chunks');
    t.true(a.stats.chunksSent > 10);
    t.deepEqual(
      got.map((m) => m.type),
      ['piece', 'piece', 'batch.done'],
    );
    t.deepEqual((got[1] as Extract<ClusterMessage, { type: 'piece' }>).records, big);
    t.true(a.stats.maxOutstanding <= CREDIT_WINDOW);
  } finally {
    await ncA.close();
    await ncB.close();
    await server.stop();
  }
});

test('nats transport - a stopped receiver holds its sender at the credit window; nothing is dropped or reordered', async (t) => {
  t.timeout(60_000);
  const server = await startNatsServer({ maxPayload: 64 * 1024 });
  const child = spawn(process.execPath, ['--import', 'tsx', 'tests/helpers/transport-receiver.ts', server.url], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const lines = (): string[] => out.split('\n').filter((l) => l.startsWith('got '));
  let onOut: (() => void) | undefined;
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
    onOut?.();
  });
  const until = (cond: () => boolean) =>
    new Promise<void>((resolve) => {
      if (cond()) return resolve();
      onOut = () => {
        if (cond()) resolve();
      };
    });
  const nc = await connectTo(server.url);
  try {
    await until(() => out.includes('ready'));
    const sender = await NatsTransport.open(nc, 'tt', 'sender');
    child.kill('SIGSTOP');
    const MESSAGES = 100;
    const SIZE = 100 * 1024; // two chunks each at 64 KB max_payload
    const resolved: boolean[] = [];
    const sends = Array.from({ length: MESSAGES }, (_, i) => {
      const bytes = new Uint8Array(SIZE).fill(i % 251);
      return sender.send('receiver', { type: 'piece', key: `m${i}`, records: [bytes] }).then(() => {
        resolved[i] = true;
      });
    });
    // The first window's worth of chunks goes out without any credit coming back.
    const perMessage = 2;
    const fit = CREDIT_WINDOW / perMessage;
    await Promise.all(sends.slice(0, fit));
    await nc.flush();
    t.is(resolved.filter(Boolean).length, fit, 'no send past the window completes while the receiver is stopped');
    t.is(sender.stats.maxOutstanding, CREDIT_WINDOW);
    child.kill('SIGCONT');
    await Promise.all(sends);
    await until(() => lines().length === MESSAGES);
    const got = lines().map((l) => l.split(' '));
    t.deepEqual(
      got.map((g) => g[1]),
      Array.from({ length: MESSAGES }, (_, i) => `m${i}`),
      'every message, in order',
    );
    t.true(got.every((g, i) => Number(g[2]) === i % 251 && Number(g[3]) === SIZE));
    t.true(sender.stats.maxOutstanding <= CREDIT_WINDOW);
  } finally {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await nc.close();
    await server.stop();
  }
});

test('local transport - messages arrive in order, also when sent before the receiver listens', async (t) => {
  const hub = new LocalHub();
  const a = hub.endpoint('a');
  const b = hub.endpoint('b');
  await a.send('b', { type: 'batch.done', time: 1, records: 1 });
  const got: number[] = [];
  const done = new Promise<void>((resolve) =>
    b.onMessage((_from, m) => {
      if (m.type === 'batch.done') got.push(m.time);
      if (got.length === 2) resolve();
    }),
  );
  await a.send('b', { type: 'batch.done', time: 2, records: 1 });
  await done;
  t.deepEqual(got, [1, 2]);
  hub.close();
  await t.throwsAsync(a.send('b', { type: 'batch.done', time: 3, records: 1 }), { code: 'INVALID_STATE' });
});

test('failure codec - a worker failure crosses the wire as its class, operator, code and cause', (t) => {
  const inner = new OperatorFailure('map#3', new TypeError('x is undefined'));
  const back = decodeFailure(decodeValue(encodeValue(encodeFailure(inner))) as ReturnType<typeof encodeFailure>);
  t.true(back instanceof OperatorFailure);
  t.is((back as OperatorFailure).operator, 'map#3');
  t.is((back.cause as Error).name, 'TypeError');
  t.is((back.cause as Error).message, 'x is undefined');
  const fenced = decodeFailure(encodeFailure(new FencedError('lease lost')));
  t.true(fenced instanceof FencedError);
  t.is((fenced as FencedError).code, 'FENCED');
  const failed = decodeFailure(encodeFailure(new BatchFailedError('reduce#4', 2000, new Error('boom'))));
  t.true(failed instanceof BatchFailedError);
  t.is((failed as BatchFailedError).batchTime, 2000);
  t.is(decodeFailure(encodeFailure('a string')).message, 'a string');
});

test('assignment - deterministic, even, and a joining worker moves few slots', (t) => {
  const three = assign(12, [1, 2], ['w-c', 'w-a', 'w-b'], 1);
  t.deepEqual(assign(12, [1, 2], ['w-b', 'w-c', 'w-a'], 1), three, 'order of workers does not matter');
  const load = (a: typeof three) => {
    const n = new Map<string, number>();
    for (const w of a.slots) n.set(w, (n.get(w) ?? 0) + 1);
    return [...n.values()].sort();
  };
  t.deepEqual(load(three), [4, 4, 4]);
  t.deepEqual(load(assign(7, [], ['a', 'b'], 1)), [3, 4]);
  t.not(three.inputs['1'], three.inputs['2'], 'inputs are spread too');
  const four = assign(12, [1, 2], ['w-a', 'w-b', 'w-c', 'w-d'], 2);
  const moved = three.slots.filter((w, q) => four.slots[q] !== w).length;
  t.true(moved <= 6, `moved ${moved} of 12 slots`);
  t.deepEqual(load(four), [3, 3, 3, 3]);
  t.is(ownerOf(three, 13), three.slots[1] as string);
  t.throws(() => assign(4, [], [], 1), { code: 'INVALID_CONFIG' });
});

test('nats transport - reset fails the sends waiting for credit from a peer that died, and gives every peer a whole window again', async (t) => {
  t.timeout(60_000);
  const server = await startNatsServer();
  const nc = await connectTo(server.url);
  try {
    const sender = await NatsTransport.open(nc, 'tt', 'sender');
    // No endpoint 'gone' listens: nothing it was sent is ever acknowledged, as with a killed worker.
    const settled: ('sent' | 'failed')[] = [];
    const sends = Array.from({ length: CREDIT_WINDOW + 8 }, (_, i) =>
      sender.send('gone', { type: 'piece', key: `m${i}`, records: [i] }).then(
        () => void settled.push('sent'),
        (error: unknown) => {
          settled.push('failed');
          t.regex(String(error), /a new driver run began/);
        },
      ),
    );
    await Promise.all(sends.slice(0, CREDIT_WINDOW));
    await nc.flush();
    t.is(settled.length, CREDIT_WINDOW, 'the window went out; the rest waits for credit that never comes');
    sender.reset(new Error('a new driver run began'));
    await Promise.all(sends);
    t.is(settled.filter((s) => s === 'failed').length, 8, 'every waiting send failed instead of hanging');
    // A whole window again: a peer that comes back (or a new one) is not starved by credit the dead one kept.
    const again = Array.from({ length: CREDIT_WINDOW }, (_, i) => sender.send('gone', { type: 'piece', key: `n${i}`, records: [] }));
    await Promise.all(again);
    t.pass();
  } finally {
    await nc.close();
    await server.stop();
  }
});
