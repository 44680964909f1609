/**
 * Where state snapshots are kept: the file store (embedded default) and, later,
 * a JetStream object store implement this.
 */

import type { SnapshotData } from '../runtime/graph/wire.ts';
import type { SnapshotKey } from './snapshot-codec.ts';

/**
 * Stores and loads partition snapshots, checksummed and written atomically.
 *
 * @example
 * const bytes = await store.write({ operator: 'totals', partition: 0, time: 10000 }, data);
 * const back = await store.read({ operator: 'totals', partition: 0, time: 10000 });
 */
export interface SnapshotStore {
  /** Writes a snapshot atomically; resolves with its size in bytes. */
  write(key: SnapshotKey, data: SnapshotData): Promise<number>;
  /** Reads a snapshot back; CORRUPT_CHECKPOINT when missing, damaged or not the one asked for. */
  read(key: SnapshotKey): Promise<SnapshotData>;
  /**
   * Reads a snapshot's bytes back and checks them frame by frame (CRC, header, end)
   * without decoding its entries; resolves with its kind and entry count. A store
   * without it is checked by `read`.
   */
  outline?(key: SnapshotKey): Promise<{ kind: 'full' | 'delta'; entries: number }>;
  /** Deletes every snapshot for which `keep` is false. */
  retain(keep: (key: SnapshotKey) => boolean): Promise<void>;
  /** Bytes the store occupies. */
  sizeBytes(): Promise<number>;
}
