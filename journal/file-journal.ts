/**
 * The embedded journal: segment files `<dir>/journal/<n>.log` of CRC-checked frames.
 * A torn tail (crash mid-write) is cut back to the last whole frame with a warning;
 * a bad frame anywhere else is CORRUPT_CHECKPOINT naming the file and offset.
 */

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { decodeValue, encodeValue } from '../runtime/base/cbor.ts';
import { CorruptCheckpointError } from '../runtime/base/errors.ts';
import type { Logger } from '../runtime/base/logger.ts';
import { encodeFrame, FRAME_HEADER_BYTES, scanFrames } from './codec.ts';
import { fsyncDir } from './durable-fs.ts';
import { invalidEvent, type JournalEvent } from './events.ts';
import type { Journal, JournalContents } from './journal.ts';
import { WriterLock } from './writer-lock.ts';

const SEGMENT_DIGITS = 20;

function segmentName(n: number): string {
  return `${String(n).padStart(SEGMENT_DIGITS, '0')}.log`;
}

/**
 * True when a whole frame holding a valid event starts after `offset`. A torn write
 * is always the last frame, so a frame "running past the end" (e.g. its length
 * damaged) with committed frames after it is damage in the middle, not a torn tail.
 */
function eventFrameFollows(buf: Buffer, offset: number): boolean {
  for (let k = offset + FRAME_HEADER_BYTES; k + FRAME_HEADER_BYTES < buf.length; k++) {
    const length = buf.readUInt32LE(k);
    if (length === 0 || k + FRAME_HEADER_BYTES + length > buf.length) continue;
    const payload = buf.subarray(k + FRAME_HEADER_BYTES, k + FRAME_HEADER_BYTES + length);
    if (crc32c(payload) !== buf.readUInt32LE(k + 4)) continue;
    try {
      if (invalidEvent(decodeValue(payload)) === undefined) return true;
    } catch {
      // Not an event: keep looking.
    }
  }
  return false;
}

/** Throws (a programmer error) unless `event` may be journaled. */
function assertValid(event: JournalEvent): void {
  const reason = invalidEvent(event);
  if (reason) throw new Error(`refusing to journal an invalid event: ${reason}`);
}

/**
 * A journal in a local directory.
 *
 * @example
 * const journal = new FileJournal('/data/ckpt', logger);
 * const { events } = await journal.open();
 */
export class FileJournal implements Journal {
  readonly #root: string;
  readonly #dir: string;
  readonly #logger: Logger;
  #lock: WriterLock | undefined;
  #handle: fs.FileHandle | undefined;
  #segment = 0;
  /** Bytes of whole frames in the current segment: a failed write is cut back to it. */
  #segmentBytes = 0;
  #abandoned = false;
  /** fsyncs started by sync() and not finished yet. */
  readonly #syncing = new Set<Promise<void>>();
  /**
   * Writes run one after another: concurrent writes on libuv's thread pool may land
   * in any order, and a roll must not overtake the appends issued before it.
   */
  #queue: Promise<void> = Promise.resolve();

  constructor(root: string, logger: Logger) {
    this.#root = root;
    this.#dir = path.join(root, 'journal');
    this.#logger = logger;
  }

  /** The segment numbers present, oldest first. */
  async segments(): Promise<number[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.#dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => /^\d+\.log$/.test(n))
      .map((n) => Number(n.slice(0, -4)))
      .sort((a, b) => a - b);
  }

  async open(): Promise<JournalContents> {
    if (this.#lock !== undefined) throw new Error('journal is already open');
    await fs.mkdir(this.#dir, { recursive: true });
    const lock = await WriterLock.acquire(this.#root);
    try {
      const complete = ((await this.segments())[0] ?? 1) === 1;
      const events = await this.#readAll();
      this.#handle = await fs.open(path.join(this.#dir, segmentName(this.#segment)), 'a');
      this.#lock = lock;
      this.#abandoned = false;
      return { epoch: lock.epoch, events, complete };
    } catch (error) {
      // A journal that cannot be read must not keep the directory locked.
      await lock.release().catch(() => {});
      throw error;
    }
  }

  /** Reads every segment, cutting a torn tail off the last one; sets the current segment. */
  async #readAll(): Promise<JournalEvent[]> {
    const segments = await this.segments();
    const events: JournalEvent[] = [];
    this.#segmentBytes = 0;
    for (const [i, n] of segments.entries()) {
      const file = path.join(this.#dir, segmentName(n));
      const buf = await fs.readFile(file);
      const scan = scanFrames(buf);
      const last = i === segments.length - 1;
      if (scan.stop) {
        // Checked for frames after it: cutting a damaged length in the middle would drop committed events.
        if (scan.stop.reason === 'torn' && last && !eventFrameFollows(buf, scan.stop.offset)) {
          this.#logger.warn(
            { file, offset: scan.stop.offset, bytes: buf.length - scan.validBytes },
            'journal ends with a torn frame (a crash mid-write): cutting it off',
          );
          await fs.truncate(file, scan.validBytes);
        } else {
          throw new CorruptCheckpointError(`journal ${file} has a bad frame at offset ${scan.stop.offset} (${scan.stop.reason})`);
        }
      }
      scan.payloads.forEach((payload, k) => {
        let event: unknown;
        try {
          event = decodeValue(payload);
        } catch (error) {
          throw new CorruptCheckpointError(`journal ${file} frame at offset ${scan.offsets[k]} does not decode`, { cause: error });
        }
        const reason = invalidEvent(event);
        if (reason) throw new CorruptCheckpointError(`journal ${file} frame at offset ${scan.offsets[k]}: ${reason}`);
        events.push(event as JournalEvent);
      });
      if (last) this.#segmentBytes = scan.validBytes;
    }
    this.#segment = segments[segments.length - 1] ?? 1;
    return events;
  }

  /** Runs `f` after every write issued before it. */
  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f);
    this.#queue = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** The open segment's handle; throws when the journal is not open. */
  #openHandle(): fs.FileHandle {
    if (this.#handle === undefined) throw new Error(this.#abandoned ? 'journal was abandoned' : 'journal is not open');
    return this.#handle;
  }

  /** Writes whole frames, or cuts a failed write back so no torn frame stays mid-segment. */
  async #write(handle: fs.FileHandle, frame: Buffer): Promise<void> {
    try {
      const { bytesWritten } = await handle.write(frame);
      if (bytesWritten !== frame.length) throw new Error(`short journal write: ${bytesWritten} of ${frame.length} bytes`);
    } catch (error) {
      await handle.truncate(this.#segmentBytes).catch(() => {});
      throw error;
    }
    this.#segmentBytes += frame.length;
  }

  append(event: JournalEvent): Promise<void> {
    try {
      assertValid(event);
    } catch (error) {
      return Promise.reject(error);
    }
    const frame = encodeFrame(encodeValue(event));
    return this.#serial(() => this.#write(this.#openHandle(), frame));
  }

  /**
   * Makes appended events durable; FENCED if another driver took the directory over.
   * A barrier in the write queue (every write issued before it is done), then the
   * fsync outside the queue: writes issued after it go on instead of waiting for the
   * disk. A roll or close lets the fsyncs in flight finish before closing the file.
   */
  sync(): Promise<void> {
    let synced: Promise<void> = Promise.resolve();
    return this.#serial(async () => {
      await this.#checkLock();
      synced = this.#openHandle().sync();
      const settled = synced.catch(() => {});
      this.#syncing.add(settled);
      void settled.then(() => this.#syncing.delete(settled));
    }).then(() => synced);
  }

  /** Waits for the fsyncs in flight (before their file is closed). */
  async #settleSyncs(): Promise<void> {
    await Promise.all([...this.#syncing]);
  }

  /** Throws FENCED when another driver took over, else a plain error when not open. */
  async #checkLock(): Promise<void> {
    if (this.#lock === undefined) throw new Error('journal is not open');
    await this.#lock.check();
  }

  roll(head: readonly JournalEvent[], keepSegments: number): Promise<void> {
    try {
      if (!Number.isSafeInteger(keepSegments) || keepSegments < 1) {
        throw new Error(`roll must keep at least the new segment, got keepSegments ${keepSegments}`);
      }
      for (const event of head) assertValid(event);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#serial(() => this.#roll(head, keepSegments));
  }

  async #roll(head: readonly JournalEvent[], keepSegments: number): Promise<void> {
    await this.#checkLock();
    const old = this.#openHandle();
    await old.sync();
    await this.#settleSyncs();
    await old.close();
    this.#handle = undefined;
    this.#segment++;
    this.#segmentBytes = 0;
    const handle = await fs.open(path.join(this.#dir, segmentName(this.#segment)), 'a');
    this.#handle = handle;
    for (const event of head) await this.#write(handle, encodeFrame(encodeValue(event)));
    await handle.sync();
    await fsyncDir(this.#dir);
    const segments = await this.segments();
    for (const n of segments.slice(0, Math.max(0, segments.length - keepSegments))) {
      await fs.rm(path.join(this.#dir, segmentName(n)), { force: true });
    }
  }

  async sizeBytes(): Promise<number> {
    let total = 0;
    for (const n of await this.segments()) {
      // A segment may be deleted by a roll meanwhile.
      const stat = await fs.stat(path.join(this.#dir, segmentName(n))).catch(() => undefined);
      total += stat?.size ?? 0;
    }
    return total;
  }

  abandon(): void {
    // The lock object stays: a later roll or sync finds out whether someone took over.
    this.#lock?.abandon();
    this.#abandoned = true;
    void this.#handle?.close().catch(() => {});
    this.#handle = undefined;
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      await this.#handle?.sync().catch(() => {});
      await this.#settleSyncs();
      await this.#handle?.close().catch(() => {});
      this.#handle = undefined;
      // A killed process never released its lock; the next owner takes it over.
      if (!this.#abandoned) await this.#lock?.release();
      this.#lock = undefined;
    });
  }
}
