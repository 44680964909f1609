/**
 * `tributary chaos <app>` on app modules written to a temp directory (importing the
 * repo's runtime/api/index.ts, as an app imports tributary-streams): a word count
 * passes with driver kills on the file journal; Math.random() in a map, an output
 * that appends to a file, and the test-only engine fault that drops a replayed
 * batch each fail with exit code 2 and the right diagnosis; an app on a socket is
 * refused with the reason. Each CLI process has a hard time limit and is killed in
 * teardown if it is still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import { TempDirs } from '../../../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
  children: ChildProcess[];
}

const test = anyTest as TestFn<Ctx>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const API = pathToFileURL(path.join(ROOT, 'runtime/api/index.ts')).href;
/** Hard limit on one chaos command. */
const CHILD_TIMEOUT_MS = 120_000;

test.before((t) => {
  t.context = { dirs: new TempDirs(), children: [] };
});

test.after.always(async (t) => {
  for (const child of t.context.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await t.context.dirs.removeAll();
});

interface AppSpec {
  /** Source of a count per word (`1`, or a non-deterministic one). */
  readonly count?: string;
  /** The totals output appends to ./totals.log instead of doing nothing. */
  readonly append?: boolean;
  /** Read a socket instead of the generator. */
  readonly socket?: boolean;
}

/** Writes an app module: a word count with running totals (checkpointed every 3 batches) and per-batch files. */
async function writeApp(t: { context: Ctx }, spec: AppSpec): Promise<string> {
  const dir = await t.context.dirs.make('chaos-app-');
  const file = path.join(dir, 'app.ts');
  const lines = spec.socket ? `ssc.socketTextStream('127.0.0.1', 9)` : 'ssc.generatorStream({ ratePerSecond: 40, seed: 5 })';
  const output = spec.append
    ? `(records, time) => fs.appendFile('totals.log', \`\${time} \${records.reduce((n, [, c]) => n + c, 0)}\\n\`)`
    : '() => {}';
  await fs.writeFile(
    file,
    `import { promises as fs } from 'node:fs';
import { defineApp, seconds, StreamingContext } from '${API}';

export default defineApp(() =>
  StreamingContext.getOrCreate('./checkpoint', () => {
    const ssc = new StreamingContext({ appName: 'chaos-app', batchDuration: seconds(1) });
    const words = ${lines}
      .flatMap((line) => line.split(' '))
      .map((w) => [w, ${spec.count ?? '1'}] as [string, number]);
    words
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((a, b) => a + b, 0))
      .uid('totals')
      .checkpoint(seconds(3))
      .foreachBatch(${output});
    words.reduceByKey((a, b) => a + b).saveAsTextFiles('out/counts');
    return ssc;
  }),
);
`,
  );
  return file;
}

/** Runs `tributary chaos <args>` from the sources and resolves with its exit code and output. */
function chaos(
  t: { context: Ctx },
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', 'chaos', ...args, '--no-progress'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  t.context.children.push(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test('chaos app - a word count passes 4 driver kills on the file journal', async (t) => {
  const app = await writeApp(t, {});
  const r = await chaos(t, [app, '--kills', '4', '--seed', '5', '--batches', '24']);
  t.log(r.out);
  t.is(r.code, 0, r.out + r.err);
  t.regex(r.out, /^kills: +4 of 4 \(after-output 2, timed 2\)$/m);
  t.regex(r.out, /^stream time: +24 batches on the chaos clock/m);
  // Both outputs of every batch were compared, and the state of the running totals.
  t.regex(r.out, /^outputs compared: +48 batch digests; [1-9]\d* batches ran their outputs twice/m);
  t.regex(r.out, /^final states compared: +totals$/m);
  t.regex(r.out, /^files compared: +\d+$/m);
  t.regex(r.out, /^first difference: +none$/m);
  t.regex(r.out, /^diagnosis: +pass$/m);
  t.regex(r.out, /^result: +PASS$/m);
});

test('chaos app - Math.random() in a map is diagnosed non-deterministic at its first batch', async (t) => {
  const app = await writeApp(t, { count: '1 + Math.floor(Math.random() * 2)' });
  const r = await chaos(t, [app, '--kills', '2', '--seed', '5', '--batches', '10']);
  t.log(r.out);
  t.is(r.code, 2, r.out + r.err);
  t.regex(r.out, /^first difference: +batch 1000, (foreachBatch|saveAsTextFiles)#\d+: received .* \(before any kill\)/m);
  t.regex(r.out, /^diagnosis: +non-deterministic$/m);
  t.regex(r.out, /Math\.random/);
  t.regex(r.out, /^result: +FAIL/m);
});

test('chaos app - an output appending to a file is diagnosed not idempotent', async (t) => {
  const app = await writeApp(t, { append: true });
  const r = await chaos(t, [app, '--kills', '2', '--seed', '5', '--batches', '10']);
  t.log(r.out);
  t.is(r.code, 2, r.out + r.err);
  t.regex(r.out, /^diagnosis: +not-idempotent$/m);
  t.regex(r.out, /totals\.log holds [1-9]\d* lines more than the reference, each a repeat of one it has/);
  // The first kill is held after an output ran: that batch ran its outputs twice, and is named.
  const batch = /^first difference: +batch (\d+), (\S+)/m.exec(r.out);
  t.truthy(batch, r.out);
  t.regex(r.out, new RegExp(`^kill moments \\(batch\\): +${batch?.[1]}:after-output`, 'm'));
  t.regex(batch?.[2] ?? '', /^foreachBatch#\d+/);
});

test('chaos app - an engine fault that drops a replayed batch is diagnosed as recovery diverging', async (t) => {
  const app = await writeApp(t, {});
  const r = await chaos(t, [app, '--kills', '4', '--seed', '5', '--batches', '24'], { TRIBUTARY_FAULT: 'drop-replayed-batch' });
  t.log(r.out);
  t.is(r.code, 2, r.out + r.err);
  t.regex(r.out, /^diagnosis: +recovery-diverged$/m);
  t.regex(r.out, /^first difference: +batch \d+, (foreachBatch|saveAsTextFiles)#\d+: .*after restart \d/m);
  t.regex(r.out, /final state of totals: /);
});

test('chaos app - an app on a socket is refused with the reason', async (t) => {
  const app = await writeApp(t, { socket: true });
  const r = await chaos(t, [app, '--kills', '2', '--seed', '5']);
  t.is(r.code, 1, r.out + r.err);
  t.regex(r.err, /socketTextStream#1 \(socketTextStream\) cannot be replayed from its source/);
  t.regex(r.err, /reference run without kills would receive other records/);
  t.is(r.out, '');
});
