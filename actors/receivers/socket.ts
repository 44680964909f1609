/**
 * `socketTextStream`: lines of UTF-8 text from a TCP server (lines.ts: split on
 * bytes, decoded strictly; a bad or too long line is a dead letter); the connection
 * is re-opened with backoff when it drops; reading pauses while too many received
 * lines wait for a batch.
 */
import * as net from 'node:net';
import { delayMs } from '../../runtime/base/clock.ts';
import { InvalidConfigError } from '../../runtime/base/errors.ts';
import type { InputSource } from '../../runtime/graph/input-source.ts';
import { LineSplitter, type SplitLines } from './lines.ts';
import { Receiver, receiverSource } from './receiver.ts';

/** Options of socketTextStream. */
export interface SocketTextStreamOptions {
  /** Longest line in bytes (default 1 MiB); a longer line is a dead letter, never cut. */
  readonly lineBytesMax?: number;
  /** Received lines waiting for a batch above which reading pauses (default 100,000). */
  readonly bufferedLinesMax?: number;
  /** First reconnect delay (default 100 ms), doubled up to `reconnectDelayMsMax`. */
  readonly reconnectDelayMs?: number;
  /** Longest reconnect delay (default 5 s). */
  readonly reconnectDelayMsMax?: number;
}

class SocketReceiver extends Receiver<string> {
  readonly #host: string;
  readonly #port: number;
  readonly #options: Required<SocketTextStreamOptions>;
  #socket: net.Socket | undefined;
  #paused = false;
  /** Paused by backpressure until the rate allows more (a clock timer resumes it). */
  #ratePaused = false;

  constructor(host: string, port: number, options: Required<SocketTextStreamOptions>) {
    super();
    this.#host = host;
    this.#port = port;
    this.#options = options;
  }

  onStart(): void {
    void this.#connectLoop();
  }

  onStop(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  protected override onDrained(): void {
    if (this.#paused && this.buffered < this.#options.bufferedLinesMax) {
      this.#paused = false;
      if (!this.#ratePaused) this.#socket?.resume();
    }
  }

  async #connectLoop(): Promise<void> {
    let wait = this.#options.reconnectDelayMs;
    while (!this.isStopped()) {
      const received = await this.#connectOnce();
      if (this.isStopped()) return;
      if (received) wait = this.#options.reconnectDelayMs;
      await delayMs(wait);
      wait = Math.min(wait * 2, this.#options.reconnectDelayMsMax);
    }
  }

  #take({ lines, rejected }: SplitLines): void {
    if (lines.length > 0) void this.storeAll(lines);
    for (const r of rejected) this.setAside(r.record, `${this.#host}:${this.#port}: ${r.error}`);
  }

  /** Reads one connection until it ends; resolves true if it delivered any data. */
  #connectOnce(): Promise<boolean> {
    return new Promise((resolve) => {
      const splitter = new LineSplitter(this.#options.lineBytesMax);
      const socket = net.connect({ host: this.#host, port: this.#port });
      this.#socket = socket;
      let received = false;
      socket.on('data', (chunk: Buffer) => {
        received = true;
        this.#take(splitter.push(chunk));
        if (this.buffered >= this.#options.bufferedLinesMax && !this.#paused) {
          this.#paused = true;
          socket.pause();
        }
        const waitMs = this.rateWaitMs;
        if (waitMs > 0 && !this.#ratePaused) {
          this.#ratePaused = true;
          socket.pause();
          this.env.clock.setTimer(this.env.clock.now() + waitMs, () => {
            this.#ratePaused = false;
            if (!this.#paused && this.#socket === socket) socket.resume();
          });
        }
      });
      socket.on('error', (error) => {
        if (!this.isStopped()) this.reportError(`socket ${this.#host}:${this.#port}: ${error.message}; reconnecting`, error);
      });
      socket.on('close', () => {
        this.#take(splitter.end());
        this.#paused = false;
        this.#ratePaused = false;
        resolve(received);
      });
    });
  }
}

/**
 * The source of socketTextStream.
 *
 * @example
 * socketTextSource('127.0.0.1', 9999, {})
 */
export function socketTextSource(host: string, port: number, options: SocketTextStreamOptions): InputSource<string> {
  if (typeof host !== 'string' || host.length === 0) throw new InvalidConfigError('socketTextStream needs a host');
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidConfigError(`socketTextStream port must be 1-65535, got ${String(port)}`);
  }
  const full: Required<SocketTextStreamOptions> = {
    lineBytesMax: options.lineBytesMax ?? 1024 * 1024,
    bufferedLinesMax: options.bufferedLinesMax ?? 100_000,
    reconnectDelayMs: options.reconnectDelayMs ?? 100,
    reconnectDelayMsMax: options.reconnectDelayMsMax ?? 5000,
  };
  for (const [name, value] of [
    ['lineBytesMax', full.lineBytesMax],
    ['bufferedLinesMax', full.bufferedLinesMax],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new InvalidConfigError(`socketTextStream ${name} must be a whole number >= 1, got ${String(value)}`);
  }
  // Where the lines come from is not part of the graph: a line server that moved must not make the checkpoint unusable.
  return receiverSource(new SocketReceiver(host, port, full), 'socket');
}
