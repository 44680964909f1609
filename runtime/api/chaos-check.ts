/**
 * `checkRecovery`: the chaos check of an app from inside a test. Runs the app twice
 * in this process on the same stream-time line (a ManualClock per start, batch by
 * batch): once without interruption (the reference), once with seeded `crash()` and
 * restart cycles, each restart building the app again from its function as a new
 * process would. Then the oracle compares what every output received per batch and
 * the final state of every stateful operator.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidConfigError } from '../base/errors.ts';
import { ManualClock } from '../base/manual-clock.ts';
import type { App } from './app.ts';
import { CHAOS_HARNESS, type ChaosHarness } from './chaos-harness.ts';
import { type PlannedKill, planKills } from './chaos-kill-plan.ts';
import { compareRuns, formatVerdict, type KillNote, type OracleVerdict, type OutputRun, type RunRecord } from './chaos-oracle.ts';
import type { StreamingContext } from './streaming-context.ts';

/** How {@link checkRecovery} runs an app. */
export interface CheckRecoveryOptions {
  /** Crash and restart cycles in the run with kills (default 20). */
  readonly crashes?: number;
  /** Batches of stream time both runs cover (default: 3 per crash, plus 10). */
  readonly batches?: number;
  /** Seed of the crash moments (default 1): the same seed crashes at the same batches. */
  readonly seed?: number;
  /**
   * The app's arguments. A function gets a directory of its own per run: the app
   * writes its files there, and every file in it is compared with the reference's
   * afterwards (an output that appends again when a batch re-runs is caught).
   */
  readonly args?: readonly string[] | ((runDir: string) => readonly string[]);
}

/** What {@link checkRecovery} found. */
export interface RecoveryReport extends OracleVerdict {
  /** True when the diagnosis is `pass` and every planned crash happened. */
  readonly passed: boolean;
  /** Crashes that happened (all planned ones, unless the run failed first). */
  readonly crashes: number;
  /** Batches of stream time both runs covered. */
  readonly batches: number;
  /** The seed of the crash moments, to replay the run. */
  readonly seed: number;
  /** The report as text, for a failing test's message. */
  readonly text: string;
}

/**
 * Runs the chaos check of `app` in this process and returns the report; it throws
 * only when the app cannot be checked (a source that cannot be replayed, no
 * checkpoint), with the reason.
 *
 * @example
 * test('app - survives 20 crashes', async (t) => {
 *   const report = await checkRecovery(app, { crashes: 20, seed: 7 });
 *   t.true(report.passed, report.text);
 * });
 */
export async function checkRecovery(app: App, options: CheckRecoveryOptions = {}): Promise<RecoveryReport> {
  const crashes = options.crashes ?? 20;
  const batches = options.batches ?? crashes * 3 + 10;
  const seed = options.seed ?? 1;
  const plan = planKills(seed, crashes, batches, 'between-batches');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-check-'));
  try {
    const reference = await runApp(app, options.args, path.join(work, 'reference'), batches, []);
    const chaos = await runApp(app, options.args, path.join(work, 'chaos'), batches, plan);
    const verdict = compareRuns(reference.record, chaos.record, chaos.kills);
    const passed = verdict.diagnosis === 'pass' && chaos.kills.length === plan.length;
    const text = [
      `recovery check — seed ${seed}, ${batches} batches on the manual clock`,
      `crashes:                ${chaos.kills.length} of ${plan.length} (${chaos.kills.map((k) => `${k.time}:${k.phase}`).join(' ') || '-'})`,
      ...formatVerdict(verdict),
      `result:                 ${passed ? 'PASS' : 'FAIL'}`,
    ].join('\n');
    return { ...verdict, passed, crashes: chaos.kills.length, batches, seed, text: `${text}\n` };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Builds the app and checks it can be handed to a harness. */
async function build(app: App, args: readonly string[]): Promise<StreamingContext> {
  const ssc = await app({ args });
  if (ssc.lifecycle !== 'initialized') throw new InvalidConfigError('the app started its context itself: return it unstarted to check it');
  return ssc;
}

/** Runs the app to `batches`, crashing and restarting it at each planned kill. */
async function runApp(
  app: App,
  argsOption: CheckRecoveryOptions['args'],
  dir: string,
  batches: number,
  plan: readonly PlannedKill[],
): Promise<{ record: RunRecord; kills: KillNote[] }> {
  const runDir = path.join(dir, 'run');
  await fs.mkdir(runDir, { recursive: true });
  const args = typeof argsOption === 'function' ? argsOption(runDir) : (argsOption ?? []);
  const outputs: OutputRun[] = [];
  const kills: KillNote[] = [];
  for (let life = 0; ; life++) {
    const next = plan[kills.length];
    const ssc = await build(app, args);
    const names = ssc.graph.outputs.map((o) => o.name);
    const holdOutput = next?.phase === 'after-output' ? names[next.pick % Math.max(1, names.length)] : undefined;
    let holdTime = Number.NaN;
    let crashed = false;
    let states: (() => Promise<Map<string, string>>) | undefined;
    const crash = (phase: string) => {
      crashed = true;
      kills.push({ time: holdTime, phase });
      ssc.crash();
    };
    const harness: ChaosHarness = {
      clock: new ManualClock(0),
      checkpoint: path.join(dir, 'checkpoint'),
      outputReceived: (time, output, digest) => {
        if (!crashed) outputs.push({ time, output, digest, life });
      },
      outputRan: (time, output) => {
        if (crashed || time !== holdTime || output !== holdOutput) return;
        crash('after-output');
        // Held for good: the crashed context never takes another step of this batch.
        return new Promise<void>(() => {});
      },
      started: (read) => {
        states = read;
      },
    };
    ssc[CHAOS_HARNESS](harness);
    await ssc.start();
    const d = ssc.batchDurationMs;
    const end = ssc.zeroTime + batches * d;
    if (next) holdTime = ssc.zeroTime + next.batch * d;
    let completed = ssc.zeroTime;
    ssc.addStreamingListener({ onBatchCompleted: (info) => (completed = Math.max(completed, info.time)) });
    try {
      // Replayed batches first (runBatches(0) waits for them), then one batch at a time.
      await ssc.runBatches(0);
      // It moved the clock to the last journaled batch and waited for it: every batch up to now is complete.
      completed = Math.max(completed, harness.clock.now());
      while (!crashed && completed < end) {
        // A batch of the plan that completed without the hold (its output had no batch then) crashes between batches.
        if (next && (next.phase === 'between-batches' ? completed >= holdTime - d : completed >= holdTime)) {
          crash('between-batches');
          break;
        }
        await ssc.runBatches(1);
      }
    } catch (error) {
      if (!crashed) throw error;
    }
    if (crashed) continue;
    const record: RunRecord = {
      outputs,
      states: states ? await states() : new Map(),
      ...(typeof argsOption === 'function' ? { files: await readFiles(runDir) } : {}),
    };
    await ssc.stop();
    return { record, kills };
  }
}

/**
 * Every file under `dir` by relative path, with its text, hidden ones left out.
 *
 * @example
 * const files = await readFiles('/tmp/run'); // Map { 'out/log.txt' => '...' }
 */
export async function readFiles(dir: string, skip: readonly string[] = []): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (sub: string) => {
    for (const entry of await fs.readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, entry.name);
      // Hidden entries are temp files (saveAsTextFiles' `.name.tmp-<pid>` of a killed process), not outputs.
      if (skip.includes(rel) || entry.name.startsWith('.')) continue;
      if (entry.isDirectory()) await walk(rel);
      else if (entry.isFile()) out.set(rel, await fs.readFile(path.join(dir, rel), 'utf8'));
    }
  };
  await walk('');
  return out;
}
