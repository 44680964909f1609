/**
 * The reference docs: `npm run docs` generates HTML pages from the doc comments of
 * the two entry points with TypeDoc (installed under tools/docs on first use, from
 * the npm registry), fails on any warning, an undocumented export included, and
 * leaves the engine's internals out.
 *
 * The TypeDoc run takes 20-40 s on 2 cores (plus about 6 s to install TypeDoc the
 * first time).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import anyTest, { type TestFn } from 'ava';
import * as api from '../../runtime/api/index.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Ctx {
  readonly out: string;
  /** What `npm run docs` printed, colours removed. */
  readonly log: string;
  readonly code: number;
}

const test = anyTest as TestFn<Ctx>;

/** The error classes the public entry exports, the base class included. */
function errorClassNames(): string[] {
  return Object.entries(api)
    .filter(([, value]) => typeof value === 'function' && (value === api.TributaryError || value.prototype instanceof api.TributaryError))
    .map(([name]) => name);
}

test.before(async (t) => {
  // Installing TypeDoc on a fresh clone, then a TypeDoc run on a busy CI machine.
  t.timeout(300_000);
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-docs-'));
  let code = 0;
  let text: string;
  try {
    const { stdout, stderr } = await run('npm', ['run', 'docs', '--', '--out', out], {
      cwd: ROOT,
      timeout: 280_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    text = stdout + stderr;
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    code = typeof e.code === 'number' ? e.code : 1;
    text = (e.stdout ?? '') + (e.stderr ?? String(error));
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removes the ANSI colour codes TypeDoc prints
  t.context = { out, log: text.replace(/\u001b\[[0-9;]*m/g, ''), code };
});

test.after.always(async (t) => {
  await fs.rm(t.context.out, { recursive: true, force: true });
});

test('docs - npm run docs generates the reference with no warning', (t) => {
  t.is(t.context.code, 0, t.context.log);
  t.regex(t.context.log, /html generated at/);
  t.notRegex(t.context.log, /\[(warning|error)\]/, t.context.log);
});

test('docs - key symbols of both entry points have their page', async (t) => {
  const pages = [
    'index.html',
    'modules/tributary-streams.html',
    'modules/tributary-streams_testing.html',
    'classes/tributary-streams.StreamingContext.html',
    'classes/tributary-streams.DStream.html',
    'classes/tributary-streams.Receiver.html',
    'interfaces/tributary-streams.StreamingContextConfig.html',
    'interfaces/tributary-streams.StreamingListener.html',
    'interfaces/tributary-streams.JetStreamStreamOptions.html',
    'interfaces/tributary-streams.NatsStreamOptions.html',
    'interfaces/tributary-streams.ToJetStreamOptions.html',
    'functions/tributary-streams.defineApp.html',
    'classes/tributary-streams_testing.ManualClock.html',
    'functions/tributary-streams_testing.collectBatches.html',
    'classes/tributary-streams.TributaryError.html',
    ...errorClassNames().map((name) => `classes/tributary-streams.${name}.html`),
  ];
  for (const page of pages) {
    const html = await fs.readFile(path.join(t.context.out, page), 'utf8').catch(() => '');
    t.true(html.length > 0, `${page} is missing`);
  }
});

test('docs - the pages document the sources, sinks and settings, and leave internals out', async (t) => {
  const page = (p: string) => fs.readFile(path.join(t.context.out, p), 'utf8');
  const context = await page('classes/tributary-streams.StreamingContext.html');
  for (const method of ['natsstream', 'jetstreamstream', 'sockettextstream', 'textfilestream', 'receiverstream', 'getorcreate']) {
    t.true(context.includes(`id="${method}"`), `StreamingContext.${method}`);
  }
  // `graph` is @internal: the engine's graph builder is no part of the API.
  t.false(context.includes('id="graph"'));
  const dstream = await page('classes/tributary-streams.DStream.html');
  for (const method of ['tojetstream', 'onrecorderror', 'saveastextfiles', 'foreachbatch'])
    t.true(dstream.includes(`id="${method}"`), method);
  const config = await page('interfaces/tributary-streams.StreamingContextConfig.html');
  for (const field of ['nats', 'blockintervalms', 'backpressure', 'maxrateperpartition', 'ui', 'onrecorderror']) {
    t.true(config.includes(`id="${field}"`), `StreamingContextConfig.${field}`);
  }
  const receiver = await page('classes/tributary-streams.Receiver.html');
  t.true(receiver.includes('id="store"'));
  for (const internal of ['env', 'attach', 'detach', 'durableupto']) t.false(receiver.includes(`id="${internal}"`), internal);
});
