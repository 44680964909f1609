/**
 * `tributary inspect`: what a checkpoint holds, read the way recovery reads it
 * (foldJournal, and missingAllocation for the checkpoints a replay can start from),
 * but never as its owner: no writer lock, no cut of a torn tail, no write. With
 * `verify`, every snapshot stored or referenced is read back and checked as a
 * restore would, and each that does not read is listed with where and why.
 */
import type { JournalEvent, SnapshotRef } from '../../../journal/events.ts';
import { foldJournal, type JournalState, missingAllocation } from '../../../journal/recovery-plan.ts';
import { checkSnapshot, type SnapshotCheck } from '../../../snapshots/snapshot-check.ts';
import type { SnapshotKey } from '../../../snapshots/snapshot-codec.ts';
import { isNatsUrl } from '../../nats/nats-connection.ts';
import type { CheckpointSource, JournalView } from './checkpoint-source.ts';
import { directorySource } from './directory-source.ts';
import { InspectUsageError } from './errors.ts';
import type { InspectDamage, InspectReport, InspectSnapshot } from './inspect-report.ts';
import { jetStreamSource } from './jetstream-source.ts';

type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/** What to inspect and how deep. */
export interface InspectOptions {
  /** Read every snapshot back and check it. */
  readonly verify?: boolean;
  /** With a NATS URL: the app (needed when the server holds several). */
  readonly app?: string | undefined;
}

const keyOf = (k: SnapshotKey): string => `${k.operator}/${k.partition}/${k.time}`;

/** The snapshot keys a checkpoint's restore reads (every chain, full first). */
function keysOf(cp: Checkpoint): SnapshotKey[] {
  return cp.snapshots.flatMap((r) => r.chain.map((time) => ({ operator: r.operator, partition: r.partition, time })));
}

function rowOf(ref: SnapshotRef): InspectSnapshot {
  return {
    operator: ref.operator,
    partition: ref.partition,
    kind: ref.kind === 'full' ? 'full' : 'incremental',
    bytes: ref.bytes,
    chain: ref.chain,
  };
}

/** Reads snapshots back once each, remembering the outcome (undefined: not stored). */
class SnapshotReader {
  readonly #source: CheckpointSource;
  readonly #checked = new Map<string, Promise<SnapshotCheck | undefined>>();

  constructor(source: CheckpointSource) {
    this.#source = source;
  }

  get count(): number {
    return this.#checked.size;
  }

  check(key: SnapshotKey): Promise<SnapshotCheck | undefined> {
    const id = keyOf(key);
    let found = this.#checked.get(id);
    if (found === undefined) {
      found = this.#read(key);
      this.#checked.set(id, found);
    }
    return found;
  }

  async #read(key: SnapshotKey): Promise<SnapshotCheck | undefined> {
    let bytes: Buffer | undefined;
    try {
      bytes = await this.#source.readSnapshot(key);
    } catch (error) {
      // The object store refuses bytes whose SHA-256 is not the stored one.
      return { ok: false, offset: 0, reason: (error as Error).message };
    }
    return bytes === undefined ? undefined : checkSnapshot(key, bytes, this.#source.snapshotWhere(key).where);
  }
}

/** The newest checkpoint a restart can restore: its batches still journaled (and, verifying, its snapshots readable). */
async function resumePoint(
  folded: JournalState,
  batchDurationMs: number,
  reader: SnapshotReader | undefined,
): Promise<Checkpoint | undefined> {
  for (const cp of [...folded.checkpoints].reverse()) {
    if (missingAllocation(folded, cp.time, batchDurationMs) !== undefined) continue;
    if (reader === undefined) return cp;
    const checks = await Promise.all(keysOf(cp).map((k) => reader.check(k)));
    if (checks.every((c) => c?.ok === true)) return cp;
  }
  return undefined;
}

/** Reads every snapshot stored and every one a retained checkpoint names; lists the bad and the missing. */
async function verifySnapshots(source: CheckpointSource, journal: JournalView, reader: SnapshotReader): Promise<InspectDamage[]> {
  const damage: InspectDamage[] = [];
  const seen = new Set<string>();
  const report = async (key: SnapshotKey, mustExist: boolean) => {
    if (seen.has(keyOf(key))) return;
    const check = await reader.check(key);
    if (check?.ok === true || (check === undefined && !mustExist)) return;
    seen.add(keyOf(key));
    const where = source.snapshotWhere(key);
    damage.push({
      kind: 'snapshot',
      ...where,
      offset: check === undefined ? 0 : check.offset,
      reason: check === undefined ? 'missing (a retained checkpoint needs it)' : check.reason,
    });
  };
  // A snapshot the running app's retention deletes meanwhile is not damage: `mustExist` false.
  for (const stored of await source.snapshots()) await report(stored.key, false);
  for (const cp of journal.retained) for (const key of keysOf(cp)) await report(key, true);
  return damage;
}

/**
 * Reads `location` (a checkpoint directory or a `nats://` URL) into a report;
 * InspectUsageError when it is not a checkpoint.
 *
 * @example
 * const report = await inspectCheckpoint('./checkpoints/wc', { verify: true });
 * if (report.damage.length > 0) process.exitCode = 1;
 */
export async function inspectCheckpoint(location: string, options: InspectOptions = {}): Promise<InspectReport> {
  if (!isNatsUrl(location) && options.app !== undefined) {
    throw new InspectUsageError('--app is for nats:// checkpoints: a directory holds one app');
  }
  const source = isNatsUrl(location) ? await jetStreamSource(location, options.app) : await directorySource(location);
  try {
    return await report(source, options.verify === true);
  } finally {
    await source.close().catch(() => {});
  }
}

async function report(source: CheckpointSource, verify: boolean): Promise<InspectReport> {
  const journal = await source.journal();
  const folded = foldJournal(journal.events);
  const damage: InspectDamage[] = [...journal.damage];
  const started = folded.started;
  if (started === undefined && journal.events.length > 0) {
    damage.push({ kind: 'journal', where: source.location, offset: 0, reason: `${journal.events.length} events but no context.started` });
  }
  const reader = verify ? new SnapshotReader(source) : undefined;
  if (reader) damage.push(...(await verifySnapshots(source, journal, reader)));
  const resume = started ? await resumePoint(folded, started.batchDurationMs, reader) : undefined;
  const from = resume?.time ?? started?.zeroTimeMs ?? Number.POSITIVE_INFINITY;
  const last = folded.checkpoints[folded.checkpoints.length - 1];
  // As chooseCheckpoint in actors/recovery.ts: without a checkpoint, only a journal back to the start will do.
  const replayFromStart = (s: NonNullable<typeof started>) =>
    folded.checkpoints.length === 0 || (journal.complete && missingAllocation(folded, s.zeroTimeMs, s.batchDurationMs) === undefined);
  const recoverable =
    !journal.damageBlocksRecovery &&
    (started === undefined ? journal.events.length === 0 : resume !== undefined || replayFromStart(started));
  const stored = await source.snapshots();
  return {
    v: 1,
    location: source.location,
    store: source.store,
    app: started
      ? {
          name: started.appName,
          batchDurationMs: started.batchDurationMs,
          zeroTimeMs: started.zeroTimeMs,
          stoppedCleanly: folded.stoppedCleanly,
        }
      : null,
    graph: (started?.graph ?? []).map((e) => ({
      key: e.key,
      operator: e.operator,
      uid: e.uid,
      partitions: e.partitions,
      slideMs: e.slideMs,
      params: e.params,
    })),
    writer: journal.writer,
    lastCheckpoint: last
      ? { time: last.time, snapshots: last.snapshots.map(rowOf), bytes: last.snapshots.reduce((n, r) => n + r.bytes, 0) }
      : null,
    checkpoints: journal.retained.map((c) => c.time),
    resumeFrom: resume?.time ?? null,
    recoverable,
    pendingReplay: [...folded.allocations.keys()]
      .filter((t) => t > from)
      .sort((a, b) => a - b)
      .map((time) => ({ time, outputsDone: folded.completed.has(time) })),
    journal: journal.size,
    snapshots: { count: stored.length, bytes: stored.reduce((n, s) => n + s.bytes, 0) },
    deadLetters: await source.deadLetters(),
    verify: reader ? { journalFrames: journal.framesRead, snapshotsRead: reader.count } : null,
    damage,
  };
}
