/**
 * Compiles the operator graph into what the driver runs: which nodes an output
 * needs (the others never run, as in Spark, where output operations drive the
 * computation), which narrow operators fuse into their consumer's pass, and, for
 * every node, the chain of fused operators between it and the nearest
 * materialized ancestor.
 */
import { OperatorFailure } from '../base/errors.ts';
import type { GraphNode, NarrowOp, OutputOp, RecordErrorPolicy, Sink } from './graph.ts';

/** A materialized source node and the fused narrow operators applied on top of it. */
export interface Chain {
  readonly source: GraphNode;
  /** The fused nodes, in the order their operators run. */
  readonly nodes: readonly GraphNode[];
  /** Their operators, fused without any per-record overhead. */
  readonly ops: readonly NarrowOp[];
  /**
   * The same operators, each reporting its own node as the origin of an error it
   * raises. Only a failed partition runs these (again: user functions are
   * deterministic), so blaming costs nothing while nothing fails.
   */
  readonly blamingOps: readonly NarrowOp[];
}

/** The compiled graph. */
export interface Plan {
  /** Nodes the driver computes, in topological order (fused narrow nodes left out). */
  readonly order: readonly GraphNode[];
  /** Every input: each is read every batch, whether or not an output needs it. */
  readonly inputs: readonly GraphNode[];
  /** The stateful nodes an output needs. */
  readonly stateful: readonly GraphNode[];
  /**
   * What a replayed batch whose outputs already ran computes, in `order`'s order:
   * the stateful nodes and what feeds them. When some operator sets records aside
   * as dead letters (which a replay writes again), every node of `order`.
   */
  readonly stateOrder: readonly GraphNode[];
  /** Whether `node`'s records feed a node of `stateOrder` (else such a replay need not build them). */
  feedsState(node: GraphNode): boolean;
  readonly outputs: readonly OutputOp[];
  readonly byId: ReadonlyMap<number, GraphNode>;
  /** The chain that produces `node`'s records from a materialized node. */
  chainOf(node: GraphNode): Chain;
  /** What a consumer of `node` runs: `node`'s chain when it is fused, else `node` itself. */
  feedOf(node: GraphNode): Chain;
  /** The record-error policy of the operator named `operator`. */
  recordErrors(operator: string): RecordErrorPolicy;
}

/**
 * Builds the plan. Node ids grow in creation order and a node's parents exist
 * before it, so id order is a topological order.
 *
 * @example
 * const plan = compilePlan(graph.nodes, graph.outputs);
 */
export function compilePlan(
  nodes: readonly GraphNode[],
  outputs: readonly OutputOp[],
  defaults: { readonly onRecordError?: RecordErrorPolicy | undefined } = {},
): Plan {
  const sorted = [...nodes].sort((a, b) => a.id - b.id);
  const byName = new Map(sorted.map((n) => [n.name, n]));
  const needed = withAncestors(outputs.map((o) => o.stream));
  const live = sorted.filter((n) => needed.has(n.id) || n.kind === 'input');
  const consumers = new Map<number, { nodes: GraphNode[]; outputs: number }>();
  for (const n of live) consumers.set(n.id, { nodes: [], outputs: 0 });
  for (const n of live) for (const p of n.parents) consumers.get(p.id)?.nodes.push(n);
  for (const o of outputs) {
    const c = consumers.get(o.stream.id);
    if (c) c.outputs++;
  }
  const fused = new Set<number>();
  for (const n of live) {
    if (n.kind !== 'narrow') continue;
    const c = consumers.get(n.id);
    const only = c?.nodes[0];
    if (c && c.outputs === 0 && c.nodes.length === 1 && only && (only.kind === 'narrow' || only.kind === 'shuffle')) {
      fused.add(n.id);
    }
  }
  const chains = new Map<number, Chain>();
  const chainOf = (node: GraphNode): Chain => {
    const known = chains.get(node.id);
    if (known) return known;
    let chain: Chain;
    if (node.kind === 'narrow') {
      const parent = node.parents[0] as GraphNode;
      const up = fused.has(parent.id) ? chainOf(parent) : emptyChain(parent);
      chain = {
        source: up.source,
        nodes: [...up.nodes, node],
        ops: [...up.ops, node.narrow],
        blamingOps: [...up.blamingOps, blamingOp(node.narrow, node.name)],
      };
    } else {
      chain = emptyChain(node);
    }
    chains.set(node.id, chain);
    return chain;
  };
  const recordErrors = (operator: string): RecordErrorPolicy => byName.get(operator)?.recordErrors ?? defaults.onRecordError ?? 'fail';
  const order = live.filter((n) => !fused.has(n.id));
  const forState = live.some((n) => recordErrors(n.name) === 'dead-letter')
    ? undefined
    : withAncestors(live.filter((n) => n.kind === 'stateful'));
  const feeders = new Set<number>();
  for (const n of live) if (forState === undefined || forState.has(n.id)) for (const p of n.parents) feeders.add(p.id);
  return {
    order,
    stateOrder: forState === undefined ? order : order.filter((n) => forState.has(n.id)),
    feedsState: (node) => feeders.has(node.id),
    inputs: sorted.filter((n) => n.kind === 'input'),
    stateful: live.filter((n) => n.kind === 'stateful'),
    outputs,
    byId: new Map(sorted.map((n) => [n.id, n])),
    chainOf,
    feedOf: (node) => (fused.has(node.id) ? chainOf(node) : emptyChain(node)),
    recordErrors,
  };
}

function emptyChain(source: GraphNode): Chain {
  return { source, nodes: [], ops: [], blamingOps: [] };
}

/** The ids of `nodes` and of every node they depend on. */
function withAncestors(nodes: readonly GraphNode[]): Set<number> {
  const out = new Set<number>();
  const stack = [...nodes];
  while (stack.length > 0) {
    const node = stack.pop() as GraphNode;
    if (out.has(node.id)) continue;
    out.add(node.id);
    stack.push(...node.parents);
  }
  return out;
}

/**
 * Tags what a fused operator throws with the operator's name. Operators of a chain
 * call each other, so the innermost tag wins: an error raised downstream passes
 * through upstream operators already tagged.
 */
function blamingOp(op: NarrowOp, name: string): NarrowOp {
  if (op.type === 'partition') {
    return {
      type: 'partition',
      apply: (records, time) => {
        try {
          return op.apply(records, time);
        } catch (error) {
          throw OperatorFailure.of(name, error);
        }
      },
    };
  }
  return { type: 'record', wire: (next) => blamingSink(op.wire(next), name) };
}

/**
 * A sink that tags what it throws with `name` (the consumer at the end of a chain,
 * such as a shuffle's map-side combiner, blames itself this way).
 *
 * @example
 * runChain(chain.ops, input, time, blamingSink(side.sink, node.name));
 */
export function blamingSink(sink: Sink<unknown>, name: string): Sink<unknown> {
  return (record) => {
    try {
      sink(record);
    } catch (error) {
      throw OperatorFailure.of(name, error, [record]);
    }
  };
}

/** True when a node with slide `slideMs` has a batch at `timeMs`. */
export function isActive(slideMs: number, timeMs: number, zeroTimeMs: number): boolean {
  return timeMs > zeroTimeMs && (timeMs - zeroTimeMs) % slideMs === 0;
}
