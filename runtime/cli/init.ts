/**
 * `tributary init <dir>`: a minimal project that installs and passes its test as
 * written: package.json (`"type": "module"`, the dependency), tsconfig, an app
 * that resumes from its checkpoint with `getOrCreate`, a test of its logic on the
 * ManualClock, and a README with the two commands.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidConfigError } from '../base/errors.ts';

interface OwnPackage {
  readonly version: string;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly devDependencies: Readonly<Record<string, string>>;
}

/** Tributary's own package.json (from the sources or from dist/, whichever runs). */
export function ownPackage(): OwnPackage {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as OwnPackage & { name?: string };
      if (pkg.name === 'tributary-streams') return pkg;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('the package.json of tributary-streams was not found');
    dir = up;
  }
}

/** How the scaffold's test imports the app (kept out of this file's own import lines). */
const APP_FROM_TEST = '../app.ts';

/** What `init` writes, by path inside the project. */
export function scaffoldFiles(name: string, dependency: string): Record<string, string> {
  // The tools the project needs, in the versions Tributary itself is built and tested with.
  const own = ownPackage();
  const pkg = {
    name,
    private: true,
    type: 'module',
    scripts: {
      start: 'tributary run app.ts --forever',
      test: 'tsc -p . && node --import tsx --test test/app.test.ts',
    },
    dependencies: { 'tributary-streams': dependency },
    devDependencies: {
      '@types/node': own.devDependencies['@types/node'],
      tsx: own.dependencies.tsx,
      typescript: own.devDependencies.typescript,
    },
  };
  const tsconfig = {
    compilerOptions: {
      target: 'es2022',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      strict: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      types: ['node'],
    },
    include: ['app.ts', 'test'],
  };
  return {
    'package.json': `${JSON.stringify(pkg, null, 2)}\n`,
    'tsconfig.json': `${JSON.stringify(tsconfig, null, 2)}\n`,
    '.gitignore': 'node_modules/\ncheckpoint/\n',
    'app.ts': `import { type DStream, defineApp, StreamingContext, seconds } from 'tributary-streams';

/** Running totals of the words of \`lines\` (the app's logic, tested in test/app.test.ts). */
export function wordTotals(lines: DStream<string>): DStream<[string, number]> {
  return lines
    .flatMap((line) => line.split(' ').filter((w) => w.length > 0))
    .map((word): [string, number] => [word, 1])
    .updateStateByKey<string, number, number>((counts, total) => (total ?? 0) + counts.length)
    .uid('totals');
}

/**
 * \`npm start\` runs this with \`tributary run\`: it resumes from ./checkpoint (or the
 * directory given after \`--\`), so a restart goes on from where the last run stopped.
 */
export default defineApp(({ args }) =>
  StreamingContext.getOrCreate(args[0] ?? './checkpoint', () => {
    const ssc = new StreamingContext({ appName: '${name}', batchDuration: seconds(1) });
    wordTotals(ssc.generatorStream({ ratePerSecond: 5, seed: 1 })).print(5);
    return ssc;
  }),
);
`,
    'test/app.test.ts': `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamingContext } from 'tributary-streams';
import { collectBatches, ManualClock } from 'tributary-streams/testing';
import { wordTotals } from '${APP_FROM_TEST}';

test('word totals add up across batches', async () => {
  const ssc = new StreamingContext({ appName: 'test', batchDuration: 1000, clock: new ManualClock() });
  const batches = collectBatches(wordTotals(ssc.queueStream<string>([['a b', 'a'], ['b c']])));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  const totals = batches.map((b) => Object.fromEntries(b.records));
  assert.deepEqual(totals, [
    { a: 2, b: 1 },
    { a: 2, b: 2, c: 1 },
  ]);
});
`,
    'README.md': `# ${name}

A [Tributary](https://www.npmjs.com/package/tributary-streams) streaming app: running
word totals, checkpointed in \`./checkpoint\` so a restart resumes where it stopped.

\`\`\`sh
npm install && npm start   # runs app.ts until Ctrl-C (stops with a final checkpoint)
npm test                   # type-checks, then tests the app's logic on a manual clock
\`\`\`
`,
  };
}

/**
 * Writes the scaffold into `dir` (created; refused if it holds anything).
 *
 * @example
 * await initProject('my-app', '^0.1.0');
 */
export async function initProject(dir: string, dependency: string): Promise<string[]> {
  const name = path
    .basename(path.resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9-_]/g, '-');
  if (name.length === 0) throw new InvalidConfigError(`cannot name a project after ${dir}`);
  const existing = await fs.readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  if (existing.length > 0) throw new InvalidConfigError(`${dir} is not empty: tributary init writes a new project`);
  const files = scaffoldFiles(name, dependency);
  for (const [file, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await fs.writeFile(path.join(dir, file), text);
  }
  return Object.keys(files);
}
