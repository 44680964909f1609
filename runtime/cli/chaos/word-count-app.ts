/**
 * The chaos workload (word-count-workload.ts) as an app module, so that the
 * built-in word count also runs through the check of any app:
 * `tributary chaos dist/runtime/cli/chaos/word-count-app.js [-- <outDir> <seed>]`,
 * or `checkRecovery(wordCountApp, ...)` in a test. Outputs go to `<outDir>`
 * (default: the working directory, which `tributary chaos` gives each run).
 */
import { defineApp } from '../../api/app.ts';
import { StreamingContext } from '../../api/streaming-context.ts';
import { buildWordCountWorkload } from './word-count-workload.ts';

/** Lines per second of stream time, as in the wall-clock chaos runs. */
const RATE_PER_SECOND = 3000;

/**
 * The word count over the deterministic generator, resuming from `./checkpoint`.
 *
 * @example
 * const report = await checkRecovery(wordCountApp, { crashes: 10, args: (dir) => [dir] });
 */
export const wordCountApp = defineApp(({ args }) => {
  const outDir = args[0] ?? '.';
  const seed = Number(args[1] ?? 1);
  const options = {
    runId: 'app',
    seed,
    // The stream-time line of the check ends the run; the generator never runs dry before it.
    records: Number.MAX_SAFE_INTEGER,
    ratePerSecond: RATE_PER_SECOND,
    batchDurationMs: 100,
    checkpoint: './checkpoint',
    outDir,
  };
  return StreamingContext.getOrCreate(options.checkpoint, () => buildWordCountWorkload(options));
});

export default wordCountApp;
