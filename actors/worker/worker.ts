/**
 * A `tributary worker` process: it loads the same app as the driver, registers in
 * the cluster bucket with its graph's fingerprint, refuses to serve a driver whose
 * graph differs, takes the leases of the slots the driver assigns it, and runs its
 * batch-partitions over the NATS data plane until stopped.
 *
 * States: initialized -> registered -> running -> stopping -> stopped (or failed).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeValue } from '../../runtime/base/cbor.ts';
import { InvalidConfigError, InvalidStateError } from '../../runtime/base/errors.ts';
import type { Logger } from '../../runtime/base/logger.ts';
import { compareFingerprints } from '../../runtime/graph/fingerprint.ts';
import type { OpenInput } from '../../runtime/graph/input-source.ts';
import type { Plan } from '../../runtime/graph/plan.ts';
import type { Allocation, FingerprintEntry } from '../../runtime/graph/wire.ts';
import type { SnapshotStore } from '../../snapshots/snapshot-store.ts';
import { keepRegistered, LEASE_MS_DEFAULT, openClusterBucket, type Registration, SlotLeases, type WorkerInfo } from '../membership.ts';
import { NatsTransport, type TransportStats } from '../transport/nats.ts';
import type { AssignmentWire } from '../transport/transport.ts';
import { PartitionWorker } from './partition-worker.ts';

/** What a worker runs. */
export interface WorkerOptions {
  readonly appName: string;
  /** A connection of this worker's own. */
  readonly nc: NatsConnection;
  readonly replicas: number;
  readonly plan: Plan;
  readonly keys: ReadonlyMap<number, string>;
  readonly graph: readonly FingerprintEntry[];
  /**
   * The inputs this worker may read under `assignment`, once the app's zero time is
   * known; called on every assignment (a receiver opens on the worker assigned to
   * read it, and closes on one that no longer is).
   */
  readonly openInputs: (zeroTimeMs: number, assignment: AssignmentWire, self: string) => Promise<Map<number, OpenInput<unknown>>>;
  /** Cuts a receiver's block into its log (see PartitionWorkerConfig.allocate). */
  readonly allocate?: ((nodeId: number, time: number, from: number) => Promise<Allocation>) | undefined;
  /** Where the app's snapshots live (a JetStream object store), when it checkpoints. */
  readonly snapshots?: SnapshotStore | undefined;
  /** Default: `w-<host>-<pid>-<random>`. */
  readonly id?: string | undefined;
  readonly leaseMs?: number | undefined;
  readonly logger: Logger;
}

/** Longest a leaving worker waits for the driver to move its slots. */
const HANDOVER_WAIT_MS = 30_000;

/** The lifecycle of a worker. */
export type WorkerState = 'initialized' | 'registered' | 'running' | 'stopping' | 'stopped' | 'failed';

/** Driver information a worker reads from the cluster bucket. */
interface DriverInfo {
  readonly graph: readonly FingerprintEntry[];
  readonly session?: string;
}

/**
 * A worker process's engine.
 *
 * @example
 * const worker = await Worker.create({ appName, nc, replicas: 1, plan, keys, graph, openInputs, logger });
 * await worker.run(); // until stop()
 */
export class Worker {
  readonly id: string;
  #state: WorkerState = 'initialized';
  readonly #options: WorkerOptions;
  readonly #kv: KV;
  readonly #leaseMs: number;
  #transport: NatsTransport | undefined;
  #partitions: PartitionWorker | undefined;
  #leases: SlotLeases | undefined;
  #registration: Registration | undefined;
  #info: WorkerInfo | undefined;
  /** Resolves once an assignment left this worker without slots (its partitions were handed over). */
  #handedOver: (() => void) | undefined;
  #inputs = new Map<number, OpenInput<unknown>>();
  #done!: { resolve(): void; reject(error: Error): void };
  readonly #finished: Promise<void>;
  #watch: NodeJS.Timeout | undefined;

  private constructor(options: WorkerOptions, kv: KV, id: string, leaseMs: number) {
    this.#options = options;
    this.#kv = kv;
    this.id = id;
    this.#leaseMs = leaseMs;
    this.#finished = new Promise((resolve, reject) => {
      this.#done = { resolve, reject };
    });
    this.#finished.catch(() => {});
  }

  /** Checks the options, opens the data plane and registers. */
  static async create(options: WorkerOptions): Promise<Worker> {
    const leaseMs = options.leaseMs ?? LEASE_MS_DEFAULT;
    if (!Number.isSafeInteger(leaseMs) || leaseMs < 300)
      throw new InvalidConfigError(`leaseMs must be a whole number >= 300, got ${leaseMs}`);
    const id = options.id ?? `w-${hostname().replace(/[^A-Za-z0-9_-]/g, '_')}-${process.pid}-${randomBytes(3).toString('hex')}`;
    if (!/^[A-Za-z0-9_-]+$/.test(id))
      throw new InvalidConfigError(`a worker id must be letters, digits, '-' or '_', got ${JSON.stringify(id)}`);
    const kv = await openClusterBucket(options.nc, options.appName, options.replicas, leaseMs);
    const worker = new Worker(options, kv, id, leaseMs);
    await worker.#register();
    return worker;
  }

  get state(): WorkerState {
    return this.#state;
  }

  /** The slots whose leases this worker holds now. */
  get slots(): number[] {
    return this.#leases?.slots ?? [];
  }

  /** Bytes and messages this worker's data plane sent and received so far. */
  get stats(): TransportStats | undefined {
    return this.#transport?.stats;
  }

  /** Resolves when the worker stopped; rejects with what made it fail. */
  run(): Promise<void> {
    if (this.#state === 'registered') this.#state = 'running';
    return this.#finished;
  }

  /** Leaves gracefully: gives its leases back and unregisters. */
  async stop(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped' || this.#state === 'failed') return this.#finished.catch(() => {});
    this.#state = 'stopping';
    await this.#handOver();
    await this.#shutdown();
    this.#state = 'stopped';
    this.#done.resolve();
  }

  /**
   * A worker holding slots announces that it leaves and waits until the driver moved
   * them (it snapshots them first: nothing to replay), at most `HANDOVER_WAIT_MS`.
   */
  async #handOver(): Promise<void> {
    if ((this.#leases?.slots.length ?? 0) === 0 || this.#registration === undefined) return;
    const started = performance.now();
    const done = new Promise<void>((resolve) => {
      this.#handedOver = resolve;
    });
    await this.#registration.update({ ...this.#info, leaving: true });
    this.#options.logger.info({ worker: this.id, slots: this.#leases?.slots }, 'leaving: waiting for the driver to move its slots');
    let timer: NodeJS.Timeout | undefined;
    const waitMs = Math.max(HANDOVER_WAIT_MS, this.#leaseMs * 10);
    const gone = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    // A driver that left releases the leases (#checkDriver): nothing to hand over then.
    const poll = setInterval(() => {
      if ((this.#leases?.slots.length ?? 0) === 0) this.#handedOver?.();
    }, 200);
    await Promise.race([done, gone]);
    clearTimeout(timer);
    clearInterval(poll);
    this.#options.logger.info({ worker: this.id, ms: Math.round(performance.now() - started) }, 'slots handed over');
  }

  async #register(): Promise<void> {
    const o = this.#options;
    this.#transport = await NatsTransport.open(o.nc, o.appName, this.id, { logger: o.logger });
    this.#leases = new SlotLeases(this.#kv, this.id, this.#leaseMs, o.logger);
    this.#partitions = new PartitionWorker({
      plan: o.plan,
      transport: this.#transport,
      keys: o.keys,
      inputs: this.#inputs,
      logger: o.logger,
      snapshots: o.snapshots,
      checkOwnership: () => (this.#leases as SlotLeases).check(),
      allocate: o.allocate,
      onAssign: async (assignment, zeroTimeMs, owned, superseded) => {
        await this.#checkDriver();
        const inputs = await o.openInputs(zeroTimeMs, assignment, this.id);
        this.#inputs.clear();
        for (const [id, input] of inputs) this.#inputs.set(id, input);
        const started = performance.now();
        if (this.#leases?.lost) {
          // Fenced earlier (paused past its lease): this assignment takes it back as a fresh worker.
          this.#leases = new SlotLeases(this.#kv, this.id, this.#leaseMs, o.logger);
          o.logger.warn({ worker: this.id }, 'rejoining with fresh leases after losing them');
        }
        await (this.#leases as SlotLeases).hold(owned, assignment.epoch, superseded);
        if (owned.length === 0) this.#handedOver?.();
        o.logger.info(
          { worker: this.id, slots: owned, epoch: assignment.epoch, ms: Math.round(performance.now() - started) },
          'assignment taken',
        );
      },
      loadState: async (node, operator, q, restore) => {
        if (node.kind !== 'stateful') throw new InvalidStateError(`${node.name} is not stateful`);
        const chain = restore?.chains[`${operator}/${q}`];
        if (chain === undefined || o.snapshots === undefined) return node.stateful.create(q, node.partitions);
        const store = o.snapshots;
        const datas = await Promise.all(chain.map((time) => store.read({ operator, partition: q, time })));
        return node.stateful.restoreChain(datas, q, node.partitions);
      },
    });
    const info: WorkerInfo = { id: this.id, pid: process.pid, host: hostname(), graph: o.graph, startedAt: Date.now() };
    this.#info = info;
    this.#registration = await keepRegistered(this.#kv, `workers.${this.id}`, info, this.#leaseMs, o.logger);
    this.#state = 'registered';
    o.logger.info({ worker: this.id, app: o.appName }, 'worker registered; waiting for the driver');
    // A driver with another graph is refused as soon as it shows up, not only when it assigns.
    this.#watch = setInterval(() => {
      this.#checkDriver().catch(() => {});
    }, 1000);
    this.#watch.unref();
  }

  /**
   * Fails the worker when the registered driver runs a different graph; gives the
   * leases back when the driver it served is gone or replaced (so the next driver's
   * workers need not wait for them to expire).
   */
  async #checkDriver(): Promise<void> {
    const entry = await this.#kv.get('driver').catch(() => undefined);
    if (entry === undefined) return;
    const driver =
      entry === null || entry.operation !== 'PUT' || entry.value.length === 0 ? undefined : (decodeValue(entry.value) as DriverInfo);
    const serving = this.#partitions?.session;
    // A session `<driver>.<n>` is the same driver after a failover.
    const sameDriver = driver?.session !== undefined && serving !== undefined && serving.split('.')[0] === driver.session;
    if (this.#leases && this.#leases.slots.length > 0 && serving !== undefined && !sameDriver) {
      const slots = this.#leases.slots;
      await this.#leases.release();
      this.#options.logger.info(
        { worker: this.id, slots },
        driver ? 'a new driver registered: leases given back' : 'the driver left: leases given back',
      );
    }
    if (driver === undefined) return;
    const differences = compareFingerprints(driver.graph, this.#options.graph);
    if (differences.length === 0) return;
    const error = new InvalidConfigError(
      `worker ${this.id} refused: the driver of ${this.#options.appName} runs a different graph (${differences.join('; ')}); start the workers with the driver's app module`,
    );
    await this.#fail(error);
    throw error;
  }

  async #fail(error: Error): Promise<void> {
    if (this.#state === 'failed' || this.#state === 'stopped') return;
    this.#state = 'failed';
    this.#options.logger.error({ err: error }, 'worker failed');
    await this.#shutdown();
    this.#done.reject(error);
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#watch);
    this.#partitions?.abandon();
    await this.#leases?.release();
    await this.#registration?.stop();
    await this.#transport?.close();
    await Promise.allSettled([...this.#inputs.values()].map((i) => i.close()));
  }
}
