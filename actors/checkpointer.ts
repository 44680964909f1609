/**
 * The driver's bookkeeper for fault tolerance: journals allocations, received
 * blocks and completions through one serial queue (so the journal's order is the
 * order of calls), writes state snapshots, journals `checkpoint.completed` only
 * after every snapshot is stored (the commit point), then rolls the journal and
 * deletes what the retained checkpoints no longer need.
 */

import type { JournalEvent, SnapshotRef } from '../journal/events.ts';
import type { Journal } from '../journal/journal.ts';
import { blockIdsOf } from '../journal/recovery-plan.ts';
import { CorruptCheckpointError } from '../runtime/base/errors.ts';
import type { Logger } from '../runtime/base/logger.ts';
import type { Allocation, FingerprintEntry, ReceivedBlock } from '../runtime/graph/wire.ts';
import type { SnapshotKey } from '../snapshots/snapshot-codec.ts';
import type { SnapshotStore } from '../snapshots/snapshot-store.ts';
import type { CapturedPartition } from './transport/transport.ts';

type Started = Extract<JournalEvent, { type: 'context.started' }>;
type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;
type Allocated = Extract<JournalEvent, { type: 'batch.allocated' }>;
type Block = Extract<JournalEvent, { type: 'receiver.block' }>;
type AssignmentChanged = Extract<JournalEvent, { type: 'assignment.changed' }>;

/** Limits and intervals of checkpointing. */
export interface CheckpointSettings {
  /** Time between checkpoints (a multiple of the batch duration). */
  readonly intervalMs: number;
  /** Every n-th checkpoint of a partition is full, the others are deltas. */
  readonly fullEvery: number;
  /**
   * Completed checkpoints kept at least (older snapshots and journal segments are
   * deleted); more are kept until one of them shares no snapshot with the newest.
   */
  readonly keepCheckpoints: number;
}

/**
 * One state partition's captured snapshot: its data, ready to be written, or the
 * figures of a snapshot its worker already wrote (on a cluster).
 */
export type CapturedState = CapturedPartition;

/** Numbers about one checkpoint (for logs, benchmarks and the web UI). */
export interface CheckpointStats {
  /** The batch time the checkpoint holds the state of. */
  readonly time: number;
  /** Bytes of the snapshots written for it, all operators and partitions together. */
  readonly snapshotBytes: number;
  /** Key-value entries those snapshots hold (a delta holds only the keys that changed). */
  readonly entries: number;
  /** Real ms from capturing the state to the checkpoint journaled. */
  readonly writeMs: number;
  /** `full` when every partition's snapshot was full, `incremental` when every one was a delta, else `mixed`. */
  readonly kind: 'full' | 'incremental' | 'mixed';
  /** The same figures per stateful operator, by its snapshot name (stable key). */
  readonly operators: readonly OperatorCheckpointStats[];
}

/** One stateful operator's share of a checkpoint, all its partitions together. */
export interface OperatorCheckpointStats {
  /** The operator's snapshot name: its `.uid(name)`, else its stable key. */
  readonly operator: string;
  /** Bytes of its snapshots in this checkpoint, all partitions together. */
  readonly snapshotBytes: number;
  /** Key-value entries its snapshots hold. */
  readonly entries: number;
  /** `full` when each partition's snapshot was full, `incremental` when each was a delta, else `mixed`. */
  readonly kind: 'full' | 'incremental' | 'mixed';
}

/**
 * Journals and checkpoints for one running context.
 *
 * @example
 * const keeper = new Checkpointer(journal, store, settings, logger, started, undefined);
 * await keeper.begin();
 */
export class Checkpointer {
  readonly #journal: Journal;
  readonly #store: SnapshotStore;
  readonly #settings: CheckpointSettings;
  readonly #logger: Logger;
  readonly #started: Started;
  #queue: Promise<unknown> = Promise.resolve();
  #checkpoints: Checkpoint[] = [];
  /** Journal rolls asked for so far by this keeper (a failed one counts: segments are kept, not lost). */
  #rolls = 0;
  /** The roll that followed each checkpoint committed here: the journal is needed from it on to replay from it. */
  #rollAfter = new Map<number, number>();
  #allocations = new Map<number, Allocated>();
  #completed = new Set<number>();
  #blocks = new Map<string, Block>();
  /** Batch time each journaled block was allocated to. */
  #blockAllocatedAt = new Map<string, number>();
  /** Snapshot chain (times, oldest first) of each `operator/partition`. */
  #chains = new Map<string, number[]>();
  #sinceFull = new Map<string, number>();
  #forceFull = false;
  /** A checkpoint failed: deltas captured before the next full one have no base. */
  #chainBroken = false;
  #checkpointQueue: Promise<void> = Promise.resolve();
  #failed: Error | undefined;
  /** The last assignment journaled (repeated by every roll's head). */
  #assignment: AssignmentChanged | undefined;

  constructor(
    journal: Journal,
    store: SnapshotStore,
    settings: CheckpointSettings,
    logger: Logger,
    started: Started,
    resumedFrom: Checkpoint | undefined,
    older: readonly Checkpoint[] = [],
  ) {
    this.#journal = journal;
    this.#store = store;
    this.#settings = settings;
    this.#logger = logger;
    this.#started = started;
    // The older checkpoints a recovery could still fall back to stay until a newer independent chain exists.
    if (resumedFrom) this.#checkpoints.push(...older.filter((cp) => cp.time < resumedFrom.time), resumedFrom);
    this.restartChains();
  }

  /**
   * The workers restored their partitions from the last checkpoint (a failover): the
   * next deltas build on its chains, not on captures taken since, which may never be
   * committed, and whose objects a replay may write again.
   */
  restartChains(): void {
    this.#chains.clear();
    this.#sinceFull.clear();
    this.#chainBroken = false;
    for (const ref of this.lastCheckpoint?.snapshots ?? []) {
      this.#chains.set(`${ref.operator}/${ref.partition}`, [...ref.chain]);
      this.#sinceFull.set(`${ref.operator}/${ref.partition}`, ref.chain.length - 1);
    }
  }

  get intervalMs(): number {
    return this.#settings.intervalMs;
  }

  /** The journal writer's epoch (assignments and leases carry it). */
  get epoch(): number {
    return this.#started.epoch;
  }

  /** The newest completed checkpoint, if any. */
  get lastCheckpoint(): Checkpoint | undefined {
    return this.#checkpoints[this.#checkpoints.length - 1];
  }

  /**
   * The batches journaled after the last checkpoint, oldest first, with whether
   * their outputs completed: what a failover runs again.
   */
  replayable(): { time: number; inputs: Readonly<Record<string, Allocation>>; completed: boolean }[] {
    const from = this.lastCheckpointTime ?? Number.NEGATIVE_INFINITY;
    return [...this.#allocations.values()]
      .filter((a) => a.time > from)
      .sort((a, b) => a.time - b.time)
      .map((a) => ({ time: a.time, inputs: a.inputs, completed: this.#completed.has(a.time) }));
  }

  /** The newest completed checkpoint time, if any. */
  get lastCheckpointTime(): number | undefined {
    return this.#checkpoints[this.#checkpoints.length - 1]?.time;
  }

  /** Journals the context's start (configuration and graph). */
  begin(): Promise<void> {
    return this.#serial(() => this.#journal.append(this.#started));
  }

  /** Re-registers facts recovered from the journal so the next segment head repeats them. */
  remember(allocated: readonly Allocated[], completed: readonly number[], blocks: readonly Block[]): void {
    for (const a of allocated) {
      this.#allocations.set(a.time, a);
      for (const id of blockIdsOf(a.inputs)) this.#blockAllocatedAt.set(id, a.time);
    }
    for (const t of completed) this.#completed.add(t);
    for (const b of blocks) this.#blocks.set(b.block.id, b);
  }

  /** Write-ahead: journals a received block before any batch may use it. */
  blockReceived(stream: string, block: ReceivedBlock): Promise<void> {
    const event: Block = { v: 1, type: 'receiver.block', stream, block };
    this.#blocks.set(block.id, event);
    // Synced: a receiver may acknowledge its source once this resolves.
    return this.#appendSynced(event);
  }

  /** Journals who owns which partition slot from now on (cluster runs). */
  assignmentChanged(event: AssignmentChanged): Promise<void> {
    this.#assignment = event;
    return this.#appendSynced(event);
  }

  /** Journals a batch's input allocation (before the batch runs). */
  allocated(time: number, inputs: Record<string, Allocation>): Promise<void> {
    const event: Allocated = { v: 1, type: 'batch.allocated', time, inputs };
    this.#allocations.set(time, event);
    for (const id of blockIdsOf(inputs)) this.#blockAllocatedAt.set(id, time);
    return this.#serial(() => this.#journal.append(event));
  }

  /** Journals that every output of a batch finished. */
  completed(time: number): Promise<void> {
    this.#completed.add(time);
    return this.#serial(() => this.#journal.append({ v: 1, type: 'batch.completed', time }));
  }

  /** True when a checkpoint is due after the batch at `time`. */
  isCheckpointTime(time: number): boolean {
    return (time - this.#started.zeroTimeMs) % this.#settings.intervalMs === 0;
  }

  /** Whether the next snapshot of `operator/partition` must be full. */
  wantsFull(operator: string, partition: number): boolean {
    const key = `${operator}/${partition}`;
    const since = this.#sinceFull.get(key);
    return this.#forceFull || since === undefined || since + 1 >= this.#settings.fullEvery;
  }

  /**
   * Stores the captured states of batch `time`, then commits the checkpoint in the
   * journal, rolls it and applies retention. Failures are logged and make the next
   * checkpoint full; the app keeps running.
   */
  checkpoint(time: number, captured: readonly CapturedState[], positions: Record<string, unknown>): Promise<CheckpointStats | undefined> {
    const started = performance.now();
    // Chains are decided now, in capture order: the next capture (maybe taken before
    // this one is written) builds its deltas on this one.
    const chains = captured.map((c) => {
      const key = `${c.operator}/${c.partition}`;
      const kind = kindOf(c);
      const chain = kind === 'full' ? [time] : [...(this.#chains.get(key) ?? []), time];
      this.#chains.set(key, chain);
      this.#sinceFull.set(key, kind === 'full' ? 0 : (this.#sinceFull.get(key) ?? 0) + 1);
      return chain;
    });
    this.#forceFull = false;
    this.#logger.debug({ time, kinds: captured.map(kindOf).join(',') }, 'checkpoint captured');
    // Checkpoints follow one another, but not the journal's queue: batches keep
    // journaling their allocations while snapshots are written.
    const run = this.#checkpointQueue.then(() => this.#writeCheckpoint(time, captured, chains, positions, started));
    this.#checkpointQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #writeCheckpoint(
    time: number,
    captured: readonly CapturedState[],
    chains: readonly number[][],
    positions: Record<string, unknown>,
    started: number,
  ): Promise<CheckpointStats | undefined> {
    if (this.#failed) throw this.#failed;
    if (this.#chainBroken && captured.some((c) => kindOf(c) === 'delta')) {
      // A delta captured before an earlier checkpoint failed has no stored base.
      this.#logger.warn({ time }, 'checkpoint skipped: its deltas build on a checkpoint that failed; the next one is full');
      return undefined;
    }
    let bytes = 0;
    let entries = 0;
    let operators: OperatorCheckpointStats[] = [];
    try {
      const refs: SnapshotRef[] = [];
      const entryCounts: number[] = [];
      for (const [i, c] of captured.entries()) {
        // A worker on a cluster wrote its own snapshot; in-process the data comes here.
        const key = { operator: c.operator, partition: c.partition, time };
        const size = 'stored' in c ? c.stored.bytes : await this.#store.write(key, c.data);
        // A full snapshot lets retention drop the chain before it: it must read back whole first.
        if (!('stored' in c) && c.data.kind === 'full') await this.#verify(key, c.data.keys.length);
        bytes += size;
        entries += 'stored' in c ? c.stored.entries : c.data.keys.length;
        refs.push({ operator: c.operator, partition: c.partition, time, kind: kindOf(c), chain: chains[i] as number[], bytes: size });
        entryCounts.push('stored' in c ? c.stored.entries : c.data.keys.length);
      }
      const event: Checkpoint = { v: 1, type: 'checkpoint.completed', time, snapshots: refs, positions };
      // The commit point: only now, with every snapshot stored, is the checkpoint journaled.
      await this.#appendSynced(event);
      if (captured.every((c) => kindOf(c) === 'full')) this.#chainBroken = false;
      this.#checkpoints.push(event);
      operators = operatorStats(refs, entryCounts);
      this.#logger.debug({ time, chains: refs.map((r) => `${r.operator}/${r.partition}:${r.chain.join(',')}`) }, 'checkpoint committed');
      await this.#retain(event);
    } catch (error) {
      // Fenced, or state no checkpoint can hold (every later one would fail alike): the app stops.
      const code = (error as { code?: string }).code;
      if (code === 'FENCED' || code === 'BATCH_FAILED') {
        this.#failed = error as Error;
        throw error;
      }
      this.#forceFull = true;
      this.#chainBroken = true;
      this.#logger.error({ err: error, time }, 'checkpoint failed; the next one will be full');
      return undefined;
    }
    const kinds = new Set(operators.map((o) => o.kind));
    const kind = kinds.size === 1 ? (operators[0] as OperatorCheckpointStats).kind : kinds.size === 0 ? 'full' : 'mixed';
    return { time, snapshotBytes: bytes, entries, writeMs: performance.now() - started, kind, operators };
  }

  /** Reads a full snapshot just written back; CORRUPT_CHECKPOINT unless it is whole and holds every entry. */
  async #verify(key: SnapshotKey, entries: number): Promise<void> {
    // Every frame's CRC proves the stored bytes are the encoded ones: decoding 1M entries again would only repeat the encoder.
    const back = this.#store.outline
      ? await this.#store.outline(key)
      : await this.#store.read(key).then((d) => ({ kind: d.kind, entries: d.keys.length }));
    if (back.kind !== 'full' || back.entries !== entries) {
      throw new CorruptCheckpointError(
        `snapshot ${key.operator}/${key.partition}/${key.time} reads back as a ${back.kind} one of ${back.entries} entries, not a full one of ${entries}`,
      );
    }
  }

  /** Journals a graceful stop and makes everything durable. */
  stopped(time: number): Promise<void> {
    return this.#appendSynced({ v: 1, type: 'context.stopped', time });
  }

  /** Resolves when everything queued so far is written. */
  async drain(): Promise<void> {
    await this.#checkpointQueue;
    await this.#queue.then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * The checkpoints to keep: the newest `keepCheckpoints`, and back to the newest one
   * that shares no snapshot with the latest, so that one damaged file cannot make
   * every kept checkpoint unreadable. Without such a one, all of them (and the
   * journal back to the start, see {@link #segmentsNeeded}).
   */
  #kept(latest: Checkpoint): Checkpoint[] {
    const all = this.#checkpoints;
    let fallback = all.length - 1;
    while (fallback >= 0 && (all[fallback] === latest || !independent(all[fallback] as Checkpoint, latest))) fallback--;
    const from = Math.min(Math.max(0, all.length - this.#settings.keepCheckpoints), Math.max(0, fallback));
    return all.slice(from);
  }

  /**
   * Journal segments to keep so that every kept checkpoint can still be replayed
   * from: those since the roll after the oldest one. Every segment while no kept
   * checkpoint is independent of the latest (a replay from the start is then the
   * fallback), or while the oldest was committed before this keeper's first roll.
   */
  #segmentsNeeded(keep: readonly Checkpoint[], latest: Checkpoint): number {
    const oldest = keep[0] as Checkpoint;
    const roll = this.#rollAfter.get(oldest.time);
    if (roll === undefined || !keep.some((cp) => cp !== latest && independent(cp, latest))) return Number.MAX_SAFE_INTEGER;
    return Math.max(this.#settings.keepCheckpoints, this.#rolls - roll + 1);
  }

  async #retain(latest: Checkpoint): Promise<void> {
    const keep = this.#kept(latest);
    this.#checkpoints = keep;
    // Batches up to the checkpoint are in its snapshots: their facts are no longer needed.
    for (const t of [...this.#allocations.keys()]) if (t <= latest.time) this.#allocations.delete(t);
    for (const t of [...this.#completed]) if (t <= latest.time) this.#completed.delete(t);
    for (const [id, at] of this.#blockAllocatedAt) {
      if (at > latest.time) continue;
      this.#blocks.delete(id);
      this.#blockAllocatedAt.delete(id);
    }
    const head: JournalEvent[] = [
      this.#started,
      ...keep,
      ...[...this.#allocations.values()].sort((a, b) => a.time - b.time),
      ...[...this.#completed].sort((a, b) => a - b).map((time) => ({ v: 1 as const, type: 'batch.completed' as const, time })),
      ...this.#blocks.values(),
      ...(this.#assignment ? [this.#assignment] : []),
    ];
    // In the journal's order: every fact the head names was handed to the journal before the roll.
    this.#rollAfter.set(latest.time, ++this.#rolls);
    for (const t of [...this.#rollAfter.keys()]) if (!keep.some((cp) => cp.time === t)) this.#rollAfter.delete(t);
    const keepSegments = this.#segmentsNeeded(keep, latest);
    await this.#serial(() => this.#journal.roll(head, keepSegments));
    const keepTimes = new Set<string>();
    for (const cp of keep)
      for (const ref of cp.snapshots) for (const t of ref.chain) keepTimes.add(`${ref.operator}/${ref.partition}/${t}`);
    await this.#store.retain((k) => keepTimes.has(`${k.operator}/${k.partition}/${k.time}`) || k.time > latest.time);
  }

  /**
   * Appends `event` in order with every other write, then makes it durable. The sync
   * is outside the queue: the appends of the batches that run meanwhile do not wait
   * for the disk (a sync covers every write issued before it).
   */
  async #appendSynced(event: JournalEvent): Promise<void> {
    await this.#serial(() => this.#journal.append(event));
    await this.#journal.sync();
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** The configuration event this keeper journals. */
  static startedEvent(
    appName: string,
    batchDurationMs: number,
    zeroTimeMs: number,
    epoch: number,
    graph: readonly FingerprintEntry[],
  ): Started {
    return { v: 1, type: 'context.started', appName, batchDurationMs, zeroTimeMs, epoch, graph };
  }
}

/** True when `older` reads no snapshot file that `latest` reads: a damaged one cannot break both. */
function independent(older: Checkpoint, latest: Checkpoint): boolean {
  return latest.snapshots.every((ref) => {
    const other = older.snapshots.find((o) => o.operator === ref.operator && o.partition === ref.partition);
    return other === undefined || !other.chain.some((t) => ref.chain.includes(t));
  });
}

function kindOf(c: CapturedState): 'full' | 'delta' {
  return 'stored' in c ? c.stored.kind : c.data.kind;
}

/** Sums a checkpoint's snapshot references per operator, in the order they were written. */
function operatorStats(refs: readonly SnapshotRef[], entries: readonly number[]): OperatorCheckpointStats[] {
  const byOperator = new Map<string, { snapshotBytes: number; entries: number; kinds: Set<string> }>();
  refs.forEach((ref, i) => {
    const o = byOperator.get(ref.operator) ?? { snapshotBytes: 0, entries: 0, kinds: new Set<string>() };
    o.snapshotBytes += ref.bytes;
    o.entries += entries[i] ?? 0;
    o.kinds.add(ref.kind);
    byOperator.set(ref.operator, o);
  });
  return [...byOperator].map(([operator, o]) => ({
    operator,
    snapshotBytes: o.snapshotBytes,
    entries: o.entries,
    kind: o.kinds.size > 1 ? 'mixed' : o.kinds.has('delta') ? 'incremental' : 'full',
  }));
}
