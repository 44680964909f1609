/**
 * Property: one flipped byte anywhere in a checkpoint directory never yields a wrong
 * state. For every file (journal segments, snapshot files, the lock file) and every
 * part of a frame (length, CRC, payload) a byte is flipped in a copy of a crashed
 * app's directory, which then resumes: its outputs must equal those of an
 * uninterrupted run, or the resume must fail with a CORRUPT_CHECKPOINT that names
 * the damaged file. A damaged snapshot must never be fatal: an older chain, or a
 * replay from the start, takes its place.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { scanFrames } from '../../journal/codec.ts';
import type { DStream, State } from '../../runtime/api/index.ts';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { flipByte, quiet, snapshotFiles, TempDirs } from '../helpers/checkpoint-kit.ts';
import { BATCH_MS, canonical, type Emitted, keyOf, prng, runUninterrupted, wordBatches } from '../helpers/recovery-harness.ts';

/** The parts of a file a byte is flipped in. */
type ByteClass = 'length' | 'crc' | 'payload' | 'text';

/** One damaged copy to resume from. */
interface Case {
  /** The file, relative to the checkpoint directory. */
  readonly file: string;
  readonly offset: number;
  readonly part: ByteClass;
}

/** How resuming from one damaged copy went. */
type Outcome =
  | { readonly kind: 'exact' }
  | { readonly kind: 'refused'; readonly message: string }
  | { readonly kind: 'wrong'; readonly why: string };

interface Scenario {
  /** The crashed app's checkpoint directory (never resumed itself). */
  readonly dir: string;
  /** What the crashed run emitted. */
  readonly emitted: Emitted[];
  /** The newest checkpoint committed before the crash. */
  readonly lastCheckpointMs: number;
}

interface Ctx {
  dirs: TempDirs;
  expected: Emitted[];
}

const test = anyTest as TestFn<Ctx>;

const INTERVAL_MS = 2 * BATCH_MS;
/** With every 3rd snapshot full, the checkpoints of 8 s and 10 s both build on the full one of 8 s. */
const FULL_EVERY = 3;
/** Batches run after resuming. */
const MORE = 3;
const input = wordBatches(4711, 20);
const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;

/** A word count, sessions with a timeout and an inverse-reduced window: three kinds of snapshot. */
function app(ssc: StreamingContext, out: (name: string, stream: DStream<unknown>) => void): void {
  const pairs = ssc
    .queueStream(input)
    .flatMap((line) => line.split(' '))
    .filter((w) => w.length > 0)
    .map((w) => [w, 1] as [string, number]);
  out(
    'totals',
    pairs.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce(add, 0)).checkpoint(INTERVAL_MS) as DStream<unknown>,
  );
  const sessions = pairs.mapWithState({
    update: (key: string, value: number | undefined, state: State<number>) => {
      if (state.isTimingOut()) return `${key} timed out at ${state.get()}`;
      const n = (state.exists() ? state.get() : 0) + (value ?? 0);
      state.update(n);
      return `${key}=${n}`;
    },
    timeout: 3 * BATCH_MS,
  });
  out('sessions', sessions as DStream<unknown>);
  out('window', pairs.reduceByKeyAndWindow(add, sub, 4 * BATCH_MS, BATCH_MS) as DStream<unknown>);
}

function context(clock: ManualClock): StreamingContext {
  return new StreamingContext({
    appName: 'flipped',
    batchDuration: BATCH_MS,
    partitions: 2,
    clock,
    logger: quiet,
    snapshotFullEvery: FULL_EVERY,
  });
}

function recorded(clock: ManualClock, emitted: Emitted[]): StreamingContext {
  const ssc = context(clock);
  app(ssc, (name, stream) => stream.foreachBatch((records, time) => void emitted.push({ op: name, time, records: canonical(records) })));
  return ssc;
}

/** Runs `batches` batches on `dir`, then crashes once the checkpoint of `lastCheckpointMs` is committed. */
async function crashedRun(dir: string, batches: number, lastCheckpointMs: number): Promise<Scenario> {
  const emitted: Emitted[] = [];
  const ssc = recorded(new ManualClock(), emitted);
  ssc.checkpoint(dir);
  let committed!: () => void;
  const done = new Promise<void>((resolve) => {
    committed = resolve;
  });
  ssc.addStreamingListener({ onCheckpointCompleted: ({ time }) => void (time === lastCheckpointMs && committed()) });
  await ssc.start();
  await ssc.runBatches(batches);
  await done;
  ssc.crash();
  return { dir, emitted, lastCheckpointMs };
}

/** Every file under `dir`, relative to it, sorted. */
async function filesUnder(dir: string, sub = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, sub), { withFileTypes: true })) {
    const rel = path.join(sub, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

/**
 * The bytes to flip in one file, picked by a seeded PRNG: in a journal segment, one
 * byte of the length, one of the CRC and one of the payload of its first, middle and
 * last frame; in a snapshot file, one of each in frames picked at random; in a file
 * of text (the lock), three bytes.
 */
function casesOf(file: string, buf: Buffer, seed: number): Case[] {
  const next = prng(seed);
  const pick = (n: number) => Math.floor(next() * n);
  const scan = scanFrames(buf);
  const count = scan.offsets.length;
  if (file.endsWith('LOCK') || scan.stop !== undefined || count === 0) {
    return [0, 1, 2].map(() => ({ file, offset: pick(buf.length), part: 'text' as const }));
  }
  const framed = (k: number, part: 'length' | 'crc' | 'payload'): Case => {
    const at = scan.offsets[k] as number;
    const offset =
      part === 'length' ? at + pick(4) : part === 'crc' ? at + 4 + pick(4) : at + 8 + pick((scan.payloads[k] as Buffer).length);
    return { file, offset, part };
  };
  const parts = ['length', 'crc', 'payload'] as const;
  if (!file.startsWith('journal')) return parts.map((part) => framed(pick(count), part));
  return [...new Set([0, Math.floor(count / 2), count - 1])].flatMap((k) => parts.map((part) => framed(k, part)));
}

/** Every case of a scenario's directory. */
async function casesFor(scenario: Scenario): Promise<Case[]> {
  const files = await filesUnder(scenario.dir);
  const cases: Case[] = [];
  for (const [i, file] of files.entries()) cases.push(...casesOf(file, await fs.readFile(path.join(scenario.dir, file)), 1000 + i));
  return cases;
}

/**
 * The differences between the outputs of the crashed run and its resumption and the
 * uninterrupted run: every batch up to the end once with equal records, except that
 * batches after the last checkpoint may repeat (their completion may be cut off with
 * a torn journal tail), with equal records.
 */
function differences(expected: readonly Emitted[], got: readonly Emitted[], until: number, repeatAfter: number): string[] {
  const want = new Map(expected.filter((e) => e.time <= until).map((e) => [keyOf(e), JSON.stringify(e.records)]));
  const seen = new Map<string, number>();
  const out: string[] = [];
  for (const e of got) {
    const key = keyOf(e);
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const records = want.get(key);
    if (records === undefined) out.push(`${key}: not in the uninterrupted run`);
    else if (records !== JSON.stringify(e.records)) out.push(`${key}: got ${JSON.stringify(e.records)}, want ${records}`);
  }
  for (const [key, count] of seen) {
    if (count > 1 && Number(key.slice(key.lastIndexOf('@') + 1)) <= repeatAfter) out.push(`${key}: emitted ${count} times`);
  }
  for (const key of want.keys()) if (!seen.has(key)) out.push(`${key}: missing`);
  return out;
}

/** Resumes a copy of the scenario's directory with one byte flipped and runs MORE batches. */
async function resumeDamaged(t: { context: Ctx }, scenario: Scenario, c: Case): Promise<Outcome> {
  const copy = await t.context.dirs.make('flipped-case');
  await fs.cp(scenario.dir, copy, { recursive: true });
  const damaged = path.join(copy, c.file);
  await flipByte(damaged, c.offset);
  const crashedAt = Math.max(...scenario.emitted.map((e) => e.time));
  const clock = new ManualClock(crashedAt);
  const emitted: Emitted[] = [];
  let ssc: StreamingContext | undefined;
  try {
    ssc = await StreamingContext.getOrCreate(copy, () => recorded(clock, emitted), { clock });
    await ssc.start();
    await ssc.runBatches(MORE);
    await ssc.stop();
  } catch (error) {
    ssc?.crash();
    const { code, message } = error as { code?: string; message: string };
    if (code === 'CORRUPT_CHECKPOINT' && message.includes(damaged)) return { kind: 'refused', message };
    return { kind: 'wrong', why: `${code ?? 'no code'}: ${message}` };
  } finally {
    await fs.rm(copy, { recursive: true, force: true });
  }
  const diff = differences(t.context.expected, [...scenario.emitted, ...emitted], crashedAt + MORE * BATCH_MS, scenario.lastCheckpointMs);
  return diff.length === 0
    ? { kind: 'exact' }
    : { kind: 'wrong', why: `${diff.length} differences, first: ${diff.slice(0, 3).join('; ')}` };
}

/** Runs every case; returns the failures, and counts of each outcome by kind of file. */
async function check(
  t: { context: Ctx },
  scenario: Scenario,
): Promise<{ failures: string[]; counts: Record<string, number>; cases: number }> {
  const failures: string[] = [];
  const counts: Record<string, number> = {};
  const cases = await casesFor(scenario);
  for (const c of cases) {
    const outcome = await resumeDamaged(t, scenario, c);
    const kind = c.file.startsWith('snapshots') ? 'snapshot' : c.file.startsWith('journal') ? 'journal' : 'other';
    const label = `${kind} ${outcome.kind}`;
    counts[label] = (counts[label] ?? 0) + 1;
    const where = `${c.file} @${c.offset} (${c.part})`;
    if (outcome.kind === 'wrong') failures.push(`${where}: ${outcome.why}`);
    // A damaged snapshot is never fatal: an older chain or the journal takes its place.
    else if (outcome.kind === 'refused' && kind === 'snapshot') failures.push(`${where}: refused: ${outcome.message}`);
  }
  return { failures, counts, cases: cases.length };
}

test.before(async (t) => {
  const expected = await runUninterrupted(app, { batches: 20, partitions: 2, snapshotFullEvery: FULL_EVERY });
  t.context = { dirs: new TempDirs(), expected };
});

test.after.always(async (t) => {
  await t.context.dirs.removeAll();
});

test('flipped bytes - in any file of a checkpoint whose retained checkpoints share a full snapshot, never a wrong state', async (t) => {
  const dir = await t.context.dirs.make('flipped-shared');
  // Checkpoints at 2, 4, 6, 8 and 10 s (full at 2 and 8); the crash leaves batch 11 to replay.
  const scenario = await crashedRun(dir, 11, 10 * BATCH_MS);
  const kept = new Set((await snapshotFiles(dir)).map((f) => path.basename(f)));
  // The chain of 6 s (on the full one of 2 s) stays as a fallback for the one of 8 s.
  t.deepEqual([...kept].sort(), ['10000.cbor', '2000.cbor', '4000.cbor', '6000.cbor', '8000.cbor']);
  const { failures, counts, cases } = await check(t, scenario);
  t.log(`${cases} cases: ${JSON.stringify(counts)}`);
  t.deepEqual(failures, []);
});

test('flipped bytes - before any second full snapshot, a damaged snapshot falls back to a replay from the start', async (t) => {
  const dir = await t.context.dirs.make('flipped-young');
  // Checkpoints at 2, 4 and 6 s, all on the full one of 2 s: only the journal can replace it.
  const scenario = await crashedRun(dir, 7, 6 * BATCH_MS);
  const { failures, counts, cases } = await check(t, scenario);
  t.log(`${cases} cases: ${JSON.stringify(counts)}`);
  t.deepEqual(failures, []);
});
