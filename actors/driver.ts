/**
 * The driver: job generator and scheduler. On every tick it allocates the input
 * received so far to that batch time and queues the batch; batches then run one at
 * a time, in time order (state depends on it), through stage, state and output
 * actors. A slow output holds its batch: later batches wait in the queue and the
 * wait is reported as scheduling delay, never dropped.
 */

import { assertNever } from '../runtime/base/assert.ts';
import type { Clock } from '../runtime/base/clock.ts';
import { startStopwatch } from '../runtime/base/clock.ts';
import { BatchFailedError, OperatorFailure } from '../runtime/base/errors.ts';
import type { DeadLetter, OutputOp, PartitionState } from '../runtime/graph/graph.ts';
import type { OpenInput } from '../runtime/graph/input-source.ts';
import { partitionOf } from '../runtime/graph/partitioner.ts';
import type { Plan } from '../runtime/graph/plan.ts';
import type { Allocation } from '../runtime/graph/wire.ts';
import { assign } from './assignment.ts';
import { BatchCoordinator, fencedWorkerOf, isStall } from './batch-coordinator.ts';
import type { Checkpointer, CheckpointStats } from './checkpointer.ts';
import type { DriverMessage, OutputMessage, Reply } from './messages.ts';
import { unwrap } from './messages.ts';
import { spawnOutput } from './output.ts';
import { type FailedOverInfo, isWorkerLoss, Reassignment, type RebalancedInfo } from './reassignment.ts';
import { type ActorRef, type ActorSystem, ask, dispatch, spawnActor } from './system.ts';
import { LocalHub } from './transport/local.ts';
import { type AssignmentWire, DRIVER, type RestoreSpec, type Transport } from './transport/transport.ts';
import { PartitionWorker } from './worker/partition-worker.ts';

/** What the app learns about each finished batch. */
export interface BatchInfo {
  /** The batch time (ms of the context's clock). */
  readonly time: number;
  /** Input records of the batch, all inputs together. */
  readonly records: number;
  /** How long the batch waited behind earlier ones (ms of the context's clock). */
  readonly schedulingDelayMs: number;
  /** How long the batch took to run (real ms). */
  readonly processingMs: number;
  /** Batches generated and not yet started when this one finished. */
  readonly queuedBatches: number;
  /** Keys each keyed stateful operator holds after the batch (all partitions), by operator name. */
  readonly stateKeys: Readonly<Record<string, number>>;
  /** Input records of the batch by input stream name (`queueStream#1`, or its uid). */
  readonly inputRecords: Readonly<Record<string, number>>;
}

/** Where the driver reports to. */
export interface DriverListener {
  /** A tick's input was allocated and its batch queued. */
  batchSubmitted?(time: number): void;
  /** A batch left the queue and began to run. */
  batchStarted?(time: number, schedulingDelayMs: number): void;
  batchCompleted(info: BatchInfo): void;
  /** A checkpoint was committed to the journal. */
  checkpointCompleted?(stats: CheckpointStats): void;
  rebalanced?(info: RebalancedInfo): void;
  failedOver?(info: FailedOverInfo): void;
  /** The data plane stalled: every worker restores from the last checkpoint (then failedOver, with no lost worker). */
  stalled?(reason: Error): void;
  failed(error: Error): void;
}

/** A batch the journal says was allocated before a restart: it runs again from its inputs. */
export interface ReplayJob {
  readonly time: number;
  readonly allocations: ReadonlyMap<number, Allocation>;
  /** Its outputs completed before the restart: only its state changes are redone. */
  readonly completed: boolean;
}

/** Where the batches run when the app runs on a cluster (absent: one worker in this process). */
export interface ClusterPlacement {
  /** The driver's endpoint of the data plane. */
  readonly transport: Transport;
  readonly assignment: AssignmentWire;
  /** This driver run's name (registered with the driver). */
  readonly session: string;
  /** A new assignment without the lost workers, journaled (waits for a live worker if none is left). */
  readonly reassign?: ((lost: readonly string[]) => Promise<AssignmentWire>) | undefined;
  /** The checkpoint workers restore their partitions from. */
  readonly restore?: RestoreSpec | undefined;
  /** A step without an answer this long is lost in the network (see ClusterConfig.stallMs). */
  readonly stallMs?: number | undefined;
}

/** What the driver needs to run. */
export interface DriverConfig {
  readonly plan: Plan;
  readonly clock: Clock;
  readonly zeroTimeMs: number;
  readonly taskTimeoutMs: number;
  readonly inputs: ReadonlyMap<number, OpenInput<unknown>>;
  readonly listener: DriverListener;
  /** Stable keys of nodes: names in the journal and the snapshot store. */
  readonly keys?: ReadonlyMap<number, string> | undefined;
  /** Journals and checkpoints, when the app has a checkpoint directory. */
  readonly checkpointer?: Checkpointer | undefined;
  /** States restored from a checkpoint, by node id, one per partition (in-process runs). */
  readonly restored?: ReadonlyMap<number, readonly PartitionState[]> | undefined;
  /** Batches to run again before any new one, oldest first. */
  readonly replay?: readonly ReplayJob[] | undefined;
  /** Workers over NATS instead of the in-process one. */
  readonly cluster?: ClusterPlacement | undefined;
  /** Stores the records a batch set aside (`dead-letter` policy) before its outputs run. */
  /** Stores a batch's dead letters; `again`: a replay of a batch whose outputs ran (reported before). */
  readonly deadLetters?: ((time: number, letters: readonly DeadLetter[], again: boolean) => Promise<void>) | undefined;
}

interface Job {
  readonly time: number;
  readonly allocations: ReadonlyMap<number, Allocation>;
  /** A replayed batch whose outputs already ran: skip them. */
  readonly skipOutputs?: boolean;
  /** A replayed batch: its allocation and completion are in the journal already. */
  readonly replayed?: boolean;
}

/** Tries of a batch's allocation from a receiver's worker, each after recovering from a stall. */
const ALLOCATE_ATTEMPTS = 5;

/** The in-process worker's name on the local transport. */
const LOCAL_WORKER = 'local';

/**
 * The driver's logic; its actor feeds it ticks and batch outcomes one at a time.
 */
export class Driver {
  readonly #cfg: DriverConfig;
  readonly #coordinator: BatchCoordinator;
  /** The in-process worker (absent on a cluster). */
  readonly #localWorker: PartitionWorker | undefined;
  readonly #localHub: LocalHub | undefined;
  /** Resolves once every worker holds its assignment (and restored its state); a failover renews it. */
  #ready: Promise<void>;
  readonly #outputs = new Map<number, ActorRef<OutputMessage>>();
  readonly #queue: Job[] = [];
  #running = false;
  #failed = false;
  #abandoned = false;
  /** The newest batch time ever queued (generated or replayed). */
  #highestQueued = Number.NEGATIVE_INFINITY;
  /** Ticks sent to the actor and not yet turned into queued batches. */
  #pendingTicks = 0;
  #idleWaiters: (() => void)[] = [];
  #lastCompleted: number | undefined;
  /** Failovers and handovers of a cluster run. */
  readonly #reassignment: Reassignment | undefined;
  /** Settles when the batch in flight (and its checkpoint capture) settled. */
  #inFlight: Promise<unknown> = Promise.resolve();
  /** Input positions as of the last journaled allocation. */
  #journaledPositions: Record<string, unknown> = {};
  ref!: ActorRef<DriverMessage>;

  constructor(parent: ActorSystem | ActorRef<never>, cfg: DriverConfig) {
    this.#cfg = cfg;
    this.#journaledPositions = this.#positions();
    const keys = cfg.keys ?? new Map(cfg.plan.order.map((n) => [n.id, String(n.id)]));
    if (cfg.cluster) {
      this.#coordinator = new BatchCoordinator(cfg.cluster.transport, cfg.cluster.assignment.slots, cfg.taskTimeoutMs, {
        session: cfg.cluster.session,
        stallMs: cfg.cluster.stallMs,
      });
      this.#ready = this.#coordinator.assign(cfg.cluster.assignment, cfg.zeroTimeMs, cfg.cluster.restore);
    } else {
      const hub = new LocalHub();
      this.#localHub = hub;
      this.#coordinator = new BatchCoordinator(hub.endpoint(DRIVER), [LOCAL_WORKER], cfg.taskTimeoutMs);
      this.#localWorker = new PartitionWorker({
        plan: cfg.plan,
        transport: hub.endpoint(LOCAL_WORKER),
        keys,
        inputs: cfg.inputs,
        loadState: async (node, _operator, q) => {
          if (node.kind !== 'stateful') throw new Error(`${node.name} is not stateful`);
          return cfg.restored?.get(node.id)?.[q] ?? node.stateful.create(q, node.partitions);
        },
      });
      const slots = Math.max(1, ...[...cfg.plan.byId.values()].map((n) => n.partitions));
      const assignment = assign(
        slots,
        cfg.plan.inputs.map((n) => n.id),
        [LOCAL_WORKER],
        1,
      );
      this.#ready = this.#coordinator.assign(assignment, cfg.zeroTimeMs);
    }
    this.#ready.catch((error: unknown) => this.#recoverOrFail(error as Error));
    const reassign = cfg.cluster?.reassign;
    this.#reassignment = reassign
      ? new Reassignment({
          coordinator: this.#coordinator,
          checkpointer: cfg.checkpointer,
          plan: cfg.plan,
          keys: cfg.keys,
          zeroTimeMs: cfg.zeroTimeMs,
          listener: cfg.listener,
          reassign,
          inFlight: () => this.#inFlight,
          lastCompleted: () => this.#lastCompleted,
          checkpointNow: (time) => this.#checkpoint(time, true),
          replaceQueue: (jobs) => {
            // A batch generated while the replay list was made is queued once: jobs first, later ones after.
            const times = new Set(jobs.map((j) => j.time));
            const later = this.#queue.filter((j) => !times.has(j.time));
            this.#queue.splice(0, this.#queue.length, ...[...jobs, ...later].sort((a, b) => a.time - b.time));
            for (const j of jobs) this.#highestQueued = Math.max(this.#highestQueued, j.time);
          },
          failed: () => this.#failed,
          fail: (error) => this.#fail(error),
          resume: () => {
            // Every worker took the failover's assignment: a first assignment that failed no longer matters.
            this.#ready = Promise.resolve();
            dispatch(this.ref, { type: 'driver.kick' });
          },
        })
      : undefined;
    for (const op of cfg.plan.outputs) this.#outputs.set(op.id, spawnOutput(parent, `output-${op.id}`, op));
    for (const r of cfg.replay ?? []) {
      this.#queue.push({ time: r.time, allocations: r.allocations, skipOutputs: r.completed, replayed: true });
      this.#highestQueued = Math.max(this.#highestQueued, r.time);
    }
    this.ref = spawnActor<null, DriverMessage>(parent, 'driver', null, async (s, msg) => {
      await this.#handle(msg);
      return s;
    });
    if (this.#queue.length > 0) dispatch(this.ref, { type: 'driver.kick' });
  }

  /**
   * Checkpoints the last completed batch unless it already is, and waits until the
   * journal holds it (a graceful stop leaves nothing to replay).
   */
  async finalCheckpoint(): Promise<void> {
    const cp = this.#cfg.checkpointer;
    const time = this.#lastCompleted;
    if (cp === undefined || time === undefined || this.#failed) return;
    // A checkpoint of `time` may still be writing: a second capture would overwrite its delta with an empty one.
    await cp.drain();
    if ((cp.lastCheckpointTime ?? Number.NEGATIVE_INFINITY) < time) await this.#checkpoint(time, true);
    await cp.drain();
  }

  /** The last batch time whose outputs and state are complete. */
  get lastCompleted(): number | undefined {
    return this.#lastCompleted;
  }

  /** The committed value of `key` in the stateful node `nodeId`, read from the worker that owns it. */
  async lookup(nodeId: number, key: unknown): Promise<unknown> {
    const node = this.#cfg.plan.byId.get(nodeId);
    if (node === undefined) return undefined;
    await this.#ready;
    return this.#coordinator.lookup(nodeId, partitionOf(key, node.partitions), key);
  }

  /** Workers `lost` stopped heart-beating: see Reassignment.workersLost. */
  workersLost(lost: readonly string[], closed: readonly string[] = []): void {
    this.#reassignment?.workersLost(lost, closed);
  }

  /** Workers joined or are leaving gracefully: see Reassignment.rebalance. */
  rebalance(leaving: readonly string[], joined: readonly string[]): void {
    this.#reassignment?.rebalance(leaving, joined);
  }

  /** The workers of the current assignment. */
  get assignedWorkers(): readonly string[] {
    const a = this.#coordinator.assignment;
    return a ? [...new Set([...a.slots, ...Object.values(a.inputs)])] : [];
  }

  /** The current assignment's epoch. */
  get assignmentEpoch(): number {
    return this.#coordinator.assignment?.epoch ?? 0;
  }

  /** A receiver's allocation of batch `time`, cut on the worker that runs it (clusters). */
  async allocateRemote(nodeId: number, time: number, from: number): Promise<Allocation> {
    await this.#ready;
    return this.#coordinator.allocateInput(nodeId, time, from);
  }

  /** The committed state of every partition of the stateful node `nodeId` (tests, tools). */
  async stateSnapshots(nodeId: number): Promise<unknown[]> {
    await this.#ready;
    return this.#coordinator.snapshots(nodeId);
  }

  /** Generates the batch of `time`: the tick is handled in order with the driver's other messages. */
  tick(time: number): void {
    if (this.#abandoned) return;
    this.#pendingTicks++;
    dispatch(this.ref, { type: 'driver.tick', time });
  }

  /**
   * Resolves when no batch is queued or running and every tick sent so far has been
   * handled (a graceful stop must not lose a batch whose tick is still in the mailbox),
   * or at once after a failure.
   */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Gives up at once, as a killed process would: no queued batch starts, the batch in
   * flight takes no further step, commits nothing and reports nothing.
   */
  abandon(): void {
    this.#abandoned = true;
    this.#failed = true;
    this.#queue.length = 0;
    this.#coordinator.abandon();
    this.#localWorker?.abandon();
    this.#localHub?.close();
    this.#wakeIdle();
  }

  #isIdle(): boolean {
    return this.#failed || (!this.#running && this.#queue.length === 0 && this.#pendingTicks === 0);
  }

  async #handle(msg: DriverMessage): Promise<void> {
    switch (msg.type) {
      case 'driver.tick':
        try {
          await this.#generate(msg.time);
        } finally {
          this.#pendingTicks--;
        }
        break;
      case 'driver.batch-done':
        this.#running = false;
        break;
      case 'driver.batch-failed':
        this.#running = false;
        this.#recoverOrFail(msg.error as Error);
        break;
      case 'driver.kick':
        break;
      default:
        assertNever(msg);
    }
    this.#maybeRun();
  }

  async #generate(time: number): Promise<void> {
    // A receiver's worker may be the one lost: allocate once the inputs are reassigned.
    await this.#reassignment?.active?.catch(() => {});
    if (this.#failed) return;
    const allocations = new Map<number, Allocation>();
    try {
      for (const [nodeId, input] of this.#cfg.inputs) allocations.set(nodeId, await this.#allocate(input, time));
      const positions = this.#positions();
      // The allocation is journaled before the batch may run: a restart replays it as it was.
      await this.#cfg.checkpointer?.allocated(time, this.#byKey(allocations));
      // Checkpoints store positions whose allocations are all journaled: one taken between
      // an allocate() and its journal entry would skip that batch's input after a crash.
      this.#journaledPositions = positions;
    } catch (error) {
      this.#fail(error as Error);
      return;
    }
    // A failover during the allocation queued this batch already (its replay list holds every journaled
    // one), and may have run it: queued twice, its state changes would count twice.
    if (time <= this.#highestQueued) return;
    this.#highestQueued = time;
    this.#queue.push({ time, allocations });
    this.#cfg.listener.batchSubmitted?.(time);
  }

  /**
   * A cluster recovers from what it can: a worker that lost its leases is failed over
   * like a lost one, a message lost in the network restores from the last checkpoint,
   * a batch cut short by a lost worker runs again after the failover (which may be
   * over already). Anything else fails the driver.
   */
  #recoverOrFail(error: Error): void {
    const moves = this.#reassignment;
    const fenced = fencedWorkerOf(error);
    if (moves && fenced !== undefined) moves.workersLost([fenced]);
    else if (moves && isStall(error)) moves.stalled(error);
    else if (moves?.active === undefined && !isWorkerLoss(error)) this.#fail(error);
  }

  /** A receiver's worker may not answer (a message lost in the network): recover, then ask again. */
  async #allocate(input: OpenInput<unknown>, time: number): Promise<Allocation> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await input.allocate(time);
      } catch (error) {
        if (!this.#reassignment || !isStall(error) || attempt >= ALLOCATE_ATTEMPTS || this.#failed) throw error;
        this.#reassignment.stalled(error as Error);
        await this.#reassignment.active?.catch(() => {});
      }
    }
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue.length = 0;
    this.#cfg.listener.failed(error);
  }

  #maybeRun(): void {
    if (this.#running || this.#failed || this.#reassignment?.active) {
      if (this.#isIdle()) this.#wakeIdle();
      return;
    }
    const job = this.#queue.shift();
    if (job === undefined) {
      if (this.#isIdle()) this.#wakeIdle();
      return;
    }
    this.#running = true;
    const schedulingDelayMs = Math.max(0, this.#cfg.clock.now() - job.time);
    this.#cfg.listener.batchStarted?.(job.time, schedulingDelayMs);
    const watch = startStopwatch();
    const run = this.#run(job).then(async (ran) => {
      await this.#afterBatch(job);
      return ran;
    });
    this.#inFlight = run.catch(() => undefined);
    run.then(
      ({ records, stateKeys, inputs }) => {
        if (this.#abandoned) return;
        // Done first: a listener that throws must not leave the driver running forever.
        dispatch(this.ref, { type: 'driver.batch-done', time: job.time });
        this.#cfg.listener.batchCompleted({
          time: job.time,
          records,
          schedulingDelayMs,
          processingMs: watch.elapsedMs(),
          queuedBatches: this.#queue.length + this.#pendingTicks,
          stateKeys: Object.fromEntries(stateKeys),
          inputRecords: Object.fromEntries(inputs),
        });
      },
      (error: unknown) => {
        if (this.#abandoned) return;
        dispatch(this.ref, { type: 'driver.batch-failed', time: job.time, error });
      },
    );
  }

  /** Journals the completion and, when due, takes a checkpoint of the batch just committed. */
  async #afterBatch(job: Job): Promise<void> {
    this.#lastCompleted = job.time;
    const cp = this.#cfg.checkpointer;
    if (cp === undefined || this.#abandoned) return;
    if (!job.skipOutputs) await cp.completed(job.time);
    if (cp.isCheckpointTime(job.time)) await this.#checkpoint(job.time, false);
  }

  /**
   * Captures every state partition as of `time` (the commits of that batch are
   * ahead in each mailbox) and the input positions, then writes them in the
   * background; `wait` waits for the write (final checkpoint).
   */
  async #checkpoint(time: number, wait: boolean): Promise<void> {
    const cp = this.#cfg.checkpointer as Checkpointer;
    const full: string[] = [];
    for (const node of this.#cfg.plan.stateful) {
      const operator = this.#key(node.id);
      for (let q = 0; q < node.partitions; q++) if (cp.wantsFull(operator, q)) full.push(`${operator}/${q}`);
    }
    const captured = await this.#coordinator.capture(time, full);
    const written = cp.checkpoint(time, captured, this.#journaledPositions).then(
      (stats) => {
        if (stats && !this.#abandoned) this.#cfg.listener.checkpointCompleted?.(stats);
      },
      (error: unknown) => {
        if (!this.#abandoned) this.#fail(error as Error);
      },
    );
    if (wait) await written;
  }

  #positions(): Record<string, unknown> {
    const positions: Record<string, unknown> = {};
    for (const [nodeId, input] of this.#cfg.inputs) {
      if (input.position) positions[this.#key(nodeId)] = input.position();
    }
    return positions;
  }

  #key(nodeId: number): string {
    return this.#cfg.keys?.get(nodeId) ?? String(nodeId);
  }

  #byKey(allocations: ReadonlyMap<number, Allocation>): Record<string, Allocation> {
    const out: Record<string, Allocation> = {};
    for (const [nodeId, a] of allocations) out[this.#key(nodeId)] = a;
    return out;
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #ask<M, R>(ref: ActorRef<M>, build: (replyTo: ActorRef<Reply<R>>) => M): Promise<R> {
    return ask<M, Reply<R>>(ref, build, this.#cfg.taskTimeoutMs).then(unwrap);
  }

  /** Runs one batch; returns its number of input records. */
  async #run(job: Job): Promise<{ records: number; stateKeys: ReadonlyMap<string, number>; inputs: ReadonlyMap<string, number> }> {
    const { plan } = this.#cfg;
    const time = job.time;
    let current = 'input';
    let records = 0;
    let stateKeys: ReadonlyMap<string, number> = new Map();
    let inputs: ReadonlyMap<string, number> = new Map();
    try {
      await this.#ready;
      this.#assertLive();
      const result = await this.#coordinator.runBatch(time, job.allocations, job.skipOutputs === true);
      records = result.records;
      stateKeys = result.stateKeys;
      inputs = result.inputs;
      // A batch that runs again rewrites the same dead letters (a replay whose outputs ran: quietly, they were reported),
      // plus any its input could not give again (a file gone since).
      if (result.deadLetters.length > 0) {
        current = 'dead letters';
        await this.#cfg.deadLetters?.(time, result.deadLetters, job.skipOutputs === true);
      }
      for (const op of job.skipOutputs ? [] : plan.outputs) {
        const data = result.outputs.get(op.id);
        if (data === undefined) continue;
        this.#assertLive();
        current = op.name;
        await this.#output(op, time, data);
      }
      this.#assertLive();
    } catch (error) {
      if (!this.#abandoned) void this.#coordinator.abort(time).catch(() => {});
      if (error instanceof OperatorFailure) throw new BatchFailedError(error.operator, time, error.cause);
      throw new BatchFailedError(current, time, error);
    }
    // Awaited, so a batch's processing time includes applying its state changes.
    await this.#coordinator.commit(time);
    this.#coordinator.settled();
    return { records, stateKeys, inputs };
  }

  /** Stops a batch in flight between two steps once the driver was abandoned. */
  #assertLive(): void {
    if (this.#abandoned) throw new Error('the driver was abandoned');
  }

  #output(op: OutputOp, time: number, records: unknown[]): Promise<null> {
    const ref = this.#outputs.get(op.id) as ActorRef<OutputMessage>;
    return this.#ask<OutputMessage, null>(ref, (replyTo) => ({ type: 'output.run', replyTo, time, records }));
  }
}
