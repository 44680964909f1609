/**
 * State actors: one partition of one stateful operator each. The operator's pure
 * logic does the work; the actor only moves messages to it and keeps the batch's
 * change pending until the driver commits or rolls it back.
 */

import { assertNever } from '../runtime/base/assert.ts';
import type { PartitionState } from '../runtime/graph/graph.ts';
import { type Reply, replyOf, type StateMessage } from './messages.ts';
import { type ActorRef, type ActorSystem, dispatch, spawnActor } from './system.ts';

/**
 * Spawns the actor that owns `state`.
 *
 * @example
 * const ref = spawnState(parent, 'state-5-0', spec.create(0, 2));
 */
export function spawnState(parent: ActorSystem | ActorRef<never>, name: string, state: PartitionState): ActorRef<StateMessage> {
  return spawnActor<PartitionState, StateMessage>(parent, name, state, (s, msg) => {
    switch (msg.type) {
      case 'state.step':
        dispatch(
          msg.replyTo,
          replyOf(() => s.step(msg.input, msg.time, msg.emit, msg.wantExtra)),
        );
        return s;
      case 'state.commit':
        dispatch(
          msg.replyTo,
          replyOf(() => s.commit()),
        );
        return s;
      case 'state.rollback':
        s.rollback();
        return s;
      case 'state.lookup':
        dispatch(
          msg.replyTo as ActorRef<Reply<unknown>>,
          replyOf(() => (s.lookup ? s.lookup(msg.key) : undefined)),
        );
        return s;
      case 'state.snapshot':
        dispatch(
          msg.replyTo as ActorRef<Reply<unknown>>,
          replyOf(() => s.toSnapshot()),
        );
        return s;
      case 'state.capture':
        dispatch(
          msg.replyTo,
          replyOf(() => s.capture(msg.full)),
        );
        return s;
      default:
        return assertNever(msg);
    }
  });
}
