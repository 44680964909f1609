/**
 * The JetStream sink: publishes every record of a batch with a message id made of
 * the app, the output, the batch time and the record's position, and the same in
 * headers. A batch that runs again within the target stream's `duplicate_window`
 * adds no duplicates (JetStream drops a repeated id); beyond it, a process's first
 * batch first reads what its output already published on the subject (the last
 * message names its batch; the messages of that batch are found with a binary
 * search by sequence) and skips those records. Batches publish one after another,
 * so every earlier batch was published whole. Publishes that time out are retried
 * with the same id.
 */
import { JetStreamApiError, jetstream, jetstreamManager, type MsgRequest, type StoredMsg } from '@nats-io/jetstream';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { delayMs } from '../base/clock.ts';
import { type Encoder, encoderOf } from '../nats/decoders.ts';
import { isTransientNatsError } from '../nats/nats-connection.ts';

/** Options of toJetStream. */
export interface ToJetStreamOptions<T> {
  /** How a record becomes message data (default json). */
  readonly encode?: Encoder<T>;
}

/** Publishes in flight at once (acks are awaited per window). */
const PUBLISH_WINDOW = 256;
const PUBLISH_ATTEMPTS_MAX = 30;

/** Headers naming a message's output, batch time and position in the batch. */
const OUTPUT_HEADER = 'Tributary-Output';
const BATCH_HEADER = 'Tributary-Batch';
const INDEX_HEADER = 'Tributary-Index';

/** What an output had published on its subject when this process started. */
interface Published {
  /** The newest batch with a message on the subject: every earlier batch was published whole. */
  readonly time: number;
  /** Positions of that batch's records on the subject. */
  readonly indices: ReadonlySet<number>;
}

function batchOf(m: StoredMsg, output: string): number | undefined {
  if (m.header?.get(OUTPUT_HEADER) !== output) return undefined;
  const time = Number(m.header.get(BATCH_HEADER));
  return Number.isFinite(time) ? time : undefined;
}

/**
 * Reads what `output` published on `subject`: undefined when nothing, or when the
 * subject's last message is another writer's (then only message ids deduplicate).
 */
async function learnPublished(nc: NatsConnection, subject: string, output: string): Promise<Published | undefined> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const stream = await jsm.streams.find(subject);
  const get = (query: Record<string, unknown>) => jsm.streams.getMessage(stream, query as unknown as MsgRequest);
  const last = await get({ last_by_subj: subject });
  const time = last ? batchOf(last, output) : undefined;
  if (last === null || time === undefined) return undefined;
  // The first sequence whose next message on the subject belongs to batch `time` or later
  // (the subject's batches only go up): a binary search by sequence.
  let lo = 1;
  let hi = last.seq;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const m = await get({ seq: mid, next_by_subj: subject });
    const t = m ? batchOf(m, output) : undefined;
    if (m !== null && t !== undefined && t < time) lo = m.seq + 1;
    else hi = mid;
  }
  const indices = new Set<number>();
  for (let seq = lo; seq <= last.seq; ) {
    const m = await get({ seq, next_by_subj: subject });
    if (m === null) break;
    if (batchOf(m, output) === time) indices.add(Number(m.header.get(INDEX_HEADER)));
    seq = m.seq + 1;
  }
  return { time, indices };
}

async function publishOnce(
  nc: NatsConnection,
  js: ReturnType<typeof jetstream>,
  subject: string,
  data: Uint8Array,
  msgID: string,
  headers: ReturnType<typeof natsHeaders>,
): Promise<void> {
  let wait = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await js.publish(subject, data, { msgID, timeout: 5000, headers });
      return;
    } catch (error) {
      // API errors (limits, bad subject) are not transient unless an election or a replication in flight caused them;
      // nor is a closed connection (the app stopped or crashed: no retrying for ~30 s).
      const final = error instanceof JetStreamApiError && !isTransientNatsError(error);
      if (final || nc.isClosed() || attempt >= PUBLISH_ATTEMPTS_MAX) throw error;
      await delayMs(wait);
      wait = Math.min(wait * 2, 1000);
    }
  }
}

/**
 * The run function of a toJetStream output.
 *
 * @example
 * const run = jetStreamSink(() => nats(), 'results', 'wc', () => 'toJetStream#9', {});
 */
export function jetStreamSink<T>(
  nats: () => Promise<NatsConnection>,
  subject: string,
  appName: string,
  outputName: () => string,
  options: ToJetStreamOptions<T>,
): (records: unknown[], time: number) => Promise<void> {
  const encode = encoderOf(options.encode ?? ('json' as Encoder<T>));
  let published: Promise<Published | undefined> | undefined;
  return async (records, time) => {
    const nc = await nats();
    const js = jetstream(nc);
    const output = `${appName}-${outputName()}`;
    const learning = (published ??= learnPublished(nc, subject, output));
    // Not cached when it failed (the stream unreachable for a moment): the batch fails and runs again.
    const before = await learning.catch((error: unknown) => {
      if (published === learning) published = undefined;
      throw error;
    });
    if (before !== undefined && time < before.time) return;
    const done = before !== undefined && time === before.time ? before.indices : undefined;
    const prefix = `${output}-${time}`;
    for (let i = 0; i < records.length; i += PUBLISH_WINDOW) {
      const window = records.slice(i, i + PUBLISH_WINDOW);
      await Promise.all(
        window.map((r, j) => {
          const index = i + j;
          if (done?.has(index)) return undefined;
          const h = natsHeaders();
          h.set(OUTPUT_HEADER, output);
          h.set(BATCH_HEADER, String(time));
          h.set(INDEX_HEADER, String(index));
          return publishOnce(nc, js, subject, encode(r as T), `${prefix}-${index}`, h);
        }),
      );
    }
  };
}
