/**
 * The record `tributary inspect --json` prints: what a checkpoint holds and, with
 * `--verify`, what in it does not read back. Versioned (`v`) like the journal's
 * records: fields are only ever added.
 */

/** One snapshot of a checkpoint, from its journaled reference. */
export interface InspectSnapshot {
  readonly operator: string;
  readonly partition: number;
  /** `incremental` is a delta on top of the snapshots before it in `chain`. */
  readonly kind: 'full' | 'incremental';
  readonly bytes: number;
  /** Times of the snapshots a restore reads, the full one first. */
  readonly chain: readonly number[];
}

/** One operator (or output) of the graph, as the journaled fingerprint records it. */
export interface InspectOperator {
  readonly key: string;
  readonly operator: string;
  readonly uid: string | null;
  readonly partitions: number;
  readonly slideMs: number;
  readonly params: Readonly<Record<string, number | string | boolean>>;
}

/** Something that does not read back, with where it is. */
export interface InspectDamage {
  readonly kind: 'journal' | 'snapshot' | 'head';
  /** A file path, `stream <name> message <seq>`, `KV <bucket>/<key>` or `<bucket>/<object>`. */
  readonly where: string;
  /** Byte offset of the bad frame within the file or message. */
  readonly offset: number;
  readonly reason: string;
  readonly file?: string;
  readonly stream?: string;
  readonly seq?: number;
  readonly bucket?: string;
  readonly key?: string;
}

/** The whole report. */
export interface InspectReport {
  readonly v: 1;
  /** The directory, or the NATS URL with its secrets redacted. */
  readonly location: string;
  readonly store: 'directory' | 'jetstream';
  /** From the newest `context.started`; null when the journal holds none that reads. */
  readonly app: {
    readonly name: string;
    readonly batchDurationMs: number;
    readonly zeroTimeMs: number;
    /** True when the last run stopped gracefully (nothing in flight). */
    readonly stoppedCleanly: boolean;
  } | null;
  readonly graph: readonly InspectOperator[];
  readonly writer: {
    /** The epoch of the newest writer (one more per driver that opened the checkpoint). */
    readonly epoch: number | null;
    /** Directory only: `held` by a live process, `released`, `stale` (its process died) or `unknown` (another host). */
    readonly state: 'held' | 'released' | 'stale' | 'unknown' | null;
    readonly pid: number | null;
    readonly host: string | null;
  };
  /** The newest committed checkpoint. */
  readonly lastCheckpoint: {
    readonly time: number;
    readonly snapshots: readonly InspectSnapshot[];
    readonly bytes: number;
  } | null;
  /** Times of the checkpoints retention keeps, oldest first. */
  readonly checkpoints: readonly number[];
  /**
   * The checkpoint a restart would restore: the newest whose batches the journal
   * still holds (and, with `--verify`, whose snapshots all read back); null for a
   * replay from the start.
   */
  readonly resumeFrom: number | null;
  /**
   * False when a restart would fail with CORRUPT_CHECKPOINT: a damaged journal frame
   * where recovery reads, or no checkpoint to restore and no journal back to the start.
   */
  readonly recoverable: boolean;
  /** Batches a restart replays from their journaled inputs; `outputsDone` ones do not run their outputs again. */
  readonly pendingReplay: readonly { readonly time: number; readonly outputsDone: boolean }[];
  readonly journal: {
    readonly events: number;
    readonly bytes: number;
    /** Directory: segment files. */
    readonly segments?: number;
    /** JetStream: the stream, its messages and sequences, and the head's replay start. */
    readonly stream?: string;
    readonly messages?: number;
    readonly firstSeq?: number;
    readonly lastSeq?: number;
    readonly replayFromSeq?: number;
    /** An incomplete last frame (a crash mid-write, or a write in progress): recovery cuts it off. */
    readonly tornTail: { readonly file: string; readonly offset: number; readonly bytes: number } | null;
  };
  /** Snapshots stored (files or objects), referenced or not. */
  readonly snapshots: { readonly count: number; readonly bytes: number };
  /** Records under `<dir>/dead-letters/` (directory only); null when there is no such directory. */
  readonly deadLetters: { readonly files: number; readonly records: number } | null;
  /** With `--verify`: what was read. */
  readonly verify: { readonly journalFrames: number; readonly snapshotsRead: number } | null;
  /** Everything that does not read back; with `--verify`, from every frame and snapshot. */
  readonly damage: readonly InspectDamage[];
}
