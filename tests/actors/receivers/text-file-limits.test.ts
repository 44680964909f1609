/**
 * textFileStream's limits: strict UTF-8 and lineBytesMax per line, fileBytesMax and
 * binary files per file, unreadable or vanished files as dead letters (a replay
 * reports them once, never a crash loop), files of a downtime assigned to the
 * downtime batch of their modification time, and a seen set bounded by rememberMs.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { textFileSource } from '../../../actors/receivers/text-file.ts';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import type { SourceEnv } from '../../../runtime/graph/input-source.ts';
import { UNLIMITED } from '../../../runtime/graph/rate-controller.ts';
import type { Allocation, SetAside } from '../../../runtime/graph/wire.ts';
import { TempDirs } from '../../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

const quiet = pino({ level: 'silent' });

/** Writes a file as a producer should: a hidden temp name, then renamed into place. */
async function drop(dir: string, name: string, data: string | Buffer, mtimeMs?: number): Promise<void> {
  const temp = path.join(dir, `.${name}.tmp`);
  await fs.writeFile(temp, data);
  if (mtimeMs !== undefined) await fs.utimes(temp, new Date(mtimeMs), new Date(mtimeMs));
  await fs.rename(temp, path.join(dir, name));
}

interface Recorded {
  readonly batches: Map<number, string[]>;
  readonly letters: { time: number; error: string; file: string }[];
}

function app(clock: ManualClock, input: string, rec: Recorded, options = {}, counts?: Map<string, number>): StreamingContext {
  const ssc = new StreamingContext({ appName: 'tf-limits', batchDuration: 1000, clock, logger: quiet });
  const lines = ssc.textFileStream(input, options);
  lines.foreachBatch((r, t) => void rec.batches.set(t, [...r].sort()));
  if (counts) {
    // State checkpointed every 10 s: a crash before then replays every batch.
    lines
      .map((l): [string, number] => [l, 1])
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
      .checkpoint(10_000)
      .foreachBatch((r) => {
        counts.clear();
        for (const [k, v] of r) counts.set(k, v);
      });
  }
  ssc.addStreamingListener({
    onDeadLetter: (l) => void rec.letters.push({ time: 0, error: l.error, file: l.subject }),
  });
  return ssc;
}

/** Dead letters written under the checkpoint, in batch order. */
async function lettersIn(checkpoint: string): Promise<{ time: number; error: string; file: string }[]> {
  const dir = path.join(checkpoint, 'dead-letters');
  const names = (await fs.readdir(dir).catch(() => [] as string[])).sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  const out: { time: number; error: string; file: string }[] = [];
  for (const n of names) {
    for (const line of (await fs.readFile(path.join(dir, n), 'utf8')).split('\n').filter(Boolean)) {
      const l = JSON.parse(line) as { time: number; error: string; record: { file: string } };
      out.push({ time: l.time, error: l.error, file: path.basename(l.record.file) });
    }
  }
  return out;
}

test('textFileStream - bad lines, a file over fileBytesMax and a binary file are dead letters; good lines go on', async (t) => {
  const input = await dirs.make('tf-bad-in');
  const checkpoint = await dirs.make('tf-bad-ckpt');
  const clock = new ManualClock();
  const rec: Recorded = { batches: new Map(), letters: [] };
  const ssc = app(clock, input, rec, { lineBytesMax: 10, fileBytesMax: 100 });
  ssc.checkpoint(checkpoint);
  await ssc.start();
  await drop(
    input,
    'a.txt',
    Buffer.concat([Buffer.from('ok-1\nthis line is too long\nbad-'), Buffer.from([0xc3, 0x28]), Buffer.from('\nok-2')]),
  );
  await drop(input, 'big.txt', `${'x'.repeat(8)}\n`.repeat(20));
  await drop(input, 'bin.dat', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 0x0a, 0x41]));
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(rec.batches.get(1000), ['ok-1', 'ok-2']);
  t.deepEqual(await lettersIn(checkpoint), [
    { time: 1000, file: 'a.txt', error: 'line of 21 bytes is longer than lineBytesMax (10)' },
    { time: 1000, file: 'a.txt', error: 'line is not valid UTF-8' },
    { time: 1000, file: 'big.txt', error: 'file of 180 bytes is larger than fileBytesMax (100)' },
    { time: 1000, file: 'bin.dat', error: 'binary file (a NUL byte in its first 8000 bytes)' },
  ]);
});

test('textFileStream - a file gone before its batch is replayed is a dead letter, not a crash loop', async (t) => {
  const input = await dirs.make('tf-gone-in');
  const checkpoint = await dirs.make('tf-gone-ckpt');
  const clock = new ManualClock();
  const rec: Recorded = { batches: new Map(), letters: [] };
  const first = app(clock, input, rec, {}, new Map());
  first.checkpoint(checkpoint);
  await first.start();
  await drop(input, 'keep.txt', 'k1\n');
  await drop(input, 'gone.txt', 'g1\n');
  await first.runBatches(1);
  // Batch 1000 is journaled and its state not checkpointed: the resume replays it, and one of its files is gone.
  first.crash();
  await fs.rm(path.join(input, 'gone.txt'));

  const counts = new Map<string, number>();
  const second = await StreamingContext.getOrCreate(checkpoint, () => app(clock, input, rec, {}, counts), { clock });
  await second.start();
  await drop(input, 'next.txt', 'n1\n');
  await second.runBatches(1);
  await second.stop();
  t.deepEqual([...counts].sort(), [
    ['k1', 1],
    ['n1', 1],
  ]);
  const letters = await lettersIn(checkpoint);
  t.deepEqual(
    letters.map((l) => [l.time, l.file]),
    [[1000, 'gone.txt']],
  );
  t.regex(letters[0]?.error ?? '', /^cannot read the file: ENOENT/);
});

test('textFileStream - files that arrived while the app was down go to the downtime batch of their modification time', async (t) => {
  const input = await dirs.make('tf-down-in');
  const checkpoint = await dirs.make('tf-down-ckpt');
  const clock = new ManualClock();
  const rec: Recorded = { batches: new Map(), letters: [] };
  const first = app(clock, input, rec);
  first.checkpoint(checkpoint);
  await first.start();
  await drop(input, 'before.txt', 'b1\n');
  await first.runBatches(2);
  await first.stop();

  // Down from 2000 to 7500: three files modified at 3500, 5200 and 7300 (batches 4000, 6000, 7000 of the downtime).
  await drop(input, 'f3500.txt', 'at-3500\n', 3500);
  await drop(input, 'f5200.txt', 'at-5200\n', 5200);
  await drop(input, 'f7300.txt', 'at-7300\n', 7300);
  clock.set(7500);
  const second = await StreamingContext.getOrCreate(checkpoint, () => app(clock, input, rec), { clock });
  await second.start();
  await second.runBatches(1);
  await second.stop();
  t.deepEqual(rec.batches.get(1000), ['b1']);
  t.deepEqual(
    [3000, 4000, 5000, 6000, 7000, 8000].map((time) => [time, rec.batches.get(time)]),
    [
      [3000, []],
      [4000, ['at-3500']],
      [5000, []],
      [6000, ['at-5200']],
      [7000, []],
      [8000, ['at-7300']],
    ],
    'each file in the batch whose interval holds its time; 7300 is after the last downtime batch (7000)',
  );
});

function env(clock: ManualClock): SourceEnv {
  return {
    receiverHost: { openBuffer: () => ({ store: () => {}, setAside: () => {}, cut: async () => null }) },
    clock,
    logger: quiet,
    name: 'textFileStream#1',
    batchDurationMs: 1000,
    blockIntervalMs: 200,
    rate: UNLIMITED,
    zeroTimeMs: 0,
    fail: () => {},
    received: () => {},
    writeBlock: async () => {},
    nats: () => Promise.reject(new Error('no NATS here')),
    deadLetter: () => {},
  };
}

test('textFileStream - the set of files read is bounded by rememberMs; an older file is never read', async (t) => {
  const input = await dirs.make('tf-remember');
  // Stream time on the wall clock's scale, so that file times and batch times compare.
  const start = Math.ceil(Date.now() / 1000) * 1000 + 1000;
  const clock = new ManualClock(start);
  const source = await textFileSource(input, { rememberMs: 5000 }).open(env(clock));
  await drop(input, 'new.txt', 'n1\n');
  const names = async (time: number): Promise<readonly string[]> => {
    const a: Allocation = await source.allocate(time);
    return a.type === 'files' ? a.names : [];
  };
  t.deepEqual(await names(start + 1000), ['new.txt']);
  t.deepEqual(
    ((source.position?.() ?? []) as [string, number][]).map(([n]) => n),
    ['new.txt'],
  );
  t.deepEqual(await names(start + 2000), [], 'read once');
  t.deepEqual(await names(start + 12_000), [], 'forgotten after the window, and not read again');
  t.deepEqual(source.position?.(), [], 'the seen set is empty again');
  // A file whose times are both older than the window (mtime and ctime: written long ago) is never read.
  await drop(input, 'late.txt', 'l1\n');
  t.deepEqual(await names(start + 20_000), [], 'arrived 19 s before the batch, window 5 s');
  await source.close();
});

test('textFileStream - limits must be whole numbers >= 1', (t) => {
  for (const options of [{ lineBytesMax: 0 }, { fileBytesMax: -1 }, { rememberMs: 1.5 }]) {
    t.throws(() => textFileSource('/tmp', options), { code: 'INVALID_CONFIG', message: /textFileStream \w+ must be a whole number >= 1/ });
  }
});

test('textFileStream - a dead letter of a file names it and the batch', async (t) => {
  const input = await dirs.make('tf-letter');
  const clock = new ManualClock();
  const source = await textFileSource(input, {}).open(env(clock));
  await drop(input, 'x.txt', Buffer.from([0x61, 0xff, 0x0a, 0x62, 0x0a]));
  const letters: SetAside[] = [];
  const lines = await source.read(await source.allocate(1000), (l) => letters.push(l));
  t.deepEqual(lines, ['b']);
  t.deepEqual(letters, [
    {
      record: { file: path.join(input, 'x.txt'), base64: Buffer.from([0x61, 0xff]).toString('base64'), text: 'a\ufffd' },
      error: 'line is not valid UTF-8',
    },
  ]);
  await source.close();
});
