import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { Receiver, StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { deferred, framesOf, quiet, segmentFiles, TempDirs } from '../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
  /** Servers to close in teardown. */
  servers: { close(): Promise<void> }[];
}

const test = anyTest as TestFn<Ctx>;

test.before((t) => {
  t.context = { dirs: new TempDirs(), servers: [] };
});

test.after.always(async (t) => {
  for (const server of t.context.servers) await server.close();
  await t.context.dirs.removeAll();
});

/** Counts records that receivers accepted and resolves waits on totals (no sleeping). */
class Received {
  records = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(ssc: StreamingContext) {
    ssc.addStreamingListener({
      onRecordsReceived: ({ records }) => {
        this.records += records;
        this.#waiters = this.#waiters.filter((w) => {
          if (this.records < w.n) return true;
          w.resolve();
          return false;
        });
      },
    });
  }

  /** Resolves once `n` records in total were accepted. */
  until(n: number): Promise<void> {
    if (this.records >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }
}

/** What an app run recorded: raw batches by time, and the running count of each record. */
interface Recorded<T> {
  readonly raw: Map<number, T[]>;
  /** The state output of the last batch run. */
  counts: Map<T, number>;
}

function recorded<T>(): Recorded<T> {
  return { raw: new Map(), counts: new Map() };
}

/** The state output as a sorted list of [record, count]. */
function countsOf<T>(r: Recorded<T>): [T, number][] {
  return [...r.counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// ---- queueStream ---------------------------------------------------------------

const queue = Array.from({ length: 20 }, (_, i) => [`q${i}`, `q${i}-b`]);

function queueApp(clock: ManualClock, out: Recorded<string>, dir?: string): StreamingContext {
  const ssc = new StreamingContext({ appName: 'src-queue', batchDuration: 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const lines = ssc.queueStream(queue);
  lines.foreachBatch((r, t) => void out.raw.set(t, [...r].sort()));
  lines
    .map((l) => [l, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(3000)
    .foreachBatch((r) => {
      out.counts = new Map(r);
    });
  return ssc;
}

test('sources - queueStream resumes at the right queue index after a crash', async (t) => {
  const dir = await t.context.dirs.make('queue');
  const clock = new ManualClock();
  const out = recorded<string>();
  const first = queueApp(clock, out, dir);
  await first.start();
  // Checkpoints at 3 and 6 s: batch 7 is replayed from its journaled queue indexes.
  await first.runBatches(7);
  first.crash();
  const second = await StreamingContext.getOrCreate(dir, () => queueApp(clock, out), { clock });
  await second.start();
  await second.runBatches(5);
  await second.stop();
  for (let i = 1; i <= 12; i++) t.deepEqual(out.raw.get(i * 1000), [`q${i - 1}`, `q${i - 1}-b`], `batch ${i}`);
  t.deepEqual(
    countsOf(out),
    queue
      .slice(0, 12)
      .flat()
      .sort()
      .map((l) => [l, 1]),
  );
});

test('sources - queueStream resumes at the right queue index after a graceful stop', async (t) => {
  const dir = await t.context.dirs.make('queue-stop');
  const clock = new ManualClock();
  const out = recorded<string>();
  const first = queueApp(clock, out, dir);
  await first.start();
  await first.runBatches(4);
  await first.stop();
  const second = await StreamingContext.getOrCreate(dir, () => queueApp(clock, out), { clock });
  await second.start();
  await second.runBatches(2);
  await second.stop();
  t.deepEqual(
    [...out.raw.keys()].sort((a, b) => a - b),
    [1000, 2000, 3000, 4000, 5000, 6000],
  );
  t.deepEqual(out.raw.get(5000), ['q4', 'q4-b']);
  t.deepEqual(out.raw.get(6000), ['q5', 'q5-b']);
  t.is(out.counts.size, 12);
});

// ---- textFileStream --------------------------------------------------------------

/** Writes a file the way a producer should: to a hidden temp name, then renamed into place. */
async function drop(dir: string, name: string, lines: string[]): Promise<void> {
  const temp = path.join(dir, `.${name}.tmp`);
  await fs.writeFile(temp, `${lines.join('\n')}\n`);
  await fs.rename(temp, path.join(dir, name));
}

function fileApp(clock: ManualClock, input: string, out: Recorded<string>, intervalMs: number, dir?: string): StreamingContext {
  const ssc = new StreamingContext({ appName: 'src-file', batchDuration: 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const lines = ssc.textFileStream(input);
  lines.foreachBatch((r, t) => void out.raw.set(t, [...r].sort()));
  lines
    .map((l) => [l, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(intervalMs)
    .foreachBatch((r) => {
      out.counts = new Map(r);
    });
  return ssc;
}

const fileCrash = test.macro(async (t, intervalMs: number) => {
  const base = await t.context.dirs.make('files');
  const input = path.join(base, 'in');
  const dir = path.join(base, 'ckpt');
  await fs.mkdir(input);
  // Present before the first start: never read, before or after the restart (Spark's default).
  await drop(input, 'old.txt', ['old-1']);
  const clock = new ManualClock();
  const out = recorded<string>();
  const first = fileApp(clock, input, out, intervalMs, dir);
  await first.start();
  await drop(input, 'f1.txt', ['f1-1', 'f1-2']);
  await first.runBatches(1);
  await drop(input, 'f2.txt', ['f2-1']);
  await first.runBatches(2);
  first.crash();

  await drop(input, 'f3.txt', ['f3-1', 'f3-2']);
  const second = await StreamingContext.getOrCreate(dir, () => fileApp(clock, input, out, intervalMs), { clock });
  await second.start();
  await second.runBatches(1);
  await drop(input, 'f4.txt', ['f4-1']);
  await second.runBatches(1);
  await second.stop();

  t.deepEqual(out.raw.get(1000), ['f1-1', 'f1-2']);
  t.deepEqual(out.raw.get(2000), ['f2-1']);
  t.deepEqual(out.raw.get(3000), []);
  t.deepEqual(out.raw.get(4000), ['f3-1', 'f3-2'], 'the file added while down is the first batch after resume');
  t.deepEqual(out.raw.get(5000), ['f4-1']);
  t.deepEqual(countsOf(out), [
    ['f1-1', 1],
    ['f1-2', 1],
    ['f2-1', 1],
    ['f3-1', 1],
    ['f3-2', 1],
    ['f4-1', 1],
  ]);
});

test('sources - textFileStream reads each file once across a crash before the first checkpoint', fileCrash, 10_000);
test('sources - textFileStream reads each file once across a crash after a checkpoint', fileCrash, 2000);

// ---- receiverStream --------------------------------------------------------------

/** A receiver that stores records only when the test tells it to. */
class ManualReceiver extends Receiver<string> {
  onStart(): void {}
  onStop(): void {}
  push(records: string[]): void {
    this.storeAll(records);
  }
}

interface ReceiverRun {
  ssc: StreamingContext;
  receiver: ManualReceiver;
  received: Received;
}

/** The receiver app; the raw output of batch `gateAt` waits for `gate` (a batch caught in flight). */
function receiverApp(
  clock: ManualClock,
  out: Recorded<string>,
  dir?: string,
  gate?: { at: number; entered: () => void; open: Promise<void> },
): ReceiverRun {
  const ssc = new StreamingContext({ appName: 'src-receiver', batchDuration: 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const receiver = new ManualReceiver();
  const records = ssc.receiverStream(receiver);
  records
    .map((l) => [l, 1] as [string, number])
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .foreachBatch((r) => {
      out.counts = new Map(r);
    });
  records.foreachBatch((r, t) => {
    out.raw.set(t, [...r].sort());
    if (gate && t === gate.at) {
      gate.entered();
      return gate.open;
    }
  });
  return { ssc, receiver, received: new Received(ssc) };
}

test('sources - receiverStream replays journaled blocks exactly, including the batch in flight at the crash', async (t) => {
  const dir = await t.context.dirs.make('receiver');
  const clock = new ManualClock();
  const before = recorded<string>();
  const entered = deferred();
  const open = deferred();
  const first = receiverApp(clock, before, dir, { at: 2000, entered: () => entered.resolve(), open: open.promise });
  await first.ssc.start();
  first.receiver.push(['a1', 'a2', 'a3']);
  await first.received.until(3);
  await first.ssc.runBatches(1);
  first.receiver.push(['b1', 'b2']);
  await first.received.until(5);
  // Batch 2 is allocated (its block journaled) and its output is stuck when the process dies.
  const stuck = first.ssc.runBatches(1).catch(() => {});
  await entered.promise;
  first.ssc.crash();
  open.resolve();
  await stuck;
  t.deepEqual(before.raw.get(1000), ['a1', 'a2', 'a3']);

  const after = recorded<string>();
  let resumed: ReceiverRun | undefined;
  const ssc = await StreamingContext.getOrCreate(
    dir,
    () => {
      resumed = receiverApp(clock, after, undefined);
      return resumed.ssc;
    },
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(0);
  (resumed as ReceiverRun).receiver.push(['c1']);
  await (resumed as ReceiverRun).received.until(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.false(after.raw.has(1000), 'batch 1 completed before the crash: its output does not run again');
  t.deepEqual(after.raw.get(2000), ['b1', 'b2'], 'the batch in flight runs again with exactly its records');
  t.deepEqual(after.raw.get(3000), ['c1']);
  t.deepEqual(countsOf(after), [
    ['a1', 1],
    ['a2', 1],
    ['a3', 1],
    ['b1', 1],
    ['b2', 1],
    ['c1', 1],
  ]);
});

test('sources - receiverStream puts a journaled block whose batch was never allocated into the first batch after resume', async (t) => {
  const dir = await t.context.dirs.make('receiver-pending');
  const clock = new ManualClock();
  const before = recorded<string>();
  const first = receiverApp(clock, before, dir);
  await first.ssc.start();
  first.receiver.push(['x1', 'x2']);
  await first.received.until(2);
  await first.ssc.runBatches(1);
  first.receiver.push(['y1', 'y2', 'y3']);
  await first.received.until(5);
  await first.ssc.runBatches(1);
  first.ssc.crash();

  // Cut the journal back to just after batch 2's block: the crash came between the
  // write-ahead of the block and the allocation of its batch.
  const segments = await segmentFiles(dir);
  const last = segments[segments.length - 1] as string;
  const frames = await framesOf(last);
  const blockAt = frames.map((f) => f.event.type).lastIndexOf('receiver.block');
  const block = frames[blockAt];
  t.like(block?.event, { type: 'receiver.block', block: { records: ['y1', 'y2', 'y3'] } });
  t.deepEqual(
    frames.slice(blockAt + 1).map((f) => [f.event.type, 'time' in f.event ? f.event.time : undefined]),
    [
      ['batch.allocated', 2000],
      ['batch.completed', 2000],
    ],
  );
  await fs.truncate(last, block?.end);

  const after = recorded<string>();
  let resumed: ReceiverRun | undefined;
  const ssc = await StreamingContext.getOrCreate(
    dir,
    () => {
      resumed = receiverApp(clock, after, undefined);
      return resumed.ssc;
    },
    { clock },
  );
  await ssc.start();
  await ssc.runBatches(0);
  (resumed as ReceiverRun).receiver.push(['z1']);
  await (resumed as ReceiverRun).received.until(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.false(after.raw.has(1000));
  t.deepEqual(after.raw.get(2000), ['y1', 'y2', 'y3'], 'the pending block is the first batch after resume');
  t.deepEqual(after.raw.get(3000), ['z1']);
  t.deepEqual(countsOf(after), [
    ['x1', 1],
    ['x2', 1],
    ['y1', 1],
    ['y2', 1],
    ['y3', 1],
    ['z1', 1],
  ]);
});

// ---- socketTextStream ------------------------------------------------------------

/**
 * A TCP server on 127.0.0.1 that sends numbered lines, in bursts the test asks for,
 * to its newest client; lines asked for while no client is connected wait for the next.
 */
class NumberServer {
  readonly server = net.createServer();
  next = 0;
  #current: net.Socket | undefined;
  readonly #sockets = new Set<net.Socket>();
  #backlog: string[] = [];
  #connections = 0;
  #connectionWaiters: { n: number; resolve: () => void }[] = [];
  #closeWaiters: (() => void)[] = [];

  constructor() {
    this.server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        this.#sockets.delete(socket);
        if (this.#current === socket) this.#current = undefined;
        const waiters = this.#closeWaiters;
        this.#closeWaiters = [];
        for (const w of waiters) w();
      });
      this.#current = socket;
      this.#connections += 1;
      if (this.#backlog.length > 0) socket.write(this.#backlog.splice(0).join(''));
      this.#connectionWaiters = this.#connectionWaiters.filter((w) => {
        if (this.#connections < w.n) return true;
        w.resolve();
        return false;
      });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Drops every client and stops listening. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Resolves once `n` clients connected in total. */
  connected(n: number): Promise<void> {
    if (this.#connections >= n) return Promise.resolve();
    return new Promise((resolve) => this.#connectionWaiters.push({ n, resolve }));
  }

  /** Resolves once the current client's connection closed. */
  disconnected(): Promise<void> {
    if (this.#current === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#closeWaiters.push(resolve));
  }

  /** Sends the next `n` numbered lines; returns their numbers. */
  burst(n: number): number[] {
    const numbers = Array.from({ length: n }, (_, i) => this.next + i);
    this.next += n;
    const text = numbers.map((k) => `${k}\n`);
    if (this.#current) this.#current.write(text.join(''));
    else this.#backlog.push(...text);
    return numbers;
  }
}

interface SocketRun {
  ssc: StreamingContext;
  received: Received;
}

function socketApp(
  clock: ManualClock,
  port: number,
  prefix: string,
  raw: Map<number, number[]>[],
  counts: { last: Map<number, number> },
  dir?: string,
  gate?: { at: number; entered: () => void; open: Promise<void> },
): SocketRun {
  const ssc = new StreamingContext({ appName: 'src-socket', batchDuration: 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const lines = ssc.socketTextStream('127.0.0.1', port, { reconnectDelayMs: 10 });
  const numbers = lines.map((l) => Number(l));
  numbers
    .map((k) => [k, 1] as [number, number])
    .updateStateByKey<number, number, number>((vs, s) => (s ?? 0) + vs.length)
    .foreachBatch((r) => {
      counts.last = new Map(r);
    });
  numbers.saveAsTextFiles(prefix, 'txt');
  const mine = new Map<number, number[]>();
  raw.push(mine);
  numbers.foreachBatch((r, t) => {
    mine.set(
      t,
      [...r].sort((a, b) => a - b),
    );
    if (gate && t === gate.at) {
      gate.entered();
      return gate.open;
    }
  });
  return { ssc, received: new Received(ssc) };
}

test('sources - socketTextStream loses nothing the write-ahead log accepted, and saveAsTextFiles stays one directory a batch', async (t) => {
  const base = await t.context.dirs.make('socket');
  const dir = path.join(base, 'ckpt');
  const outDir = path.join(base, 'out');
  await fs.mkdir(outDir);
  const prefix = path.join(outDir, 'lines');
  const server = new NumberServer();
  t.context.servers.push(server);
  const port = await server.listen();
  const clock = new ManualClock();
  /** Raw batches output by each run, by time. */
  const raw: Map<number, number[]>[] = [];
  const counts = { last: new Map<number, number>() };
  const entered = deferred();
  const open = deferred();

  const first = socketApp(clock, port, prefix, raw, counts, dir, { at: 3000, entered: () => entered.resolve(), open: open.promise });
  await first.ssc.start();
  await server.connected(1);
  const completed = [...server.burst(400)];
  await first.received.until(400);
  await first.ssc.runBatches(1);
  completed.push(...server.burst(400));
  await first.received.until(800);
  await first.ssc.runBatches(1);
  // Batch 3 is allocated (its block is in the journal) and caught in flight by the crash.
  const inFlight = server.burst(300);
  await first.received.until(1100);
  const stuck = first.ssc.runBatches(1).catch(() => {});
  await entered.promise;
  // These lines are in the TCP pipe or in the receiver's memory when the process dies.
  // The socket protocol has no acknowledgements, so the sender cannot know and they may
  // be lost: only what the write-ahead log accepted (blocks cut for a batch) is safe.
  const inPipe = server.burst(300);
  first.ssc.crash();
  open.resolve();
  await stuck;
  await server.disconnected();
  // Sent while the app is down: the server keeps them for the next connection.
  const whileDown = server.burst(300);

  const second = await StreamingContext.getOrCreate(dir, () => socketApp(clock, port, prefix, raw, counts).ssc, { clock });
  const received = new Received(second);
  await second.start();
  await server.connected(2);
  await received.until(300);
  await second.runBatches(1);
  const afterResume = server.burst(300);
  await received.until(600);
  await second.runBatches(1);
  await second.stop();
  t.is(server.next, 2000);

  // Every batch time has one raw output per run that ran it, identical when repeated
  // (batch 3 ran in both runs: at-least-once for the batch in flight).
  const byTime = new Map<number, number[]>();
  for (const run of raw) {
    for (const [time, records] of run) {
      const seen = byTime.get(time);
      if (seen) t.deepEqual(records, seen, `batch ${time} ran twice with different records`);
      byTime.set(time, records);
    }
  }
  t.deepEqual(
    [...byTime.keys()].sort((a, b) => a - b),
    [1000, 2000, 3000, 4000, 5000],
  );
  const accepted = [...byTime.values()].flat();
  t.is(new Set(accepted).size, accepted.length, 'no line is in two batches');
  t.deepEqual([...(byTime.get(3000) ?? [])], inFlight, 'the batch in flight replays exactly its journaled lines');
  for (const k of [...completed, ...inFlight, ...whileDown, ...afterResume]) {
    if (!accepted.includes(k)) t.fail(`line ${k} was accepted by the journal and lost`);
  }
  // The state counts every accepted line exactly once, and nothing else.
  t.deepEqual(
    [...counts.last].sort(([a], [b]) => a - b),
    [...accepted].sort((a, b) => a - b).map((k) => [k, 1]),
  );
  t.true(
    inPipe.every((k) => !accepted.includes(k) || (counts.last.get(k) ?? 0) === 1),
    'lines in the pipe at the crash are lost or counted once',
  );

  // saveAsTextFiles: exactly one complete directory per batch time, batch 3's replaced by its re-run.
  t.deepEqual(
    (await fs.readdir(outDir)).sort(),
    [1000, 2000, 3000, 4000, 5000].map((time) => `lines-${time}.txt`),
  );
  for (const [time, records] of byTime) {
    const target = `${prefix}-${time}.txt`;
    t.deepEqual((await fs.readdir(target)).sort(), ['_SUCCESS', 'part-00000']);
    const text = await fs.readFile(path.join(target, 'part-00000'), 'utf8');
    const saved = text
      .split('\n')
      .filter((l) => l.length > 0)
      .map(Number)
      .sort((a, b) => a - b);
    t.deepEqual(saved, records, `saved batch ${time}`);
  }
});
