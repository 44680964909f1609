/**
 * Benchmark 1: stateless word count (flatMap split -> map to [w, 1] -> reduceByKey
 * sum), batch by batch, over the same lines in three implementations: Tributary
 * (ManualClock + queueStream + foreachBatch), a hand-written loop (a Map of counts
 * per batch) and RxJS (from(lines) -> mergeMap split -> map -> reduce into a Map).
 */
import { from, map, mergeMap, reduce } from 'rxjs';
import { StreamingContext, textLine } from '../runtime/api/index.ts';
import { ManualClock } from '../runtime/api/testing.ts';
import { splitIntoPartitions } from '../runtime/base/arrays.ts';
import { flatMapOp, mapOp, runChain } from '../runtime/graph/operators/narrow.ts';
import { combineByKeyShuffle } from '../runtime/graph/operators/shuffle.ts';
import { ms, type Row, rate, ratio, targetRow } from './table.ts';
import { fullGc, median, medianOfRuns, progress, quietLogger, settle, timeMs } from './util.ts';

/** Sizes of the word-count data. */
export interface WordCountConfig {
  readonly lines: number;
  readonly batches: number;
  readonly wordsPerLine: number;
  readonly vocabulary: number;
  /** Partitions of the measured Tributary context (the default of a context is 2). */
  readonly partitions: number;
  readonly runs: number;
  readonly seed: number;
}

export const WORD_COUNT_DEFAULTS: WordCountConfig = {
  lines: 200_000,
  batches: 10,
  wordsPerLine: 8,
  vocabulary: 10_000,
  partitions: 2,
  runs: 7,
  seed: 42,
};

/** Per-batch result of one implementation: distinct words and total count, to cross-check them. */
type Summary = { distinct: number; total: number }[];

/** The generated lines, split into batches. */
export function wordCountBatches(cfg: WordCountConfig): string[][] {
  const perBatch = Math.ceil(cfg.lines / cfg.batches);
  const batches: string[][] = [];
  for (let b = 0; b < cfg.batches; b++) {
    const lines: string[] = [];
    const end = Math.min(cfg.lines, (b + 1) * perBatch);
    for (let i = b * perBatch; i < end; i++)
      lines.push(textLine(i, cfg.seed, { vocabulary: cfg.vocabulary, wordsPerLine: cfg.wordsPerLine }));
    batches.push(lines);
  }
  return batches;
}

function summarizeMaps(maps: Map<string, number>[]): Summary {
  return maps.map((m) => {
    let total = 0;
    for (const n of m.values()) total += n;
    return { distinct: m.size, total };
  });
}

function summarizePairs(batches: [string, number][][]): Summary {
  return batches.map((pairs) => {
    let total = 0;
    for (const [, n] of pairs) total += n;
    return { distinct: new Set(pairs.map(([w]) => w)).size, total };
  });
}

/** The hand-written loop: a Map of counts per batch. */
export function plainLoop(batches: readonly string[][]): Map<string, number>[] {
  const out: Map<string, number>[] = [];
  for (const lines of batches) {
    const counts = new Map<string, number>();
    for (let i = 0; i < lines.length; i++) {
      const words = (lines[i] as string).split(' ');
      for (let j = 0; j < words.length; j++) {
        const w = words[j] as string;
        counts.set(w, (counts.get(w) ?? 0) + 1);
      }
    }
    out.push(counts);
  }
  return out;
}

/** The same pipeline in RxJS, one (synchronous) reduce per batch. */
function rxjsPipeline(batches: readonly string[][]): Map<string, number>[] {
  const out: Map<string, number>[] = [];
  for (const lines of batches) {
    from(lines)
      .pipe(
        mergeMap((line) => line.split(' ')),
        map((w) => [w, 1] as [string, number]),
        reduce((counts, [w, n]) => counts.set(w, (counts.get(w) ?? 0) + n), new Map<string, number>()),
      )
      .subscribe((counts) => out.push(counts));
  }
  return out;
}

/** Tributary: a fresh context per run; only `runBatches` is timed (start and stop are not). */
export async function tributary(batches: readonly string[][], partitions: number): Promise<{ ms: number; out: [string, number][][] }> {
  const ssc = new StreamingContext({ appName: 'bench-wc', batchDuration: 1000, partitions, clock: new ManualClock(), logger: quietLogger });
  const out: [string, number][][] = [];
  ssc
    .queueStream(batches)
    .flatMap((line) => line.split(' '))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .foreachBatch((records) => {
      out.push(records);
    });
  await ssc.start();
  const elapsed = await timeMs(() => ssc.runBatches(batches.length));
  await ssc.stop();
  await settle();
  return { ms: elapsed, out };
}

/** Milliseconds of each part of Tributary's work on the batches, measured outside the engine. */
interface Breakdown {
  /** The user functions alone (split, and a [w, 1] pair per word), in a loop. */
  readonly functions: number;
  /** The fused chain (flatMap -> map) over each input partition, into a no-op sink. */
  readonly chains: number;
  /** The chains into the map-side combiner, then the reduce side of each output partition. */
  readonly shuffle: number;
}

const splitLine = (line: string) => line.split(' ');
const pairOf = (w: string): [string, number] => [w, 1];
const sum = (a: number, b: number) => a + b;

/** Runs the word count's parts the way a batch runs them, each timed alone. */
function breakdown(batches: readonly string[][], partitions: number): Breakdown {
  const ops = [flatMapOp(splitLine, 'flatMap'), mapOp(pairOf)];
  const shuffle = combineByKeyShuffle<number, number>((v) => v, sum, sum, true);
  let functions = 0;
  let chains = 0;
  let shuffled = 0;
  let sink = 0;
  for (const lines of batches) {
    const parts = splitIntoPartitions(lines, partitions) as string[][];
    let t = performance.now();
    for (const part of parts) for (const line of part) for (const w of splitLine(line)) sink += pairOf(w)[1];
    functions += performance.now() - t;
    t = performance.now();
    for (const part of parts) runChain(ops, part, 0, () => void sink++);
    chains += performance.now() - t;
    t = performance.now();
    // As one process runs it: every partition into one map-side combiner, whose items
    // hold each key once, so the reduce side takes them as they are.
    const side = shuffle.mapSide(0, 0, partitions);
    for (const part of parts) runChain(ops, part, 0, side.sink);
    const buckets = side.finish();
    for (let q = 0; q < partitions; q++) sink += shuffle.reduceSide([buckets[q] ?? []], 0, [true]).length;
    shuffled += performance.now() - t;
  }
  if (sink < 0) throw new Error('unreachable: keeps the work observable');
  return { functions, chains, shuffle: shuffled };
}

function sameSummary(a: Summary, b: Summary): boolean {
  return a.length === b.length && a.every((x, i) => x.distinct === b[i]?.distinct && x.total === b[i]?.total);
}

/** Runs benchmark 1 and returns its table rows. */
export async function benchWordCount(cfg: WordCountConfig = WORD_COUNT_DEFAULTS): Promise<Row[]> {
  const name = '1. word count';
  progress(`${name}: generating ${cfg.lines.toLocaleString('en-US')} lines (${cfg.wordsPerLine} words, vocabulary ${cfg.vocabulary})`);
  const batches = wordCountBatches(cfg);

  // Warm-up, and a check that the three agree batch by batch.
  progress(`${name}: warm-up and cross-check`);
  const expected = summarizeMaps(plainLoop(batches));
  const rx = summarizeMaps(rxjsPipeline(batches));
  const trib = summarizePairs((await tributary(batches, cfg.partitions)).out);
  if (!sameSummary(expected, rx)) throw new Error('word count: RxJS disagrees with the plain loop');
  if (!sameSummary(expected, trib)) throw new Error('word count: Tributary disagrees with the plain loop');
  await tributary(batches, 1);

  const times = { tributary: [] as number[], single: [] as number[], plain: [] as number[], rxjs: [] as number[] };
  const parts = { functions: [] as number[], chains: [] as number[], shuffle: [] as number[] };
  for (let run = 1; run <= cfg.runs; run++) {
    progress(`${name}: run ${run}/${cfg.runs}`);
    fullGc();
    times.plain.push(await timeMs(() => plainLoop(batches)));
    fullGc();
    times.tributary.push((await tributary(batches, cfg.partitions)).ms);
    fullGc();
    times.rxjs.push(await timeMs(() => rxjsPipeline(batches)));
    fullGc();
    times.single.push((await tributary(batches, 1)).ms);
  }
  // The breakdown runs the engine's operators with functions of its own: after the
  // timed runs, so that their call sites see only the app's functions while timed.
  for (let run = 1; run <= cfg.runs; run++) {
    fullGc();
    const b = breakdown(batches, cfg.partitions);
    parts.functions.push(b.functions);
    parts.chains.push(b.chains);
    parts.shuffle.push(b.shuffle);
  }
  const fn = median(parts.functions);
  const chain = median(parts.chains);
  const shuffleMs = median(parts.shuffle);
  const share = (v: number) => `${ms(v)}/run (${((v / t) * 100).toFixed(0)}% of Tributary's)`;
  const t = medianOfRuns('word count: Tributary', times.tributary);
  const p = medianOfRuns('word count: plain loop', times.plain);
  const r = medianOfRuns('word count: RxJS', times.rxjs);
  // Each run times the loop, Tributary and RxJS one right after the other: the ratio
  // within a run compares them under the same load, where the medians of each (taken
  // at different moments of a shared machine, whose load moves a run by 2x) need not.
  const vsLoop = median(times.plain.map((x, i) => x / (times.tributary[i] as number)));
  const vsRx = median(times.rxjs.map((x, i) => x / (times.tributary[i] as number)));
  const perSecond = (elapsedMs: number) => (cfg.lines / elapsedMs) * 1000;
  const value = (elapsedMs: number) => `${rate(perSecond(elapsedMs), 'rec/s')} (${ms(elapsedMs)}/run)`;
  const shape = `${cfg.lines / 1000}k lines x ${cfg.wordsPerLine} words, ${cfg.batches} batches, vocabulary ${cfg.vocabulary / 1000}k`;
  return [
    { bench: name, measure: `${shape}; records = lines; median of ${cfg.runs} runs`, value: '' },
    { bench: name, measure: `Tributary, ${cfg.partitions} partitions (targets)`, value: value(t) },
    { bench: name, measure: 'Tributary, 1 partition (for reference)', value: value(median(times.single)) },
    { bench: name, measure: 'plain loop (Map per batch)', value: value(p) },
    { bench: name, measure: 'RxJS 7 (mergeMap/map/reduce)', value: value(r) },
    targetRow(name, "Tributary / plain loop (median of the 7 runs' ratios)", vsLoop, { op: '>=', limit: 0.75 }, ratio),
    targetRow(name, "Tributary / RxJS (median of the 7 runs' ratios)", vsRx, { op: '>=', limit: 1.5 }, ratio),
    { bench: name, measure: 'the same from the medians above (loop, RxJS)', value: `${ratio(p / t)}, ${ratio(r / t)}` },
    { bench: name, measure: 'where the time goes: user functions alone (split, [w, 1])', value: share(fn) },
    { bench: name, measure: '  stage chains (flatMap -> map fused, per partition), functions included', value: share(chain) },
    { bench: name, measure: '  chains + shuffle (one map-side combiner, split by key, reduce side)', value: share(shuffleMs) },
    {
      bench: name,
      measure: '  the rest: actors, messages between driver and workers, batch bookkeeping',
      value: share(Math.max(0, t - shuffleMs)),
    },
  ];
}
