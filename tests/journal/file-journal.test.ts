import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { pino } from 'pino';
import { encodeFrame, FRAME_HEADER_BYTES } from '../../journal/codec.ts';
import type { JournalEvent } from '../../journal/events.ts';
import { FileJournal } from '../../journal/file-journal.ts';
import { encodeValue } from '../../runtime/base/cbor.ts';
import type { Logger } from '../../runtime/base/logger.ts';

interface Ctx {
  root: string;
  children: ChildProcess[];
}

const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  t.context.root = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-file-journal-'));
  t.context.children = [];
});

test.after.always(async (t) => {
  for (const child of t.context.children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await fs.rm(t.context.root, { recursive: true, force: true });
});

const quiet: Logger = pino({ level: 'silent' });

/** A logger whose warnings land in `lines`, parsed. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

let dirs = 0;

/** A fresh checkpoint directory for one test. */
async function freshDir(t: { context: Ctx }): Promise<string> {
  const dir = path.join(t.context.root, `ckpt-${++dirs}`);
  await fs.mkdir(dir);
  return dir;
}

function completed(time: number): JournalEvent {
  return { v: 1, type: 'batch.completed', time };
}

function started(epoch: number): JournalEvent {
  return {
    v: 1,
    type: 'context.started',
    appName: 'wc',
    batchDurationMs: 1000,
    zeroTimeMs: 0,
    epoch,
    graph: [{ key: 'queueStream-0001', operator: 'queueStream', uid: null, slideMs: 1000, partitions: 2, params: {} }],
  };
}

function sampleEvents(): JournalEvent[] {
  return [
    started(1),
    { v: 1, type: 'batch.allocated', time: 1000, inputs: { 'queueStream-0001': { type: 'queue', from: 0, to: 1 } } },
    { v: 1, type: 'receiver.block', stream: 'socketTextStream-0002', block: { id: 'b-1', records: ['a', 'é', 3] } },
    completed(1000),
    {
      v: 1,
      type: 'checkpoint.completed',
      time: 1000,
      snapshots: [{ operator: 'reduceByKey-0003', partition: 0, time: 1000, kind: 'full', chain: [1000], bytes: 12 }],
      positions: { 'queueStream-0001': 1 },
    },
    { v: 1, type: 'context.stopped', time: 1000 },
  ];
}

/** Opens a journal, runs `f` with it, and closes it. */
async function withJournal<T>(dir: string, f: (j: FileJournal, events: readonly JournalEvent[], epoch: number) => Promise<T>): Promise<T> {
  const journal = new FileJournal(dir, quiet);
  const { events, epoch } = await journal.open();
  try {
    return await f(journal, events, epoch);
  } finally {
    await journal.close();
  }
}

async function readEvents(dir: string): Promise<readonly JournalEvent[]> {
  return withJournal(dir, async (_j, events) => events);
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(path.join(dir, 'journal'))).filter((n) => n.endsWith('.log')).sort();
}

async function lastSegment(dir: string): Promise<string> {
  const names = await segmentFiles(dir);
  return path.join(dir, 'journal', names[names.length - 1] as string);
}

/** Pid of a Node process that already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  return child.pid as number;
}

// ---- append and reopen ----------------------------------------------------------

test('file journal - appended events come back in order after reopening', async (t) => {
  const dir = await freshDir(t);
  const events = sampleEvents();
  await withJournal(dir, async (j, found) => {
    t.deepEqual(found, []);
    for (const e of events) await j.append(e);
    await j.sync();
  });
  t.deepEqual(await readEvents(dir), events);
  await withJournal(dir, async (j) => {
    await j.append(completed(2000));
  });
  t.deepEqual(await readEvents(dir), [...events, completed(2000)]);
  t.deepEqual(await segmentFiles(dir), ['00000000000000000001.log']);
});

test('file journal - appends issued without waiting keep their order', async (t) => {
  const dir = await freshDir(t);
  // Writes racing on libuv's thread pool land in any order unless the journal queues them.
  const times = Array.from({ length: 5000 }, (_, i) => (i + 1) * 1000);
  await withJournal(dir, async (j) => {
    await Promise.all(times.map((time) => j.append(completed(time))));
  });
  const found = (await readEvents(dir)).map((e) => ('time' in e ? e.time : -1));
  t.is(found.length, times.length);
  t.is(
    found.findIndex((time, i) => time !== times[i]),
    -1,
  );
});

test('file journal - appends issued during a sync land after it in order, and a roll or close right after a sync waits for it', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    // The fsync runs outside the write queue: the appends issued meanwhile still keep their order.
    const pending = [j.sync(), j.append(completed(2000)), j.append(completed(3000)), j.sync()];
    // A roll issued while those fsyncs may still be on the disk closes the segment only after them.
    pending.push(j.roll([started(1)], 2));
    pending.push(j.append(completed(4000)), j.sync());
    await Promise.all(pending);
    // And a close right after a sync.
    void j.sync();
  });
  const found = await readEvents(dir);
  const times = found.filter((e) => e.type === 'batch.completed').map((e) => ('time' in e ? e.time : -1));
  t.deepEqual(times, [1000, 2000, 3000, 4000]);
  t.is((await segmentFiles(dir)).length, 2);
});

test('file journal - append before open is refused', async (t) => {
  const journal = new FileJournal(await freshDir(t), quiet);
  await t.throwsAsync(journal.append(completed(1000)), { message: /not open/ });
});

// ---- torn tails -----------------------------------------------------------------

test('file journal - a tail cut by a few bytes is cut back with a warning, and appends continue cleanly', async (t) => {
  const dir = await freshDir(t);
  const events = sampleEvents();
  await withJournal(dir, async (j) => {
    for (const e of events) await j.append(e);
  });
  const file = await lastSegment(dir);
  const size = (await fs.stat(file)).size;
  await fs.truncate(file, size - 3);

  const { logger, lines } = capturingLogger();
  const journal = new FileJournal(dir, logger);
  const { events: found } = await journal.open();
  t.deepEqual(found, events.slice(0, -1));
  t.is(lines.length, 1);
  t.is(lines[0]?.level, 40);
  t.is(lines[0]?.file, file);
  t.regex(String(lines[0]?.msg), /torn/);
  const lastFrame = encodeFrame(encodeValue(events[events.length - 1]));
  t.is(lines[0]?.offset, size - lastFrame.length);
  t.is((await fs.stat(file)).size, size - lastFrame.length);
  await journal.append(completed(5000));
  await journal.close();

  const again = capturingLogger();
  const reopened = new FileJournal(dir, again.logger);
  t.deepEqual((await reopened.open()).events, [...events.slice(0, -1), completed(5000)]);
  await reopened.close();
  t.deepEqual(again.lines, []);
});

test('file journal - half a frame appended to the tail is cut back with a warning', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await j.append(completed(2000));
  });
  const file = await lastSegment(dir);
  const size = (await fs.stat(file)).size;
  const frame = encodeFrame(encodeValue(completed(3000)));
  for (const cut of [3, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 2, frame.length - 1]) {
    await fs.appendFile(file, frame.subarray(0, cut));
    const { logger, lines } = capturingLogger();
    const journal = new FileJournal(dir, logger);
    const { events } = await journal.open();
    await journal.close();
    t.deepEqual(events, [completed(1000), completed(2000)], `cut after ${cut} bytes`);
    t.is(lines.length, 1, `cut after ${cut} bytes`);
    t.is(lines[0]?.offset, size);
    t.is((await fs.stat(file)).size, size);
  }
  await withJournal(dir, async (j) => {
    await j.append(completed(3000));
  });
  t.deepEqual(await readEvents(dir), [completed(1000), completed(2000), completed(3000)]);
});

test('file journal - a torn tail of the last segment after a roll is cut back, older segments are kept', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await j.roll([started(1)], 3);
    await j.append(completed(2000));
  });
  const file = await lastSegment(dir);
  await fs.truncate(file, (await fs.stat(file)).size - 1);
  t.deepEqual(await readEvents(dir), [completed(1000), started(1)]);
});

// ---- corruption -----------------------------------------------------------------

test('file journal - a flipped byte in the middle of a segment is CORRUPT_CHECKPOINT naming the file and offset', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    for (let i = 1; i <= 5; i++) await j.append(completed(i * 1000));
  });
  const file = await lastSegment(dir);
  const frameBytes = encodeFrame(encodeValue(completed(1000))).length;
  const buf = await fs.readFile(file);
  const at = 2 * frameBytes + FRAME_HEADER_BYTES + 1;
  buf[at] = (buf[at] as number) ^ 0x10;
  await fs.writeFile(file, buf);

  const journal = new FileJournal(dir, quiet);
  const error = await t.throwsAsync(journal.open());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.true(error?.message.includes(file), error?.message);
  t.regex(error?.message ?? '', new RegExp(`offset ${2 * frameBytes}\\b`));
  // Nothing was cut: the damage must be looked at, not silently dropped.
  t.is((await fs.stat(file)).size, buf.length);
});

test('file journal - a failed open does not keep the directory locked', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await j.append(completed(2000));
  });
  const file = await lastSegment(dir);
  const good = await fs.readFile(file);
  const bad = Buffer.from(good);
  bad[FRAME_HEADER_BYTES] = (bad[FRAME_HEADER_BYTES] as number) ^ 0xff;
  await fs.writeFile(file, bad);
  await t.throwsAsync(new FileJournal(dir, quiet).open(), { code: 'CORRUPT_CHECKPOINT' } as never);
  // After a repair, the same process may open it again.
  await fs.writeFile(file, good);
  t.deepEqual(await readEvents(dir), [completed(1000), completed(2000)]);
});

test('file journal - a torn frame in an older segment is CORRUPT_CHECKPOINT, not cut', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await j.append(completed(2000));
    await j.roll([started(1)], 5);
    await j.append(completed(3000));
  });
  const [older] = await segmentFiles(dir);
  const file = path.join(dir, 'journal', older as string);
  const size = (await fs.stat(file)).size;
  await fs.truncate(file, size - 2);
  const error = await t.throwsAsync(new FileJournal(dir, quiet).open());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.true(error?.message.includes(file), error?.message);
  t.is((await fs.stat(file)).size, size - 2);
});

test('file journal - a whole frame holding an invalid event is CORRUPT_CHECKPOINT', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
  });
  const file = await lastSegment(dir);
  await fs.appendFile(file, encodeFrame(encodeValue({ v: 2, type: 'batch.completed', time: 2000 })));
  await fs.appendFile(file, encodeFrame(encodeValue(completed(3000))));
  const error = await t.throwsAsync(new FileJournal(dir, quiet).open());
  t.is((error as { code?: string }).code, 'CORRUPT_CHECKPOINT');
  t.regex(error?.message ?? '', /format version 2/);
  t.true(error?.message.includes(file), error?.message);
});

// ---- validation -----------------------------------------------------------------

test('file journal - invalid events are refused before anything is written', async (t) => {
  const dir = await freshDir(t);
  const invalid: unknown[] = [
    null,
    'batch.completed',
    { type: 'batch.completed', time: 1000 },
    { v: 2, type: 'batch.completed', time: 1000 },
    { v: 1, type: 'batch.completed' },
    { v: 1, type: 'batch.completed', time: 1.5 },
    { v: 1, type: 'batch.completed', time: '1000' },
    { v: 1, type: 'batch.allocated', time: 1000 },
    { v: 1, type: 'checkpoint.completed', time: 1000, snapshots: [] },
    { v: 1, type: 'receiver.block', stream: 's', block: { id: 'b' } },
    { v: 1, type: 'context.started', appName: 'wc', batchDurationMs: 1000, zeroTimeMs: 0, epoch: 1 },
    { v: 1, type: 'batch.exploded', time: 1000 },
  ];
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await j.sync();
    const before = await j.sizeBytes();
    for (const e of invalid) {
      await t.throwsAsync(j.append(e as JournalEvent), { message: /invalid event/ }, JSON.stringify(e));
    }
    t.is(await j.sizeBytes(), before);
  });
  t.deepEqual(await readEvents(dir), [completed(1000)]);
});

// ---- roll -----------------------------------------------------------------------

test('file journal - roll keeps the newest N segments and starts the new one with the head', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(started(1));
    for (let i = 1; i <= 4; i++) {
      await j.append(completed(i * 1000));
      await j.roll([started(1), completed(i * 1000)], 3);
      t.deepEqual(
        await j.segments(),
        Array.from({ length: Math.min(i + 1, 3) }, (_, k) => Math.max(1, i - 1) + k),
      );
    }
    await j.append(completed(5000));
  });
  t.deepEqual(await segmentFiles(dir), ['00000000000000000003.log', '00000000000000000004.log', '00000000000000000005.log']);
  // Segments 3, 4 and 5 remain; each begins with its head.
  t.deepEqual(await readEvents(dir), [
    started(1),
    completed(2000),
    completed(3000),
    started(1),
    completed(3000),
    completed(4000),
    started(1),
    completed(4000),
    completed(5000),
  ]);

  // Only the newest segment: its head comes first, then what was appended after the roll.
  await withJournal(dir, async (j) => {
    await j.append(completed(6000));
    await j.roll([started(2), completed(6000)], 1);
    await j.append(completed(7000));
  });
  t.deepEqual(await segmentFiles(dir), ['00000000000000000006.log']);
  t.deepEqual(await readEvents(dir), [started(2), completed(6000), completed(7000)]);
});

test('file journal - roll refuses to keep fewer than one segment', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await t.throwsAsync(j.roll([completed(1000)], 0));
    await t.throwsAsync(j.roll([completed(1000)], 1.5));
  });
  t.deepEqual(await readEvents(dir), [completed(1000)]);
});

test('file journal - roll with an invalid head event fails before deleting anything', async (t) => {
  const dir = await freshDir(t);
  await withJournal(dir, async (j) => {
    await j.append(completed(1000));
    await t.throwsAsync(j.roll([{ v: 1, type: 'batch.completed' } as unknown as JournalEvent], 1), { message: /invalid event/ });
  });
  t.deepEqual(await readEvents(dir), [completed(1000)]);
});

test('file journal - sizeBytes stays bounded over 1,000 appends with a roll every 10', async (t) => {
  const dir = await freshDir(t);
  const sizes: number[] = [];
  await withJournal(dir, async (j) => {
    await j.append(started(1));
    for (let i = 1; i <= 1000; i++) {
      await j.append(completed(i * 1000));
      if (i % 10 === 0) {
        await j.roll([started(1), completed(i * 1000)], 2);
        sizes.push(await j.sizeBytes());
      }
    }
  });
  const frameMax = encodeFrame(encodeValue(completed(1_000_000))).length;
  const headBytes = encodeFrame(encodeValue(started(1))).length + frameMax;
  // Two segments at most: the newest head, plus one full segment of a head and ten events.
  const bound = 2 * headBytes + 10 * frameMax;
  t.true(Math.max(...sizes) <= bound, `max ${Math.max(...sizes)} > ${bound}`);
  t.is(sizes.length, 100);
  t.true((await segmentFiles(dir)).length <= 2);
  const events = await readEvents(dir);
  t.deepEqual(events.slice(-2), [started(1), completed(1_000_000)]);
});

// ---- the writer lock ------------------------------------------------------------

test('file journal - a second journal on the same directory in the same process is FENCED', async (t) => {
  const dir = await freshDir(t);
  const first = new FileJournal(dir, quiet);
  t.is((await first.open()).epoch, 1);
  const error = await t.throwsAsync(new FileJournal(dir, quiet).open());
  t.is((error as { code?: string }).code, 'FENCED');
  t.is(error?.name, 'FencedError');
  await first.append(completed(1000));
  await first.roll([completed(1000)], 1);
  await first.close();
});

test('file journal - two journals opening the same directory at once: exactly one wins', async (t) => {
  const dir = await freshDir(t);
  const journals = [new FileJournal(dir, quiet), new FileJournal(dir, quiet), new FileJournal(dir, quiet)];
  const results = await Promise.allSettled(journals.map((j) => j.open()));
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) if (r.status === 'rejected') t.is((r.reason as { code?: string }).code, 'FENCED');
  await Promise.all(journals.map((j) => j.close()));
});

test('file journal - epochs keep growing across clean closes', async (t) => {
  const dir = await freshDir(t);
  const epochs: number[] = [];
  for (let i = 0; i < 3; i++) epochs.push(await withJournal(dir, async (_j, _e, epoch) => epoch));
  t.deepEqual(epochs, [1, 2, 3]);
});

test('file journal - after abandon() a new journal takes over with epoch+1 and the old one is FENCED', async (t) => {
  const dir = await freshDir(t);
  const old = new FileJournal(dir, quiet);
  t.is((await old.open()).epoch, 1);
  await old.append(completed(1000));
  await old.sync();
  old.abandon();

  const next = new FileJournal(dir, quiet);
  const { epoch, events } = await next.open();
  t.is(epoch, 2);
  t.deepEqual(events, [completed(1000)]);
  await next.append(completed(2000));

  const rollError = await t.throwsAsync(old.roll([completed(1000)], 1));
  t.is((rollError as { code?: string }).code, 'FENCED');
  await t.throwsAsync(old.sync(), { code: 'FENCED' } as never);
  await t.throwsAsync(old.append(completed(9000)), { message: /abandoned/ });
  // The old journal going away must neither release nor unprotect the new owner's lock.
  await old.close();
  await t.throwsAsync(new FileJournal(dir, quiet).open(), { code: 'FENCED' } as never);
  await next.sync();
  await next.close();
  t.deepEqual(await readEvents(dir), [completed(1000), completed(2000)]);
});

test('file journal - a lock file left by a dead process is taken over with the next epoch', async (t) => {
  const dir = await freshDir(t);
  const pid = await deadPid();
  await fs.writeFile(path.join(dir, 'LOCK'), JSON.stringify({ pid, host: os.hostname(), epoch: 7, token: 'x' }));
  const journal = new FileJournal(dir, quiet);
  t.is((await journal.open()).epoch, 8);
  const lock = JSON.parse(await fs.readFile(path.join(dir, 'LOCK'), 'utf8')) as { pid: number; epoch: number };
  t.is(lock.pid, process.pid);
  t.is(lock.epoch, 8);
  await journal.close();
});

test('file journal - a lock held by a live process is FENCED', async (t) => {
  const dir = await freshDir(t);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.context.children.push(child);
  await once(child, 'spawn');
  const record = { pid: child.pid, host: os.hostname(), epoch: 3, token: 'x' };
  await fs.writeFile(path.join(dir, 'LOCK'), JSON.stringify(record));
  const error = await t.throwsAsync(new FileJournal(dir, quiet).open());
  t.is((error as { code?: string }).code, 'FENCED');
  t.true(error?.message.includes(String(child.pid)), error?.message);
  // The live owner's lock is left alone.
  t.deepEqual(JSON.parse(await fs.readFile(path.join(dir, 'LOCK'), 'utf8')), record);
});
