/**
 * Benchmark 3: keyed state at scale. updateStateByKey and mapWithState each load
 * 1M string keys (a few big batches), then run 10k-record batches of existing keys;
 * mapWithState also runs at 100k keys, to show its batch cost does not grow with the
 * state. Per-batch time is the wall time of `runBatches(1)` plus the state commit
 * nact runs right after it (BatchInfo.processingMs, which leaves the commit out, is
 * shown too). Heap bytes per key: heapUsed after a forced GC, in a fresh context, after
 * start and before the first batch, then after loading the keys (input batches
 * released), divided by the number of keys.
 */
import { StreamingContext } from '../runtime/api/index.ts';
import { ManualClock } from '../runtime/api/testing.ts';
import { ms, type Row, rate, ratio, targetRow } from './table.ts';
import { heapUsedAfterGc, median, progress, quietLogger, runOneBatch, settle } from './util.ts';

/** Sizes of the state benchmark. */
export interface StateConfig {
  readonly bigKeys: number;
  readonly smallKeys: number;
  readonly loadBatch: number;
  readonly batchRecords: number;
  readonly warmupBatches: number;
  /** Measured 10k-record batches per operator (updateStateByKey touches the whole state every batch). */
  readonly measuredUpdateState: number;
  readonly measuredMapWithState: number;
  readonly partitions: number;
}

export const STATE_DEFAULTS: StateConfig = {
  bigKeys: 1_000_000,
  smallKeys: 100_000,
  loadBatch: 250_000,
  batchRecords: 10_000,
  warmupBatches: 2,
  measuredUpdateState: 7,
  measuredMapWithState: 60,
  partitions: 2,
};

type Op = 'updateStateByKey' | 'mapWithState';
export type Pair = [string, number];

const BATCH_MS = 1000;
/** Coprime with the key counts used here, so one batch never repeats a key. */
export const STRIDE = 7919;

export function keyOf(i: number): string {
  return `k${i}`;
}

/** Keys [from, to) with value 1. */
export function loadBatch(from: number, to: number): Pair[] {
  const out: Pair[] = [];
  for (let i = from; i < to; i++) out.push([keyOf(i), 1]);
  return out;
}

/** `records` distinct existing keys out of `keys`, different for every `seq`. */
export function updateBatch(seq: number, records: number, keys: number): Pair[] {
  const out: Pair[] = [];
  let i = (seq * 104_729) % keys;
  for (let j = 0; j < records; j++) {
    out.push([keyOf(i), 1]);
    i = (i + STRIDE) % keys;
  }
  return out;
}

/** updateStateByKey's function here: the sum of the state and the batch's values. */
function sumUpdate(values: readonly number[], state: number | undefined): number {
  let sum = state ?? 0;
  for (const v of values) sum += v;
  return sum;
}

const NO_VALUES: readonly number[] = [];

/**
 * What updateStateByKey does, as a hand-written loop over one Map: group the batch's
 * values by key, call the same update function for every key of the state and the
 * batch, and hand the whole state on as pairs (updateStateByKey's output).
 */
class PlainUpdateLoop {
  readonly batchMs: number[] = [];
  /** The same loop without building the output pairs (for reference). */
  readonly bareMs: number[] = [];
  readonly #state = new Map<string, number>();
  #seq = 0;
  #outputs = 0;

  constructor(keys: number, loadBatchSize: number) {
    for (let from = 0; from < keys; from += loadBatchSize) this.#run(loadBatch(from, Math.min(keys, from + loadBatchSize)));
  }

  batch(records: number, keys: number): void {
    const input = updateBatch(this.#seq++, records, keys);
    const start = performance.now();
    this.#run(input);
    this.batchMs.push(performance.now() - start);
    const bare = updateBatch(this.#seq++, records, keys);
    const bareStart = performance.now();
    this.#run(bare, false);
    this.bareMs.push(performance.now() - bareStart);
  }

  #run(input: readonly Pair[], output = true): void {
    const grouped = new Map<string, number[]>();
    for (const [k, v] of input) {
      const vs = grouped.get(k);
      if (vs === undefined) grouped.set(k, [v]);
      else vs.push(v);
    }
    const out: Pair[] = [];
    for (const [k, s] of this.#state) {
      const n = sumUpdate(grouped.get(k) ?? NO_VALUES, s);
      this.#state.set(k, n);
      if (output) out.push([k, n]);
    }
    for (const [k, vs] of grouped) {
      if (this.#state.has(k)) continue;
      const n = sumUpdate(vs, undefined);
      this.#state.set(k, n);
      if (output) out.push([k, n]);
    }
    this.#outputs += out.length;
  }
}

/**
 * One fresh context with one stateful operator, loaded with `keys` keys (heap
 * measured around the loading), then driven one batch at a time.
 */
class StateRun {
  readonly op: Op;
  readonly keys: number;
  /** Wall time of each measured batch, its state commit included. */
  readonly batchMs: number[] = [];
  /** BatchInfo.processingMs of each measured batch (the commit runs after it). */
  readonly processingMs: number[] = [];
  heapBytesPerKey = Number.NaN;
  loadMs = Number.NaN;
  readonly #cfg: StateConfig;
  readonly #ssc: StreamingContext;
  // Batches are pushed just before they run and dropped once they ran, so the heap
  // measured after loading holds the state, not the input.
  readonly #queue: Pair[][] = [];
  #lastProcessingMs = Number.NaN;
  #seq = 0;
  #outputs = 0;
  #stateSize = 0;

  constructor(op: Op, keys: number, cfg: StateConfig) {
    this.op = op;
    this.keys = keys;
    this.#cfg = cfg;
    this.#ssc = new StreamingContext({
      appName: `bench-${op}`,
      batchDuration: BATCH_MS,
      partitions: cfg.partitions,
      clock: new ManualClock(),
      logger: quietLogger,
    });
    const input = this.#ssc.queueStream<Pair>(this.#queue);
    if (op === 'updateStateByKey') {
      input.updateStateByKey<string, number, number>(sumUpdate).foreachBatch((records) => {
        // The output of updateStateByKey is the whole state.
        this.#outputs += records.length;
        this.#stateSize = records.length;
      });
    } else {
      input
        .mapWithState<string, number, number, Pair>({
          update: (key, value, state) => {
            const n = (state.getOption() ?? 0) + (value ?? 0);
            state.update(n);
            return [key, n];
          },
        })
        .foreachBatch((records) => {
          this.#outputs += records.length;
        });
    }
    this.#ssc.addStreamingListener({
      onBatchCompleted: (info) => {
        this.#lastProcessingMs = info.processingMs;
      },
    });
  }

  get label(): string {
    return `${this.op} @ ${this.keys.toLocaleString('en-US')} keys`;
  }

  /** Starts the context and loads the keys; measures heap per key and loading time. */
  async load(): Promise<void> {
    await this.#ssc.start();
    const before = heapUsedAfterGc();
    const loadStart = performance.now();
    for (let from = 0; from < this.keys; from += this.#cfg.loadBatch) {
      progress(`3. state: ${this.label}: loading keys ${from.toLocaleString('en-US')}..`);
      await this.#runOne(loadBatch(from, Math.min(this.keys, from + this.#cfg.loadBatch)));
    }
    this.loadMs = performance.now() - loadStart;
    await settle(); // lets the state actors process the batch's commit before measuring
    this.heapBytesPerKey = (heapUsedAfterGc() - before) / this.keys;
  }

  /** Runs one batch of `batchRecords` existing keys; its processing time is kept when `measured`. */
  async batch(measured: boolean): Promise<void> {
    const wall = await this.#runOne(updateBatch(this.#seq++, this.#cfg.batchRecords, this.keys));
    if (measured) {
      this.batchMs.push(wall);
      this.processingMs.push(this.#lastProcessingMs);
    }
  }

  /** Stops the context, checks its outputs and lets nact release its actors. */
  async stop(): Promise<void> {
    await this.#ssc.stop();
    // nact stops actors asynchronously: let it finish, so this context's state is
    // garbage before the next context measures its heap.
    await settle();
    if (this.op === 'updateStateByKey' && this.#stateSize !== this.keys) {
      throw new Error(`updateStateByKey: expected ${this.keys} keys in state, got ${this.#stateSize}`);
    }
    if (this.op === 'mapWithState' && this.#outputs !== this.keys + this.#seq * this.#cfg.batchRecords) {
      throw new Error(`mapWithState: unexpected output count ${this.#outputs}`);
    }
  }

  /** Runs `batch`; returns its wall time, state commit included. */
  async #runOne(batch: Pair[]): Promise<number> {
    const index = this.#queue.length;
    this.#queue.push(batch);
    const wall = await runOneBatch(this.#ssc);
    this.#queue[index] = [];
    return wall;
  }
}

/** Runs benchmark 3 and returns its table rows. */
export async function benchState(cfg: StateConfig = STATE_DEFAULTS): Promise<Row[]> {
  const name = '3. state';
  const usbk = new StateRun('updateStateByKey', cfg.bigKeys, cfg);
  await usbk.load();
  progress(`3. state: the same update as a plain loop over a Map of ${cfg.bigKeys.toLocaleString('en-US')} keys`);
  const plain = new PlainUpdateLoop(cfg.bigKeys, cfg.loadBatch);
  progress(
    `3. state: ${usbk.label}: ${cfg.warmupBatches} warm-up + ${cfg.measuredUpdateState} measured batches, alternating with the plain loop`,
  );
  for (let i = 0; i < cfg.warmupBatches; i++) await usbk.batch(false);
  for (let i = 0; i < cfg.measuredUpdateState; i++) {
    await usbk.batch(true);
    plain.batch(cfg.batchRecords, cfg.bigKeys);
  }
  await usbk.stop();

  // Both mapWithState contexts stay loaded and run in alternation, batch by batch, so
  // that whatever else the machine does weighs on both sides of the ratio alike.
  const mwsBig = new StateRun('mapWithState', cfg.bigKeys, cfg);
  await mwsBig.load();
  const mwsSmall = new StateRun('mapWithState', cfg.smallKeys, cfg);
  await mwsSmall.load();
  progress(
    `3. state: ${mwsBig.label} and ${mwsSmall.label}, in alternation: ${cfg.warmupBatches} warm-up + ${cfg.measuredMapWithState} measured batches each`,
  );
  for (let i = 0; i < cfg.warmupBatches + cfg.measuredMapWithState; i++) {
    const measured = i >= cfg.warmupBatches;
    await mwsBig.batch(measured);
    await mwsSmall.batch(measured);
  }
  await mwsBig.stop();
  await mwsSmall.stop();
  const big = `${cfg.bigKeys / 1e6}M`;
  const small = `${cfg.smallKeys / 1000}k`;
  const batch = (r: StateRun) => {
    const m = median(r.batchMs);
    return `${ms(m)}/batch, ${rate((cfg.batchRecords / m) * 1000, 'rec/s')} (processingMs ${ms(median(r.processingMs))})`;
  };
  const heap = { op: '<=' as const, limit: 100, unit: 'B' };
  const bytes = (v: number) => `${v.toFixed(0)} B`;
  return [
    {
      bench: name,
      measure: `string keys; ${cfg.batchRecords / 1000}k-record batches of existing keys; median of ${cfg.measuredUpdateState} (uSBK) / ${cfg.measuredMapWithState} (mWS) batches`,
      value: '',
    },
    { bench: name, measure: `updateStateByKey @ ${big} keys`, value: batch(usbk) },
    {
      bench: name,
      measure: `plain loop, the same update over a Map of ${big} keys, the whole state out as pairs (as updateStateByKey)`,
      value: `${ms(median(plain.batchMs))}/batch`,
    },
    {
      bench: name,
      measure: '  the same loop without building the output (for reference)',
      value: `${ms(median(plain.bareMs))}/batch (updateStateByKey / it: ${ratio(median(usbk.batchMs) / median(plain.bareMs))})`,
    },
    targetRow(name, `updateStateByKey / plain loop @ ${big}`, median(usbk.batchMs) / median(plain.batchMs), { op: '<=', limit: 2 }, ratio),
    { bench: name, measure: `mapWithState @ ${big} keys`, value: batch(mwsBig) },
    { bench: name, measure: `mapWithState @ ${small} keys`, value: batch(mwsSmall) },
    {
      bench: name,
      measure: `updateStateByKey / mapWithState @ ${big}`,
      value: '',
      ratio: ratio(median(usbk.batchMs) / median(mwsBig.batchMs)),
    },
    targetRow(
      name,
      `mapWithState ${big} / ${small} keys`,
      median(mwsBig.batchMs) / median(mwsSmall.batchMs),
      { op: '<=', limit: 1.5 },
      ratio,
    ),
    {
      bench: name,
      measure: 'same ratio on BatchInfo.processingMs',
      value: '',
      ratio: ratio(median(mwsBig.processingMs) / median(mwsSmall.processingMs)),
    },
    {
      bench: name,
      measure: `loading ${big} keys (${cfg.loadBatch / 1000}k per batch)`,
      value: `updateStateByKey ${ms(usbk.loadMs)}, mapWithState ${ms(mwsBig.loadMs)}`,
    },
    targetRow(name, `heap per key, updateStateByKey @ ${big}`, usbk.heapBytesPerKey, heap, bytes),
    targetRow(name, `heap per key, mapWithState @ ${big}`, mwsBig.heapBytesPerKey, heap, bytes),
    { bench: name, measure: `heap per key, mapWithState @ ${small} (for reference)`, value: '', ratio: bytes(mwsSmall.heapBytesPerKey) },
  ];
}
