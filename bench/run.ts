/**
 * `npm run bench`: Tributary's benchmarks, printed as ONE table on stdout (progress
 * lines go to stderr). Everything is measured in the same process, one benchmark
 * after the other, on data generated deterministically
 * (actors/receivers/text-generator.ts and fixed key names), so two runs see the
 * same records.
 *
 *   1. word-count  stateless word count (flatMap split -> map [w, 1] -> reduceByKey):
 *                  Tributary (2 partitions, the default; 1 partition shown for
 *                  reference) vs a hand-written loop vs RxJS, the same 200k lines,
 *                  median of 7 interleaved runs after a warm-up; only runBatches is
 *                  timed. Targets: >= 0.75x the loop, >= 1.5x RxJS (records = lines);
 *                  where the time goes: user functions, stage chains, shuffle, the rest.
 *   2. windowed    reduceByKeyAndWindow with an inverse over 100k keys (every batch
 *                  touches all of them), window = 3 vs 30 batches, slide 1: median
 *                  per-batch time once the window is full. Target: <= 1.3x.
 *   3. state       updateStateByKey (vs a plain loop calling the same update over a Map
 *                  of the same keys, target <= 2x) vs mapWithState with 1M string keys, 10k-record
 *                  batches; mapWithState at 1M vs 100k keys, run in alternation
 *                  (target <= 1.5x); heap bytes per state key (heapUsed after a forced
 *                  GC, before and after loading the keys in a fresh context; target
 *                  <= 100 B).
 *   4. checkpoint  what `ssc.checkpoint(dir)` costs: word count and updateStateByKey
 *                  (100k keys) with checkpointing off vs on, alternated, 60 batches,
 *                  a checkpoint every 10 (target: on/off throughput >= 0.9x);
 *                  snapshot writeMs and size at 1M keys, full vs incremental (1% of
 *                  the keys touched), with the largest event-loop stall of a full write
 *                  (target <= 50 ms); recovery of 1M keys after a crash (getOrCreate +
 *                  start + 10 replayed batches, target < 2 s) with its breakdown.
 *                  See bench/checkpoint.ts.
 *   5. nats        on a nats-server started for the run (skipped if the binary is
 *                  missing): the updateStateByKey workload of 4 with checkpoints in
 *                  JetStream vs a directory vs off (target JetStream/off >= 0.9x);
 *                  jetstreamStream's read rate vs an ordered consumer's raw rate on a
 *                  500k-message stream (target >= 0.8x), and the replay after a crash.
 *                  See bench/nats.ts.
 *   6. cluster     a nats-server and two worker processes: a CPU-bound job (20 µs a
 *                  record + reduceByKey) on 1 vs 2 workers (target >= 1.6x), the
 *                  bytes/s the workers' data plane moved, and the stateless word
 *                  count on 2 workers vs in-process. See bench/cluster.ts.
 *
 * Each section ends with the machine's load average before and after it and the
 * widest spread ((max - min) / median) of its repeated timed runs; a section whose
 * runs spread more than 20% runs again (up to 3 times in all), and says so.
 *
 * Per-batch times (2, 3) are the wall time of `runBatches(1)` plus the state commit
 * that nact runs just after it resolves; BatchInfo.processingMs, which leaves the
 * commit out, is printed alongside. A missed target prints "NOT met" and never
 * changes the exit code. The process re-executes itself with --expose-gc (needed for
 * the heap measurements). `npm run bench -- word-count state` runs a subset.
 * Takes about three and a half minutes on a 2-core machine (checkpoint: ~1.5 of them,
 * nats: ~1).
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { benchCheckpoint } from './checkpoint.ts';
import { benchCluster } from './cluster.ts';
import { benchNats } from './nats.ts';
import { benchState } from './state.ts';
import { type Row, renderTable } from './table.ts';
import { progress, takeSpreads } from './util.ts';
import { benchWindowed } from './windowed.ts';
import { benchWordCount } from './word-count.ts';

const BENCHES: Record<string, () => Promise<Row[]>> = {
  'word-count': () => benchWordCount(),
  windowed: () => benchWindowed(),
  state: () => benchState(),
  checkpoint: () => benchCheckpoint(),
  nats: () => benchNats(),
  cluster: () => benchCluster(),
};

function reexecWithGc(): never {
  const script = process.argv[1] as string;
  const child = spawnSync(process.execPath, [...process.execArgv, '--expose-gc', script, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (child.error) throw child.error;
  process.exit(child.status ?? 1);
}

/** Repeated runs of a section may spread this much ((max - min) / median) before it runs again. */
const SPREAD_MAX = 0.2;
/** Runs of one section at most (the first and two repeats). */
const ATTEMPTS_MAX = 3;

function loadAverage(): string {
  return os.loadavg()[0]?.toFixed(2) ?? 'n/a';
}

function percent(v: number): string {
  return `${(v * 100).toFixed(0)}%`;
}

/**
 * Runs one section, and again (up to ATTEMPTS_MAX times) while the timed runs of
 * something it measured spread more than SPREAD_MAX: a noisy neighbour, not the
 * code. Its rows end with the machine's load before and after, the widest spread,
 * and the repeats, so a reader can judge the figures.
 */
async function runSection(name: string): Promise<Row[]> {
  const earlier: string[] = [];
  for (let attempt = 1; ; attempt++) {
    const before = loadAverage();
    takeSpreads();
    const t0 = performance.now();
    const rows = await (BENCHES[name] as () => Promise<Row[]>)();
    const after = loadAverage();
    const widest = takeSpreads()[0];
    progress(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s (load ${before} -> ${after})`);
    const spread = widest === undefined ? 'no repeated runs' : `widest spread of runs ${percent(widest.spread)} (${widest.label})`;
    if (widest !== undefined && widest.spread > SPREAD_MAX && attempt < ATTEMPTS_MAX) {
      progress(`${name}: ${spread} > ${percent(SPREAD_MAX)}: running the section again`);
      earlier.push(`${percent(widest.spread)} at load ${before}-${after}`);
      continue;
    }
    const repeats = earlier.length === 0 ? '' : `; run ${attempt} times, earlier spreads ${earlier.join(', ')} (noisy neighbours)`;
    const bench = rows[0]?.bench ?? name;
    return [
      ...rows,
      {
        bench,
        measure: `machine load (1-min average, ${os.cpus().length} cores): ${before} before, ${after} after; ${spread}${repeats}`,
        value: '',
      },
    ];
  }
}

async function main(): Promise<void> {
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') reexecWithGc();
  const asked = process.argv.slice(2);
  for (const name of asked) {
    if (!(name in BENCHES)) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(BENCHES).join(', ')}`);
  }
  const names = asked.length > 0 ? asked : Object.keys(BENCHES);
  const started = performance.now();
  const rows: Row[] = [];
  for (const name of names) rows.push(...(await runSection(name)));
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  const title = `Tributary benchmarks (node ${process.version}, ${process.arch}; medians; total ${seconds} s)`;
  process.stdout.write(`${renderTable(title, rows)}\n`);
}

await main();
