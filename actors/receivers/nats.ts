/**
 * `natsStream(subject)`: records from core NATS. Core NATS keeps nothing, so what
 * the receiver accepts goes through the write-ahead log (the journal, in JetStream
 * when checkpoints are) before a batch may use it. A message that does not decode
 * goes to the dead-letter subject and never stops the app.
 */

import type { Subscription } from '@nats-io/transport-node';
import { InvalidConfigError } from '../../runtime/base/errors.ts';
import type { InputSource } from '../../runtime/graph/input-source.ts';
import { type Decoder, decodeFailure, decoderOf } from '../../runtime/nats/decoders.ts';
import { publishDeadLetter } from './dead-letter.ts';
import { Receiver, receiverSource } from './receiver.ts';

/** Options of natsStream. */
export interface NatsStreamOptions<T> {
  /** How message data becomes a record (default utf8). */
  readonly decoder?: Decoder<T>;
  /** Where undecodable messages go (default `<subject>.dead-letter`, wildcards replaced). */
  readonly deadLetterSubject?: string;
  /** Queue group, to share the subject with other subscribers. */
  readonly queue?: string;
}

/** Where a subject's undecodable messages go by default. */
export function deadLetterSubjectOf(subject: string): string {
  // Token-wise: a leading wildcard (`*.x`) must not leave a leading dot, which no one can subscribe to.
  return [...subject.split('.').filter((token) => token !== '*' && token !== '>'), 'dead-letter'].join('.');
}

class NatsReceiver<T> extends Receiver<T> {
  readonly #subject: string;
  readonly #options: NatsStreamOptions<T>;
  readonly #decode: (data: Uint8Array) => T;
  #sub: Subscription | undefined;

  constructor(subject: string, options: NatsStreamOptions<T>) {
    super();
    this.#subject = subject;
    this.#options = options;
    this.#decode = decoderOf(options.decoder ?? ('utf8' as Decoder<T>));
  }

  async onStart(): Promise<void> {
    const env = this.env;
    const nc = await env.nats();
    const deadLetter = this.#options.deadLetterSubject ?? deadLetterSubjectOf(this.#subject);
    this.#sub = nc.subscribe(this.#subject, {
      ...(this.#options.queue ? { queue: this.#options.queue } : {}),
      callback: (error, msg) => {
        if (error) {
          this.reportError(`subscription to ${this.#subject} failed`, error);
          return;
        }
        // Our own dead letters match a wildcard subscription (`a.>` -> `a.dead-letter`): taking them back would loop forever.
        if (msg.subject === deadLetter) return;
        let record: T;
        try {
          record = this.#decode(msg.data);
        } catch (e) {
          // Nothing thrown from here: an exception in a callback stops the connection's reader.
          const reason = decodeFailure(e);
          try {
            publishDeadLetter(nc, deadLetter, msg.data, e, { 'Tributary-Subject': msg.subject });
          } catch (publishError) {
            this.reportError(`could not publish a dead letter to ${deadLetter}`, publishError);
          }
          env.deadLetter({ subject: deadLetter, error: reason });
          return;
        }
        this.store(record);
      },
    });
    // The subscription is registered with the server before the app goes on.
    await nc.flush();
  }

  onStop(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }
}

/**
 * The source of natsStream.
 *
 * @example
 * natsSource('events.>', { decoder: 'json' })
 */
export function natsSource<T>(subject: string, options: NatsStreamOptions<T>): InputSource<T> {
  if (typeof subject !== 'string' || subject.length === 0 || /\s/.test(subject)) {
    throw new InvalidConfigError(`natsStream needs a subject without spaces, got ${JSON.stringify(subject)}`);
  }
  decoderOf(options.decoder ?? 'utf8');
  return receiverSource(new NatsReceiver<T>(subject, options), 'nats', { subject });
}
