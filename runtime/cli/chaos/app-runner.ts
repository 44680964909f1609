/**
 * `tributary chaos <app>`: the chaos check of any app module. Runs the app as a
 * child process twice on the same stream-time line (the chaos clock: a ManualClock
 * the child advances batch by batch, so batch i has the same input in both runs):
 * a reference run without kills, then a run SIGKILLed at seeded batches and
 * restarted each time. Each run has its own working directory (the app's relative
 * paths land there) and checkpoint. The oracle then compares what every output
 * received per batch, the final state of every stateful operator, and the files the
 * app wrote in its working directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFiles } from '../../api/chaos-check.ts';
import { type PlannedKill, planKills } from '../../api/chaos-kill-plan.ts';
import { compareRuns, formatVerdict, type KillNote, type OracleVerdict, type OutputRun, type RunRecord } from '../../api/chaos-oracle.ts';
import { holdMs } from '../../base/clock.ts';
import { TributaryError } from '../../base/errors.ts';
import type { AppChildOptions } from './app-child.ts';

/** How to check an app. */
export interface AppChaosOptions {
  /** Path of the app module. */
  readonly app: string;
  readonly args?: readonly string[];
  readonly kills: number;
  readonly seed: number;
  /** Batches of stream time both runs cover (default: 3 per kill, plus 10). */
  readonly batches?: number;
  /** Give up after this long (default 8 minutes). */
  readonly timeoutMs?: number;
  /** Keep the work directory even when the check passes. */
  readonly keep?: boolean;
}

/** The outcome of `tributary chaos <app>`. */
export interface AppChaosReport extends OracleVerdict {
  readonly options: AppChaosOptions;
  readonly batches: number;
  readonly kills: readonly KillNote[];
  readonly plannedKills: number;
  /** Exits of the app that no kill caused (each restarted, up to a limit). */
  readonly unexpectedExits: number;
  readonly timedOut: boolean;
  readonly wallMs: number;
  readonly workDir: string;
  readonly passed: boolean;
}

/** An app that keeps dying by itself is failing, not recovering. */
const UNEXPECTED_EXITS_MAX = 3;
/** Lines of a dying app's stderr kept for the report. */
const STDERR_LINES_KEPT = 8;

type ChildMessage =
  | { type: 'zero'; time: number }
  | { type: 'out'; time: number; output: string; digest: string }
  | { type: 'batch'; time: number }
  | { type: 'hold'; time: number; output: string }
  | { type: 'state'; operator: string; digest: string }
  | { type: 'done' }
  | { type: 'refused'; reason: string };

function childEntry(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ext = path.extname(here);
  // Resolved here: the child runs in the app's run directory, where `tsx` alone would not resolve.
  return {
    file: path.join(path.dirname(here), `app-child${ext}`),
    execArgv: ext === '.ts' ? ['--import', import.meta.resolve('tsx')] : [],
  };
}

/** One life of the app: a child process until it is killed or ends. */
interface Life {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly stderr: string[];
}

/** What a run (reference or with kills) collected. */
interface RunResult {
  readonly record: RunRecord;
  readonly kills: KillNote[];
  readonly unexpectedExits: number;
  readonly failure?: string;
}

/**
 * Runs the chaos check of an app module and returns its report. Throws
 * INVALID_CONFIG, with the reason, for an app that cannot be checked (a source
 * that cannot be replayed, no checkpoint, a context it started itself).
 *
 * @example
 * const report = await runAppChaos({ app: 'app.ts', kills: 5, seed: 7 });
 */
export async function runAppChaos(options: AppChaosOptions): Promise<AppChaosReport> {
  const started = performance.now();
  const batches = options.batches ?? options.kills * 3 + 10;
  const plan = planKills(options.seed, options.kills, batches, 'timed');
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-chaos-app-'));
  const app = path.resolve(options.app);
  let timedOut = false;
  const live = new Set<ChildProcess>();
  const deadline = setTimeout(
    () => {
      timedOut = true;
      for (const proc of live) proc.kill('SIGKILL');
    },
    options.timeoutMs ?? 8 * 60_000,
  );
  const onSignal = (signal: NodeJS.Signals) => {
    for (const proc of live) proc.kill('SIGKILL');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const run = (name: string, kills: readonly PlannedKill[]) =>
      runOnce({ app, args: options.args ?? [], batches, dir: path.join(workDir, name), kills, live, timedOut: () => timedOut });
    const reference = await run('reference', []);
    if (reference.failure !== undefined) {
      throw new TributaryError(
        'INVALID_CONFIG',
        `the reference run (no kills) failed, so there is nothing to compare with: ${reference.failure}`,
      );
    }
    const chaos = await run('chaos', plan);
    const verdict = compareRuns(reference.record, chaos.record, chaos.kills);
    const failed = chaos.failure !== undefined || timedOut;
    const passed = !failed && verdict.diagnosis === 'pass' && chaos.kills.length === plan.length;
    const findings = chaos.failure !== undefined ? [`the run with kills failed: ${chaos.failure}`, ...verdict.findings] : verdict.findings;
    const report: AppChaosReport = {
      ...verdict,
      findings,
      options,
      batches,
      kills: chaos.kills,
      plannedKills: plan.length,
      unexpectedExits: chaos.unexpectedExits,
      timedOut,
      wallMs: Math.round(performance.now() - started),
      workDir,
      passed,
    };
    if (passed && !options.keep) await fs.rm(workDir, { recursive: true, force: true });
    return report;
  } catch (error) {
    await fs.rm(workDir, { recursive: true, force: true });
    throw error;
  } finally {
    clearTimeout(deadline);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs the app to the end of the line, killing it at each planned kill and restarting it. */
async function runOnce(o: {
  app: string;
  args: readonly string[];
  batches: number;
  dir: string;
  kills: readonly PlannedKill[];
  live: Set<ChildProcess>;
  timedOut: () => boolean;
}): Promise<RunResult> {
  const runDir = path.join(o.dir, 'run');
  await fs.mkdir(runDir, { recursive: true });
  const outputs: OutputRun[] = [];
  const states = new Map<string, string>();
  const kills: KillNote[] = [];
  let unexpectedExits = 0;
  let zero: number | undefined;
  let batchMs: number | undefined;
  let done = false;
  for (let life = 0; !done; life++) {
    if (o.timedOut()) return { record: { outputs, states }, kills, unexpectedExits, failure: 'timed out' };
    const next = o.kills[kills.length];
    const childOptions: AppChildOptions = {
      app: o.app,
      args: o.args,
      checkpoint: path.join(o.dir, 'checkpoint'),
      batches: o.batches,
      ...(next?.phase === 'after-output' ? { hold: { batch: next.batch, pick: next.pick } } : {}),
    };
    const entry = childEntry();
    const proc = spawn(process.execPath, [...entry.execArgv, entry.file, JSON.stringify(childOptions)], {
      cwd: runDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TRIBUTARY_LOG_LEVEL: process.env.TRIBUTARY_LOG_LEVEL ?? 'error' },
    });
    o.live.add(proc);
    const lifeOf: Life = { proc, exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))), stderr: [] };
    void lifeOf.exited.then(() => o.live.delete(proc));
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      // The first lines say what went wrong; a stack trace's tail does not.
      if (lifeOf.stderr.length < STDERR_LINES_KEPT)
        lifeOf.stderr.push(
          ...chunk
            .split('\n')
            .filter((l) => l !== '')
            .slice(0, STDERR_LINES_KEPT),
        );
    });
    let killedByUs = false;
    let refused: string | undefined;
    const kill = (phase: string, time: number) => {
      if (killedByUs || done) return;
      killedByUs = true;
      kills.push({ time, phase });
      proc.kill('SIGKILL');
    };
    let buffered = '';
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (killedByUs || line === '') continue;
        const m = JSON.parse(line) as ChildMessage;
        switch (m.type) {
          case 'zero':
            zero ??= m.time;
            break;
          case 'out':
            outputs.push({ time: m.time, output: m.output, digest: m.digest, life });
            break;
          case 'batch':
            if (zero !== undefined && batchMs === undefined && m.time > zero) batchMs = m.time - zero;
            // A timed kill: a random moment after the batch before the planned one completed.
            if (next?.phase === 'timed' && zero !== undefined && batchMs !== undefined && m.time >= zero + (next.batch - 1) * batchMs) {
              const at = zero + next.batch * batchMs;
              void holdMs(next.delayMs).then(() => kill('timed', at));
            }
            break;
          case 'hold':
            kill('after-output', m.time);
            break;
          case 'state':
            states.set(m.operator, m.digest);
            break;
          case 'done':
            done = true;
            break;
          case 'refused':
            refused = m.reason;
            break;
        }
      }
    });
    const code = await lifeOf.exited;
    if (refused !== undefined) throw new TributaryError('INVALID_CONFIG', `${path.basename(o.app)} cannot be chaos-checked: ${refused}`);
    if (done && code === 0) break;
    done = false;
    if (!killedByUs) {
      if (o.timedOut()) return { record: { outputs, states }, kills, unexpectedExits, failure: 'timed out' };
      unexpectedExits++;
      if (unexpectedExits > UNEXPECTED_EXITS_MAX || life === 0) {
        const why = `the app exited with code ${code}${lifeOf.stderr.length > 0 ? `: ${lifeOf.stderr.join(' | ')}` : ''}`;
        return { record: { outputs, states }, kills, unexpectedExits, failure: why };
      }
    }
  }
  return { record: { outputs, states, files: await readFiles(runDir) }, kills, unexpectedExits };
}

/**
 * The report as text, one fact a line.
 *
 * @example
 * process.stdout.write(formatAppChaosReport(report));
 */
export function formatAppChaosReport(r: AppChaosReport): string {
  const byPhase = new Map<string, number>();
  for (const k of r.kills) byPhase.set(k.phase, (byPhase.get(k.phase) ?? 0) + 1);
  const lines = [
    `chaos report — app ${r.options.app}, journal file, seed ${r.options.seed}`,
    `stream time:            ${r.batches} batches on the chaos clock (reference run and run with kills)`,
    `kills:                  ${r.kills.length} of ${r.plannedKills} (${[...byPhase].map(([p, n]) => `${p} ${n}`).join(', ') || 'none'})${r.unexpectedExits > 0 ? `, ${r.unexpectedExits} unexpected exits` : ''}`,
    `kill moments (batch):   ${r.kills.map((k) => `${k.time}:${k.phase}`).join(' ') || '-'}`,
    ...formatVerdict(r),
    `wall time:              ${(r.wallMs / 1000).toFixed(1)} s${r.timedOut ? ' (TIMED OUT)' : ''}`,
    `result:                 ${r.passed ? 'PASS' : `FAIL (runs kept in ${r.workDir}; replay with --seed ${r.options.seed})`}`,
  ];
  return `${lines.join('\n')}\n`;
}
