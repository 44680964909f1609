/**
 * Benchmark 6: scale-out on a cluster. A nats-server and two `tributary worker`
 * processes are started for the run; the benchmark process is the driver (a
 * ManualClock, so batches run back to back as fast as the workers go).
 *
 * - cpu: 20 µs of CPU per record plus a keyed reduce, 16,000 records a batch (320 ms
 *   of CPU), on 1 worker and on 2 workers, alternated, median of 3: target 2 workers
 *   >= 1.6x one worker. On a 2-core
 *   machine the two workers have a core each; the driver's share is small.
 * - shuffle: bytes the workers' data plane sent per second (from the workers' own
 *   counters, printed when they stop). The generator is read where each partition is
 *   computed, so only shuffles move records: few in cpu (97 keys), many in words.
 * - words: the stateless word count on 2 workers vs in-process: what moving every
 *   record between processes costs when the work per record is tiny.
 *
 * Every run's outputs are compared with an in-process run's (the same per-batch
 * totals), so a fast but wrong cluster does not pass.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../runtime/api/testing.ts';
import { startNatsServer } from '../runtime/cli/nats-server-launcher.ts';
import { BATCH_MS, type BenchAppKind, buildBenchApp } from './cluster-app.ts';
import { ms, type Row, rate, ratio, targetRow } from './table.ts';
import { median, medianOfRuns, progress } from './util.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = 3;
const BATCHES = 8;
const CPU_RATE = 16_000;
const WORDS_RATE = 20_000;

interface WorkerChild {
  readonly child: ChildProcess;
  stderr: string;
  readonly exited: Promise<void>;
}

function startWorker(url: string, kind: BenchAppKind, id: string, rateArg: number): Promise<WorkerChild> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'runtime/cli/cli.ts', 'worker', 'bench/cluster-app.ts', '--nats', url, '--id', id, '--', kind, String(rateArg)],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const w: WorkerChild = { child, stderr: '', exited: new Promise((resolve) => child.once('exit', () => resolve())) };
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => {
      w.stderr += c.toString();
      if (w.stderr.includes('registered')) resolve(w);
    });
    void w.exited.then(() => reject(new Error(`worker ${id} exited: ${w.stderr}`)));
  });
}

async function stopWorker(w: WorkerChild): Promise<number> {
  w.child.kill('SIGTERM');
  await w.exited;
  const m = /data plane sent \d+ messages \((\d+) bytes/.exec(w.stderr);
  return m ? Number(m[1]) : 0;
}

type Totals = string[];

/** Runs BATCHES batches; resolves with the elapsed ms and per-batch output digests. */
async function runOnce(
  kind: BenchAppKind,
  rateArg: number,
  cluster: { url: string; workers: number } | undefined,
): Promise<{ ms: number; totals: Totals }> {
  const totals: Totals = [];
  const ssc = buildBenchApp(kind, rateArg, {
    clock: new ManualClock(3_000_000 * BATCH_MS),
    emit: (time, records) => {
      let sum = 0;
      for (const r of records as [unknown, number][]) sum += r[1];
      totals.push(`${time}:${records.length}:${sum}`);
    },
  });
  if (cluster) ssc.cluster(cluster.url, { workers: cluster.workers });
  await ssc.start();
  // The first batch pays for connections and code warm-up: not timed.
  await ssc.runBatches(1);
  const t0 = performance.now();
  await ssc.runBatches(BATCHES);
  const elapsed = performance.now() - t0;
  await ssc.stop();
  return { ms: elapsed, totals };
}

function sameTotals(a: Totals, b: Totals, what: string): void {
  if (a.join() !== b.join()) throw new Error(`${what}: the cluster's outputs differ from the in-process run's`);
}

/** The cluster benchmark's rows. */
export async function benchCluster(): Promise<Row[]> {
  progress('6. cluster: starting a nats-server and 2 workers');
  const server = await startNatsServer();
  const rows: Row[] = [];
  try {
    // cpu: 1 vs 2 workers. A driver uses every live worker (one that registers later joins),
    // so the second worker runs only during the 2-worker runs.
    const first = await startWorker(server.url, 'cpu', 'a1', CPU_RATE);
    const reference = await runOnce('cpu', CPU_RATE, undefined);
    const one: number[] = [];
    const two: number[] = [];
    let bytes = 0;
    for (let r = 0; r < RUNS; r++) {
      progress(`6. cluster: cpu run ${r + 1}/${RUNS}`);
      const a = await runOnce('cpu', CPU_RATE, { url: server.url, workers: 1 });
      sameTotals(a.totals, reference.totals, 'cpu on 1 worker');
      one.push(a.ms);
      const second = await startWorker(server.url, 'cpu', `a2-${r}`, CPU_RATE);
      const b = await runOnce('cpu', CPU_RATE, { url: server.url, workers: 2 });
      sameTotals(b.totals, reference.totals, 'cpu on 2 workers');
      two.push(b.ms);
      bytes += await stopWorker(second);
    }
    const records = CPU_RATE * BATCHES;
    const perSec = (msv: number) => (records / msv) * 1000;
    bytes += await stopWorker(first);
    const clusterMs = one.reduce((a, b) => a + b, 0) + two.reduce((a, b) => a + b, 0);
    rows.push({
      bench: 'cluster',
      measure: `cpu (${20} µs/record + reduceByKey), in-process`,
      value: rate(perSec(reference.ms), 'records/s'),
    });
    rows.push({ bench: 'cluster', measure: 'cpu, 1 worker', value: rate(perSec(median(one)), 'records/s') });
    rows.push({ bench: 'cluster', measure: 'cpu, 2 workers', value: rate(perSec(median(two)), 'records/s') });
    rows.push(
      targetRow(
        'cluster',
        'cpu: 2 workers / 1 worker',
        medianOfRuns('cluster: cpu, 1 worker', one) / medianOfRuns('cluster: cpu, 2 workers', two),
        { op: '>=', limit: 1.6 },
        ratio,
      ),
    );
    rows.push({
      bench: 'cluster',
      measure: 'data plane: bytes the workers sent during the cpu runs (only the reduce shuffle)',
      value: `${rate((bytes / clusterMs) * 1000, 'B/s')} (${(bytes / 1e6).toFixed(1)} MB over ${ms(clusterMs)})`,
    });

    // words: 2 workers vs in-process.
    const workers = await Promise.all([
      startWorker(server.url, 'words', 'b1', WORDS_RATE),
      startWorker(server.url, 'words', 'b2', WORDS_RATE),
    ]);
    const local: number[] = [];
    const dist: number[] = [];
    let ref: Totals | undefined;
    for (let r = 0; r < RUNS; r++) {
      progress(`6. cluster: words run ${r + 1}/${RUNS}`);
      const a = await runOnce('words', WORDS_RATE, undefined);
      ref ??= a.totals;
      local.push(a.ms);
      const b = await runOnce('words', WORDS_RATE, { url: server.url, workers: 2 });
      sameTotals(b.totals, ref, 'words on 2 workers');
      dist.push(b.ms);
    }
    let wordBytes = 0;
    for (const w of workers) wordBytes += await stopWorker(w);
    const wordsMs = local.reduce((x, y) => x + y, 0) + dist.reduce((x, y) => x + y, 0);
    const lines = WORDS_RATE * BATCHES;
    rows.push({
      bench: 'cluster',
      measure: 'words (stateless word count), in-process',
      value: rate((lines / median(local)) * 1000, 'lines/s'),
    });
    rows.push({ bench: 'cluster', measure: 'words, 2 workers', value: rate((lines / median(dist)) * 1000, 'lines/s') });
    rows.push({
      bench: 'cluster',
      measure: "words: 2 workers / in-process (the data plane's cost)",
      value: ratio(median(local) / median(dist)),
    });
    rows.push({
      bench: 'cluster',
      measure: 'data plane: shuffle bytes the workers sent during the words runs',
      value: `${rate((wordBytes / (wordsMs / 2)) * 1000, 'B/s')} (${(wordBytes / 1e6).toFixed(1)} MB over ${ms(wordsMs / 2)})`,
    });
  } finally {
    await server.stop();
  }
  return rows;
}
