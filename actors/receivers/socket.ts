/**
 * `socketTextStream`: lines of UTF-8 text from a TCP server. A line split across
 * reads, or a character split across chunks, is put back together; the connection
 * is re-opened with backoff when it drops; reading pauses while too many received
 * lines wait for a batch.
 */
import * as net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { delayMs } from '../../runtime/base/clock.ts';
import { InvalidConfigError } from '../../runtime/base/errors.ts';
import type { InputSource } from '../../runtime/graph/input-source.ts';
import { Receiver, receiverSource } from './receiver.ts';

/** Options of socketTextStream. */
export interface SocketTextStreamOptions {
  /** Longest line kept, in characters; longer lines are cut there (default 1 MiB). */
  readonly lineCharsMax?: number;
  /** Received lines waiting for a batch above which reading pauses (default 100,000). */
  readonly bufferedLinesMax?: number;
  /** First reconnect delay (default 100 ms), doubled up to `reconnectDelayMsMax`. */
  readonly reconnectDelayMs?: number;
  /** Longest reconnect delay (default 5 s). */
  readonly reconnectDelayMsMax?: number;
}

/** Splits text into lines, keeping the unfinished tail for the next chunk. */
export class LineSplitter {
  readonly #decoder = new StringDecoder('utf8');
  #tail = '';
  readonly #lineCharsMax: number;

  constructor(lineCharsMax: number) {
    this.#lineCharsMax = lineCharsMax;
  }

  /** The complete lines ending in this chunk (without their `\n` or `\r\n`). */
  push(chunk: Buffer): string[] {
    const text = this.#tail + this.#decoder.write(chunk);
    const parts = text.split('\n');
    this.#tail = parts.pop() ?? '';
    if (this.#tail.length > this.#lineCharsMax) this.#tail = this.#tail.slice(0, this.#lineCharsMax);
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l).slice(0, this.#lineCharsMax));
  }

  /** The last line when the stream ends without a newline. */
  end(): string[] {
    let rest = this.#tail + this.#decoder.end();
    this.#tail = '';
    // A CR at the very end is the first half of a CRLF that never came, not text.
    if (rest.endsWith('\r')) rest = rest.slice(0, -1);
    return rest.length > 0 ? [rest.slice(0, this.#lineCharsMax)] : [];
  }
}

class SocketReceiver extends Receiver<string> {
  readonly #host: string;
  readonly #port: number;
  readonly #options: Required<SocketTextStreamOptions>;
  #socket: net.Socket | undefined;
  #paused = false;

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
      this.#socket?.resume();
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

  /** Reads one connection until it ends; resolves true if it delivered any data. */
  #connectOnce(): Promise<boolean> {
    return new Promise((resolve) => {
      const splitter = new LineSplitter(this.#options.lineCharsMax);
      const socket = net.connect({ host: this.#host, port: this.#port });
      this.#socket = socket;
      let received = false;
      socket.on('data', (chunk: Buffer) => {
        received = true;
        const lines = splitter.push(chunk);
        if (lines.length > 0) this.storeAll(lines);
        if (this.buffered >= this.#options.bufferedLinesMax && !this.#paused) {
          this.#paused = true;
          socket.pause();
        }
      });
      socket.on('error', (error) => {
        if (!this.isStopped()) this.reportError(`socket ${this.#host}:${this.#port}: ${error.message}; reconnecting`, error);
      });
      socket.on('close', () => {
        const last = splitter.end();
        if (last.length > 0) this.storeAll(last);
        this.#paused = false;
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
    lineCharsMax: options.lineCharsMax ?? 1024 * 1024,
    bufferedLinesMax: options.bufferedLinesMax ?? 100_000,
    reconnectDelayMs: options.reconnectDelayMs ?? 100,
    reconnectDelayMsMax: options.reconnectDelayMsMax ?? 5000,
  };
  // Where the lines come from is not part of the graph: a line server that moved must not make the checkpoint unusable.
  return receiverSource(new SocketReceiver(host, port, full), 'socket');
}
