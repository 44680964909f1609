/**
 * The deterministic input of tests/helpers/sigkill-app.ts, shared with the test
 * that computes the oracle.
 */
import { wordBatches } from './recovery-harness.ts';

/** Window of the app's reduceByKeyAndWindow (slide: one batch). */
export const WINDOW_MS = 4000;

/** The app's input: word batches for all but the last few batches, which are empty. */
export function sigkillInput(batches: number): string[][] {
  return wordBatches(11, Math.max(1, batches - 5));
}
