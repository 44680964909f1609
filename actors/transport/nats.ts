/**
 * The data plane over core NATS. Endpoint `e` of app `a` receives on
 * `tributary.<a>.data.<e>` and gets credit on `tributary.<a>.credit.<e>`. A message
 * is CBOR-encoded and cut into chunks below the server's max_payload; each chunk
 * carries its sender, message number and index in headers. Chunks of one sender
 * arrive in order (NATS keeps a publisher's order per subscriber), so reassembly
 * needs no buffer beyond the message being built. Flow control: see credits.ts.
 * Every endpoint answers on `tributary.<a>.presence.<e>`, so the driver sees a
 * worker whose connection closed at once (the servers answer "no responders").
 */
import {
  type Msg,
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  RequestError,
  type Subscription,
} from '@nats-io/transport-node';
import { decodeValue, encodeValue } from '../../runtime/base/cbor.ts';
import { InvalidStateError } from '../../runtime/base/errors.ts';
import type { Logger } from '../../runtime/base/logger.ts';
import { SendCredits } from './credits.ts';
import type { ClusterMessage, MessageHandler, Transport } from './transport.ts';

/** Chunks a sender may have unacknowledged per receiver. */
export const CREDIT_WINDOW = 32;
/** Room left in a chunk for headers and protocol. */
const HEADER_ROOM = 4096;
/** Largest chunk even when the server allows more (smaller chunks interleave fairly). */
const CHUNK_BYTES_MAX = 512 * 1024;

/** Subject on which endpoint `endpoint` of `app` receives data. */
export function dataSubject(app: string, endpoint: string): string {
  return `tributary.${app}.data.${endpoint}`;
}

function creditSubject(app: string, endpoint: string): string {
  return `tributary.${app}.credit.${endpoint}`;
}

/** What asking an endpoint's presence subject found. */
export type PresenceAnswer = 'present' | 'absent' | 'unknown';

function presenceSubject(app: string, endpoint: string): string {
  return `tributary.${app}.presence.${endpoint}`;
}

interface Outbound {
  readonly credits: SendCredits;
  /** Bumped by reset(): messages queued before it are not sent. */
  generation: number;
  /** Messages to this receiver go out one after another: their chunks never interleave. */
  queue: Promise<void>;
}

interface Assembly {
  readonly seq: number;
  readonly parts: Uint8Array[];
  readonly count: number;
}

/** Byte and message counters of one transport (for benchmarks and logs). */
export interface TransportStats {
  /** Bytes of the encoded messages sent (headers not counted). */
  bytesSent: number;
  /** Bytes of the encoded messages received. */
  bytesReceived: number;
  /** Whole messages sent (a large one goes as several chunks). */
  messagesSent: number;
  /** Whole messages received. */
  messagesReceived: number;
  /** Chunks sent: NATS messages below the server's `max_payload`. */
  chunksSent: number;
  /** The most chunks ever unacknowledged towards one receiver. */
  maxOutstanding: number;
}

/**
 * A NATS endpoint.
 *
 * @example
 * const t = await NatsTransport.open(nc, 'wc', 'w-1a2b');
 * t.onMessage((from, m) => ...);
 */
export class NatsTransport implements Transport {
  readonly self: string;
  readonly local = false;
  readonly stats: TransportStats = {
    bytesSent: 0,
    bytesReceived: 0,
    messagesSent: 0,
    messagesReceived: 0,
    chunksSent: 0,
    maxOutstanding: 0,
  };
  readonly #nc: NatsConnection;
  readonly #app: string;
  readonly #logger: Logger | undefined;
  readonly #window: number;
  readonly #outbound = new Map<string, Outbound>();
  readonly #assembling = new Map<string, Assembly>();
  /** Chunks handled per sender and not yet granted back. */
  readonly #toGrant = new Map<string, number>();
  #grantScheduled = false;
  #handler: MessageHandler | undefined;
  #early: { from: string; message: ClusterMessage }[] = [];
  #subs: Subscription[] = [];
  #seq = 0;
  #closed = false;
  #resetReason = '';

  private constructor(nc: NatsConnection, app: string, self: string, window: number, logger: Logger | undefined) {
    this.#nc = nc;
    this.#app = app;
    this.self = self;
    this.#window = window;
    this.#logger = logger;
  }

  /** Subscribes endpoint `self` of `app` and resolves once the server has the subscriptions. */
  static async open(
    nc: NatsConnection,
    app: string,
    self: string,
    options: { readonly window?: number; readonly logger?: Logger } = {},
  ): Promise<NatsTransport> {
    const t = new NatsTransport(nc, app, self, options.window ?? CREDIT_WINDOW, options.logger);
    t.#subs.push(nc.subscribe(dataSubject(app, self), { callback: (err, msg) => (err ? t.#broken(err) : t.#onChunk(msg)) }));
    t.#subs.push(nc.subscribe(creditSubject(app, self), { callback: (err, msg) => (err ? t.#broken(err) : t.#onCredit(msg)) }));
    t.#subs.push(nc.subscribe(presenceSubject(app, self), { callback: (err, msg) => void (err || msg.respond()) }));
    await nc.flush();
    return t;
  }

  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
    const early = this.#early;
    this.#early = [];
    for (const { from, message } of early) handler(from, message);
  }

  send(to: string, message: ClusterMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new InvalidStateError(`the NATS transport of ${this.self} is closed`));
    const out = this.#out(to);
    const bytes = encodeValue(message);
    const seq = ++this.#seq;
    const generation = out.generation;
    const sent = out.queue.then(() => {
      if (out.generation !== generation) throw new InvalidStateError(`a send to ${to} was dropped: ${this.#resetReason}`);
      return this.#publish(to, out, seq, bytes);
    });
    out.queue = sent.catch(() => undefined);
    return sent;
  }

  /**
   * Whether endpoint `to` is subscribed on the servers: `absent` when they know no
   * subscriber (its connection closed), `unknown` without an answer in `timeoutMs`
   * (a paused process, a server restarting).
   */
  async presence(to: string, timeoutMs: number): Promise<PresenceAnswer> {
    try {
      await this.#nc.request(presenceSubject(this.#app, to), undefined, { timeout: timeoutMs });
      return 'present';
    } catch (error) {
      const noResponders = error instanceof NoRespondersError || (error instanceof RequestError && error.isNoResponders());
      return noResponders ? 'absent' : 'unknown';
    }
  }

  reset(reason: Error): void {
    this.#resetReason = reason.message;
    for (const out of this.#outbound.values()) {
      out.generation++;
      out.credits.reset(reason);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
  }

  #out(to: string): Outbound {
    let out = this.#outbound.get(to);
    if (out === undefined) {
      out = { credits: new SendCredits(this.#window), generation: 0, queue: Promise.resolve() };
      this.#outbound.set(to, out);
    }
    return out;
  }

  async #publish(to: string, out: Outbound, seq: number, bytes: Uint8Array): Promise<void> {
    const max = Math.max(1024, Math.min(CHUNK_BYTES_MAX, (this.#nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM));
    const count = Math.max(1, Math.ceil(bytes.length / max));
    for (let i = 0; i < count; i++) {
      await out.credits.acquire();
      if (this.#closed) throw new InvalidStateError(`the NATS transport of ${this.self} is closed`);
      const h = natsHeaders();
      h.set('T-From', this.self);
      h.set('T-Msg', `${seq}/${i}/${count}`);
      const chunk = bytes.subarray(i * max, Math.min(bytes.length, (i + 1) * max));
      this.#nc.publish(dataSubject(this.#app, to), chunk, { headers: h });
      this.stats.chunksSent++;
      this.stats.maxOutstanding = Math.max(this.stats.maxOutstanding, out.credits.maxOutstanding);
    }
    this.stats.bytesSent += bytes.length;
    this.stats.messagesSent++;
  }

  #onChunk(msg: Msg): void {
    const from = msg.headers?.get('T-From');
    const [seqText, indexText, countText] = (msg.headers?.get('T-Msg') ?? '').split('/');
    if (!from || seqText === undefined || indexText === undefined || countText === undefined) {
      this.#logger?.warn({ subject: msg.subject }, 'a data-plane message without sender headers was ignored');
      return;
    }
    const seq = Number(seqText);
    const index = Number(indexText);
    const count = Number(countText);
    let a = this.#assembling.get(from);
    if (index === 0) {
      a = { seq, parts: [], count };
      this.#assembling.set(from, a);
    }
    this.#owe(from);
    if (a === undefined || a.seq !== seq || a.parts.length !== index) {
      this.#logger?.error({ from, seq, index }, 'a data-plane message arrived out of order and was dropped');
      this.#assembling.delete(from);
      return;
    }
    a.parts.push(msg.data);
    if (a.parts.length < a.count) return;
    this.#assembling.delete(from);
    const bytes = a.count === 1 ? (a.parts[0] as Uint8Array) : concatBytes(a.parts);
    this.stats.bytesReceived += bytes.length;
    this.stats.messagesReceived++;
    let message: ClusterMessage;
    try {
      message = decodeValue(bytes) as ClusterMessage;
    } catch (error) {
      this.#logger?.error({ err: error, from }, 'an undecodable data-plane message was dropped');
      return;
    }
    if (this.#handler) this.#handler(from, message);
    else this.#early.push({ from, message });
  }

  /** Counts a handled chunk of `from`; credit goes back in batches, at the latest on the next turn. */
  #owe(from: string): void {
    const n = (this.#toGrant.get(from) ?? 0) + 1;
    this.#toGrant.set(from, n);
    if (n >= this.#window / 2) {
      this.#grant(from, n);
      return;
    }
    if (this.#grantScheduled) return;
    this.#grantScheduled = true;
    setImmediate(() => {
      this.#grantScheduled = false;
      for (const [to, owed] of this.#toGrant) if (owed > 0) this.#grant(to, owed);
    });
  }

  #grant(to: string, n: number): void {
    this.#toGrant.set(to, 0);
    if (this.#closed || this.#nc.isClosed()) return;
    this.#nc.publish(creditSubject(this.#app, to), encodeValue({ from: this.self, n }));
  }

  #onCredit(msg: Msg): void {
    const { from, n } = decodeValue(msg.data) as { from: string; n: number };
    this.#outbound.get(from)?.credits.grant(n);
  }

  #broken(error: Error): void {
    this.#logger?.error({ err: error }, 'a data-plane subscription failed');
  }
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
