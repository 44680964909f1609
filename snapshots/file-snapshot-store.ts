/**
 * Snapshots in a local directory: `<dir>/snapshots/<operator>/<partition>/<time>.cbor`,
 * written to a temp file, fsynced, then renamed, so a crash leaves either the whole
 * snapshot or none.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { scanFrames } from '../journal/codec.ts';
import { fsyncDir } from '../journal/durable-fs.ts';
import { CorruptCheckpointError } from '../runtime/base/errors.ts';
import type { SnapshotData } from '../runtime/graph/wire.ts';
import { decodeSnapshot, encodeSnapshot, type SnapshotKey, snapshotOutline } from './snapshot-codec.ts';
import type { SnapshotStore } from './snapshot-store.ts';

async function listDir(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

/**
 * The directory name of an operator: its key percent-encoded, so that a uid such as
 * `a/b` or `..` stays one directory inside the store.
 */
function operatorDir(operator: string): string {
  const encoded = encodeURIComponent(operator);
  return /^\.*$/.test(encoded) ? encoded.replaceAll('.', '%2E') : encoded;
}

function operatorOfDir(name: string): string | undefined {
  try {
    return decodeURIComponent(name);
  } catch {
    return undefined;
  }
}

/** A snapshot file, or the temp file of one being written (`<time>.cbor.tmp-<pid>[-<n>]`). */
const SNAPSHOT_FILE = /^(\d+)\.cbor(\.tmp-[\d-]+)?$/;

let temps = 0;

/**
 * The embedded snapshot store.
 *
 * @example
 * const store = new FileSnapshotStore('/data/ckpt');
 */
export class FileSnapshotStore implements SnapshotStore {
  readonly #dir: string;
  /** Temp files of writes in progress: `retain` must not take them for stale ones. */
  readonly #writing = new Set<string>();

  constructor(root: string) {
    this.#dir = path.join(root, 'snapshots');
  }

  /** The file of one snapshot. */
  fileOf(key: SnapshotKey): string {
    return path.join(this.#dir, operatorDir(key.operator), String(key.partition), `${key.time}.cbor`);
  }

  async write(key: SnapshotKey, data: SnapshotData): Promise<number> {
    const file = this.fileOf(key);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // One temp file per write: two writes of one key must not share (and rename away) a temp file.
    const temp = `${file}.tmp-${process.pid}-${++temps}`;
    this.#writing.add(temp);
    try {
      const handle = await fs.open(temp, 'w');
      let bytes = 0;
      try {
        for await (const frame of encodeSnapshot(key, data)) {
          await handle.writeFile(frame);
          bytes += frame.length;
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, file);
      // The rename itself must be durable before a checkpoint names this snapshot.
      await fsyncDir(path.dirname(file));
      return bytes;
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => {});
      throw error;
    } finally {
      this.#writing.delete(temp);
    }
  }

  async outline(key: SnapshotKey): Promise<{ kind: 'full' | 'delta'; entries: number }> {
    const file = this.fileOf(key);
    const scan = scanFrames(await this.#bytes(file));
    if (scan.stop) throw new CorruptCheckpointError(`snapshot ${file} has a bad frame at offset ${scan.stop.offset} (${scan.stop.reason})`);
    return snapshotOutline(key, scan.payloads, file);
  }

  async #bytes(file: string): Promise<Buffer> {
    try {
      return await fs.readFile(file);
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new CorruptCheckpointError(`snapshot ${file} ${missing ? 'is missing' : 'cannot be read'}`, { cause: error });
    }
  }

  async read(key: SnapshotKey): Promise<SnapshotData> {
    const file = this.fileOf(key);
    const scan = scanFrames(await this.#bytes(file));
    if (scan.stop) throw new CorruptCheckpointError(`snapshot ${file} has a bad frame at offset ${scan.stop.offset} (${scan.stop.reason})`);
    return decodeSnapshot(key, scan.payloads, file);
  }

  async retain(keep: (key: SnapshotKey) => boolean): Promise<void> {
    for (const name of await listDir(this.#dir)) {
      const operator = operatorOfDir(name);
      if (operator === undefined) continue;
      for (const p of await listDir(path.join(this.#dir, name))) {
        if (!/^\d+$/.test(p)) continue;
        const dir = path.join(this.#dir, name, p);
        for (const file of await listDir(dir)) {
          const match = SNAPSHOT_FILE.exec(file);
          if (!match) continue;
          const full = path.join(dir, file);
          const temp = match[2] !== undefined;
          if (temp ? !this.#writing.has(full) : !keep({ operator, partition: Number(p), time: Number(match[1]) })) {
            await fs.rm(full, { force: true });
          }
        }
      }
    }
  }

  async sizeBytes(): Promise<number> {
    let total = 0;
    for (const operator of await listDir(this.#dir)) {
      for (const p of await listDir(path.join(this.#dir, operator))) {
        for (const name of await listDir(path.join(this.#dir, operator, p))) {
          // A file may be renamed or deleted meanwhile.
          const stat = await fs.stat(path.join(this.#dir, operator, p, name)).catch(() => undefined);
          total += stat?.size ?? 0;
        }
      }
    }
    return total;
  }
}
