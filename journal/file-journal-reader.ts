/**
 * Reading a checkpoint directory's journal without owning it: no writer lock, no
 * cut of a torn tail, no write of any kind, so that `tributary inspect` may look at
 * a directory a running app holds. Unlike {@link FileJournal.open}, which stops at
 * the first bad frame, it reads on past each one to list them all.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { decodeValue } from '../runtime/base/cbor.ts';
import { FRAME_HEADER_BYTES, scanFrames } from './codec.ts';
import { invalidEvent, type JournalEvent } from './events.ts';

/** One frame that is not a valid event, where it starts and why. */
export interface JournalFrameDamage {
  readonly file: string;
  readonly offset: number;
  readonly reason: string;
}

/** One segment file as read. */
export interface JournalSegmentRead {
  readonly file: string;
  readonly bytes: number;
  /** Its valid events, in order. */
  readonly events: readonly JournalEvent[];
}

/** What a read-only pass over a directory's journal found. */
export interface FileJournalRead {
  /** Segments oldest first (a segment deleted by a roll while reading is left out). */
  readonly segments: readonly JournalSegmentRead[];
  /** Every valid event, oldest first. */
  readonly events: readonly JournalEvent[];
  /** True when the first segment is the app's first: nothing was deleted yet. */
  readonly complete: boolean;
  /** Frames that are damaged (bad CRC or length, not an event), each named by file and offset. */
  readonly damage: readonly JournalFrameDamage[];
  /**
   * An incomplete last frame of the last segment: a crash mid-write, which recovery
   * cuts off, or a write still in progress. Not damage.
   */
  readonly tornTail: { readonly file: string; readonly offset: number; readonly bytes: number } | undefined;
}

const SEGMENT = /^(\d+)\.log$/;

const STOP_REASONS = {
  torn: 'frame runs past the end of the file',
  crc: 'CRC mismatch',
  length: 'frame length out of range',
} as const;

/** The event a payload holds, or why it holds none. */
function eventOf(payload: Buffer): { event: JournalEvent } | { reason: string } {
  let value: unknown;
  try {
    value = decodeValue(payload);
  } catch {
    return { reason: 'frame does not decode' };
  }
  const reason = invalidEvent(value);
  return reason === undefined ? { event: value as JournalEvent } : { reason };
}

/** True when a whole frame holding a valid event starts at `k`. */
function eventFrameAt(buf: Buffer, k: number): boolean {
  if (k + FRAME_HEADER_BYTES > buf.length) return false;
  const length = buf.readUInt32LE(k);
  if (length === 0 || k + FRAME_HEADER_BYTES + length > buf.length) return false;
  const payload = buf.subarray(k + FRAME_HEADER_BYTES, k + FRAME_HEADER_BYTES + length);
  return crc32c(payload) === buf.readUInt32LE(k + 4) && 'event' in eventOf(payload);
}

/**
 * Where reading can go on after a bad frame at `offset`: where its length says it
 * ends when a valid frame (or the end) is there, else the next valid event frame
 * found byte by byte; undefined when none follows.
 */
function resumeAfter(buf: Buffer, offset: number): number | undefined {
  const length = buf.readUInt32LE(offset);
  const end = offset + FRAME_HEADER_BYTES + length;
  if (end === buf.length) return end;
  if (end < buf.length && eventFrameAt(buf, end)) return end;
  for (let k = offset + 1; k + FRAME_HEADER_BYTES < buf.length; k++) if (eventFrameAt(buf, k)) return k;
  return undefined;
}

interface SegmentScan {
  readonly events: JournalEvent[];
  readonly damage: JournalFrameDamage[];
  readonly tornAt: number | undefined;
}

/** Reads one segment's frames, going on past each bad one. */
function scanSegment(file: string, buf: Buffer, last: boolean): SegmentScan {
  const events: JournalEvent[] = [];
  const damage: JournalFrameDamage[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const scan = scanFrames(buf.subarray(offset));
    scan.payloads.forEach((payload, k) => {
      const read = eventOf(payload);
      if ('event' in read) events.push(read.event);
      else damage.push({ file, offset: offset + (scan.offsets[k] as number), reason: read.reason });
    });
    if (scan.stop === undefined) break;
    const at = offset + scan.stop.offset;
    const next = buf.length - at >= FRAME_HEADER_BYTES ? resumeAfter(buf, at) : undefined;
    // Only the newest frame can be half written; one with valid frames after it is damage.
    if (scan.stop.reason === 'torn' && last && next === undefined) return { events, damage, tornAt: at };
    damage.push({ file, offset: at, reason: STOP_REASONS[scan.stop.reason] });
    if (next === undefined) break;
    offset = next;
  }
  return { events, damage, tornAt: undefined };
}

/** The segment files of `root`'s journal, oldest first. */
async function segmentFiles(root: string): Promise<{ n: number; file: string }[]> {
  const dir = path.join(root, 'journal');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names
    .flatMap((name) => {
      const m = SEGMENT.exec(name);
      return m ? [{ n: Number(m[1]), file: path.join(dir, name) }] : [];
    })
    .sort((a, b) => a.n - b.n);
}

/**
 * Reads every segment of the journal in `root` (a checkpoint directory) without
 * changing anything, listing each damaged frame.
 *
 * @example
 * const { events, damage } = await readFileJournal('/data/ckpt');
 */
export async function readFileJournal(root: string): Promise<FileJournalRead> {
  const files = await segmentFiles(root);
  const segments: JournalSegmentRead[] = [];
  const damage: JournalFrameDamage[] = [];
  let tornTail: FileJournalRead['tornTail'];
  for (const [i, { file }] of files.entries()) {
    let buf: Buffer;
    try {
      buf = await fs.readFile(file);
    } catch (error) {
      // A roll of the running app deleted it meanwhile: the newer segments repeat what it held.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    const scan = scanSegment(file, buf, i === files.length - 1);
    damage.push(...scan.damage);
    if (scan.tornAt !== undefined) tornTail = { file, offset: scan.tornAt, bytes: buf.length - scan.tornAt };
    segments.push({ file, bytes: buf.length, events: scan.events });
  }
  return {
    segments,
    events: segments.flatMap((s) => s.events),
    complete: (files[0]?.n ?? 1) === 1,
    damage,
    tornTail,
  };
}
