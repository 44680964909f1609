import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import { ManualClock } from '../../runtime/api/testing.ts';
import { SystemClock } from '../../runtime/base/clock.ts';
import { deferred, framesOf, quiet, segmentFiles, TempDirs } from '../helpers/checkpoint-kit.ts';
import { fencingApp } from '../helpers/fencing-app.ts';

interface Ctx {
  dirs: TempDirs;
  children: ChildProcess[];
}

const test = anyTest as TestFn<Ctx>;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const childScript = path.join(root, 'tests/helpers/fencing-child.ts');

interface LockFile {
  pid: number;
  epoch: number;
  released?: boolean;
}

async function readLock(dir: string): Promise<LockFile> {
  return JSON.parse(await fs.readFile(path.join(dir, 'LOCK'), 'utf8')) as LockFile;
}

/** Epochs of the `context.started` events the journal holds, oldest first. */
async function startedEpochs(dir: string): Promise<number[]> {
  const epochs: number[] = [];
  for (const file of await segmentFiles(dir)) {
    for (const { event } of await framesOf(file)) if (event.type === 'context.started') epochs.push(event.epoch);
  }
  return epochs;
}

/** Spawns the child driver on `dir`; resolves with it once it printed its first line (`started` or why not). */
async function spawnDriver(t: { context: Ctx }, dir: string): Promise<{ child: ChildProcess; first: string; exited: Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, dir], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  t.context.children.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    void exited.then(() => reject(new Error(`the child exited before printing anything: ${stderr}`)));
  });
  return { child, first, exited };
}

test.before((t) => {
  t.context = { dirs: new TempDirs(), children: [] };
});

test.after.always(async (t) => {
  for (const child of t.context.children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await t.context.dirs.removeAll();
});

test('fencing - a second driver in the same process is FENCED while the first runs', async (t) => {
  const dir = await t.context.dirs.make('fence-same');
  const clock = new ManualClock();
  const first = fencingApp(dir, clock, quiet);
  await first.start();
  const epoch = (await readLock(dir)).epoch;

  const second = fencingApp(dir, new ManualClock(), quiet);
  const error = await t.throwsAsync(second.start());
  t.is((error as { code?: string }).code, 'FENCED');
  t.true(error?.message.includes(`process ${process.pid}`), error?.message);
  t.is(second.lifecycle, 'stopped');

  // The refused driver changed nothing: the first still owns the lock and goes on.
  t.like(await readLock(dir), { pid: process.pid, epoch });
  await first.runBatches(3);
  await first.stop();
  t.like(await readLock(dir), { epoch, released: true });

  // Once the first stopped, the directory is free again and the epoch grows.
  const third = fencingApp(dir, clock, quiet);
  await third.start();
  t.is((await readLock(dir)).epoch, epoch + 1);
  await third.stop();
});

test('fencing - a driver in another process fences this one until it is killed, then this one takes over', async (t) => {
  const dir = await t.context.dirs.make('fence-process');
  const { child, first, exited } = await spawnDriver(t, dir);
  t.is(first, 'started');
  const childPid = child.pid as number;
  const held = await readLock(dir);
  t.is(held.pid, childPid);

  const refused = fencingApp(dir, new SystemClock(), quiet);
  const error = await t.throwsAsync(refused.start());
  t.is((error as { code?: string }).code, 'FENCED');
  t.true(error?.message.includes(`process ${childPid}`), error?.message);

  child.kill('SIGKILL');
  await exited;
  t.is(child.signalCode, 'SIGKILL');
  // The lock file still names the dead child: it never released it.
  t.like(await readLock(dir), { pid: childPid, epoch: held.epoch });
  t.falsy((await readLock(dir)).released);

  const taker = fencingApp(dir, new SystemClock(), quiet);
  const ran = deferred();
  taker.addStreamingListener({ onBatchCompleted: () => ran.resolve() });
  await taker.start();
  const now = await readLock(dir);
  t.is(now.pid, process.pid);
  t.true(now.epoch > held.epoch, `epoch ${now.epoch} after ${held.epoch}`);
  await ran.promise;
  await taker.stop();
  const epochs = await startedEpochs(dir);
  t.is(epochs[epochs.length - 1], now.epoch, 'the takeover journaled its own, higher epoch');
});

test('fencing - a child driver started on a directory this process holds is FENCED', async (t) => {
  const dir = await t.context.dirs.make('fence-child');
  const owner = fencingApp(dir, new ManualClock(), quiet);
  await owner.start();
  const { first, exited } = await spawnDriver(t, dir);
  t.is(first, 'failed FENCED');
  await exited;
  await owner.runBatches(2);
  await owner.stop();
});
