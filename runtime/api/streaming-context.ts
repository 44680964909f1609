/**
 * StreamingContext: where an app declares its sources and operators, and what
 * starts, runs and stops them.
 */

import { promises as fs } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { STALL_MS_DEFAULT } from '../../actors/batch-coordinator.ts';
import type { Checkpointer, CheckpointSettings, CheckpointStats } from '../../actors/checkpointer.ts';
import { type DriverLease, holdDriverLease, type JoinedCluster, joinCluster } from '../../actors/cluster-driver.ts';
import { type BatchInfo, Driver } from '../../actors/driver.ts';
import type { FailedOverInfo, RebalancedInfo } from '../../actors/reassignment.ts';
import { type GeneratorStreamOptions, generatorSource } from '../../actors/receivers/generator.ts';
import { type JetStreamStreamOptions, jetstreamSource } from '../../actors/receivers/jetstream.ts';
import { type NatsStreamOptions, natsSource } from '../../actors/receivers/nats.ts';
import { type QueueStreamOptions, queueSource } from '../../actors/receivers/queue.ts';
import { type Receiver, receiverSource } from '../../actors/receivers/receiver.ts';
import { actorReceiverHost } from '../../actors/receivers/receiver-host.ts';
import { type SocketTextStreamOptions, socketTextSource } from '../../actors/receivers/socket.ts';
import { type TextFileStreamOptions, textFileSource } from '../../actors/receivers/text-file.ts';
import { appendBlock, ensureWal, type WalNames, walAllocation, walNames, walRecords } from '../../actors/receivers/wal.ts';
import { type OpenedCheckpoint, openCheckpoint } from '../../actors/recovery.ts';
import { type ActorRef, type ActorSystem, spawnActor, startActorSystem, stopActor } from '../../actors/system.ts';
import type { TransportStats } from '../../actors/transport/nats.ts';
import type { AssignmentWire } from '../../actors/transport/transport.ts';
import { Worker } from '../../actors/worker/worker.ts';
import type { Journal } from '../../journal/journal.ts';
import { JetStreamSnapshotStore } from '../../snapshots/jetstream-snapshot-store.ts';
import { type CancelTimer, type Clock, SystemClock } from '../base/clock.ts';
import { checkDuration } from '../base/durations.ts';
import { InvalidConfigError, InvalidStateError } from '../base/errors.ts';
import { createLogger, type Logger } from '../base/logger.ts';
import type { ManualClock } from '../base/manual-clock.ts';
import { fingerprintOf, stableKeys } from '../graph/fingerprint.ts';
import type { DeadLetter, GraphNode, RecordErrorPolicy } from '../graph/graph.ts';
import { GraphBuilder } from '../graph/graph-builder.ts';
import type { InputSource, OpenInput, SourceEnv } from '../graph/input-source.ts';
import { compilePlan } from '../graph/plan.ts';
import { type PidOptions, RateController, type RateLimit, UNLIMITED } from '../graph/rate-controller.ts';
import type { Allocation } from '../graph/wire.ts';
import { connectNats, isNatsUrl, type NatsOptions, parseNatsUrl, redactNatsUrl } from '../nats/nats-connection.ts';
import { parseUiAddress, type UiAddress, type UiOption } from '../ui/ui-address.ts';
import { startWebUi, type WebUi } from '../ui/web-ui.ts';
import { CHAOS_HARNESS, type ChaosHarness, harnessOutputs, stateDigests } from './chaos-harness.ts';
import { checkRecordErrorPolicy, DStream, transformStreams, unionStreams } from './dstream.ts';
import { type DeadLetterWriter, deadLetterWriter } from './record-dead-letters.ts';
import { withReplayFault } from './test-faults.ts';

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
  readonly nats?: NatsOptions & {
    /** `nats://host:port[,host:port]`, with credentials and TLS as in checkpoint URLs. */
    readonly url: string;
  };
  /** Run the batches on worker processes over NATS (see {@link StreamingContext.cluster}). */
  readonly cluster?: ClusterConfig;
  /**
   * What a record that makes a user function of `map`, `filter`, `flatMap`,
   * `mapValues`, `flatMapValues` or a keyed reduce throw does (`DStream.onRecordError`
   * sets it per operator): `fail` (default) fails the batch; `dead-letter` sets the
   * record aside with the operator, the batch time and the error, and the batch goes
   * on. Replays decide the same (user functions are deterministic), so state stays
   * exactly-once. Dead letters go to `<checkpoint>/dead-letters/<time>.jsonl`, or with
   * a `nats://` checkpoint to the subject `tributary.<app>.dead-letters`.
   */
  readonly onRecordError?: RecordErrorPolicy;
  /**
   * How often receivers (`socketTextStream`, `natsStream`, `receiverStream`) cut what
   * they accepted into a block and write it ahead to the journal, in ms (default 200,
   * or the batch duration when shorter; Spark's `spark.streaming.blockInterval`). A
   * crash loses at most what a receiver accepted within one block interval; a
   * receiver that awaits `store()` before acknowledging its source loses nothing.
   */
  readonly blockIntervalMs?: number;
  /**
   * Backpressure (Spark's `spark.streaming.backpressure.enabled`): receivers and
   * `jetstreamStream` take at most the rate the last batches show the app can process
   * in time (Spark's PID rate estimator), so a source faster than the app keeps the
   * scheduling delay bounded instead of growing. `true`, or options: `initialRate`
   * (records per second before the first estimate; default none: the first batch
   * takes what is there), the PID gains and `minRate` (default 100 records/s).
   */
  readonly backpressure?: boolean | BackpressureOptions;
  /**
   * The most records per second, per partition of the input, that receivers and
   * `jetstreamStream` take (Spark's `maxRatePerPartition`), with or without backpressure.
   */
  readonly maxRatePerPartition?: number;
  /**
   * Serve a web UI (live charts and tables) and Prometheus `/metrics` at this address
   * while the app runs: `'127.0.0.1:4040'`, `':4040'` or `4040` (host 127.0.0.1), port 0
   * for a free one (see {@link StreamingContext.uiAddress}).
   */
  readonly ui?: UiOption;
}

/** Options of backpressure (see {@link StreamingContextConfig.backpressure}). */
export interface BackpressureOptions extends PidOptions {
  /** Records per second an input takes before the first estimate (default: no limit). */
  readonly initialRate?: number;
}

/** Where and on how many workers an app runs as a cluster. */
export interface ClusterConfig {
  /** NATS URL of the cluster (credentials and TLS as in checkpoint URLs). */
  readonly nats: string;
  /** Live workers the driver waits for before the first batch. */
  readonly workers: number;
  /** A worker silent this long loses its leases (default 3000 ms). */
  readonly leaseMs?: number;
  /** Give up when the workers are not all there after this long (default: wait forever). */
  readonly waitForWorkersMs?: number;
  /**
   * A batch step (a batch, a commit, a capture, an assignment) with no answer this
   * long is taken as lost in the network (a NATS server restarting drops messages in
   * flight): the driver runs again from the last checkpoint. Doubles on each stall in
   * a row, so a batch that is slow rather than lost still ends (default 10000 ms).
   */
  readonly stallMs?: number;
  /** nats.js connection options merged over the URL's. */
  readonly connection?: NatsOptions['connection'];
  /** Told while the driver waits for its workers (default: the logger). */
  readonly onWaiting?: (text: string) => void;
  /**
   * Wait as a standby while another driver of the app is active, and take over when
   * it dies (its lease expires); without it, a second driver is refused.
   */
  readonly standby?: boolean;
}

/** Input kinds that run a receiver: on a cluster it runs on one worker and writes ahead to a JetStream log. */
const RECEIVER_KINDS = new Set(['socket', 'nats', 'receiver']);

/** Callbacks about the running app (Spark's StreamingListener). */
export interface StreamingListener {
  /** A batch was generated (its input allocated) and queued to run. */
  onBatchSubmitted?(info: { readonly time: number }): void;
  /** A batch left the queue and began to run, `schedulingDelayMs` after its time. */
  onBatchStarted?(info: { readonly time: number; readonly schedulingDelayMs: number }): void;
  /** A checkpoint was committed (its snapshots stored, then journaled). */
  onCheckpointCompleted?(stats: CheckpointStats): void;
  /**
   * A record was set aside as a dead letter: a source could not decode or accept it,
   * or an operator's function threw on it under `onRecordError: 'dead-letter'`.
   * `stream` names the input or the operator, `subject` where the letter went (a
   * subject, a file under the checkpoint, or `the log`); `total` counts them.
   */
  onDeadLetter?(info: { readonly stream: string; readonly subject: string; readonly error: string; readonly total: number }): void;
  /** A batch completed, outputs and state commit included. */
  onBatchCompleted?(info: BatchInfo): void;
  /** A receiver accepted `records` records for the input stream `stream` (e.g. `socketTextStream#1`). */
  onRecordsReceived?(info: { readonly stream: string; readonly records: number }): void;
  /** The context stopped on this error (a failed batch, a source, a fenced journal, ...). */
  onError?(error: Error): void;
  /** On a cluster: workers joined or left gracefully; their slots moved after a checkpoint (nothing replayed). */
  onRebalanced?(info: RebalancedInfo): void;
  /** On a cluster: workers were lost, their slots reassigned, `replayed` batches run again (`ms` from detection). */
  onWorkersLost?(info: FailedOverInfo): void;
  /**
   * Cluster runs: a step got no answer within `stallMs` (a message lost while a NATS
   * server restarted, a worker stuck): every worker restores from the last checkpoint
   * and the batches since run again.
   */
  onStalled?(info: { readonly reason: string }): void;
  /**
   * The app recovered: at start from a checkpoint (`restart`), after lost workers
   * (`failover`) or after a stall; `replayed` batches run again, `ms` it took.
   */
  onRecovered?(info: {
    readonly kind: 'restart' | 'failover' | 'stall';
    readonly replayed: number;
    readonly ms: number;
    readonly workers?: readonly string[];
    readonly checkpoint?: number;
  }): void;
  /** On a cluster: the partition slots' owners (slot q's worker at index q) when the run starts. */
  onAssigned?(info: { readonly epoch: number; readonly slots: readonly string[] }): void;
}

/** Where a context is in its life (Spark's `StreamingContextState`): built, started, stopped. */
export type Lifecycle = 'initialized' | 'active' | 'stopped';

/**
 * A cluster worker that {@link StreamingContext.runWorker} registered: it runs the
 * partitions the driver assigns it until `stop()`.
 */
export interface ClusterWorker {
  /** Its id in the cluster (`--id`, else host, pid and a random suffix). */
  readonly id: string;
  /** The partition slots whose leases it holds now. */
  readonly slots: number[];
  /** Bytes and messages its data plane sent and received so far. */
  readonly stats: TransportStats | undefined;
  /** Resolves when the worker stopped; rejects with what made it fail. */
  run(): Promise<void>;
  /** Leaves gracefully: its slots are handed over and it unregisters. */
  stop(): Promise<void>;
}

interface Waiter {
  readonly time: number;
  resolve(): void;
  reject(error: Error): void;
}

const PARTITIONS_MAX = 1024;
/** Spark's default checkpoint interval: the smallest multiple of the batch duration >= 10 s. */
const DEFAULT_CHECKPOINT_MS = 10_000;
let contextSeq = 0;

/** Refuses backpressure settings that are not positive numbers. */
function checkRates(config: StreamingContextConfig): void {
  const positive = (name: string, v: unknown, zeroOk = false) => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!zeroOk && v === 0)) {
      throw new InvalidConfigError(`${name} must be a ${zeroOk ? 'non-negative' : 'positive'} number, got ${String(v)}`);
    }
  };
  positive('maxRatePerPartition', config.maxRatePerPartition);
  const bp = config.backpressure;
  if (bp === undefined || typeof bp === 'boolean') return;
  if (bp === null || typeof bp !== 'object') throw new InvalidConfigError(`backpressure must be true, false or options, got ${String(bp)}`);
  positive('backpressure.initialRate', bp.initialRate);
  positive('backpressure.minRate', bp.minRate);
  positive('backpressure.proportional', bp.proportional, true);
  positive('backpressure.integral', bp.integral, true);
  positive('backpressure.derivative', bp.derivative, true);
}

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
  /** The app's name (`StreamingContextConfig.appName`): it names its subjects, buckets and logs. */
  readonly appName: string;
  /** Time between batches, in ms. */
  readonly batchDurationMs: number;
  /** See {@link StreamingContextConfig.blockIntervalMs}. */
  readonly blockIntervalMs: number;
  /** Default number of partitions of inputs and keyed operators. */
  readonly partitions: number;
  /** The app's logger, for user code that wants its lines beside the engine's. */
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
  readonly #rates = new Map<number, RateController>();
  #deadLetterWriter: DeadLetterWriter | undefined;
  #checkpointer: Checkpointer | undefined;
  #journal: Journal | undefined;
  #opened: OpenedCheckpoint | undefined;
  #keys: Map<number, string> | undefined;
  #cluster: ClusterConfig | undefined;
  #joined: JoinedCluster | undefined;
  #driverLease: DriverLease | undefined;
  #clusterNats: NatsConnection | undefined;
  #plan: ReturnType<typeof compilePlan> | undefined;
  #listeners: StreamingListener[] = [];
  #harness: ChaosHarness | undefined;
  #uiAddress: UiAddress | undefined;
  #ui: WebUi | undefined;
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
    checkRates(config);
    this.blockIntervalMs = config.blockIntervalMs ?? Math.min(200, this.batchDurationMs);
    if (!Number.isSafeInteger(this.blockIntervalMs) || this.blockIntervalMs < 1 || this.blockIntervalMs > this.batchDurationMs) {
      throw new InvalidConfigError(
        `blockIntervalMs must be a whole number of ms from 1 to the batch duration (${this.batchDurationMs}), got ${String(config.blockIntervalMs)}`,
      );
    }
    checkRecordErrorPolicy('onRecordError', config.onRecordError);
    this.partitions = partitions;
    this.#clock = config.clock ?? new SystemClock();
    this.logger = config.logger ?? createLogger(config.appName);
    this.graph = new GraphBuilder(this.batchDurationMs, partitions);
    this.graph.appName = config.appName;
    this.graph.nats = () => this.#natsConnection();
    this.#config = config;
    if (config.cluster !== undefined) this.cluster(config.cluster.nats, config.cluster);
    if (config.ui !== undefined) this.#uiAddress = parseUiAddress(config.ui);
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

  /**
   * Runs the app's batches on `workers` worker processes (`tributary worker <app>
   * --nats <url>`) instead of this process: the driver (this context) waits for them,
   * assigns them the partitions and sends them task descriptions; records travel
   * worker to worker over NATS. Outputs (print, foreachBatch, saveAsTextFiles) run
   * here, on the driver. A checkpoint must then be in JetStream (`nats://`).
   *
   * @example
   * ssc.cluster('nats://127.0.0.1:4222', { workers: 3 });
   */
  cluster(nats: string, options: Omit<ClusterConfig, 'nats'>): void {
    this.graph.assertOpen('cluster');
    if (typeof nats !== 'string' || !isNatsUrl(nats)) {
      throw new InvalidConfigError(
        `cluster needs a nats:// URL, got ${typeof nats === 'string' ? JSON.stringify(redactNatsUrl(nats)) : typeof nats}`,
      );
    }
    parseNatsUrl(nats, { connection: options.connection ?? {} });
    if (!Number.isSafeInteger(options.workers) || options.workers < 1 || options.workers > 256) {
      throw new InvalidConfigError(`cluster workers must be a whole number from 1 to 256, got ${String(options.workers)}`);
    }
    if (options.leaseMs !== undefined && (!Number.isSafeInteger(options.leaseMs) || options.leaseMs < 300)) {
      throw new InvalidConfigError(`cluster leaseMs must be a whole number >= 300, got ${String(options.leaseMs)}`);
    }
    if (options.stallMs !== undefined && (!Number.isSafeInteger(options.stallMs) || options.stallMs < 1000)) {
      throw new InvalidConfigError(`cluster stallMs must be a whole number >= 1000, got ${String(options.stallMs)}`);
    }
    this.#cluster = { ...options, nats };
  }

  /**
   * Serves the web UI and Prometheus `/metrics` at `address` from `start()` to the
   * stop (`tributary run --ui`); see {@link StreamingContextConfig.ui}.
   *
   * @example
   * ssc.ui('127.0.0.1:4040');
   */
  ui(address: UiOption): void {
    this.graph.assertOpen('ui');
    this.#uiAddress = parseUiAddress(address);
  }

  /** Where the web UI listens once started (the real port when 0 was asked for). */
  get uiAddress():
    | {
        /** The host it listens on. */
        readonly host: string;
        /** The port it bound. */
        readonly port: number;
        /** The page's address, `http://host:port/`. */
        readonly url: string;
      }
    | undefined {
    const ui = this.#ui;
    return ui === undefined ? undefined : { ...ui.address, url: ui.url };
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

  /** @internal Installs a chaos check's harness (chaos-harness.ts): for the chaos runner and checkRecovery only. */
  [CHAOS_HARNESS](harness: ChaosHarness): void {
    if (this.#lifecycle !== 'initialized') throw new InvalidStateError('a chaos check must get the context before start()');
    this.#harness = harness;
  }

  // ---- lifecycle ----------------------------------------------------------------

  /** Starts receiving and processing. The graph can no longer change. */
  async start(): Promise<void> {
    if (this.#lifecycle !== 'initialized') throw new InvalidStateError(`start() called on a ${this.#lifecycle} context`);
    this.graph.freeze();
    const harness = this.#harness;
    if (harness) {
      const cluster = this.#cluster !== undefined;
      const outputs = harnessOutputs(harness, this.graph.nodes, this.graph.outputs, { checkpoint: this.#checkpointDir, cluster });
      this.graph.outputs.splice(0, outputs.length, ...outputs);
      this.#clock = harness.clock;
      this.#checkpointDir = harness.checkpoint;
    }
    const plan = compilePlan(this.graph.nodes, this.graph.outputs, { onRecordError: this.#config.onRecordError });
    this.#plan = plan;
    if (plan.stateful.length > 0 && this.#checkpointDir === undefined) {
      this.logger.warn(
        { operators: plan.stateful.map((n) => n.name) },
        'stateful operators run without ssc.checkpoint(dir): their state will not survive a restart',
      );
    }
    const keys = stableKeys(this.graph.nodes, this.graph.outputs);
    this.#keys = keys;
    if (this.#cluster) {
      try {
        this.#checkClusterGraph(plan);
        const c = this.#cluster;
        const { nc, replicas } = await this.#clusterConnection();
        this.#driverLease = await holdDriverLease({
          nc,
          appName: this.appName,
          replicas,
          leaseMs: c.leaseMs,
          standby: c.standby === true,
          logger: this.logger,
          onWaiting: c.onWaiting,
          onLost: (error) => void this.#fail(error),
        });
        if (c.standby) this.logger.warn({ waitedMs: Math.round(this.#driverLease.waitedMs) }, 'standby: this driver is now active');
      } catch (error) {
        await this.#clusterNats?.drain().catch(() => {});
        this.#clusterNats = undefined;
        this.#lifecycle = 'stopped';
        this.#error = error as Error;
        this.#terminate.reject(this.#error);
        throw error;
      }
    }
    const now = this.clock.now();
    this.#zeroTimeMs = Math.floor(now / this.batchDurationMs) * this.batchDurationMs;
    this.#lastTickMs = this.#zeroTimeMs;
    const openedAt = performance.now();
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
        // On a cluster a receiver runs on a worker: the driver only asks it for each batch's range of its log.
        const remote = this.#cluster && RECEIVER_KINDS.has(node.source.kind);
        this.#inputs.set(node.id, remote ? await this.#remoteReceiver(node) : await node.source.open(this.#sourceEnv(node)));
      }
    } catch (error) {
      throw await this.#startFailed(error);
    }
    if (this.#cluster) {
      try {
        this.#joined = await this.#joinCluster(plan, keys);
      } catch (error) {
        throw await this.#startFailed(error);
      }
    }
    try {
      if (this.#uiAddress) await this.#startUi(plan, keys);
    } catch (error) {
      throw await this.#startFailed(error);
    }
    const opened = this.#opened;
    if (opened && (opened.resumedFrom !== undefined || opened.replay.length > 0)) {
      const info = { kind: 'restart' as const, replayed: opened.replay.length, ms: performance.now() - openedAt };
      this.#notify((l) => l.onRecovered?.(opened.resumedFrom === undefined ? info : { ...info, checkpoint: opened.resumedFrom }));
    }
    const joined = this.#joined;
    if (joined) this.#notify((l) => l.onAssigned?.({ epoch: joined.assignment.epoch, slots: joined.assignment.slots }));
    this.#driver = new Driver(root, {
      plan,
      clock: this.clock,
      zeroTimeMs: this.#zeroTimeMs,
      taskTimeoutMs: this.#config.taskTimeoutMs ?? 600_000,
      inputs: this.#inputs,
      keys,
      checkpointer: this.#checkpointer,
      restored: this.#opened?.restored,
      replay: withReplayFault(this.#opened?.replay, (text) => this.logger.warn(text)),
      deadLetters: async (time, letters, again) => {
        const where = await this.#writeDeadLetters(time, letters);
        if (again) return;
        for (const l of letters) {
          const total = ++this.#deadLetters;
          this.logger.warn({ operator: l.operator, time, error: l.error, where, total }, 'record dead-lettered');
          this.#notify((listener) => listener.onDeadLetter?.({ stream: l.operator, subject: where, error: l.error, total }));
        }
      },
      cluster: joined
        ? {
            transport: joined.transport,
            assignment: joined.assignment,
            session: joined.session,
            stallMs: this.#cluster?.stallMs ?? STALL_MS_DEFAULT,
            reassign: async (lost) => {
              const epoch = (this.#driver?.assignmentEpoch ?? joined.assignment.epoch) + 1;
              const next = await joined.reassign(lost, epoch);
              await this.#checkpointer?.assignmentChanged({
                v: 1,
                type: 'assignment.changed',
                time: this.#lastTickMs,
                epoch,
                slots: next.journaled.slots,
                inputs: next.journaled.inputs,
              });
              return next.assignment;
            },
            restore:
              this.#opened?.resumedFrom !== undefined ? { time: this.#opened.resumedFrom, chains: this.#opened.resumedChains } : undefined,
          }
        : undefined,
      listener: {
        checkpointCompleted: (stats) => this.#notify((l) => l.onCheckpointCompleted?.(stats)),
        batchSubmitted: (time) => this.#notify((l) => l.onBatchSubmitted?.({ time })),
        batchStarted: (time, schedulingDelayMs) => this.#notify((l) => l.onBatchStarted?.({ time, schedulingDelayMs })),
        batchCompleted: (info) => this.#batchCompleted(info),
        failed: (error) => void this.#fail(error),
        rebalanced: (info) => {
          const moved = `slots moved (joined: ${info.joined.join(', ') || '-'}; left: ${info.leaving.join(', ') || '-'}) in ${Math.round(info.ms)} ms`;
          if (info.replayed === 0) this.logger.info(info, moved);
          else this.logger.warn(info, `${moved}: the checkpoint of the last batch was not written, ${info.replayed} batches replayed`);
          this.#notify((l) => l.onRebalanced?.(info));
        },
        failedOver: (info) => {
          if (info.lost.length === 0) {
            this.logger.warn(info, `recovered from a stall in ${Math.round(info.ms)} ms: ${info.replayed} batches replayed`);
            this.#notify((l) => l.onRecovered?.({ kind: 'stall', replayed: info.replayed, ms: info.ms }));
            return;
          }
          const how = info.closed.length === info.lost.length ? ' (connections closed)' : '';
          this.logger.warn(info, `workers ${info.lost.join(', ')} lost${how}: slots reassigned, ${info.replayed} batches replayed`);
          this.#notify((l) => l.onWorkersLost?.(info));
          this.#notify((l) => l.onRecovered?.({ kind: 'failover', replayed: info.replayed, ms: info.ms, workers: info.lost }));
        },
        stalled: (reason) => {
          this.logger.warn({ reason: reason.message }, 'the data plane stalled: restoring from the last checkpoint');
          this.#notify((l) => l.onStalled?.({ reason: reason.message }));
        },
      },
    });
    if (joined) {
      const driver = this.#driver;
      joined.watch(
        () => driver.assignedWorkers,
        (change) => {
          if (change.lost.length > 0) driver.workersLost(change.lost, change.closed);
          else driver.rebalance(change.leaving, change.joined);
        },
      );
    }
    if (harness) {
      const driver = this.#driver;
      harness.started(() => stateDigests(driver, plan.stateful));
    }
    // Batches of the downtime (between the last journaled batch and now) run first.
    let next = this.#lastTickMs + this.batchDurationMs;
    for (; next <= this.clock.now(); next += this.batchDurationMs) {
      this.#lastTickMs = next;
      this.#driver.tick(next);
    }
    this.#armTimer(next);
  }

  /** Starts the web UI and registers its monitor as a listener, so that it sees the first batch. */
  async #startUi(plan: ReturnType<typeof compilePlan>, keys: Map<number, string>): Promise<void> {
    const ui = await startWebUi({
      address: this.#uiAddress as UiAddress,
      app: {
        appName: this.appName,
        batchDurationMs: this.batchDurationMs,
        partitions: this.partitions,
        inputs: plan.inputs.filter((n) => n.kind === 'input').map((n) => n.name),
        operators: plan.stateful.map((n) => ({ name: n.name, key: keys.get(n.id) ?? n.name })),
        cluster: this.#cluster !== undefined,
      },
      now: () => this.clock.now(),
      logger: this.logger,
    });
    this.#ui = ui;
    this.#listeners.push(ui.monitor);
    this.logger.info({ url: ui.url }, 'web UI and /metrics listening');
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
        loadStates: this.#cluster === undefined,
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

  /** A cluster reads inputs on workers and keeps snapshots where workers reach them. */
  #checkClusterGraph(plan: ReturnType<typeof compilePlan>): void {
    if (plan.stateful.length > 0 && this.#checkpointDir !== undefined && !isNatsUrl(this.#checkpointDir)) {
      throw new InvalidConfigError(
        `a cluster keeps checkpoints in JetStream, where its workers write their snapshots: use ssc.checkpoint('nats://...'), not ${this.#checkpointDir}`,
      );
    }
  }

  /** The cluster's NATS connection of this process (opened on first use). */
  async #clusterConnection(): Promise<{ nc: NatsConnection; replicas: number }> {
    const c = this.#cluster as ClusterConfig;
    const target = parseNatsUrl(c.nats, { connection: c.connection ?? {} });
    this.#clusterNats ??= await connectNats(target, `tributary-${this.appName}-cluster-driver`);
    return { nc: this.#clusterNats, replicas: target.replicas };
  }

  /**
   * The driver's end of a receiver that runs on a worker: each batch's allocation is
   * the range of the receiver's log from where the journal says the last one ended.
   */
  async #remoteReceiver(node: GraphNode): Promise<OpenInput<unknown>> {
    const { nc, replicas } = await this.#clusterConnection();
    const names = walNames(this.appName, this.#keys?.get(node.id) ?? node.name);
    const end = await ensureWal(nc, names, replicas);
    const recovery = this.#opened?.inputs.get(node.id);
    let next = typeof recovery?.position === 'number' ? recovery.position : undefined;
    for (const a of recovery?.allocations ?? []) if (a.type === 'jetstream') next = Math.max(next ?? a.to, a.to);
    next ??= end;
    return {
      position: () => next,
      allocate: async (time) => {
        const driver = this.#driver;
        if (driver === undefined) throw new InvalidStateError(`${node.name}: no driver`);
        const allocation = await driver.allocateRemote(node.id, time, next as number);
        if (allocation.type === 'jetstream') next = allocation.to;
        return allocation;
      },
      read: () => Promise.reject(new InvalidStateError(`${node.name} is read on a worker, not on the driver`)),
      close: async () => {},
    };
  }

  async #joinCluster(plan: ReturnType<typeof compilePlan>, keys: Map<number, string>): Promise<JoinedCluster> {
    const c = this.#cluster as ClusterConfig;
    const { nc, replicas } = await this.#clusterConnection();
    const joined = await joinCluster({
      nc,
      appName: this.appName,
      replicas,
      plan,
      keys,
      graph: fingerprintOf(this.graph.nodes, this.graph.outputs, keys),
      workers: c.workers,
      leaseMs: c.leaseMs,
      waitMs: c.waitForWorkersMs,
      epoch: this.#opened?.checkpointer.epoch ?? 1,
      previous: this.#opened?.assignment,
      logger: this.logger,
      onWaiting: c.onWaiting,
    });
    await this.#checkpointer?.assignmentChanged({
      v: 1,
      type: 'assignment.changed',
      time: this.#lastTickMs,
      epoch: joined.assignment.epoch,
      slots: joined.journaled.slots,
      inputs: joined.journaled.inputs,
    });
    return joined;
  }

  /**
   * Serves this app as a cluster worker: registers over NATS, waits for the driver's
   * assignment and runs its partitions until `stop()`. `tributary worker <app>` calls
   * this; the app module is the same the driver runs.
   *
   * @example
   * const worker = await ssc.runWorker({ nats: 'nats://127.0.0.1:4222' });
   * await worker.run();
   */
  async runWorker(
    options: {
      readonly nats?: string;
      readonly id?: string;
      readonly leaseMs?: number;
      readonly connection?: NatsOptions['connection'];
    } = {},
  ): Promise<ClusterWorker> {
    if (this.#lifecycle !== 'initialized') throw new InvalidStateError(`runWorker() called on a ${this.#lifecycle} context`);
    const url = options.nats ?? this.#cluster?.nats;
    if (url === undefined) throw new InvalidConfigError('a worker needs the cluster NATS URL (--nats)');
    this.graph.freeze();
    const plan = compilePlan(this.graph.nodes, this.graph.outputs, { onRecordError: this.#config.onRecordError });
    this.#plan = plan;
    this.#checkClusterGraph(plan);
    const keys = stableKeys(this.graph.nodes, this.graph.outputs);
    this.#keys = keys;
    const target = parseNatsUrl(url, { connection: options.connection ?? this.#cluster?.connection ?? {} });
    const nc = await connectNats(target, `tributary-${this.appName}-worker`);
    const dir = this.#checkpointDir;
    const snapshots = dir !== undefined && isNatsUrl(dir) ? await this.#workerSnapshotStore(dir) : undefined;
    this.#lifecycle = 'active';
    // Receivers assigned to this worker keep their buffers in actors, as in one process.
    this.#system = this.#config.actorSystem ?? startActorSystem();
    this.#root = spawnActor<null, never>(this.#system, `tributary-${this.appName}-worker-${++contextSeq}`, null, (s) => s);
    const receivers = this.#workerInputs(plan, nc, target.replicas);
    const worker = await Worker.create({
      appName: this.appName,
      nc,
      replicas: target.replicas,
      plan,
      keys,
      graph: fingerprintOf(this.graph.nodes, this.graph.outputs, keys),
      snapshots: snapshots?.store,
      id: options.id,
      leaseMs: options.leaseMs ?? this.#cluster?.leaseMs,
      logger: this.logger,
      openInputs: (zeroTimeMs, assignment, self) => {
        this.#zeroTimeMs = zeroTimeMs;
        return receivers.inputsFor(assignment, self);
      },
      allocate: (nodeId, time, from) => receivers.allocate(nodeId, time, from),
    });
    void worker
      .run()
      .catch(() => {})
      .finally(() => {
        this.#lifecycle = 'stopped';
        void nc.drain().catch(() => {});
        void snapshots?.nc.drain().catch(() => {});
        const io = this.#nats;
        this.#nats = undefined;
        if (io) void io.then((c) => c.drain()).catch(() => {});
        if (this.#root) stopActor(this.#root);
        if (this.#system && this.#config.actorSystem === undefined) stopActor(this.#system);
        this.#root = undefined;
        this.#terminate.resolve();
      });
    return worker;
  }

  /**
   * A worker's inputs: sources readable anywhere opened once; for a receiver, the
   * reader of its log, and the receiver itself only on the worker assigned to it,
   * writing each block ahead to the log (closed, its rest written, when the
   * assignment moves it elsewhere).
   */
  #workerInputs(plan: ReturnType<typeof compilePlan>, nc: NatsConnection, replicas: number) {
    const opened = new Map<number, OpenInput<unknown>>();
    const running = new Map<number, { input: OpenInput<unknown>; names: WalNames }>();
    const namesOf = (node: GraphNode) => walNames(this.appName, this.#keys?.get(node.id) ?? node.name);
    return {
      inputsFor: async (assignment: AssignmentWire, self: string): Promise<Map<number, OpenInput<unknown>>> => {
        for (const node of plan.inputs) {
          if (node.kind !== 'input') continue;
          if (!RECEIVER_KINDS.has(node.source.kind)) {
            if (!opened.has(node.id)) opened.set(node.id, await node.source.open(this.#sourceEnv(node)));
            continue;
          }
          const names = namesOf(node);
          if (!opened.has(node.id)) {
            await ensureWal(nc, names, replicas);
            const log = await jetstreamSource<unknown>({ stream: names.stream, decoder: 'cbor' }).open({
              ...this.#sourceEnv(node),
              nats: () => Promise.resolve(nc),
            });
            opened.set(node.id, {
              allocate: () => Promise.reject(new InvalidStateError(`${node.name}: allocated by its receiver's worker`)),
              read: async (allocation, setAside) => walRecords(await log.read(allocation), setAside),
              close: async () => {
                await running.get(node.id)?.input.close();
                running.delete(node.id);
                await log.close();
              },
            });
          }
          const mine = assignment.inputs[String(node.id)] === self;
          const run = running.get(node.id);
          if (mine && run === undefined) {
            const env: SourceEnv = {
              ...this.#sourceEnv(node),
              writeBlock: async (block) => void (await appendBlock(nc, names, block)),
            };
            running.set(node.id, { input: await node.source.open(env), names });
          } else if (!mine && run !== undefined) {
            running.delete(node.id);
            await run.input.close();
          }
        }
        return opened;
      },
      allocate: async (nodeId: number, time: number, from: number): Promise<Allocation> => {
        const run = running.get(nodeId);
        if (run === undefined) throw new InvalidStateError(`this worker does not run the receiver of input ${nodeId}`);
        // The cut goes into the log (writeBlock) before allocate returns; reading it back frees it here.
        await run.input.read(await run.input.allocate(time));
        return walAllocation(nc, run.names, from);
      },
    };
  }

  async #workerSnapshotStore(dir: string): Promise<{ store: JetStreamSnapshotStore; nc: NatsConnection }> {
    const target = parseNatsUrl(dir, this.#natsOptions);
    const nc = await connectNats(target, `tributary-${this.appName}-worker-snapshots`);
    return { store: new JetStreamSnapshotStore(nc, this.appName, target.replicas, this.logger), nc };
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
  state<K, S>(
    uid: string,
  ): {
    /** The key's committed state, undefined when it has none. */
    get(key: K): Promise<S | undefined>;
  } {
    const node = this.graph.nodes.find((n) => n.uid === uid);
    if (node === undefined || node.kind !== 'stateful') {
      throw new InvalidConfigError(`no stateful operator has uid ${JSON.stringify(uid)}: set one with .uid(name)`);
    }
    return {
      get: async (key: K) => {
        const driver = this.#driver;
        if (driver === undefined || this.#lifecycle !== 'active')
          throw new InvalidStateError(`state(${uid}) read on a ${this.#lifecycle} context`);
        if (!this.#plan?.stateful.includes(node)) throw new InvalidStateError(`state(${uid}) is not running (no output uses it)`);
        return (await driver.lookup(node.id, key)) as S | undefined;
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
    // By its `manual` flag, not instanceof: a chaos check's clock may come from another copy of this module.
    const clock = this.clock as Partial<ManualClock> & Clock;
    if (!clock.manual || typeof clock.advance !== 'function') {
      throw new InvalidStateError('runBatches() needs a ManualClock: pass { clock: new ManualClock() } to the StreamingContext');
    }
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidConfigError(`runBatches needs a whole number >= 0, got ${n}`);
    if (this.#lifecycle !== 'active') throw new InvalidStateError(`runBatches() called on a ${this.#lifecycle} context`);
    if (this.#error) throw this.#error;
    const target = this.#lastTickMs + n * this.batchDurationMs;
    const done = this.#waitFor(target);
    clock.advance(Math.max(0, target - clock.now()));
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
    await this.#drainReceivers();
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

  /** Ends a context whose start failed with `error` (awaitTermination() must not wait for it); returns the error to throw. */
  async #startFailed(error: unknown): Promise<unknown> {
    await this.#shutdown();
    this.#lifecycle = 'stopped';
    this.#error = error as Error;
    this.#terminate.reject(this.#error);
    return error;
  }

  /**
   * Stops the receivers and, when they accepted records no batch has taken yet, runs
   * one more batch for them (Spark's `stopGracefully`): a graceful stop leaves nothing
   * waiting for the next start.
   */
  async #drainReceivers(): Promise<void> {
    const waiting = await Promise.all([...this.#inputs.values()].map((i) => i.stopReceiving?.() ?? false));
    if (!waiting.includes(true) || this.#driver === undefined || this.#error) return;
    this.#lastTickMs += this.batchDurationMs;
    this.logger.info({ time: this.#lastTickMs }, 'one more batch for what the receivers accepted before the stop');
    this.#driver.tick(this.#lastTickMs);
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
      blockIntervalMs: this.blockIntervalMs,
      rate: this.#rateOf(node),
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

  /** The rate controller of an input (one per input, fed every completed batch). */
  #rateOf(node: GraphNode): RateLimit {
    const { backpressure, maxRatePerPartition } = this.#config;
    if (!backpressure && maxRatePerPartition === undefined) return UNLIMITED;
    let rc = this.#rates.get(node.id);
    if (rc === undefined) {
      const options = typeof backpressure === 'object' ? backpressure : {};
      rc = new RateController({
        batchMs: this.batchDurationMs,
        backpressure: backpressure !== undefined && backpressure !== false,
        ...(options.initialRate === undefined ? {} : { initialRate: options.initialRate }),
        ...(maxRatePerPartition === undefined ? {} : { maxRate: maxRatePerPartition * node.partitions }),
        pid: options,
      });
      this.#rates.set(node.id, rc);
    }
    return rc;
  }

  #writeDeadLetters(time: number, letters: readonly DeadLetter[]): Promise<string> {
    this.#deadLetterWriter ??= deadLetterWriter(this.#checkpointDir, this.appName, () => this.#natsConnection(), this.logger);
    return this.#deadLetterWriter(time, letters);
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
    for (const rc of this.#rates.values()) rc.batchCompleted(info);
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
    const joined = this.#joined;
    this.#joined = undefined;
    if (joined) await joined.leave().catch(() => {});
    const lease = this.#driverLease;
    this.#driverLease = undefined;
    if (lease) await lease.release();
    const clusterNats = this.#clusterNats;
    this.#clusterNats = undefined;
    if (clusterNats) await clusterNats.drain().catch(() => {});
    if (this.#root) stopActor(this.#root);
    if (this.#system && this.#config.actorSystem === undefined) stopActor(this.#system);
    this.#root = undefined;
    const ui = this.#ui;
    this.#ui = undefined;
    if (ui) await ui.stop();
  }
}
