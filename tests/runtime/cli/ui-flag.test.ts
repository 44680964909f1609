/**
 * `tributary run <app> --ui host:port` as a user runs it: the command prints where
 * the UI listens, the page and `/metrics` answer while the app runs (with the
 * app's own figures), and a SIGTERM stops the server with the app. A bad address
 * exits 1 with INVALID_CONFIG before the app starts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { TempDirs } from '../../helpers/checkpoint-kit.ts';
import { parsePrometheusText, sampleValue } from '../../helpers/prometheus-text.ts';

interface Ctx {
  dirs: TempDirs;
  children: ChildProcess[];
}

const test = anyTest as TestFn<Ctx>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** Hard limit on one CLI process. */
const CHILD_TIMEOUT_MS = 30_000;

test.before((t) => {
  t.context = { dirs: new TempDirs(), children: [] };
});

test.after.always(async (t) => {
  for (const child of t.context.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await t.context.dirs.removeAll();
});

interface Run {
  readonly child: ChildProcess;
  stderr(): string;
  /** The first stdout or stderr line matching `re` (seen or to come); rejects if the process ends first. */
  waitFor(re: RegExp): Promise<RegExpExecArray>;
  readonly closed: Promise<number | null>;
}

function cli(t: ExecutionContext<Ctx>, args: string[]): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.context.children.push(child);
  const seen: string[] = [];
  let stderr = '';
  const waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void }[] = [];
  const onLine = (line: string) => {
    seen.push(line);
    for (const w of [...waiters]) {
      const m = w.re.exec(line);
      if (m === null) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(m);
    }
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    stderr += `${line}\n`;
    onLine(line);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  const closed = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      for (const w of waiters.splice(0)) w.reject(new Error(`exited (${code}) before a line matched ${w.re}:\n${stderr}`));
      resolve(code);
    });
  });
  return {
    child,
    stderr: () => stderr,
    closed,
    waitFor: (re) => {
      for (const line of seen) {
        const m = re.exec(line);
        if (m !== null) return Promise.resolve(m);
      }
      if (child.exitCode !== null) return Promise.reject(new Error(`exited before a line matched ${re}`));
      return new Promise((resolve, reject) => waiters.push({ re, resolve, reject }));
    },
  };
}

test('cli ui - run --ui serves the page and /metrics while the app runs, and stops them with it', async (t) => {
  const dir = await t.context.dirs.make('cli-ui');
  const run = cli(t, ['run', 'tests/helpers/cli-app.ts', dir, '--ui', '127.0.0.1:0', '--duration', '25', '--no-status']);
  const [, url] = (await run.waitFor(
    /^web UI: (http:\/\/127\.0\.0\.1:\d+\/) \(Prometheus: http:\/\/127\.0\.0\.1:\d+\/metrics\)$/,
  )) as unknown as [string, string];
  // The app prints `checkpoint <time>` after its first checkpoint: batches and a checkpoint are done.
  await run.waitFor(/^checkpoint \d+$/);
  const page = await fetch(url);
  t.is(page.status, 200);
  t.regex(await page.text(), /<script src="\/vendor\/uPlot\.iife\.min\.js"><\/script>/);
  t.is((await fetch(`${url}vendor/uPlot.iife.min.js`)).status, 200);
  const families = parsePrometheusText(await (await fetch(`${url}metrics`)).text());
  t.true(sampleValue(families, 'tributary_batches_completed_total', { app: 'cli-app' }) >= 3);
  t.true(sampleValue(families, 'tributary_records_received_total', { app: 'cli-app', stream: 'generatorStream#1' }) > 0);
  t.true(sampleValue(families, 'tributary_state_keys', { app: 'cli-app', operator: 'totals' }) > 0);
  t.true(sampleValue(families, 'tributary_checkpoint_duration_seconds_count', { app: 'cli-app' }) >= 1);
  run.child.kill('SIGTERM');
  t.is(await run.closed, 0, run.stderr());
  await t.throwsAsync(fetch(`${url}metrics`), undefined, 'the server is gone with the app');
});

test('cli ui - a bad --ui address exits 1 with INVALID_CONFIG', async (t) => {
  const dir = await t.context.dirs.make('cli-ui-bad');
  const run = cli(t, ['run', 'tests/helpers/cli-app.ts', dir, '--ui', '127.0.0.1:http', '--no-status']);
  t.is(await run.closed, 1);
  t.regex(
    run.stderr(),
    /tributary: ui: "127\.0\.0\.1:http" is not a valid address; expected a port from 0 to 65535 after the colon \[INVALID_CONFIG\]/,
  );
});
