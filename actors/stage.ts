/**
 * Stage actors: stateless per-partition work. A task names a node of the compiled
 * plan, so a task message stays plain data (the same app module on another process
 * holds the same plan).
 */

import type { GraphNode } from '../runtime/graph.ts';
import { assertNever } from '../runtime/graph.ts';
import { runChain } from '../runtime/operators/narrow.ts';
import { blamingSink, type Plan } from '../runtime/plan.ts';
import { type Reply, replyOf, type StageMessage } from './messages.ts';
import { type ActorRef, type ActorSystem, dispatch, spawnActor } from './system.ts';

/**
 * Runs one stage task and returns its result; exported for tests of the pure part.
 *
 * @example
 * runStageTask(plan, { type: 'stage.collect', nodeId: 3, time: 1000, input, replyTo })
 */
export function runStageTask(plan: Plan, msg: StageMessage): unknown {
  const node = plan.byId.get(msg.nodeId) as GraphNode;
  switch (msg.type) {
    case 'stage.collect': {
      const out: unknown[] = [];
      runChain(plan.chainOf(node).ops, msg.input, msg.time, (r) => out.push(r));
      return out;
    }
    case 'stage.map': {
      if (node.kind !== 'shuffle') throw new Error(`node ${node.name} is not a shuffle`);
      const parent = node.parents[msg.parentIndex] as GraphNode;
      const side = node.shuffle.mapSide(msg.parentIndex, msg.partition, node.partitions);
      runChain(plan.feedOf(parent).ops, msg.input, msg.time, blamingSink(side.sink, node.name));
      return side.finish();
    }
    case 'stage.reduce': {
      if (node.kind !== 'shuffle') throw new Error(`node ${node.name} is not a shuffle`);
      return node.shuffle.reduceSide(msg.itemsPerParent, msg.time);
    }
    case 'stage.whole': {
      if (node.kind !== 'whole') throw new Error(`node ${node.name} is not a whole-batch operator`);
      return node.whole(msg.batches, msg.time);
    }
    default:
      return assertNever(msg);
  }
}

/**
 * Spawns a stage actor that runs tasks of `plan`.
 *
 * @example
 * const stage = spawnStage(parent, 'stage-0', plan);
 */
export function spawnStage(parent: ActorSystem | ActorRef<never>, name: string, plan: Plan): ActorRef<StageMessage> {
  return spawnActor<null, StageMessage>(parent, name, null, (state, msg) => {
    const reply = replyOf(() => runStageTask(plan, msg));
    dispatch(msg.replyTo as ActorRef<Reply<unknown>>, reply);
    return state;
  });
}
