import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { pino } from 'pino';
import { BatchFailedError, InvalidGraphError, StreamingContext } from '../../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

interface Ctx {
  root: string;
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.root = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-outputs-'));
});

test.after.always(async (t) => {
  await fs.rm(t.context.root, { recursive: true, force: true });
});

function context(appName: string, startMs = 0): StreamingContext {
  // Silent: some tests fail batches on purpose, and their error logs are expected.
  return new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock: new ManualClock(startMs),
    logger: pino({ level: 'silent' }),
  });
}

const RULE = '-------------------------------------------';

/** Spark's print() block for one batch. */
function block(time: number, lines: string[]): string {
  return [RULE, `Time: ${time} ms`, RULE, ...lines, '', ''].join('\n');
}

/** Runs `body` while collecting everything written to process.stdout. */
async function captureStdout(body: () => Promise<void>): Promise<string> {
  const original = process.stdout.write;
  let text = '';
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  }) as typeof process.stdout.write;
  try {
    await body();
  } finally {
    process.stdout.write = original;
  }
  return text;
}

// ---- print --------------------------------------------------------------------------
// Serial: they replace process.stdout.write, which the whole worker shares.

test.serial('print - prints each batch as Spark does: rules, "Time: <t> ms", records, a blank line', async (t) => {
  const ssc = context('print-format');
  ssc.queueStream<string>([['a', 'b'], ['c']]).print();
  const text = await captureStdout(async () => {
    await ssc.start();
    await ssc.runBatches(2);
    await ssc.stop();
  });
  t.is(text, block(1000, ['a', 'b']) + block(2000, ['c']));
});

test.serial('print - shows the first n records and "..." only when there were more', async (t) => {
  const ssc = context('print-n');
  const ten = Array.from({ length: 10 }, (_, i) => `r${i}`);
  const stream = ssc.queueStream<string>([['a', 'b', 'c'], ['a', 'b'], ten, [...ten, 'r10']]);
  stream.print(2);
  const text = await captureStdout(async () => {
    await ssc.start();
    await ssc.runBatches(2);
    await ssc.stop();
  });
  t.is(text, block(1000, ['a', 'b', '...']) + block(2000, ['a', 'b']));

  const ssc2 = context('print-default-n');
  ssc2.queueStream<string>([ten, [...ten, 'r10']]).print();
  const text2 = await captureStdout(async () => {
    await ssc2.start();
    await ssc2.runBatches(2);
    await ssc2.stop();
  });
  t.is(text2, block(1000, ten) + block(2000, [...ten, '...']));
});

test.serial('print - an empty batch prints the header and a blank line', async (t) => {
  const ssc = context('print-empty');
  ssc.queueStream<string>([]).print();
  const text = await captureStdout(async () => {
    await ssc.start();
    await ssc.runBatches(2);
    await ssc.stop();
  });
  t.is(text, block(1000, []) + block(2000, []));
});

test.serial('print - strings print as they are, other records as JSON, NaN and bigint as JS writes them', async (t) => {
  const ssc = context('print-records');
  ssc
    .queueStream<unknown>([
      [
        'plain "text"',
        ['word', 3],
        { k: 'v', n: [1, 2] },
        42,
        Number.NaN,
        null,
        true,
        ['big', 12345678901234567890n],
        [1, Number.POSITIVE_INFINITY],
        new Map([['m', 1]]),
      ],
    ])
    .print(20);
  const text = await captureStdout(async () => {
    await ssc.start();
    await ssc.runBatches(1);
    await ssc.stop();
  });
  t.is(
    text,
    block(1000, [
      'plain "text"',
      '["word",3]',
      '{"k":"v","n":[1,2]}',
      '42',
      'NaN',
      'null',
      'true',
      '["big",12345678901234567890]',
      '[1,Infinity]',
      '[["m",1]]',
    ]),
  );
});

test.serial('print - a record JSON cannot encode (a cycle) is still printed instead of failing the batch', async (t) => {
  const ssc = context('print-cycle');
  const cyclic: { name: string; self?: unknown } = { name: 'loop' };
  cyclic.self = cyclic;
  ssc.queueStream<unknown>([[cyclic]]).print();
  const text = await captureStdout(async () => {
    await ssc.start();
    await ssc.runBatches(1);
    await ssc.stop();
  });
  t.true(text.startsWith(`${RULE}\nTime: 1000 ms\n${RULE}\n`));
  t.regex(text, /loop/);
});

test('print - a count that is not a whole number >= 0 is refused', (t) => {
  const ssc = context('print-bad-n');
  const stream = ssc.queueStream<string>([]);
  for (const n of [-1, 1.5, Number.NaN]) t.throws(() => stream.print(n), { instanceOf: InvalidGraphError });
});

// ---- foreachBatch ---------------------------------------------------------------------

test('foreachBatch - gets every batch with its time, [] for an empty batch', async (t) => {
  const ssc = context('feb-every');
  const seen: [number, string[]][] = [];
  ssc.queueStream<string>([['a'], [], ['b', 'c']]).foreachBatch((records, time) => {
    seen.push([time, records]);
  });
  await ssc.start();
  await ssc.runBatches(4);
  await ssc.stop();
  t.deepEqual(seen, [
    [1000, ['a']],
    [2000, []],
    [3000, ['b', 'c']],
    [4000, []],
  ]);
});

test('foreachBatch - runs only at the batch times of its stream (a window sliding every 2 batches)', async (t) => {
  const ssc = context('feb-window');
  const out = collectBatches(ssc.queueStream<number>([[1], [2], [3], [4]]).window(2000, 2000));
  await ssc.start();
  await ssc.runBatches(5);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [2000, [1, 2]],
      [4000, [3, 4]],
    ],
  );
});

test('foreachBatch - an async function is awaited before the batch completes and the next output runs', async (t) => {
  const ssc = context('feb-async');
  const file = path.join(t.context.root, 'async-sink.txt');
  const events: string[] = [];
  let written = false;
  const stream = ssc.queueStream<string>([['a', 'b'], ['c']]);
  stream.foreachBatch(async (records, time) => {
    events.push(`sink start ${time}`);
    // A real asynchronous sink: many event-loop turns and a file write.
    for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    await fs.appendFile(file, records.map((r) => `${time} ${r}\n`).join(''));
    written = true;
    events.push(`sink end ${time}`);
  });
  stream.foreachBatch((_records, time) => {
    events.push(`next output ${time} sees written=${written}`);
    written = false;
  });
  ssc.addStreamingListener({ onBatchCompleted: ({ time }) => events.push(`completed ${time}`) });
  await ssc.start();
  await ssc.runBatches(2);
  const afterRun = await fs.readFile(file, 'utf8');
  await ssc.stop();
  t.deepEqual(events, [
    'sink start 1000',
    'sink end 1000',
    'next output 1000 sees written=true',
    'completed 1000',
    'sink start 2000',
    'sink end 2000',
    'next output 2000 sees written=true',
    'completed 2000',
  ]);
  t.is(afterRun, '1000 a\n1000 b\n2000 c\n');
});

test('foreachBatch - a rejected promise fails the batch with BATCH_FAILED naming the output', async (t) => {
  const ssc = context('feb-reject');
  ssc.queueStream<string>([['a']]).foreachBatch(async () => {
    await Promise.resolve();
    throw new Error('sink is down');
  });
  await ssc.start();
  const error = await t.throwsAsync(ssc.runBatches(1), { instanceOf: BatchFailedError });
  t.is(error?.code, 'BATCH_FAILED');
  t.regex(error?.message ?? '', /foreachBatch/);
  t.regex(error?.message ?? '', /sink is down/);
  await t.throwsAsync(ssc.awaitTermination(), { instanceOf: BatchFailedError });
});

// ---- saveAsTextFiles ------------------------------------------------------------------

async function readBatchDir(dir: string): Promise<{ files: string[]; part: string }> {
  const files = (await fs.readdir(dir)).sort();
  const part = await fs.readFile(path.join(dir, 'part-00000'), 'utf8');
  return { files, part };
}

test('saveAsTextFiles - writes one directory <prefix>-<timeMs> per batch, one record a line', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const prefix = path.join(base, 'out', 'counts');
  const ssc = context('save-dirs');
  ssc
    .queueStream<[string, number]>([
      [
        ['a', 1],
        ['b', 2],
      ],
      [['c', 3]],
    ])
    .saveAsTextFiles(prefix);
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual((await fs.readdir(path.join(base, 'out'))).sort(), ['counts-1000', 'counts-2000']);
  t.deepEqual(await readBatchDir(`${prefix}-1000`), { files: ['_SUCCESS', 'part-00000'], part: '["a",1]\n["b",2]\n' });
  t.deepEqual(await readBatchDir(`${prefix}-2000`), { files: ['_SUCCESS', 'part-00000'], part: '["c",3]\n' });
});

test('saveAsTextFiles - a suffix gives <prefix>-<timeMs>.<suffix>', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const ssc = context('save-suffix');
  ssc.queueStream<string>([['x']]).saveAsTextFiles(path.join(base, 'lines'), 'txt');
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(await fs.readdir(base), ['lines-1000.txt']);
  t.is((await readBatchDir(path.join(base, 'lines-1000.txt'))).part, 'x\n');
});

test('saveAsTextFiles - an empty batch writes its directory with an empty part file', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const ssc = context('save-empty');
  ssc.queueStream<string>([]).saveAsTextFiles(path.join(base, 'e'));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual((await fs.readdir(base)).sort(), ['e-1000', 'e-2000']);
  t.deepEqual(await readBatchDir(path.join(base, 'e-2000')), { files: ['_SUCCESS', 'part-00000'], part: '' });
});

test('saveAsTextFiles - a re-run of the same batch time replaces the directory, leaving nothing of the first run', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const prefix = path.join(base, 'r');
  const first = context('save-rerun-1');
  first.queueStream<string>([['old 1', 'old 2', 'old 3']]).saveAsTextFiles(prefix);
  await first.start();
  await first.runBatches(1);
  await first.stop();
  // Something else left in the first run's directory must not survive the replacement.
  await fs.writeFile(path.join(`${prefix}-1000`, 'part-00001'), 'stale\n');

  const second = context('save-rerun-2');
  second.queueStream<string>([['new']]).saveAsTextFiles(prefix);
  await second.start();
  await second.runBatches(1);
  await second.stop();
  t.deepEqual(await fs.readdir(base), ['r-1000']);
  t.deepEqual(await readBatchDir(`${prefix}-1000`), { files: ['_SUCCESS', 'part-00000'], part: 'new\n' });
});

test('saveAsTextFiles - a reader polling while a large batch is written never sees a partial directory', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const prefix = path.join(base, 'big');
  const target = `${prefix}-1000`;
  const records = Array.from({ length: 200_000 }, (_, i) => `record ${i}`);
  const expected = records.map((r) => `${r}\n`).join('');
  const ssc = context('save-atomic');
  ssc.queueStream<string>([records]).saveAsTextFiles(prefix);
  await ssc.start();
  let done = false;
  const run = ssc.runBatches(1).finally(() => {
    done = true;
  });
  let sawComplete = 0;
  const partial: string[] = [];
  for (let polls = 0; polls < 100_000 && !done; polls++) {
    try {
      const files = (await fs.readdir(target)).sort();
      const part = await fs.readFile(path.join(target, 'part-00000'), 'utf8');
      if (files.join(',') !== '_SUCCESS,part-00000' || part !== expected) partial.push(`${files.join(',')}: ${part.length} chars`);
      else sawComplete += 1;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  await run;
  await ssc.stop();
  t.deepEqual(partial, []);
  t.deepEqual(await readBatchDir(target), { files: ['_SUCCESS', 'part-00000'], part: expected });
  // Only the batch directory is left: the temp directory was renamed, not copied.
  t.deepEqual(await fs.readdir(base), ['big-1000']);
  t.log(`complete directory seen ${sawComplete} times while polling`);
});

test('saveAsTextFiles - the temp directory is hidden, so a textFileStream or Hadoop reader skips it', async (t) => {
  const base = await fs.mkdtemp(path.join(t.context.root, 'save-'));
  const prefix = path.join(base, 'h');
  const names: string[] = [];
  const ssc = context('save-hidden');
  const stream = ssc.queueStream<string>([['a']]);
  // An output that runs before the save, and one after: neither may see a temp name.
  stream.foreachBatch(async () => {
    names.push(...(await fs.readdir(base)));
  });
  stream.saveAsTextFiles(prefix);
  stream.foreachBatch(async () => {
    names.push(...(await fs.readdir(base)));
  });
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(names, ['h-1000']);
});
