/**
 * Who owns what on a cluster: partition slot q (partition q of every node, so that
 * narrow chains and a stateful operator's input stay on one worker) and each input
 * node's reader. Rendezvous hashing with a load bound: each slot goes to the worker
 * with the highest hash weight among those below ceil(slots / workers), so the
 * split is even, the same on every process, and a worker joining or leaving moves
 * few slots. Pure: the driver journals the result as `assignment.changed`.
 */
import { createHash } from 'node:crypto';
import { InvalidConfigError } from '../runtime/base/errors.ts';
import type { AssignmentWire } from './transport/transport.ts';

function weight(worker: string, item: string): bigint {
  return createHash('sha256').update(`${worker}\u0000${item}`).digest().readBigUInt64BE(0);
}

/** Items in order, each to the heaviest worker still under `cap` items. */
function rendezvous(items: readonly string[], workers: readonly string[], cap: number, load: Map<string, number>): string[] {
  return items.map((item) => {
    let best: string | undefined;
    let bestWeight = -1n;
    for (const w of workers) {
      if ((load.get(w) ?? 0) >= cap) continue;
      const wt = weight(w, item);
      if (wt > bestWeight || (wt === bestWeight && best !== undefined && w < best)) {
        best = w;
        bestWeight = wt;
      }
    }
    const chosen = best as string;
    load.set(chosen, (load.get(chosen) ?? 0) + 1);
    return chosen;
  });
}

/**
 * Assigns `slots` partition slots and the readers of `inputs` (node ids) to `workers`.
 *
 * @example
 * assign(4, [1], ['w-a', 'w-b'], 1) // { epoch: 1, slots: ['w-b', 'w-a', 'w-a', 'w-b'], inputs: { 1: 'w-a' } }
 */
export function assign(slots: number, inputs: readonly number[], workers: readonly string[], epoch: number): AssignmentWire {
  if (workers.length === 0) throw new InvalidConfigError('no worker to assign partitions to');
  const sorted = [...new Set(workers)].sort();
  const slotLoad = new Map<string, number>();
  const owners = rendezvous(
    Array.from({ length: slots }, (_, q) => `slot/${q}`),
    sorted,
    Math.ceil(slots / sorted.length),
    slotLoad,
  );
  const inputLoad = new Map<string, number>();
  const readers = rendezvous(
    inputs.map((id) => `input/${id}`),
    sorted,
    Math.max(1, Math.ceil(inputs.length / sorted.length)),
    inputLoad,
  );
  const byInput: Record<string, string> = {};
  inputs.forEach((id, i) => {
    byInput[String(id)] = readers[i] as string;
  });
  return { epoch, slots: owners, inputs: byInput };
}

/** The worker that owns partition `q`. */
export function ownerOf(assignment: AssignmentWire, q: number): string {
  return assignment.slots[q % assignment.slots.length] as string;
}
