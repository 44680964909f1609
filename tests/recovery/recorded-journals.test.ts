/**
 * Checkpoint directories recorded with the file journal of format 1
 * (tests/fixtures/journals/file-v1/, see its README.md) must still recover with
 * today's code: each is copied to a temp dir, resumed with getOrCreate by the app that
 * wrote it, run on, and its outputs compared with an uninterrupted run of that app.
 * A change of the journal or snapshot format that stops reading them fails here,
 * before old checkpoints in the field do.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import type { JournalEvent } from '../../journal/events.ts';
import { foldJournal } from '../../journal/recovery-plan.ts';
import { CorruptCheckpointError, StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import {
  BATCH_MS,
  batchTime,
  newContext,
  type Out,
  RECORDINGS,
  type RecordedApp,
  type Recording,
  START_MS,
} from '../fixtures/journals/file-v1/apps.ts';
import { capturedLogger, flipByte, type LogLine, quiet, segmentFiles, TempDirs } from '../helpers/checkpoint-kit.ts';
import { canonical, type Emitted, readJournal } from '../helpers/recovery-harness.ts';

interface Ctx {
  readonly dirs: TempDirs;
  /** Outputs of an uninterrupted run of each recorded app, by appName. */
  readonly oracles: ReadonlyMap<string, Emitted[]>;
}

const test = anyTest as TestFn<Ctx>;

/** Every run, recorded or resumed, ends after this batch. */
const TOTAL_BATCHES = 20;
const FIXTURES = fileURLToPath(new URL('../fixtures/journals/file-v1/', import.meta.url));

/** How each recording is resumed and what its test is called. */
const resumes: Record<string, { readonly title: string; readonly downtime: number }> = {
  'operators-crashed': {
    title: 'a crash with a batch in flight resumes from the delta chain of its last checkpoint and replays the journaled batches',
    downtime: 0,
  },
  'operators-crashed-before-checkpoint': {
    title: 'a crash before the first checkpoint recovers from the journal alone, then runs the downtime batch',
    downtime: 1,
  },
  'windows-stopped': {
    title: 'a graceful stop resumes from its final checkpoint, replays nothing and runs the downtime batches',
    downtime: 2,
  },
};

test.before(async (t) => {
  const oracles = new Map<string, Emitted[]>();
  for (const app of new Set(RECORDINGS.map((r) => r.app))) oracles.set(app.appName, await runUninterrupted(app));
  t.context = { dirs: new TempDirs(), oracles };
});

test.after.always(async (t) => {
  await t.context.dirs.removeAll();
});

function collector(emitted: Emitted[]): Out {
  return (name, stream) => stream.foreachBatch((records, time) => void emitted.push({ op: name, time, records: canonical(records) }));
}

/** The oracle: `app` on the recorders' clock and input, without a checkpoint. */
async function runUninterrupted(app: RecordedApp): Promise<Emitted[]> {
  const emitted: Emitted[] = [];
  const ssc = newContext(app, new ManualClock(START_MS), quiet);
  app.build(ssc, collector(emitted));
  await ssc.start();
  try {
    await ssc.runBatches(TOTAL_BATCHES);
  } finally {
    await ssc.stop();
  }
  return emitted;
}

/** The last batch a recording's journal knows of. */
function lastRecordedBatch(rec: Recording): number {
  return rec.ending.kind === 'crash' ? rec.ending.inFlight : rec.ending.after;
}

/** A copy of a recording in a new temp dir: the committed bytes are never written to. */
async function copyOf(t: ExecutionContext<Ctx>, rec: Recording): Promise<string> {
  const dir = await t.context.dirs.make('recorded');
  await fs.cp(path.join(FIXTURES, rec.name), dir, { recursive: true });
  return dir;
}

/** What a resumed run did. */
interface Resumed {
  readonly emitted: Emitted[];
  /** Batch numbers completed after the resume, in order (replayed ones included). */
  readonly completed: number[];
  /** The `resuming from the checkpoint` log line's fields (undefined: not logged). */
  readonly resume: { readonly checkpoint?: number; readonly replay?: number } | undefined;
  /** Log lines at warn or above. */
  readonly warnings: string[];
  readonly zeroTime: number;
  /** The journal after the run. */
  readonly journal: JournalEvent[];
}

const batchOf = (time: number) => (time - START_MS) / BATCH_MS;

/**
 * Resumes the checkpoint in `dir` with getOrCreate and the recording's app, `downtime`
 * batches after the recording stopped, and runs it to TOTAL_BATCHES.
 */
async function resume(rec: Recording, dir: string, downtime: number): Promise<Resumed> {
  const clock = new ManualClock(batchTime(lastRecordedBatch(rec) + downtime));
  const { logger, lines } = capturedLogger('info');
  const emitted: Emitted[] = [];
  const completed: number[] = [];
  const ssc = await StreamingContext.getOrCreate(
    dir,
    () => {
      const s = newContext(rec.app, clock, logger);
      rec.app.build(s, collector(emitted));
      s.addStreamingListener({ onBatchCompleted: ({ time }) => void completed.push(batchOf(time)) });
      return s;
    },
    { clock },
  );
  await ssc.start();
  try {
    await ssc.runBatches(TOTAL_BATCHES - batchOf(clock.now()));
  } finally {
    await ssc.stop();
  }
  const line = lines.find((l: LogLine) => l.msg === 'resuming from the checkpoint');
  return {
    emitted,
    completed,
    resume: line && { checkpoint: line.checkpoint as number | undefined, replay: line.replay as number | undefined },
    warnings: lines.filter((l) => l.level >= 40).map((l) => `${l.msg}${l.err ? `: ${(l.err as { message?: string }).message}` : ''}`),
    zeroTime: ssc.zeroTime,
    journal: await readJournal(dir, rec.app.appName),
  };
}

function byTimeAndOp(emitted: readonly Emitted[]): Emitted[] {
  return [...emitted].sort((a, b) => a.time - b.time || (a.op < b.op ? -1 : a.op > b.op ? 1 : 0));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

for (const rec of RECORDINGS) {
  const how = resumes[rec.name];
  if (how === undefined) throw new Error(`recording ${rec.name} has no entry in resumes`);
  test(`recorded journals - ${how.title}`, async (t) => {
    const dir = await copyOf(t, rec);
    const got = await resume(rec, dir, how.downtime);
    const last = lastRecordedBatch(rec);

    t.deepEqual(got.warnings, [], 'the recording reads without a warning (no cut tail, no fallback to an older checkpoint)');
    t.deepEqual(
      got.resume,
      { checkpoint: rec.resumesFrom === undefined ? undefined : batchTime(rec.resumesFrom), replay: rec.replays.length },
      `resumed from the recorded checkpoint of batch ${String(rec.resumesFrom)}, replaying batches ${rec.replays.join(', ') || 'none'}`,
    );
    t.is(got.zeroTime, START_MS, 'the recorded zero time, not the restart time');
    // Replayed batches run first, then the downtime batches and the new ones.
    t.deepEqual(got.completed, [...rec.replays, ...range(last + 1, TOTAL_BATCHES)], 'the batches run after the resume');

    // Batches whose outputs completed before the crash or stop emit nothing again; the rest emit
    // exactly what an uninterrupted run emits, each once.
    const firstOutput = rec.ending.kind === 'crash' ? rec.ending.inFlight : rec.ending.after + 1;
    const oracle = t.context.oracles.get(rec.app.appName) ?? [];
    t.true(oracle.length > 0);
    t.deepEqual(
      byTimeAndOp(got.emitted),
      byTimeAndOp(oracle.filter((e) => e.time >= batchTime(firstOutput))),
      `outputs of batches ${firstOutput} to ${TOTAL_BATCHES} equal the uninterrupted run's`,
    );

    // The recorded LOCK (epoch 1, a dead writer of another host) was taken over.
    const starts = got.journal.filter((e) => e.type === 'context.started');
    t.like(starts.at(-1), { epoch: 2, zeroTimeMs: START_MS, appName: rec.app.appName });
    t.like(got.journal.at(-1), { type: 'context.stopped', time: batchTime(TOTAL_BATCHES) });
  });
}

test('recorded journals - each recording holds the journal and snapshots its README describes', async (t) => {
  for (const rec of RECORDINGS) {
    const dir = path.join(FIXTURES, rec.name);
    const events = await readJournal(dir, rec.app.appName);
    t.true(
      events.every((e) => e.v === 1),
      `${rec.name}: every event is of format 1`,
    );
    const folded = foldJournal(events);
    t.is(folded.started?.zeroTimeMs, START_MS, rec.name);
    t.is(folded.checkpoints.at(-1)?.time, rec.resumesFrom === undefined ? undefined : batchTime(rec.resumesFrom), rec.name);
    const last = lastRecordedBatch(rec);
    for (const b of rec.replays) {
      t.true(folded.allocations.has(batchTime(b)), `${rec.name}: batch ${b} is journaled`);
      t.is(folded.completed.has(batchTime(b)), b !== last || rec.ending.kind === 'graceful', `${rec.name}: batch ${b} completion`);
    }
    t.is(folded.stoppedCleanly, rec.ending.kind === 'graceful', `${rec.name}: context.stopped`);
  }
  // The crash after several checkpoints: more than one segment, and a checkpoint built of full and delta snapshots.
  const crashed = path.join(FIXTURES, 'operators-crashed');
  t.true((await segmentFiles(crashed)).length >= 2, 'several journal segments');
  const newest = foldJournal(await readJournal(crashed)).checkpoints.at(-1);
  t.true(newest !== undefined && newest.snapshots.length > 0);
  for (const ref of newest?.snapshots ?? []) {
    t.is(ref.kind, 'delta');
    t.deepEqual(ref.chain, [3, 6, 9].map(batchTime), `${ref.operator}/${ref.partition} loads a full snapshot and two deltas`);
  }
});

test('recorded journals - damaged bytes in a copy are noticed, not recovered from silently', async (t) => {
  const rec = RECORDINGS.find((r) => r.name === 'operators-crashed') as Recording;
  // A delta of the newest checkpoint that no longer reads: recovery falls back to the older
  // checkpoint, which the resume assertions above would report.
  const snapshotCopy = await copyOf(t, rec);
  const snapshot = path.join(snapshotCopy, 'snapshots', 'mapWithState-72b37acc', '0', `${batchTime(9)}.cbor`);
  await flipByte(snapshot, (await fs.stat(snapshot)).size - 3);
  const fellBack = await resume(rec, snapshotCopy, 0);
  t.like(fellBack.resume, { checkpoint: batchTime(6) });
  t.true(fellBack.warnings.some((w) => w.startsWith('checkpoint unreadable: falling back to the previous one')));
  // A damaged journal frame is refused with CORRUPT_CHECKPOINT naming the segment and offset.
  const journalCopy = await copyOf(t, rec);
  const [first] = await segmentFiles(journalCopy);
  await flipByte(first as string, 20);
  const error = await t.throwsAsync(resume(rec, journalCopy, 0), { instanceOf: CorruptCheckpointError });
  t.regex(error?.message ?? '', /journal .*00000000000000000003\.log has a bad frame at offset 0 \(crc\)/);
});
