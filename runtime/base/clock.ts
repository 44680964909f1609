/**
 * Time sources. This is the only module that reads the wall clock or arms real
 * timers, so that tests can drive every batch from a ManualClock.
 */

/** Cancels a timer armed with {@link Clock.setTimer}. */
export type CancelTimer = () => void;

/**
 * Where the engine gets time from: the wall clock in production, a ManualClock in tests.
 */
export interface Clock {
  /** Current time in epoch milliseconds (or the manual clock's value). */
  now(): number;
  /** Calls `callback` once when `now() >= atMs`. */
  setTimer(atMs: number, callback: () => void): CancelTimer;
  /** True for clocks that only move when told to (runBatches requires one). */
  readonly manual: boolean;
}

/**
 * The wall clock.
 *
 * @example
 * new StreamingContext({ appName: 'app', batchDuration: seconds(1), clock: new SystemClock() });
 */
export class SystemClock implements Clock {
  readonly manual = false;
  now(): number {
    return Date.now();
  }
  setTimer(atMs: number, callback: () => void): CancelTimer {
    const handle = setTimeout(callback, Math.max(0, atMs - Date.now()));
    return () => clearTimeout(handle);
  }
}

/**
 * A monotonic stopwatch for measuring processing time, which must not depend on a
 * manual clock (a batch takes real time to process even when time is simulated).
 *
 * @example
 * const sw = startStopwatch(); work(); sw.elapsedMs();
 */
export function startStopwatch(): { elapsedMs(): number } {
  const start = performance.now();
  return { elapsedMs: () => performance.now() - start };
}

/**
 * Resolves after a real delay; for reconnect backoff and polling of external
 * resources (sockets, directories), never for synchronising tests.
 *
 * @example
 * await delayMs(100);
 */
export function delayMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Resolves after a real delay and keeps the process alive meanwhile (a supervisor
 * waiting to restart its child has nothing else to wait on).
 *
 * @example
 * await holdMs(500);
 */
export function holdMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `fn` every `ms` of real time until the returned function is called.
 *
 * @example
 * const cancel = everyMs(1000, poll);
 */
export function everyMs(ms: number, fn: () => void): CancelTimer {
  const handle = setInterval(fn, ms);
  handle.unref();
  return () => clearInterval(handle);
}
