/**
 * Custom receivers (Spark's Receiver API) and their input source: what a receiver
 * stores waits in a buffer the engine runs (receiver-host.ts) until the driver
 * allocates it to a batch.
 */

import { assert } from '../../runtime/base/assert.ts';
import type { CancelTimer } from '../../runtime/base/clock.ts';
import { InvalidConfigError, InvalidStateError, SourceFailedError } from '../../runtime/base/errors.ts';
import { type Logger, reasonOf } from '../../runtime/base/logger.ts';
import type { InputSource, OpenInput, ReceiverBuffer, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { ReceivedBlock } from '../../runtime/graph/wire.ts';

/** Marks `p` handled (no unhandled-rejection crash when a caller ignores it) and returns it. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

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
  /** Records handed over so far, and how many of them are in blocks written ahead. */
  #storedSeq = 0;
  #durableSeq = 0;
  #waiters: { readonly seq: number; readonly resolve: () => void; readonly reject: (error: Error) => void }[] = [];

  /** Starts receiving; may return a promise. */
  abstract onStart(): void | Promise<void>;
  /** Stops receiving and releases what `onStart` acquired. */
  abstract onStop(): void | Promise<void>;

  /**
   * Hands one record to the stream. An array is one record (a pair stays a pair):
   * use `storeAll` for many records. The promise resolves once the record is in a
   * block written ahead (the journal, on an app with a checkpoint), at most one block
   * interval later: a receiver that acknowledges its source only then loses nothing
   * to a crash. It rejects when the receiver is stopped or the write failed; ignoring
   * it is fine for sources that cannot re-send.
   */
  store(record: T): Promise<void> {
    return this.#push([record]);
  }

  /**
   * Hands every record of an array or iterable to the stream, in order. The records
   * are copied first, so the caller may reuse its buffer as soon as this returns.
   * Resolves as {@link Receiver.store} does, for the last of them.
   */
  storeAll(records: Iterable<T>): Promise<void> {
    return this.#push(Array.from(records));
  }

  #push(batch: T[]): Promise<void> {
    const link = this.#link;
    if (link === undefined || this.#stopped)
      return handled(Promise.reject(new InvalidStateError('the receiver is stopped: records not stored')));
    if (batch.length === 0) return this.#whenDurable(this.#storedSeq);
    this.#buffered += batch.length;
    this.#storedSeq += batch.length;
    link.buffer.store(batch);
    // Blocks are cut within the rate backpressure allows, so a receiver that awaits store() slows down to it.
    this.#spend(batch.length);
    return this.#whenDurable(this.#storedSeq);
  }

  /** Tokens of the rate limit (a bucket holding one second at the rate), refilled by the clock. */
  #tokens: number | undefined;
  #refilledAt = 0;

  /** Takes `records` tokens; returns how long until the bucket is no longer in debt (ms). */
  #spend(records: number): number {
    const env = this.#link?.env;
    const limit = env?.rate.perSecond();
    if (env === undefined || limit === undefined) {
      this.#tokens = undefined;
      return 0;
    }
    const now = env.clock.now();
    const tokens = this.#tokens === undefined ? limit : Math.min(limit, this.#tokens + ((now - this.#refilledAt) * limit) / 1000);
    this.#tokens = tokens - records;
    this.#refilledAt = now;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / limit) * 1000);
  }

  /**
   * How long (ms of the app's clock) until what was stored is within the rate
   * backpressure allows (0: go on). A source that can pause (a socket) pauses that long.
   */
  protected get rateWaitMs(): number {
    return this.#spend(0);
  }

  #whenDurable(seq: number): Promise<void> {
    if (seq <= this.#durableSeq) return Promise.resolve();
    return handled(new Promise<void>((resolve, reject) => this.#waiters.push({ seq, resolve, reject })));
  }

  /** Records stored and not yet allocated to a batch (for backpressure). */
  get buffered(): number {
    return this.#buffered;
  }

  /** True once stopped. */
  isStopped(): boolean {
    return this.#stopped;
  }

  /**
   * Sets aside input that cannot be a record (bytes that are not valid UTF-8, a line
   * over its limit): it goes to the app's dead letters with the batch that takes the
   * records stored around it.
   */
  protected setAside(record: unknown, error: string): void {
    if (this.#link === undefined || this.#stopped) return;
    this.#asideSeq++;
    this.#link.buffer.setAside({ record, error });
  }

  /** Logs a problem without stopping. */
  reportError(message: string, error?: unknown): void {
    this.logger.warn(error === undefined ? {} : { reason: reasonOf(error) }, message);
  }

  /** Stops the whole app with SOURCE_FAILED. */
  fail(message: string, error?: unknown): void {
    this.#link?.env.fail(new SourceFailedError(`${this.#link.env.name}: ${message}`, { cause: error }));
  }

  /** @internal What the running context offers its sources (NATS connection, dead letters, ...). */
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

  /** @internal Letters set aside so far (a cut asked for now takes them all). */
  get asideSeq(): number {
    return this.#asideSeq;
  }

  #asideSeq = 0;

  /** @internal Records handed over so far (a cut asked for now takes exactly these). */
  get storedSeq(): number {
    return this.#storedSeq;
  }

  /** @internal The first `seq` records are in blocks written ahead: their store() promises resolve. */
  durableUpTo(seq: number): void {
    if (seq <= this.#durableSeq) return;
    this.#durableSeq = seq;
    const due = this.#waiters.filter((w) => w.seq <= seq);
    this.#waiters = this.#waiters.filter((w) => w.seq > seq);
    for (const w of due) w.resolve();
  }

  /** @internal Writing ahead failed or the receiver stopped first: waiting store() promises reject. */
  notStored(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
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
 * The input source of a receiver: the engine's buffer collects what it stores; every
 * block interval (and at each batch) what was collected is cut into a block and
 * written ahead (journaled when the app checkpoints) before its store() promises
 * resolve; a batch takes every block written since the last one.
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
      const blocks = new Map<string, ReceivedBlock>(env.recovery?.blocks ?? []);
      // Written ahead, not yet allocated (a stop or crash left them: they go first).
      let ready: ReceivedBlock[] = [...(env.recovery?.pending ?? [])];
      // Cut, not yet written (a write failed: retried before anything newer).
      const unwritten: ReceivedBlock[] = [];
      let cutSeq = 0;
      let asideCut = 0;
      let closed = false;
      /** Stopping: the last batch takes everything, whatever the rate. */
      let releasing = false;
      /** Records the rate allows in `ms` (at least one), or no limit. */
      const allowedIn = (ms: number): number => {
        const perSecond = releasing ? undefined : env.rate.perSecond();
        return perSecond === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor((perSecond * ms) / 1000));
      };
      const buffer = env.receiverHost.openBuffer(env.name, {
        received: (records) => env.received(records),
        drained: (records) => receiver.drained(records),
      });
      const flush = async (time: number): Promise<void> => {
        const aside = receiver.asideSeq;
        if (receiver.storedSeq !== cutSeq || aside !== asideCut) {
          // Every letter set aside before the cut is asked goes with it; records up to the rate's share of a block interval.
          asideCut = aside;
          const cut = await buffer.cut(time, allowedIn(env.blockIntervalMs));
          if (cut !== null) {
            unwritten.push(cut);
            cutSeq += cut.records.length;
          }
        }
        while (unwritten.length > 0) {
          await env.writeBlock(unwritten[0] as ReceivedBlock);
          ready.push(unwritten.shift() as ReceivedBlock);
        }
        receiver.durableUpTo(cutSeq);
      };
      // One cut at a time, each written before the next: blocks reach the log in the order their records came.
      let writing: Promise<void> = Promise.resolve();
      const serial = (time: number): Promise<void> => {
        const run = writing.then(() => flush(time));
        writing = run.catch(() => {});
        return run;
      };
      let failing = false;
      let cancelTimer: CancelTimer = () => {};
      const onBlockTimer = (): void => {
        if (closed) return;
        const at = env.clock.now();
        if (receiver.storedSeq !== cutSeq || receiver.asideSeq !== asideCut || unwritten.length > 0) {
          serial(at).then(
            () => {
              if (failing) env.logger.info({ stream: env.name }, 'writing received blocks ahead works again');
              failing = false;
            },
            (error: unknown) => {
              if (!failing)
                env.logger.warn({ stream: env.name, reason: reasonOf(error) }, 'writing a received block ahead failed; retrying');
              failing = true;
            },
          );
        }
        cancelTimer = env.clock.setTimer(at + env.blockIntervalMs, onBlockTimer);
      };
      cancelTimer = env.clock.setTimer(env.clock.now() + env.blockIntervalMs, onBlockTimer);
      await receiver.attach({ buffer, env });
      const release = async (): Promise<boolean> => {
        releasing = true;
        await receiver.detach();
        await serial(env.clock.now()).catch(() => {});
        receiver.notStored(new InvalidStateError(`${env.name}: stopped before the records could be written ahead`));
        return ready.length > 0 || unwritten.length > 0;
      };
      return {
        async allocate(time) {
          await serial(time);
          // Within the rate (at least one block): what is left goes to the next batches, already written ahead.
          const cap = allowedIn(env.batchDurationMs);
          let count = 0;
          let n = 0;
          while (n < ready.length && (n === 0 || count + (ready[n] as ReceivedBlock).records.length <= cap)) {
            count += (ready[n] as ReceivedBlock).records.length;
            n++;
          }
          const taken = ready.slice(0, n);
          ready = ready.slice(n);
          for (const b of taken) blocks.set(b.id, b);
          env.rate.allocated(
            time,
            taken.reduce((n, b) => n + b.records.length, 0),
          );
          return { type: 'blocks', ids: taken.map((b) => b.id) };
        },
        stopReceiving: release,
        async read(allocation, setAside) {
          assert(allocation.type === 'blocks', `${env.name} cannot read a ${allocation.type} allocation`);
          const out: T[] = [];
          for (const id of allocation.ids) {
            const block = blocks.get(id);
            if (block === undefined) throw new Error(`${env.name}: received block ${id} is missing from the write-ahead log`);
            blocks.delete(id);
            for (const r of block.records) out.push(r as T);
            for (const l of block.letters ?? []) setAside?.(l);
          }
          return out;
        },
        async close() {
          closed = true;
          cancelTimer();
          // What was accepted and not yet in a batch stays written ahead: the next start allocates it first.
          await release();
        },
      };
    },
  };
}
