/**
 * The head of an app's JetStream journal: one KV entry (`head` in bucket
 * `TRIBUTARY_<app>_HEAD`) that says where the journal begins. It holds the newest
 * `context.started`, the retained checkpoints, the stream sequence a reader replays
 * from and the writer's epoch. It is only ever changed with compare-and-set on its
 * revision, so it is also the fence: a zombie driver's update fails.
 *
 * Its size is bounded by one app's configuration and its retained checkpoints'
 * snapshot references, never by the backlog of batches.
 */

import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { CorruptCheckpointError } from '../runtime/base/errors.ts';
import { encodeFrame, scanFrames } from './codec.ts';
import { invalidEvent, type JournalEvent } from './events.ts';

/** Version of the head record written by this code. */
export const HEAD_FORMAT_VERSION = 1;

type Started = Extract<JournalEvent, { type: 'context.started' }>;
type Checkpoint = Extract<JournalEvent, { type: 'checkpoint.completed' }>;

/** The head record. */
export interface JournalHead {
  readonly v: 1;
  /** Epoch of the writer that owns the journal (grows by one at every open). */
  readonly epoch: number;
  /** Random id of that writer's open(), for message ids and diagnostics. */
  readonly writer: string;
  /** Stream sequence a reader replays from: everything recovery needs is at or after it. */
  readonly replayFromSeq: number;
  /** Replay start of each retained roll, oldest first; `replayFromSeq` is the smallest. */
  readonly rolls: readonly number[];
  /** True once messages before `replayFromSeq` may have been deleted. */
  readonly truncated: boolean;
  /** The newest configuration journaled before the last roll, if any. */
  readonly started: Started | null;
  /** Retained checkpoints, oldest first. */
  readonly checkpoints: readonly Checkpoint[];
}

function isSeq(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 1;
}

/**
 * Checks a head's shape; returns a reason when it is not valid, else undefined.
 *
 * @example
 * invalidHead({ v: 1 }) // 'head lacks epoch, writer or replayFromSeq'
 */
export function invalidHead(h: unknown): string | undefined {
  if (typeof h !== 'object' || h === null) return 'head is not a record';
  const r = h as Record<string, unknown>;
  if (r.v !== HEAD_FORMAT_VERSION) return `unknown head format version ${String(r.v)}`;
  if (!isSeq(r.epoch) || typeof r.writer !== 'string' || !isSeq(r.replayFromSeq)) return 'head lacks epoch, writer or replayFromSeq';
  if (!Array.isArray(r.rolls) || !r.rolls.every(isSeq) || typeof r.truncated !== 'boolean') return 'head lacks rolls or truncated';
  if (r.started !== null && (invalidEvent(r.started) !== undefined || (r.started as JournalEvent).type !== 'context.started')) {
    return 'head has an invalid context.started';
  }
  if (!Array.isArray(r.checkpoints)) return 'head lacks checkpoints';
  for (const c of r.checkpoints) {
    if (invalidEvent(c) !== undefined || (c as JournalEvent).type !== 'checkpoint.completed') return 'head has an invalid checkpoint';
  }
  return undefined;
}

/**
 * The head as a CRC-checked frame (validated before it is written).
 *
 * @example
 * await kv.update('head', encodeHead(head), revision);
 */
export function encodeHead(head: JournalHead): Uint8Array {
  const reason = invalidHead(head);
  if (reason) throw new Error(`refusing to write an invalid journal head: ${reason}`);
  return encodeFrame(encodeValue(head));
}

/**
 * Reads a head back, checking its frame and shape; CORRUPT_CHECKPOINT naming `where` if either fails.
 *
 * @example
 * const head = decodeHead(entry.value, 'KV TRIBUTARY_wc_HEAD/head');
 */
export function decodeHead(bytes: Uint8Array, where: string): JournalHead {
  const scan = scanFrames(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  if (scan.stop || scan.payloads.length !== 1) throw new CorruptCheckpointError(`journal head ${where} is not one whole frame`);
  let head: unknown;
  try {
    head = decodeValue(scan.payloads[0] as Buffer);
  } catch (error) {
    throw new CorruptCheckpointError(`journal head ${where} does not decode`, { cause: error });
  }
  const reason = invalidHead(head);
  if (reason) throw new CorruptCheckpointError(`journal head ${where}: ${reason}`);
  return head as JournalHead;
}

/**
 * The key under which the journal remembers a fact's stream sequence: facts are
 * identified by what they say (a batch time, a block id), as the fold keys them.
 *
 * @example
 * factKey({ v: 1, type: 'batch.completed', time: 1000 }) // 'batch.completed:1000'
 */
export function factKey(event: JournalEvent): string | undefined {
  switch (event.type) {
    case 'batch.allocated':
    case 'batch.completed':
      return `${event.type}:${event.time}`;
    case 'receiver.block':
      return `receiver.block:${event.block.id}`;
    default:
      return undefined;
  }
}
