/**
 * The chaos runner: runs the workload as a child process, SIGKILLs the chosen
 * targets (the driver process, a nats-server) at seeded random moments, restarts
 * them, lets the run finish, then checks every output against the oracle and
 * reports kills, recovery times, losses, duplicates and mismatches.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import cliProgress from 'cli-progress';
import { holdMs } from '../clock.ts';
import { type NatsCluster, type NatsServer, startNatsCluster, startNatsServer } from '../nats-server-launcher.ts';
import { seededRandom } from './rng.ts';
import { type Verdict, verifyRun } from './verify.ts';
import type { WorkloadOptions } from './word-count-workload.ts';

/** What to break and how. */
export interface ChaosOptions {
  readonly kills: number;
  readonly seed: number;
  readonly targets: readonly ('driver' | 'nats')[];
  readonly journal: 'file' | 'nats';
  /** With a NATS journal: a 3-node cluster and an R3 journal (default when nats is a target). */
  readonly cluster?: boolean;
  /** Longest wait between a recovery and the next kill (default 800 ms). */
  readonly killDelayMsMax?: number;
  /** Give up after this long (default 8 minutes). */
  readonly timeoutMs?: number;
  /** Show a progress bar on stderr (default: when stderr is a terminal). */
  readonly progress?: boolean;
  /** Keep the work directory (outputs, checkpoint) for inspection. */
  readonly keep?: boolean;
}

/** One kill and what followed it. */
export interface KillRecord {
  readonly target: string;
  /** Milliseconds after the run started. */
  readonly atMs: number;
  /** From the restart to the first new batch completed. */
  recoveryMs?: number;
}

/** The outcome of a chaos run. */
export interface ChaosReport extends Verdict {
  readonly options: ChaosOptions;
  readonly kills: readonly KillRecord[];
  readonly unexpectedExits: number;
  readonly wallMs: number;
  readonly workDir: string;
  readonly timedOut: boolean;
  readonly passed: boolean;
}

const BATCH_MS = 100;
const RATE_PER_SECOND = 3000;

function childEntry(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ext = path.extname(here);
  return { file: path.join(path.dirname(here), `child${ext}`), execArgv: ext === '.ts' ? ['--import', 'tsx'] : [] };
}

interface ChildLink {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  killedByUs: boolean;
}

/**
 * Runs one chaos experiment and returns its report.
 *
 * @example
 * const report = await runChaos({ kills: 20, seed: 7, targets: ['driver'], journal: 'file' });
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const rng = seededRandom(options.seed);
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tributary-chaos-'));
  const runId = `${options.seed}-${process.pid}-${Date.now() % 1_000_000}`;
  const natsTargeted = options.targets.includes('nats');
  if (natsTargeted && options.journal !== 'nats') throw new Error('--targets nats needs --journal nats');
  const useCluster = options.journal === 'nats' && (options.cluster ?? natsTargeted);
  let single: NatsServer | undefined;
  let cluster: NatsCluster | undefined;
  let checkpoint = path.join(workDir, 'checkpoint');
  let resultsSubject: string | undefined;
  let nc: NatsConnection | undefined;
  const resultsStream = `CHAOS_${runId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  if (options.journal === 'nats') {
    if (useCluster) cluster = await startNatsCluster(3);
    else single = await startNatsServer();
    const urls = cluster ? cluster.urls : [(single as NatsServer).url];
    checkpoint = `nats://${urls.map((u) => u.replace(/^nats:\/\//, '')).join(',')}${cluster ? '?replicas=3' : ''}`;
    resultsSubject = `chaos.${runId.replace(/[^A-Za-z0-9_-]/g, '_')}.counts`;
    nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const jsm = await jetstreamManager(nc);
    // A long duplicate window: re-run batches must be recognised whatever the downtime.
    await jsm.streams.add({
      name: resultsStream,
      subjects: [resultsSubject],
      num_replicas: cluster ? 3 : 1,
      duplicate_window: 10 * 60 * 1e9,
    });
  }
  const seconds = Math.max(6, options.kills * 1.6 + 3);
  const workload: WorkloadOptions = {
    runId: runId.replace(/[^A-Za-z0-9_-]/g, '_'),
    seed: options.seed,
    records: Math.round(seconds * RATE_PER_SECOND),
    ratePerSecond: RATE_PER_SECOND,
    batchDurationMs: BATCH_MS,
    checkpoint,
    outDir: path.join(workDir, 'out'),
    ...(resultsSubject ? { resultsSubject } : {}),
  };
  await fs.mkdir(path.join(workload.outDir, 'batches'), { recursive: true });
  const totalBatches = Math.ceil((workload.records / RATE_PER_SECOND) * (1000 / BATCH_MS));
  const showProgress = options.progress ?? process.stderr.isTTY === true;
  const bar = showProgress
    ? new cliProgress.SingleBar(
        { format: 'chaos [{bar}] {value}/{total} batches | kills {kills}/{killsTotal} | {phase}', hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(totalBatches, 0, { kills: 0, killsTotal: options.kills, phase: 'starting' });

  const kills: KillRecord[] = [];
  let unexpectedExits = 0;
  let zero: number | undefined;
  let maxSeen = 0;
  let done = false;
  let timedOut = false;
  let waitingRecovery: { since: number; record: KillRecord } | undefined;
  let onProgress: (() => void) | undefined;
  let child: ChildLink | undefined;
  const entry = childEntry();

  const spawnChild = (): ChildLink => {
    const proc = spawn(process.execPath, [...entry.execArgv, entry.file, JSON.stringify(workload)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TRIBUTARY_LOG_LEVEL: process.env.TRIBUTARY_LOG_LEVEL ?? 'error' },
    });
    let buffered = '';
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) handleLine(line);
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      if (!showProgress) process.stderr.write(chunk.replace(/^/gm, '  [child] '));
    });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    return { proc, exited, killedByUs: false };
  };

  const handleLine = (line: string) => {
    const [kind, a] = line.split(' ');
    if (kind === 'zero') zero = Number(a);
    else if (kind === 'done') {
      done = true;
      onProgress?.();
    } else if (kind === 'batch') {
      const t = Number(a);
      if (t > maxSeen) {
        maxSeen = t;
        if (waitingRecovery) {
          waitingRecovery.record.recoveryMs = Math.round(performance.now() - waitingRecovery.since);
          waitingRecovery = undefined;
        }
        onProgress?.();
      }
      if (zero !== undefined) bar?.update(Math.round((maxSeen - zero) / BATCH_MS), { kills: kills.length, phase: 'running' });
    }
  };

  const nextProgress = () =>
    new Promise<void>(
      (resolve) =>
        (onProgress = () => {
          onProgress = undefined;
          resolve();
        }),
    );

  const deadline = setTimeout(
    () => {
      timedOut = true;
      onProgress?.();
    },
    options.timeoutMs ?? 8 * 60_000,
  );
  try {
    child = spawnChild();
    // Restart the driver whenever it dies, until the run is done.
    const supervise = async () => {
      while (!done && !timedOut) {
        const current = child as ChildLink;
        const code = await current.exited;
        if (done || timedOut) return;
        if (!current.killedByUs) unexpectedExits++;
        if (code === 0 && !current.killedByUs) return;
        child = spawnChild();
        if (waitingRecovery) waitingRecovery.since = performance.now();
      }
    };
    const supervision = supervise();
    for (let i = 0; i < options.kills && !done && !timedOut; i++) {
      const target = options.targets[Math.floor(rng() * options.targets.length)] ?? 'driver';
      const wait = 100 + Math.floor(rng() * (options.killDelayMsMax ?? 800));
      const which = Math.floor(rng() * 3);
      const outage = 200 + Math.floor(rng() * 800);
      await nextProgress();
      if (done || timedOut) break;
      await holdMs(wait);
      if (done || timedOut) break;
      const record: KillRecord = {
        target: target === 'driver' ? 'driver' : cluster ? `nats-server ${which}` : 'nats-server',
        atMs: elapsed(),
      };
      kills.push(record);
      bar?.update({ kills: kills.length, phase: `killed ${record.target}` });
      if (target === 'driver') {
        const current = child as ChildLink;
        current.killedByUs = true;
        waitingRecovery = { since: performance.now(), record };
        current.proc.kill('SIGKILL');
        await current.exited;
      } else {
        if (cluster) await cluster.stop(which);
        else await (single as NatsServer).stop();
        await holdMs(outage);
        if (cluster) await cluster.restart(which);
        else await (single as NatsServer).restart();
        waitingRecovery = { since: performance.now(), record };
      }
    }
    bar?.update({ phase: 'finishing' });
    while (!done && !timedOut) await nextProgress();
    await supervision;
  } finally {
    clearTimeout(deadline);
    if (child && child.proc.exitCode === null) {
      child.proc.kill('SIGKILL');
      await child.exited;
    }
    bar?.stop();
  }
  let results: [number, string, number][] | undefined;
  if (nc && resultsSubject) results = await readResults(nc, resultsStream);
  const verdict = zero === undefined || timedOut ? failedVerdict() : await verifyRun(workload, zero, results);
  await nc?.close();
  await cluster?.shutdown();
  await single?.shutdown();
  const passed =
    !timedOut &&
    verdict.recordsLost === 0 &&
    verdict.batchesMissing === 0 &&
    verdict.batchesMismatched === 0 &&
    verdict.duplicates === 0 &&
    verdict.finalStateMismatches === 0 &&
    kills.length === options.kills;
  if (!options.keep && passed) await fs.rm(workDir, { recursive: true, force: true });
  return { ...verdict, options, kills, unexpectedExits, wallMs: elapsed(), workDir, timedOut, passed };
}

function failedVerdict(): Verdict {
  return {
    recordsIn: 0,
    recordsLost: 1,
    batchesExpected: 0,
    batchesMissing: 1,
    batchesMismatched: 0,
    duplicates: 0,
    finalStateMismatches: 1,
  };
}

async function readResults(nc: NatsConnection, stream: string): Promise<[number, string, number][]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const out: [number, string, number][] = [];
  if (info.state.messages === 0) return out;
  const { jetstream } = await import('@nats-io/jetstream');
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume({ max_messages: 1000 });
  for await (const m of messages) {
    out.push(JSON.parse(new TextDecoder().decode(m.data)) as [number, string, number]);
    if (m.seq >= info.state.last_seq) break;
  }
  messages.stop();
  return out;
}

function stats(values: number[]): string {
  if (values.length === 0) return 'n/a';
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] as number;
  return `min ${sorted[0]} ms, median ${median} ms, max ${sorted[sorted.length - 1]} ms`;
}

/**
 * The report as text, one fact a line.
 *
 * @example
 * process.stdout.write(formatChaosReport(report));
 */
export function formatChaosReport(r: ChaosReport): string {
  const o = r.options;
  const recoveries = r.kills.map((k) => k.recoveryMs).filter((ms): ms is number => ms !== undefined);
  const byTarget = new Map<string, number>();
  for (const k of r.kills) byTarget.set(k.target.split(' ')[0] as string, (byTarget.get(k.target.split(' ')[0] as string) ?? 0) + 1);
  const lines = [
    `chaos report — workload word-count, journal ${o.journal}${o.journal === 'nats' && (o.cluster ?? o.targets.includes('nats')) ? ' (3-node cluster, R3)' : ''}, seed ${o.seed}`,
    `kills:                  ${r.kills.length} of ${o.kills} (${[...byTarget].map(([t, n]) => `${t} ${n}`).join(', ') || 'none'})`,
    `recoveries:             ${recoveries.length}${r.unexpectedExits > 0 ? ` (+${r.unexpectedExits} unexpected driver exits, restarted)` : ''}`,
    `recovery time:          ${stats(recoveries)}`,
    `records in:             ${r.recordsIn} words`,
    `records lost:           ${r.recordsLost}`,
    `batches:                ${r.batchesExpected} expected, ${r.batchesMissing} missing, ${r.batchesMismatched} wrong`,
    `duplicate outputs:      ${r.duplicates} (exactly-once sinks)`,
    `final-state mismatches: ${r.finalStateMismatches}`,
    `kill moments (ms):      ${r.kills.map((k) => `${k.atMs}:${k.target}`).join(' ') || '-'}`,
    `wall time:              ${(r.wallMs / 1000).toFixed(1)} s${r.timedOut ? ' (TIMED OUT)' : ''}`,
    `result:                 ${r.passed ? 'PASS' : `FAIL (outputs kept in ${r.workDir}; replay with --seed ${o.seed})`}`,
  ];
  return `${lines.join('\n')}\n`;
}
