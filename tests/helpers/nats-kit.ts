/**
 * Tools for tests of the NATS sources and the JetStream sink against a real
 * nats-server: waits on listener events and subscriptions (never sleeps), and a
 * reader of every message a stream holds.
 */
import { DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import anyTest, { type TestFn } from 'ava';
import type { StreamingContext } from '../../runtime/api/index.ts';
import { TempDirs } from './checkpoint-kit.ts';
import { connectTo, type NatsServer, startNatsServer } from './nats-server.ts';

/** A count that promises can wait on. */
export class Tally {
  count = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  add(n = 1): void {
    this.count += n;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.count < w.n) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once the count reached `n`. */
  until(n: number): Promise<void> {
    if (this.count >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }
}

/** One `onDeadLetter` event. */
export interface DeadLetterEvent {
  readonly stream: string;
  readonly subject: string;
  readonly error: string;
  readonly total: number;
}

/** Records a context's `onRecordsReceived` and `onDeadLetter` events. */
export class Watch {
  readonly received = new Tally();
  readonly deadLetters = new Tally();
  readonly deadLetterEvents: DeadLetterEvent[] = [];

  constructor(ssc: StreamingContext) {
    ssc.addStreamingListener({
      onRecordsReceived: ({ records }) => this.received.add(records),
      onDeadLetter: (info) => {
        this.deadLetterEvents.push(info);
        this.deadLetters.add();
      },
    });
  }
}

/** One message a test subscription saw. */
export interface Seen {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
}

/** A core NATS subscription of the test that keeps every message and lets tests wait for counts. */
export class Collector {
  readonly messages: Seen[] = [];
  readonly tally = new Tally();
  readonly #sub: Subscription;

  constructor(nc: NatsConnection, subject: string) {
    this.#sub = nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return;
        this.messages.push({ subject: msg.subject, data: msg.data, headers: msg.headers });
        this.tally.add();
      },
    });
  }

  until(n: number): Promise<void> {
    return this.tally.until(n);
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}

/** One stored message of a stream. */
export interface Stored {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgID: string | undefined;
}

/** Every message `stream` holds, in sequence order (an ordered consumer, bounded by last_seq). */
export async function readStream(nc: NatsConnection, stream: string): Promise<Stored[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const out: Stored[] = [];
  if (info.state.messages === 0) return out;
  const last = info.state.last_seq;
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 1000 });
  try {
    for await (const m of messages) {
      out.push({ seq: m.seq, subject: m.subject, data: m.data, msgID: m.headers?.get('Nats-Msg-Id') });
      if (m.seq >= last) break;
    }
  } finally {
    messages.stop();
  }
  return out;
}

/** Creates a stream named `name` on `subjects` (default `<name>.>`) and returns the manager. */
export async function addStream(nc: NatsConnection, name: string, subjects: string[] = [`${name}.>`]): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects });
  return jsm;
}

/** Publishes each payload to `subject` with JetStream and waits for every ack (in order). */
export async function publishAll(nc: NatsConnection, subject: string, payloads: readonly (string | Uint8Array)[]): Promise<number[]> {
  const js = jetstream(nc);
  const seqs: number[] = [];
  for (const p of payloads) seqs.push((await js.publish(subject, typeof p === 'string' ? new TextEncoder().encode(p) : p)).seq);
  return seqs;
}

/** UTF-8 text of message data. */
export const text = (data: Uint8Array): string => new TextDecoder().decode(data);
/** UTF-8 bytes of a string. */
export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** What every NATS test file keeps: one server, a client, temp dirs and what to stop. */
export interface NatsSuite {
  server: NatsServer;
  nc: NatsConnection;
  dirs: TempDirs;
  contexts: StreamingContext[];
  collectors: Collector[];
}

let uniqSeq = 0;
/** A stream, subject or app name no other test of the file uses (no dots, so it fits stream names). */
export const uniq = (what: string): string => `${what}${++uniqSeq}`;

/**
 * The typed ava `test` of a NATS test file: a real nats-server for the file, started
 * before its tests, and everything they registered stopped after them.
 *
 * @example
 * const test = natsSuite();
 * test('x - y', async (t) => { t.context.nc ... });
 */
export function natsSuite(): TestFn<NatsSuite> {
  const test = anyTest as TestFn<NatsSuite>;
  test.before(async (t) => {
    const server = await startNatsServer();
    t.context = { server, nc: await connectTo(server.url), dirs: new TempDirs(), contexts: [], collectors: [] };
  });
  test.after.always(async (t) => {
    const { server, nc, dirs, contexts, collectors } = t.context ?? {};
    for (const ssc of contexts ?? []) await ssc.stop().catch(() => {});
    for (const c of collectors ?? []) c.close();
    await nc?.close();
    await server?.shutdown();
    await dirs?.removeAll();
  });
  return test;
}
