/**
 * The JetStream sink: publishes every record of a batch with a message id made of
 * the app, the output, the batch time and the record's position, so a batch that
 * runs again after a crash adds no duplicates (JetStream drops a repeated id within
 * the target stream's `duplicate_window`, 2 minutes by default: keep it longer than
 * a restart takes). Publishes that time out are retried with the same id.
 */
import { JetStreamApiError, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
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

async function publishOnce(
  nc: NatsConnection,
  js: ReturnType<typeof jetstream>,
  subject: string,
  data: Uint8Array,
  msgID: string,
): Promise<void> {
  let wait = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await js.publish(subject, data, { msgID, timeout: 5000 });
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
  return async (records, time) => {
    const nc = await nats();
    const js = jetstream(nc);
    const prefix = `${appName}-${outputName()}-${time}`;
    for (let i = 0; i < records.length; i += PUBLISH_WINDOW) {
      const window = records.slice(i, i + PUBLISH_WINDOW);
      await Promise.all(window.map((r, j) => publishOnce(nc, js, subject, encode(r as T), `${prefix}-${i + j}`)));
    }
  };
}
