/**
 * Runs one app on a ManualClock, either uninterrupted (the oracle) or with a
 * checkpoint directory and a script of crashes, graceful stops and resumes, and
 * records every output batch with its time. The recovery suites compare the two:
 * state exactly-once, outputs exactly-once except the batch in flight at a crash.
 */

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { scanFrames } from '../../journal/codec.ts';
import type { JournalEvent } from '../../journal/events.ts';
import type { DStream } from '../../runtime/api/index.ts';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { decodeValue } from '../../runtime/base/cbor.ts';
import { seededRandom } from '../../runtime/cli/chaos/rng.ts';
import { isNatsUrl } from '../../runtime/nats/nats-connection.ts';
import { readJetStreamJournal } from './jetstream-journal-kit.ts';
import { compareValues } from './run-operation.ts';

/** Batch i of a context started at ManualClock(0) runs at i * BATCH_MS. */
export const BATCH_MS = 1000;

const quiet = pino({ level: 'silent' });

/** One output call: which output, which batch time, the records (sorted). */
export interface Emitted {
  readonly op: string;
  readonly time: number;
  readonly records: unknown[];
}

/** Registers an output named `name` on `stream`. */
export type Out = (name: string, stream: DStream<unknown>) => void;

/** Declares an app's streams on a context; must be deterministic (it runs once per start). */
export type AppBuilder = (ssc: StreamingContext, out: Out) => void;

/** What happens at batch `at` (1-based) of a run with a checkpoint directory. */
export interface Interruption {
  readonly at: number;
  /**
   * `between`: crash once batch `at` completed (nothing in flight);
   * `in-output`: crash inside the first output of batch `at` or later, once it is
   * recorded (that batch is in flight: its outputs may repeat); `graceful`: stop() after batch `at`;
   * `in-replay`: crash when the first batch after start() completed, while replayed and
   * downtime batches still wait (`at` unused).
   */
  readonly mode: 'between' | 'in-output' | 'graceful' | 'in-replay';
  /** Batches of downtime (the clock moves on while the app is down). */
  readonly downtime?: number;
  /** Before interrupting, wait until the checkpoint of this batch is committed. */
  readonly afterCheckpoint?: number;
}

/** How a run goes. */
export interface RunSpec {
  /** Batches in all. */
  readonly batches: number;
  readonly interruptions?: readonly Interruption[];
  /** Every n-th snapshot full (StreamingContextConfig.snapshotFullEvery). */
  readonly snapshotFullEvery?: number;
  /** Partitions of inputs and keyed operators (default 2). */
  readonly partitions?: number;
  /** The app's name (default `recovery`); JetStream checkpoints need one per run (a stream per app). */
  readonly appName?: string;
}

/** What a run produced. */
export interface RunResult {
  readonly emitted: Emitted[];
  /** Batch times in flight at an `in-output` crash: their outputs may repeat. */
  readonly inFlight: Set<number>;
  /** At each resume, the newest checkpoint time in the journal (undefined: none). */
  readonly resumedFrom: (number | undefined)[];
  /** The last batch run (more than `batches` when downtime and crashes went past it). */
  readonly lastBatch: number;
}

/** Sorts records, and the values of `[key, values[]]` groups, into a canonical order. */
export function canonical(records: readonly unknown[]): unknown[] {
  const normal = records.map((r) =>
    Array.isArray(r) && r.length === 2 && Array.isArray(r[1]) ? [r[0], [...(r[1] as unknown[])].sort(compareValues)] : r,
  );
  return normal.sort(compareValues);
}

/** A temp directory for one checkpoint; the caller removes it. */
export function tempDir(prefix = 'trib-rec-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

function context(clock: ManualClock, spec: RunSpec): StreamingContext {
  return new StreamingContext({
    appName: spec.appName ?? 'recovery',
    batchDuration: BATCH_MS,
    partitions: spec.partitions ?? 2,
    clock,
    logger: quiet,
    ...(spec.snapshotFullEvery !== undefined ? { snapshotFullEvery: spec.snapshotFullEvery } : {}),
  });
}

/** Runs `app` for `spec.batches` batches without a checkpoint: the oracle. */
export async function runUninterrupted(app: AppBuilder, spec: RunSpec): Promise<Emitted[]> {
  const emitted: Emitted[] = [];
  const ssc = context(new ManualClock(), spec);
  app(ssc, (name, stream) => stream.foreachBatch((records, time) => void emitted.push({ op: name, time, records: canonical(records) })));
  await ssc.start();
  try {
    await ssc.runBatches(spec.batches);
  } finally {
    await ssc.stop();
  }
  return emitted;
}

/**
 * Runs `app` with checkpoint directory (or nats:// URL) `dir`, interrupted as `spec` says (each
 * interruption after the previous one), resuming each time with getOrCreate on the
 * same clock, and finishes at `spec.batches`.
 */
export async function runInterrupted(app: AppBuilder, dir: string, spec: RunSpec): Promise<RunResult> {
  const clock = new ManualClock();
  const emitted: Emitted[] = [];
  const inFlight = new Set<number>();
  const resumedFrom: (number | undefined)[] = [];
  const committed = new Set<number>();
  let checkpointed: () => void = () => {};
  let crashOnCompletion = false;
  let crashedInReplay: () => void = () => {};
  let crashAtMs: number | undefined;
  let crashed: () => void = () => {};
  const build = (): StreamingContext => {
    const ssc = context(clock, spec);
    ssc.addStreamingListener({
      onCheckpointCompleted: ({ time }) => {
        committed.add(time);
        checkpointed();
      },
      onBatchCompleted: () => {
        if (!crashOnCompletion) return;
        crashOnCompletion = false;
        ssc.crash();
        crashedInReplay();
      },
    });
    app(ssc, (name, stream) => {
      stream.foreachBatch((records, time) => {
        emitted.push({ op: name, time, records: canonical(records) });
        // The first output at or after the crash time (a slide may skip that very time).
        if (crashAtMs !== undefined && time >= crashAtMs) {
          crashAtMs = undefined;
          inFlight.add(time);
          ssc.crash();
          crashed();
        }
      });
    });
    return ssc;
  };
  const batchNow = () => Math.floor(clock.now() / BATCH_MS);
  let ssc = build();
  ssc.checkpoint(dir);
  for (const step of spec.interruptions ?? []) {
    crashOnCompletion = step.mode === 'in-replay';
    const replayCrashed = new Promise<void>((resolve) => {
      crashedInReplay = resolve;
    });
    await ssc.start();
    const waitFor = step.afterCheckpoint;
    const checkpointDone =
      waitFor === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            checkpointed = () => {
              if (committed.has(waitFor * BATCH_MS)) resolve();
            };
            checkpointed();
          });
    if (step.mode === 'in-output') {
      const done = new Promise<void>((resolve) => {
        crashed = resolve;
      });
      // Up to the batch before (unless replay or downtime reach the crash batch already).
      if (step.at - 1 > batchNow()) await ssc.runBatches(step.at - 1 - batchNow());
      await checkpointDone;
      crashAtMs = step.at * BATCH_MS;
      // Two more ticks, so batches after the one in flight are allocated too (at least two
      // new ones: after a resume, replayed batches whose outputs completed emit nothing).
      const running = ssc.runBatches(Math.max(2, step.at + 2 - batchNow())).then(
        () => new Error(`batch ${step.at} completed: the crash did not happen`),
        () => undefined,
      );
      const error = await Promise.race([done.then(() => undefined), running]);
      if (error) throw error;
      await running;
    } else if (step.mode === 'in-replay') {
      // One more batch, in case nothing was left to replay; the first completion crashes.
      // It resolves when the crashing completion was the batch it waited for.
      await ssc.runBatches(1).catch(() => undefined);
      await replayCrashed;
    } else {
      await ssc.runBatches(Math.max(0, step.at - batchNow()));
      await checkpointDone;
      if (step.mode === 'graceful') await ssc.stop();
      else ssc.crash();
    }
    if (step.downtime) clock.advance(step.downtime * BATCH_MS);
    resumedFrom.push(lastCheckpoint(await readJournal(dir, spec.appName)));
    ssc = await StreamingContext.getOrCreate(dir, build, { clock });
  }
  await ssc.start();
  await ssc.runBatches(Math.max(0, spec.batches - batchNow()));
  await ssc.stop();
  return { emitted, inFlight, resumedFrom, lastBatch: batchNow() };
}

function lastCheckpoint(events: readonly JournalEvent[]): number | undefined {
  let last: number | undefined;
  for (const e of events) if (e.type === 'checkpoint.completed') last = Math.max(last ?? e.time, e.time);
  return last === undefined ? undefined : last / BATCH_MS;
}

/** `op@time` of an emitted batch. */
export function keyOf(e: { op: string; time: number }): string {
  return `${e.op}@${e.time}`;
}

/**
 * Differences between a recovered run and the oracle: every oracle batch appears
 * with equal records, nothing else appears, and only in-flight batch times repeat
 * (with equal records), up to the last batch of the run. An empty list means equal.
 */
export function differences(expected: readonly Emitted[], got: RunResult): string[] {
  // The oracle may run longer than a run whose crashes and downtime ended earlier.
  const until = got.lastBatch * BATCH_MS;
  const want = new Map(expected.filter((e) => e.time <= until).map((e) => [keyOf(e), e.records]));
  const seen = new Map<string, number>();
  const out: string[] = [];
  for (const e of got.emitted) {
    const key = keyOf(e);
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const records = want.get(key);
    if (records === undefined) out.push(`${key}: not in the uninterrupted run`);
    else if (JSON.stringify(records) !== JSON.stringify(e.records)) {
      out.push(`${key}: got ${JSON.stringify(e.records)}, want ${JSON.stringify(records)}`);
    }
  }
  for (const [key, count] of seen) {
    const time = Number(key.slice(key.lastIndexOf('@') + 1));
    if (count > 1 && !got.inFlight.has(time)) out.push(`${key}: emitted ${count} times (not in flight at a crash)`);
  }
  for (const key of want.keys()) if (!seen.has(key)) out.push(`${key}: missing`);
  return out;
}

/** The events of the journal in `dir` (or behind a nats:// URL), read without taking the writer lock. */
export async function readJournal(dir: string, appName = 'recovery'): Promise<JournalEvent[]> {
  if (isNatsUrl(dir)) return readJetStreamJournal(dir, appName);
  const journalDir = path.join(dir, 'journal');
  const names = (await fs.readdir(journalDir)).filter((n) => n.endsWith('.log')).sort();
  const events: JournalEvent[] = [];
  for (const name of names) {
    const scan = scanFrames(await fs.readFile(path.join(journalDir, name)));
    for (const payload of scan.payloads) events.push(decodeValue(payload) as JournalEvent);
  }
  return events;
}

/** Total bytes of the files under `dir` (0 when it does not exist). */
export async function bytesUnder(dir: string): Promise<number> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) total += await bytesUnder(full);
    else total += (await fs.stat(full).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

/** A small deterministic PRNG (the chaos runner's). */
export const prng = seededRandom;

/** `batches` batches of 0-3 lines of 0-4 words from `alphabet`, from `seed`. */
export function wordBatches(seed: number, batches: number, alphabet: readonly string[] = ['a', 'b', 'c', 'd', 'e', 'f']): string[][] {
  const next = prng(seed);
  const pick = (n: number) => Math.floor(next() * n);
  return Array.from({ length: batches }, () =>
    Array.from({ length: pick(4) }, () => Array.from({ length: pick(5) }, () => alphabet[pick(alphabet.length)]).join(' ')),
  );
}
