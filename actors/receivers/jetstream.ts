/**
 * `jetstreamStream`: a direct source over a JetStream stream. A batch's allocation
 * is a sequence range; nothing is copied (the stream already keeps the data), and a
 * replay reads the same range again. Undecodable messages go to the dead-letter
 * subject and never stop the app.
 */

import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { assert } from '../../runtime/base/assert.ts';
import { InvalidConfigError } from '../../runtime/base/errors.ts';
import type { InputSource, OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { Allocation } from '../../runtime/graph/wire.ts';
import { type Decoder, decoderOf } from '../../runtime/nats/decoders.ts';
import { publishDeadLetter } from './dead-letter.ts';

/** Options of jetstreamStream. */
export interface JetStreamStreamOptions<T> {
  /** The stream to read. */
  readonly stream: string;
  /** Only messages of this subject (wildcards allowed); default: all of the stream. */
  readonly subject?: string;
  /** `first` (default), `new` (only what arrives after the first start) or a sequence number. */
  readonly startAt?: 'first' | 'new' | number;
  /** Most messages per batch (default 100,000): the rest wait for the next batches. */
  readonly maxPerBatch?: number;
  /** How message data becomes a record (default utf8). */
  readonly decoder?: Decoder<T>;
  /** Where undecodable messages go (default `tributary.<stream>.dead-letter`). */
  readonly deadLetterSubject?: string;
}

const READ_BATCH_MESSAGES = 1000;

/**
 * The source of jetstreamStream.
 *
 * @example
 * jetstreamSource({ stream: 'EVENTS', subject: 'events.clicks', decoder: 'json' })
 */
export function jetstreamSource<T>(options: JetStreamStreamOptions<T>): InputSource<T> {
  const { stream } = options;
  if (typeof stream !== 'string' || !/^[^\s.*>]+$/.test(stream))
    throw new InvalidConfigError(`jetstreamStream needs a stream name, got ${JSON.stringify(stream)}`);
  const maxPerBatch = options.maxPerBatch ?? 100_000;
  if (!Number.isSafeInteger(maxPerBatch) || maxPerBatch < 1)
    throw new InvalidConfigError(`jetstreamStream maxPerBatch must be a positive whole number, got ${maxPerBatch}`);
  const startAt = options.startAt ?? 'first';
  if (startAt !== 'first' && startAt !== 'new' && !(Number.isSafeInteger(startAt) && startAt >= 1)) {
    throw new InvalidConfigError(`jetstreamStream startAt must be 'first', 'new' or a sequence >= 1, got ${String(startAt)}`);
  }
  const decode = decoderOf(options.decoder ?? ('utf8' as Decoder<T>));
  const deadLetter = options.deadLetterSubject ?? `tributary.${stream}.dead-letter`;
  return {
    kind: 'jetstream',
    params: { stream, subject: options.subject ?? '>' },
    async open(env: SourceEnv): Promise<OpenInput<T>> {
      const nc = await env.nats();
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const info = await jsm.streams.info(stream);
      const recovered = env.recovery?.position;
      let resumeAt: number | undefined = typeof recovered === 'number' ? recovered : undefined;
      for (const a of env.recovery?.allocations ?? []) if (a.type === 'jetstream') resumeAt = Math.max(resumeAt ?? a.to, a.to);
      // startAt applies to the first start only: with journaled ranges and no checkpoint yet, `new` would skip the downtime.
      let next: number;
      if (resumeAt !== undefined) next = resumeAt;
      else if (startAt === 'first') next = Math.max(1, info.state.first_seq);
      else if (startAt === 'new') next = info.state.last_seq + 1;
      else next = startAt;
      return {
        position: () => next,
        async allocate(time: number): Promise<Allocation> {
          // last_seq from stream info, never from consumer counts (stale after a failover).
          const last = (await jsm.streams.info(stream)).state.last_seq;
          const from = next;
          // Backpressure: at most what the rate allows in one batch (at least one message, so the estimator keeps measuring).
          const perSecond = env.rate.perSecond();
          const allowed =
            perSecond === undefined
              ? maxPerBatch
              : Math.min(maxPerBatch, Math.max(1, Math.floor((perSecond * env.batchDurationMs) / 1000)));
          const to = Math.max(from, Math.min(last + 1, from + allowed));
          env.rate.allocated(time, to - from);
          next = to;
          return { type: 'jetstream', stream, from, to };
        },
        async read(allocation: Allocation): Promise<T[]> {
          assert(allocation.type === 'jetstream', `jetstreamStream cannot read a ${allocation.type} allocation`);
          const { from, to } = allocation;
          const out: T[] = [];
          if (from >= to) return out;
          const consumer = await js.consumers.get(stream, {
            deliver_policy: DeliverPolicy.StartSequence,
            opt_start_seq: from,
            ...(options.subject ? { filter_subjects: options.subject } : {}),
          });
          let messages: Awaited<ReturnType<typeof consumer.consume>> | undefined;
          try {
            const pending = (await consumer.info()).num_pending;
            if (pending === 0) return out;
            messages = await consumer.consume({ max_messages: READ_BATCH_MESSAGES });
            for await (const m of messages) {
              if (m.seq >= to) break;
              try {
                // Dead letters stored back into the stream read (its subjects cover them) are skipped: reading them would loop.
                if (m.subject !== deadLetter) out.push(decode(m.data));
              } catch (e) {
                const reason = publishDeadLetter(nc, deadLetter, m.data, e, { 'Tributary-Stream-Seq': String(m.seq) });
                env.deadLetter({ subject: deadLetter, error: reason });
              }
              // pending counts what matches after this message: none left means the range is read.
              if (m.seq >= to - 1 || m.info.pending === 0) break;
            }
          } finally {
            messages?.stop();
            // Else each batch's consumer stays on the server for its 5-minute inactive threshold (and counts against max_consumers).
            await consumer.delete().catch(() => {});
          }
          return out;
        },
        async close() {},
      };
    },
  };
}
