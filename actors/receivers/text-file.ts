/**
 * `textFileStream`: the lines of files that appear in a directory after the start,
 * one batch taking the files found at its tick. Hidden files (`.x`), files being
 * written (`_x`, `*.tmp`, `*._COPYING_`, `*.part`) are ignored until renamed, as in
 * Hadoop-style atomic moves. The allocation is the list of file names.
 */

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { assert } from '../../runtime/base/assert.ts';
import { InvalidConfigError, SourceFailedError } from '../../runtime/base/errors.ts';
import type { InputRecovery, InputSource, OpenInput, SourceEnv } from '../../runtime/graph/input-source.ts';
import type { Allocation } from '../../runtime/graph/wire.ts';

/** Options of textFileStream. */
export interface TextFileStreamOptions {
  /** Also read files present before the start (default false, as in Spark). */
  readonly includeExisting?: boolean;
}

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

/** The files a resuming stream has seen: read by earlier batches, or ignored at the first start. */
async function recoveredSeen(env: SourceEnv, dir: string, recovery: InputRecovery, options: TextFileStreamOptions): Promise<string[]> {
  // No checkpoint and no batch yet: nothing says what the first start ignored, so this is a fresh start.
  if (recovery.position === undefined && recovery.allocations.length === 0 && !options.includeExisting) return listFilesOrFail(env, dir);
  return [
    ...(Array.isArray(recovery.position) ? (recovery.position as string[]) : []),
    ...recovery.allocations.flatMap((a) => (a.type === 'files' ? [...a.names, ...(a.ignored ?? [])] : [])),
  ];
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
  return {
    kind: 'text-file',
    params: { directory: dir },
    async open(env: SourceEnv): Promise<OpenInput<string>> {
      const recovery = env.recovery;
      const existing = recovery ? [] : options.includeExisting ? [] : await listFilesOrFail(env, dir);
      // Resuming: the files of earlier batches are seen; files added meanwhile are new.
      const seen = new Set<string>(recovery ? await recoveredSeen(env, dir, recovery, options) : existing);
      // The first batch journals what was ignored at the start: no checkpoint may hold it yet.
      let ignored = existing.length > 0 ? existing : undefined;
      return {
        position: () => [...seen],
        async allocate(): Promise<Allocation> {
          const fresh = (await listFilesOrFail(env, dir)).filter((n) => !seen.has(n));
          for (const n of fresh) seen.add(n);
          const allocation: Allocation = { type: 'files', names: fresh, ...(ignored ? { ignored } : {}) };
          ignored = undefined;
          return allocation;
        },
        async read(allocation: Allocation): Promise<string[]> {
          assert(allocation.type === 'files', `textFileStream cannot read a ${allocation.type} allocation`);
          const lines: string[] = [];
          for (const name of allocation.names) {
            const file = path.join(dir, name);
            const text = await fs.readFile(file, 'utf8').catch((error: unknown) => {
              throw new SourceFailedError(`${env.name}: cannot read ${file}: ${(error as Error).message}`, { cause: error });
            });
            const fileLines = text.split('\n');
            if (fileLines[fileLines.length - 1] === '') fileLines.pop();
            for (const l of fileLines) lines.push(l.endsWith('\r') ? l.slice(0, -1) : l);
          }
          return lines;
        },
        async close() {},
      };
    },
  };
}
