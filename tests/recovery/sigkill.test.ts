/**
 * Recovery from a real `kill -9`: tests/helpers/sigkill-app.ts runs as a child
 * process, is SIGKILLed once it reported k completed batches, and is started again
 * on the same directory until it finishes. Its per-batch outputs and final state
 * must equal an oracle computed here from the same input; only the batch in flight
 * at the kill may have repeated outputs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { tempDir } from '../helpers/recovery-harness.ts';
import { compareValues } from '../helpers/run-operation.ts';
import { sigkillInput, WINDOW_MS } from '../helpers/sigkill-input.ts';

interface Ctx {
  readonly dirs: string[];
  readonly children: ChildProcess[];
}

const test = anyTest as TestFn<Ctx>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const APP = path.join(ROOT, 'tests/helpers/sigkill-app.ts');
const BATCH_MS = 1000;
const BATCHES = 40;
/** Hard limit on one child's life. */
const CHILD_TIMEOUT_MS = 60_000;

test.before((t) => {
  t.context = { dirs: [], children: [] };
});

test.after.always(async (t) => {
  for (const child of t.context.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(t.context.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

interface ChildRun {
  /** Batch times the child reported completed, in order. */
  readonly completed: number[];
  readonly finished: boolean;
  readonly signal: NodeJS.Signals | null;
  readonly code: number | null;
  readonly stderr: string;
}

/**
 * Runs the app on `dir`; with `killAfter`, SIGKILLs it as soon as it reported that
 * many completed batches. Resolves when the child exited.
 */
function runChild(t: ExecutionContext<Ctx>, dir: string, killAfter?: number): Promise<ChildRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', APP, dir, String(BATCHES)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.context.children.push(child);
  const completed: number[] = [];
  let finished = false;
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  lines.on('line', (line) => {
    const m = /^completed (\d+)$/.exec(line);
    if (m) {
      completed.push(Number(m[1]));
      if (completed.length === killAfter) child.kill('SIGKILL');
    } else if (line === 'finished') finished = true;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    // 'close' waits for stdout to end, so every line the child wrote was read.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ completed, finished, signal, code, stderr });
    });
  });
}

interface Line {
  readonly op: string;
  readonly time: number;
  readonly records: [string, number][];
}

async function readOutputs(dir: string): Promise<Line[]> {
  const text = await fs.readFile(path.join(dir, 'outputs.jsonl'), 'utf8');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const out: Line[] = [];
  lines.forEach((l, i) => {
    try {
      out.push(JSON.parse(l) as Line);
    } catch (error) {
      // A kill may tear only the line being written, and only a batch in flight writes.
      if (i !== lines.length - 1) throw error;
    }
  });
  return out;
}

/** The app's outputs, computed directly from its input: running counts and a 4-batch window sum. */
function oracle(): Map<string, [string, number][]> {
  const input = sigkillInput(BATCHES);
  const perBatch: Map<string, number>[] = [];
  for (let i = 0; i < BATCHES; i++) {
    const counts = new Map<string, number>();
    for (const line of input[i] ?? []) for (const w of line.split(' ')) if (w.length > 0) counts.set(w, (counts.get(w) ?? 0) + 1);
    perBatch.push(counts);
  }
  const out = new Map<string, [string, number][]>();
  const totals = new Map<string, number>();
  const seen = new Set<string>();
  const windowBatches = WINDOW_MS / BATCH_MS;
  perBatch.forEach((counts, i) => {
    const time = (i + 1) * BATCH_MS;
    for (const [w, n] of counts) {
      totals.set(w, (totals.get(w) ?? 0) + n);
      seen.add(w);
    }
    out.set(`counts@${time}`, sorted([...totals]));
    // Without a filter, a key stays in the window result at 0 once it has left (Spark's behaviour).
    const window = [...seen].map((w): [string, number] => [
      w,
      perBatch.slice(Math.max(0, i + 1 - windowBatches), i + 1).reduce((sum, c) => sum + (c.get(w) ?? 0), 0),
    ]);
    out.set(`window@${time}`, sorted(window));
  });
  return out;
}

function sorted(records: [string, number][]): [string, number][] {
  return records.sort(compareValues);
}

/** Kills the app after each of `kills` reported batches (of its own run), then lets it finish. */
async function killAndRecover(t: ExecutionContext<Ctx>, kills: number[]): Promise<void> {
  const dir = await tempDir('trib-sigkill-');
  t.context.dirs.push(dir);
  const inFlight = new Set<number>();
  for (const k of kills) {
    const run = await runChild(t, dir, k);
    t.is(run.signal, 'SIGKILL', `the child was killed after ${k} batches (stderr: ${run.stderr})`);
    t.false(run.finished, 'the kill came before the end');
    // The batch after the last one reported may have been writing its outputs.
    inFlight.add(Math.max(0, ...run.completed) + BATCH_MS);
    t.log(`killed after ${k} reports; reported ${run.completed.join(' ')}`);
  }
  const last = await runChild(t, dir);
  t.log(`restarted; reported ${last.completed.slice(0, 12).join(' ')} ...`);
  t.is(last.code, 0, last.stderr);
  t.true(last.finished);

  const want = oracle();
  const got = await readOutputs(dir);
  const seen = new Map<string, number>();
  for (const line of got) {
    const key = `${line.op}@${line.time}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    t.deepEqual(sorted(line.records), want.get(key), `outputs of ${key}`);
  }
  for (const key of want.keys()) t.true(seen.has(key), `${key} was emitted`);
  for (const [key, count] of seen) {
    const time = Number(key.slice(key.indexOf('@') + 1));
    if (count > 1) t.true(inFlight.has(time), `${key} repeated ${count} times but was not in flight at a kill`);
  }
  // The final state: the last batch's running counts.
  const final = got.filter((l) => l.op === 'counts' && l.time === BATCHES * BATCH_MS);
  t.true(final.length >= 1);
  t.deepEqual(sorted(final[final.length - 1]?.records ?? []), want.get(`counts@${BATCHES * BATCH_MS}`));
}

test('sigkill - killed before the first checkpoint, restarted, equals the oracle', async (t) => {
  await killAndRecover(t, [2]);
});

test('sigkill - killed right at a checkpoint (every 3 batches), restarted, equals the oracle', async (t) => {
  await killAndRecover(t, [9]);
});

test('sigkill - killed late, and again soon after the restart, equals the oracle', async (t) => {
  await killAndRecover(t, [25, 3]);
});
