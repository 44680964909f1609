/**
 * A checkpoint directory as `tributary inspect` reads it: the journal's segments
 * without the writer lock (readFileJournal), the lock file only read, snapshot files
 * listed and read, dead letters counted. Nothing is written, created or cut.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { readFileJournal } from '../../../journal/file-journal-reader.ts';
import { readWriterLock } from '../../../journal/writer-lock.ts';
import { FileSnapshotStore } from '../../../snapshots/file-snapshot-store.ts';
import type { SnapshotKey } from '../../../snapshots/snapshot-codec.ts';
import type { CheckpointSource, JournalView, StoredSnapshot } from './checkpoint-source.ts';
import { InspectUsageError } from './errors.ts';
import type { InspectReport } from './inspect-report.ts';

async function listDir(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => [] as string[]);
}

/** A snapshot file (temp files of writes in progress are not snapshots yet). */
const SNAPSHOT_FILE = /^(\d+)\.cbor$/;

/**
 * Opens `dir` for inspection; a usage error when it is not a checkpoint directory.
 *
 * @example
 * const source = await directorySource('./checkpoints/wc');
 */
export async function directorySource(dir: string): Promise<CheckpointSource> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (stat === undefined) throw new InspectUsageError(`${dir} does not exist`);
  if (!stat.isDirectory()) throw new InspectUsageError(`${dir} is not a directory`);
  const segments = (await listDir(path.join(dir, 'journal'))).filter((n) => /^\d+\.log$/.test(n));
  if (segments.length === 0) throw new InspectUsageError(`${dir} is not a checkpoint directory: it has no journal/<n>.log segments`);
  const files = new FileSnapshotStore(dir);
  return {
    store: 'directory',
    location: dir,
    journal: () => journalOf(dir),
    snapshots: () => snapshotsIn(path.join(dir, 'snapshots')),
    async readSnapshot(key) {
      try {
        return await fs.readFile(files.fileOf(key));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    snapshotWhere(key) {
      const file = files.fileOf(key);
      return { where: file, file };
    },
    deadLetters: () => deadLettersIn(path.join(dir, 'dead-letters')),
    close: async () => {},
  };
}

async function journalOf(dir: string): Promise<JournalView> {
  const read = await readFileJournal(dir);
  const lock = await readWriterLock(dir);
  const started = [...read.events].reverse().find((e) => e.type === 'context.started');
  // Every roll starts a segment with the checkpoints retention keeps; later ones follow them there.
  const last = read.segments[read.segments.length - 1];
  const retained = (last?.events ?? []).filter((e) => e.type === 'checkpoint.completed');
  return {
    events: read.events,
    complete: read.complete,
    retained,
    framesRead: read.events.length + read.damage.length,
    size: {
      events: read.events.length,
      bytes: read.segments.reduce((n, s) => n + s.bytes, 0),
      segments: read.segments.length,
      tornTail: read.tornTail ?? null,
    },
    // Recovery reads every segment and refuses any bad frame but a torn tail.
    damageBlocksRecovery: read.damage.length > 0,
    damage: read.damage.map((d) => ({ kind: 'journal', where: d.file, file: d.file, offset: d.offset, reason: d.reason })),
    writer: {
      epoch: lock?.epoch ?? started?.epoch ?? null,
      state: lock?.state ?? null,
      pid: lock?.pid ?? null,
      host: lock?.host ?? null,
    },
  };
}

async function snapshotsIn(root: string): Promise<StoredSnapshot[]> {
  const out: StoredSnapshot[] = [];
  for (const name of await listDir(root)) {
    let operator: string;
    try {
      operator = decodeURIComponent(name);
    } catch {
      continue;
    }
    for (const p of (await listDir(path.join(root, name))).filter((p) => /^\d+$/.test(p))) {
      for (const file of await listDir(path.join(root, name, p))) {
        const m = SNAPSHOT_FILE.exec(file);
        if (!m) continue;
        // Retention of a running app may delete it meanwhile.
        const stat = await fs.stat(path.join(root, name, p, file)).catch(() => undefined);
        if (stat === undefined) continue;
        out.push({ key: { operator, partition: Number(p), time: Number(m[1]) } satisfies SnapshotKey, bytes: stat.size });
      }
    }
  }
  return out.sort((a, b) => a.key.time - b.key.time || a.key.operator.localeCompare(b.key.operator) || a.key.partition - b.key.partition);
}

async function deadLettersIn(dir: string): Promise<InspectReport['deadLetters']> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (stat === undefined || !stat.isDirectory()) return null;
  let files = 0;
  let records = 0;
  for (const name of (await listDir(dir)).filter((n) => n.endsWith('.jsonl'))) {
    const text = await fs.readFile(path.join(dir, name), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    files++;
    records += text.split('\n').filter((line) => line.trim() !== '').length;
  }
  return { files, records };
}
