/**
 * `tributary inspect <dir>` run as a user runs it, on a checkpoint a real app left
 * on the ManualClock: 8 batches, checkpoints 3000 (full) and 6000 (incremental),
 * a crash, so batches 7000 and 8000 wait for replay. The report must say what the
 * run did; `--verify` must name a flipped byte's file and frame offset and exit 1;
 * the directory must be left byte for byte as it was, also while an app holds it.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { scanFrames } from '../../../journal/codec.ts';
import type { StreamingContext } from '../../../runtime/api/index.ts';
import { flipByte, framesOf, segmentFiles, snapshotFiles, TempDirs } from '../../helpers/checkpoint-kit.ts';
import { directoryFingerprint, type InspectApp, inspectJson, startInspectApp, tributary } from '../../helpers/inspect-kit.ts';

interface Ctx {
  dirs: TempDirs;
  /** Contexts still running are crashed in teardown. */
  contexts: StreamingContext[];
  /** The crashed run's directory: read by every test, damaged only in copies. */
  base: string;
  run: Pick<InspectApp, 'batches' | 'checkpoints'>;
  /** Dead letters the run wrote. */
  deadLetters: number;
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const dirs = new TempDirs();
  const base = path.join(await dirs.make('inspect'), 'ckpt');
  const app = await startInspectApp(base, 'inspect-app');
  await app.ssc.runBatches(8);
  await app.checkpointed(6000);
  const deadLetters = app.ssc.deadLetters;
  app.ssc.crash();
  t.context = { dirs, contexts: [], base, run: { batches: [...app.batches], checkpoints: [...app.checkpoints] }, deadLetters };
});

test.after.always(async (t) => {
  for (const ssc of t.context.contexts) if (ssc.lifecycle === 'active') ssc.crash();
  await t.context.dirs?.removeAll();
});

/** A copy of the crashed run's directory, to damage. */
async function copyOfBase(t: { context: Ctx }): Promise<string> {
  const dir = path.join(await t.context.dirs.make('inspect-copy'), 'ckpt');
  await fs.cp(t.context.base, dir, { recursive: true });
  return dir;
}

test('inspect - JSON says what the run did: app, graph, checkpoints, snapshots, pending replay, journal, dead letters', async (t) => {
  const { base, run } = t.context;
  t.deepEqual(run.batches, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]);
  t.deepEqual(run.checkpoints, [3000, 6000]);
  const { result, report } = await inspectJson([base]);
  t.is(result.code, 0, result.stderr);
  t.is(report.v, 1);
  t.is(report.store, 'directory');
  t.deepEqual(report.app, { name: 'inspect-app', batchDurationMs: 1000, zeroTimeMs: 0, stoppedCleanly: false });
  const totals = report.graph.find((g) => g.key === 'totals');
  t.like(totals, { operator: 'updateStateByKey', uid: 'totals', partitions: 2, slideMs: 1000 });
  t.deepEqual(
    report.graph.map((g) => g.operator),
    ['queueStream', 'flatMap', 'map', 'updateStateByKey.group', 'updateStateByKey', 'foreachBatch'],
  );
  // The crashed driver was this test process, still alive: its lock counts as held.
  t.deepEqual(report.writer, { epoch: 1, state: 'held', pid: process.pid, host: report.writer.host });
  const last = run.checkpoints[run.checkpoints.length - 1] as number;
  t.is(report.lastCheckpoint?.time, last);
  const sizes = await Promise.all(
    [0, 1].map(async (q) => (await fs.stat(path.join(base, 'snapshots', 'totals', String(q), `${last}.cbor`))).size),
  );
  t.deepEqual(report.lastCheckpoint?.snapshots, [
    { operator: 'totals', partition: 0, kind: 'incremental', bytes: sizes[0] as number, chain: [3000, 6000] },
    { operator: 'totals', partition: 1, kind: 'incremental', bytes: sizes[1] as number, chain: [3000, 6000] },
  ]);
  t.is(report.lastCheckpoint?.bytes, (sizes[0] as number) + (sizes[1] as number));
  t.deepEqual(report.checkpoints, run.checkpoints);
  t.is(report.resumeFrom, last);
  t.true(report.recoverable);
  t.deepEqual(
    report.pendingReplay,
    run.batches.filter((b) => b > last).map((time) => ({ time, outputsDone: true })),
  );
  const segments = await segmentFiles(base);
  const segmentBytes = (await Promise.all(segments.map((f) => fs.stat(f)))).reduce((n, s) => n + s.size, 0);
  const frames = (await Promise.all(segments.map(framesOf))).flat();
  t.like(report.journal, { segments: segments.length, bytes: segmentBytes, events: frames.length, tornTail: null });
  const snapshots = await snapshotFiles(base);
  t.is(report.snapshots.count, snapshots.length);
  t.is(report.snapshots.count, 4);
  t.true(t.context.deadLetters > 0);
  t.deepEqual(report.deadLetters, { files: 2, records: t.context.deadLetters });
  t.deepEqual(report.damage, []);
  t.is(report.verify, null);
});

test('inspect - the table shows the same facts in aligned columns', async (t) => {
  const { result } = { result: await tributary(['inspect', t.context.base]) };
  t.is(result.code, 0, result.stderr);
  const lines = result.stdout.split('\n');
  t.true(
    lines.some((l) => /^app +inspect-app \(batch 1000 ms, zero time 0\)$/.test(l)),
    result.stdout,
  );
  t.true(lines.some((l) => /^last checkpoint +6000 \(1970-01-01T00:00:06\.000Z\), 2 snapshots, \d+ bytes$/.test(l)));
  t.true(lines.some((l) => /^pending replay +2 batches: 7000, 8000$/.test(l)));
  t.true(lines.some((l) => /^resume from +6000$/.test(l)));
  t.true(lines.some((l) => /^dead letters +\d+ records in 2 files$/.test(l)));
  // Every value of the summary starts in one column.
  const summary = lines.slice(0, lines.indexOf(''));
  const starts = new Set(summary.map((l) => (/^\S+(?: \S+)* {2,}/.exec(l)?.[0] ?? '').length));
  t.is(starts.size, 1, summary.join('\n'));
  // The snapshot table: each cell starts under its header.
  const header = lines.findIndex((l) => l.startsWith('OPERATOR  PARTITION'));
  t.true(header > 0, result.stdout);
  const head = lines[header] as string;
  for (const [q, row] of [lines[header + 1], lines[header + 2]].entries()) {
    t.regex(row ?? '', new RegExp(`^totals +${q} +incremental +\\d+ +3000,6000$`));
    for (const column of ['PARTITION', 'KIND', 'BYTES', 'CHAIN']) {
      t.not((row as string)[head.indexOf(column)], ' ', `${column} column of ${row}`);
      t.is((row as string)[head.indexOf(column) - 1], ' ', `${column} column of ${row}`);
    }
  }
  const graph = lines.findIndex((l) => l.startsWith('KEY '));
  t.regex(lines.slice(graph).find((l) => l.startsWith('totals ')) ?? '', /^totals +updateStateByKey +totals +2 +1000$/);
});

test('inspect --verify - an undamaged checkpoint reads back whole: exit 0', async (t) => {
  const { result, report } = await inspectJson([t.context.base, '--verify']);
  t.is(result.code, 0, result.stderr);
  t.deepEqual(report.damage, []);
  t.is(report.verify?.snapshotsRead, 4);
  const frames = (await Promise.all((await segmentFiles(t.context.base)).map(framesOf))).flat();
  t.is(report.verify?.journalFrames, frames.length);
  const table = await tributary(['inspect', t.context.base, '--verify']);
  t.is(table.code, 0);
  t.regex(table.stdout, new RegExp(`^verify: ${frames.length} journal frames, 4 snapshots read: all good$`, 'm'));
});

test('inspect --verify - a flipped byte in a snapshot is named by file and frame offset, exit 1, and the restart falls back', async (t) => {
  const dir = await copyOfBase(t);
  const file = path.join(dir, 'snapshots', 'totals', '1', '6000.cbor');
  const scan = scanFrames(await fs.readFile(file));
  const frame = scan.offsets[2] as number;
  await flipByte(file, frame + 12);
  const { result, report } = await inspectJson([dir, '--verify']);
  t.is(result.code, 1, result.stderr);
  t.deepEqual(report.damage, [{ kind: 'snapshot', where: file, file, offset: frame, reason: 'CRC mismatch' }]);
  // As recovery would: the previous checkpoint, and every batch after it replayed.
  t.true(report.recoverable);
  t.is(report.resumeFrom, 3000);
  t.deepEqual(
    report.pendingReplay.map((b) => b.time),
    [4000, 5000, 6000, 7000, 8000],
  );
  const table = await tributary(['inspect', dir, '--verify']);
  t.is(table.code, 1);
  t.regex(table.stdout, new RegExp(`^snapshot +${escapeRegExp(file)} +${frame} +CRC mismatch$`, 'm'));
});

test('inspect --verify - a flipped byte in a journal frame is named by segment and offset, and every other frame is still read', async (t) => {
  const dir = await copyOfBase(t);
  const [first] = await segmentFiles(dir);
  const frames = await framesOf(first as string);
  const victim = frames.find((f) => f.event.type === 'batch.completed');
  if (victim === undefined) throw new Error('no batch.completed frame in the first segment');
  await flipByte(victim.file, victim.offset + 10);
  const { result, report } = await inspectJson([dir, '--verify']);
  t.is(result.code, 1, result.stderr);
  t.deepEqual(report.damage, [{ kind: 'journal', where: victim.file, file: victim.file, offset: victim.offset, reason: 'CRC mismatch' }]);
  // The frames after the bad one were read on: the last checkpoint is still seen.
  t.is(report.lastCheckpoint?.time, 6000);
  t.false(report.recoverable);
  const table = await tributary(['inspect', dir, '--verify']);
  t.is(table.code, 1);
  t.regex(table.stdout, new RegExp(`^journal +${escapeRegExp(victim.file)} +${victim.offset} +CRC mismatch$`, 'm'));
  t.regex(table.stdout, /^resume from +nothing: a restart fails with CORRUPT_CHECKPOINT/m);
});

test('inspect - reads without writing: a torn tail stays, every byte and mtime is unchanged', async (t) => {
  const dir = await copyOfBase(t);
  const segments = await segmentFiles(dir);
  const last = segments[segments.length - 1] as string;
  const size = (await fs.stat(last)).size;
  // Half a frame, as a crash mid-write leaves: recovery would cut it; inspect must not.
  await fs.appendFile(last, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 6]));
  const before = await directoryFingerprint(dir);
  const { result, report } = await inspectJson([dir, '--verify']);
  t.is(result.code, 0, result.stderr);
  t.deepEqual(report.journal.tornTail, { file: last, offset: size, bytes: 10 });
  t.deepEqual(report.damage, []);
  await tributary(['inspect', dir]);
  t.deepEqual(await directoryFingerprint(dir), before);
});

test('inspect - works on a directory a running app holds, without taking its lock', async (t) => {
  const dir = path.join(await t.context.dirs.make('inspect-live'), 'ckpt');
  const app = await startInspectApp(dir, 'inspect-live');
  t.context.contexts.push(app.ssc);
  await app.ssc.runBatches(4);
  await app.checkpointed(3000);
  const before = await directoryFingerprint(dir);
  const { result, report } = await inspectJson([dir, '--verify']);
  t.is(result.code, 0, result.stderr);
  t.like(report.writer, { epoch: 1, state: 'held', pid: process.pid });
  t.is(report.lastCheckpoint?.time, 3000);
  t.deepEqual(
    report.lastCheckpoint?.snapshots.map((s) => s.kind),
    ['full', 'full'],
  );
  t.deepEqual(report.pendingReplay, [{ time: 4000, outputsDone: true }]);
  t.deepEqual(await directoryFingerprint(dir), before);
  // The app still owns the directory: its next checkpoint commits (a journal sync checks the lock).
  await app.ssc.runBatches(2);
  await app.checkpointed(6000);
  await app.ssc.stop();
  const after = await inspectJson([dir]);
  t.like(after.report.writer, { epoch: 1, state: 'released' });
  t.true(after.report.app?.stoppedCleanly);
  t.deepEqual(after.report.pendingReplay, []);
});

test('inspect - what is not a checkpoint is a usage error: exit 2 and a clear message', async (t) => {
  const empty = await t.context.dirs.make('inspect-empty');
  const file = path.join(empty, 'file.txt');
  await fs.writeFile(file, 'x');
  const cases: [string[], RegExp][] = [
    [['inspect', path.join(empty, 'absent')], /absent does not exist/],
    [['inspect', file], /file\.txt is not a directory/],
    [['inspect', empty], /is not a checkpoint directory: it has no journal\/<n>\.log segments/],
    [['inspect', t.context.base, '--app', 'x'], /--app is for nats:\/\/ checkpoints/],
    [['inspect'], /missing required argument 'checkpoint'/],
    [['inspect', 'nats://127.0.0.1:notaport/?replicas=9'], /replicas/],
  ];
  for (const [args, message] of cases) {
    const result = await tributary(args);
    t.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    t.regex(result.stderr, message);
    t.is(result.stdout, '');
  }
  t.deepEqual(await fs.readdir(empty), ['file.txt']);
});

/** `s` as a literal inside a RegExp. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
