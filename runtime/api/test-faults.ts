/**
 * Engine faults injected on purpose, for tests only: they prove that the chaos
 * oracle catches a recovery bug. Read from the environment variable
 * `TRIBUTARY_FAULT` here and nowhere else; never set it outside a test.
 *
 * - `drop-replayed-batch`: recovery skips one batch it should replay (the first
 *   replayed batch whose outputs already ran, else the first one), so the
 *   restored state misses that batch's input.
 */
import type { ReplayJob } from '../../actors/driver.ts';

/** The faults `TRIBUTARY_FAULT` may name. */
export type TestFault = 'drop-replayed-batch';

/** The fault switched on for this process, if any. */
function activeFault(): TestFault | undefined {
  const value = process.env.TRIBUTARY_FAULT;
  return value === 'drop-replayed-batch' ? value : undefined;
}

/**
 * The batches recovery replays, after the test fault (if one is on) removed one.
 *
 * @example
 * replay: withReplayFault(opened.replay, logger)
 */
export function withReplayFault(replay: readonly ReplayJob[] | undefined, warn: (text: string) => void): readonly ReplayJob[] | undefined {
  if (replay === undefined || replay.length === 0 || activeFault() !== 'drop-replayed-batch') return replay;
  const victim = replay.find((job) => job.completed) ?? replay[0];
  warn(`TRIBUTARY_FAULT=drop-replayed-batch: batch ${victim?.time} is not replayed (a test-only engine fault)`);
  return replay.filter((job) => job !== victim);
}
