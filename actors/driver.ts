/**
 * The driver: job generator and scheduler. On every tick it allocates the input
 * received so far to that batch time and queues the batch; batches then run one at
 * a time, in time order (state depends on it), through stage, state and output
 * actors. A slow output holds its batch: later batches wait in the queue and the
 * wait is reported as scheduling delay, never dropped.
 */

import { concatAll } from '../runtime/base/arrays.ts';
import { assertNever } from '../runtime/base/assert.ts';
import type { Clock } from '../runtime/base/clock.ts';
import { startStopwatch } from '../runtime/base/clock.ts';
import { BatchFailedError, OperatorFailure } from '../runtime/base/errors.ts';
import type { GraphNode, OutputOp, PartitionState, StepResult } from '../runtime/graph/graph.ts';
import type { OpenInput } from '../runtime/graph/input-source.ts';
import { isActive, type Plan } from '../runtime/graph/plan.ts';
import type { Allocation, SnapshotData } from '../runtime/graph/wire.ts';
import type { CapturedState, Checkpointer, CheckpointStats } from './checkpointer.ts';
import type { DriverMessage, OutputMessage, Reply, StageMessage, StateMessage } from './messages.ts';
import { unwrap } from './messages.ts';
import { spawnOutput } from './output.ts';
import { spawnStage } from './stage.ts';
import { spawnState } from './state.ts';
import { type ActorRef, type ActorSystem, ask, dispatch, spawnActor } from './system.ts';

/** What the app learns about each finished batch. */
export interface BatchInfo {
  readonly time: number;
  /** Input records of the batch, all inputs together. */
  readonly records: number;
  /** How long the batch waited behind earlier ones (ms of the context's clock). */
  readonly schedulingDelayMs: number;
  /** How long the batch took to run (real ms). */
  readonly processingMs: number;
  /** Batches generated and not yet started when this one finished. */
  readonly queuedBatches: number;
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
  failed(error: Error): void;
}

/** A batch the journal says was allocated before a restart: it runs again from its inputs. */
export interface ReplayJob {
  readonly time: number;
  readonly allocations: ReadonlyMap<number, Allocation>;
  /** Its outputs completed before the restart: only its state changes are redone. */
  readonly completed: boolean;
}

/** What the driver needs to run. */
export interface DriverConfig {
  readonly plan: Plan;
  readonly clock: Clock;
  readonly zeroTimeMs: number;
  readonly stagePoolSize: number;
  readonly taskTimeoutMs: number;
  readonly inputs: ReadonlyMap<number, OpenInput<unknown>>;
  readonly listener: DriverListener;
  /** Stable keys of nodes: names in the journal and the snapshot store. */
  readonly keys?: ReadonlyMap<number, string> | undefined;
  /** Journals and checkpoints, when the app has a checkpoint directory. */
  readonly checkpointer?: Checkpointer | undefined;
  /** States restored from a checkpoint, by node id, one per partition. */
  readonly restored?: ReadonlyMap<number, readonly PartitionState[]> | undefined;
  /** Batches to run again before any new one, oldest first. */
  readonly replay?: readonly ReplayJob[] | undefined;
}

interface Job {
  readonly time: number;
  readonly allocations: ReadonlyMap<number, Allocation>;
  /** A replayed batch whose outputs already ran: skip them. */
  readonly skipOutputs?: boolean;
  /** A replayed batch: its allocation and completion are in the journal already. */
  readonly replayed?: boolean;
}

/** Splits records into `n` contiguous partitions (order is kept when concatenated). */
export function splitIntoPartitions(records: readonly unknown[], n: number): unknown[][] {
  const out: unknown[][] = [];
  const size = Math.ceil(records.length / n);
  for (let p = 0; p < n; p++) out.push(records.slice(p * size, (p + 1) * size));
  return out;
}

/**
 * The driver's logic; its actor feeds it ticks and batch outcomes one at a time.
 */
export class Driver {
  readonly #cfg: DriverConfig;
  readonly #stages: ActorRef<StageMessage>[] = [];
  readonly #states = new Map<number, ActorRef<StateMessage>[]>();
  readonly #outputs = new Map<number, ActorRef<OutputMessage>>();
  readonly #queue: Job[] = [];
  #running = false;
  #failed = false;
  #abandoned = false;
  /** Ticks sent to the actor and not yet turned into queued batches. */
  #pendingTicks = 0;
  #idleWaiters: (() => void)[] = [];
  #lastCompleted: number | undefined;
  /** Input positions as of the last journaled allocation. */
  #journaledPositions: Record<string, unknown> = {};
  ref!: ActorRef<DriverMessage>;

  constructor(parent: ActorSystem | ActorRef<never>, cfg: DriverConfig) {
    this.#cfg = cfg;
    this.#journaledPositions = this.#positions();
    for (let p = 0; p < cfg.stagePoolSize; p++) this.#stages.push(spawnStage(parent, `stage-${p}`, cfg.plan));
    for (const node of cfg.plan.stateful) {
      if (node.kind !== 'stateful') continue;
      const refs: ActorRef<StateMessage>[] = [];
      for (let q = 0; q < node.partitions; q++) {
        const state = cfg.restored?.get(node.id)?.[q] ?? node.stateful.create(q, node.partitions);
        refs.push(spawnState(parent, `state-${node.id}-${q}`, state));
      }
      this.#states.set(node.id, refs);
    }
    for (const op of cfg.plan.outputs) this.#outputs.set(op.id, spawnOutput(parent, `output-${op.id}`, op));
    for (const r of cfg.replay ?? []) {
      this.#queue.push({ time: r.time, allocations: r.allocations, skipOutputs: r.completed, replayed: true });
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

  /** The state actors of a stateful node, by partition. */
  stateRefs(nodeId: number): readonly ActorRef<StateMessage>[] {
    return this.#states.get(nodeId) ?? [];
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
        this.#fail(msg.error as Error);
        break;
      case 'driver.kick':
        break;
      default:
        assertNever(msg);
    }
    this.#maybeRun();
  }

  async #generate(time: number): Promise<void> {
    if (this.#failed) return;
    const allocations = new Map<number, Allocation>();
    try {
      for (const [nodeId, input] of this.#cfg.inputs) allocations.set(nodeId, await input.allocate(time));
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
    this.#queue.push({ time, allocations });
    this.#cfg.listener.batchSubmitted?.(time);
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue.length = 0;
    this.#cfg.listener.failed(error);
  }

  #maybeRun(): void {
    if (this.#running || this.#failed) {
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
    this.#run(job)
      .then(async (records) => {
        await this.#afterBatch(job);
        return records;
      })
      .then(
        (records) => {
          if (this.#abandoned) return;
          // Done first: a listener that throws must not leave the driver running forever.
          dispatch(this.ref, { type: 'driver.batch-done', time: job.time });
          this.#cfg.listener.batchCompleted({
            time: job.time,
            records,
            schedulingDelayMs,
            processingMs: watch.elapsedMs(),
            queuedBatches: this.#queue.length + this.#pendingTicks,
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
    const captured: CapturedState[] = [];
    for (const node of this.#cfg.plan.stateful) {
      const operator = this.#key(node.id);
      const refs = this.#states.get(node.id) ?? [];
      const datas = await Promise.all(
        refs.map((ref, partition) =>
          this.#ask<StateMessage, SnapshotData>(ref, (replyTo) => ({
            type: 'state.capture',
            replyTo,
            full: cp.wantsFull(operator, partition),
          })),
        ),
      );
      datas.forEach((data, partition) => {
        captured.push({ operator, partition, data });
      });
    }
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

  #stage(p: number): ActorRef<StageMessage> {
    return this.#stages[p % this.#stages.length] as ActorRef<StageMessage>;
  }

  /** Runs one batch; returns its number of input records. */
  async #run(job: Job): Promise<number> {
    const { plan, zeroTimeMs } = this.#cfg;
    const time = job.time;
    const memo = new Map<number, unknown[][]>();
    const extras = new Map<number, unknown[][]>();
    const stepped: ActorRef<StateMessage>[] = [];
    let current = 'input';
    let records = 0;
    try {
      for (const node of plan.inputs) {
        current = node.name;
        const data = await (this.#cfg.inputs.get(node.id) as OpenInput<unknown>).read(job.allocations.get(node.id) as Allocation);
        records += data.length;
        memo.set(node.id, splitIntoPartitions(data, node.partitions));
      }
      for (const node of plan.order) {
        this.#assertLive();
        current = node.name;
        await this.#compute(node, time, zeroTimeMs, memo, extras, stepped);
      }
      for (const op of job.skipOutputs ? [] : plan.outputs) {
        const data = memo.get(op.stream.id);
        if (data === undefined) continue;
        this.#assertLive();
        current = op.name;
        await this.#output(op, time, concatAll(data));
      }
      this.#assertLive();
    } catch (error) {
      for (const ref of stepped) dispatch(ref, { type: 'state.rollback', time });
      if (error instanceof OperatorFailure) throw new BatchFailedError(error.operator, time, error.cause);
      throw new BatchFailedError(current, time, error);
    }
    // Awaited, so a batch's processing time includes applying its state changes.
    await Promise.all(stepped.map((ref) => this.#ask<StateMessage, void>(ref, (replyTo) => ({ type: 'state.commit', replyTo, time }))));
    return records;
  }

  /** Stops a batch in flight between two steps once the driver was abandoned. */
  #assertLive(): void {
    if (this.#abandoned) throw new Error('the driver was abandoned');
  }

  #output(op: OutputOp, time: number, records: unknown[]): Promise<null> {
    const ref = this.#outputs.get(op.id) as ActorRef<OutputMessage>;
    return this.#ask<OutputMessage, null>(ref, (replyTo) => ({ type: 'output.run', replyTo, time, records }));
  }

  async #compute(
    node: GraphNode,
    time: number,
    zeroTimeMs: number,
    memo: Map<number, unknown[][]>,
    extras: Map<number, unknown[][]>,
    stepped: ActorRef<StateMessage>[],
  ): Promise<void> {
    const plan = this.#cfg.plan;
    const active = isActive(node.slideMs, time, zeroTimeMs);
    switch (node.kind) {
      case 'input':
        return;
      case 'narrow': {
        const source = memo.get(plan.chainOf(node).source.id);
        if (!active || source === undefined) return;
        const out = await Promise.all(
          source.map((input, p) =>
            this.#ask<StageMessage, unknown[]>(this.#stage(p), (replyTo) => ({
              type: 'stage.collect',
              replyTo,
              nodeId: node.id,
              time,
              input,
            })),
          ),
        );
        memo.set(node.id, out);
        return;
      }
      case 'shuffle': {
        if (!active) return;
        const perParent = await Promise.all(
          node.parents.map((parent, parentIndex) => {
            const source = memo.get(plan.feedOf(parent).source.id) ?? [];
            return Promise.all(
              source.map((input, p) =>
                this.#ask<StageMessage, unknown[][]>(this.#stage(p), (replyTo) => ({
                  type: 'stage.map',
                  replyTo,
                  nodeId: node.id,
                  parentIndex,
                  partition: p,
                  time,
                  input,
                })),
              ),
            );
          }),
        );
        const out = await Promise.all(
          Array.from({ length: node.partitions }, (_, q) => {
            const itemsPerParent = perParent.map((maps) => concatAll(maps.map((chunks) => chunks[q] ?? [])));
            return this.#ask<StageMessage, unknown[]>(this.#stage(q), (replyTo) => ({
              type: 'stage.reduce',
              replyTo,
              nodeId: node.id,
              time,
              itemsPerParent,
            }));
          }),
        );
        memo.set(node.id, out);
        return;
      }
      case 'stateful': {
        const source = memo.get((node.parents[0] as GraphNode).id);
        if (source === undefined) return;
        const refs = this.#states.get(node.id) ?? [];
        const wantExtra = node.snapshotsWanted;
        stepped.push(...refs);
        const results = await Promise.all(
          refs.map((ref, q) =>
            this.#ask<StateMessage, StepResult>(ref, (replyTo) => ({
              type: 'state.step',
              replyTo,
              time,
              input: source[q] ?? [],
              emit: active,
              wantExtra,
            })),
          ),
        );
        if (active)
          memo.set(
            node.id,
            results.map((r) => r.output ?? []),
          );
        if (wantExtra)
          extras.set(
            node.id,
            results.map((r) => r.extra ?? []),
          );
        return;
      }
      case 'whole': {
        if (!active) return;
        const batches = node.parents.map((p) => concatAll(memo.get(p.id) ?? []));
        const out = await this.#ask<StageMessage, unknown[]>(this.#stage(0), (replyTo) => ({
          type: 'stage.whole',
          replyTo,
          nodeId: node.id,
          time,
          batches,
        }));
        memo.set(node.id, splitIntoPartitions(out, node.partitions));
        return;
      }
      case 'state-view': {
        const extra = extras.get((node.parents[0] as GraphNode).id);
        if (extra !== undefined && active) memo.set(node.id, extra);
        return;
      }
      default:
        assertNever(node);
    }
  }
}
