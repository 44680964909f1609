/**
 * The receivers' write-ahead log: every block interval a receiver's records are cut
 * into a block and journaled, so a crash loses at most one block interval of what it
 * accepted; `await store()` resolves only once the records are journaled, so a
 * receiver that acknowledges its source after it loses nothing; a graceful stop runs
 * one more batch for what was accepted since the last one.
 */
import test from 'ava';
import { pino } from 'pino';
import { Receiver, StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { TempDirs } from '../helpers/checkpoint-kit.ts';

const dirs = new TempDirs();
test.after.always(() => dirs.removeAll());

const quiet = pino({ level: 'silent' });
const BATCH_MS = 1000;
const BLOCK_MS = 200;

/** A receiver the test feeds by hand. */
class Hand extends Receiver<string> {
  onStart(): void {}
  onStop(): void {}
}

interface Run {
  readonly ssc: StreamingContext;
  readonly rx: Hand;
  /** Records of each batch, by batch time. */
  readonly batches: Map<number, string[]>;
}

function build(clock: ManualClock, batches: Map<number, string[]>, rx: Receiver<string> = new Hand()): Run {
  const ssc = new StreamingContext({ appName: 'wal', batchDuration: BATCH_MS, blockIntervalMs: BLOCK_MS, clock, logger: quiet });
  ssc.receiverStream(rx).foreachBatch((records, time) => {
    batches.set(time, [...records]);
  });
  return { ssc, rx: rx as Hand, batches };
}

async function resume(dir: string, clock: ManualClock, rx?: Receiver<string>): Promise<Run> {
  let run: Run | undefined;
  const batches = new Map<number, string[]>();
  const ssc = await StreamingContext.getOrCreate(
    dir,
    () => {
      run = build(clock, batches, rx);
      return run.ssc;
    },
    { clock },
  );
  await ssc.start();
  if (run === undefined) throw new Error('the factory did not run');
  return run;
}

test('receiver WAL - a crash keeps what was written ahead one block interval ago and loses only what came after', async (t) => {
  const dir = await dirs.make('wal-crash');
  const clock = new ManualClock();
  const first = await resume(dir, clock);
  first.rx.store('in-batch');
  await first.ssc.runBatches(1);
  const durable = first.rx.storeAll(['a', 'b']);
  clock.advance(BLOCK_MS);
  await durable;
  void first.rx.store('after-the-cut');
  first.ssc.crash();

  const second = await resume(dir, clock);
  await second.ssc.runBatches(1);
  await second.ssc.stop();
  t.deepEqual(first.batches.get(1000), ['in-batch']);
  t.deepEqual(second.batches.get(2000), ['a', 'b'], 'the block written ahead before the crash is the next batch');
  t.false([...second.batches.values()].flat().includes('after-the-cut'), 'what came after the last cut is lost (the one block interval)');
});

test('receiver WAL - store() resolves only after the block is journaled, at the next block interval', async (t) => {
  const dir = await dirs.make('wal-resolve');
  const clock = new ManualClock();
  const run = await resume(dir, clock);
  let done = false;
  const p = run.rx.store('x').then(() => {
    done = true;
  });
  // Let every pending callback run: nothing cut yet, so nothing is durable.
  await new Promise((resolve) => setImmediate(resolve));
  t.false(done, 'not durable before the block interval');
  clock.advance(BLOCK_MS);
  await p;
  t.true(done);
  await run.ssc.stop();
});

/**
 * A source that re-sends what was not acknowledged, as a broker does: the receiver
 * acknowledges each record once its store() resolved.
 */
class Resending {
  readonly acked = new Set<number>();
  next = 0;
  rx: AckingReceiver | undefined;

  /** Emits `n` new records to the connected receiver. */
  emit(n: number): void {
    for (let i = 0; i < n; i++) this.rx?.deliver(this.next++);
  }
}

class AckingReceiver extends Receiver<string> {
  readonly #source: Resending;
  constructor(source: Resending) {
    super();
    this.#source = source;
  }
  onStart(): void {
    this.#source.rx = this;
    for (let i = 0; i < this.#source.next; i++) if (!this.#source.acked.has(i)) this.deliver(i);
  }
  onStop(): void {
    if (this.#source.rx === this) this.#source.rx = undefined;
  }
  deliver(n: number): void {
    this.store(`r${n}`).then(
      () => this.#source.acked.add(n),
      () => {},
    );
  }
}

test('receiver WAL - a receiver that acknowledges after store() loses nothing across crashes', async (t) => {
  const dir = await dirs.make('wal-acking');
  const clock = new ManualClock();
  const source = new Resending();
  const seen: string[] = [];
  // Five lives: each takes records over 3 batches, crashing mid-block in the first four.
  for (let life = 0; life < 5; life++) {
    const run = await resume(dir, clock, new AckingReceiver(source));
    for (let step = 0; step < 3 * (BATCH_MS / BLOCK_MS); step++) {
      source.emit(7);
      clock.advance(BLOCK_MS);
    }
    await run.ssc.runBatches(0);
    source.emit(5);
    if (life < 4) {
      // Crash with records accepted after the last cut: not acknowledged, so re-sent.
      run.ssc.crash();
    } else {
      await run.ssc.stop();
    }
    for (const [, records] of [...run.batches].sort(([a], [b]) => a - b)) seen.push(...records);
  }
  const expected = Array.from({ length: source.next }, (_, i) => `r${i}`);
  const missing = expected.filter((r) => !seen.includes(r));
  t.deepEqual(missing, [], 'every record the source produced reached a batch');
  t.is(source.acked.size, source.next, 'and was acknowledged');
});

test('receiver WAL - a graceful stop runs one more batch for what was accepted since the last one', async (t) => {
  const clock = new ManualClock();
  const batches = new Map<number, string[]>();
  // No checkpoint: before, these records were lost with the process.
  const run = build(clock, batches);
  await run.ssc.start();
  run.rx.store('first');
  await run.ssc.runBatches(1);
  run.rx.storeAll(['late-1', 'late-2']);
  await run.ssc.stop();
  t.deepEqual(batches.get(1000), ['first']);
  t.deepEqual(batches.get(2000), ['late-1', 'late-2']);
  await t.throwsAsync(run.rx.store('after-stop'), { message: /stopped/ }, 'a stopped receiver says its records were not stored');
});

test('receiver WAL - blockIntervalMs must be from 1 ms to the batch duration', (t) => {
  for (const blockIntervalMs of [0, -5, 1.5, 1001]) {
    t.throws(() => new StreamingContext({ appName: 'bad', batchDuration: 1000, blockIntervalMs }), {
      code: 'INVALID_CONFIG',
      message: /blockIntervalMs must be a whole number of ms from 1 to the batch duration \(1000\)/,
    });
  }
  t.is(new StreamingContext({ appName: 'short', batchDuration: 50 }).blockIntervalMs, 50, 'the default is capped by a short batch');
  t.is(new StreamingContext({ appName: 'default', batchDuration: 1000 }).blockIntervalMs, 200);
});
