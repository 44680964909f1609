/**
 * Small helpers shared by the benchmarks: timing, medians, progress lines, a quiet
 * logger for the contexts, and a forced garbage collection.
 */
import { pino } from 'pino';
import type { Logger, StreamingContext } from '../runtime/api/index.ts';

/** A logger for bench contexts: errors only (the in-memory-state warning is expected here). */
export const quietLogger: Logger = pino({ name: 'bench', level: 'error' }, pino.destination(2));

/** Writes one progress line to stderr. */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** The median of `values` (the mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Spreads of the repeated runs measured since the last reset: (max - min) / median, by what was measured. */
const spreads: { label: string; spread: number }[] = [];

/**
 * The median of repeated timed runs of one thing, remembering how far they spread
 * apart, so that run.ts can repeat a section whose runs spread too much (noisy
 * neighbours on a shared machine).
 *
 * @example
 * const t = medianOfRuns('word count: Tributary', [812, 830, 1190, 805]);
 */
export function medianOfRuns(label: string, values: readonly number[]): number {
  const m = median(values);
  if (values.length >= 3 && m > 0) spreads.push({ label, spread: (Math.max(...values) - Math.min(...values)) / m });
  return m;
}

/** The spreads recorded since the last call, widest first; clears them. */
export function takeSpreads(): { label: string; spread: number }[] {
  const out = [...spreads].sort((a, b) => b.spread - a.spread);
  spreads.length = 0;
  return out;
}

/** Milliseconds taken by `f` (sync or async). */
export async function timeMs(f: () => unknown): Promise<number> {
  const start = performance.now();
  await f();
  return performance.now() - start;
}

/** Runs a full garbage collection (the process runs with --expose-gc, see run.ts). */
export function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('global.gc is missing: run the bench through `npm run bench` (it re-executes with --expose-gc)');
  // Two passes: the first may only queue finalizers and weak callbacks.
  gc();
  gc();
}

/** heapUsed after a full collection, in bytes. */
export function heapUsedAfterGc(): number {
  fullGc();
  return process.memoryUsage().heapUsed;
}

/** Lets pending timers and immediates run (nact stops actors asynchronously, after `ssc.stop()` resolves). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 10));
}

/** Resolves after the immediates queued so far ran (nact runs each message in its own setImmediate). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Runs one batch of a ManualClock context and returns its wall time, including the
 * state commits the driver dispatches once the batch completed: `runBatches(1)`
 * resolves before the state actors ran them (and BatchInfo.processingMs leaves them
 * out), yet they are part of what every batch costs.
 */
export async function runOneBatch(ssc: StreamingContext): Promise<number> {
  const start = performance.now();
  await ssc.runBatches(1);
  await nextTurn();
  return performance.now() - start;
}
