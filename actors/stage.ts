/**
 * Stage actors: stateless per-partition work. A task names a node of the compiled
 * plan, so a task message stays plain data (the same app module on another process
 * holds the same plan).
 */

import { assert, assertNever } from '../runtime/base/assert.ts';
import { OperatorFailure } from '../runtime/base/errors.ts';
import type { GraphNode } from '../runtime/graph/graph.ts';
import { runChain } from '../runtime/graph/operators/narrow.ts';
import { blamingSink, type Plan } from '../runtime/graph/plan.ts';
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
      const chain = plan.chainOf(node);
      const out: unknown[] = [];
      try {
        runChain(chain.ops, msg.input, msg.time, (r) => out.push(r));
      } catch (error) {
        blame(error, () => runChain(chain.blamingOps, msg.input, msg.time, () => {}), node.name);
      }
      return out;
    }
    case 'stage.map': {
      assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
      const parent = node.parents[msg.parentIndex] as GraphNode;
      const chain = plan.feedOf(parent);
      const side = node.shuffle.mapSide(msg.parentIndex, msg.partition, node.partitions);
      try {
        runChain(chain.ops, msg.input, msg.time, side.sink);
      } catch (error) {
        blame(
          error,
          () => {
            const again = node.shuffle.mapSide(msg.parentIndex, msg.partition, node.partitions);
            runChain(chain.blamingOps, msg.input, msg.time, blamingSink(again.sink, node.name));
          },
          node.name,
        );
      }
      return side.finish();
    }
    case 'stage.reduce': {
      assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
      return node.shuffle.reduceSide(msg.itemsPerParent, msg.time);
    }
    case 'stage.whole': {
      assert(node.kind === 'whole', `node ${node.name} is not a whole-batch operator`);
      return node.whole(msg.batches, msg.time);
    }
    default:
      return assertNever(msg);
  }
}

/**
 * Finds which operator of a failed partition threw by running it again with every
 * operator tagging its errors; throws that tagged error. If the re-run does not
 * fail (a non-deterministic function), the first error is blamed on `fallback`.
 */
function blame(first: unknown, rerun: () => void, fallback: string): never {
  try {
    rerun();
  } catch (tagged) {
    throw tagged instanceof OperatorFailure ? tagged : OperatorFailure.of(fallback, tagged);
  }
  throw OperatorFailure.of(fallback, first);
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
