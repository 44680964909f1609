/**
 * `queueStream`: batches taken from an array, one per tick (or all that are there).
 * The allocation records queue indexes, so a factory that recreates the same array
 * replays the same batches.
 */

import { concatAll } from '../../runtime/base/arrays.ts';
import { assert } from '../../runtime/base/assert.ts';
import type { InputSource, OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { Allocation } from '../../runtime/graph/wire.ts';

/** Options of queueStream. */
export interface QueueStreamOptions<T> {
  /** Take one batch per tick (default) or everything queued. */
  readonly oneAtATime?: boolean;
  /** The batch used when the queue is empty (default: an empty batch). */
  readonly defaultBatch?: readonly T[];
}

/**
 * A source over a (growable) array of batches.
 *
 * @example
 * queueSource([['a'], ['b']], {})
 */
export function queueSource<T>(queue: readonly (readonly T[])[], options: QueueStreamOptions<T>): InputSource<T> {
  const oneAtATime = options.oneAtATime ?? true;
  return {
    kind: 'queue',
    params: { oneAtATime },
    async open(env: SourceEnv): Promise<OpenInput<T>> {
      // Resuming: the queue is the factory's same array; skip what earlier batches took.
      let next = typeof env.recovery?.position === 'number' ? env.recovery.position : 0;
      for (const a of env.recovery?.allocations ?? []) if (a.type === 'queue') next = Math.max(next, a.to);
      return {
        position: () => next,
        async allocate(): Promise<Allocation> {
          const available = queue.length - next;
          if (available <= 0) return { type: 'queue', from: next, to: next };
          const to = oneAtATime ? next + 1 : queue.length;
          const allocation: Allocation = { type: 'queue', from: next, to };
          next = to;
          return allocation;
        },
        async read(allocation: Allocation): Promise<T[]> {
          assert(allocation.type === 'queue', `queueStream cannot read a ${allocation.type} allocation`);
          if (allocation.from === allocation.to) return [...(options.defaultBatch ?? [])];
          return concatAll(queue.slice(allocation.from, allocation.to));
        },
        async close() {},
      };
    },
  };
}
