/**
 * The journal on NATS JetStream: one stream per app (`TRIBUTARY_<app>`, subjects
 * `tributary.<app>.journal.*`). Every append is fenced with `expect.lastSequence`,
 * so a zombie driver's next append fails with FENCED once a newer driver wrote;
 * appends that time out (a leader election, a restarting server) are retried with
 * the same msgID, so a failover neither loses nor duplicates an event. Segments are
 * marked by a header on their first message; retention purges before the oldest
 * kept segment, with every purge guarded (seq <= 1 or > last_seq + 1 would empty
 * or corrupt the stream).
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
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { delayMs } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import { decodeValue, encodeFrame, encodeValue, scanFrames } from './codec.ts';
import { CorruptCheckpointError, FencedError } from './errors.ts';
import { invalidEvent, type JournalEvent } from './events.ts';
import type { Journal, JournalContents } from './journal.ts';

const SEGMENT_HEADER = 'Tributary-Segment';
const WRONG_LAST_SEQUENCE = 10071;
/** Attempts of one append across a failover (about 30 s with the backoff below). */
const APPEND_ATTEMPTS_MAX = 40;
const PUBLISH_TIMEOUT_MS = 5000;
/** Reads of the journal at open: a read that delivers nothing for this long is retried. */
const READ_STALL_MS = 5000;
const OPEN_ATTEMPTS_MAX = 5;

/** A journal read that must be done again (stalled, or not whole after a failover). */
class JournalReadRetry extends Error {}

/** Stream and subject names of an app's journal. */
export function journalNames(appName: string): { stream: string; prefix: string } {
  return { stream: `TRIBUTARY_${appName}`, prefix: `tributary.${appName}.journal` };
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
  readonly #stream: string;
  readonly #prefix: string;
  readonly #replicas: number;
  readonly #logger: Logger;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #lastSeq = 0;
  #epoch = 0;
  /** Unique per open(): two writers that read the same epoch must not share message ids. */
  #writerId = '';
  #published = 0;
  #segmentStarts: number[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #abandoned = false;

  constructor(nc: NatsConnection, appName: string, replicas: number, logger: Logger) {
    const names = journalNames(appName);
    this.#nc = nc;
    this.#stream = names.stream;
    this.#prefix = names.prefix;
    this.#replicas = replicas;
    this.#logger = logger;
  }

  async open(): Promise<JournalContents> {
    const jsm = await jetstreamManager(this.#nc, { timeout: PUBLISH_TIMEOUT_MS });
    this.#jsm = jsm;
    this.#js = jetstream(this.#nc, { timeout: PUBLISH_TIMEOUT_MS });
    await this.#ensureStream(jsm);
    // Right after a failover a read can stall: read again (bounded) rather than hang.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#readAll(jsm);
      } catch (error) {
        if (!(error instanceof JournalReadRetry)) throw error;
        if (attempt >= OPEN_ATTEMPTS_MAX) {
          throw new CorruptCheckpointError(`journal stream ${this.#stream} cannot be read whole: ${error.message}`, { cause: error });
        }
        this.#logger.warn({ stream: this.#stream, attempt, reason: error.message }, 'journal read incomplete; reading again');
        this.#segmentStarts = [];
        await delayMs(1000 * attempt);
      }
    }
  }

  async #readAll(jsm: JetStreamManager): Promise<JournalContents> {
    const info = await jsm.streams.info(this.#stream);
    const last = info.state.last_seq;
    const events: JournalEvent[] = [];
    let epoch = 0;
    if (info.state.messages > 0) {
      const consumer = await (this.#js as JetStreamClient).consumers.get(this.#stream, { deliver_policy: DeliverPolicy.All });
      const messages = await consumer.consume({ max_messages: 1000 });
      let lastSeen = 0;
      const watchdog = setInterval(() => {
        if (lastSeen === seenAtTick) messages.stop();
        seenAtTick = lastSeen;
      }, READ_STALL_MS);
      let seenAtTick = -1;
      try {
        for await (const m of messages) {
          lastSeen = m.seq;
          const event = this.#decode(m.data, m.seq);
          events.push(event);
          if (event.type === 'context.started') epoch = Math.max(epoch, event.epoch);
          if (m.headers?.get(SEGMENT_HEADER) === 'start') this.#segmentStarts.push(m.seq);
          if (m.seq >= last) break;
        }
      } finally {
        clearInterval(watchdog);
        messages.stop();
      }
      if (lastSeen < last) throw new JournalReadRetry(`read stalled at sequence ${lastSeen} of ${last}`);
    }
    this.#lastSeq = last;
    this.#epoch = epoch + 1;
    // Without it, a second writer's msgIDs repeat the first's and the server acks them as duplicates, unstored.
    this.#writerId = randomBytes(6).toString('hex');
    return { epoch: this.#epoch, events, complete: info.state.first_seq <= 1 };
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

  #decode(data: Uint8Array, seq: number): JournalEvent {
    const where = `journal stream ${this.#stream} message ${seq}`;
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

  append(event: JournalEvent): Promise<void> {
    return this.#serial(async () => {
      await this.#publish(event, false);
    });
  }

  /** Acks are the commit point here: an acked append is stored (fsynced by R3 quorum on a cluster). */
  sync(): Promise<void> {
    return this.#serial(async () => {});
  }

  roll(head: readonly JournalEvent[], keepSegments: number): Promise<void> {
    if (!Number.isInteger(keepSegments) || keepSegments < 1) throw new RangeError('keepSegments must be a whole number >= 1');
    return this.#serial(async () => {
      let first = true;
      for (const event of head) {
        const seq = await this.#publish(event, first);
        if (first) this.#segmentStarts.push(seq);
        first = false;
      }
      if (this.#segmentStarts.length <= keepSegments) return;
      const cut = this.#segmentStarts[this.#segmentStarts.length - keepSegments] as number;
      this.#segmentStarts = this.#segmentStarts.slice(-keepSegments);
      // Purge keeps messages >= seq; seq <= 1 or beyond last_seq + 1 would empty the stream.
      // Guard with the server's last_seq, read now: after a failover it can be behind
      // what this writer saw acked, and a purge beyond last_seq + 1 empties the stream.
      const jsm = this.#jsm as JetStreamManager;
      const info = await jsm.streams.info(this.#stream);
      if (cut > 1 && cut <= info.state.last_seq && cut <= this.#lastSeq + 1 && cut >= info.state.first_seq) {
        await jsm.streams.purge(this.#stream, { seq: cut });
      }
    });
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

  async #publish(event: JournalEvent, segmentStart: boolean): Promise<number> {
    if (this.#abandoned) throw new Error('the journal was abandoned');
    const reason = invalidEvent(event);
    if (reason) throw new Error(`refusing to journal an invalid event: ${reason}`);
    const js = this.#js as JetStreamClient;
    const data = encodeFrame(encodeValue(event));
    const msgID = `${this.#stream}-${this.#epoch}-${this.#writerId}-${++this.#published}`;
    const subject = `${this.#prefix}.${event.type.replace('.', '_')}`;
    const h = natsHeaders();
    if (segmentStart) h.set(SEGMENT_HEADER, 'start');
    let wait = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await js.publish(subject, data, {
          msgID,
          headers: h,
          timeout: PUBLISH_TIMEOUT_MS,
          expect: { lastSequence: this.#lastSeq },
        });
        this.#lastSeq = ack.seq;
        return ack.seq;
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE) {
          // A retry whose earlier attempt was stored finds its own message next.
          if (attempt > 1 && (await this.#storedAs(this.#lastSeq + 1, msgID))) {
            this.#lastSeq += 1;
            return this.#lastSeq;
          }
          throw new FencedError(`another driver wrote to journal stream ${this.#stream}: this one must stop`, { cause: error });
        }
        if (error instanceof JetStreamApiError || this.#abandoned || attempt >= APPEND_ATTEMPTS_MAX) throw error;
        this.#logger.warn({ err: error, attempt, msgID }, 'journal append failed; retrying with the same message id');
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
