/**
 * The app two drivers fight over in the fencing tests: the same graph in the test
 * process and in the child process, so that only the writer lock can refuse one.
 */

import { StreamingContext } from '../../runtime/api/streaming-context.ts';
import type { Clock } from '../../runtime/base/clock.ts';
import type { Logger } from '../../runtime/base/logger.ts';

/** A small stateful app on `dir` (empty queue batches; a running count of them). */
export function fencingApp(dir: string, clock: Clock, logger: Logger): StreamingContext {
  const ssc = new StreamingContext({ appName: 'fencing', batchDuration: 100, partitions: 1, clock, logger });
  ssc.checkpoint(dir);
  ssc
    .queueStream<string>([], { defaultBatch: ['tick'] })
    .map((w) => [w, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .foreachBatch(() => {});
  return ssc;
}
