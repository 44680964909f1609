/**
 * Where the records set aside by the `dead-letter` policy go: a JSON-lines file per
 * batch time under the checkpoint directory (`<dir>/dead-letters/<time>.jsonl`,
 * written whole, so a batch that runs again replaces it), or, with a `nats://`
 * checkpoint, one message each on `tributary.<app>.dead-letters` (a message id per
 * batch and position, so a stream capturing the subject keeps each once). Without a
 * checkpoint they are only logged.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { writeFileDurably } from '../../journal/durable-fs.ts';
import type { Logger } from '../base/logger.ts';
import type { DeadLetter } from '../graph/graph.ts';
import { isNatsUrl } from '../nats/nats-connection.ts';

/** Where one batch's dead letters were put, for logs and listeners. */
export type DeadLetterWriter = (time: number, letters: readonly DeadLetter[]) => Promise<string>;

/** One dead letter as a JSON line (bigints as strings, Maps as entries, Sets as arrays). */
export function deadLetterLine(letter: DeadLetter): string {
  return JSON.stringify(letter, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (value instanceof Map) return [...value];
    if (value instanceof Set) return [...value];
    return value === undefined ? null : value;
  });
}

/** The subject of an app's dead letters when its checkpoint is in JetStream. */
export function deadLetterSubject(appName: string): string {
  return `tributary.${appName}.dead-letters`;
}

/**
 * The writer for an app with checkpoint `checkpoint` (undefined: none).
 *
 * @example
 * const write = deadLetterWriter('./ckpt', 'wc', nats, logger);
 * await write(1000, [{ operator: 'map#3', time: 1000, record: 'x', error: 'Error: bad' }]);
 */
export function deadLetterWriter(
  checkpoint: string | undefined,
  appName: string,
  nats: () => Promise<NatsConnection>,
  logger: Logger,
): DeadLetterWriter {
  if (checkpoint === undefined) {
    return async (time, letters) => {
      for (const l of letters)
        logger.warn({ operator: l.operator, time, error: l.error }, 'record dead-lettered (no checkpoint: only logged)');
      return 'the log';
    };
  }
  if (isNatsUrl(checkpoint)) {
    const subject = deadLetterSubject(appName);
    return async (time, letters) => {
      const nc = await nats();
      letters.forEach((l, i) => {
        const h = natsHeaders();
        h.set('Nats-Msg-Id', `${appName}-dead-letter-${time}-${i}`);
        h.set('Tributary-Operator', l.operator);
        h.set('Tributary-Batch', String(time));
        nc.publish(subject, deadLetterLine(l), { headers: h });
      });
      await nc.flush();
      return subject;
    };
  }
  return async (time, letters) => {
    const file = path.join(checkpoint, 'dead-letters', `${time}.jsonl`);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileDurably(file, `${letters.map(deadLetterLine).join('\n')}\n`);
    return file;
  };
}
