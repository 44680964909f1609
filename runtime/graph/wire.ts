/**
 * Wire records: what the graph and the engine hand to the journal and the snapshot
 * stores, which write them as they are. A batch's input (`Allocation`, and the
 * `ReceivedBlock`s a receiver wrote ahead), a state partition's checkpoint content
 * (`SnapshotData`) and a graph node's fingerprint (`FingerprintEntry`). journal/ and
 * snapshots/ take these, and nothing else, from runtime/graph/; the journal's events
 * carry the version field `v` (journal/events.ts).
 */

/**
 * What a batch's input was: enough to rebuild the batch exactly.
 * Queue indexes, generator sequence ranges, file names, or received blocks.
 */
export type Allocation =
  | { readonly type: 'queue'; readonly from: number; readonly to: number }
  | { readonly type: 'sequence'; readonly from: number; readonly to: number }
  // `ignored`: files present at a fresh start (not read), journaled with the first batch so a restart before any checkpoint still ignores them.
  | { readonly type: 'files'; readonly names: readonly string[]; readonly ignored?: readonly string[] }
  | { readonly type: 'blocks'; readonly ids: readonly string[] }
  | { readonly type: 'jetstream'; readonly stream: string; readonly from: number; readonly to: number };

/** Records a receiver accepted, cut into a block every block interval. */
export interface ReceivedBlock {
  readonly id: string;
  readonly records: readonly unknown[];
  /** What the receiver could not take (a line of invalid UTF-8, too long): dead letters of the batch that reads the block. */
  readonly letters?: readonly SetAside[];
}

/** Input a source could not turn into a record, and why. */
export interface SetAside {
  readonly record: unknown;
  readonly error: string;
}

/** One node or output of the graph, as compared across restarts. */
export interface FingerprintEntry {
  /** Stable key: the uid, or operator and ancestry hashed. */
  readonly key: string;
  readonly operator: string;
  readonly uid: string | null;
  readonly slideMs: number;
  readonly partitions: number;
  readonly params: Readonly<Record<string, number | string | boolean>>;
  /** Set when only operators with a uid consume this node (e.g. the group step of a uid'd updateStateByKey): it comes and goes with them. */
  readonly ownedByUid?: boolean;
}

/**
 * What a state partition hands to a checkpoint: its changed entries (all of them
 * in a full snapshot), the keys it removed since the previous snapshot, and small
 * non-keyed state. Restoring applies a full snapshot and the deltas after it.
 */
export interface SnapshotData {
  /** Full: the whole state. Delta: changes since the previous snapshot. */
  readonly kind: 'full' | 'delta';
  /**
   * The entries as two columns: `values[i]` is the value of `keys[i]`. Columns, not
   * pairs: a capture copies a map's keys and values in two fast passes, and reading
   * back allocates no pair per entry.
   */
  readonly keys: readonly unknown[];
  readonly values: readonly unknown[];
  /**
   * What a value is written as, when the operator keeps it in another form: applied
   * a chunk at a time while writing, so the capture itself stays a copy. Values read
   * back are in the written form.
   */
  readonly written?: (value: unknown) => unknown;
  /**
   * A time per entry, written as a column of its own (mapWithState's update times,
   * taken from the values kept): numbers in a column decode without an array per
   * entry. A snapshot read back has them in `times`.
   */
  readonly timeOf?: (value: unknown) => number;
  readonly times?: readonly number[];
  readonly removed: readonly unknown[];
  /** Non-keyed state (window buffers, pending seeds), always whole. */
  readonly meta: unknown;
}
