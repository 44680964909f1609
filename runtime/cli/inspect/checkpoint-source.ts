/**
 * What `tributary inspect` reads from a checkpoint, whatever holds it: a directory
 * or JetStream. Every method only reads.
 */
import type { JournalEvent } from '../../../journal/events.ts';
import type { SnapshotKey } from '../../../snapshots/snapshot-codec.ts';
import type { InspectDamage, InspectReport } from './inspect-report.ts';

type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/** The journal as read, with what the report shows of it. */
export interface JournalView {
  /** The events recovery would fold, oldest first. */
  readonly events: readonly JournalEvent[];
  /** True when the journal still goes back to the app's first start. */
  readonly complete: boolean;
  /** Checkpoints whose snapshots retention keeps (all must be stored). */
  readonly retained: readonly Checkpoint[];
  /** Frames or messages read, good and bad. */
  readonly framesRead: number;
  readonly size: InspectReport['journal'];
  readonly damage: readonly InspectDamage[];
  /** True when some of that damage is where recovery reads, so that a restart fails with CORRUPT_CHECKPOINT. */
  readonly damageBlocksRecovery: boolean;
  readonly writer: InspectReport['writer'];
}

/** One stored snapshot. */
export interface StoredSnapshot {
  readonly key: SnapshotKey;
  readonly bytes: number;
}

/** A checkpoint to inspect. */
export interface CheckpointSource {
  readonly store: InspectReport['store'];
  /** Shown in the report (a NATS URL without its secrets). */
  readonly location: string;
  journal(): Promise<JournalView>;
  /** Every snapshot stored, referenced or not. */
  snapshots(): Promise<StoredSnapshot[]>;
  /** A snapshot's bytes; undefined when it is not stored. */
  readSnapshot(key: SnapshotKey): Promise<Buffer | undefined>;
  /** How the report names a snapshot (a file path, or bucket and object). */
  snapshotWhere(key: SnapshotKey): { where: string; file?: string; bucket?: string; key?: string };
  deadLetters(): Promise<InspectReport['deadLetters']>;
  close(): Promise<void>;
}
