/**
 * Pieces of a batch addressed to this worker, by key (`<time>|<kind>|...`): a piece
 * may arrive before the worker asks for it (a faster peer) or after; `take`
 * resolves either way. Aborting a batch rejects its waits.
 */

interface Waiter {
  readonly time: number;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * A rendezvous of keyed pieces.
 *
 * @example
 * inbox.put('1000|in|1|0', records);
 * const records = await inbox.take('1000|in|1|0', 1000);
 */
export class Inbox {
  readonly #items = new Map<string, unknown>();
  readonly #waiters = new Map<string, Waiter>();
  /** Aborted batch times (or every batch, once abandoned). */
  readonly #aborted = new Map<number, Error>();
  #abandoned: Error | undefined;

  put(key: string, value: unknown): void {
    const waiter = this.#waiters.get(key);
    if (waiter) {
      this.#waiters.delete(key);
      waiter.resolve(value);
    } else {
      this.#items.set(key, value);
    }
  }

  take(key: string, time: number): Promise<unknown> {
    const failed = this.#abandoned ?? this.#aborted.get(time);
    if (failed) return Promise.reject(failed);
    if (this.#items.has(key)) {
      const value = this.#items.get(key);
      this.#items.delete(key);
      return Promise.resolve(value);
    }
    return new Promise((resolve, reject) => this.#waiters.set(key, { time, resolve, reject }));
  }

  /** True once batch `time` was aborted. */
  isAborted(time: number): boolean {
    return this.#abandoned !== undefined || this.#aborted.has(time);
  }

  /** Rejects the waits of batch `time` (of every batch when `time` is absent, for good). */
  abort(error: Error, time?: number): void {
    if (time === undefined) this.#abandoned = error;
    else this.#aborted.set(time, error);
    for (const [key, w] of this.#waiters) {
      if (time !== undefined && w.time !== time) continue;
      this.#waiters.delete(key);
      w.reject(error);
    }
  }

  /** Rejects every wait and forgets every piece and abort (a new driver run begins). */
  reset(error: Error): void {
    for (const w of this.#waiters.values()) w.reject(error);
    this.#waiters.clear();
    this.#items.clear();
    this.#aborted.clear();
  }

  /** Forgets every piece and abort of batch `time` and earlier (the batch is over). */
  clear(time: number): void {
    for (const key of this.#items.keys()) if (Number(key.slice(0, key.indexOf('|'))) <= time) this.#items.delete(key);
    for (const t of this.#aborted.keys()) if (t <= time) this.#aborted.delete(t);
  }
}
