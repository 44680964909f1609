/**
 * StreamingContext: where an app declares its sources and operators, and what
 * starts, runs and stops them.
 */

import { promises as fs } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Checkpointer, CheckpointSettings, CheckpointStats } from '../../actors/checkpointer.ts';
import { type BatchInfo, Driver } from '../../actors/driver.ts';
import { type Reply, type StateMessage, unwrap } from '../../actors/messages.ts';
import { type GeneratorStreamOptions, generatorSource } from '../../actors/receivers/generator.ts';
import { type JetStreamStreamOptions, jetstreamSource } from '../../actors/receivers/jetstream.ts';
import { type NatsStreamOptions, natsSource } from '../../actors/receivers/nats.ts';
import { type QueueStreamOptions, queueSource } from '../../actors/receivers/queue.ts';
import { type Receiver, receiverSource } from '../../actors/receivers/receiver.ts';
import { actorReceiverHost } from '../../actors/receivers/receiver-host.ts';
import { type SocketTextStreamOptions, socketTextSource } from '../../actors/receivers/socket.ts';
import { type TextFileStreamOptions, textFileSource } from '../../actors/receivers/text-file.ts';
import { type OpenedCheckpoint, openCheckpoint } from '../../actors/recovery.ts';
import { type ActorRef, type ActorSystem, ask, spawnActor, startActorSystem, stopActor } from '../../actors/system.ts';
import type { Journal } from '../../journal/journal.ts';
import { type CancelTimer, type Clock, SystemClock } from '../base/clock.ts';
import { checkDuration } from '../base/durations.ts';
import { InvalidConfigError, InvalidStateError } from '../base/errors.ts';
import { createLogger, type Logger } from '../base/logger.ts';
import { ManualClock } from '../base/manual-clock.ts';
import { stableKeys } from '../graph/fingerprint.ts';
import type { GraphNode } from '../graph/graph.ts';
import { GraphBuilder } from '../graph/graph-builder.ts';
import type { InputSource, OpenInput, SourceEnv } from '../graph/input-source.ts';
import { partitionOf } from '../graph/partitioner.ts';
import { compilePlan } from '../graph/plan.ts';
import { connectNats, isNatsUrl, type NatsOptions, parseNatsUrl } from '../nats/nats-connection.ts';
import { DStream, transformStreams, unionStreams } from './dstream.ts';

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
  /** Every n-th snapshot of a state partition is full, the others incremental (default 5). */
  readonly snapshotFullEvery?: number;
  /**
   * NATS for sources and sinks (natsStream, jetstreamStream, toJetStream); by default
   * the checkpoint's NATS URL when checkpoints are in JetStream.
   */
  readonly nats?: NatsOptions & { readonly url: string };
}

/** Callbacks about the running app (Spark's StreamingListener). */
export interface StreamingListener {
  /** A batch was generated (its input allocated) and queued to run. */
  onBatchSubmitted?(info: { readonly time: number }): void;
  /** A batch left the queue and began to run, `schedulingDelayMs` after its time. */
  onBatchStarted?(info: { readonly time: number; readonly schedulingDelayMs: number }): void;
  /** A checkpoint was committed (its snapshots stored, then journaled). */
  onCheckpointCompleted?(stats: CheckpointStats): void;
  /** A record could not be decoded and went to a dead-letter subject; `total` counts them. */
  onDeadLetter?(info: { readonly stream: string; readonly subject: string; readonly error: string; readonly total: number }): void;
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
/** Spark's default checkpoint interval: the smallest multiple of the batch duration >= 10 s. */
const DEFAULT_CHECKPOINT_MS = 10_000;
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
  readonly logger: Logger;
  #clock: Clock;
  /** @internal */
  readonly graph: GraphBuilder;
  #config: StreamingContextConfig;
  #lifecycle: Lifecycle = 'initialized';
  #checkpointDir: string | undefined;
  #createOnError = false;
  #natsOptions: NatsOptions = {};
  #nats: Promise<NatsConnection> | undefined;
  #deadLetters = 0;
  #checkpointer: Checkpointer | undefined;
  #journal: Journal | undefined;
  #opened: OpenedCheckpoint | undefined;
  #keys: Map<number, string> | undefined;
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
    this.#clock = config.clock ?? new SystemClock();
    this.logger = config.logger ?? createLogger(config.appName);
    this.graph = new GraphBuilder(this.batchDurationMs, partitions);
    this.graph.appName = config.appName;
    this.graph.nats = () => this.#natsConnection();
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

  /**
   * Records from a core NATS subject, through the write-ahead log (nothing the
   * receiver accepted is lost). Undecodable messages go to a dead-letter subject.
   */
  natsStream<T = string>(subject: string, options: NatsStreamOptions<T> = {}): DStream<T> {
    return this.#input('natsStream', natsSource(subject, options));
  }

  /**
   * Records of a JetStream stream, read directly: each batch is a journaled sequence
   * range, and a replay reads the same range.
   */
  jetstreamStream<T = string>(options: JetStreamStreamOptions<T>): DStream<T> {
    return this.#input('jetstreamStream', jetstreamSource(options));
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

  /**
   * Sets where checkpoints live: a directory (the embedded file journal) or a NATS
   * URL (`nats://host:port[,host:port][?replicas=3]`: the journal in a JetStream
   * stream, snapshots in an object store bucket). A start with an existing journal
   * resumes from it.
   */
  checkpoint(location: string, options: NatsOptions = {}): void {
    this.graph.assertOpen('checkpoint');
    if (typeof location !== 'string' || location.length === 0) {
      throw new InvalidConfigError('checkpoint needs a directory or a nats:// URL');
    }
    if (isNatsUrl(location)) parseNatsUrl(location, options);
    else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
      throw new InvalidConfigError(`checkpoint ${location}: use a local directory or a nats:// URL`);
    }
    this.#checkpointDir = location;
    this.#natsOptions = options;
  }

  /** Where time comes from. */
  get clock(): Clock {
    return this.#clock;
  }

  /**
   * Spark's recovery entry point: always calls `factory` (closures cannot be stored),
   * points the context at `checkpoint`, and `start()` then resumes from it: graph
   * checked, states restored, journaled batches replayed, downtime batches generated.
   * With `createOnError`, an unreadable checkpoint is moved aside and the app starts
   * afresh instead of failing with CORRUPT_CHECKPOINT.
   *
   * @example
   * const ssc = await StreamingContext.getOrCreate('./ckpt', () => buildApp());
   * await ssc.start();
   */
  static async getOrCreate(
    checkpoint: string,
    factory: () => StreamingContext | Promise<StreamingContext>,
    options: { readonly clock?: Clock; readonly createOnError?: boolean } = {},
  ): Promise<StreamingContext> {
    const ssc = await factory();
    if (!(ssc instanceof StreamingContext)) throw new InvalidConfigError('getOrCreate: the factory must return a StreamingContext');
    if (ssc.#lifecycle !== 'initialized') throw new InvalidStateError('getOrCreate: the factory must not start the context');
    if (ssc.#checkpointDir !== undefined && ssc.#checkpointDir !== checkpoint) {
      throw new InvalidConfigError(`getOrCreate: the factory set checkpoint ${ssc.#checkpointDir}, not ${checkpoint}`);
    }
    ssc.#checkpointDir = checkpoint;
    if (options.clock) ssc.#clock = options.clock;
    ssc.#createOnError = options.createOnError === true;
    return ssc;
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
    const keys = stableKeys(this.graph.nodes, this.graph.outputs);
    this.#keys = keys;
    const now = this.clock.now();
    this.#zeroTimeMs = Math.floor(now / this.batchDurationMs) * this.batchDurationMs;
    this.#lastTickMs = this.#zeroTimeMs;
    if (this.#checkpointDir !== undefined) {
      try {
        this.#opened = await this.#openCheckpoint(plan, keys, now);
      } catch (error) {
        this.#lifecycle = 'stopped';
        this.#error = error as Error;
        this.#terminate.reject(this.#error);
        throw error;
      }
      this.#journal = this.#opened.journal;
      this.#checkpointer = this.#opened.checkpointer;
      this.#zeroTimeMs = this.#opened.zeroTimeMs;
      this.#lastTickMs = this.#opened.lastBatchMs;
    }
    this.#lifecycle = 'active';
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
      keys,
      checkpointer: this.#checkpointer,
      restored: this.#opened?.restored,
      replay: this.#opened?.replay,
      listener: {
        checkpointCompleted: (stats) => this.#notify((l) => l.onCheckpointCompleted?.(stats)),
        batchSubmitted: (time) => this.#notify((l) => l.onBatchSubmitted?.({ time })),
        batchStarted: (time, schedulingDelayMs) => this.#notify((l) => l.onBatchStarted?.({ time, schedulingDelayMs })),
        batchCompleted: (info) => this.#batchCompleted(info),
        failed: (error) => void this.#fail(error),
      },
    });
    // Batches of the downtime (between the last journaled batch and now) run first.
    let next = this.#lastTickMs + this.batchDurationMs;
    for (; next <= this.clock.now(); next += this.batchDurationMs) {
      this.#lastTickMs = next;
      this.#driver.tick(next);
    }
    this.#armTimer(next);
  }

  async #openCheckpoint(plan: ReturnType<typeof compilePlan>, keys: Map<number, string>, now: number): Promise<OpenedCheckpoint> {
    const dir = this.#checkpointDir as string;
    const open = () =>
      openCheckpoint({
        dir,
        nats: this.#natsOptions,
        appName: this.appName,
        batchDurationMs: this.batchDurationMs,
        nowMs: now,
        nodes: this.graph.nodes,
        outputs: this.graph.outputs,
        plan,
        keys,
        settings: this.#checkpointSettings(plan),
        logger: this.logger,
      });
    try {
      return await open();
    } catch (error) {
      // Moving aside is for directories; a JetStream checkpoint is never deleted implicitly.
      if (!this.#createOnError || isNatsUrl(dir) || (error as { code?: string }).code !== 'CORRUPT_CHECKPOINT') throw error;
      const aside = `${dir}.corrupt-${process.pid}-${this.clock.now()}`;
      this.logger.warn({ err: error, movedTo: aside }, 'checkpoint unreadable: moved aside, starting afresh (createOnError)');
      await fs.rename(dir, aside);
      return open();
    }
  }

  /** The shared NATS connection of sources and sinks, opened on first use. */
  #natsConnection(): Promise<NatsConnection> {
    if (this.#nats === undefined) {
      const configured = this.#config.nats;
      const url =
        configured?.url ?? (this.#checkpointDir !== undefined && isNatsUrl(this.#checkpointDir) ? this.#checkpointDir : undefined);
      if (url === undefined) {
        return Promise.reject(
          new InvalidConfigError('NATS sources and sinks need { nats: { url } } in the config or a nats:// checkpoint'),
        );
      }
      this.#nats = connectNats(parseNatsUrl(url, configured ?? this.#natsOptions), `tributary-${this.appName}-io`);
      this.#nats.catch(() => {});
    }
    return this.#nats;
  }

  /**
   * Reads the live state of the stateful operator named `uid`, consistent as of the
   * last completed batch (a batch in progress is not visible).
   *
   * @example
   * const n = await ssc.state<string, number>('totals').get('word');
   */
  state<K, S>(uid: string): { get(key: K): Promise<S | undefined> } {
    const node = this.graph.nodes.find((n) => n.uid === uid);
    if (node === undefined || node.kind !== 'stateful') {
      throw new InvalidConfigError(`no stateful operator has uid ${JSON.stringify(uid)}: set one with .uid(name)`);
    }
    return {
      get: async (key: K) => {
        const driver = this.#driver;
        if (driver === undefined || this.#lifecycle !== 'active')
          throw new InvalidStateError(`state(${uid}) read on a ${this.#lifecycle} context`);
        const ref = driver.stateRefs(node.id)[partitionOf(key, node.partitions)];
        if (ref === undefined) throw new InvalidStateError(`state(${uid}) is not running (no output uses it)`);
        const reply = await ask<StateMessage, Reply<unknown>>(ref, (replyTo) => ({ type: 'state.lookup', replyTo, key }), 30_000);
        return unwrap(reply) as S | undefined;
      },
    };
  }

  /** Number of records sent to dead-letter subjects so far. */
  get deadLetters(): number {
    return this.#deadLetters;
  }

  /** Checkpoint interval: the smallest one set on a stateful stream, else Spark's default. */
  #checkpointSettings(plan: ReturnType<typeof compilePlan>): CheckpointSettings {
    const explicit = plan.stateful.map((n) => n.checkpointIntervalMs).filter((ms): ms is number => ms !== undefined);
    const d = this.batchDurationMs;
    const intervalMs = explicit.length > 0 ? Math.min(...explicit) : Math.ceil(DEFAULT_CHECKPOINT_MS / d) * d;
    return { intervalMs, fullEvery: this.#config.snapshotFullEvery ?? 5, keepCheckpoints: 2 };
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
    if (this.#checkpointer && this.#driver && !this.#error) {
      // A graceful stop leaves a checkpoint of the last batch: nothing to replay next time.
      await this.#driver.finalCheckpoint();
      await this.#checkpointer.stopped(this.#driver.lastCompleted ?? this.#zeroTimeMs);
    }
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
    this.#journal?.abandon();
    this.#journal = undefined;
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

  /** `initialized`, `active` or `stopped` (Spark's `getState()`). */
  get lifecycle(): Lifecycle {
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

  #sourceEnv(node: GraphNode): SourceEnv {
    const key = this.#keys?.get(node.id) ?? node.name;
    const checkpointer = this.#checkpointer;
    const recovery = this.#opened?.inputs.get(node.id);
    return {
      ...(recovery ? { recovery } : {}),
      receiverHost: actorReceiverHost(this.#root as ActorRef<never>),
      clock: this.clock,
      logger: this.logger,
      name: node.name,
      batchDurationMs: this.batchDurationMs,
      zeroTimeMs: this.#zeroTimeMs,
      fail: (error: Error) => void this.#fail(error),
      nats: () => this.#natsConnection(),
      deadLetter: ({ subject, error }) => {
        const total = ++this.#deadLetters;
        this.logger.warn({ stream: node.name, subject, error, total }, 'record sent to the dead-letter subject');
        this.#notify((l) => l.onDeadLetter?.({ stream: node.name, subject, error, total }));
      },
      writeBlock: checkpointer ? (block) => checkpointer.blockReceived(key, block) : async () => {},
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
    const nats = this.#nats;
    this.#nats = undefined;
    if (nats) await nats.then((nc) => nc.drain()).catch(() => {});
    const journal = this.#journal;
    this.#journal = undefined;
    if (journal) {
      await this.#checkpointer?.drain();
      await journal.close().catch((error: unknown) => this.logger.error({ err: error }, 'closing the journal failed'));
    }
    if (this.#root) stopActor(this.#root);
    if (this.#system && this.#config.actorSystem === undefined) stopActor(this.#system);
    this.#root = undefined;
  }
}
