/**
 * Durations are whole milliseconds; these helpers make call sites read like Spark's.
 */
import { InvalidDurationError } from './errors.ts';

/**
 * A duration of `n` milliseconds.
 *
 * @example
 * milliseconds(250) // 250
 */
export function milliseconds(n: number): number {
  return n;
}

/**
 * A duration of `n` seconds, in milliseconds.
 *
 * @example
 * seconds(2) // 2000
 */
export function seconds(n: number): number {
  return n * 1000;
}

/**
 * A duration of `n` minutes, in milliseconds.
 *
 * @example
 * minutes(1) // 60000
 */
export function minutes(n: number): number {
  return n * 60_000;
}

/**
 * Throws INVALID_DURATION unless `ms` is a positive whole number of milliseconds.
 *
 * @example
 * checkDuration('window of reduceByKeyAndWindow#4', 3000);
 */
export function checkDuration(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms <= 0) {
    throw new InvalidDurationError(`${what} must be a positive whole number of milliseconds, got ${String(ms)}`);
  }
  return ms;
}

/**
 * Throws INVALID_DURATION unless `ms` is a multiple of `unitMs`.
 *
 * @example
 * checkMultiple('window of window#3', 3000, 'the parent slide', 1000);
 */
export function checkMultiple(what: string, ms: number, unitName: string, unitMs: number): number {
  checkDuration(what, ms);
  if (ms % unitMs !== 0) {
    throw new InvalidDurationError(`${what} (${ms} ms) must be a multiple of ${unitName} (${unitMs} ms)`);
  }
  return ms;
}
