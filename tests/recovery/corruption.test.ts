import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import type { Logger } from '../../runtime/base/logger.ts';
import {
  capturedLogger,
  flipByte,
  framesOf,
  quiet,
  segmentFiles,
  snapshotFiles,
  sortedEntries,
  TempDirs,
} from '../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
  /** Outputs of an uninterrupted run of 20 batches. */
  expected: Map<number, unknown>;
}

const test = anyTest as TestFn<Ctx>;
const BATCHES = 20;
/** Crash point: checkpoints (every 3 s) were committed at 3, 6 and 9 s; 10 and 11 are journaled only. */
const CRASH_AFTER = 11;
const input = Array.from({ length: 30 }, (_, i) => [`a b${i % 3}`, `c${i % 5} a`]);

/** A word count with a state and an inverse-reduced window; outputs keyed by time (state) and -time (window). */
function build(clock: ManualClock, out: Map<number, unknown>, logger: Logger = quiet, dir?: string, fullEvery?: number): StreamingContext {
  const ssc = new StreamingContext({
    appName: 'corrupt',
    batchDuration: 1000,
    clock,
    logger,
    ...(fullEvery !== undefined ? { snapshotFullEvery: fullEvery } : {}),
  });
  if (dir) ssc.checkpoint(dir);
  const words = ssc
    .queueStream(input)
    .flatMap((l) => l.split(' '))
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(3000)
    .foreachBatch((r, t) => {
      out.set(t, [...r].sort());
    });
  words
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      5000,
      1000,
    )
    .checkpoint(3000)
    .foreachBatch((r, t) => {
      out.set(-t, [...r].sort());
    });
  return ssc;
}

/**
 * Runs the app on `dir` for CRASH_AFTER batches, then crashes it; returns its clock and outputs.
 * Snapshots are full every 5th checkpoint unless `fullEvery` says otherwise.
 */
async function runAndCrash(dir: string, fullEvery?: number): Promise<{ clock: ManualClock; got: Map<number, unknown> }> {
  const clock = new ManualClock();
  const got = new Map<number, unknown>();
  const first = build(clock, got, quiet, dir, fullEvery);
  const checkpoints: number[] = [];
  // Snapshots are written in the background: crash only once the third checkpoint is committed.
  let third!: () => void;
  const thirdCommitted = new Promise<void>((resolve) => {
    third = resolve;
  });
  first.addStreamingListener({
    onCheckpointCompleted: ({ time }) => {
      checkpoints.push(time);
      if (time === 9000) third();
    },
  });
  await first.start();
  await first.runBatches(CRASH_AFTER);
  await thirdCommitted;
  first.crash();
  if (checkpoints.join() !== '3000,6000,9000') throw new Error(`unexpected checkpoints ${checkpoints.join()}`);
  return { clock, got };
}

/** Resumes on `dir` and runs to batch BATCHES. */
async function resume(dir: string, clock: ManualClock, got: Map<number, unknown>, logger: Logger): Promise<void> {
  const second = await StreamingContext.getOrCreate(dir, () => build(clock, got, logger), { clock });
  await second.start();
  await second.runBatches(BATCHES - CRASH_AFTER);
  await second.stop();
}

/** The snapshot files of the checkpoint at `time`. */
async function snapshotsAt(dir: string, time: number): Promise<string[]> {
  return (await snapshotFiles(dir)).filter((f) => path.basename(f) === `${time}.cbor`);
}

test.before(async (t) => {
  const expected = new Map<number, unknown>();
  const ref = build(new ManualClock(), expected);
  await ref.start();
  await ref.runBatches(BATCHES);
  await ref.stop();
  t.context = { dirs: new TempDirs(), expected };
});

test.after.always(async (t) => {
  await t.context.dirs.removeAll();
});

test('corruption - a torn journal tail is cut with a warning and the outputs are right', async (t) => {
  const dir = await t.context.dirs.make('torn');
  const { clock, got } = await runAndCrash(dir);
  const segments = await segmentFiles(dir);
  const last = segments[segments.length - 1] as string;
  const frames = await framesOf(last);
  const tail = frames[frames.length - 1];
  t.is(tail?.event.type, 'batch.completed', 'the last thing journaled is the completion of batch 11');
  const size = (await fs.stat(last)).size;
  // A crash in the middle of writing the last frame: its last bytes never reached the disk.
  await fs.truncate(last, size - 3);

  const { logger, lines } = capturedLogger('warn');
  await resume(dir, clock, got, logger);
  const warning = lines.find((l) => l.msg.includes('torn'));
  t.truthy(warning, 'a warning says the torn tail was cut');
  t.is(warning?.file, last);
  t.is(warning?.offset, tail?.offset);
  t.deepEqual(sortedEntries(got), sortedEntries(t.context.expected));
});

test('corruption - a flipped byte in the middle of the journal is CORRUPT_CHECKPOINT naming file and offset', async (t) => {
  const dir = await t.context.dirs.make('flip-journal');
  const { clock, got } = await runAndCrash(dir);
  const segments = await segmentFiles(dir);
  const last = segments[segments.length - 1] as string;
  const frames = await framesOf(last);
  t.true(frames.length >= 4);
  const victim = frames[Math.floor(frames.length / 2)];
  if (victim === undefined) throw new Error('no frame to damage');
  // Inside the payload: the length stays right, so only the checksum can tell.
  const at = victim.offset + 8 + Math.floor((victim.end - victim.offset - 8) / 2);
  await flipByte(last, at);

  const broken = await StreamingContext.getOrCreate(dir, () => build(clock, got), { clock });
  const error = await t.throwsAsync(broken.start());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.true(error?.message.includes(last), error?.message);
  t.true(error?.message.includes(`offset ${victim.offset}`), error?.message);
  t.is(broken.lifecycle, 'stopped');
  await t.throwsAsync(broken.awaitTermination(), { message: error?.message });

  // The failed start let go of the directory: repaired, it resumes and the outputs are right.
  await flipByte(last, at);
  await resume(dir, clock, got, quiet);
  t.deepEqual(sortedEntries(got), sortedEntries(t.context.expected));
});

test('corruption - a damaged snapshot of the newest checkpoint falls back to the previous one', async (t) => {
  const dir = await t.context.dirs.make('flip-snapshot');
  const { clock, got } = await runAndCrash(dir);
  const newest = await snapshotsAt(dir, 9000);
  t.true(newest.length >= 2, 'every state partition has a snapshot of 9 s');
  const victim = newest[0] as string;
  const size = (await fs.stat(victim)).size;
  await flipByte(victim, Math.floor(size / 2));

  const { logger, lines } = capturedLogger('info');
  await resume(dir, clock, got, logger);
  const fallback = lines.find((l) => l.msg.includes('falling back'));
  t.is(fallback?.time, 9000);
  t.true(String((fallback?.err as { message?: string })?.message).includes(victim));
  const resumed = lines.find((l) => l.msg.includes('resuming from the checkpoint'));
  // From 6 s: batches 7 to 11 are replayed instead of 10 and 11.
  t.like(resumed, { checkpoint: 6000, replay: 5 });
  t.deepEqual(sortedEntries(got), sortedEntries(t.context.expected));
});

test('corruption - a deleted snapshot of the newest checkpoint falls back to the previous one', async (t) => {
  const dir = await t.context.dirs.make('missing-snapshot');
  const { clock, got } = await runAndCrash(dir);
  const newest = await snapshotsAt(dir, 9000);
  const victim = newest[newest.length - 1] as string;
  await fs.rm(victim);

  const { logger, lines } = capturedLogger('info');
  await resume(dir, clock, got, logger);
  const fallback = lines.find((l) => l.msg.includes('falling back'));
  t.true(String((fallback?.err as { message?: string })?.message).includes('is missing'));
  t.like(
    lines.find((l) => l.msg.includes('resuming from the checkpoint')),
    { checkpoint: 6000, replay: 5 },
  );
  t.deepEqual(sortedEntries(got), sortedEntries(t.context.expected));
});

test('corruption - no readable snapshot and a retained journal is CORRUPT_CHECKPOINT; createOnError starts afresh', async (t) => {
  const parent = await t.context.dirs.make('all-corrupt');
  // The directory moved aside lands next to it, inside the temp dir removed in teardown.
  const dir = path.join(parent, 'ckpt');
  // Full snapshots at 3 and 9 s: the journal is kept back to the start only until a second independent chain exists.
  const { clock, got } = await runAndCrash(dir, 2);
  const first = (await segmentFiles(dir))[0] as string;
  t.not(path.basename(first), `${'1'.padStart(20, '0')}.log`, 'retention deleted the first segment');
  for (const file of await snapshotFiles(dir)) await flipByte(file, Math.floor((await fs.stat(file)).size / 2));

  const broken = await StreamingContext.getOrCreate(dir, () => build(clock, got), { clock });
  const error = await t.throwsAsync(broken.start());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.regex(error?.message ?? '', /no checkpoint .* can be read/);

  const fresh = new Map<number, unknown>();
  const { logger, lines } = capturedLogger('warn');
  const again = await StreamingContext.getOrCreate(dir, () => build(clock, fresh, logger), { clock, createOnError: true });
  await again.start();
  await again.runBatches(3);
  await again.stop();
  const moved = lines.find((l) => l.msg.includes('moved aside'));
  t.truthy(moved, 'a warning says the checkpoint was moved aside');
  const aside = moved?.movedTo as string;
  t.is(path.dirname(aside), parent);
  t.true((await fs.readdir(path.join(aside, 'journal'))).length > 0, 'the old checkpoint is kept aside, not deleted');
  // Afresh: zero time is now (11 s) and the queue starts at its first batch again.
  t.is(again.zeroTime, CRASH_AFTER * 1000);
  const shifted = new Map([...fresh].map(([time, r]) => [time > 0 ? time - 11_000 : time + 11_000, r]));
  const firstThree = new Map([...t.context.expected].filter(([time]) => Math.abs(time) <= 3000));
  t.deepEqual(sortedEntries(shifted), sortedEntries(firstThree));
});

test('corruption - a flipped byte in a middle frame length is CORRUPT_CHECKPOINT, not a torn tail to cut', async (t) => {
  const dir = await t.context.dirs.make('flip-length');
  const { clock, got } = await runAndCrash(dir);
  const segments = await segmentFiles(dir);
  const last = segments[segments.length - 1] as string;
  const frames = await framesOf(last);
  const victim = frames[Math.floor(frames.length / 2)];
  if (victim === undefined) throw new Error('no frame to damage');
  const size = (await fs.stat(last)).size;
  // The length's second byte: the frame now claims to run past the end of the file, as a torn one would.
  await flipByte(last, victim.offset + 1);

  const broken = await StreamingContext.getOrCreate(dir, () => build(clock, got), { clock });
  const error = await t.throwsAsync(broken.start());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.true(error?.message.includes(`${last} has a bad frame at offset ${victim.offset}`), error?.message);
  t.is((await fs.stat(last)).size, size, 'nothing was cut off: the frames after it are committed events');
});

test('corruption - a flipped byte in the full snapshot both retained checkpoints build on is not fatal', async (t) => {
  const dir = await t.context.dirs.make('flip-shared-full');
  const { clock, got } = await runAndCrash(dir);
  // Every 5th snapshot is full: 6 s and 9 s are deltas on the full snapshots of 3 s.
  const shared = await snapshotsAt(dir, 3000);
  t.true(shared.length >= 2, 'the full snapshots of 3 s are still there');
  const victim = shared[0] as string;
  const offset = Math.floor((await fs.stat(victim)).size / 2);
  await flipByte(victim, offset);

  const { logger, lines } = capturedLogger('info');
  await resume(dir, clock, got, logger);
  const fallbacks = lines.filter((l) => l.msg.includes('falling back'));
  t.true(fallbacks.length > 0, 'a warning says the newest checkpoint could not be read');
  for (const line of fallbacks) t.true(String((line.err as { message?: string })?.message).includes(victim));
  t.deepEqual(sortedEntries(got), sortedEntries(t.context.expected));
});

test('corruption - a checkpoint whose replay the journal no longer holds is passed over, never restored with batches missing', async (t) => {
  const dir = await t.context.dirs.make('replay-gap');
  // Full snapshots at 3 and 9 s: 6 s (a delta on 3 s) and 9 s are kept, and the journal from the roll after 6 s.
  const { clock, got } = await runAndCrash(dir, 2);
  const events = (await Promise.all((await segmentFiles(dir)).map(framesOf))).flat().map((f) => f.event);
  t.true(
    events.some((e) => e.type === 'checkpoint.completed' && e.time === 3000),
    'the journal still names the checkpoint of 3 s',
  );
  t.false(
    events.some((e) => e.type === 'batch.allocated' && e.time === 4000),
    'but no longer holds batch 4 s',
  );
  const damaged = [...(await snapshotsAt(dir, 6000)), ...(await snapshotsAt(dir, 9000))];
  for (const file of damaged) await flipByte(file, Math.floor((await fs.stat(file)).size / 2));

  const { logger, lines } = capturedLogger('warn');
  const broken = await StreamingContext.getOrCreate(dir, () => build(clock, got, logger), { clock });
  const error = await t.throwsAsync(broken.start());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.true(error?.message.includes('checkpoint 3000: the journal no longer holds batch 4000'), error?.message);
  t.true(
    damaged.some((file) => error?.message.includes(file)),
    'the error names a damaged file',
  );
  t.like(
    lines.find((l) => l.time === 3000),
    { msg: 'checkpoint cannot be replayed from: falling back to the previous one' },
  );
});
