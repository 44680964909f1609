/**
 * Tools for the `tributary inspect` tests: a small app on the ManualClock that
 * leaves a real checkpoint (queueStream, updateStateByKey with uid `totals`, a
 * checkpoint every 3 batches, a poison word dead-lettered), what the run did as its
 * listeners saw it, the real CLI as a child process, and a fingerprint of every
 * byte of a directory to prove a run read-only.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import type { InspectReport } from '../../runtime/cli/inspect/inspect-report.ts';
import { deferred, quiet } from './checkpoint-kit.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BATCH_MS = 1000;
/** A checkpoint every 3 batches: after 8 batches, checkpoints 3000 and 6000, batches 7000 and 8000 to replay. */
export const CHECKPOINT_MS = 3000;
/** Hard limit on one CLI process. */
const CLI_TIMEOUT_MS = 60_000;

/** Batch i's lines; batches 2 and 5 hold one poison word each (dead-lettered). */
const input = Array.from({ length: 20 }, (_, i) => [`a b${i % 3}`, i === 1 || i === 4 ? 'poison c' : `c${i % 5} a`]);

/** A run of the app and what its listeners saw. */
export interface InspectApp {
  readonly ssc: StreamingContext;
  readonly clock: ManualClock;
  /** Completed batch times, in order. */
  readonly batches: number[];
  /** Committed checkpoint times, in order. */
  readonly checkpoints: number[];
  /** Resolves once the checkpoint of `time` is committed (and retention done). */
  checkpointed(time: number): Promise<void>;
}

/**
 * Starts the app on `checkpoint` (a directory or a nats:// URL) under `appName`.
 *
 * @example
 * const app = await startInspectApp(dir, 'inspect-a');
 * await app.ssc.runBatches(8);
 */
export async function startInspectApp(checkpoint: string, appName: string): Promise<InspectApp> {
  const clock = new ManualClock();
  const ssc = new StreamingContext({
    appName,
    batchDuration: BATCH_MS,
    clock,
    partitions: 2,
    snapshotFullEvery: 5,
    onRecordError: 'dead-letter',
    logger: quiet,
  });
  ssc.checkpoint(checkpoint);
  ssc
    .queueStream(input)
    .flatMap((l) => l.split(' '))
    .map((w): [string, number] => {
      if (w === 'poison') throw new Error('poison word');
      return [w, 1];
    })
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .uid('totals')
    .checkpoint(CHECKPOINT_MS)
    .foreachBatch(() => {});
  const batches: number[] = [];
  const checkpoints: number[] = [];
  const waiting = new Map<number, ReturnType<typeof deferred<void>>>();
  const waiter = (time: number) => {
    let d = waiting.get(time);
    if (d === undefined) waiting.set(time, (d = deferred<void>()));
    return d;
  };
  ssc.addStreamingListener({
    onBatchCompleted: (info) => void batches.push(info.time),
    onCheckpointCompleted: (c) => {
      checkpoints.push(c.time);
      waiter(c.time).resolve();
    },
  });
  await ssc.start();
  return { ssc, clock, batches, checkpoints, checkpointed: (time) => waiter(time).promise };
}

/** What one CLI run printed and how it ended. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `tributary <args>` as a user does (`node --import tsx runtime/cli/cli.ts`). */
export function tributary(args: readonly string[]): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `tributary inspect <args> --json` and parses the report. */
export async function inspectJson(args: readonly string[]): Promise<{ result: CliResult; report: InspectReport }> {
  const result = await tributary(['inspect', ...args, '--json']);
  let report: InspectReport;
  try {
    report = JSON.parse(result.stdout) as InspectReport;
  } catch {
    throw new Error(`inspect printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  }
  return { result, report };
}

/** Every file under `dir` with its size, mtime and SHA-256, sorted by path. */
export async function directoryFingerprint(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await fs.readdir(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) {
        out.push(`${path.relative(dir, full)}/`);
        await walk(full);
        continue;
      }
      const stat = await fs.stat(full);
      const hash = createHash('sha256')
        .update(await fs.readFile(full))
        .digest('hex');
      out.push(`${path.relative(dir, full)} ${stat.size} ${stat.mtimeMs} ${hash}`);
    }
  };
  await walk(dir);
  return out.sort();
}
