/**
 * Where a chaos check of an app kills it, drawn from the seed before the run: at
 * which batch of the stream-time line, and how. Kills alternate between a held
 * moment (after an output of the batch ran, so the batch is in flight and its
 * outputs run again after the restart) and a second kind the runner chooses: a
 * random wall-clock moment in a child process, or between two batches in process.
 */

import { InvalidConfigError } from '../base/errors.ts';
import { seededRandom } from '../base/seeded-random.ts';

/** How a planned kill lands. */
export type KillPhase = 'after-output' | 'timed' | 'between-batches';

/** One planned kill. */
export interface PlannedKill {
  /** The batch (1-based on the stream-time line) in flight or next at the kill. */
  readonly batch: number;
  readonly phase: KillPhase;
  /** `after-output`: which output (index into the app's outputs, modulo their number). */
  readonly pick: number;
  /** `timed`: wall milliseconds after batch `batch - 1` completed. */
  readonly delayMs: number;
}

/**
 * The kills of a check: `kills` distinct batches from 2 to `batches - 1`, in order
 * (batch 1 always completes before the first kill, so a difference there cannot be
 * blamed on recovery), the even ones `after-output`, the odd ones `other`.
 *
 * @example
 * planKills(42, 3, 30, 'timed') // [{ batch: 4, phase: 'after-output', ... }, ...]
 */
export function planKills(seed: number, kills: number, batches: number, other: Exclude<KillPhase, 'after-output'>): PlannedKill[] {
  if (!Number.isSafeInteger(kills) || kills < 0) throw new InvalidConfigError(`kills must be a whole number >= 0, got ${kills}`);
  if (!Number.isSafeInteger(batches) || batches < kills + 2) {
    throw new InvalidConfigError(`${kills} kills need at least ${kills + 2} batches of stream time, got ${batches}`);
  }
  const rng = seededRandom(seed);
  const candidates = Array.from({ length: batches - 2 }, (_, i) => i + 2);
  for (let i = candidates.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [candidates[i], candidates[j]] = [candidates[j] as number, candidates[i] as number];
  }
  return candidates
    .slice(0, kills)
    .sort((a, b) => a - b)
    .map((batch, k) => ({
      batch,
      phase: k % 2 === 0 ? 'after-output' : other,
      pick: Math.floor(rng() * 1000),
      delayMs: Math.floor(rng() * 40),
    }));
}
