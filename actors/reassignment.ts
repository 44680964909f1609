/**
 * Moving slots between the workers of a running cluster job, for the driver:
 * a failover when workers are lost (not renewed for a lease: killed, paused,
 * cut off) and a handover when workers join or leave gracefully. While one runs, no
 * batch starts and no input is allocated; a worker lost meanwhile interrupts it and
 * a new failover follows.
 */
import { FencedError, TributaryError } from '../runtime/base/errors.ts';
import type { Plan } from '../runtime/graph/plan.ts';
import type { Allocation } from '../runtime/graph/wire.ts';
import { type BatchCoordinator, fencedWorkerOf, isStall } from './batch-coordinator.ts';
import type { Checkpointer } from './checkpointer.ts';
import type { AssignmentWire, RestoreSpec } from './transport/transport.ts';

/** Workers stopped heart-beating; the batch in flight runs again after the failover. */
class WorkerLostError extends TributaryError {
  constructor(lost: readonly string[]) {
    super('INVALID_STATE', `workers ${lost.join(', ')} were lost: their slots go to live workers`);
    this.name = 'WorkerLostError';
  }
}

/**
 * True for a batch failure whose cause is a lost worker (the failover runs the batch again).
 *
 * @example
 * if (!isWorkerLoss(error)) fail(error);
 */
export function isWorkerLoss(error: unknown): boolean {
  return error instanceof WorkerLostError || (error instanceof Error && error.cause instanceof WorkerLostError);
}

/** A batch to run again, as the driver queues it. */
export interface ReplayBatch {
  readonly time: number;
  readonly allocations: ReadonlyMap<number, Allocation>;
  readonly skipOutputs: boolean;
  readonly replayed: boolean;
}

/**
 * Workers joined or left gracefully: slots moved after a checkpoint of the last batch,
 * so nothing is replayed unless that checkpoint could not be written (`replayed` batches).
 */
export interface RebalancedInfo {
  /** Workers that joined. */
  readonly joined: readonly string[];
  /** Workers that announced they leave. */
  readonly leaving: readonly string[];
  /** The new owners: slot q's worker at index q. */
  readonly slots: readonly string[];
  /** Batches run again (0 unless the handover's checkpoint could not be written). */
  readonly replayed: number;
  /** Real ms the move took. */
  readonly ms: number;
}

/** Lost workers' slots went to live workers; `replayed` completed batches run again (`ms` from detection). */
export interface FailedOverInfo {
  /** Workers declared lost. */
  readonly lost: readonly string[];
  /** The lost workers seen gone by their closed connections (the others stopped renewing for a lease). */
  readonly closed: readonly string[];
  /** The new owners: slot q's worker at index q. */
  readonly slots: readonly string[];
  /** Batches run again from the last checkpoint. */
  readonly replayed: number;
  /** Real ms from detecting the loss to the slots restored. */
  readonly ms: number;
}

/** What a reassignment reports. */
export interface ReassignmentListener {
  rebalanced?(info: RebalancedInfo): void;
  failedOver?(info: FailedOverInfo): void;
  /** The data plane stalled: every worker restores from the last checkpoint. */
  stalled?(reason: Error): void;
  failed(error: Error): void;
}

/** The driver, as a reassignment sees it. */
export interface ReassignmentHost {
  readonly coordinator: BatchCoordinator;
  readonly checkpointer: Checkpointer | undefined;
  readonly plan: Plan;
  readonly keys: ReadonlyMap<number, string> | undefined;
  readonly zeroTimeMs: number;
  readonly listener: ReassignmentListener;
  /** A journaled assignment over the live workers other than `without`. */
  reassign(without: readonly string[]): Promise<AssignmentWire>;
  /** Settles when the batch in flight settled. */
  inFlight(): Promise<unknown>;
  lastCompleted(): number | undefined;
  /** Checkpoints batch `time` now and waits until it is committed. */
  checkpointNow(time: number): Promise<void>;
  replaceQueue(jobs: readonly ReplayBatch[]): void;
  failed(): boolean;
  fail(error: Error): void;
  /** Lets the queue run again. */
  resume(): void;
}

function restoreOf(cp: Checkpointer): RestoreSpec | undefined {
  const last = cp.lastCheckpoint;
  return last
    ? { time: last.time, chains: Object.fromEntries(last.snapshots.map((r) => [`${r.operator}/${r.partition}`, r.chain])) }
    : undefined;
}

/**
 * Failovers and handovers of one driver run.
 *
 * @example
 * const moves = new Reassignment(host);
 * moves.workersLost(['w2']);
 */
export class Reassignment {
  readonly #host: ReassignmentHost;
  #active: Promise<void> | undefined;
  /** Workers lost while a failover or handover ran: the next failover takes them out. */
  readonly #lostDuring = new Set<string>();
  /** Workers the running failover takes out. */
  readonly #losing = new Set<string>();
  /** A stall that cut the running failover or handover short: recover again once it ended. */
  #stalledDuring: Error | undefined;
  #refused = false;
  /** Workers reported gone by their closed connections. */
  readonly #closed = new Set<string>();

  constructor(host: ReassignmentHost) {
    this.#host = host;
  }

  /** The failover or handover in progress, if any. */
  get active(): Promise<void> | undefined {
    return this.#active;
  }

  /**
   * Workers `lost` stopped heart-beating: the batch in flight stops, their slots and
   * inputs go to live workers, every worker restores its partitions from the last
   * checkpoint, and the batches journaled since then run again (outputs of
   * completed ones are not re-run). State stays exactly-once. Needs a checkpoint.
   */
  workersLost(lost: readonly string[], closed: readonly string[] = []): void {
    const h = this.#host;
    for (const w of closed) this.#closed.add(w);
    const cp = h.checkpointer;
    if (h.failed()) return;
    if (cp === undefined) {
      h.fail(new FencedError(`workers ${lost.join(', ')} were lost and the app has no checkpoint to restore their partitions from`));
      return;
    }
    if (this.#active) {
      // Lost during a failover or a handover: that one stops (its requests to the lost worker fail now) and a new one starts.
      const fresh = lost.filter((w) => !this.#lostDuring.has(w) && !this.#losing.has(w));
      if (fresh.length === 0) return;
      for (const w of fresh) this.#lostDuring.add(w);
      h.coordinator.markLost(fresh, new WorkerLostError(fresh));
      return;
    }
    for (const w of lost) this.#losing.add(w);
    this.#restoreAndReplay(lost, new WorkerLostError(lost));
  }

  /**
   * The data plane stalled (a message lost while a NATS server restarted): as a
   * failover without lost workers, every worker restores from the last checkpoint and
   * the batches since then run again; the next stall time is twice as long.
   */
  stalled(reason: Error): void {
    const h = this.#host;
    if (h.failed()) return;
    h.coordinator.stalled();
    if (h.checkpointer === undefined) {
      h.fail(reason);
      return;
    }
    if (this.#active) {
      // The running failover or handover waits for the same lost message: it fails and starts over.
      this.#stalledDuring = reason;
      h.coordinator.interrupt(reason);
      return;
    }
    h.listener.stalled?.(reason);
    this.#restoreAndReplay([], reason);
  }

  #restoreAndReplay(lost: readonly string[], reason: Error): void {
    const h = this.#host;
    const cp = h.checkpointer as Checkpointer;
    const started = performance.now();
    h.coordinator.markLost(lost, reason);
    this.#run(async () => {
      await h.inFlight();
      // A checkpoint still being written is the one to restore from: a replay must not write its times again.
      await cp.drain();
      const restore = restoreOf(cp);
      const assignment = await h.reassign(lost);
      cp.restartChains();
      await h.coordinator.restart(assignment, h.zeroTimeMs, restore, reason);
      const replayed = this.#replayAfterRestore(cp);
      const closed = lost.filter((w) => this.#closed.has(w));
      h.listener.failedOver?.({ lost, closed, slots: assignment.slots, replayed, ms: performance.now() - started });
    });
  }

  /**
   * Workers `joined`, or `leaving` ones asked to go: once the batch in flight ends,
   * the last completed batch is checkpointed (each worker snapshots its slots), the
   * slots are assigned over the workers that stay, and they restore from that
   * checkpoint: a handover, with nothing to replay.
   */
  rebalance(leaving: readonly string[], joined: readonly string[]): void {
    const h = this.#host;
    const cp = h.checkpointer;
    if (h.failed() || this.#active) return;
    if (cp === undefined && h.plan.stateful.length > 0) {
      // A newcomer just stays idle; a worker leaving would take state nobody can restore.
      if (leaving.length > 0 && !this.#refused) {
        this.#refused = true;
        h.listener.failed(
          new FencedError(`workers cannot leave an app without a checkpoint: their state could not move (leaving: ${leaving.join(', ')})`),
        );
      }
      return;
    }
    const started = performance.now();
    this.#run(async () => {
      await h.inFlight();
      let restore: RestoreSpec | undefined;
      if (cp) {
        await cp.drain();
        const last = h.lastCompleted();
        if (last !== undefined && (cp.lastCheckpointTime ?? Number.NEGATIVE_INFINITY) < last) await h.checkpointNow(last);
        await cp.drain();
        restore = restoreOf(cp);
        // A checkpoint of the last batch that could not be written (the journal unreachable)
        // leaves an older one to restore: the batches since then run again, as in a failover.
        cp.restartChains();
      }
      const assignment = await h.reassign(leaving);
      await h.coordinator.restart(assignment, h.zeroTimeMs, restore, new TributaryError('INVALID_STATE', 'slots are moving'), leaving);
      const replayed = cp ? this.#replayAfterRestore(cp) : 0;
      h.listener.rebalanced?.({ joined, leaving, slots: assignment.slots, replayed, ms: performance.now() - started });
    });
  }

  /**
   * Queues the batches journaled after the checkpoint every worker just restored,
   * outputs of completed ones skipped; returns how many of them had completed (the
   * others were waiting in the queue anyway).
   */
  #replayAfterRestore(cp: Checkpointer): number {
    const h = this.#host;
    const byKey = new Map([...(h.keys ?? [])].map(([id, key]) => [key, id]));
    const replay = cp.replayable().map((r): ReplayBatch => {
      const allocations = new Map<number, Allocation>();
      for (const [key, a] of Object.entries(r.inputs)) {
        const id = byKey.get(key) ?? Number(key);
        if (Number.isFinite(id)) allocations.set(id, a);
      }
      return { time: r.time, allocations, skipOutputs: r.completed, replayed: true };
    });
    h.replaceQueue(replay);
    const last = h.lastCompleted() ?? Number.NEGATIVE_INFINITY;
    return replay.filter((j) => j.time <= last).length;
  }

  #run(work: () => Promise<void>): void {
    this.#active = work().then(
      () => this.#ended(),
      (error: unknown) => this.#ended(error as Error),
    );
  }

  /** A failover or handover ended: go on, or fail over again for workers lost meanwhile. */
  #ended(error?: Error): void {
    this.#active = undefined;
    this.#losing.clear();
    const stall = this.#stalledDuring ?? (error && isStall(error) ? error : undefined);
    this.#stalledDuring = undefined;
    if (this.#lostDuring.size > 0) {
      const again = [...this.#lostDuring];
      this.#lostDuring.clear();
      this.workersLost(again);
      return;
    }
    if (stall) {
      this.stalled(stall);
      return;
    }
    const fenced = error ? fencedWorkerOf(error) : undefined;
    if (fenced !== undefined) {
      this.workersLost([fenced]);
      return;
    }
    if (error) this.#host.fail(error);
    else this.#host.resume();
  }
}
