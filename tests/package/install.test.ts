/**
 * Tributary as a user gets it: `npm pack` makes a tarball of `dist/` (with
 * declarations), README, LICENSE and package.json only; a fresh project outside
 * this repository installs it by name (`tributary-streams`), type-checks an app
 * against the shipped declarations (a type error is caught) and runs it with
 * `npx tributary run app.ts` to completion; the installed package serves its web UI
 * (page, uPlot from its dependency, /metrics) with nothing else to fetch;
 * `npx tributary init` writes a project that installs and passes its own test as written.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function sh(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Ran> {
  try {
    const { stdout, stderr } = await run(cmd, args, {
      cwd,
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, CI: 'true' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
  }
}

const APP = `import { defineApp, StreamingContext, type DStream } from 'tributary-streams';

export default defineApp(() => {
  const ssc = new StreamingContext({ appName: 'packaged', batchDuration: 100 });
  const lines: DStream<string> = ssc.queueStream<string>([['a b', 'a'], ['b c']]);
  lines
    .flatMap((l) => l.split(' '))
    .map((w): [string, number] => [w, 1])
    .reduceByKey((x, y) => x + y)
    .foreachBatch((records, time) => {
      const words: number = records.reduce((n, [, c]) => n + c, 0);
      if (words > 0) console.log(\`words \${time - ssc.zeroTime} \${words}\`);
    });
  return ssc;
});
`;

/** Starts an app with the web UI from the installed package and prints the status of each asset the page loads. */
const UI_CHECK = `import { StreamingContext } from 'tributary-streams';
import { ManualClock } from 'tributary-streams/testing';

const ssc = new StreamingContext({ appName: 'packaged-ui', batchDuration: 100, clock: new ManualClock(), ui: '127.0.0.1:0' });
ssc.queueStream([['a']]).foreachBatch(() => {});
await ssc.start();
await ssc.runBatches(1);
for (const p of ['', 'app.js', 'app.css', 'vendor/uPlot.iife.min.js', 'vendor/uPlot.min.css', 'metrics']) {
  const res = await fetch(ssc.uiAddress.url + p);
  console.log(\`/\${p} \${res.status} \${(await res.text()).length > 0}\`);
}
await ssc.stop();
`;

const BAD = `import { StreamingContext } from 'tributary-streams';
const ssc = new StreamingContext({ appName: 'bad', batchDuration: 100 });
ssc.queueStream<string>([['a']]).map((s) => s.length).reduceByKey((a, b) => a + b);
`;

test('package - the packed tarball installs in a fresh project, type-checks and runs an app, and init scaffolds a passing project', async (t) => {
  t.timeout(600_000);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'trib-package-'));
  t.teardown(() => fs.rm(work, { recursive: true, force: true }));

  // Built from the sources into a staging copy (the repository's own dist/ is left alone: other
  // tests run it), then packed as npm publishes it.
  const stage = path.join(work, 'stage');
  await fs.mkdir(stage);
  for (const f of ['package.json', 'README.md', 'LICENSE']) await fs.copyFile(path.join(ROOT, f), path.join(stage, f));
  const built = await sh('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', path.join(stage, 'dist')], ROOT, 300_000);
  t.is(built.code, 0, `${built.stdout}\n${built.stderr}`);
  const packed = await sh('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], stage, 300_000);
  t.is(packed.code, 0, packed.stderr);
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  if (info === undefined) throw new Error('npm pack printed no tarball');
  const files = info.files.map((f) => f.path);
  t.deepEqual(
    files.filter((f) => !f.startsWith('dist/') && !['README.md', 'LICENSE', 'package.json'].includes(f)),
    [],
    'nothing but dist/, README, LICENSE and package.json',
  );
  for (const f of [
    'dist/runtime/api/index.d.ts',
    'dist/runtime/api/testing.d.ts',
    'dist/runtime/cli/cli.js',
    'dist/runtime/ui/page.js',
    'dist/runtime/ui/ui-server.js',
    'LICENSE',
    'README.md',
  ])
    t.true(files.includes(f), f);
  t.false(
    files.some((f) => f.includes('/tests/') || (f.endsWith('.ts') === true && !f.endsWith('.d.ts'))),
    'no sources or tests',
  );

  const project = path.join(work, 'my-app');
  await fs.mkdir(project);
  const typescript = (JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> })
    .devDependencies.typescript as string;
  await fs.writeFile(
    path.join(project, 'package.json'),
    JSON.stringify({
      name: 'my-app',
      private: true,
      type: 'module',
      dependencies: { 'tributary-streams': `file:${path.join(work, info.filename)}` },
      devDependencies: { typescript, '@types/node': '^20' },
    }),
  );
  await fs.writeFile(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
      },
      include: ['app.ts'],
    }),
  );
  await fs.writeFile(path.join(project, 'app.ts'), APP);
  const installed = await sh('npm', ['install', '--no-audit', '--no-fund'], project, 400_000);
  t.is(installed.code, 0, installed.stderr);

  const checked = await sh('npx', ['tsc', '-p', '.'], project, 120_000);
  t.is(checked.code, 0, `${checked.stdout}\n${checked.stderr}`);
  // The declarations are really used: a stream of numbers has no reduceByKey.
  await fs.writeFile(path.join(project, 'bad.ts'), BAD);
  await fs.writeFile(path.join(project, 'tsconfig.bad.json'), JSON.stringify({ extends: './tsconfig.json', include: ['bad.ts'] }));
  const refused = await sh('npx', ['tsc', '-p', 'tsconfig.bad.json'], project, 120_000);
  t.not(refused.code, 0);
  t.regex(refused.stdout, /bad\.ts\(3,1\): error TS2684: .*DStream<number>.* not assignable to .*DStream<\[unknown, unknown\]>/);

  const ran = await sh('npx', ['tributary', 'run', 'app.ts', '--duration', '1', '--no-status'], project, 120_000);
  t.is(ran.code, 0, ran.stderr);
  t.deepEqual(ran.stdout.trim().split('\n'), ['words 100 3', 'words 200 2']);

  await fs.writeFile(path.join(project, 'ui-check.mjs'), UI_CHECK);
  const ui = await sh(process.execPath, ['ui-check.mjs'], project, 60_000);
  t.is(ui.code, 0, ui.stderr);
  t.deepEqual(ui.stdout.trim().split('\n'), [
    '/ 200 true',
    '/app.js 200 true',
    '/app.css 200 true',
    '/vendor/uPlot.iife.min.js 200 true',
    '/vendor/uPlot.min.css 200 true',
    '/metrics 200 true',
  ]);

  // The scaffold installs and passes its own test as written (on this tarball, not yet on the registry).
  const scaffold = path.join(work, 'scaffold');
  const tarball = `file:${path.join(work, info.filename)}`;
  const init = await sh('npx', ['tributary', 'init', scaffold, '--dependency', tarball], project, 120_000);
  t.is(init.code, 0, init.stderr);
  t.regex(init.stdout, /created .*scaffold: package\.json, tsconfig\.json, \.gitignore, app\.ts, test\/app\.test\.ts, README\.md/);
  const again = await sh('npx', ['tributary', 'init', scaffold], project, 120_000);
  t.not(again.code, 0);
  t.regex(again.stderr, /is not empty/);
  const scaffoldInstalled = await sh('npm', ['install', '--no-audit', '--no-fund'], scaffold, 400_000);
  t.is(scaffoldInstalled.code, 0, scaffoldInstalled.stderr);
  const tested = await sh('npm', ['test'], scaffold, 300_000);
  t.is(tested.code, 0, `${tested.stdout}\n${tested.stderr}`);
  t.regex(tested.stdout, /# pass 1/);
  t.regex(tested.stdout, /# fail 0/);
  const started = await sh('npx', ['tributary', 'run', 'app.ts', '--duration', '2', '--no-status'], scaffold, 120_000);
  t.is(started.code, 0, started.stderr);
  t.true((await fs.readdir(path.join(scaffold, 'checkpoint', 'journal'))).length > 0, 'the app checkpoints in ./checkpoint');
});
