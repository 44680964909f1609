/**
 * Where NATS sources put a message they cannot decode: its bytes, unchanged, on a
 * dead-letter subject, with why and where from in headers.
 */
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { decodeFailure } from '../../runtime/nats/decoders.ts';

/**
 * Publishes `data` to `subject` with a `Tributary-Error` header (one line: a CR/LF in
 * a header value would throw) and the `origin` headers; returns the reason. Throws
 * only if the publish itself does.
 *
 * @example
 * const reason = publishDeadLetter(nc, 'events.dead-letter', msg.data, error, { 'Tributary-Subject': msg.subject });
 */
export function publishDeadLetter(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  error: unknown,
  origin: Readonly<Record<string, string>>,
): string {
  const reason = decodeFailure(error);
  const h = natsHeaders();
  h.set('Tributary-Error', reason);
  for (const [k, v] of Object.entries(origin)) h.set(k, v);
  nc.publish(subject, data, { headers: h });
  return reason;
}
