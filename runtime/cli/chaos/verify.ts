/**
 * Checks a finished chaos run against its oracle: every batch's counts written once
 * and right, nothing lost, no duplicate in the exactly-once sinks, final state equal.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { badInputMessages, INPUT_WORD_PREFIX, inputWordCounts } from './bad-input.ts';
import { countWords, seqAt, type WorkloadOptions } from './word-count-workload.ts';

/** What the outputs of a run say. */
export interface Verdict {
  readonly recordsIn: number;
  readonly recordsLost: number;
  readonly batchesExpected: number;
  readonly batchesMissing: number;
  readonly batchesMismatched: number;
  readonly duplicates: number;
  readonly finalStateMismatches: number;
  /**
   * With bad input: words of the good records whose count summed over every batch
   * differs from the oracle (a message lost, counted twice, or a malformed one
   * counted); 0 without bad input.
   */
  readonly inputMismatches: number;
}

/** Splits a batch's counts into the generator's words and the bad input's words. */
function splitCounts(counts: Map<string, number>): { generated: Map<string, number>; input: Map<string, number> } {
  const generated = new Map<string, number>();
  const input = new Map<string, number>();
  for (const [w, n] of counts) (w.startsWith(INPUT_WORD_PREFIX) ? input : generated).set(w, n);
  return { generated, input };
}

function addInto(into: Map<string, number>, counts: Map<string, number>): void {
  for (const [w, n] of counts) into.set(w, (into.get(w) ?? 0) + n);
}

function differingKeys(a: Map<string, number>, b: Map<string, number>): number {
  let n = 0;
  for (const k of new Set([...a.keys(), ...b.keys()])) if (a.get(k) !== b.get(k)) n++;
  return n;
}

function sameCounts(a: Map<string, number>, b: Map<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** Reads the per-batch directories `counts-<time>`: their counts by batch time. */
async function readBatchDirs(outDir: string): Promise<{ byTime: Map<number, Map<string, number>>; partial: number }> {
  const dir = path.join(outDir, 'batches');
  const byTime = new Map<number, Map<string, number>>();
  let partial = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const m = /^counts-(\d+)$/.exec(name);
    if (!m) {
      if (name.startsWith('.')) continue;
      partial++;
      continue;
    }
    const text = await fs.readFile(path.join(dir, name, 'part-00000'), 'utf8').catch(() => undefined);
    if (text === undefined) {
      partial++;
      continue;
    }
    const counts = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const [w, n] = JSON.parse(line) as [string, number];
      counts.set(w, n);
    }
    byTime.set(Number(m[1]), counts);
  }
  return { byTime, partial };
}

/**
 * Compares the run's outputs with the oracle.
 *
 * @example
 * const verdict = await verifyRun(options, zeroTimeMs, jetStreamResults);
 */
export async function verifyRun(
  options: WorkloadOptions,
  zeroTimeMs: number,
  jetStreamResults?: readonly [number, string, number][],
): Promise<Verdict> {
  const d = options.batchDurationMs;
  const expected = new Map<number, Map<string, number>>();
  for (let t = zeroTimeMs + d; seqAt(options, zeroTimeMs, t - d) < options.records; t += d) {
    expected.set(t, countWords(options.seed, seqAt(options, zeroTimeMs, t - d), seqAt(options, zeroTimeMs, t)));
  }
  const { byTime, partial } = await readBatchDirs(options.outDir);
  const inputOracle = options.input ? inputWordCounts(badInputMessages(options.input.seed, options.input.messages)) : new Map();
  let missing = 0;
  let mismatched = partial;
  let processedWords = 0;
  for (const [t, want] of expected) {
    const got = byTime.get(t);
    if (got === undefined) {
      missing++;
      continue;
    }
    const { generated } = splitCounts(got);
    if (!sameCounts(generated, want)) mismatched++;
    for (const n of generated.values()) processedWords += n;
  }
  // Input messages land in whichever batch allocated them: compare their sum over all batches.
  const inputSeen = new Map<string, number>();
  for (const got of byTime.values()) addInto(inputSeen, splitCounts(got).input);
  let inputMismatches = differingKeys(inputSeen, inputOracle);
  let duplicates = 0;
  if (jetStreamResults !== undefined) {
    const seen = new Set<string>();
    for (const [t, w] of jetStreamResults) {
      const key = `${t}/${w}`;
      if (seen.has(key)) duplicates++;
      seen.add(key);
    }
    const fromStream = new Map<number, Map<string, number>>();
    for (const [t, w, n] of jetStreamResults) {
      const m = fromStream.get(t) ?? new Map<string, number>();
      m.set(w, n);
      fromStream.set(t, m);
    }
    for (const [t, want] of expected) {
      const got = fromStream.get(t);
      if (got === undefined) missing++;
      else if (!sameCounts(splitCounts(got).generated, want)) mismatched++;
    }
    const inputFromStream = new Map<string, number>();
    for (const got of fromStream.values()) addInto(inputFromStream, splitCounts(got).input);
    inputMismatches += differingKeys(inputFromStream, inputOracle);
  }
  const oracle = countWords(options.seed, 0, options.records);
  let totalWords = 0;
  for (const n of oracle.values()) totalWords += n;
  const totalsFile = await fs.readFile(path.join(options.outDir, 'totals.json'), 'utf8').catch(() => '{"totals":{}}');
  const totals = new Map(Object.entries((JSON.parse(totalsFile) as { totals: Record<string, number> }).totals));
  addInto(oracle, inputOracle);
  const finalStateMismatches = differingKeys(oracle, totals);
  return {
    recordsIn: totalWords,
    recordsLost: Math.max(0, totalWords - processedWords),
    batchesExpected: expected.size,
    batchesMissing: missing,
    batchesMismatched: mismatched,
    duplicates,
    finalStateMismatches,
    inputMismatches,
  };
}
