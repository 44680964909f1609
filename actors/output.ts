/**
 * Output actors: run one output operation (print, foreachBatch, saveAsTextFiles)
 * per batch, awaiting whatever it returns, so a slow sink holds its batch (and the
 * scheduler queues the next ones) instead of dropping anything.
 */
import type { OutputOp } from '../runtime/graph/graph.ts';
import type { OutputMessage } from './messages.ts';
import { type ActorRef, type ActorSystem, dispatch, spawnActor } from './system.ts';

/**
 * Spawns the actor of one output operation.
 *
 * @example
 * const ref = spawnOutput(parent, 'output-7', op);
 */
export function spawnOutput(parent: ActorSystem | ActorRef<never>, name: string, op: OutputOp): ActorRef<OutputMessage> {
  return spawnActor<null, OutputMessage>(parent, name, null, async (state, msg) => {
    try {
      await op.run(msg.records, msg.time);
      dispatch(msg.replyTo, { ok: true, value: null });
    } catch (error) {
      dispatch(msg.replyTo, { ok: false, error });
    }
    return state;
  });
}
