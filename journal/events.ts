/**
 * Journal events: the metadata the driver records so that a restarted app can
 * rebuild its state exactly. Wire records carry a version field `v`; every reader
 * validates shape before use.
 */
import type { Allocation, FingerprintEntry, ReceivedBlock } from '../runtime/graph/wire.ts';

/** Version of the journal record format written by this code. */
export const JOURNAL_FORMAT_VERSION = 1;

/** Where one state partition's snapshot is stored. */
export interface SnapshotRef {
  readonly operator: string;
  readonly partition: number;
  readonly time: number;
  /** `full`, or `delta` on top of the snapshot chain of `baseTime`. */
  readonly kind: 'full' | 'delta';
  /** Times of the snapshots to load, oldest first (full, then deltas, this one last). */
  readonly chain: readonly number[];
  readonly bytes: number;
}

/** The events of the journal. */
export type JournalEvent =
  | {
      readonly v: 1;
      readonly type: 'context.started';
      readonly appName: string;
      readonly batchDurationMs: number;
      readonly zeroTimeMs: number;
      readonly epoch: number;
      readonly graph: readonly FingerprintEntry[];
    }
  | { readonly v: 1; readonly type: 'batch.allocated'; readonly time: number; readonly inputs: Readonly<Record<string, Allocation>> }
  | { readonly v: 1; readonly type: 'batch.completed'; readonly time: number }
  | {
      readonly v: 1;
      readonly type: 'checkpoint.completed';
      readonly time: number;
      readonly snapshots: readonly SnapshotRef[];
      /** Source positions (queue index, files seen) as of `time`. */
      readonly positions: Readonly<Record<string, unknown>>;
    }
  | { readonly v: 1; readonly type: 'receiver.block'; readonly stream: string; readonly block: ReceivedBlock }
  | { readonly v: 1; readonly type: 'context.stopped'; readonly time: number }
  | {
      readonly v: 1;
      readonly type: 'assignment.changed';
      /** The newest batch time when the assignment took effect (it applies to later batches). */
      readonly time: number;
      readonly epoch: number;
      /** The worker owning each partition slot. */
      readonly slots: readonly string[];
      /** The worker reading each input, by input key. */
      readonly inputs: Readonly<Record<string, string>>;
    };

/** The `type` of every journal event. */
export type JournalEventType = JournalEvent['type'];

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isTime(x: unknown): boolean {
  return typeof x === 'number' && Number.isSafeInteger(x);
}

/**
 * Checks the shape of an event read from (or about to be written to) a journal;
 * returns a reason when it is not valid, else undefined.
 *
 * @example
 * invalidEvent({ v: 1, type: 'batch.completed', time: 1000 }) // undefined
 */
export function invalidEvent(e: unknown): string | undefined {
  if (!isRecord(e)) return 'not a record';
  if (e.v !== JOURNAL_FORMAT_VERSION) return `unknown format version ${String(e.v)}`;
  switch (e.type) {
    case 'context.started':
      if (typeof e.appName !== 'string' || !isTime(e.batchDurationMs) || !isTime(e.zeroTimeMs) || !isTime(e.epoch)) {
        return 'context.started lacks appName, batchDurationMs, zeroTimeMs or epoch';
      }
      return Array.isArray(e.graph) ? undefined : 'context.started lacks its graph';
    case 'batch.allocated':
      return isTime(e.time) && isRecord(e.inputs) ? undefined : 'batch.allocated lacks time or inputs';
    case 'batch.completed':
    case 'context.stopped':
      return isTime(e.time) ? undefined : `${e.type} lacks its time`;
    case 'checkpoint.completed':
      return isTime(e.time) && Array.isArray(e.snapshots) && isRecord(e.positions)
        ? undefined
        : 'checkpoint.completed lacks time, snapshots or positions';
    case 'receiver.block':
      return typeof e.stream === 'string' && isRecord(e.block) && Array.isArray(e.block.records)
        ? undefined
        : 'receiver.block lacks stream or block';
    case 'assignment.changed':
      return isTime(e.time) &&
        isTime(e.epoch) &&
        Array.isArray(e.slots) &&
        e.slots.every((w) => typeof w === 'string') &&
        isRecord(e.inputs)
        ? undefined
        : 'assignment.changed lacks time, epoch, slots or inputs';
    default:
      return `unknown event type ${JSON.stringify(e.type)}`;
  }
}
