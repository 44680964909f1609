/**
 * StreamingContext: where an app declares its sources and operators, and what
 * starts, runs and stops them.
 */
import { type BatchInfo, Driver } from '../actors/driver.ts';
import { type GeneratorStreamOptions, generatorSource } from '../actors/receivers/generator.ts';
import { type QueueStreamOptions, queueSource } from '../actors/receivers/queue.ts';
import { type Receiver, receiverSource } from '../actors/receivers/receiver.ts';
import { type SocketTextStreamOptions, socketTextSource } from '../actors/receivers/socket.ts';
import { type TextFileStreamOptions, textFileSource } from '../actors/receivers/text-file.ts';
import { type ActorRef, type ActorSystem, spawnActor, startActorSystem, stopActor } from '../actors/system.ts';
import { type CancelTimer, type Clock, SystemClock } from './clock.ts';
import { DStream, transformStreams, unionStreams } from './dstream.ts';
import { checkDuration } from './durations.ts';
import { InvalidConfigError, InvalidStateError } from './errors.ts';
import type { GraphNode } from './graph.ts';
import { GraphBuilder } from './graph-builder.ts';
import type { InputSource, OpenInput } from './input-source.ts';
import { createLogger, type Logger } from './logger.ts';
import { ManualClock } from './manual-clock.ts';
import { compilePlan } from './plan.ts';

/** How a context is configured. */
export interface StreamingContextConfig {
  /** Names the app in logs (and, later, its journal). */
  readonly appName: string;
  /** Time between batches, in ms. */
  readonly batchDuration: number;
  /** Default number of partitions of inputs and keyed operators (default 2). */
  readonly partitions?: number;
  /** Where time comes from (default: the wall clock). */
  readonly clock?: Clock;
  /** An actor system of the host app to run inside (default: a new one). */
  readonly actorSystem?: ActorSystem;
  /** Structured logger (default: pino at TRIBUTARY_LOG_LEVEL, `warn`). */
  readonly logger?: Logger;
  /** Safety limit for one task of one batch (default 10 minutes). */
  readonly taskTimeoutMs?: number;
}

/** Callbacks about the running app (Spark's StreamingListener). */
export interface StreamingListener {
  /** A batch was generated (its input allocated) and queued to run. */
  onBatchSubmitted?(info: { readonly time: number }): void;
  /** A batch left the queue and began to run, `schedulingDelayMs` after its time. */
  onBatchStarted?(info: { readonly time: number; readonly schedulingDelayMs: number }): void;
  onBatchCompleted?(info: BatchInfo): void;
  /** A receiver accepted `records` records for the input stream `stream` (e.g. `socketTextStream#1`). */
  onRecordsReceived?(info: { readonly stream: string; readonly records: number }): void;
  onError?(error: Error): void;
}

type Lifecycle = 'initialized' | 'active' | 'stopped';

interface Waiter {
  readonly time: number;
  resolve(): void;
  reject(error: Error): void;
}

const PARTITIONS_MAX = 1024;
let contextSeq = 0;

/**
 * The entry point of a streaming app.
 *
 * @example
 * const ssc = new StreamingContext({ appName: 'wc', batchDuration: seconds(1) });
 * ssc.socketTextStream('127.0.0.1', 9999).flatMap((l) => l.split(' ')).countByValue().print();
 * await ssc.start();
 * await ssc.awaitTermination();
 */
export class StreamingContext {
  readonly appName: string;
  readonly batchDurationMs: number;
  readonly partitions: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** @internal */
  readonly graph: GraphBuilder;
  #config: StreamingContextConfig;
  #lifecycle: Lifecycle = 'initialized';
  #checkpointDir: string | undefined;
  #listeners: StreamingListener[] = [];
  #inputs = new Map<number, OpenInput<unknown>>();
  #system: ActorSystem | undefined;
  #root: ActorRef<never> | undefined;
  #driver: Driver | undefined;
  #cancelTimer: CancelTimer | undefined;
  #zeroTimeMs = 0;
  #lastTickMs = 0;
  #completedMs = Number.NEGATIVE_INFINITY;
  #waiters: Waiter[] = [];
  #error: Error | undefined;
  #terminated: Promise<void>;
  #terminate!: { resolve(): void; reject(error: Error): void };

  constructor(config: StreamingContextConfig) {
    if (config === null || typeof config !== 'object') throw new InvalidConfigError('StreamingContext needs a config object');
    if (typeof config.appName !== 'string' || !/^[A-Za-z0-9_-]+$/.test(config.appName)) {
      throw new InvalidConfigError(`appName must be letters, digits, '-' or '_', got ${JSON.stringify(config.appName)}`);
    }
    this.appName = config.appName;
    this.batchDurationMs = checkDuration('batchDuration', config.batchDuration);
    const partitions = config.partitions ?? 2;
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
      throw new InvalidConfigError(`partitions must be a whole number from 1 to ${PARTITIONS_MAX}, got ${String(partitions)}`);
    }
    if (config.taskTimeoutMs !== undefined) checkDuration('taskTimeoutMs', config.taskTimeoutMs);
    this.partitions = partitions;
    this.clock = config.clock ?? new SystemClock();
    this.logger = config.logger ?? createLogger(config.appName);
    this.graph = new GraphBuilder(this.batchDurationMs, partitions);
    this.#config = config;
    this.#terminated = new Promise<void>((resolve, reject) => {
      this.#terminate = { resolve, reject };
    });
    // The app may never await termination; a failure must not become an unhandled rejection.
    this.#terminated.catch(() => {});
  }

  // ---- sources ------------------------------------------------------------------

  /** A stream of the batches in `queue`, one per tick (the array may grow while running). */
  queueStream<T>(queue: readonly (readonly T[])[], options: QueueStreamOptions<T> = {}): DStream<T> {
    if (!Array.isArray(queue)) throw new InvalidConfigError('queueStream needs an array of batches');
    return this.#input('queueStream', queueSource(queue, options));
  }

  /** A deterministic stream of generated records (demos, benchmarks, chaos runs). */
  generatorStream<T = string>(options: GeneratorStreamOptions<T>): DStream<T> {
    return this.#input('generatorStream', generatorSource(options));
  }

  /** Lines of text read from a TCP server; reconnects when the connection drops. */
  socketTextStream(host: string, port: number, options: SocketTextStreamOptions = {}): DStream<string> {
    return this.#input('socketTextStream', socketTextSource(host, port, options));
  }

  /** Lines of the files that appear in `directory` after the start (hidden and temp files ignored). */
  textFileStream(directory: string, options: TextFileStreamOptions = {}): DStream<string> {
    return this.#input('textFileStream', textFileSource(directory, options));
  }

  /** Records a custom receiver `store()`s. */
  receiverStream<T>(receiver: Receiver<T>): DStream<T> {
    return this.#input('receiverStream', receiverSource(receiver));
  }

  /** The records of all `streams`, batch by batch. */
  union<T>(streams: DStream<T>[]): DStream<T> {
    return unionStreams(this.graph, streams);
  }

  /** `f` sees the batches of all `streams` of one time and returns a new batch. */
  transform<U>(streams: DStream<unknown>[], f: (batches: unknown[][], time: number) => U[]): DStream<U> {
    return transformStreams(this.graph, streams, 'transform', f);
  }

  /** Sets the checkpoint location (a directory). */
  checkpoint(directory: string): void {
    this.graph.assertOpen('checkpoint');
    if (typeof directory !== 'string' || directory.length === 0) {
      throw new InvalidConfigError('checkpoint needs a directory');
    }
    this.#checkpointDir = directory;
  }

  /** Registers a listener for batch completions and errors. */
  addStreamingListener(listener: StreamingListener): void {
    this.#listeners.push(listener);
  }

  // ---- lifecycle ----------------------------------------------------------------

  /** Starts receiving and processing. The graph can no longer change. */
  async start(): Promise<void> {
    if (this.#lifecycle !== 'initialized') throw new InvalidStateError(`start() called on a ${this.#lifecycle} context`);
    this.graph.freeze();
    const plan = compilePlan(this.graph.nodes, this.graph.outputs);
    if (plan.stateful.length > 0 && this.#checkpointDir === undefined) {
      this.logger.warn(
        { operators: plan.stateful.map((n) => n.name) },
        'stateful operators run without ssc.checkpoint(dir): their state will not survive a restart',
      );
    }
    this.#lifecycle = 'active';
    const now = this.clock.now();
    this.#zeroTimeMs = Math.floor(now / this.batchDurationMs) * this.batchDurationMs;
    this.#lastTickMs = this.#zeroTimeMs;
    this.#system = this.#config.actorSystem ?? startActorSystem();
    const root = spawnActor<null, never>(this.#system, `tributary-${this.appName}-${++contextSeq}`, null, (s) => s);
    this.#root = root;
    try {
      for (const node of plan.inputs) {
        if (node.kind !== 'input') continue;
        this.#inputs.set(node.id, await node.source.open(this.#sourceEnv(node)));
      }
    } catch (error) {
      await this.#shutdown();
      this.#lifecycle = 'stopped';
      // The context ends here: awaitTermination() must not wait for a start that failed.
      this.#error = error as Error;
      this.#terminate.reject(this.#error);
      throw error;
    }
    this.#driver = new Driver(root, {
      plan,
      clock: this.clock,
      zeroTimeMs: this.#zeroTimeMs,
      stagePoolSize: this.partitions,
      taskTimeoutMs: this.#config.taskTimeoutMs ?? 600_000,
      inputs: this.#inputs,
      listener: {
        batchSubmitted: (time) => this.#notify((l) => l.onBatchSubmitted?.({ time })),
        batchStarted: (time, schedulingDelayMs) => this.#notify((l) => l.onBatchStarted?.({ time, schedulingDelayMs })),
        batchCompleted: (info) => this.#batchCompleted(info),
        failed: (error) => void this.#fail(error),
      },
    });
    this.#armTimer(this.#zeroTimeMs + this.batchDurationMs);
  }

  /**
   * ManualClock only: advances the clock by `n` batch durations and resolves when
   * those batches (outputs included) completed.
   */
  async runBatches(n: number): Promise<void> {
    if (!(this.clock instanceof ManualClock)) {
      throw new InvalidStateError('runBatches() needs a ManualClock: pass { clock: new ManualClock() } to the StreamingContext');
    }
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidConfigError(`runBatches needs a whole number >= 0, got ${n}`);
    if (this.#lifecycle !== 'active') throw new InvalidStateError(`runBatches() called on a ${this.#lifecycle} context`);
    if (this.#error) throw this.#error;
    const target = this.#lastTickMs + n * this.batchDurationMs;
    const done = this.#waitFor(target);
    this.clock.advance(Math.max(0, target - this.clock.now()));
    await done;
  }

  /** Stops gracefully: batches already generated finish, then sources and actors stop. */
  async stop(): Promise<void> {
    if (this.#lifecycle === 'stopped') return;
    if (this.#lifecycle === 'initialized') {
      this.#lifecycle = 'stopped';
      this.#terminate.resolve();
      return;
    }
    this.#lifecycle = 'stopped';
    this.#cancelTimer?.();
    await this.#driver?.whenIdle();
    await this.#shutdown();
    if (this.#error) this.#terminate.reject(this.#error);
    else this.#terminate.resolve();
  }

  /** Abandons everything at once, as a `kill -9` would (for tests of recovery). */
  crash(): void {
    if (this.#lifecycle === 'stopped') return;
    this.#lifecycle = 'stopped';
    this.#cancelTimer?.();
    this.#driver?.abandon();
    void this.#shutdown();
    this.#rejectWaiters(new InvalidStateError('the context crashed'));
    this.#terminate.resolve();
  }

  /** Resolves when the context stops; rejects with the error that stopped it. */
  awaitTermination(): Promise<void> {
    return this.#terminated.then(() => undefined);
  }

  /** The first batch time is `zeroTime + batchDuration`. */
  get zeroTime(): number {
    return this.#zeroTimeMs;
  }

  /** `initialized`, `active` or `stopped`. */
  get state(): Lifecycle {
    return this.#lifecycle;
  }

  // ---- internals ----------------------------------------------------------------

  #input<T>(operator: string, source: InputSource<T>): DStream<T> {
    const node = this.graph.add({
      kind: 'input',
      operator,
      source,
      parents: [],
      slideMs: this.batchDurationMs,
      partitions: this.partitions,
      params: source.params,
    });
    return new DStream<T>(this.graph, node as GraphNode);
  }

  #sourceEnv(node: GraphNode) {
    return {
      system: this.#system as ActorSystem,
      parent: this.#root as ActorRef<never>,
      clock: this.clock,
      logger: this.logger,
      name: node.name,
      batchDurationMs: this.batchDurationMs,
      zeroTimeMs: this.#zeroTimeMs,
      fail: (error: Error) => void this.#fail(error),
      writeBlock: async () => {},
      received: (records: number) => {
        for (const l of this.#listeners) l.onRecordsReceived?.({ stream: node.name, records });
      },
    };
  }

  #armTimer(atMs: number): void {
    this.#cancelTimer = this.clock.setTimer(atMs, () => {
      if (this.#lifecycle !== 'active' || this.#driver === undefined) return;
      this.#lastTickMs = atMs;
      this.#driver.tick(atMs);
      this.#armTimer(atMs + this.batchDurationMs);
    });
  }

  #waitFor(timeMs: number): Promise<void> {
    if (timeMs <= this.#completedMs || timeMs <= this.#zeroTimeMs) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ time: timeMs, resolve, reject }));
  }

  #batchCompleted(info: BatchInfo): void {
    this.#completedMs = info.time;
    const due = this.#waiters.filter((w) => w.time <= info.time);
    this.#waiters = this.#waiters.filter((w) => w.time > info.time);
    this.#notify((l) => l.onBatchCompleted?.(info));
    for (const w of due) w.resolve();
  }

  /** Calls every listener; one that throws is logged and does not stop the others. */
  #notify(call: (listener: StreamingListener) => void): void {
    for (const l of this.#listeners) {
      try {
        call(l);
      } catch (error) {
        this.logger.error({ err: error }, 'a streaming listener threw');
      }
    }
  }

  #rejectWaiters(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
  }

  async #fail(error: Error): Promise<void> {
    if (this.#error) return;
    this.#error = error;
    this.logger.error({ err: error }, 'streaming context stopped by an error');
    for (const l of this.#listeners) l.onError?.(error);
    this.#rejectWaiters(error);
    if (this.#lifecycle === 'active') {
      this.#lifecycle = 'stopped';
      this.#cancelTimer?.();
      await this.#shutdown();
      this.#terminate.reject(error);
    }
  }

  async #shutdown(): Promise<void> {
    const inputs = [...this.#inputs.values()];
    this.#inputs.clear();
    await Promise.allSettled(inputs.map((i) => i.close()));
    if (this.#root) stopActor(this.#root);
    if (this.#system && this.#config.actorSystem === undefined) stopActor(this.#system);
    this.#root = undefined;
  }
}
