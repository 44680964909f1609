/**
 * The `tributary run` command as a user runs it: `node --import tsx runtime/cli/cli.ts
 * run tests/helpers/cli-app.ts <dir>`, with --duration, SIGTERM and --supervise.
 * The tests wait on the app's stdout lines and on exit events; every child has a
 * hard time limit and is killed in teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import type { JournalEvent } from '../../../journal/events.ts';
import { framesOf, segmentFiles, TempDirs } from '../../helpers/checkpoint-kit.ts';
import { RATE, WORDS_PER_LINE } from '../../helpers/cli-app.ts';

interface Ctx {
  dirs: TempDirs;
  children: ChildProcess[];
  /** Process groups led by a child (their members are ended with it). */
  groups: number[];
}

const test = anyTest as TestFn<Ctx>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const APP = 'tests/helpers/cli-app.ts';
/** Hard limit on one CLI process. */
const CHILD_TIMEOUT_MS = 30_000;

test.before((t) => {
  t.context = { dirs: new TempDirs(), children: [], groups: [] };
});

test.after.always(async (t) => {
  for (const child of t.context.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const group of t.context.groups) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // The group ended already.
    }
  }
  await t.context.dirs.removeAll();
});

interface CliRun {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly stderr: () => string;
  /** Resolves with the first line (seen or to come) matching; rejects if the process ends first. */
  waitFor(re: RegExp): Promise<string>;
  /** Resolves once the process exited and its stdout was read to the end. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** With `group`, the command leads a process group of its own, as a terminal's foreground job does. */
function cli(t: ExecutionContext<Ctx>, args: string[], options: { group?: boolean } = {}): CliRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.group === true,
  });
  t.context.children.push(child);
  if (options.group === true) t.context.groups.push(child.pid as number);
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.filter((w) => w.re.test(line))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  return {
    child,
    lines,
    stderr: () => stderr,
    closed,
    waitFor(re) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return Promise.race([
        new Promise<string>((resolve) => waiters.push({ re, resolve })),
        closed.then(() => {
          throw new Error(`the process ended before printing ${re}; stderr:\n${stderr}`);
        }),
      ]);
    },
  };
}

/** Every event of a checkpoint directory's journal, oldest first. */
async function journalEvents(dir: string): Promise<JournalEvent[]> {
  const events: JournalEvent[] = [];
  for (const file of await segmentFiles(dir)) for (const f of await framesOf(file)) events.push(f.event);
  return events;
}

/** Parsed `batch <time> <zero>` and `total <time> <words>` lines. */
function parse(lines: readonly string[]) {
  const batches: { time: number; zero: number }[] = [];
  const totals: { time: number; words: number }[] = [];
  for (const line of lines) {
    const [kind, a, b] = line.split(' ');
    if (kind === 'batch') batches.push({ time: Number(a), zero: Number(b) });
    if (kind === 'total') totals.push({ time: Number(a), words: Number(b) });
  }
  return { batches, totals };
}

/** The running total of words at batch `time`: the generator is a function of stream time. */
const expectedWords = (zero: number, time: number) => WORDS_PER_LINE * Math.floor(((time - zero) * RATE) / 1000);

function assertTotals(t: ExecutionContext<Ctx>, zero: number, totals: readonly { time: number; words: number }[]): void {
  t.true(totals.length > 0);
  for (const { time, words } of totals) t.is(words, expectedWords(zero, time), `running total at ${time}`);
}

test('cli - run --duration 1 runs the app, then stops it gracefully with exit code 0', async (t) => {
  const dir = path.join(await t.context.dirs.make('cli'), 'ckpt');
  const run = cli(t, ['run', APP, dir, '--duration', '1', '--no-status']);
  const { code } = await run.closed;
  t.is(code, 0, run.stderr());
  t.regex(run.stderr(), /stopping \(1 s elapsed\)/);
  const { batches, totals } = parse(run.lines);
  t.true(batches.length >= 3, `only ${batches.length} batches in 1 s`);
  assertTotals(t, (batches[0] as { zero: number }).zero, totals);
});

test('cli - SIGTERM stops a --forever app with a final checkpoint, so a restart replays nothing', async (t) => {
  const dir = path.join(await t.context.dirs.make('cli'), 'ckpt');
  const first = cli(t, ['run', APP, dir, '--forever', '--no-status']);
  await first.waitFor(/^checkpoint /);
  first.child.kill('SIGTERM');
  const { code } = await first.closed;
  t.is(code, 0, first.stderr());
  t.regex(first.stderr(), /stopping \(SIGTERM\)/);
  const before = parse(first.lines);
  const last = before.batches.at(-1)?.time as number;
  const zero = before.batches[0]?.zero as number;
  assertTotals(t, zero, before.totals);

  const events = await journalEvents(dir);
  const [penultimate, final] = events.slice(-2);
  t.is(penultimate?.type, 'checkpoint.completed');
  t.is(final?.type, 'context.stopped');
  t.is((penultimate as { time: number }).time, last, 'the final checkpoint is of the last completed batch');

  const second = cli(t, ['run', APP, dir, '--duration', '1', '--no-status']);
  t.is((await second.closed).code, 0, second.stderr());
  const after = parse(second.lines);
  t.true(after.batches.length > 0);
  t.true(
    after.batches.every((b) => b.time > last && b.zero === zero),
    'no batch at or before the final checkpoint runs again; the zero time is restored',
  );
  assertTotals(t, zero, after.totals);
});

test('cli - --supervise restarts an app that was SIGKILLed, and the restart resumes from its checkpoint', async (t) => {
  const work = await t.context.dirs.make('cli');
  const dir = path.join(work, 'ckpt');
  const marker = path.join(work, 'killed-once');
  const run = cli(t, ['run', APP, dir, marker, '--duration', '2', '--no-status', '--supervise', '--max-restarts', '2']);
  const { code } = await run.closed;
  t.is(code, 0, run.stderr());
  t.regex(run.stderr(), /supervisor: driver killed by SIGKILL \(run 1\); restarting in \d+ ms \(1\/2 crashes in the window\)/);
  const starts = run.lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('start '));
  t.is(starts.length, 2, 'one restart');
  const split = (starts[1] as readonly [string, number])[1];
  const firstRun = parse(run.lines.slice(0, split));
  const secondRun = parse(run.lines.slice(split));
  const killedAt = Number(
    run.lines
      .slice(0, split)
      .find((l) => l.startsWith('checkpoint '))
      ?.split(' ')[1],
  );
  const zero = firstRun.batches[0]?.zero as number;
  t.true(Number.isFinite(killedAt));
  t.true(secondRun.batches.length > 0);
  t.true(
    secondRun.batches.every((b) => b.zero === zero),
    'the restart keeps the zero time of the checkpoint',
  );
  t.true((secondRun.batches[0] as { time: number }).time > killedAt, 'it resumes after the checkpoint');
  // Exactly-once state across the kill: every running total equals the generator's.
  assertTotals(t, zero, firstRun.totals);
  assertTotals(t, zero, secondRun.totals);
});

test('cli - --supervise forwards SIGTERM: the app stops gracefully and the supervisor exits 0', async (t) => {
  const dir = path.join(await t.context.dirs.make('cli'), 'ckpt');
  const run = cli(t, ['run', APP, dir, '--forever', '--no-status', '--supervise']);
  await run.waitFor(/^checkpoint /);
  run.child.kill('SIGTERM');
  const { code } = await run.closed;
  t.is(code, 0, run.stderr());
  t.regex(run.stderr(), /stopping \(SIGTERM\)/);
  t.notRegex(run.stderr(), /restarting/);
  t.is((await journalEvents(dir)).at(-1)?.type, 'context.stopped');
});

test('cli - Ctrl-C under --supervise (SIGINT to the whole process group) stops once, with a final checkpoint, exit 0', async (t) => {
  const dir = path.join(await t.context.dirs.make('cli'), 'ckpt');
  const run = cli(t, ['run', APP, dir, '--forever', '--no-status', '--supervise'], { group: true });
  await run.waitFor(/^checkpoint /);
  // What a terminal does on Ctrl-C: the signal goes to every process of the foreground group.
  process.kill(-(run.child.pid as number), 'SIGINT');
  const { code } = await run.closed;
  t.is(code, 0, run.stderr());
  t.is(run.stderr().match(/stopping \(SIGINT\)/g)?.length, 1, 'the app stopped once');
  t.notRegex(run.stderr(), /restarting/);
  const events = await journalEvents(dir);
  t.is(events.at(-1)?.type, 'context.stopped');
  const stoppedAt = (events.at(-1) as { time: number }).time;
  const lastCheckpoint = events.filter((e) => e.type === 'checkpoint.completed').at(-1) as { time: number } | undefined;
  t.is(lastCheckpoint?.time, stoppedAt, 'a final checkpoint of the last batch');
});
