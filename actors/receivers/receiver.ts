/**
 * Custom receivers (Spark's Receiver API) and their input source: what a receiver
 * stores waits in a buffer the engine runs (receiver-host.ts) until the driver
 * allocates it to a batch.
 */

import { assert } from '../../runtime/base/assert.ts';
import { InvalidConfigError, SourceFailedError } from '../../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../../runtime/base/logger.ts';
import type { InputSource, OpenInput, ReceiverBuffer, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { ReceivedBlock } from '../../runtime/graph/wire.ts';

/** What a running receiver is connected to. */
interface ReceiverLink {
  readonly buffer: ReceiverBuffer;
  readonly env: SourceEnv;
}

/**
 * Extend this to bring any source into a stream: start producing in `onStart`,
 * hand records to `store()` (one) or `storeAll()` (many), release resources in `onStop`.
 *
 * @example
 * class Ticks extends Receiver<number> {
 *   #n = 0; #timer?: NodeJS.Timeout;
 *   onStart() { this.#timer = setInterval(() => this.store(this.#n++), 10); }
 *   onStop() { clearInterval(this.#timer); }
 * }
 * ssc.receiverStream(new Ticks()).print();
 */
export abstract class Receiver<T> {
  #link: ReceiverLink | undefined;
  #stopped = true;
  #buffered = 0;

  /** Starts receiving; may return a promise. */
  abstract onStart(): void | Promise<void>;
  /** Stops receiving and releases what `onStart` acquired. */
  abstract onStop(): void | Promise<void>;

  /**
   * Hands one record to the stream. An array is one record (a pair stays a pair):
   * use `storeAll` for many records.
   */
  store(record: T): void {
    this.#push([record]);
  }

  /**
   * Hands every record of an array or iterable to the stream, in order. The records
   * are copied first, so the caller may reuse its buffer as soon as this returns.
   */
  storeAll(records: Iterable<T>): void {
    this.#push(Array.from(records));
  }

  #push(batch: T[]): void {
    const link = this.#link;
    if (link === undefined || this.#stopped || batch.length === 0) return;
    this.#buffered += batch.length;
    link.buffer.store(batch);
  }

  /** Records stored and not yet allocated to a batch (for backpressure). */
  get buffered(): number {
    return this.#buffered;
  }

  /** True once stopped. */
  isStopped(): boolean {
    return this.#stopped;
  }

  /** Logs a problem without stopping. */
  reportError(message: string, error?: unknown): void {
    this.logger.warn(error === undefined ? {} : { reason: reasonOf(error) }, message);
  }

  /** Stops the whole app with SOURCE_FAILED. */
  fail(message: string, error?: unknown): void {
    this.#link?.env.fail(new SourceFailedError(`${this.#link.env.name}: ${message}`, { cause: error }));
  }

  /** What the running context offers its sources (NATS connection, dead letters, ...). */
  protected get env(): SourceEnv {
    const link = this.#link;
    if (link === undefined) throw new Error('the receiver is not started');
    return link.env;
  }

  /** The app's logger. */
  protected get logger(): Logger {
    const link = this.#link;
    if (link === undefined) throw new Error('the receiver is not started');
    return link.env.logger;
  }

  /** Called when buffered records were allocated; override to resume a paused source. */
  protected onDrained(): void {}

  /** @internal */
  async attach(link: ReceiverLink): Promise<void> {
    this.#link = link;
    this.#stopped = false;
    await this.onStart();
  }

  /** @internal */
  drained(count: number): void {
    this.#buffered = Math.max(0, this.#buffered - count);
    this.onDrained();
  }

  /** @internal */
  async detach(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.onStop();
  }
}

/**
 * The input source of a receiver: the engine's buffer collects what it stores; each
 * batch cuts everything collected so far into a block, which is written ahead
 * (journaled when the app checkpoints) before the batch may use it.
 *
 * @example
 * receiverSource(new Ticks())
 */
export function receiverSource<T>(
  receiver: Receiver<T>,
  kind = 'receiver',
  params: Record<string, string | number | boolean> = {},
): InputSource<T> {
  if (!(receiver instanceof Receiver)) throw new InvalidConfigError('receiverStream needs an instance of a Receiver subclass');
  let used = false;
  return {
    kind,
    params,
    async open(env: SourceEnv): Promise<OpenInput<T>> {
      // Each receiverStream() call makes its own source, so the instance itself is checked too.
      if (used || !receiver.isStopped()) throw new InvalidConfigError(`${env.name}: a receiver instance can feed only one stream`);
      used = true;
      const blocks = new Map<string, readonly unknown[]>(env.recovery?.blocks ?? []);
      let pending: ReceivedBlock[] = [...(env.recovery?.pending ?? [])];
      const buffer = env.receiverHost.openBuffer(env.name, {
        received: (records) => env.received(records),
        drained: (records) => receiver.drained(records),
      });
      await receiver.attach({ buffer, env });
      return {
        async allocate(time) {
          const cut = await buffer.cut(time);
          const ready = pending;
          pending = [];
          if (cut !== null) {
            await env.writeBlock(cut);
            ready.push(cut);
          }
          for (const b of ready) blocks.set(b.id, b.records);
          return { type: 'blocks', ids: ready.map((b) => b.id) };
        },
        async read(allocation) {
          assert(allocation.type === 'blocks', `${env.name} cannot read a ${allocation.type} allocation`);
          const out: T[] = [];
          for (const id of allocation.ids) {
            const records = blocks.get(id);
            if (records === undefined) throw new Error(`${env.name}: received block ${id} is missing from the write-ahead log`);
            blocks.delete(id);
            for (const r of records) out.push(r as T);
          }
          return out;
        },
        async close() {
          await receiver.detach();
          // Records accepted since the last batch would be lost on a graceful stop: written ahead as a pending block, the next start allocates them first.
          const rest = await buffer.cut(env.clock.now()).catch(() => null);
          if (rest !== null) await env.writeBlock(rest).catch(() => {});
        },
      };
    },
  };
}
