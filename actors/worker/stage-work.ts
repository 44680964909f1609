/**
 * The stateless work of a batch-partition, as pure functions of the compiled plan:
 * a fused narrow chain, a shuffle's map side and reduce side, a whole-batch
 * operator. A failing partition is run again with every operator blaming itself,
 * so the error names the operator that threw.
 */
import { assert } from '../../runtime/base/assert.ts';
import { OperatorFailure } from '../../runtime/base/errors.ts';
import type { DeadLetter, GraphNode, Sink } from '../../runtime/graph/graph.ts';
import { runChain } from '../../runtime/graph/operators/narrow.ts';
import { blamingSink, type Chain, type Plan } from '../../runtime/graph/plan.ts';

/**
 * Runs the fused chain that produces `node` over one partition of its source.
 *
 * @example
 * const out = collectPartition(plan, node, input, 1000);
 */
export function collectPartition(
  plan: Plan,
  node: GraphNode,
  input: readonly unknown[],
  time: number,
  deadLetters: DeadLetter[] = [],
): unknown[] {
  const chain = plan.chainOf(node);
  const out: unknown[] = [];
  try {
    runChain(chain.ops, input as unknown[], time, (r) => out.push(r));
  } catch (error) {
    if (deadLettering(plan, chain)) {
      const again: unknown[] = [];
      runGuarded(plan, chain, input, time, (r) => again.push(r), node.name, deadLetters);
      return again;
    }
    blame(error, () => runChain(chain.blamingOps, input as unknown[], time, () => {}), node.name);
  }
  return out;
}

/**
 * The map side of shuffle `node` over partition `partition` of parent `parentIndex`:
 * its items for each output partition.
 *
 * @example
 * const buckets = mapPartition(plan, node, 0, 1, input, 1000); // buckets[q] goes to partition q
 */
export function mapPartition(
  plan: Plan,
  node: GraphNode,
  parentIndex: number,
  partition: number,
  input: readonly unknown[],
  time: number,
  deadLetters: DeadLetter[] = [],
): unknown[][] {
  assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
  const parent = node.parents[parentIndex] as GraphNode;
  const chain = plan.feedOf(parent);
  const side = node.shuffle.mapSide(parentIndex, partition, node.partitions);
  try {
    runChain(chain.ops, input as unknown[], time, side.sink);
  } catch (error) {
    if (deadLettering(plan, chain, node)) {
      const again = node.shuffle.mapSide(parentIndex, partition, node.partitions);
      runGuarded(plan, chain, input, time, blamingSink(again.sink, node.name), node.name, deadLetters);
      return again.finish();
    }
    blame(
      error,
      () => {
        const again = node.shuffle.mapSide(parentIndex, partition, node.partitions);
        runChain(chain.blamingOps, input as unknown[], time, blamingSink(again.sink, node.name));
      },
      node.name,
    );
  }
  return side.finish();
}

/**
 * The map side of shuffle `node` over several partitions of parent `parentIndex` at
 * once, into one combiner: its items for each output partition, each key once. A
 * process that owns every partition so skips a combiner per partition, the split of
 * each and their merge on the reduce side. Undefined when the shuffle may not
 * (ShuffleSpec.combinesAcrossPartitions) or a record failed: the caller then maps
 * partition by partition, which blames the operator that threw or sets the record aside.
 *
 * @example
 * const buckets = mapPartitionsTogether(plan, node, 0, [part0, part1], 1000);
 */
export function mapPartitionsTogether(
  plan: Plan,
  node: GraphNode,
  parentIndex: number,
  inputs: readonly (readonly unknown[])[],
  time: number,
): unknown[][] | undefined {
  assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
  if (node.shuffle.combinesAcrossPartitions !== true) return undefined;
  const chain = plan.feedOf(node.parents[parentIndex] as GraphNode);
  const side = node.shuffle.mapSide(parentIndex, 0, node.partitions);
  try {
    for (const input of inputs) runChain(chain.ops, input as unknown[], time, side.sink);
  } catch {
    return undefined;
  }
  return side.finish();
}

/**
 * The reduce side of shuffle `node` for one output partition; `oneCombiner[i]` when
 * parent i's items all came from one map side.
 *
 * @example
 * const out = reducePartition(node, [itemsOfParent0], 1000);
 */
export function reducePartition(node: GraphNode, itemsPerParent: unknown[][], time: number, oneCombiner?: readonly boolean[]): unknown[] {
  assert(node.kind === 'shuffle', `node ${node.name} is not a shuffle`);
  try {
    return node.shuffle.reduceSide(itemsPerParent, time, oneCombiner);
  } catch (error) {
    throw OperatorFailure.of(node.name, error);
  }
}

/**
 * A whole-batch operator (transform, union of differently partitioned streams...).
 *
 * @example
 * const out = wholeBatch(node, [recordsOfParent0, recordsOfParent1], 1000);
 */
export function wholeBatch(node: GraphNode, batches: unknown[][], time: number): unknown[] {
  assert(node.kind === 'whole', `node ${node.name} is not a whole-batch operator`);
  try {
    return node.whole(batches, time);
  } catch (error) {
    throw OperatorFailure.of(node.name, error);
  }
}

/**
 * What a dead letter says of an error: its class and message.
 *
 * @example
 * describeError(new RangeError('negative')) // 'RangeError: negative'
 */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * True when a failed chain (and the shuffle it feeds, if any) may set records aside:
 * one of its operators dead-letters, and none sees whole partitions (one record at
 * a time would change what those compute).
 */
function deadLettering(plan: Plan, chain: Chain, consumer?: GraphNode): boolean {
  if (chain.ops.some((op) => op.type === 'partition')) return false;
  return [...chain.nodes, ...(consumer ? [consumer] : [])].some((n) => plan.recordErrors(n.name) === 'dead-letter');
}

/**
 * Runs a failed partition again record by record, every operator blaming itself: a
 * record an operator with the `dead-letter` policy throws on goes to `deadLetters`
 * (what it already passed on stays, as in every replay), any other failure is thrown.
 */
function runGuarded(
  plan: Plan,
  chain: Chain,
  input: readonly unknown[],
  time: number,
  sink: Sink<unknown>,
  fallback: string,
  deadLetters: DeadLetter[],
): void {
  for (const record of input) {
    try {
      runChain(chain.blamingOps, [record], time, sink);
    } catch (error) {
      const failure = OperatorFailure.of(fallback, error);
      if (failure.records.length === 0 || plan.recordErrors(failure.operator) !== 'dead-letter') throw failure;
      deadLetters.push({ operator: failure.operator, time, record: failure.records[0], error: describeError(failure.cause) });
    }
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
