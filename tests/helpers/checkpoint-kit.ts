/**
 * Tools for recovery tests: temp directories removed in teardown, a logger whose
 * lines a test can assert on, and a look inside checkpoint directories (journal
 * frames, snapshot files) to damage them on purpose.
 */

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { scanFrames } from '../../journal/codec.ts';
import type { JournalEvent } from '../../journal/events.ts';
import { decodeValue } from '../../runtime/base/cbor.ts';
import type { Logger } from '../../runtime/base/logger.ts';

/** Temp directories made by one test file, removed together in `test.after.always`. */
export class TempDirs {
  readonly #made: string[] = [];

  /** A new empty directory under the OS temp dir. */
  async make(prefix: string): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `trib-${prefix}-`));
    this.#made.push(dir);
    return dir;
  }

  /** Removes every directory made (and whatever was moved next to it inside it). */
  async removeAll(): Promise<void> {
    await Promise.all(this.#made.map((d) => fs.rm(d, { recursive: true, force: true })));
  }
}

/** One line a {@link capturedLogger} wrote. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger at `level` that keeps its lines in memory for assertions. */
export function capturedLogger(level: 'info' | 'warn' = 'warn'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

/** A silent logger. */
export const quiet: Logger = pino({ level: 'silent' });

/** One frame of a journal segment. */
export interface JournalFrame {
  readonly file: string;
  /** Where the frame starts in its file. */
  readonly offset: number;
  /** Where the next frame starts. */
  readonly end: number;
  readonly event: JournalEvent;
}

/** The segment files of a checkpoint directory, oldest first. */
export async function segmentFiles(dir: string): Promise<string[]> {
  const names = (await fs.readdir(path.join(dir, 'journal'))).filter((n) => /^\d+\.log$/.test(n)).sort();
  return names.map((n) => path.join(dir, 'journal', n));
}

/** The frames of one segment file (all must be whole and valid). */
export async function framesOf(file: string): Promise<JournalFrame[]> {
  const buf = await fs.readFile(file);
  const scan = scanFrames(buf);
  if (scan.stop) throw new Error(`${file} is damaged at ${scan.stop.offset}`);
  return scan.payloads.map((payload, k) => {
    const offset = scan.offsets[k] as number;
    return { file, offset, end: scan.offsets[k + 1] ?? scan.validBytes, event: decodeValue(payload) as JournalEvent };
  });
}

/** Inverts every bit of the byte at `offset` of `file`. */
export async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, offset);
    one[0] = (one[0] as number) ^ 0xff;
    await handle.write(one, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** Every snapshot file of a checkpoint directory, sorted. */
export async function snapshotFiles(dir: string): Promise<string[]> {
  const root = path.join(dir, 'snapshots');
  const out: string[] = [];
  for (const op of await fs.readdir(root)) {
    for (const p of await fs.readdir(path.join(root, op))) {
      for (const f of await fs.readdir(path.join(root, op, p))) {
        if (f.endsWith('.cbor')) out.push(path.join(root, op, p, f));
      }
    }
  }
  return out.sort();
}

/** A promise with its resolve function outside (for gates and one-shot waits). */
export function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Entries of a map sorted by key, for deep comparisons. */
export function sortedEntries<K extends number, V>(map: ReadonlyMap<K, V>): [K, V][] {
  return [...map.entries()].sort(([a], [b]) => a - b);
}
