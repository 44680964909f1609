/**
 * The chaos runner end to end: short runs that SIGKILL the driver (and nats-servers)
 * must pass with a consistent report; `--bad-input` must dead-letter exactly the
 * malformed records; and the verifier must really see faults, shown by damaging
 * the outputs of a finished run. Everything a run starts (children, nats-servers)
 * is stopped by runChaos itself; kept work directories are removed in teardown.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { badInputMessages, decodeInputLine, INPUT_LINE_BYTES_MAX, inputWordCounts } from '../../../../runtime/cli/chaos/bad-input.ts';
import {
  type ChaosOptions,
  type ChaosReport,
  ChildLogs,
  chaosPassed,
  formatChaosReport,
  runChaos,
} from '../../../../runtime/cli/chaos/runner.ts';
import { verifyRun } from '../../../../runtime/cli/chaos/verify.ts';
import type { WorkloadOptions } from '../../../../runtime/cli/chaos/word-count-workload.ts';

interface Ctx {
  /** Work directories of kept or failed runs. */
  dirs: string[];
}

const test = anyTest as TestFn<Ctx>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

test.before((t) => {
  t.context = { dirs: [] };
});

test.after.always(async (t) => {
  await Promise.all(t.context.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

/** Runs chaos with a short timeout; a failing report is printed for the log. */
async function chaos(t: ExecutionContext<Ctx>, options: Omit<ChaosOptions, 'progress' | 'timeoutMs'>): Promise<ChaosReport> {
  const report = await runChaos({ ...options, progress: false, timeoutMs: 60_000 });
  t.context.dirs.push(report.workDir);
  if (!report.passed) t.log(formatChaosReport(report));
  return report;
}

/** The checks every passing report must satisfy. */
function assertClean(t: ExecutionContext<Ctx>, r: ChaosReport, kills: number): void {
  t.true(r.passed, formatChaosReport(r));
  t.false(r.timedOut);
  t.is(r.kills.length, kills);
  t.is(r.kills.filter((k) => k.recoveryMs !== undefined).length, kills, 'every kill was followed by a recovery');
  t.is(r.recordsLost, 0);
  t.is(r.duplicates, 0);
  t.is(r.batchesMissing, 0);
  t.is(r.batchesMismatched, 0);
  t.is(r.finalStateMismatches, 0);
  t.is(r.inputMismatches, 0);
  t.is(r.freshStarts, 0);
  t.true(r.recordsIn > 0 && r.batchesExpected > 0);
  // Kill moments are increasing and within the run.
  const moments = r.kills.map((k) => k.atMs);
  t.deepEqual(
    moments,
    [...moments].sort((a, b) => a - b),
  );
  t.true(moments.every((ms) => ms > 0 && ms < r.wallMs));
}

/** Copies a kept run's outputs, so each damage is checked on its own. */
async function copyOutputs(workload: WorkloadOptions, name: string): Promise<WorkloadOptions> {
  const outDir = path.join(path.dirname(workload.outDir), name);
  await fs.cp(workload.outDir, outDir, { recursive: true });
  return { ...workload, outDir };
}

async function batchDirs(workload: WorkloadOptions): Promise<string[]> {
  return (await fs.readdir(path.join(workload.outDir, 'batches'))).filter((n) => /^counts-\d+$/.test(n)).sort();
}

async function editPart(workload: WorkloadOptions, dir: string, edit: (pairs: [string, number][]) => void): Promise<void> {
  const file = path.join(workload.outDir, 'batches', dir, 'part-00000');
  const pairs = (await fs.readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as [string, number]);
  edit(pairs);
  await fs.writeFile(file, pairs.map((p) => `${JSON.stringify(p)}\n`).join(''));
}

test('chaos - 3 driver kills on the file journal pass, and the verifier counts damaged outputs', async (t) => {
  const r = await chaos(t, { kills: 3, seed: 11, targets: ['driver'], journal: 'file', keep: true });
  assertClean(t, r, 3);
  t.is(r.unexpectedExits, 0);
  const text = formatChaosReport(r);
  t.regex(text, /^kills: +3 of 3 \(driver 3\)$/m);
  t.regex(text, /^recoveries: +3$/m);
  t.regex(text, /^records lost: +0$/m);
  t.regex(text, new RegExp(`^batches: +${r.batchesExpected} expected, 0 missing, 0 wrong$`, 'm'));
  t.regex(text, /^duplicate outputs: +0 /m);
  t.regex(text, /^final-state mismatches: 0$/m);
  t.regex(text, /^result: +PASS$/m);
  t.notRegex(text, /dead letters/);
  t.regex(text, /^catch-up after nats outage: n\/a$/m);
  t.regex(text, /^replica divergence: +n\/a \(file journal\)$/m);
  t.deepEqual(r.replicaDivergence, []);
  t.true(chaosPassed(r));
  t.false(chaosPassed({ ...r, replicaDivergence: ['at the end: TRIBUTARY_x: n1 first 1 last 9 msgs 9 / n2 missing'] }));

  const zero = r.zeroTimeMs as number;
  // Batch directories of the oracle's range (a stopping run may write a few more, empty ones).
  const batchDir = (i: number) => `counts-${zero + i * r.workload.batchDurationMs}`;
  t.deepEqual(await verifyRun(r.workload, zero), {
    recordsIn: r.recordsIn,
    recordsLost: 0,
    batchesExpected: r.batchesExpected,
    batchesMissing: 0,
    batchesMismatched: 0,
    duplicates: 0,
    finalStateMismatches: 0,
    inputMismatches: 0,
  });

  // A batch directory gone: one batch missing, its words lost.
  const deleted = await copyOutputs(r.workload, 'out-deleted');
  const victim = batchDir(Math.floor(r.batchesExpected / 2));
  const victimWords = (await fs.readFile(path.join(deleted.outDir, 'batches', victim, 'part-00000'), 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .reduce((n, l) => n + (JSON.parse(l) as [string, number])[1], 0);
  await fs.rm(path.join(deleted.outDir, 'batches', victim), { recursive: true });
  const v1 = await verifyRun(deleted, zero);
  t.is(v1.batchesMissing, 1);
  t.is(v1.recordsLost, victimWords);
  t.is(v1.batchesMismatched, 0);

  // One count changed: one wrong batch, and the extra word is not "lost".
  const changed = await copyOutputs(r.workload, 'out-changed');
  await editPart(changed, batchDir(3), (pairs) => {
    (pairs[0] as [string, number])[1] += 1;
  });
  const v2 = await verifyRun(changed, zero);
  t.is(v2.batchesMismatched, 1);
  t.is(v2.batchesMissing, 0);

  // A half-written batch directory (its part file missing) is a wrong batch too.
  const partial = await copyOutputs(r.workload, 'out-partial');
  await fs.rm(path.join(partial.outDir, 'batches', batchDir(2), 'part-00000'));
  t.is((await verifyRun(partial, zero)).batchesMismatched, 1);

  // The final state: one key changed, one removed, one added.
  const totals = await copyOutputs(r.workload, 'out-totals');
  const file = path.join(totals.outDir, 'totals.json');
  const doc = JSON.parse(await fs.readFile(file, 'utf8')) as { time: number; totals: Record<string, number> };
  const [k1, k2] = Object.keys(doc.totals) as [string, string];
  doc.totals[k1] = (doc.totals[k1] as number) + 1;
  delete doc.totals[k2];
  doc.totals['not-a-generated-word'] = 1;
  await fs.writeFile(file, JSON.stringify(doc));
  const v3 = await verifyRun(totals, zero);
  t.is(v3.finalStateMismatches, 3);
  t.is(v3.batchesMismatched + v3.batchesMissing + v3.recordsLost, 0);

  // The JetStream results of a run are checked too: a repeated record is a duplicate, a missing batch is missing.
  const results: [number, string, number][] = [];
  for (const dir of await batchDirs(r.workload)) {
    const time = Number(dir.slice('counts-'.length));
    for (const line of (await fs.readFile(path.join(r.workload.outDir, 'batches', dir, 'part-00000'), 'utf8')).split('\n')) {
      if (line !== '') results.push([time, ...(JSON.parse(line) as [string, number])]);
    }
  }
  t.is((await verifyRun(r.workload, zero, results)).duplicates, 0);
  const firstTime = (results[0] as [number, string, number])[0];
  const v4 = await verifyRun(r.workload, zero, [
    ...results.filter(([time]) => time !== firstTime),
    results.at(-1) as [number, string, number],
  ]);
  t.is(v4.duplicates, 1);
  t.is(v4.batchesMissing, 1);
});

/** The catch-up line after one nats-server kill: measured, or the run ended first. */
const CATCH_UP_LINE =
  /^catch-up after nats outage: (min \d+ ms, median \d+ ms, max \d+ ms|n\/a \(1 of 1 (not caught up before the end|NOT caught up within 30 s)\))$/m;

test.serial('chaos - 2 kills of the driver and nats-servers on the JetStream journal pass', async (t) => {
  const r = await chaos(t, { kills: 2, seed: 5, targets: ['driver', 'nats'], journal: 'nats' });
  assertClean(t, r, 2);
  t.deepEqual(
    r.kills.map((k) => k.target.split(' ')[0]),
    ['nats-server', 'driver'],
    'seed 5 kills a nats-server, then the driver',
  );
  t.regex(formatChaosReport(r), /journal nats \(3-node cluster, R3\)/);
  t.regex(formatChaosReport(r), /^kills: +2 of 2 \(nats-server 1, driver 1\)$/m);
  // Every replica of the run's streams agreed after the restart and at the end.
  t.deepEqual(r.replicaDivergence, []);
  t.regex(formatChaosReport(r), /^replica divergence: +none$/m);
  // The next fault waits (up to 30 s) until the driver caught up after the outage, then the catch-up is measured;
  // on these shared cores a concurrent test can slow it past the bound, which the report says.
  const outage = r.kills.find((k) => k.target.startsWith('nats-server'));
  t.true(outage?.catchUpMs === undefined ? outage?.catchUpMissed === true : outage.catchUpMs <= r.wallMs, `${outage?.catchUpMs}`);
  t.regex(formatChaosReport(r), CATCH_UP_LINE);
  const missed = { ...r, kills: r.kills.map((k) => (k === outage ? { ...k, catchUpMs: undefined, catchUpMissed: true } : k)) };
  t.regex(formatChaosReport(missed), /^catch-up after nats outage: n\/a \(1 of 1 NOT caught up within 30 s\)$/m);

  // A divergence alone fails a run whose outputs are all right, and the report names it.
  const diverged = { ...r, replicaDivergence: ['at the end: TRIBUTARY_x: n1 first 1 last 9 msgs 9 / n2 first 5 last 9 msgs 5'] };
  t.is(chaosPassed({ ...r, replicaDivergence: [] }), r.passed);
  t.false(chaosPassed(diverged));
  t.regex(formatChaosReport({ ...diverged, passed: false }), /^replica divergence: +1 — at the end: TRIBUTARY_x: n1 first 1 /m);
});

test.serial('chaos - a run on one nats-server reports no replica check, and a catch-up line', async (t) => {
  const r = await chaos(t, { kills: 1, seed: 3, targets: ['nats'], journal: 'nats', cluster: false });
  assertClean(t, r, 1);
  t.deepEqual(r.replicaDivergence, []);
  const text = formatChaosReport(r);
  t.regex(text, /^replica divergence: +n\/a \(single server\)$/m);
  t.regex(text, CATCH_UP_LINE);
});

test.serial('chaos - --bad-input dead-letters exactly the malformed records and counts the good ones', async (t) => {
  const r = await chaos(t, { kills: 2, seed: 7, targets: ['driver'], journal: 'nats', badInput: true, inputMessages: 200, keep: true });
  assertClean(t, r, 2);
  const messages = badInputMessages(7, 200);
  const malformed = messages.filter((m) => m.kind !== 'good').length;
  t.deepEqual(r.deadLetters, { expected: malformed, found: malformed, missing: 0, unexpected: 0, goodRecords: 200 - malformed });
  t.regex(formatChaosReport(r), new RegExp(`^dead letters: ${malformed} expected, ${malformed} found$`, 'm'));

  // The good records' words are in the outputs: one more of them anywhere is a miscount.
  const zero = r.zeroTimeMs as number;
  t.is((await verifyRun(r.workload, zero)).inputMismatches, 0);
  const damaged = await copyOutputs(r.workload, 'out-input');
  for (const dir of await batchDirs(damaged)) {
    const text = await fs.readFile(path.join(damaged.outDir, 'batches', dir, 'part-00000'), 'utf8');
    if (!text.includes('"in-')) continue;
    await editPart(damaged, dir, (pairs) => {
      const pair = pairs.find(([w]) => w.startsWith('in-')) as [string, number];
      pair[1] += 1;
    });
    break;
  }
  const v = await verifyRun(damaged, zero);
  t.is(v.inputMismatches, 1);
  t.is(v.batchesMismatched, 0, "the generator's words of that batch are still right");
});

test('bad input - the decoder refuses every malformed kind, oversize lines included, and accepts every good record', (t) => {
  const messages = badInputMessages(42, 300);
  t.deepEqual(messages, badInputMessages(42, 300), 'the same seed gives the same input');
  const kinds = new Set(messages.map((m) => m.kind));
  t.deepEqual([...kinds].sort(), ['bad-json', 'cbor', 'good', 'invalid-utf8', 'oversize', 'wrong-shape']);
  for (const m of messages) {
    if (m.kind === 'good') t.notThrows(() => decodeInputLine(m.data));
    else t.throws(() => decodeInputLine(m.data), undefined, m.kind);
  }
  const oversize = messages.find((m) => m.kind === 'oversize');
  t.true((oversize?.data.length ?? 0) > INPUT_LINE_BYTES_MAX);
  // A record right at the limit is still accepted.
  const line = 'in-alpha '.repeat(INPUT_LINE_BYTES_MAX);
  const atLimit = new TextEncoder().encode(`${JSON.stringify({ line }).slice(0, INPUT_LINE_BYTES_MAX - 2)}"}`);
  t.is(atLimit.length, INPUT_LINE_BYTES_MAX);
  t.notThrows(() => decodeInputLine(atLimit));
  t.true([...inputWordCounts(messages).keys()].every((w) => w.startsWith('in-')));
});

/** Runs the CLI; resolves with its exit code and output. */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('chaos - every process logs to its own file, and a failed report shows the last lines of each', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-chaos-logs-'));
  t.context.dirs.push(dir);
  const logs = new ChildLogs(path.join(dir, 'logs'), false);
  await logs.open();
  const script = [
    'for (let i = 1; i <= 5; i++) console.error(JSON.stringify({ level: 40, msg: "warn " + i }));',
    "console.error('TypeError: not a record');",
  ].join('\n');
  for (const name of ['driver', 'w1']) {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    logs.follow(child, name);
    await new Promise((resolve) => child.once('close', resolve));
  }
  await logs.close();
  t.is((await fs.readFile(path.join(dir, 'logs', 'w1.log'), 'utf8')).trim().split('\n').length, 6);
  t.deepEqual(await logs.tails(2), [
    '  [driver] {"level":40,"msg":"warn 5"}',
    '  [driver] TypeError: not a record',
    '  [w1] {"level":40,"msg":"warn 5"}',
    '  [w1] TypeError: not a record',
  ]);
});

test('chaos - the CLI exits non-zero on a failing run, and a timeout stops the run at once', async (t) => {
  const started = performance.now();
  // 20 kills make a run of about 35 s: the timeout must end it long before.
  const { code, stdout } = await runCli(['chaos', 'word-count', '--kills', '20', '--seed', '5', '--timeout', '1', '--no-progress']);
  const kept = /outputs and logs kept in (\S+);/.exec(stdout)?.[1];
  if (kept) t.context.dirs.push(kept);
  t.is(code, 2, stdout);
  t.regex(stdout, /^wall time: +[\d.]+ s \(TIMED OUT\)$/m);
  t.regex(stdout, /^result: +FAIL \(outputs and logs kept in .+; replay with --seed 5\)$/m);
  // What the driver logged stays with the outputs, for a run that hung.
  t.true((await fs.stat(path.join(kept as string, 'logs', 'driver.log'))).isFile());
  // The child is killed at the deadline; before, the run went on until the workload ended by itself.
  t.true(performance.now() - started < 15_000, `took ${Math.round(performance.now() - started)} ms`);
});

test.serial('chaos - --bad-input on the file journal: a nats-server carries only the input, and the dead letters are exact', async (t) => {
  const r = await chaos(t, { kills: 2, seed: 8, targets: ['driver'], journal: 'file', badInput: true, inputMessages: 120 });
  assertClean(t, r, 2);
  const malformed = badInputMessages(8, 120).filter((m) => m.kind !== 'good').length;
  t.true(malformed > 0);
  t.deepEqual(r.deadLetters, { expected: malformed, found: malformed, missing: 0, unexpected: 0, goodRecords: 120 - malformed });
  t.is(r.inputMismatches, 0, "the good records' words are counted once");
  t.regex(formatChaosReport(r), /^replica divergence: +n\/a \(file journal\)$/m);
});

test('chaos - workers killed or paused on a cluster, one joining and one leaving, lose nothing and report recovery per target', async (t) => {
  t.timeout(300_000);
  const report = await runChaos({
    kills: 2,
    seed: 12,
    targets: ['worker'],
    workers: 2,
    journal: 'nats',
    progress: false,
    timeoutMs: 240_000,
  });
  t.context.dirs.push(report.workDir);
  if (!report.passed) t.log(formatChaosReport(report));
  assertClean(t, report, 4);
  const text = formatChaosReport(report);
  t.regex(text, /^kills: +4 of 4 \(.*worker-join 1.*\)$/m);
  t.regex(text, /^recovery by target: .*worker-(kill|pause) \(\d\) min \d+ ms, median \d+ ms, max \d+ ms/m);
  t.regex(text, /worker-leave \(1\)/);
  t.regex(text, /, 2 workers, seed 12$/m);
});
