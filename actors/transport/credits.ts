/**
 * Credit-based flow control of one sender towards one receiver: the sender may have
 * at most `window` chunks unacknowledged; the receiver grants credit back once it
 * handled chunks. A slow receiver therefore slows its senders instead of being
 * flooded (core NATS drops messages for a subscriber that falls too far behind).
 */

/**
 * The sender's side: waits for credit before each chunk.
 *
 * @example
 * const c = new SendCredits(32);
 * await c.acquire(); publish(chunk);
 * // on a grant message: c.grant(n)
 */
export class SendCredits {
  #available: number;
  #waiters: { resolve(): void; reject(error: Error): void }[] = [];
  /** The most chunks ever outstanding at once (for tests and figures). */
  maxOutstanding = 0;
  readonly #window: number;

  constructor(window: number) {
    this.#window = window;
    this.#available = window;
  }

  /** Chunks sent and not yet acknowledged. */
  get outstanding(): number {
    return this.#window - this.#available;
  }

  /** Resolves when one chunk may be sent (and takes its credit). */
  acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#take();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) =>
      this.#waiters.push({
        resolve: () => {
          this.#take();
          resolve();
        },
        reject,
      }),
    );
  }

  /** The receiver is gone or lost chunks: every wait fails with `reason` and the whole window is free again. */
  reset(reason: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    this.#available = this.#window;
    for (const w of waiters) w.reject(reason);
  }

  /** The receiver handled `n` chunks. */
  grant(n: number): void {
    this.#available = Math.min(this.#window, this.#available + n);
    while (this.#available > 0 && this.#waiters.length > 0) this.#waiters.shift()?.resolve();
  }

  #take(): void {
    this.#available--;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
  }
}
