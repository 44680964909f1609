/**
 * What a state partition hands to a checkpoint: its changed entries (all of them
 * in a full snapshot), the keys it removed since the previous snapshot, and small
 * non-keyed state. Restoring applies a full snapshot and the deltas after it.
 */

/** One partition's snapshot content. */
export interface SnapshotData {
  /** Full: the whole state. Delta: changes since the previous snapshot. */
  readonly kind: 'full' | 'delta';
  readonly entries: readonly (readonly [unknown, unknown])[];
  readonly removed: readonly unknown[];
  /** Non-keyed state (window buffers, pending seeds), always whole. */
  readonly meta: unknown;
}
