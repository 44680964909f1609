/**
 * The journal on NATS JetStream, built around a head pointer as event logs with
 * truncation are built on NATS: events go to one stream per app
 * (`TRIBUTARY_<app>`, subjects `tributary.<app>.journal.*`); a KV entry (the head,
 * see jetstream-head.ts) says which sequence a reader replays from and holds the
 * newest configuration and the retained checkpoints. The head changes only by
 * compare-and-set on its revision, which also fences a zombie driver.
 *
 * - open(): takes the head (epoch + 1, compare-and-set), fences the stream with a
 *   marker message published with `expect.lastSequence` (no older writer can append
 *   after it), then reads from the head's sequence up to the marker, checking every
 *   sequence arrives, against the leader's stream info, and retrying a short read.
 * - append(): publish with `expect.lastSequence` (a zombie's append fails with
 *   FENCED) and the same msgID across retries (a failover neither loses nor
 *   duplicates an event). Nothing is journaled twice.
 * - roll(): moves the head (compare-and-set) to the oldest fact still needed, then
 *   deletes older messages as garbage collection: a purge that fails, or that a
 *   replica replays wrongly, cannot remove anything the head points at.
 *
 * A stream without a head is a journal of the previous format (segments whose
 * first message repeats the facts a reader needs): it is read whole once and
 * continues under a head.
 */

import { randomBytes } from 'node:crypto';
import {
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { delayMs } from '../runtime/base/clock.ts';
import { CorruptCheckpointError, FencedError, TributaryError } from '../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../runtime/base/logger.ts';
import { isTransientNatsError } from '../runtime/nats/nats-connection.ts';
import { encodeFrame, scanFrames } from './codec.ts';
import { invalidEvent, type JournalEvent } from './events.ts';
import { decodeHead, encodeHead, factKey, type JournalHead } from './jetstream-head.ts';
import type { Journal, JournalContents } from './journal.ts';

/** Header of the marker a new writer appends to fence older ones (its value is the epoch). */
export const FENCE_HEADER = 'Tributary-Fence';
const WRONG_LAST_SEQUENCE = 10071;
/** The key of the head in the app's head bucket. */
export const HEAD_KEY = 'head';
const REQUEST_TIMEOUT_MS = 5000;
/**
 * One attempt of an append: a publish in flight to a leader that was just killed
 * only ends at this timeout, so it bounds most of a failover's stall (the retry,
 * with the same msgID, reaches the new leader). Measured here: 5 s left appends
 * stalled ~4.7 s after a journal leader's SIGKILL.
 */
const APPEND_TIMEOUT_MS = 2000;
/** How long an append (or a head update) is retried across an outage before the driver gives up. */
const WRITE_DEADLINE_MS = 5 * 60_000;
/** A journal read that delivers nothing for this long is abandoned and done again. */
const READ_STALL_MS = 5000;
const READ_ATTEMPTS_MAX = 6;
const FENCE_ATTEMPTS_MAX = 20;

type Started = Extract<JournalEvent, { type: 'context.started' }>;
type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/**
 * True for failures a retry can cure: what an outage or an election causes (timeouts,
 * no responders, 503, a disconnected client). API errors with another status (a
 * wrong sequence, a missing stream) and programmer errors are final.
 */
function retryable(error: unknown): boolean {
  if (isTransientNatsError(error)) return true;
  if (error instanceof JetStreamApiError || error instanceof TributaryError) return false;
  if (error instanceof TypeError || error instanceof RangeError) return false;
  return error instanceof Error;
}

/** A journal read that must be done again (stalled, short, or with a gap). */
class JournalReadRetry extends Error {}

/** Stream, subject and head names of an app's journal. */
export function journalNames(appName: string): { stream: string; prefix: string; headBucket: string } {
  return { stream: `TRIBUTARY_${appName}`, prefix: `tributary.${appName}.journal`, headBucket: `TRIBUTARY_${appName}_HEAD` };
}

/** One message of the journal stream, decoded (fence markers are left out). */
interface ReadEvent {
  readonly seq: number;
  readonly event: JournalEvent;
}

/**
 * Decodes one journal stream message; CORRUPT_CHECKPOINT naming the stream and sequence when it is not an event.
 *
 * @example
 * const event = decodeJournalMessage(m.data, 'TRIBUTARY_wc', m.seq);
 */
export function decodeJournalMessage(data: Uint8Array, stream: string, seq: number): JournalEvent {
  const where = `journal stream ${stream} message ${seq}`;
  const scan = scanFrames(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  if (scan.stop || scan.payloads.length !== 1) throw new CorruptCheckpointError(`${where} is not one whole frame`);
  let event: unknown;
  try {
    event = decodeValue(scan.payloads[0] as Buffer);
  } catch (error) {
    throw new CorruptCheckpointError(`${where} does not decode`, { cause: error });
  }
  const reason = invalidEvent(event);
  if (reason) throw new CorruptCheckpointError(`${where}: ${reason}`);
  return event as JournalEvent;
}

/** The events a head stands for, in the order a fold needs them (stream events follow). */
export function headEvents(head: JournalHead): JournalEvent[] {
  return [...(head.started ? [head.started] : []), ...head.checkpoints];
}

/**
 * Opens (creating if needed) the head bucket of an app.
 *
 * @example
 * const kv = await openHeadBucket(nc, 'wc', 3);
 */
export async function openHeadBucket(nc: NatsConnection, appName: string, replicas: number): Promise<KV> {
  const { headBucket } = journalNames(appName);
  const js = jetstream(nc, { timeout: REQUEST_TIMEOUT_MS });
  const kvm = new Kvm(js);
  // allow_direct off: every read of the head goes to the stream leader, which has seen every acked update.
  const options = { replicas, history: 5, allow_direct: false, storage: StorageType.File };
  try {
    await (await jetstreamManager(nc, { timeout: REQUEST_TIMEOUT_MS, checkAPI: false })).streams.info(`KV_${headBucket}`);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.status === 404) return kvm.create(headBucket, options);
    throw error;
  }
  // An existing bucket is only bound: re-adding its stream asks for placement, which fails while a replica is offline.
  return kvm.open(headBucket, options);
}

/**
 * An app's journal in JetStream.
 *
 * @example
 * const journal = new JetStreamJournal(nc, 'wc', 3, logger);
 * const { events } = await journal.open();
 */
export class JetStreamJournal implements Journal {
  readonly #nc: NatsConnection;
  readonly #appName: string;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #replicas: number;
  readonly #logger: Logger;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #kv: KV | undefined;
  #head: JournalHead | undefined;
  #headRevision = 0;
  #lastSeq = 0;
  #writerId = '';
  #published = 0;
  /** Stream sequence of every fact read or appended at or after the replay start. */
  #factSeqs = new Map<string, number>();
  #queue: Promise<unknown> = Promise.resolve();
  #abandoned = false;

  constructor(nc: NatsConnection, appName: string, replicas: number, logger: Logger) {
    const names = journalNames(appName);
    this.#nc = nc;
    this.#appName = appName;
    this.#stream = names.stream;
    this.#prefix = names.prefix;
    this.#replicas = replicas;
    this.#logger = logger;
  }

  /** The head as this writer last wrote it (tests and inspection). */
  get head(): JournalHead | undefined {
    return this.#head;
  }

  async open(): Promise<JournalContents> {
    // No account check here: it is one more request that fails while a server comes back; #writing retries the real ones.
    const jsm = await jetstreamManager(this.#nc, { timeout: REQUEST_TIMEOUT_MS, checkAPI: false });
    this.#jsm = jsm;
    this.#js = jetstream(this.#nc, { timeout: REQUEST_TIMEOUT_MS });
    await this.#writing('create the journal stream', () => this.#ensureStream(jsm));
    this.#kv = await this.#writing('open the head bucket', () => openHeadBucket(this.#nc, this.#appName, this.#replicas));
    // Without a unique writer id, a second writer's msgIDs would repeat the first's and be acked as duplicates, unstored.
    this.#writerId = randomBytes(6).toString('hex');
    const { previous, legacy } = await this.#takeHead();
    const fenceSeq = await this.#fence();
    const head = this.#head as JournalHead;
    if (head.replayFromSeq > fenceSeq) {
      // The head points past the stream's end: the stream lost acked messages (recreated, or a stale copy leads).
      throw new CorruptCheckpointError(
        `journal stream ${this.#stream} ends at ${fenceSeq - 1} but its head replays from ${head.replayFromSeq}: the stream lost messages the head needs`,
      );
    }
    for (let attempt = 1; ; attempt++) {
      try {
        const read = await this.#readRange(head.replayFromSeq, fenceSeq - 1);
        this.#factSeqs = new Map();
        for (const r of read) {
          const key = factKey(r.event);
          if (key !== undefined) this.#factSeqs.set(key, r.seq);
        }
        const events = [...(previous ? headEvents(previous) : []), ...read.map((r) => r.event)];
        if (legacy)
          this.#logger.info({ stream: this.#stream, events: events.length }, 'journal of the previous format: continuing it under a head');
        return { epoch: head.epoch, events, complete: !head.truncated };
      } catch (error) {
        if (!(error instanceof JournalReadRetry)) throw error;
        if (attempt >= READ_ATTEMPTS_MAX) {
          throw new CorruptCheckpointError(`journal stream ${this.#stream} cannot be read whole: ${error.message}`, { cause: error });
        }
        this.#logger.warn({ stream: this.#stream, attempt, reason: error.message }, 'journal read incomplete; reading again');
        await delayMs(500 * attempt);
      }
    }
  }

  /**
   * Takes the head: epoch + 1 by compare-and-set. A stream without a head is the
   * previous format (read whole) or a new app. Returns the head found before.
   */
  async #takeHead(): Promise<{ previous: JournalHead | undefined; legacy: boolean }> {
    const kv = this.#kv as KV;
    const where = `KV ${journalNames(this.#appName).headBucket}/${HEAD_KEY}`;
    const entry = await this.#writing('read the journal head', () => kv.get(HEAD_KEY));
    if (entry !== null && entry.operation === 'PUT') {
      const previous = decodeHead(entry.value, where);
      const head: JournalHead = { ...previous, epoch: previous.epoch + 1, writer: this.#writerId };
      this.#headRevision = await this.#casHead(head, entry.revision, 'open');
      this.#head = head;
      return { previous, legacy: false };
    }
    const info = await this.#writing('read the journal stream info', () => (this.#jsm as JetStreamManager).streams.info(this.#stream));
    const legacy = info.state.messages > 0;
    const epoch = legacy ? (await this.#legacyEpoch(info.state.first_seq, info.state.last_seq)) + 1 : 1;
    const head: JournalHead = {
      v: 1,
      epoch,
      writer: this.#writerId,
      replayFromSeq: legacy ? info.state.first_seq : info.state.last_seq + 1,
      rolls: [],
      truncated: legacy && info.state.first_seq > 1,
      started: null,
      checkpoints: [],
    };
    try {
      this.#headRevision = await this.#writing('create the journal head', () => kv.create(HEAD_KEY, encodeHead(head)));
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE) {
        throw new FencedError(`another driver opened journal ${this.#stream} at the same moment: this one must stop`, { cause: error });
      }
      throw error;
    }
    this.#head = head;
    return { previous: undefined, legacy };
  }

  /** The largest epoch a previous-format journal's `context.started` events carry. */
  async #legacyEpoch(first: number, last: number): Promise<number> {
    let epoch = 0;
    for (const r of await this.#readRange(first, last)) if (r.event.type === 'context.started') epoch = Math.max(epoch, r.event.epoch);
    return epoch;
  }

  /**
   * Appends a marker with `expect.lastSequence` = the stream's last: once stored, no
   * older writer can append (its expected sequence is stale). Returns its sequence.
   */
  async #fence(): Promise<number> {
    const jsm = this.#jsm as JetStreamManager;
    for (let attempt = 1; ; attempt++) {
      const info = await this.#writing('read the journal stream info', () => jsm.streams.info(this.#stream));
      this.#lastSeq = info.state.last_seq;
      const h = natsHeaders();
      h.set(FENCE_HEADER, String((this.#head as JournalHead).epoch));
      try {
        return await this.#publishRaw(`${this.#prefix}.fence`, new Uint8Array(0), h);
      } catch (error) {
        // An older writer appended between our stream info and our marker: read again and retry.
        if (error instanceof FencedError && attempt < FENCE_ATTEMPTS_MAX) continue;
        throw error;
      }
    }
  }

  /**
   * Reads stream messages `from..to` (inclusive) with an ordered consumer and checks
   * them against the leader's view: the stream must still hold `from`, and every
   * sequence up to `to` must arrive, in order, with no gap.
   */
  async #readRange(from: number, to: number): Promise<ReadEvent[]> {
    if (to < from) return [];
    const jsm = this.#jsm as JetStreamManager;
    const info = await this.#writing('read the journal stream info', () => jsm.streams.info(this.#stream));
    if (info.state.first_seq > from) {
      throw new JournalReadRetry(`the journal needs sequence ${from} but the leader's stream begins at ${info.state.first_seq}`);
    }
    if (info.state.last_seq < to) throw new JournalReadRetry(`the leader's stream ends at ${info.state.last_seq}, before ${to}`);
    const out: ReadEvent[] = [];
    const consumer = await this.#writing('create a journal reader', () =>
      (this.#js as JetStreamClient).consumers.get(this.#stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from }),
    );
    const messages = await consumer.consume({ max_messages: 1000 });
    let expected = from;
    let seenAtTick = -1;
    const watchdog = setInterval(() => {
      if (expected === seenAtTick) messages.stop();
      seenAtTick = expected;
    }, READ_STALL_MS);
    try {
      for await (const m of messages) {
        if (m.seq !== expected) throw new JournalReadRetry(`expected sequence ${expected}, got ${m.seq} (a gap in the replica read)`);
        expected++;
        if (!m.headers?.has(FENCE_HEADER)) out.push({ seq: m.seq, event: decodeJournalMessage(m.data, this.#stream, m.seq) });
        if (m.seq >= to) break;
      }
    } finally {
      clearInterval(watchdog);
      messages.stop();
    }
    if (expected <= to) throw new JournalReadRetry(`read stalled at sequence ${expected - 1} of ${to}`);
    return out;
  }

  async #ensureStream(jsm: JetStreamManager): Promise<void> {
    try {
      const info = await jsm.streams.info(this.#stream);
      if (info.config.num_replicas !== this.#replicas) {
        this.#logger.warn(
          { stream: this.#stream, has: info.config.num_replicas, asked: this.#replicas },
          'journal stream replicas differ from the configured ones',
        );
      }
    } catch (error) {
      if (!(error instanceof JetStreamApiError) || error.status !== 404) throw error;
      await jsm.streams.add({
        name: this.#stream,
        subjects: [`${this.#prefix}.*`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: this.#replicas,
        allow_direct: false,
      });
    }
  }

  append(event: JournalEvent): Promise<void> {
    return this.#serial(async () => {
      await this.#publish(event);
    });
  }

  /** Acks are the commit point here: an acked append is stored (on a quorum of replicas on a cluster). */
  sync(): Promise<void> {
    return this.#serial(async () => {});
  }

  /**
   * Moves the head: `head`'s configuration and checkpoints go into the KV entry; its
   * other facts are already in the stream, and the oldest of them becomes this roll's
   * replay start. The head's replay start is the oldest of the last `keepSegments`
   * rolls; messages before it are deleted afterwards.
   */
  roll(head: readonly JournalEvent[], keepSegments: number): Promise<void> {
    if (!Number.isInteger(keepSegments) || keepSegments < 1) throw new RangeError('keepSegments must be a whole number >= 1');
    return this.#serial(async () => {
      const current = this.#head;
      if (current === undefined) throw new Error('the journal is not open');
      let started: Started | null = current.started;
      const checkpoints: Checkpoint[] = [];
      let from = this.#lastSeq + 1;
      for (const event of head) {
        if (event.type === 'context.started') started = event;
        else if (event.type === 'checkpoint.completed') checkpoints.push(event);
        else {
          const key = factKey(event);
          let seq = key === undefined ? undefined : this.#factSeqs.get(key);
          if (seq === undefined) {
            // The assignment is repeated after every roll (it must never pin the replay start);
            // any other fact this journal never saw stored is not expected: journal it now rather than lose it.
            if (event.type !== 'assignment.changed') {
              this.#logger.warn({ type: event.type }, 'journal head names a fact not in the stream; journaling it again');
            }
            seq = await this.#publish(event);
          }
          from = Math.min(from, seq);
        }
      }
      const rolls = [...current.rolls, from].slice(-keepSegments);
      const replayFromSeq = Math.min(...rolls);
      const next: JournalHead = {
        ...current,
        replayFromSeq,
        rolls,
        truncated: current.truncated || replayFromSeq > 1,
        started,
        checkpoints,
      };
      this.#headRevision = await this.#casHead(next, this.#headRevision, 'roll');
      this.#head = next;
      for (const [key, seq] of this.#factSeqs) if (seq < replayFromSeq) this.#factSeqs.delete(key);
      await this.#collectGarbage(replayFromSeq);
    });
  }

  /**
   * Deletes the stream's messages before `keepFrom`, which the head no longer needs.
   * Guarded: purge keeps messages >= seq, and seq <= 1 or beyond last_seq + 1 would
   * empty the stream; at least the newest message always stays. A failure is only
   * logged: the next roll collects again, and nothing the head points at is touched.
   */
  async #collectGarbage(keepFrom: number): Promise<void> {
    const jsm = this.#jsm as JetStreamManager;
    try {
      const info = await jsm.streams.info(this.#stream);
      if (keepFrom > 1 && keepFrom > info.state.first_seq && keepFrom <= info.state.last_seq) {
        await jsm.streams.purge(this.#stream, { seq: keepFrom });
      }
    } catch (error) {
      this.#logger.warn(
        { reason: reasonOf(error), stream: this.#stream, keepFrom },
        'journal garbage collection failed; the next roll tries again',
      );
    }
  }

  /** Writes the head if its revision is still `revision`; FENCED when another driver moved it. */
  async #casHead(head: JournalHead, revision: number, why: string): Promise<number> {
    const kv = this.#kv as KV;
    const bytes = encodeHead(head);
    let retried = false;
    try {
      return await this.#writing(`update the journal head (${why})`, async () => {
        try {
          return await kv.update(HEAD_KEY, bytes, revision);
        } catch (error) {
          retried = true;
          throw error;
        }
      });
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE) {
        // A retried update whose first attempt was stored finds its own head there.
        if (retried) {
          const entry = await kv.get(HEAD_KEY).catch(() => null);
          if (entry !== null && entry.revision === revision + 1 && Buffer.from(entry.value).equals(Buffer.from(bytes)))
            return entry.revision;
        }
        throw new FencedError(`another driver took over journal ${this.#stream} (its head moved): this one must stop`, { cause: error });
      }
      throw error;
    }
  }

  async sizeBytes(): Promise<number> {
    const info = await (this.#jsm as JetStreamManager).streams.info(this.#stream);
    return info.state.bytes;
  }

  /** Waits for queued appends, then drains and closes the connection (the journal owns it). */
  async close(): Promise<void> {
    await this.#queue.catch(() => {});
    if (!this.#nc.isClosed()) await this.#nc.drain().catch(() => {});
  }

  abandon(): void {
    this.#abandoned = true;
    void this.#nc.close().catch(() => {});
  }

  async #publish(event: JournalEvent): Promise<number> {
    const reason = invalidEvent(event);
    if (reason) throw new Error(`refusing to journal an invalid event: ${reason}`);
    const seq = await this.#publishRaw(`${this.#prefix}.${event.type.replace('.', '_')}`, encodeFrame(encodeValue(event)), undefined);
    const key = factKey(event);
    if (key !== undefined) this.#factSeqs.set(key, seq);
    return seq;
  }

  /** Publishes with `expect.lastSequence` and one msgID across retries; FENCED when another writer appended. */
  async #publishRaw(subject: string, data: Uint8Array, headers: ReturnType<typeof natsHeaders> | undefined): Promise<number> {
    if (this.#abandoned) throw new Error('the journal was abandoned');
    const js = this.#js as JetStreamClient;
    const head = this.#head as JournalHead;
    const msgID = `${this.#stream}-${head.epoch}-${this.#writerId}-${++this.#published}`;
    let retried = false;
    try {
      return await this.#writing(`append to ${this.#stream}`, async () => {
        try {
          const ack = await js.publish(subject, data, {
            msgID,
            ...(headers ? { headers } : {}),
            timeout: APPEND_TIMEOUT_MS,
            expect: { lastSequence: this.#lastSeq },
          });
          this.#lastSeq = ack.seq;
          return ack.seq;
        } catch (error) {
          retried = true;
          throw error;
        }
      });
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE) {
        // A retry whose earlier attempt was stored finds its own message next.
        if (retried && (await this.#storedAs(this.#lastSeq + 1, msgID))) {
          this.#lastSeq += 1;
          return this.#lastSeq;
        }
        throw new FencedError(`another driver wrote to journal stream ${this.#stream}: this one must stop`, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Runs `op` again while it fails with what an outage or a leader election causes,
   * for up to WRITE_DEADLINE_MS; any other error, or an abandoned journal, ends it.
   */
  async #writing<T>(what: string, op: () => Promise<T>): Promise<T> {
    const deadline = performance.now() + WRITE_DEADLINE_MS;
    let wait = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        if (this.#abandoned || !retryable(error) || this.#nc.isClosed() || performance.now() > deadline) throw error;
        if (attempt === 1 || attempt % 10 === 0)
          this.#logger.warn({ reason: reasonOf(error), attempt, what }, 'journal operation failed; retrying with the same message id');
        await delayMs(wait);
        wait = Math.min(wait * 2, 1000);
      }
    }
  }

  async #storedAs(seq: number, msgID: string): Promise<boolean> {
    try {
      const m = await (this.#jsm as JetStreamManager).streams.getMessage(this.#stream, { seq });
      return m?.header?.get('Nats-Msg-Id') === msgID;
    } catch {
      return false;
    }
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
