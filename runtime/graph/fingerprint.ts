/**
 * Stable operator keys and the graph fingerprint a checkpoint is checked against.
 *
 * A key is the operator's uid when it has one, else its operator name and the keys
 * of its parents, hashed: it does not depend on creation order, so adding an
 * operator with a uid elsewhere leaves every other key unchanged.
 */

import type { GraphNode, OutputOp } from './graph.ts';
import { stableHash } from './partitioner.ts';
import type { FingerprintEntry } from './wire.ts';

/**
 * Keys for every node and output, in id order.
 *
 * @example
 * const keys = stableKeys(graph.nodes, graph.outputs);
 */
export function stableKeys(nodes: readonly GraphNode[], outputs: readonly OutputOp[]): Map<number, string> {
  const keys = new Map<number, string>();
  const used = new Map<string, number>();
  const unique = (base: string): string => {
    const n = used.get(base) ?? 0;
    used.set(base, n + 1);
    return n === 0 ? base : `${base}.${n}`;
  };
  const sorted = [...nodes].sort((a, b) => a.id - b.id);
  for (const node of sorted) {
    if (node.uid !== undefined) {
      keys.set(node.id, node.uid);
      continue;
    }
    const shape = `${node.operator}(${node.parents.map((p) => keys.get(p.id)).join(',')})`;
    keys.set(node.id, unique(`${node.operator}-${stableHash(shape).toString(16).padStart(8, '0')}`));
  }
  for (const op of outputs) {
    const base = op.name.split('#')[0] ?? 'output';
    keys.set(
      op.id,
      unique(
        `${base}-${stableHash(`${base}(${keys.get(op.stream.id)})`)
          .toString(16)
          .padStart(8, '0')}`,
      ),
    );
  }
  return keys;
}

/**
 * Ids of the nodes without a uid that only operators with a uid consume, directly or
 * through other such nodes: the internal steps of a uid'd operator (updateStateByKey's
 * group, mapWithState's partitioning) or a stateless branch feeding only uid'd ones.
 */
function ownedByUid(nodes: readonly GraphNode[], outputs: readonly OutputOp[]): Set<number> {
  const consumers = new Map<number, (GraphNode | undefined)[]>();
  for (const n of nodes) for (const p of n.parents) consumers.set(p.id, [...(consumers.get(p.id) ?? []), n]);
  // An output has no uid of its own: a node with an output is never owned.
  for (const op of outputs) consumers.set(op.stream.id, [...(consumers.get(op.stream.id) ?? []), undefined]);
  const owned = new Set<number>();
  // Children have higher ids than their parents: from the newest node back, each child is decided first.
  for (const n of [...nodes].sort((a, b) => b.id - a.id)) {
    const users = consumers.get(n.id) ?? [];
    if (n.uid !== undefined || users.length === 0) continue;
    if (users.every((c) => c !== undefined && (c.uid !== undefined || owned.has(c.id)))) owned.add(n.id);
  }
  return owned;
}

/**
 * The fingerprint of a graph: what must match for a checkpoint to be reusable.
 *
 * @example
 * const fp = fingerprintOf(graph.nodes, graph.outputs, keys);
 */
export function fingerprintOf(
  nodes: readonly GraphNode[],
  outputs: readonly OutputOp[],
  keys: ReadonlyMap<number, string>,
): FingerprintEntry[] {
  const owned = ownedByUid(nodes, outputs);
  const entries: FingerprintEntry[] = nodes.map((n) => ({
    key: keys.get(n.id) as string,
    operator: n.operator,
    uid: n.uid ?? null,
    slideMs: n.slideMs,
    partitions: n.partitions,
    params: n.params,
    ...(owned.has(n.id) ? { ownedByUid: true } : {}),
  }));
  for (const op of outputs) {
    entries.push({
      key: keys.get(op.id) as string,
      operator: op.name.split('#')[0] ?? 'output',
      // An output has no uid of its own and no state: it comes and goes with a uid'd
      // stream, else adding a uid'd operator with an output would always be refused.
      uid: op.stream.uid ?? null,
      slideMs: op.stream.slideMs,
      partitions: 0,
      params: {},
    });
  }
  return entries;
}

/**
 * Parameters that say where a source reads, not what the graph computes: checkpoints
 * journaled when the socket source recorded its host and port still resume.
 */
const LOCATION_PARAMS = new Set(['host', 'port']);

function describe(e: FingerprintEntry): string {
  // Sorted: the order parameters were given in (or decoded in) is not a difference.
  const params = Object.entries(e.params)
    .filter(([k]) => !LOCATION_PARAMS.has(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `${e.uid ? `uid "${e.uid}" ` : ''}${e.operator} (slide ${e.slideMs} ms, ${e.partitions} partitions${params ? `, ${params}` : ''})`;
}

/**
 * The differences that make `current` unable to resume from `journaled`; empty
 * when compatible. Operators with a uid may appear or disappear; all others must
 * match exactly.
 *
 * @example
 * compareFingerprints(old, now) // ['removed: reduceByKey (slide 1000 ms, ...)']
 */
export function compareFingerprints(journaled: readonly FingerprintEntry[], current: readonly FingerprintEntry[]): string[] {
  const before = new Map(journaled.map((e) => [e.key, e]));
  const after = new Map(current.map((e) => [e.key, e]));
  const out: string[] = [];
  for (const [key, e] of before) {
    const now = after.get(key);
    if (now === undefined) {
      // Steps that only uid'd operators use may go with them (an upgrade removing a uid'd updateStateByKey).
      if (e.uid === null && e.ownedByUid !== true) out.push(`removed: ${describe(e)}`);
      continue;
    }
    if (describe(now) !== describe(e)) out.push(`changed: ${describe(e)} -> ${describe(now)}`);
  }
  for (const [key, e] of after) {
    if (!before.has(key) && e.uid === null && e.ownedByUid !== true) out.push(`added: ${describe(e)}`);
  }
  return out;
}
