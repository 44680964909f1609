import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { pino } from 'pino';
import { isPartialOrHidden } from '../../../actors/receivers/text-file.ts';
import { SourceFailedError, StreamingContext } from '../../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

interface Ctx {
  root: string;
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.root = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-text-file-'));
});

test.after.always(async (t) => {
  await fs.rm(t.context.root, { recursive: true, force: true });
});

/** A fresh input directory for one test. */
async function inputDir(t: { context: Ctx; title: string }, name: string): Promise<string> {
  const dir = path.join(t.context.root, name);
  await fs.mkdir(dir);
  return dir;
}

interface Running {
  readonly ssc: StreamingContext;
  readonly out: CollectedBatch<string>[];
}

async function start(appName: string, dir: string, includeExisting?: boolean): Promise<Running> {
  // Silent: some tests fail the context on purpose, and their error logs are expected.
  const ssc = new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  const out = collectBatches(ssc.textFileStream(dir, includeExisting === undefined ? {} : { includeExisting }));
  await ssc.start();
  return { ssc, out };
}

test('textFileStream - files present before start are ignored', async (t) => {
  const dir = await inputDir(t, 'existing');
  await fs.writeFile(path.join(dir, 'old.txt'), 'old 1\nold 2\n');
  const { ssc, out } = await start('tf-existing', dir);
  await ssc.runBatches(1);
  await fs.writeFile(path.join(dir, 'new.txt'), 'new 1\n');
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [[], ['new 1'], []],
  );
});

test('textFileStream - includeExisting reads files present before start in the first batch', async (t) => {
  const dir = await inputDir(t, 'include-existing');
  await fs.writeFile(path.join(dir, 'old.txt'), 'old 1\n');
  const { ssc, out } = await start('tf-include', dir, true);
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['old 1'], []],
  );
});

test('textFileStream - a new file is read in the next batch and in that batch only', async (t) => {
  const dir = await inputDir(t, 'new-once');
  const { ssc, out } = await start('tf-once', dir);
  await fs.writeFile(path.join(dir, 'a.txt'), 'a1\na2\n');
  await ssc.runBatches(1);
  await fs.writeFile(path.join(dir, 'b.txt'), 'b1\n');
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, ['a1', 'a2']],
      [2000, ['b1']],
      [3000, []],
      [4000, []],
    ],
  );
});

test('textFileStream - a file written as .name.tmp then renamed appears in exactly one batch', async (t) => {
  const dir = await inputDir(t, 'rename');
  const { ssc, out } = await start('tf-rename', dir);
  const temp = path.join(dir, '.part-1.txt.tmp');
  await fs.writeFile(temp, 'line 1\n');
  await ssc.runBatches(1);
  await fs.appendFile(temp, 'line 2\n');
  await fs.rename(temp, path.join(dir, 'part-1.txt'));
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [[], ['line 1', 'line 2'], [], []],
  );
});

test('textFileStream - hidden, _-prefixed and in-progress files are never read', async (t) => {
  const dir = await inputDir(t, 'hidden');
  const { ssc, out } = await start('tf-hidden', dir);
  const ignored = ['.hidden', '_SUCCESS', '_temporary', 'x.tmp', 'y.part', 'z._COPYING_', '.a.txt'];
  for (const name of ignored) await fs.writeFile(path.join(dir, name), `${name}\n`);
  await fs.writeFile(path.join(dir, 'visible.txt'), 'visible\n');
  await ssc.runBatches(1);
  // Written to again later: still never read.
  for (const name of ignored) await fs.appendFile(path.join(dir, name), 'more\n');
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['visible'], [], []],
  );
  for (const name of ignored) t.true(isPartialOrHidden(name), name);
  t.false(isPartialOrHidden('data.txt'));
  t.false(isPartialOrHidden('tmp'));
});

test('textFileStream - subdirectories are not read as files', async (t) => {
  const dir = await inputDir(t, 'subdir');
  const { ssc, out } = await start('tf-subdir', dir);
  await fs.mkdir(path.join(dir, 'nested'));
  await fs.writeFile(path.join(dir, 'nested', 'inner.txt'), 'inner\n');
  await fs.writeFile(path.join(dir, 'top.txt'), 'top\n');
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['top']],
  );
});

test('textFileStream - several new files in one batch are read in name order', async (t) => {
  const dir = await inputDir(t, 'order');
  const { ssc, out } = await start('tf-order', dir);
  await fs.writeFile(path.join(dir, 'c.txt'), 'c\n');
  await fs.writeFile(path.join(dir, 'a.txt'), 'a\n');
  await fs.writeFile(path.join(dir, 'b.txt'), 'b\n');
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['a', 'b', 'c']);
});

test('textFileStream - CRLF endings, a last line without newline, empty lines and UTF-8 are kept right', async (t) => {
  const dir = await inputDir(t, 'lines');
  const { ssc, out } = await start('tf-lines', dir);
  await fs.writeFile(path.join(dir, 'crlf.txt'), 'one\r\ntwo\r\n\r\nthree');
  await fs.writeFile(path.join(dir, 'utf8.txt'), 'h\u00e9llo \u{1F600}\n\n');
  await fs.writeFile(path.join(dir, 'x-empty.txt'), '');
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['one', 'two', '', 'three', 'h\u00e9llo \u{1F600}', '']);
});

test('textFileStream - a directory that does not exist fails start() with SOURCE_FAILED', async (t) => {
  const dir = path.join(t.context.root, 'missing');
  const ssc = new StreamingContext({ appName: 'tf-missing', batchDuration: 1000, clock: new ManualClock() });
  ssc.textFileStream(dir).foreachBatch(() => {});
  const error = await t.throwsAsync(ssc.start(), { instanceOf: SourceFailedError });
  t.is(error?.code, 'SOURCE_FAILED');
  t.is(ssc.lifecycle, 'stopped');
});

test('textFileStream - a directory removed while running stops the context with SOURCE_FAILED naming it', async (t) => {
  const dir = await inputDir(t, 'removed');
  const { ssc } = await start('tf-removed', dir);
  await fs.rm(dir, { recursive: true });
  const error = await t.throwsAsync(ssc.runBatches(1), { instanceOf: SourceFailedError });
  t.true(error?.message.includes(dir));
  await t.throwsAsync(ssc.awaitTermination(), { instanceOf: SourceFailedError });
});
