/**
 * What the web UI and the metrics know of a running app: the last batches, totals,
 * state size per operator, checkpoints, recoveries, dead letters and the workers'
 * partitions, kept from the context's listener callbacks. Plain code with no I/O or
 * timers, so that what the page shows is tested without a server or a browser; the
 * server only turns its events into server-sent events and Prometheus samples.
 */
import type { CheckpointStats } from '../../actors/checkpointer.ts';
import type { BatchInfo } from '../../actors/driver.ts';
import type { FailedOverInfo, RebalancedInfo } from '../../actors/reassignment.ts';

/** What does not change while the app runs. */
export interface AppInfo {
  readonly appName: string;
  readonly batchDurationMs: number;
  readonly partitions: number;
  /** Input stream names (`queueStream#1`, or their uid). */
  readonly inputs: readonly string[];
  /** Stateful operators: the name batches report keys under, and the snapshot name checkpoints use. */
  readonly operators: readonly { readonly name: string; readonly key: string }[];
  /** True when the batches run on cluster workers. */
  readonly cluster: boolean;
}

/** One completed batch, as the page's table and charts show it. */
export interface BatchRow {
  readonly time: number;
  readonly records: number;
  /** Records per second of batch duration. */
  readonly inputRate: number;
  readonly schedulingDelayMs: number;
  readonly processingMs: number;
  /** Scheduling delay plus processing time. */
  readonly totalDelayMs: number;
  readonly queuedBatches: number;
}

/** A stateful operator's size: keys after the last batch, bytes from its snapshots. */
export interface OperatorRow {
  readonly operator: string;
  /** Keys after the last completed batch (null for operators not keyed, or before the first batch). */
  readonly keys: number | null;
  /** Bytes of its last full snapshot: the encoded size of the whole state then. */
  readonly stateBytes: number | null;
  /** Bytes written for it at the last checkpoint (a delta when incremental). */
  readonly lastSnapshotBytes: number | null;
  readonly lastSnapshotKind: 'full' | 'incremental' | 'mixed' | null;
}

/** One committed checkpoint. */
export interface CheckpointRow {
  readonly time: number;
  readonly durationMs: number;
  readonly bytes: number;
  readonly entries: number;
  readonly kind: 'full' | 'incremental' | 'mixed';
}

/** A recovery: from a checkpoint at start, after lost workers, or after a stall of the data plane. */
export interface RecoveryRow {
  /** When it was seen, on the context's clock. */
  readonly at: number;
  readonly kind: 'restart' | 'failover' | 'stall';
  /** Batches run again. */
  readonly replayed: number;
  readonly ms: number;
  /** Workers lost (failover only). */
  readonly workers: readonly string[];
  /** The checkpoint restored from (restart only). */
  readonly checkpoint: number | null;
}

/** One dead letter. */
export interface DeadLetterRow {
  readonly at: number;
  readonly stream: string;
  /** Where it was written (a file or a subject). */
  readonly where: string;
  readonly error: string;
}

/** A cluster worker and the partition slots it owns. */
export interface WorkerRow {
  readonly id: string;
  readonly slots: readonly number[];
}

/** Running totals since the context started. */
export interface Totals {
  readonly batchesCompleted: number;
  readonly recordsProcessed: number;
  /** Records each input stream fed into completed batches. */
  readonly inputRecords: Readonly<Record<string, number>>;
  /** Records receivers accepted (written ahead), per stream, before a batch takes them. */
  readonly recordsAccepted: Readonly<Record<string, number>>;
  readonly deadLetters: number;
  readonly recoveries: number;
  readonly checkpoints: number;
}

export type AppStatus = 'running' | 'stopped' | 'failed';

/** Everything the page shows, as sent when it connects. */
export interface MonitorSnapshot {
  readonly app: AppInfo;
  readonly status: AppStatus;
  readonly error: string | null;
  readonly totals: Totals;
  /** Oldest first, at most {@link MONITOR_LIMITS}.batches. */
  readonly batches: readonly BatchRow[];
  readonly operators: readonly OperatorRow[];
  readonly checkpoints: readonly CheckpointRow[];
  readonly recoveries: readonly RecoveryRow[];
  readonly deadLetters: readonly DeadLetterRow[];
  readonly workers: readonly WorkerRow[];
}

/** A change, as the page receives it over server-sent events. */
export type MonitorEvent =
  | { readonly type: 'snapshot'; readonly snapshot: MonitorSnapshot }
  | {
      readonly type: 'batch.completed';
      readonly batch: BatchRow;
      readonly inputRecords: Readonly<Record<string, number>>;
      readonly totals: Totals;
      readonly operators: readonly OperatorRow[];
    }
  | {
      readonly type: 'checkpoint.completed';
      readonly checkpoint: CheckpointRow;
      readonly totals: Totals;
      readonly operators: readonly OperatorRow[];
    }
  | { readonly type: 'records.accepted'; readonly stream: string; readonly records: number; readonly totals: Totals }
  | { readonly type: 'dead-letter'; readonly deadLetter: DeadLetterRow; readonly totals: Totals }
  | { readonly type: 'recovery'; readonly recovery: RecoveryRow; readonly totals: Totals }
  | { readonly type: 'workers.assigned'; readonly workers: readonly WorkerRow[] }
  | { readonly type: 'status'; readonly status: AppStatus; readonly error: string | null };

/** How much history is kept: the page charts the batches and lists the rest. */
export const MONITOR_LIMITS = { batches: 300, checkpoints: 50, recoveries: 50, deadLetters: 50 } as const;

/** What a recovery reports to {@link AppMonitor.onRecovered}. */
export interface RecoveredInfo {
  readonly kind: RecoveryRow['kind'];
  readonly replayed: number;
  readonly ms: number;
  readonly workers?: readonly string[];
  readonly checkpoint?: number;
}

interface MutableTotals {
  batchesCompleted: number;
  recordsProcessed: number;
  inputRecords: Record<string, number>;
  recordsAccepted: Record<string, number>;
  deadLetters: number;
  recoveries: number;
  checkpoints: number;
}

interface MutableOperator {
  keys: number | null;
  stateBytes: number | null;
  lastSnapshotBytes: number | null;
  lastSnapshotKind: OperatorRow['lastSnapshotKind'];
}

/**
 * Keeps the monitor's model from listener callbacks (its methods have the names and
 * shapes of `StreamingListener`'s, so it registers as one) and tells subscribers
 * each change.
 *
 * @example
 * const monitor = new AppMonitor(info, () => clock.now());
 * ssc.addStreamingListener(monitor);
 * monitor.subscribe((event) => send(event));
 */
export class AppMonitor {
  readonly app: AppInfo;
  readonly #now: () => number;
  readonly #subscribers = new Set<(event: MonitorEvent) => void>();
  readonly #totals: MutableTotals = {
    batchesCompleted: 0,
    recordsProcessed: 0,
    inputRecords: {},
    recordsAccepted: {},
    deadLetters: 0,
    recoveries: 0,
    checkpoints: 0,
  };
  readonly #operators = new Map<string, MutableOperator>();
  /** Snapshot name (stable key) to the operator's name. */
  readonly #names: ReadonlyMap<string, string>;
  #batches: BatchRow[] = [];
  #checkpoints: CheckpointRow[] = [];
  #recoveries: RecoveryRow[] = [];
  #deadLetters: DeadLetterRow[] = [];
  #workers: WorkerRow[] = [];
  #status: AppStatus = 'running';
  #error: string | null = null;

  constructor(app: AppInfo, now: () => number) {
    this.app = app;
    this.#now = now;
    this.#names = new Map(app.operators.map((o) => [o.key, o.name]));
    for (const input of app.inputs) this.#totals.inputRecords[input] = 0;
    for (const o of app.operators)
      this.#operators.set(o.name, { keys: null, stateBytes: null, lastSnapshotBytes: null, lastSnapshotKind: null });
  }

  /** Calls `subscriber` with every change from now on; returns the unsubscribe. */
  subscribe(subscriber: (event: MonitorEvent) => void): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /** The whole model now (a page that connects starts from it). */
  snapshot(): MonitorSnapshot {
    return {
      app: this.app,
      status: this.#status,
      error: this.#error,
      totals: this.totals(),
      batches: [...this.#batches],
      operators: this.operators(),
      checkpoints: [...this.#checkpoints],
      recoveries: [...this.#recoveries],
      deadLetters: [...this.#deadLetters],
      workers: [...this.#workers],
    };
  }

  /** A copy of the running totals. */
  totals(): Totals {
    const t = this.#totals;
    return { ...t, inputRecords: { ...t.inputRecords }, recordsAccepted: { ...t.recordsAccepted } };
  }

  /** Every stateful operator's size, in the app's order. */
  operators(): OperatorRow[] {
    return [...this.#operators].map(([operator, o]) => ({ operator, ...o }));
  }

  onBatchCompleted(info: BatchInfo): void {
    const batch: BatchRow = {
      time: info.time,
      records: info.records,
      inputRate: info.records / (this.app.batchDurationMs / 1000),
      schedulingDelayMs: info.schedulingDelayMs,
      processingMs: info.processingMs,
      totalDelayMs: info.schedulingDelayMs + info.processingMs,
      queuedBatches: info.queuedBatches,
    };
    this.#batches = keepLast(this.#batches, batch, MONITOR_LIMITS.batches);
    const t = this.#totals;
    t.batchesCompleted++;
    t.recordsProcessed += info.records;
    const inputRecords = info.inputRecords;
    for (const [stream, n] of Object.entries(inputRecords)) t.inputRecords[stream] = (t.inputRecords[stream] ?? 0) + n;
    for (const [name, keys] of Object.entries(info.stateKeys)) this.#operator(name).keys = keys;
    this.#emit({ type: 'batch.completed', batch, inputRecords: { ...inputRecords }, totals: this.totals(), operators: this.operators() });
  }

  onCheckpointCompleted(stats: CheckpointStats): void {
    const checkpoint: CheckpointRow = {
      time: stats.time,
      durationMs: stats.writeMs,
      bytes: stats.snapshotBytes,
      entries: stats.entries,
      kind: stats.kind,
    };
    this.#checkpoints = keepLast(this.#checkpoints, checkpoint, MONITOR_LIMITS.checkpoints);
    this.#totals.checkpoints++;
    for (const o of stats.operators) {
      const row = this.#operator(this.#names.get(o.operator) ?? o.operator);
      row.lastSnapshotBytes = o.snapshotBytes;
      row.lastSnapshotKind = o.kind;
      if (o.kind === 'full') row.stateBytes = o.snapshotBytes;
    }
    this.#emit({ type: 'checkpoint.completed', checkpoint, totals: this.totals(), operators: this.operators() });
  }

  onRecordsReceived(info: { readonly stream: string; readonly records: number }): void {
    const accepted = this.#totals.recordsAccepted;
    accepted[info.stream] = (accepted[info.stream] ?? 0) + info.records;
    this.#emit({ type: 'records.accepted', stream: info.stream, records: info.records, totals: this.totals() });
  }

  onDeadLetter(info: { readonly stream: string; readonly subject: string; readonly error: string; readonly total: number }): void {
    const deadLetter: DeadLetterRow = { at: this.#now(), stream: info.stream, where: info.subject, error: info.error };
    this.#deadLetters = keepLast(this.#deadLetters, deadLetter, MONITOR_LIMITS.deadLetters);
    this.#totals.deadLetters++;
    this.#emit({ type: 'dead-letter', deadLetter, totals: this.totals() });
  }

  onRecovered(info: RecoveredInfo): void {
    const recovery: RecoveryRow = {
      at: this.#now(),
      kind: info.kind,
      replayed: info.replayed,
      ms: info.ms,
      workers: [...(info.workers ?? [])],
      checkpoint: info.checkpoint ?? null,
    };
    this.#recoveries = keepLast(this.#recoveries, recovery, MONITOR_LIMITS.recoveries);
    this.#totals.recoveries++;
    this.#emit({ type: 'recovery', recovery, totals: this.totals() });
  }

  /** The assignment of partition slots (slot q's owner at index q) at the start of a cluster run. */
  onAssigned(info: { readonly slots: readonly string[] }): void {
    this.#assigned(info.slots);
  }

  onRebalanced(info: RebalancedInfo): void {
    this.#assigned(info.slots);
  }

  onWorkersLost(info: FailedOverInfo): void {
    this.#assigned(info.slots);
  }

  onError(error: Error): void {
    this.#status = 'failed';
    this.#error = `${error.name}: ${error.message}`;
    this.#emit({ type: 'status', status: this.#status, error: this.#error });
  }

  /** The context stopped (gracefully, or crashed in a test). */
  stopped(): void {
    if (this.#status === 'running') this.#status = 'stopped';
    this.#emit({ type: 'status', status: this.#status, error: this.#error });
  }

  #assigned(slots: readonly string[]): void {
    const byWorker = new Map<string, number[]>();
    slots.forEach((worker, q) => {
      const owned = byWorker.get(worker) ?? [];
      owned.push(q);
      byWorker.set(worker, owned);
    });
    this.#workers = [...byWorker].map(([id, owned]) => ({ id, slots: owned })).sort((a, b) => a.id.localeCompare(b.id));
    this.#emit({ type: 'workers.assigned', workers: [...this.#workers] });
  }

  #operator(name: string): MutableOperator {
    let row = this.#operators.get(name);
    if (row === undefined) {
      row = { keys: null, stateBytes: null, lastSnapshotBytes: null, lastSnapshotKind: null };
      this.#operators.set(name, row);
    }
    return row;
  }

  #emit(event: MonitorEvent): void {
    for (const s of this.#subscribers) s(event);
  }
}

function keepLast<T>(rows: T[], row: T, max: number): T[] {
  const next = rows.length >= max ? rows.slice(rows.length - max + 1) : rows;
  next.push(row);
  return next;
}
