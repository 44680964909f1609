/**
 * `supervise()`: restarts a crashing child with backoff, gives up after too many
 * crashes within the window, ends with 0 when the child does, and forwards SIGTERM.
 * The child is a small node script that reports over a Unix socket (the supervisor
 * gives it the supervisor's own stdio), so the tests wait on messages, not on time.
 * Serial: supervise() handles SIGTERM for the whole process while it runs.
 */
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { supervise } from '../../../runtime/cli/supervisor.ts';
import { TempDirs } from '../../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
  servers: net.Server[];
}

const test = anyTest as TestFn<Ctx>;

/**
 * The child: connects to the test's socket, says `start <pid>`, then by mode exits 1
 * (`crash`), exits 2 until it ran `n` times then 0 (`crash-until:<n>`), or waits and
 * reports a SIGTERM before exiting 0 (`wait`).
 */
const CHILD = `
import * as net from 'node:net';
import { appendFileSync, readFileSync } from 'node:fs';
const [socketPath, mode, runsFile] = process.argv.slice(2);
appendFileSync(runsFile, 'x');
const runs = readFileSync(runsFile, 'utf8').length;
// The handler is in place before the test can see 'start' and send the signal.
if (mode === 'wait') process.once('SIGTERM', () => sock.end('sigterm\\n', () => process.exit(0)));
const sock = net.connect(socketPath, () => {
  sock.write('start ' + process.pid + '\\n');
  if (mode === 'crash') sock.end(() => process.exit(1));
  else if (mode.startsWith('crash-until:')) sock.end(() => process.exit(runs < Number(mode.slice(12)) ? 2 : 0));
});
`;

test.before(async (t) => {
  t.context = { dirs: new TempDirs(), servers: [] };
});

test.after.always(async (t) => {
  for (const s of t.context.servers) s.close();
  await t.context.dirs.removeAll();
});

/** A socket the children report to; `lines` collects what they said, `onLine` sees each line. */
async function listen(
  t: { context: Ctx },
  dir: string,
): Promise<{ socketPath: string; lines: string[]; onLine: (f: (line: string) => void) => void }> {
  const socketPath = path.join(dir, 'child.sock');
  const lines: string[] = [];
  const watchers: ((line: string) => void)[] = [];
  const server = net.createServer((sock) => {
    let buffered = '';
    sock.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        for (const w of watchers) w(line);
      }
    });
  });
  t.context.servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { socketPath, lines, onLine: (f) => watchers.push(f) };
}

async function childArgs(t: { context: Ctx }, mode: string) {
  const dir = await t.context.dirs.make('supervisor');
  const script = path.join(dir, 'child.mjs');
  await fs.writeFile(script, CHILD);
  const link = await listen(t, dir);
  const runsFile = path.join(dir, 'runs');
  // Each run appends a byte before it exits: read after supervise() returned, it counts every run.
  const runs = async () => (await fs.readFile(runsFile, 'utf8')).length;
  return { ...link, runs, args: [script, link.socketPath, mode, runsFile] };
}

test.serial('supervisor - restarts a crashing child with growing backoff and gives up after max restarts in the window', async (t) => {
  const { args, runs } = await childArgs(t, 'crash');
  const log: string[] = [];
  const code = await supervise(process.execPath, args, {
    maxRestarts: 3,
    windowMs: 60_000,
    backoffMs: 10,
    backoffMsMax: 25,
    log: (line) => log.push(line),
  });
  t.is(code, 1);
  // 1 run + 3 restarts; the 4th crash is one too many.
  t.is(await runs(), 4);
  t.is(log.length, 4, log.join('\n'));
  const waits = log.slice(0, 3).map((l) => Number(/restarting in (\d+) ms/.exec(l)?.[1]));
  t.deepEqual(waits, [10, 20, 25]);
  t.regex(log[0] as string, /^supervisor: driver exited with code 1 \(run 1\); restarting in 10 ms \(1\/3 crashes in the window\)$/);
  t.regex(log[3] as string, /4 crashes within 60 s: giving up$/);
});

test.serial('supervisor - crashes older than the window do not count', async (t) => {
  const { args, runs } = await childArgs(t, 'crash-until:4');
  const log: string[] = [];
  // A 1 ms window forgets each crash before the next one: 3 crashes never make 2 in the window.
  const code = await supervise(process.execPath, args, { maxRestarts: 1, windowMs: 1, backoffMs: 5, log: (line) => log.push(line) });
  t.is(code, 0);
  t.is(await runs(), 4);
  t.is(log.length, 3);
});

test.serial('supervisor - returns 0 once the child exits 0, after restarting it', async (t) => {
  const { args, runs } = await childArgs(t, 'crash-until:3');
  const log: string[] = [];
  const code = await supervise(process.execPath, args, { maxRestarts: 5, windowMs: 60_000, backoffMs: 5, log: (line) => log.push(line) });
  t.is(code, 0);
  t.is(await runs(), 3);
  t.is(log.length, 2);
  t.true(log.every((l) => l.includes('exited with code 2')));
});

test.serial('supervisor - a child exiting 0 at once is not restarted', async (t) => {
  const { args, runs } = await childArgs(t, 'crash-until:1');
  const log: string[] = [];
  t.is(await supervise(process.execPath, args, { maxRestarts: 5, windowMs: 60_000, log: (line) => log.push(line) }), 0);
  t.is(await runs(), 1);
  t.deepEqual(log, []);
});

test.serial('supervisor - forwards SIGTERM to the child and ends with its exit code', async (t) => {
  const { args, runs, onLine } = await childArgs(t, 'wait');
  const log: string[] = [];
  const started = new Promise<void>((resolve) => onLine((line) => line.startsWith('start ') && resolve()));
  const sigterm = new Promise<void>((resolve) => onLine((line) => line === 'sigterm' && resolve()));
  const running = supervise(process.execPath, args, { maxRestarts: 5, windowMs: 60_000, log: (line) => log.push(line) });
  await started;
  // supervise() listens for SIGTERM while it runs, so this signal goes to its handler.
  process.kill(process.pid, 'SIGTERM');
  await sigterm;
  t.is(await running, 0);
  t.is(await runs(), 1, 'a stopped child is not restarted');
  t.deepEqual(log, []);
  t.is(process.listenerCount('SIGTERM'), 0, 'the handler is removed when supervise() returns');
});
