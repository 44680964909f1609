/**
 * The single-writer lock of a checkpoint directory: a file naming the owning
 * process and an epoch that grows with every new owner. A lock whose process is
 * gone is taken over; a live owner makes the newcomer fail with FENCED.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FencedError } from '../runtime/base/errors.ts';
import { writeFileDurably } from './durable-fs.ts';

interface LockRecord {
  pid: number;
  host: string;
  epoch: number;
  token: string;
  /** Set by a clean release: the epoch stays so that the next owner's is higher. */
  released?: boolean;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLock(file: string): Promise<LockRecord | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as LockRecord;
    return typeof parsed.epoch === 'number' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the lock file through a temp file, fsynced and renamed, so it is never half written. */
async function writeLock(file: string, record: LockRecord): Promise<void> {
  await writeFileDurably(file, JSON.stringify(record));
}

/** Who holds (or last held) a checkpoint directory's writer lock, as read without taking it. */
export interface WriterLockState {
  readonly epoch: number;
  readonly pid: number;
  readonly host: string;
  /**
   * `held` by a live process of this host, `released` by a clean stop, `stale` when
   * its process is gone (the next owner takes it over), `unknown` on another host.
   */
  readonly state: 'held' | 'released' | 'stale' | 'unknown';
}

/**
 * Reads the lock of `dir` without taking or changing it (for inspection); undefined
 * when there is none or it is unreadable.
 *
 * @example
 * (await readWriterLock('/data/ckpt'))?.epoch // 3 after three owners
 */
export async function readWriterLock(dir: string): Promise<WriterLockState | undefined> {
  const held = await readLock(path.join(dir, 'LOCK'));
  if (held === undefined) return undefined;
  const state = held.released
    ? 'released'
    : held.host !== os.hostname()
      ? 'unknown'
      : held.pid === process.pid || isAlive(held.pid)
        ? 'held'
        : 'stale';
  return { epoch: held.epoch, pid: held.pid, host: held.host, state };
}

let tokens = 0;

/**
 * Directories whose lock a live journal of this process holds or is acquiring, with
 * that lock's token (a crashed or abandoned one lets go). Reserved synchronously, so
 * two journals opening the same directory at once cannot both win.
 */
const heldHere = new Map<string, string>();

function fenced(dir: string, held: LockRecord | undefined): FencedError {
  return new FencedError(
    `${dir} is in use by process ${held?.pid ?? process.pid} on ${held?.host ?? os.hostname()} (epoch ${held?.epoch ?? '?'}): ` +
      'one driver per checkpoint directory',
  );
}

/**
 * A held lock; `check()` throws FENCED once someone else took it.
 *
 * @example
 * const lock = await WriterLock.acquire('/data/ckpt');
 * lock.epoch // 1 on a new directory
 */
export class WriterLock {
  readonly epoch: number;
  readonly #file: string;
  readonly #key: string;
  readonly #token: string;

  private constructor(file: string, key: string, epoch: number, token: string) {
    this.#file = file;
    this.#key = key;
    this.epoch = epoch;
    this.#token = token;
  }

  /** Takes the lock of `dir`, or throws FENCED naming the live owner. */
  static async acquire(dir: string): Promise<WriterLock> {
    const file = path.join(dir, 'LOCK');
    const key = path.resolve(dir);
    if (heldHere.has(key)) throw fenced(dir, await readLock(file));
    const token = `${process.pid}-${Date.now()}-${++tokens}`;
    heldHere.set(key, token);
    try {
      const held = await readLock(file);
      const host = os.hostname();
      // Only a process of this host can be checked; one of this process is ours to take
      // over, as heldHere says no live journal of ours holds it.
      const liveElsewhere = held !== undefined && !held.released && held.host === host && held.pid !== process.pid && isAlive(held.pid);
      if (liveElsewhere) throw fenced(dir, held);
      const record: LockRecord = { pid: process.pid, host, epoch: (held?.epoch ?? 0) + 1, token };
      await writeLock(file, record);
      const lock = new WriterLock(file, key, record.epoch, token);
      await lock.check();
      return lock;
    } catch (error) {
      if (heldHere.get(key) === token) heldHere.delete(key);
      throw error;
    }
  }

  /** Throws FENCED if another writer took the lock since (or it was released). */
  async check(): Promise<void> {
    const now = await readLock(this.#file);
    if (now?.token !== this.#token) {
      throw new FencedError(
        `another driver (process ${now?.pid ?? '?'}, epoch ${now?.epoch ?? '?'}) took over ${path.dirname(this.#file)}`,
      );
    }
    if (now.released) throw new FencedError(`the lock of ${path.dirname(this.#file)} (epoch ${this.epoch}) was released`);
  }

  /** Gives the lock up if still ours, keeping its epoch for the next owner. */
  async release(): Promise<void> {
    try {
      const now = await readLock(this.#file);
      if (now?.token === this.#token && !now.released) await writeLock(this.#file, { ...now, released: true });
    } finally {
      // Let go in this process only once the file says so, so that no new owner is overwritten.
      this.abandon();
    }
  }

  /** Lets go without touching the file, as a killed process would (the next owner takes over). */
  abandon(): void {
    // Only our own entry: a newer owner in this process keeps its protection.
    if (heldHere.get(this.#key) === this.#token) heldHere.delete(this.#key);
  }
}
