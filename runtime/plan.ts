/**
 * Compiles the operator graph into what the driver runs: which narrow operators
 * fuse into their consumer's pass, and, for every node, the chain of fused
 * operators between it and the nearest materialized ancestor.
 */
import type { GraphNode, NarrowOp, OutputOp } from './graph.ts';

/** A materialized source node and the fused narrow operators applied on top of it. */
export interface Chain {
  readonly source: GraphNode;
  readonly ops: readonly NarrowOp[];
}

/** The compiled graph. */
export interface Plan {
  /** Nodes the driver computes, in topological order (fused narrow nodes left out). */
  readonly order: readonly GraphNode[];
  readonly inputs: readonly GraphNode[];
  readonly stateful: readonly GraphNode[];
  readonly outputs: readonly OutputOp[];
  readonly byId: ReadonlyMap<number, GraphNode>;
  /** The chain that produces `node`'s records from a materialized node. */
  chainOf(node: GraphNode): Chain;
  /** What a consumer of `node` runs: `node`'s chain when it is fused, else `node` itself. */
  feedOf(node: GraphNode): Chain;
}

/**
 * Builds the plan. Node ids grow in creation order and a node's parents exist
 * before it, so id order is a topological order.
 *
 * @example
 * const plan = compilePlan(graph.nodes, graph.outputs);
 */
export function compilePlan(nodes: readonly GraphNode[], outputs: readonly OutputOp[]): Plan {
  const consumers = new Map<number, { nodes: GraphNode[]; outputs: number }>();
  for (const n of nodes) consumers.set(n.id, { nodes: [], outputs: 0 });
  for (const n of nodes) for (const p of n.parents) consumers.get(p.id)?.nodes.push(n);
  for (const o of outputs) {
    const c = consumers.get(o.stream.id);
    if (c) c.outputs++;
  }
  const fused = new Set<number>();
  for (const n of nodes) {
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
      const up = fused.has(parent.id) ? chainOf(parent) : { source: parent, ops: [] };
      chain = { source: up.source, ops: [...up.ops, node.narrow] };
    } else {
      chain = { source: node, ops: [] };
    }
    chains.set(node.id, chain);
    return chain;
  };
  const sorted = [...nodes].sort((a, b) => a.id - b.id);
  return {
    order: sorted.filter((n) => !fused.has(n.id)),
    inputs: sorted.filter((n) => n.kind === 'input'),
    stateful: sorted.filter((n) => n.kind === 'stateful'),
    outputs,
    byId: new Map(sorted.map((n) => [n.id, n])),
    chainOf,
    feedOf: (node) => (fused.has(node.id) ? chainOf(node) : { source: node, ops: [] }),
  };
}

/** True when a node with slide `slideMs` has a batch at `timeMs`. */
export function isActive(slideMs: number, timeMs: number, zeroTimeMs: number): boolean {
  return timeMs > zeroTimeMs && (timeMs - zeroTimeMs) % slideMs === 0;
}
