/**
 * Benchmark 4: what checkpointing costs (`ssc.checkpoint(dir)`: journal of every
 * batch, state snapshots at checkpoint times) and what recovery takes.
 *
 *   a. throughput with checkpointing off vs on, in alternation: word count (the
 *      lines of benchmark 1, its 10 batches cycled) and updateStateByKey over 100k
 *      keys (one loading batch, untimed, then 10k-record batches); 60 batches of
 *      1 s, checkpoint every 10 s of stream time, so 6 checkpoints, the first and
 *      the last full (snapshotFullEvery 5). The "on" time includes waiting for the
 *      last checkpoint's write. Target: on/off throughput >= 0.9x.
 *   b. snapshots of 1M string -> number keys (updateStateByKey): 4 loading batches,
 *      then batches touching 1% of the keys between two checkpoints (checkpoint
 *      every 4 batches): one full, four incremental, one full again. writeMs and
 *      snapshotBytes come from onCheckpointCompleted; each write runs alone (the
 *      next batch waits for it). The largest event-loop stall during a write is
 *      monitorEventLoopDelay's max from the batch's completion (capture done) to
 *      the checkpoint's completion. Target: full-write stall <= 50 ms.
 *   c. recovery of 1M keys, mapWithState and updateStateByKey: load, checkpoint
 *      (full), 10 more batches, crash(); then getOrCreate + start() + runBatches(0)
 *      (which waits for the 10 replayed batches). Target: < 2 s. start() covers the
 *      journal and the snapshots; the rest is the replay, whose batches are compared
 *      with the same batches' first run. Then, on a copy of the crashed directory,
 *      the pieces: journal open + fold, snapshot file reads, frame scan, cbor decode,
 *      restoreChain, and openCheckpoint as a whole (with its largest event-loop
 *      stall). While building, the batch after the full checkpoint runs at once:
 *      how long it waits to start shows whether the write holds batches up, and the
 *      largest stall from the checkpoint batch to the end of the write (mapWithState,
 *      whose batches are short) covers the capture as well as the write (<= 50 ms).
 *
 * Stalls are wall-clock: on a loaded machine, time the process is not scheduled
 * counts too. The largest GC pause in each window is shown beside it.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import type { CheckpointStats } from '../actors/checkpointer.ts';
import { openCheckpoint } from '../actors/recovery.ts';
import { scanFrames } from '../journal/codec.ts';
import { FileJournal } from '../journal/file-journal.ts';
import { foldJournal } from '../journal/recovery-plan.ts';
import { StreamingContext } from '../runtime/api/index.ts';
import { ManualClock } from '../runtime/api/testing.ts';
import { stableKeys } from '../runtime/graph/fingerprint.ts';
import { compilePlan } from '../runtime/graph/plan.ts';
import type { SnapshotData } from '../runtime/graph/wire.ts';
import { FileSnapshotStore } from '../snapshots/file-snapshot-store.ts';
import { decodeSnapshot } from '../snapshots/snapshot-codec.ts';
import { keyOf, loadBatch, type Pair, STRIDE, updateBatch } from './state.ts';
import { ms, type Row, rate, ratio, targetRow } from './table.ts';
import { fullGc, heapUsedAfterGc, median, medianOfRuns, nextTurn, progress, quietLogger, runOneBatch, settle, timeMs } from './util.ts';
import { WORD_COUNT_DEFAULTS, wordCountBatches } from './word-count.ts';

/** Sizes of the checkpoint benchmark. */
export interface CheckpointConfig {
  readonly partitions: number;
  /** (a) Timed batches per run, and the checkpoint interval in batches. */
  readonly throughputBatches: number;
  readonly throughputInterval: number;
  readonly runs: number;
  readonly smallKeys: number;
  readonly batchRecords: number;
  /** (b, c) State size and how it is loaded. */
  readonly bigKeys: number;
  readonly loadBatch: number;
  /** (b) Checkpoint interval in batches, batches in all, share of keys touched between checkpoints. */
  readonly snapshotInterval: number;
  readonly snapshotBatches: number;
  readonly touchedShare: number;
  readonly fullEvery: number;
  /** (c) Checkpoint interval in batches (the checkpoint is taken at that batch) and batches replayed. */
  readonly recoveryInterval: number;
  readonly replayBatches: number;
  readonly recoveryTargetMs: number;
}

export const CHECKPOINT_DEFAULTS: CheckpointConfig = {
  partitions: 2,
  throughputBatches: 60,
  throughputInterval: 10,
  runs: 7,
  smallKeys: 100_000,
  batchRecords: 10_000,
  bigKeys: 1_000_000,
  loadBatch: 250_000,
  snapshotInterval: 4,
  snapshotBatches: 24,
  touchedShare: 0.01,
  fullEvery: 5,
  recoveryInterval: 12,
  replayBatches: 10,
  recoveryTargetMs: 2000,
};

const NAME = '4. checkpointing';
const BATCH_MS = 1000;
const WAIT_LIMIT_MS = 120_000;

type StatefulOp = 'updateStateByKey' | 'mapWithState';

/** Batch `seq` of keys never touched by another `seq` (until the keys run out). */
function freshKeysBatch(seq: number, records: number, keys: number): Pair[] {
  const out: Pair[] = [];
  for (let j = 0; j < records; j++) out.push([keyOf(((seq * records + j) * STRIDE) % keys), 1]);
  return out;
}

function sumState(values: number[], state: number | undefined): number {
  let sum = state ?? 0;
  for (const v of values) sum += v;
  return sum;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes >= 1e7 ? 1 : 2)} MB`;
}

async function makeTempDir(tag: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `trib-bench-ckpt-${tag}-`));
}

function removeDir(dir: string): Promise<void> {
  return fs.rm(dir, { recursive: true, force: true });
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`checkpoint bench: timed out waiting for ${what}`)), WAIT_LIMIT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * Every GC pause of the run (perf_hooks 'gc' entries), so that a stall can be told
 * apart from a collection. Entries arrive asynchronously: query after a settle.
 */
class GcLog {
  readonly #pauses: { start: number; duration: number }[] = [];
  readonly #observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.#pauses.push({ start: e.startTime, duration: e.duration });
  });

  start(): void {
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.#observer.disconnect();
  }

  /** The longest pause that began in [from, to] (performance.now() times), 0 if none. */
  maxPause(from: number, to: number): number {
    let max = 0;
    for (const p of this.#pauses) if (p.start >= from && p.start <= to) max = Math.max(max, p.duration);
    return max;
  }
}

const gcLog = new GcLog();

/** A window of time in which the event loop's largest delay was measured. */
interface StallWindow {
  readonly stallMs: number;
  readonly from: number;
  readonly to: number;
}

/** The largest GC pause inside any of `windows`. */
function maxGcIn(windows: readonly StallWindow[]): number {
  return Math.max(0, ...windows.map((w) => gcLog.maxPause(w.from, w.to)));
}

/**
 * Listens to one context: checkpoint stats, batch processing times, and the
 * largest event-loop stall between a checkpoint batch's completion (its capture
 * done, its write just begun) and that checkpoint's completion.
 */
class Watch {
  readonly checkpoints: CheckpointStats[] = [];
  readonly processingMs = new Map<number, number>();
  /** Largest event-loop delay during the write of each probed checkpoint, by time. */
  readonly stalls = new Map<number, StallWindow>();
  readonly startedAt = new Map<number, number>();
  #probe: { time: number; from: number; histogram: ReturnType<typeof monitorEventLoopDelay> } | undefined;
  #probeTimes = new Set<number>();
  #waiters: { done: () => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  #error: Error | undefined;

  constructor(ssc: StreamingContext) {
    ssc.addStreamingListener({
      onBatchStarted: (info) => {
        this.startedAt.set(info.time, performance.now());
      },
      onBatchCompleted: (info) => {
        this.processingMs.set(info.time, info.processingMs);
        if (this.#probeTimes.has(info.time)) {
          const histogram = monitorEventLoopDelay({ resolution: 1 });
          histogram.enable();
          this.#probe = { time: info.time, from: performance.now(), histogram };
        }
      },
      onCheckpointCompleted: (stats) => {
        if (this.#probe?.time === stats.time) {
          this.#probe.histogram.disable();
          this.stalls.set(stats.time, { stallMs: this.#probe.histogram.max / 1e6, from: this.#probe.from, to: performance.now() });
          this.#probe = undefined;
        }
        this.checkpoints.push(stats);
        this.#check();
      },
      onError: (error) => {
        this.#error = error;
        this.#check();
      },
    });
  }

  /** Measures the event-loop stall during the write of the checkpoint of `time`. */
  probe(time: number): void {
    this.#probeTimes.add(time);
  }

  statsAt(time: number): CheckpointStats {
    const s = this.checkpoints.find((c) => c.time === time);
    if (s === undefined) throw new Error(`checkpoint bench: no checkpoint at ${time}`);
    return s;
  }

  /** Resolves once the checkpoint of `time` completed. */
  forTime(time: number): Promise<void> {
    return this.#until(() => this.checkpoints.some((c) => c.time === time), `the checkpoint of ${time}`);
  }

  /** Resolves once `n` checkpoints completed. */
  forCount(n: number): Promise<void> {
    return this.#until(() => this.checkpoints.length >= n, `${n} checkpoints`);
  }

  #until(done: () => boolean, what: string): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (done()) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve, reject) => this.#waiters.push({ done, resolve, reject })), what);
  }

  #check(): void {
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const w of waiting) {
      if (this.#error) w.reject(this.#error);
      else if (w.done()) w.resolve();
      else this.#waiters.push(w);
    }
  }
}

/** Checkpoint times (in batches) among batches [first, last]. */
function checkpointsBetween(first: number, last: number, interval: number): number {
  return Math.floor(last / interval) - Math.floor((first - 1) / interval);
}

// ---- a. throughput, off vs on ------------------------------------------------------

/** One word-count run over `queue` (one batch a tick); returns the timed ms. */
async function wordCountRun(queue: readonly string[][], dir: string | undefined, cfg: CheckpointConfig): Promise<number> {
  const ssc = new StreamingContext({
    appName: 'bench-ckpt-wc',
    batchDuration: BATCH_MS,
    partitions: cfg.partitions,
    clock: new ManualClock(),
    logger: quietLogger,
  });
  if (dir !== undefined) ssc.checkpoint(dir);
  let batches = 0;
  ssc
    .queueStream(queue)
    .flatMap((line) => line.split(' '))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .foreachBatch(() => {
      batches++;
    });
  const watch = new Watch(ssc);
  await ssc.start();
  const expected = dir === undefined ? 0 : checkpointsBetween(1, queue.length, cfg.throughputInterval);
  const elapsed = await timeMs(async () => {
    await ssc.runBatches(queue.length);
    await watch.forCount(expected);
  });
  await ssc.stop();
  await settle();
  if (batches !== queue.length) throw new Error(`checkpoint bench: word count ran ${batches} of ${queue.length} batches`);
  return elapsed;
}

/**
 * One updateStateByKey run: a loading batch (untimed), then `queue.length - 1` timed batches.
 * `dir` may be a nats:// URL (bench/nats.ts), where each app name gets its own stream and bucket.
 */
export async function updateStateRun(
  queue: readonly Pair[][],
  dir: string | undefined,
  cfg: CheckpointConfig,
  appName = 'bench-ckpt-usbk',
): Promise<number> {
  const ssc = new StreamingContext({
    appName,
    batchDuration: BATCH_MS,
    partitions: cfg.partitions,
    clock: new ManualClock(),
    logger: quietLogger,
  });
  if (dir !== undefined) ssc.checkpoint(dir);
  let size = 0;
  ssc
    .queueStream(queue)
    .updateStateByKey<string, number, number>(sumState)
    .foreachBatch((records) => {
      size = records.length;
    });
  const watch = new Watch(ssc);
  await ssc.start();
  await runOneBatch(ssc);
  const timed = queue.length - 1;
  const expected = dir === undefined ? 0 : checkpointsBetween(2, queue.length, cfg.throughputInterval);
  const elapsed = await timeMs(async () => {
    await ssc.runBatches(timed);
    await nextTurn(); // the last batch's state commit
    await watch.forCount(expected);
  });
  await ssc.stop();
  await settle();
  if (size !== cfg.smallKeys) throw new Error(`checkpoint bench: updateStateByKey has ${size} keys, expected ${cfg.smallKeys}`);
  return elapsed;
}

/** Runs `run` with checkpointing on, in a fresh temp directory removed afterwards. */
export async function withDir<T>(tag: string, run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await makeTempDir(tag);
  try {
    return await run(dir);
  } finally {
    await removeDir(dir);
  }
}

interface OffOn {
  readonly off: number[];
  readonly on: number[];
}

async function throughput(cfg: CheckpointConfig): Promise<{ wc: OffOn; usbk: OffOn; wcLines: number; usbkRecords: number }> {
  const base = wordCountBatches(WORD_COUNT_DEFAULTS);
  const wcQueue = Array.from({ length: cfg.throughputBatches }, (_, i) => base[i % base.length] as string[]);
  const wcLines = wcQueue.reduce((n, b) => n + b.length, 0);
  const usbkQueue: Pair[][] = [loadBatch(0, cfg.smallKeys)];
  for (let s = 0; s < cfg.throughputBatches; s++) usbkQueue.push(updateBatch(s, cfg.batchRecords, cfg.smallKeys));

  progress(`${NAME}: a. warm-up (word count and updateStateByKey, off and on, 20 batches each)`);
  await wordCountRun(wcQueue.slice(0, 20), undefined, cfg);
  await withDir('wc', (dir) => wordCountRun(wcQueue.slice(0, 20), dir, cfg));
  await updateStateRun(usbkQueue.slice(0, 21), undefined, cfg);
  await withDir('usbk', (dir) => updateStateRun(usbkQueue.slice(0, 21), dir, cfg));

  const wc: OffOn = { off: [], on: [] };
  const usbk: OffOn = { off: [], on: [] };
  for (let run = 1; run <= cfg.runs; run++) {
    progress(`${NAME}: a. run ${run}/${cfg.runs}: word count and updateStateByKey, checkpointing off and on`);
    // Alternate which side goes first, so a drift of the machine weighs on both.
    const order: ('off' | 'on')[] = run % 2 === 1 ? ['off', 'on'] : ['on', 'off'];
    for (const side of order) {
      fullGc();
      wc[side].push(
        side === 'off' ? await wordCountRun(wcQueue, undefined, cfg) : await withDir('wc', (d) => wordCountRun(wcQueue, d, cfg)),
      );
    }
    for (const side of order) {
      fullGc();
      usbk[side].push(
        side === 'off' ? await updateStateRun(usbkQueue, undefined, cfg) : await withDir('usbk', (d) => updateStateRun(usbkQueue, d, cfg)),
      );
    }
    const last = (t: OffOn) => `off ${ms(t.off[t.off.length - 1] as number)}, on ${ms(t.on[t.on.length - 1] as number)}`;
    progress(`${NAME}: a. run ${run}: word count ${last(wc)}; updateStateByKey ${last(usbk)}`);
  }
  return { wc, usbk, wcLines, usbkRecords: cfg.throughputBatches * cfg.batchRecords };
}

// ---- b. snapshot time and size at 1M keys -------------------------------------------

interface SnapshotResult {
  readonly full: CheckpointStats[];
  readonly delta: CheckpointStats[];
  readonly fullStalls: StallWindow[];
  readonly deltaStalls: StallWindow[];
  /** processingMs of full-checkpoint batches minus the median of the other touching batches. */
  readonly fullCaptureMs: number[];
  readonly plainBatchMs: number;
  readonly touchedPerCheckpoint: number;
}

async function snapshots(cfg: CheckpointConfig): Promise<SnapshotResult> {
  const dir = await makeTempDir('snap');
  try {
    const ssc = new StreamingContext({
      appName: 'bench-ckpt-snap',
      batchDuration: BATCH_MS,
      partitions: cfg.partitions,
      clock: new ManualClock(),
      logger: quietLogger,
      snapshotFullEvery: cfg.fullEvery,
    });
    ssc.checkpoint(dir);
    const queue: Pair[][] = [];
    let size = 0;
    ssc
      .queueStream(queue)
      .updateStateByKey<string, number, number>(sumState)
      .checkpoint(cfg.snapshotInterval * BATCH_MS)
      .foreachBatch((records) => {
        size = records.length;
      });
    const watch = new Watch(ssc);
    await ssc.start();
    const loads = Math.ceil(cfg.bigKeys / cfg.loadBatch);
    const touched = Math.round(cfg.bigKeys * cfg.touchedShare);
    const perBatch = Math.ceil(touched / cfg.snapshotInterval);
    const kinds = new Map<number, 'full' | 'delta'>();
    for (let b = 1; b <= cfg.snapshotBatches; b++) {
      const time = b * BATCH_MS;
      const isCheckpoint = b % cfg.snapshotInterval === 0;
      if (isCheckpoint) watch.probe(time);
      progress(`${NAME}: b. 1M-key snapshots: batch ${b}/${cfg.snapshotBatches}${isCheckpoint ? ' (checkpoint)' : ''}`);
      queue.push(
        b <= loads
          ? loadBatch((b - 1) * cfg.loadBatch, Math.min(cfg.bigKeys, b * cfg.loadBatch))
          : freshKeysBatch(b - loads - 1, perBatch, cfg.bigKeys),
      );
      await runOneBatch(ssc);
      queue[b - 1] = [];
      if (isCheckpoint) {
        // The write runs alone: the next batch waits for it.
        await watch.forTime(time);
        const previous = [...kinds.values()];
        const sinceFull = previous.length - 1 - previous.lastIndexOf('full');
        kinds.set(time, previous.length === 0 || sinceFull + 1 >= cfg.fullEvery ? 'full' : 'delta');
      }
    }
    await ssc.stop();
    await settle();
    if (size !== cfg.bigKeys) throw new Error(`checkpoint bench: snapshot state has ${size} keys, expected ${cfg.bigKeys}`);
    const plain: number[] = [];
    for (let b = loads + 1; b <= cfg.snapshotBatches; b++) {
      if (b % cfg.snapshotInterval !== 0) plain.push(watch.processingMs.get(b * BATCH_MS) as number);
    }
    const plainBatchMs = median(plain);
    const result: SnapshotResult = {
      full: [],
      delta: [],
      fullStalls: [],
      deltaStalls: [],
      fullCaptureMs: [],
      plainBatchMs,
      touchedPerCheckpoint: perBatch * cfg.snapshotInterval,
    };
    for (const [time, kind] of kinds) {
      const stats = watch.statsAt(time);
      // The engine decides full or delta: check that it agrees with the expected sequence.
      const expectedEntries = kind === 'full' ? cfg.bigKeys : result.touchedPerCheckpoint;
      if (stats.entries !== expectedEntries) {
        throw new Error(`checkpoint bench: checkpoint ${time} (${kind}) has ${stats.entries} entries, expected ${expectedEntries}`);
      }
      const stall = watch.stalls.get(time);
      if (stall === undefined) throw new Error(`checkpoint bench: no stall measured for checkpoint ${time}`);
      // The first checkpoint follows a loading batch: its capture cannot be told from the batch.
      const capture = time / BATCH_MS > loads ? (watch.processingMs.get(time) as number) - plainBatchMs : Number.NaN;
      if (kind === 'full') {
        result.full.push(stats);
        result.fullStalls.push(stall);
        if (!Number.isNaN(capture)) result.fullCaptureMs.push(capture);
      } else {
        result.delta.push(stats);
        result.deltaStalls.push(stall);
      }
    }
    return result;
  } finally {
    await removeDir(dir);
  }
}

// ---- c. recovery of 1M keys ----------------------------------------------------------

interface RecoveryResult {
  readonly op: StatefulOp;
  readonly totalMs: number;
  readonly startMs: number;
  readonly replayMs: number;
  /** The largest event-loop stall while the batches replayed. */
  readonly replayStallMs: number;
  readonly replayBatchMs: number[];
  readonly built: Built;
  readonly pieces: RecoveryPieces;
}

interface RecoveryPieces {
  readonly journalOpenMs: number;
  readonly foldMs: number;
  readonly events: number;
  readonly readFileMs: number;
  readonly scanMs: number;
  readonly decodeMs: number;
  readonly restoreChainMs: number;
  readonly chainLength: number;
  readonly openCheckpointMs: number[];
  readonly openCheckpointStallMs: number[];
}

/** The app of part c; `sink` hears every output batch. */
function recoveryApp(op: StatefulOp, clock: ManualClock, queue: Pair[][], cfg: CheckpointConfig, sink: (records: unknown[]) => void) {
  const ssc = new StreamingContext({
    appName: `bench-ckpt-rec-${op}`,
    batchDuration: BATCH_MS,
    partitions: cfg.partitions,
    clock,
    logger: quietLogger,
  });
  const input = ssc.queueStream(queue);
  const interval = cfg.recoveryInterval * BATCH_MS;
  if (op === 'updateStateByKey') {
    input.updateStateByKey<string, number, number>(sumState).checkpoint(interval).foreachBatch(sink);
  } else {
    input
      .mapWithState<string, number, number, Pair>({
        update: (key, value, state) => {
          const n = (state.getOption() ?? 0) + (value ?? 0);
          state.update(n);
          return [key, n];
        },
      })
      .checkpoint(interval)
      .foreachBatch(sink);
  }
  return ssc;
}

/** The input of batch `b` (1-based) of part c. */
function recoveryBatch(b: number, loads: number, cfg: CheckpointConfig): Pair[] {
  return b <= loads
    ? loadBatch((b - 1) * cfg.loadBatch, Math.min(cfg.bigKeys, b * cfg.loadBatch))
    : updateBatch(b - loads - 1, cfg.batchRecords, cfg.bigKeys);
}

/** What building the state of part c showed, before the crash. */
interface Built {
  readonly last: number;
  readonly full: CheckpointStats;
  /** The checkpoint batch, its capture, the full write and the batch after it. */
  readonly stall: StallWindow;
  /** The batch after the checkpoint: wall time, and how long it waited before it could start. */
  readonly nextWallMs: number;
  readonly nextWaitMs: number;
  /** Median wall time of the other batches after loading. */
  readonly otherWallMs: number;
  /** processingMs of the batches that recovery replays, when they first ran. */
  readonly firstRunMs: number[];
}

/** Builds the state, checkpoints, runs `replayBatches` more and crashes. */
async function buildAndCrash(op: StatefulOp, dir: string, cfg: CheckpointConfig): Promise<Built> {
  const clock = new ManualClock();
  const queue: Pair[][] = [];
  const ssc = recoveryApp(op, clock, queue, cfg, () => {});
  ssc.checkpoint(dir);
  const watch = new Watch(ssc);
  await ssc.start();
  const loads = Math.ceil(cfg.bigKeys / cfg.loadBatch);
  const checkpointAt = cfg.recoveryInterval;
  const last = checkpointAt + cfg.replayBatches;
  if (checkpointAt <= loads + 1 || cfg.replayBatches >= cfg.recoveryInterval) throw new Error('checkpoint bench: bad recovery sizes');
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let from = 0;
  let stall: StallWindow | undefined;
  let nextWallMs = Number.NaN;
  let nextWaitMs = Number.NaN;
  const other: number[] = [];
  for (let b = 1; b <= last; b++) {
    if (b === 1 || b === loads + 1 || b === checkpointAt + 1) progress(`${NAME}: c. ${op}: building, batch ${b}/${last}`);
    queue.push(recoveryBatch(b, loads, cfg));
    if (b === checkpointAt) {
      // From the checkpoint batch to the end of the full write and of the next batch:
      // with mapWithState the batches are short, so the largest stall is the capture's
      // or the write's. The next batch runs at once, as it would in production.
      from = performance.now();
      histogram.enable();
      await runOneBatch(ssc);
    } else if (b === checkpointAt + 1) {
      const asked = performance.now();
      nextWallMs = await runOneBatch(ssc);
      nextWaitMs = (watch.startedAt.get(b * BATCH_MS) as number) - asked;
      await watch.forTime(checkpointAt * BATCH_MS);
      histogram.disable();
      stall = { stallMs: histogram.max / 1e6, from, to: performance.now() };
    } else {
      const wall = await runOneBatch(ssc);
      if (b > loads) other.push(wall);
    }
    queue[b - 1] = [];
  }
  const full = watch.statsAt(checkpointAt * BATCH_MS);
  const firstRunMs: number[] = [];
  for (let b = checkpointAt + 1; b <= last; b++) firstRunMs.push(watch.processingMs.get(b * BATCH_MS) as number);
  ssc.crash();
  await settle();
  if (stall === undefined) throw new Error('checkpoint bench: no stall measured');
  return { last, full, stall, nextWallMs, nextWaitMs, otherWallMs: median(other), firstRunMs };
}

/** The factory's queue after a crash at batch `last`: the batches after the checkpoint, regenerated. */
function recoveredQueue(last: number, cfg: CheckpointConfig): Pair[][] {
  const loads = Math.ceil(cfg.bigKeys / cfg.loadBatch);
  const queue: Pair[][] = [];
  for (let b = 1; b <= last; b++) queue.push(b > cfg.recoveryInterval ? recoveryBatch(b, loads, cfg) : []);
  return queue;
}

/** Checks the recovered state with one more batch. */
function verifyRecovered(op: StatefulOp, next: number, output: unknown[], cfg: CheckpointConfig): void {
  const loads = Math.ceil(cfg.bigKeys / cfg.loadBatch);
  const updates = next - loads;
  if (op === 'updateStateByKey') {
    let sum = 0;
    for (const [, n] of output as Pair[]) sum += n;
    const expected = cfg.bigKeys + updates * cfg.batchRecords;
    if (output.length !== cfg.bigKeys || sum !== expected) {
      throw new Error(
        `checkpoint bench: recovered updateStateByKey has ${output.length} keys summing to ${sum}, expected ${cfg.bigKeys} / ${expected}`,
      );
    }
    return;
  }
  const counts = new Map<string, number>();
  for (const [k] of recoveryBatch(next, loads, cfg)) counts.set(k, 1);
  for (let b = loads + 1; b <= next; b++) {
    for (const [k] of recoveryBatch(b, loads, cfg)) {
      const c = counts.get(k);
      if (c !== undefined) counts.set(k, c + 1);
    }
  }
  for (const [k, n] of output as Pair[]) {
    if (counts.get(k) !== n) throw new Error(`checkpoint bench: recovered mapWithState gives ${k} = ${n}, expected ${counts.get(k)}`);
  }
  if (output.length !== counts.size) throw new Error('checkpoint bench: recovered mapWithState emitted the wrong number of records');
}

/** Times the pieces of opening a checkpoint, on a copy of the crashed directory. */
async function recoveryPieces(op: StatefulOp, dir: string, last: number, cfg: CheckpointConfig): Promise<RecoveryPieces> {
  const clock = new ManualClock(last * BATCH_MS);
  const ssc = recoveryApp(op, clock, recoveredQueue(last, cfg), cfg, () => {});
  ssc.graph.freeze();
  const plan = compilePlan(ssc.graph.nodes, ssc.graph.outputs);
  const keys = stableKeys(ssc.graph.nodes, ssc.graph.outputs);
  const node = plan.stateful[0];
  if (node === undefined || node.kind !== 'stateful') throw new Error('checkpoint bench: no stateful node');
  const operator = keys.get(node.id) as string;

  fullGc();
  const journal = new FileJournal(dir, quietLogger);
  let t = performance.now();
  const contents = await journal.open();
  const journalOpenMs = performance.now() - t;
  t = performance.now();
  const folded = foldJournal(contents.events);
  const foldMs = performance.now() - t;
  await journal.close();
  const cp = folded.checkpoints[folded.checkpoints.length - 1];
  if (cp === undefined) throw new Error('checkpoint bench: the crashed journal has no checkpoint');

  const store = new FileSnapshotStore(dir);
  let readFileMs = 0;
  let scanMs = 0;
  let decodeMs = 0;
  let restoreChainMs = 0;
  let chainLength = 0;
  for (let q = 0; q < node.partitions; q++) {
    const ref = cp.snapshots.find((r) => r.operator === operator && r.partition === q);
    if (ref === undefined) throw new Error(`checkpoint bench: no snapshot of partition ${q}`);
    const chain: SnapshotData[] = [];
    for (const time of ref.chain) {
      const key = { operator, partition: q, time };
      const file = store.fileOf(key);
      t = performance.now();
      const buf = await fs.readFile(file);
      readFileMs += performance.now() - t;
      t = performance.now();
      const scan = scanFrames(buf);
      scanMs += performance.now() - t;
      t = performance.now();
      chain.push(await decodeSnapshot(key, scan.payloads, file));
      decodeMs += performance.now() - t;
    }
    chainLength = Math.max(chainLength, chain.length);
    t = performance.now();
    await node.stateful.restoreChain(chain, q, node.partitions);
    restoreChainMs += performance.now() - t;
  }

  // Twice (the same checkpoint both times: a lone open only appends a start event).
  const openCheckpointMs: number[] = [];
  const openCheckpointStallMs: number[] = [];
  for (let i = 0; i < 2; i++) {
    fullGc();
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    t = performance.now();
    const opened = await openCheckpoint({
      dir,
      appName: ssc.appName,
      batchDurationMs: BATCH_MS,
      nowMs: clock.now(),
      nodes: ssc.graph.nodes,
      outputs: ssc.graph.outputs,
      plan,
      keys,
      settings: { intervalMs: cfg.recoveryInterval * BATCH_MS, fullEvery: cfg.fullEvery, keepCheckpoints: 2 },
      logger: quietLogger,
    });
    openCheckpointMs.push(performance.now() - t);
    histogram.disable();
    openCheckpointStallMs.push(histogram.max / 1e6);
    await opened.journal.close();
    if (opened.replay.length !== cfg.replayBatches) {
      throw new Error(`checkpoint bench: openCheckpoint found ${opened.replay.length} batches to replay, expected ${cfg.replayBatches}`);
    }
  }
  return {
    journalOpenMs,
    foldMs,
    events: contents.events.length,
    readFileMs,
    scanMs,
    decodeMs,
    restoreChainMs,
    chainLength,
    openCheckpointMs,
    openCheckpointStallMs,
  };
}

export async function recovery(op: StatefulOp, cfg: CheckpointConfig): Promise<RecoveryResult> {
  const dir = await makeTempDir('rec');
  const copy = `${dir}-copy`;
  try {
    const heapBefore = heapUsedAfterGc();
    const built = await buildAndCrash(op, dir, cfg);
    await fs.cp(dir, copy, { recursive: true });
    progress(`${NAME}: c. ${op}: heap after the crash: ${mb(heapUsedAfterGc() - heapBefore)} more than before building`);
    const queue = recoveredQueue(built.last, cfg);
    const clock = new ManualClock(built.last * BATCH_MS);
    let output: unknown[] = [];
    const replayed: number[] = [];
    fullGc();
    progress(`${NAME}: c. ${op}: recovering (getOrCreate + start + ${cfg.replayBatches} replayed batches)`);
    const t0 = performance.now();
    const ssc = await StreamingContext.getOrCreate(
      dir,
      () =>
        recoveryApp(op, clock, queue, cfg, (records) => {
          output = records;
        }),
      { clock },
    );
    ssc.addStreamingListener({ onBatchCompleted: (info) => void replayed.push(info.processingMs) });
    await ssc.start();
    const t1 = performance.now();
    const replayDelay = monitorEventLoopDelay({ resolution: 1 });
    replayDelay.enable();
    await ssc.runBatches(0);
    replayDelay.disable();
    const t2 = performance.now();
    if (replayed.length !== cfg.replayBatches) {
      throw new Error(`checkpoint bench: ${op} replayed ${replayed.length} batches, expected ${cfg.replayBatches}`);
    }
    const next = built.last + 1;
    const loads = Math.ceil(cfg.bigKeys / cfg.loadBatch);
    queue.push(recoveryBatch(next, loads, cfg));
    await ssc.runBatches(1);
    verifyRecovered(op, next, output, cfg);
    output = [];
    await ssc.stop();
    await settle();
    progress(`${NAME}: c. ${op}: timing the pieces of openCheckpoint on a copy of the crashed directory`);
    const pieces = await recoveryPieces(op, copy, built.last, cfg);
    return {
      op,
      totalMs: t2 - t0,
      startMs: t1 - t0,
      replayMs: t2 - t1,
      replayStallMs: replayDelay.max / 1e6,
      replayBatchMs: replayed,
      built,
      pieces,
    };
  } finally {
    await removeDir(dir);
    await removeDir(copy);
  }
}

// ---- the rows -----------------------------------------------------------------------

function offOnRows(label: string, t: OffOn, records: number, unit: string): Row[] {
  const value = (v: number) => `${rate((records / v) * 1000, unit)} (${ms(v)}/run)`;
  const off = medianOfRuns(`${label}, checkpointing off`, t.off);
  const on = medianOfRuns(`${label}, checkpointing on`, t.on);
  return [
    { bench: NAME, measure: `${label}, checkpointing off`, value: value(off) },
    { bench: NAME, measure: `${label}, checkpointing on`, value: value(on) },
    targetRow(NAME, `${label}: throughput on / off`, off / on, { op: '>=', limit: 0.9 }, ratio),
  ];
}

function list(values: readonly number[]): string {
  return values.map((v) => ms(v)).join(', ');
}

/** Runs benchmark 4 and returns its table rows. */
export async function benchCheckpoint(cfg: CheckpointConfig = CHECKPOINT_DEFAULTS): Promise<Row[]> {
  gcLog.start();
  let a: Awaited<ReturnType<typeof throughput>>;
  let b: SnapshotResult;
  const c: RecoveryResult[] = [];
  try {
    a = await throughput(cfg);
    b = await snapshots(cfg);
    for (const op of ['mapWithState', 'updateStateByKey'] as const) c.push(await recovery(op, cfg));
    await settle(); // the last GC entries arrive asynchronously
  } finally {
    gcLog.stop();
  }

  const big = `${cfg.bigKeys / 1e6}M`;
  const rows: Row[] = [
    {
      bench: NAME,
      measure: `a. ${cfg.throughputBatches} batches, checkpoint every ${cfg.throughputInterval} (full every ${cfg.fullEvery}); median of ${cfg.runs} alternated runs`,
      value: '',
    },
    ...offOnRows('word count (bench 1 lines)', a.wc, a.wcLines, 'lines/s'),
    ...offOnRows(`updateStateByKey @ ${cfg.smallKeys / 1000}k keys, ${cfg.batchRecords / 1000}k/batch`, a.usbk, a.usbkRecords, 'rec/s'),
  ];

  const fullMs = b.full.map((s) => s.writeMs);
  const deltaMs = b.delta.map((s) => s.writeMs);
  const fullBytes = median(b.full.map((s) => s.snapshotBytes));
  const deltaBytes = median(b.delta.map((s) => s.snapshotBytes));
  const stalls = (w: readonly StallWindow[]) => list(w.map((x) => x.stallMs));
  rows.push(
    {
      bench: NAME,
      measure: `b. ${big} string->number keys (updateStateByKey, ${cfg.partitions} partitions), ${(cfg.touchedShare * 100).toFixed(0)}% touched between checkpoints; each write alone`,
      value: '',
    },
    {
      bench: NAME,
      measure: `full snapshot (${b.full.length}x, ${b.full[0]?.entries.toLocaleString('en-US')} entries): writeMs, size`,
      value: `${ms(median(fullMs))} (${list(fullMs)}), ${mb(fullBytes)}`,
    },
    {
      bench: NAME,
      measure: `incremental (${b.delta.length}x, ${b.delta[0]?.entries.toLocaleString('en-US')} entries): writeMs, size`,
      value: `${ms(median(deltaMs))} (${list(deltaMs)}), ${mb(deltaBytes)}`,
    },
    { bench: NAME, measure: 'incremental / full: writeMs', value: '', ratio: ratio(median(deltaMs) / median(fullMs)) },
    { bench: NAME, measure: 'incremental / full: bytes', value: '', ratio: ratio(deltaBytes / fullBytes) },
    targetRow(
      NAME,
      'max event-loop stall during a full snapshot write',
      Math.max(...b.fullStalls.map((w) => w.stallMs)),
      { op: '<=', limit: 50, unit: 'ms' },
      ms,
    ),
    {
      bench: NAME,
      measure: 'stalls per write (largest GC pause in them): full | incremental',
      value: `${stalls(b.fullStalls)} (GC ${ms(maxGcIn(b.fullStalls))}) | ${stalls(b.deltaStalls)} (GC ${ms(maxGcIn(b.deltaStalls))})`,
    },
    {
      bench: NAME,
      measure: 'full capture: checkpoint batch processingMs - other batches',
      value: `+${list(b.fullCaptureMs)} (other batches ${ms(b.plainBatchMs)})`,
    },
  );

  rows.push({
    bench: NAME,
    measure: `c. recovery of ${big} keys: full checkpoint, ${cfg.replayBatches} batches of ${cfg.batchRecords / 1000}k, crash(); getOrCreate+start+runBatches(0)`,
    value: '',
  });
  for (const r of c) {
    const p = r.pieces;
    const built = r.built;
    rows.push(
      targetRow(NAME, `${r.op}: recovery total`, r.totalMs, { op: '<=', limit: cfg.recoveryTargetMs, unit: 'ms' }, ms),
      {
        bench: NAME,
        measure: `${r.op}: start() (journal + snapshots) | replay of ${cfg.replayBatches}`,
        value: `${ms(r.startMs)} | ${ms(r.replayMs)}`,
      },
      targetRow(
        NAME,
        `${r.op}: max event-loop stall in the replay of ${cfg.replayBatches}`,
        r.replayStallMs,
        { op: '<=', limit: 50, unit: 'ms' },
        ms,
      ),
      {
        bench: NAME,
        measure: `${r.op}: replayed batch vs same batch first run (median processingMs)`,
        value: `${ms(median(r.replayBatchMs))} vs ${ms(median(built.firstRunMs))}`,
      },
      {
        bench: NAME,
        measure: `${r.op}: openCheckpoint alone, 2x (max event-loop stall in it)`,
        value: `${list(p.openCheckpointMs)} (stall ${list(p.openCheckpointStallMs)})`,
      },
      {
        bench: NAME,
        measure: `${r.op}: pieces: journal open, fold | read, scan, decode, restoreChain`,
        value: `${ms(p.journalOpenMs)}, ${ms(p.foldMs)} (${p.events} events) | ${ms(p.readFileMs)}, ${ms(p.scanMs)}, ${ms(p.decodeMs)}, ${ms(p.restoreChainMs)}`,
      },
      {
        bench: NAME,
        measure: `${r.op}: the full checkpoint before the crash: writeMs, size`,
        value: `${ms(built.full.writeMs)}, ${mb(built.full.snapshotBytes)} (chain of ${p.chainLength} loaded)`,
      },
      {
        bench: NAME,
        measure: `${r.op}: batch after it: waited to start | wall (other batches)`,
        value: `${ms(built.nextWaitMs)} | ${ms(built.nextWallMs)} (${ms(built.otherWallMs)})`,
      },
    );
    if (r.op === 'mapWithState') {
      rows.push({
        ...targetRow(
          NAME,
          'mapWithState: max stall, checkpoint batch + capture + full write',
          built.stall.stallMs,
          { op: '<=', limit: 50, unit: 'ms' },
          ms,
        ),
        value: `largest GC pause in it ${ms(maxGcIn([built.stall]))}`,
      });
    }
  }
  return rows;
}
