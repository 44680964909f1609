/**
 * Worker processes for the cluster tests: real `tributary worker` children that
 * load tests/helpers/cluster-apps.ts, started on a real nats-server and stopped
 * (SIGTERM, then SIGKILL) by the test that started them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../../runtime/api/testing.ts';
import { buildClusterApp, type ClusterAppName } from './cluster-apps.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const APP = 'tests/helpers/cluster-apps.ts';

/** A worker child process. */
export interface WorkerProcess {
  readonly id: string;
  readonly child: ChildProcess;
  /** Everything it wrote on stderr so far. */
  stderr(): string;
  /** Resolves with its exit code (or signal) once it exited. */
  readonly exited: Promise<number | string>;
  /** Resolves when stderr contains `text`. */
  waitFor(text: string | RegExp): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts one worker process of app `app` and waits until it registered.
 *
 * @example
 * const w = await startWorker(server.url, 'windowed', 'w1');
 */
export async function startWorker(
  url: string,
  app: ClusterAppName,
  id: string,
  options: { readonly checkpoint?: string; readonly leaseMs?: number; readonly appArgs?: readonly string[]; readonly wait?: boolean } = {},
): Promise<WorkerProcess> {
  const args = ['--import', 'tsx', 'runtime/cli/cli.ts', 'worker', APP, '--nats', url, '--id', id];
  if (options.leaseMs) args.push('--lease-ms', String(options.leaseMs));
  args.push('--', app, options.checkpoint ?? '-', ...(options.appArgs ?? []));
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const watchers: { test: string | RegExp; resolve(): void }[] = [];
  const matches = (t: string | RegExp) => (typeof t === 'string' ? err.includes(t) : t.test(err));
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    for (const w of [...watchers]) {
      if (!matches(w.test)) continue;
      watchers.splice(watchers.indexOf(w), 1);
      w.resolve();
    }
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const waitFor = (text: string | RegExp) =>
    matches(text)
      ? Promise.resolve()
      : Promise.race([
          new Promise<void>((resolve) => watchers.push({ test: text, resolve })),
          exited.then((code) => {
            if (!matches(text)) throw new Error(`worker ${id} exited (${code}) before printing ${String(text)}:\n${err}`);
          }),
        ]);
  const w: WorkerProcess = {
    id,
    child,
    stderr: () => err,
    exited,
    waitFor,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  if (options.wait !== false) await waitFor('registered');
  return w;
}

/**
 * Starts `n` workers `<prefix>1..n` at once.
 *
 * @example
 * const workers = await startWorkers(server.url, 'join', 3, 'j');
 */
export function startWorkers(
  url: string,
  app: ClusterAppName,
  n: number,
  prefix: string,
  options: { readonly checkpoint?: string; readonly leaseMs?: number; readonly appArgs?: readonly string[] } = {},
): Promise<WorkerProcess[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startWorker(url, app, `${prefix}${i + 1}`, options)));
}

/** Stops every worker (they are the test's own children). */
export async function stopWorkers(workers: readonly WorkerProcess[]): Promise<void> {
  await Promise.all(workers.map((w) => w.stop()));
}

/**
 * Every output of `batches` batches of app `app` from `startMs` on a ManualClock,
 * by `<output>@<time>`: in this process, or on `cluster`'s running workers.
 *
 * @example
 * const reference = await runOutputs('windowed', START_MS, 18);
 */
export async function runOutputs(
  app: ClusterAppName,
  startMs: number,
  batches: number,
  cluster?: { readonly url: string; readonly workers: number },
): Promise<Map<string, unknown[]>> {
  const outputs = new Map<string, unknown[]>();
  const ssc = buildClusterApp(app, { clock: new ManualClock(startMs), emit: (o, time, r) => outputs.set(`${o}@${time}`, r) });
  if (cluster) ssc.cluster(cluster.url, { workers: cluster.workers });
  await ssc.start();
  await ssc.runBatches(batches);
  await ssc.stop();
  return outputs;
}
