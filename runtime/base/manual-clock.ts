/**
 * A clock that moves only when a test tells it to, so batch times are exact.
 */
import type { CancelTimer, Clock } from './clock.ts';
import { InvalidDurationError } from './errors.ts';

interface PendingTimer {
  atMs: number;
  seq: number;
  callback: () => void;
}

/**
 * A clock for tests: `advance(ms)` fires, in time order, every timer that falls due,
 * including timers armed by those callbacks.
 *
 * @example
 * const clock = new ManualClock();
 * const ssc = new StreamingContext({ appName: 't', batchDuration: 1000, clock });
 * await ssc.start();
 * await ssc.runBatches(3);
 */
export class ManualClock implements Clock {
  readonly manual = true;
  #nowMs: number;
  #timers: PendingTimer[] = [];
  #seq = 0;

  constructor(startMs = 0) {
    if (!Number.isSafeInteger(startMs) || startMs < 0) {
      throw new InvalidDurationError(`ManualClock start must be a non-negative whole number, got ${startMs}`);
    }
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  setTimer(atMs: number, callback: () => void): CancelTimer {
    const timer = { atMs, seq: this.#seq++, callback };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms` (never backwards), firing due timers in order. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new InvalidDurationError(`ManualClock.advance needs a non-negative duration, got ${ms}`);
    }
    this.set(this.#nowMs + ms);
  }

  /** Sets the time to `ms`, which must not be earlier than now. */
  set(ms: number): void {
    if (!Number.isFinite(ms) || ms < this.#nowMs) {
      throw new InvalidDurationError(`ManualClock cannot go backwards (now ${this.#nowMs}, asked ${ms})`);
    }
    for (;;) {
      const due = this.#nextDue(ms);
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#nowMs = Math.max(this.#nowMs, due.atMs);
      due.callback();
    }
    this.#nowMs = ms;
  }

  #nextDue(limitMs: number): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.#timers) {
      if (t.atMs > limitMs) continue;
      if (best === undefined || t.atMs < best.atMs || (t.atMs === best.atMs && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
