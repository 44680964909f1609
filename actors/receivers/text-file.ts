/**
 * `textFileStream`: the lines of files that appear in a directory after the start,
 * one batch taking the files found at its tick (a batch of a downtime: the files
 * modified by its time). Lines are decoded strictly (lines.ts); a bad line, a file
 * over fileBytesMax, a binary file or one that cannot be read is a dead letter. Hidden files (`.x`), files being
 * written (`_x`, `*.tmp`, `*._COPYING_`, `*.part`) are ignored until renamed, as in
 * Hadoop-style atomic moves. The allocation is the list of file names.
 */

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { assert } from '../../runtime/base/assert.ts';
import { InvalidConfigError, SourceFailedError } from '../../runtime/base/errors.ts';
import type { InputRecovery, InputSource, OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { Allocation, SetAside } from '../../runtime/graph/wire.ts';
import { LineSplitter, type SplitLines } from './lines.ts';

/** Options of textFileStream. */
export interface TextFileStreamOptions {
  /** Also read files present before the start (default false, as in Spark). */
  readonly includeExisting?: boolean;
  /** Longest line in bytes (default 1 MiB); a longer line is a dead letter. */
  readonly lineBytesMax?: number;
  /** Largest file in bytes (default 64 MiB); a larger file is one dead letter, not read. */
  readonly fileBytesMax?: number;
  /**
   * How long a file is remembered as read, in ms (default 60 s, Spark's
   * minRememberDuration; at least one batch). A file that arrived longer ago than
   * this (both its modification and its status-change time) is never read, so the
   * set of files read stays bounded.
   */
  readonly rememberMs?: number;
}

/** A file's arrival time: a rename (an atomic move into the directory) sets its ctime. */
function arrivalOf(st: { mtimeMs: number; ctimeMs: number }): number {
  return Math.max(st.mtimeMs, st.ctimeMs);
}

/** Bytes a file holds before a NUL byte marks it as binary (git's heuristic). */
const BINARY_PROBE_BYTES = 8000;
/** Files are split into lines in slices of at most this many bytes (bounded decoding work per call). */
const SLICE_BYTES = 1024 * 1024;

/** True for names a writer may still be filling (never read). */
export function isPartialOrHidden(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_') || name.endsWith('.tmp') || name.endsWith('.part') || name.endsWith('._COPYING_');
}

async function listFiles(directory: string): Promise<string[]> {
  const entries = await fs.readdir(directory, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !isPartialOrHidden(e.name))
    .map((e) => e.name)
    .sort();
}

/** Lists `dir`, reporting a failure (directory gone, no permission) as SOURCE_FAILED naming it. */
async function listFilesOrFail(env: SourceEnv, dir: string): Promise<string[]> {
  try {
    return await listFiles(dir);
  } catch (error) {
    throw new SourceFailedError(`${env.name}: cannot list ${dir}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The files a resuming stream has seen (read by earlier batches, or ignored at the
 * first start), with their arrival times. A checkpoint stores `[name, arrival]`
 * pairs (names alone before the remember window: kept for good); names from
 * journaled allocations get the resume time, so they are forgotten one window later.
 */
async function recoveredSeen(
  env: SourceEnv,
  dir: string,
  recovery: InputRecovery,
  options: TextFileStreamOptions,
): Promise<Map<string, number>> {
  const now = env.clock.now();
  // No checkpoint and no batch yet: nothing says what the first start ignored, so this is a fresh start.
  if (recovery.position === undefined && recovery.allocations.length === 0 && !options.includeExisting) {
    return new Map((await listFilesOrFail(env, dir)).map((n) => [n, now]));
  }
  const seen = new Map<string, number>();
  for (const entry of Array.isArray(recovery.position) ? (recovery.position as unknown[]) : []) {
    if (typeof entry === 'string') seen.set(entry, Number.POSITIVE_INFINITY);
    else if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'number') seen.set(entry[0], entry[1]);
  }
  for (const a of recovery.allocations) if (a.type === 'files') for (const n of [...a.names, ...(a.ignored ?? [])]) seen.set(n, now);
  return seen;
}

/** A limit option: a whole number >= 1. */
function limit(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1)
    throw new InvalidConfigError(`textFileStream ${name} must be a whole number >= 1, got ${String(value)}`);
  return v;
}

/**
 * The source of textFileStream.
 *
 * @example
 * textFileSource('/data/in', {})
 */
export function textFileSource(directory: string, options: TextFileStreamOptions): InputSource<string> {
  if (typeof directory !== 'string' || directory.length === 0) throw new InvalidConfigError('textFileStream needs a directory');
  const dir = path.resolve(directory);
  const lineBytesMax = limit('lineBytesMax', options.lineBytesMax, 1024 * 1024);
  const fileBytesMax = limit('fileBytesMax', options.fileBytesMax, 64 * 1024 * 1024);
  const rememberOption = limit('rememberMs', options.rememberMs, 60_000);
  return {
    kind: 'text-file',
    params: { directory: dir },
    async open(env: SourceEnv): Promise<OpenInput<string>> {
      const rememberMs = Math.max(rememberOption, env.batchDurationMs);
      const recovery = env.recovery;
      const openedAt = env.clock.now();
      const existing = recovery ? [] : options.includeExisting ? [] : await listFilesOrFail(env, dir);
      // Resuming: the files of earlier batches are seen; files added meanwhile are new.
      const seen: Map<string, number> = recovery
        ? await recoveredSeen(env, dir, recovery, options)
        : new Map(existing.map((n) => [n, openedAt]));
      // The first batch journals what was ignored at the start: no checkpoint may hold it yet.
      let ignored = existing.length > 0 ? existing : undefined;
      /** Files already reported as unreadable (a replay reads them again: one warning each). */
      const reported = new Set<string>();
      const setAsideFile = (setAside: ((l: SetAside) => void) | undefined, file: string, error: string, extra = {}) => {
        if (!reported.has(file)) {
          reported.add(file);
          env.logger.warn({ stream: env.name, file, error }, 'input file set aside as a dead letter');
        }
        setAside?.({ record: { file, ...extra }, error });
      };
      return {
        position: () => [...seen],
        async allocate(time: number): Promise<Allocation> {
          // A batch of the downtime (generated at a resume for a time before it) takes only files modified by its time, as Spark does.
          const downtime = recovery !== undefined && time < openedAt;
          const fresh: string[] = [];
          for (const name of (await listFilesOrFail(env, dir)).filter((n) => !seen.has(n))) {
            const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
            // Gone between the listing and now: nothing to read.
            if (st === undefined) continue;
            const arrival = arrivalOf(st);
            // Older than the remember window: never read (Spark ignores such files too), nor remembered.
            if (arrival < time - rememberMs) continue;
            if (downtime && st.mtimeMs > time) continue;
            fresh.push(name);
            seen.set(name, arrival);
          }
          for (const [name, arrival] of seen) if (arrival < time - rememberMs) seen.delete(name);
          const allocation: Allocation = { type: 'files', names: fresh, ...(ignored ? { ignored } : {}) };
          ignored = undefined;
          return allocation;
        },
        async read(allocation: Allocation, setAside?: (letter: SetAside) => void): Promise<string[]> {
          assert(allocation.type === 'files', `textFileStream cannot read a ${allocation.type} allocation`);
          const lines: string[] = [];
          for (const name of allocation.names) {
            const file = path.join(dir, name);
            let bytes: Buffer;
            try {
              const size = (await fs.stat(file)).size;
              if (size > fileBytesMax) {
                setAsideFile(setAside, file, `file of ${size} bytes is larger than fileBytesMax (${fileBytesMax})`, { bytes: size });
                continue;
              }
              bytes = await fs.readFile(file);
            } catch (error) {
              setAsideFile(setAside, file, `cannot read the file: ${(error as Error).message}`);
              continue;
            }
            if (bytes.subarray(0, BINARY_PROBE_BYTES).includes(0)) {
              setAsideFile(setAside, file, `binary file (a NUL byte in its first ${BINARY_PROBE_BYTES} bytes)`, { bytes: bytes.length });
              continue;
            }
            const splitter = new LineSplitter(lineBytesMax);
            const take = ({ lines: complete, rejected }: SplitLines) => {
              for (const l of complete) lines.push(l);
              for (const r of rejected) setAside?.({ record: { file, ...(r.record as object) }, error: r.error });
            };
            for (let at = 0; at < bytes.length; at += SLICE_BYTES) take(splitter.push(bytes.subarray(at, at + SLICE_BYTES)));
            take(splitter.end());
          }
          return lines;
        },
        async close() {},
      };
    },
  };
}
