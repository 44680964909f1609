import * as net from 'node:net';
import anyTest, { type TestFn } from 'ava';
import { pino } from 'pino';
import { LineSplitter } from '../../../actors/receivers/lines.ts';
import { InvalidConfigError, type SocketTextStreamOptions, StreamingContext } from '../../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

/** A line server on 127.0.0.1 that hands out its accepted connections in order. */
class LineServer {
  readonly server = net.createServer();
  readonly sockets: net.Socket[] = [];
  #accepted = 0;
  #waiters: { n: number; resolve: (s: net.Socket) => void }[] = [];

  constructor() {
    this.server.on('connection', (socket) => {
      this.sockets.push(socket);
      this.#accepted += 1;
      socket.on('error', () => {});
      this.#wake();
    });
  }

  /** Listens on `port` (0: any free port) of 127.0.0.1 and returns the port. */
  async listen(port = 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Resolves with the `n`-th accepted connection (1-based), once it is accepted. */
  connection(n: number): Promise<net.Socket> {
    return new Promise((resolve) => {
      this.#waiters.push({ n, resolve });
      this.#wake();
    });
  }

  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => {
      const socket = this.sockets[w.n - 1];
      if (socket === undefined) return true;
      w.resolve(socket);
      return false;
    });
  }

  get accepted(): number {
    return this.#accepted;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Counts what receivers accepted; `untilRecords(n)` resolves once `n` arrived in total (no sleeping). */
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

  untilRecords(n: number): Promise<void> {
    if (this.records >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }
}

const servers: LineServer[] = [];
const contexts: StreamingContext[] = [];
const test = anyTest as TestFn<unknown>;

test.after.always(async () => {
  for (const ssc of contexts) await ssc.stop().catch(() => {});
  for (const server of servers) await server.close();
});

interface Setup {
  readonly server: LineServer;
  readonly ssc: StreamingContext;
  readonly received: Received;
  readonly out: CollectedBatch<string>[];
}

/** A listening server, a started context reading from it, and its first connection accepted. */
async function setup(appName: string, options: SocketTextStreamOptions = {}): Promise<Setup & { conn: net.Socket }> {
  const server = new LineServer();
  servers.push(server);
  const port = await server.listen();
  // Silent: a dropped connection logs a warning, expected in the reconnect test.
  const ssc = new StreamingContext({
    appName,
    batchDuration: 1000,
    partitions: 2,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  contexts.push(ssc);
  const received = new Received(ssc);
  const out = collectBatches(ssc.socketTextStream('127.0.0.1', port, options));
  await ssc.start();
  const conn = await server.connection(1);
  return { server, ssc, received, out, conn };
}

function write(socket: net.Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (error) => (error ? reject(error) : resolve())));
}

test('socketTextStream - a line split across several writes is put back together', async (t) => {
  t.timeout(20_000);
  const { ssc, received, out, conn } = await setup('sock-split');
  // Each write ends inside a line; waiting for the complete lines before it proves
  // the next piece arrives in a later read.
  await write(conn, 'first\nhel');
  await received.untilRecords(1);
  await write(conn, 'lo wor');
  await write(conn, 'ld\nsec');
  await received.untilRecords(2);
  await write(conn, 'ond\n');
  await received.untilRecords(3);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['first', 'hello world', 'second']);
});

test('socketTextStream - a 4-byte UTF-8 character split across two writes is decoded whole', async (t) => {
  t.timeout(20_000);
  const { ssc, received, out, conn } = await setup('sock-utf8');
  const emoji = Buffer.from('\u{1F600}', 'utf8');
  t.is(emoji.length, 4);
  await write(conn, Buffer.concat([Buffer.from('before\nx'), emoji.subarray(0, 2)]));
  await received.untilRecords(1);
  await write(conn, Buffer.concat([emoji.subarray(2), Buffer.from('y \u00e9\n')]));
  await received.untilRecords(2);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['before', 'x\u{1F600}y \u00e9']);
});

test('socketTextStream - CRLF line endings are removed, also when CR and LF arrive in different reads', async (t) => {
  t.timeout(20_000);
  const { ssc, received, out, conn } = await setup('sock-crlf');
  await write(conn, 'a\r\nb\r');
  await received.untilRecords(1);
  await write(conn, '\nc\r\n\r\nd\n');
  await received.untilRecords(5);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['a', 'b', 'c', '', 'd']);
});

test('socketTextStream - lines go to the batch whose tick follows their arrival, each exactly once', async (t) => {
  t.timeout(20_000);
  const { ssc, received, out, conn } = await setup('sock-batches');
  await write(conn, '1\n2\n');
  await received.untilRecords(2);
  await ssc.runBatches(1);
  await ssc.runBatches(1);
  await write(conn, '3\n');
  await received.untilRecords(3);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, ['1', '2']],
      [2000, []],
      [3000, ['3']],
    ],
  );
});

test('socketTextStream - reconnects after the server drops the connection and loses nothing sent after', async (t) => {
  t.timeout(20_000);
  const { server, ssc, received, out, conn } = await setup('sock-reconnect', { reconnectDelayMs: 10 });
  await write(conn, 'a\nb\n');
  await received.untilRecords(2);
  conn.destroy();
  const second = await server.connection(2);
  // Written at once on accept, and in pieces later: all of it must arrive.
  await write(second, 'c\nd\n');
  await write(second, 'e');
  await write(second, '\n');
  await received.untilRecords(5);
  await ssc.runBatches(1);
  // A third connection after a graceful end, whose last line has no newline.
  second.end('f\ntail-without-newline');
  const third = await server.connection(3);
  await received.untilRecords(7);
  await write(third, 'g\n');
  await received.untilRecords(8);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [
      ['a', 'b', 'c', 'd', 'e'],
      ['f', 'tail-without-newline', 'g'],
    ],
  );
});

test('socketTextStream - connects once a server that was down at start begins listening', async (t) => {
  t.timeout(20_000);
  // Find a free port, then release it so that nothing listens there at start.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  // Silent: every refused connect before the server listens logs a warning.
  const ssc = new StreamingContext({
    appName: 'sock-late-server',
    batchDuration: 1000,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
  });
  contexts.push(ssc);
  const received = new Received(ssc);
  const out = collectBatches(ssc.socketTextStream('127.0.0.1', port, { reconnectDelayMs: 5, reconnectDelayMsMax: 20 }));
  await ssc.start();
  await ssc.runBatches(1);

  const server = new LineServer();
  servers.push(server);
  await server.listen(port);
  const conn = await server.connection(1);
  await write(conn, 'hello\n');
  await received.untilRecords(1);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [[], ['hello']],
  );
});

test('socketTextStream - a 50k-line burst arrives whole and in order', async (t) => {
  t.timeout(60_000);
  const { ssc, received, out, conn } = await setup('sock-burst');
  const count = 50_000;
  const lines = Array.from({ length: count }, (_, i) => `line ${i} ${'x'.repeat(i % 37)}`);
  await write(conn, `${lines.join('\n')}\n`);
  await received.untilRecords(count);
  await ssc.runBatches(1);
  await ssc.stop();
  t.is(out[0]?.records.length, count);
  t.deepEqual(out[0]?.records, lines);
});

test('socketTextStream - reading pauses at bufferedLinesMax and resumes after a batch, losing nothing', async (t) => {
  t.timeout(60_000);
  const bufferedLinesMax = 1000;
  const { ssc, received, out, conn } = await setup('sock-pause', { bufferedLinesMax });
  // 1 MB: a paused socket reads one more chunk (64 KiB) per cut at most, and a batch has 6 cuts (5 block intervals and its own).
  const count = 20_000;
  const lines = Array.from({ length: count }, (_, i) => `${i} ${'y'.repeat(45)}`);
  const sent = write(conn, `${lines.join('\n')}\n`);
  let taken = 0;
  for (let round = 0; round < 200 && taken < count; round++) {
    // Something new must arrive: a receiver that never resumed would hang here.
    await received.untilRecords(taken + 1);
    await ssc.runBatches(1);
    taken = out.reduce((sum, b) => sum + b.records.length, 0);
  }
  await sent;
  await ssc.stop();
  t.is(taken, count);
  t.deepEqual(
    out.flatMap((b) => b.records),
    lines,
  );
  t.true(out.filter((b) => b.records.length > 0).length >= 2);
});

test('socketTextStream - a line over lineBytesMax or not UTF-8 is a dead letter, the others go on', async (t) => {
  t.timeout(20_000);
  const { ssc, received, out, conn } = await setup('sock-long', { lineBytesMax: 5 });
  const letters: { stream: string; error: string }[] = [];
  ssc.addStreamingListener({ onDeadLetter: (l) => void letters.push(l) });
  await write(conn, 'short\n0123456789abc');
  await received.untilRecords(1);
  await write(conn, Buffer.concat([Buffer.from('def\nok\nb'), Buffer.from([0xff, 0xfe]), Buffer.from('d\n\u00e9t\u00e9\n')]));
  await received.untilRecords(3);
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, ['short', 'ok', '\u00e9t\u00e9'], '5 bytes of UTF-8 are within the limit; nothing is cut or replaced');
  t.deepEqual(
    letters.map((l) => l.error.replace(/^127\.0\.0\.1:\d+: /, '')),
    ['line of 16 bytes is longer than lineBytesMax (5)', 'line is not valid UTF-8'],
  );
  t.true(
    letters.every((l) => l.stream.startsWith('socketTextStream')),
    'the letters name the stream',
  );
});

test('socketTextStream - ssc.stop() closes the connection', async (t) => {
  t.timeout(20_000);
  const { ssc, conn } = await setup('sock-stop');
  const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
  await ssc.stop();
  await closed;
  t.true(conn.destroyed);
});

test('socketTextStream - a bad host or port is refused when the stream is declared', (t) => {
  const ssc = new StreamingContext({ appName: 'sock-bad', batchDuration: 1000, clock: new ManualClock() });
  t.throws(() => ssc.socketTextStream('', 9999), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.socketTextStream('127.0.0.1', 0), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.socketTextStream('127.0.0.1', 70_000), { instanceOf: InvalidConfigError });
  t.throws(() => ssc.socketTextStream('127.0.0.1', 1.5), { instanceOf: InvalidConfigError });
});

// ---- LineSplitter: the pure splitting logic, fed one byte at a time ----------------

function splitBytewise(text: string | Buffer, lineBytesMax = 1024): { lines: string[]; rejected: string[] } {
  const splitter = new LineSplitter(lineBytesMax);
  const lines: string[] = [];
  const rejected: string[] = [];
  const take = (r: { lines: string[]; rejected: { error: string }[] }) => {
    lines.push(...r.lines);
    rejected.push(...r.rejected.map((x) => x.error));
  };
  for (const byte of typeof text === 'string' ? Buffer.from(text, 'utf8') : text) take(splitter.push(Buffer.from([byte])));
  take(splitter.end());
  return { lines, rejected };
}

test('socketTextStream - LineSplitter rebuilds lines and multi-byte characters fed byte by byte', (t) => {
  t.deepEqual(splitBytewise('h\u00e9\u20ac\u{1F600}\nsecond\r\n\nlast').lines, ['h\u00e9\u20ac\u{1F600}', 'second', '', 'last']);
});

test('socketTextStream - LineSplitter end() drops the CR of a last line ended by a bare CR', (t) => {
  t.deepEqual(splitBytewise('a\r\nb\r').lines, ['a', 'b']);
});

test('socketTextStream - LineSplitter end() gives nothing when the text ended with a newline', (t) => {
  t.deepEqual(splitBytewise('a\nb\n').lines, ['a', 'b']);
  t.deepEqual(splitBytewise('').lines, []);
});

test('socketTextStream - LineSplitter rejects a line over lineBytesMax whole, also the last one, and counts its bytes', (t) => {
  const r = splitBytewise('abcdefgh\nxy\r\nabcd\r\nabcdefgh', 4);
  t.deepEqual(r.lines, ['xy', 'abcd'], 'a CRLF does not count against the limit');
  t.deepEqual(r.rejected, ['line of 8 bytes is longer than lineBytesMax (4)', 'line of 8 bytes is longer than lineBytesMax (4)']);
});

test('socketTextStream - LineSplitter sets aside a line that is not UTF-8 instead of replacing bytes', (t) => {
  // A lone continuation byte, an overlong encoding, a truncated 3-byte character: each line alone is bad.
  const bad = [Buffer.from([0x80]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xe2, 0x82])];
  const text = Buffer.concat([Buffer.from('good\n'), ...bad.flatMap((b) => [b, Buffer.from('\n')]), Buffer.from('\u20ac\n')]);
  for (const lines of [splitBytewise(text), ((s) => ({ ...s.push(text), end: s.end() }))(new LineSplitter(1024))]) {
    t.deepEqual(lines.lines, ['good', '\u20ac']);
    t.is((lines.rejected as unknown[]).length, 3);
  }
});
