/**
 * Durable file writes shared by the journal, the snapshot store, the writer lock
 * and the chaos workload: a file written whole or not at all, and a rename that
 * survives a crash.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import writeFileAtomic from 'write-file-atomic';

/**
 * Fsyncs a directory, so the renames and new files in it are durable.
 *
 * @example
 * await fsyncDir('/data/ckpt/journal');
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to `file` through a fsynced temp file renamed into place
 * (write-file-atomic), then fsyncs the directory.
 *
 * @example
 * await writeFileDurably('/data/ckpt/LOCK', JSON.stringify(lock));
 */
export async function writeFileDurably(file: string, data: string | Buffer): Promise<void> {
  await writeFileAtomic(file, data, { fsync: true });
  await fsyncDir(path.dirname(file));
}
