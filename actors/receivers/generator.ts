/**
 * `generatorStream`: records that are a pure function of a seed and a sequence
 * number, produced at a set rate. The allocation is a sequence range derived from
 * the batch time, so replay needs nothing stored but the range.
 */

import { assert } from '../../runtime/base/assert.ts';
import { checkDuration } from '../../runtime/base/durations.ts';
import { InvalidConfigError } from '../../runtime/base/errors.ts';
import type { InputSource, OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { Allocation } from '../../runtime/graph/wire.ts';
import { textLine } from './text-generator.ts';

/** Options of generatorStream. */
export interface GeneratorStreamOptions<T> {
  /** Records per second of stream time. */
  readonly ratePerSecond: number;
  /** Seed of the sequence, a safe integer (default 1). */
  readonly seed?: number;
  /** Record number `seq` (default: a line of words, see `textLine`). */
  readonly record?: (seq: number, seed: number) => T;
  /** Stop after this many records (default: never). */
  readonly limit?: number;
}

/**
 * A deterministic generated source.
 *
 * @example
 * generatorSource({ ratePerSecond: 1000, seed: 7 })
 */
export function generatorSource<T = string>(options: GeneratorStreamOptions<T>): InputSource<T> {
  const rate = options.ratePerSecond;
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) {
    throw new InvalidConfigError(`generatorStream ratePerSecond must be a positive number, got ${String(rate)}`);
  }
  const seed = options.seed ?? 1;
  // A fractional seed would be truncated by the generator's integer mixing and collide with its integer part.
  if (!Number.isSafeInteger(seed)) throw new InvalidConfigError(`generatorStream seed must be a whole number, got ${String(seed)}`);
  const make = options.record ?? ((seq: number, s: number) => textLine(seq, s) as unknown as T);
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  return {
    kind: 'generator',
    params: { seed, ratePerSecond: rate },
    async open(env: SourceEnv): Promise<OpenInput<T>> {
      checkDuration('batch duration', env.batchDurationMs);
      const seqAt = (time: number) => Math.min(limit, Math.floor(((time - env.zeroTimeMs) * rate) / 1000));
      return {
        async allocate(time: number): Promise<Allocation> {
          return { type: 'sequence', from: seqAt(time - env.batchDurationMs), to: seqAt(time) };
        },
        async read(allocation: Allocation): Promise<T[]> {
          assert(allocation.type === 'sequence', `generatorStream cannot read a ${allocation.type} allocation`);
          const out: T[] = new Array(Math.max(0, allocation.to - allocation.from));
          for (let seq = allocation.from; seq < allocation.to; seq++) out[seq - allocation.from] = make(seq, seed);
          return out;
        },
        async readPartition(allocation: Allocation, partition: number, partitions: number): Promise<T[]> {
          assert(allocation.type === 'sequence', `generatorStream cannot read a ${allocation.type} allocation`);
          // The same slice splitIntoPartitions would cut from the whole batch.
          const size = Math.ceil(Math.max(0, allocation.to - allocation.from) / partitions);
          const from = allocation.from + partition * size;
          const to = Math.min(allocation.to, from + size);
          const out: T[] = new Array(Math.max(0, to - from));
          for (let seq = from; seq < to; seq++) out[seq - from] = make(seq, seed);
          return out;
        },
        async close() {},
      };
    },
  };
}
