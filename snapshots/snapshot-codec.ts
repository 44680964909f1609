/**
 * Snapshot files as frames: a header, chunks of entries (so encoding yields to the
 * event loop between chunks instead of blocking it for a whole large state), and
 * an end frame that proves the file is complete.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { encodeFrame } from '../journal/codec.ts';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { BatchFailedError, CorruptCheckpointError, InvalidStateError } from '../runtime/base/errors.ts';
import type { SnapshotData } from '../runtime/graph/wire.ts';

/** Entries per chunk frame: ~10-20 ms of cbor-x work for string->number entries. */
export const SNAPSHOT_CHUNK_ENTRIES = 20_000;

/** Identifies one snapshot file. */
export interface SnapshotKey {
  readonly operator: string;
  readonly partition: number;
  readonly time: number;
}

type Frame =
  | { v: 1; part: 'header'; operator: string; partition: number; time: number; kind: 'full' | 'delta' }
  | { v: 1; part: 'meta'; meta: unknown }
  | { v: 1; part: 'entries'; entries: (readonly [unknown, unknown])[] }
  | { v: 1; part: 'columns'; keys: unknown[]; values: unknown[]; times?: number[] }
  | { v: 1; part: 'removed'; keys: unknown[] }
  | { v: 1; part: 'end'; frames: number; entries: number; removed: number };

function describeKey(key: SnapshotKey): string {
  return `${key.operator}/${key.partition}/${key.time}`;
}

function isEntry(e: unknown): boolean {
  return Array.isArray(e) && e.length === 2;
}

/** Prototypes of the values a snapshot keeps as they were (cbor-x restores them with their class). */
const DATA_PROTOTYPES = new Set<unknown>([
  Object.prototype,
  null,
  Array.prototype,
  Map.prototype,
  Set.prototype,
  Date.prototype,
  Uint8Array.prototype,
  Buffer.prototype,
]);
/** Nesting searched for what cannot be stored (deeper values are left to the encoder). */
const DATA_DEPTH_MAX = 4;

/** What in `value` would not come back from a snapshot as it went in, if anything. */
function notData(value: unknown, depth = 0): string | undefined {
  const type = typeof value;
  if (type === 'function') return 'a function';
  if (type === 'symbol') return 'a symbol';
  if (type !== 'object' || value === null || depth >= DATA_DEPTH_MAX) return undefined;
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  if (!DATA_PROTOTYPES.has(proto) && !ArrayBuffer.isView(value)) return `an instance of ${proto?.constructor?.name || 'a class'}`;
  const inner =
    value instanceof Map ? [...value.keys(), ...value.values()] : value instanceof Set ? [...value] : Object.values(value as object);
  for (const v of inner) {
    const found = notData(v, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Fails when a state entry holds what a restore could not bring back (a function, a
 * symbol, a class instance that would come back as a plain object): the batch fails,
 * naming the operator, rather than every checkpoint after it.
 */
function assertData(key: SnapshotKey, keys: readonly unknown[], values: readonly unknown[]): void {
  for (let i = 0; i < keys.length; i++) {
    const found = notData(values[i]) ?? notData(keys[i]);
    if (found === undefined) continue;
    const reason = new InvalidStateError(
      `the state of key ${String(keys[i])} (partition ${key.partition}) holds ${found}, which a checkpoint cannot restore: keep state as plain data (objects, arrays, Maps, Sets, Dates, numbers, strings)`,
    );
    throw new BatchFailedError(key.operator, key.time, reason);
  }
}

/** Checks what a snapshot's frames are made of before writing any (a programmer error). */
function assertWritable(key: SnapshotKey, data: SnapshotData): void {
  const ok =
    typeof key.operator === 'string' &&
    key.operator.length > 0 &&
    Number.isSafeInteger(key.partition) &&
    key.partition >= 0 &&
    Number.isSafeInteger(key.time) &&
    key.time >= 0 &&
    (data.kind === 'full' || data.kind === 'delta') &&
    Array.isArray(data.keys) &&
    Array.isArray(data.values) &&
    data.keys.length === data.values.length &&
    Array.isArray(data.removed);
  if (!ok) throw new Error(`refusing to write snapshot ${describeKey(key)}: bad key, kind, columns or removed`);
}

/**
 * The frames of a snapshot, yielding to the event loop between chunks.
 *
 * @example
 * for await (const frame of encodeSnapshot(key, data)) await handle.write(frame);
 */
export async function* encodeSnapshot(key: SnapshotKey, data: SnapshotData): AsyncGenerator<Buffer> {
  assertWritable(key, data);
  let frames = 0;
  const frame = (f: Frame) => {
    frames++;
    return encodeFrame(encodeValue(f));
  };
  yield frame({ v: 1, part: 'header', operator: key.operator, partition: key.partition, time: key.time, kind: data.kind });
  yield frame({ v: 1, part: 'meta', meta: data.meta });
  const written = data.written;
  for (let i = 0; i < data.keys.length; i += SNAPSHOT_CHUNK_ENTRIES) {
    const keys = data.keys.slice(i, i + SNAPSHOT_CHUNK_ENTRIES);
    const kept = data.values.slice(i, i + SNAPSHOT_CHUNK_ENTRIES);
    const values = written === undefined ? kept : kept.map(written);
    assertData(key, keys, values);
    const times = data.timeOf === undefined ? undefined : kept.map(data.timeOf);
    yield frame(times === undefined ? { v: 1, part: 'columns', keys, values } : { v: 1, part: 'columns', keys, values, times });
    await yieldToLoop();
  }
  for (let i = 0; i < data.removed.length; i += SNAPSHOT_CHUNK_ENTRIES) {
    yield frame({ v: 1, part: 'removed', keys: data.removed.slice(i, i + SNAPSHOT_CHUNK_ENTRIES) as unknown[] });
    await yieldToLoop();
  }
  yield encodeFrame(encodeValue({ v: 1, part: 'end', frames: frames + 1, entries: data.keys.length, removed: data.removed.length }));
}

/**
 * Rebuilds a snapshot from its frames' payloads, checking that it is the one asked
 * for and that it is complete.
 *
 * @example
 * const data = await decodeSnapshot(key, payloads, 'snapshots/wc/0/10000.cbor');
 */
/**
 * The kind and entry count of a snapshot whose frames all passed their CRC, read
 * from its header and end frames alone: proof that the bytes stored are the bytes
 * encoded, without decoding every entry (a full snapshot of 1M keys takes ~0.5 s
 * to decode). CORRUPT_CHECKPOINT when the header or end frame is wrong or missing.
 *
 * @example
 * const { kind, entries } = snapshotOutline(key, scan.payloads, file);
 */
export function snapshotOutline(
  key: SnapshotKey,
  payloads: readonly Uint8Array[],
  where: string,
): { kind: 'full' | 'delta'; entries: number } {
  const bad = (why: string, cause?: unknown) => new CorruptCheckpointError(`snapshot ${where}: ${why}`, { cause });
  const frame = (i: number): Frame => {
    try {
      return decodeValue(payloads[i] as Uint8Array) as Frame;
    } catch (error) {
      throw bad(`frame ${i} does not decode`, error);
    }
  };
  if (payloads.length < 2) throw bad('incomplete (no header or no end frame)');
  const head = frame(0);
  const end = frame(payloads.length - 1);
  if (
    head?.v !== 1 ||
    head.part !== 'header' ||
    head.operator !== key.operator ||
    head.partition !== key.partition ||
    head.time !== key.time
  ) {
    throw bad('its first frame is not its header');
  }
  if (end?.v !== 1 || end.part !== 'end' || end.frames !== payloads.length) throw bad('incomplete (no end frame, or frames missing)');
  return { kind: head.kind, entries: end.entries };
}

export async function decodeSnapshot(key: SnapshotKey, payloads: readonly Uint8Array[], where: string): Promise<SnapshotData> {
  const bad = (why: string, cause?: unknown) => new CorruptCheckpointError(`snapshot ${where}: ${why}`, { cause });
  let kind: 'full' | 'delta' | undefined;
  let meta: unknown;
  const keys: unknown[] = [];
  const values: unknown[] = [];
  let times: number[] | undefined;
  const removed: unknown[] = [];
  let ended = false;
  for (const [i, payload] of payloads.entries()) {
    let f: Frame;
    try {
      f = decodeValue(payload) as Frame;
    } catch (error) {
      throw bad(`frame ${i} does not decode`, error);
    }
    if (f === null || typeof f !== 'object' || f.v !== 1) throw bad(`frame ${i} has an unknown format`);
    if (ended) throw bad('frames after the end frame');
    switch (f.part) {
      case 'header':
        if (i !== 0 || f.operator !== key.operator || f.partition !== key.partition || f.time !== key.time) {
          throw bad(`header names ${f.operator}/${f.partition}/${f.time}`);
        }
        if (f.kind !== 'full' && f.kind !== 'delta') throw bad(`header has an unknown kind ${JSON.stringify(f.kind)}`);
        kind = f.kind;
        break;
      case 'meta':
        if (i !== 1) throw bad(`meta frame at ${i} instead of 1`);
        meta = f.meta;
        break;
      case 'entries':
        // Snapshots written before columns hold [key, value] pairs.
        if (!Array.isArray(f.entries) || !f.entries.every(isEntry)) throw bad(`frame ${i} holds malformed entries`);
        for (const e of f.entries) {
          keys.push(e[0]);
          values.push(e[1]);
        }
        break;
      case 'columns':
        if (!Array.isArray(f.keys) || !Array.isArray(f.values) || f.keys.length !== f.values.length) {
          throw bad(`frame ${i} holds malformed columns`);
        }
        if (f.times !== undefined) {
          // Times come in every columns frame or in none.
          if (!Array.isArray(f.times) || f.times.length !== f.keys.length || (times === undefined && keys.length > 0)) {
            throw bad(`frame ${i} holds malformed times`);
          }
          times ??= [];
          for (const t of f.times) times.push(t);
        } else if (times !== undefined) {
          throw bad(`frame ${i} has no times`);
        }
        for (let j = 0; j < f.keys.length; j++) {
          keys.push(f.keys[j]);
          values.push(f.values[j]);
        }
        break;
      case 'removed':
        if (!Array.isArray(f.keys)) throw bad(`frame ${i} holds malformed removed keys`);
        for (const k of f.keys) removed.push(k);
        break;
      case 'end':
        if (f.frames !== payloads.length || f.entries !== keys.length || f.removed !== removed.length) {
          throw bad('end frame does not match the content');
        }
        ended = true;
        break;
      default:
        throw bad(`frame ${i} has an unknown part`);
    }
    // One chunk's decoding at a time: restoring a large state must not block the loop either.
    if (f.part === 'entries' || f.part === 'columns' || f.part === 'removed') await yieldToLoop();
  }
  if (kind === undefined || !ended) throw bad('incomplete (no header or no end frame)');
  return times === undefined ? { kind, keys, values, removed, meta } : { kind, keys, values, times, removed, meta };
}
