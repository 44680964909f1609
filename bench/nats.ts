/**
 * Benchmark 5: Tributary on NATS JetStream, against a real nats-server started here
 * (runtime/cli/nats-server-launcher.ts: loopback, free port, temporary store directory,
 * shut down at the end). Skipped, with one row saying why, when nats-server is missing.
 *
 *   a. checkpointing in JetStream vs in a directory vs off: the updateStateByKey
 *      workload of bench/checkpoint.ts (100k keys, one untimed loading batch, then
 *      60 batches of 10k records, a checkpoint every 10 s of stream time), the three
 *      sides in a rotating order per run, medians. The JetStream side checkpoints to
 *      `nats://127.0.0.1:<port>` under a fresh app name per run (its own journal
 *      stream and snapshot bucket, deleted after the run). Like bench 4, the time
 *      includes waiting for the last checkpoint's write. Target (JetStream): cost
 *      <= 10% at a 10 s interval, i.e. throughput JetStream / off >= 0.9x. The
 *      batches run back to back (ManualClock), so 60 s of stream time take about a
 *      second: the interval is 10 batches, not 10 s of wall time. CPU per run is
 *      shown for this process (process.cpuUsage) and for nats-server (/proc), both
 *      over the whole run, loading batch and stop included.
 *   b. the direct source's read rate vs the raw rate of the same stream. One stream
 *      of ~100 B messages, published with core NATS publishes flushed every 10k
 *      (pipelined, bounded by the flush round trip; the stored count is checked),
 *      then, interleaved:
 *        raw        an ordered consumer reading the whole stream with
 *                   consume({max_messages: 1000}), counting messages;
 *        Tributary  a context reading it with jetstreamStream({maxPerBatch: 50k}) and
 *                   a count() output; runBatches over the batches needed to read it
 *                   all is timed (start() is not).
 *      Target: Tributary / raw >= 0.8x. The replay after a crash: a context with a
 *      nats:// checkpoint reads the stream for `crashBatches` batches (fewer than the
 *      10 of a checkpoint interval: all of them are replayed), crash(); then
 *      getOrCreate + start + runBatches(0) reads the journaled ranges again; the
 *      replay rate is the replayed messages over runBatches(0) (and over the whole
 *      recovery, start included).
 *
 * Rates are messages per wall-clock second, with nats-server on the same machine (it
 * competes with the benchmark for the cores).
 */
import { readFileSync } from 'node:fs';
import { DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { StreamingContext } from '../runtime/api/index.ts';
import { ManualClock } from '../runtime/api/testing.ts';
import { connectTo, type NatsServer, NatsServerError, startNatsServer } from '../runtime/cli/nats-server-launcher.ts';
import { CHECKPOINT_DEFAULTS, type CheckpointConfig, updateStateRun, withDir } from './checkpoint.ts';
import { loadBatch, type Pair, updateBatch } from './state.ts';
import { ms, type Row, rate, ratio, targetRow } from './table.ts';
import { fullGc, median, medianOfRuns, progress, quietLogger, settle } from './util.ts';

/** Sizes of the NATS benchmark. */
export interface NatsBenchConfig {
  /** (a) The updateStateByKey workload of bench 4 (keys, batch records, batches, interval, partitions). */
  readonly checkpoint: CheckpointConfig;
  readonly checkpointRuns: number;
  /** (b) Messages in the stream, bytes per message, messages per Tributary batch. */
  readonly messages: number;
  readonly payloadBytes: number;
  readonly maxPerBatch: number;
  /** (b) Interleaved raw / Tributary runs, and crash-replay runs. */
  readonly readRuns: number;
  readonly replayRuns: number;
  /** (b) Batches read before the crash (all replayed: fewer than a checkpoint interval). */
  readonly crashBatches: number;
  /** (b) Core publishes between two flushes while filling the stream. */
  readonly publishFlushEvery: number;
}

export const NATS_DEFAULTS: NatsBenchConfig = {
  checkpoint: CHECKPOINT_DEFAULTS,
  checkpointRuns: 5,
  messages: 500_000,
  payloadBytes: 100,
  maxPerBatch: 50_000,
  readRuns: 5,
  replayRuns: 3,
  crashBatches: 9,
  publishFlushEvery: 10_000,
};

const NAME = '5. NATS JetStream';
const BATCH_MS = 1000;
const STREAM = 'BENCH_REPLAY';
const SUBJECT = 'bench.replay.in';
/** How long the stream may take to report every core-published message stored. */
const STORE_WAIT_MS = 30_000;

let appSeq = 0;
/** An app name no other run of this process used (each gets its own journal stream and bucket). */
function uniqueApp(tag: string): string {
  return `bench-nats-${tag}-${process.pid}-${++appSeq}`;
}

/** Deletes the journal stream and snapshot bucket of `appName` (journal/jetstream-journal.ts, snapshots/). */
async function deleteAppStreams(jsm: JetStreamManager, appName: string): Promise<void> {
  for (const stream of [`TRIBUTARY_${appName}`, `OBJ_TRIBUTARY_${appName}_SNAPSHOTS`]) {
    await jsm.streams.delete(stream).catch(() => false);
  }
}

// ---- a. checkpointing: JetStream vs file vs off --------------------------------------

type Side = 'off' | 'file' | 'jetstream';
const SIDES: readonly Side[] = ['off', 'file', 'jetstream'];

/** user + system CPU ms of process `pid` so far (Linux /proc; NaN elsewhere). */
function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime, fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

interface SideTimes {
  /** Timed ms of each run. */
  readonly ms: number[];
  /** CPU ms of each whole run (loading batch, timed batches, stop): this process, and nats-server. */
  readonly nodeCpuMs: number[];
  readonly serverCpuMs: number[];
}

async function checkpointSide(side: Side, queue: readonly Pair[][], server: NatsServer, jsm: JetStreamManager, cfg: CheckpointConfig) {
  if (side === 'off') return updateStateRun(queue, undefined, cfg);
  if (side === 'file') return withDir('nats-file', (dir) => updateStateRun(queue, dir, cfg));
  const app = uniqueApp('usbk');
  try {
    return await updateStateRun(queue, server.url, cfg, app);
  } finally {
    await deleteAppStreams(jsm, app);
  }
}

async function checkpointing(server: NatsServer, jsm: JetStreamManager, cfg: NatsBenchConfig): Promise<Record<Side, SideTimes>> {
  const c = cfg.checkpoint;
  const queue: Pair[][] = [loadBatch(0, c.smallKeys)];
  for (let s = 0; s < c.throughputBatches; s++) queue.push(updateBatch(s, c.batchRecords, c.smallKeys));
  progress(`${NAME}: a. warm-up (updateStateByKey, checkpointing off, file and JetStream, 20 batches each)`);
  for (const side of SIDES) await checkpointSide(side, queue.slice(0, 21), server, jsm, c);
  const times = {} as Record<Side, SideTimes>;
  for (const side of SIDES) times[side] = { ms: [], nodeCpuMs: [], serverCpuMs: [] };
  for (let run = 1; run <= cfg.checkpointRuns; run++) {
    // Rotate which side goes first, so a drift of the machine weighs on all three.
    const order = SIDES.map((_, i) => SIDES[(i + run - 1) % SIDES.length] as Side);
    for (const side of order) {
      fullGc();
      const cpu = process.cpuUsage();
      const serverCpu = processCpuMs(server.pid);
      times[side].ms.push(await checkpointSide(side, queue, server, jsm, c));
      const used = process.cpuUsage(cpu);
      times[side].nodeCpuMs.push((used.user + used.system) / 1000);
      times[side].serverCpuMs.push(processCpuMs(server.pid) - serverCpu);
    }
    const last = SIDES.map((s) => `${s} ${ms(times[s].ms[times[s].ms.length - 1] as number)}`).join(', ');
    progress(`${NAME}: a. run ${run}/${cfg.checkpointRuns}: ${last}`);
  }
  return times;
}

// ---- b. the direct source vs the raw stream -------------------------------------------

/** A ~payloadBytes message, different for each i. */
function payload(i: number, bytes: number): Uint8Array {
  const head = `record ${String(i).padStart(9, '0')} `;
  return new TextEncoder().encode(head + 'x'.repeat(Math.max(0, bytes - head.length)));
}

/** Fills STREAM with `cfg.messages` messages; returns the messages/s of the publishing. */
async function fillStream(nc: NatsConnection, jsm: JetStreamManager, cfg: NatsBenchConfig): Promise<number> {
  await jsm.streams.add({ name: STREAM, subjects: ['bench.replay.>'] });
  const start = performance.now();
  for (let i = 0; i < cfg.messages; i++) {
    nc.publish(SUBJECT, payload(i, cfg.payloadBytes));
    if ((i + 1) % cfg.publishFlushEvery === 0) await nc.flush();
  }
  await nc.flush();
  // Core publishes are not acked: wait until the stream reports all of them stored.
  const deadline = performance.now() + STORE_WAIT_MS;
  for (;;) {
    const stored = (await jsm.streams.info(STREAM)).state.messages;
    if (stored === cfg.messages) break;
    if (stored > cfg.messages || performance.now() > deadline) {
      throw new Error(`nats bench: the stream holds ${stored} messages, expected ${cfg.messages}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return (cfg.messages / (performance.now() - start)) * 1000;
}

/** Reads the whole stream with one ordered consumer; returns the elapsed ms. */
async function rawRead(nc: NatsConnection, cfg: NatsBenchConfig): Promise<number> {
  const start = performance.now();
  const consumer = await jetstream(nc).consumers.get(STREAM, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 1000 });
  let n = 0;
  try {
    for await (const m of messages) {
      n++;
      if (m.seq >= cfg.messages) break;
    }
  } finally {
    messages.stop();
  }
  const elapsed = performance.now() - start;
  if (n !== cfg.messages) throw new Error(`nats bench: the raw read saw ${n} of ${cfg.messages} messages`);
  return elapsed;
}

/** A context counting what jetstreamStream reads of STREAM; `counted` gets the count of each batch whose output runs. */
function replayApp(appName: string, clock: ManualClock, server: NatsServer, cfg: NatsBenchConfig, counted: (n: number) => void) {
  const ssc = new StreamingContext({
    appName,
    batchDuration: BATCH_MS,
    partitions: cfg.checkpoint.partitions,
    clock,
    logger: quietLogger,
    nats: { url: server.url },
  });
  ssc
    .jetstreamStream({ stream: STREAM, startAt: 'first', maxPerBatch: cfg.maxPerBatch, decoder: 'utf8' })
    .count()
    .foreachBatch((records) => {
      for (const n of records) counted(n);
    });
  return ssc;
}

/** Reads the whole stream through Tributary; returns the ms of runBatches and per-batch processingMs. */
async function tributaryRead(server: NatsServer, cfg: NatsBenchConfig): Promise<{ elapsed: number; batchMs: number[] }> {
  let total = 0;
  const ssc = replayApp(uniqueApp('read'), new ManualClock(), server, cfg, (n) => {
    total += n;
  });
  const batchMs: number[] = [];
  ssc.addStreamingListener({ onBatchCompleted: (info) => void batchMs.push(info.processingMs) });
  await ssc.start();
  const start = performance.now();
  await ssc.runBatches(Math.ceil(cfg.messages / cfg.maxPerBatch));
  const elapsed = performance.now() - start;
  await ssc.stop();
  await settle();
  if (total !== cfg.messages) throw new Error(`nats bench: Tributary counted ${total} of ${cfg.messages} messages`);
  return { elapsed, batchMs };
}

interface Replay {
  /** Messages replayed, ms of the first run of those batches, of start(), of runBatches(0). */
  readonly messages: number;
  readonly firstRunMs: number;
  readonly startMs: number;
  readonly replayMs: number;
}

/** Reads `crashBatches` batches with a nats:// checkpoint, crash(), then recovers and times the replay. */
async function crashReplay(server: NatsServer, jsm: JetStreamManager, cfg: NatsBenchConfig): Promise<Replay> {
  const app = uniqueApp('crash');
  try {
    let first = 0;
    const clock = new ManualClock();
    const ssc = replayApp(app, clock, server, cfg, (n) => {
      first += n;
    });
    ssc.checkpoint(server.url);
    await ssc.start();
    const t = performance.now();
    await ssc.runBatches(cfg.crashBatches);
    const firstRunMs = performance.now() - t;
    ssc.crash();
    await settle();

    // The replayed batches' outputs already ran (journaled as completed) and are skipped:
    // count what their inputs read again instead.
    let replayed = 0;
    let batches = 0;
    let outputs = 0;
    const clock2 = new ManualClock(clock.now());
    fullGc();
    const t0 = performance.now();
    const again = await StreamingContext.getOrCreate(
      server.url,
      () =>
        replayApp(app, clock2, server, cfg, (n) => {
          outputs += n;
        }),
      { clock: clock2 },
    );
    again.addStreamingListener({
      onBatchCompleted: (info) => {
        batches++;
        replayed += info.records;
      },
    });
    await again.start();
    const t1 = performance.now();
    await again.runBatches(0);
    const t2 = performance.now();
    await again.stop();
    await settle();
    if (batches !== cfg.crashBatches || replayed !== first || outputs !== 0) {
      throw new Error(
        `nats bench: replayed ${batches} batches, ${replayed} messages (${outputs} output again); expected ${cfg.crashBatches}, ${first} (0)`,
      );
    }
    return { messages: replayed, firstRunMs, startMs: t1 - t0, replayMs: t2 - t1 };
  } finally {
    await deleteAppStreams(jsm, app);
  }
}

interface ReadResult {
  readonly publishRate: number;
  readonly raw: number[];
  readonly tributary: number[];
  readonly batchMs: number[];
  readonly replays: Replay[];
}

async function reading(server: NatsServer, nc: NatsConnection, jsm: JetStreamManager, cfg: NatsBenchConfig): Promise<ReadResult> {
  progress(`${NAME}: b. publishing ${cfg.messages.toLocaleString('en-US')} messages of ${cfg.payloadBytes} B to ${STREAM}`);
  const publishRate = await fillStream(nc, jsm, cfg);
  progress(`${NAME}: b. warm-up (one raw read, one Tributary read)`);
  await rawRead(nc, cfg);
  await tributaryRead(server, cfg);
  const raw: number[] = [];
  const tributary: number[] = [];
  const batchMs: number[] = [];
  for (let run = 1; run <= cfg.readRuns; run++) {
    const order = run % 2 === 1 ? (['raw', 'tributary'] as const) : (['tributary', 'raw'] as const);
    for (const side of order) {
      fullGc();
      if (side === 'raw') raw.push(await rawRead(nc, cfg));
      else {
        const r = await tributaryRead(server, cfg);
        tributary.push(r.elapsed);
        batchMs.push(...r.batchMs);
      }
    }
    progress(
      `${NAME}: b. run ${run}/${cfg.readRuns}: raw ${ms(raw[raw.length - 1] as number)}, Tributary ${ms(tributary[tributary.length - 1] as number)}`,
    );
  }
  const replays: Replay[] = [];
  for (let run = 1; run <= cfg.replayRuns; run++) {
    fullGc();
    const r = await crashReplay(server, jsm, cfg);
    replays.push(r);
    progress(
      `${NAME}: b. crash replay ${run}/${cfg.replayRuns}: first run ${ms(r.firstRunMs)}, start ${ms(r.startMs)}, replay ${ms(r.replayMs)}`,
    );
  }
  return { publishRate, raw, tributary, batchMs, replays };
}

// ---- the rows -----------------------------------------------------------------------

function checkpointRows(times: Record<Side, SideTimes>, cfg: NatsBenchConfig): Row[] {
  const c = cfg.checkpoint;
  const records = c.throughputBatches * c.batchRecords;
  const tput = (side: Side) => (records / medianOfRuns(`nats: checkpoints ${side}`, times[side].ms)) * 1000;
  const value = (side: Side) => `${rate(tput(side), 'rec/s')} (${ms(median(times[side].ms))}/run)`;
  const cpu = (side: Side) => `${side} ${ms(median(times[side].nodeCpuMs))} (${ms(median(times[side].serverCpuMs))})`;
  return [
    {
      bench: NAME,
      measure: `a. updateStateByKey @ ${c.smallKeys / 1000}k keys, ${c.batchRecords / 1000}k/batch, ${c.throughputBatches} batches, checkpoint every ${c.throughputInterval}; median of ${cfg.checkpointRuns} rotated runs`,
      value: '',
    },
    { bench: NAME, measure: 'checkpointing off', value: value('off') },
    { bench: NAME, measure: 'checkpointing to a directory (file journal)', value: value('file') },
    { bench: NAME, measure: 'checkpointing to JetStream (nats://)', value: value('jetstream') },
    { bench: NAME, measure: 'throughput file / off', value: '', ratio: ratio(tput('file') / tput('off')) },
    targetRow(NAME, 'throughput JetStream / off (10 s interval)', tput('jetstream') / tput('off'), { op: '>=', limit: 0.9 }, ratio),
    {
      bench: NAME,
      measure: 'CPU per whole run (load, batches, stop): this process (nats-server)',
      value: SIDES.map(cpu).join(', '),
    },
  ];
}

function readRows(r: ReadResult, cfg: NatsBenchConfig): Row[] {
  const perSec = (messages: number, elapsedMs: number) => (messages / elapsedMs) * 1000;
  const raw = perSec(cfg.messages, median(r.raw));
  const trib = perSec(cfg.messages, median(r.tributary));
  const replay = median(r.replays.map((x) => perSec(x.messages, x.replayMs)));
  const recovery = median(r.replays.map((x) => perSec(x.messages, x.startMs + x.replayMs)));
  const firstRun = median(r.replays.map((x) => perSec(x.messages, x.firstRunMs)));
  const replayed = r.replays[0]?.messages ?? 0;
  return [
    {
      bench: NAME,
      measure: `b. stream of ${cfg.messages.toLocaleString('en-US')} x ${cfg.payloadBytes} B; median of ${cfg.readRuns} interleaved runs`,
      value: '',
    },
    { bench: NAME, measure: 'filling it: core publishes, flush every 10k', value: rate(r.publishRate, 'msg/s') },
    {
      bench: NAME,
      measure: 'raw: one ordered consumer, consume({max_messages: 1000})',
      value: `${rate(raw, 'msg/s')} (${ms(median(r.raw))})`,
    },
    {
      bench: NAME,
      measure: `Tributary: jetstreamStream(maxPerBatch ${cfg.maxPerBatch / 1000}k).count(), ${Math.ceil(cfg.messages / cfg.maxPerBatch)} batches`,
      value: `${rate(trib, 'msg/s')} (${ms(median(r.tributary))})`,
    },
    { bench: NAME, measure: 'Tributary: median batch processingMs', value: ms(median(r.batchMs)) },
    targetRow(NAME, 'read rate Tributary / raw', trib / raw, { op: '>=', limit: 0.8 }, ratio),
    {
      bench: NAME,
      measure: `crash replay (${cfg.crashBatches} batches, ${replayed.toLocaleString('en-US')} msgs; median of ${cfg.replayRuns}): first run | runBatches(0)`,
      value: `${rate(firstRun, 'msg/s')} | ${rate(replay, 'msg/s')}`,
    },
    { bench: NAME, measure: 'crash replay: replay / raw', value: '', ratio: ratio(replay / raw) },
    {
      bench: NAME,
      measure: 'crash replay incl. getOrCreate + start (start ms)',
      value: `${rate(recovery, 'msg/s')} (${ms(median(r.replays.map((x) => x.startMs)))})`,
    },
  ];
}

/** Runs benchmark 5 and returns its table rows. */
export async function benchNats(cfg: NatsBenchConfig = NATS_DEFAULTS): Promise<Row[]> {
  let server: NatsServer;
  try {
    server = await startNatsServer();
  } catch (e) {
    if (e instanceof NatsServerError) {
      progress(`${NAME}: skipped: ${e.message}`);
      return [{ bench: NAME, measure: 'skipped: nats-server could not be started', value: e.code }];
    }
    throw e;
  }
  let nc: NatsConnection | undefined;
  try {
    progress(`${NAME}: nats-server at ${server.url}`);
    nc = await connectTo(server.url);
    const jsm = await jetstreamManager(nc);
    const a = await checkpointing(server, jsm, cfg);
    const b = await reading(server, nc, jsm, cfg);
    return [...checkpointRows(a, cfg), ...readRows(b, cfg)];
  } finally {
    await nc?.close();
    await server.shutdown();
  }
}
