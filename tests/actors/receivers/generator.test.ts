import test from 'ava';
import { InvalidConfigError, StreamingContext, textLine } from '../../../runtime/api/index.ts';
import { type CollectedBatch, collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

interface RunOptions {
  readonly seed?: number;
  readonly ratePerSecond: number;
  readonly batchDuration?: number;
  readonly batches: number;
  readonly startMs?: number;
  readonly limit?: number;
}

/** Runs a generatorStream in a fresh context of its own and returns its batches. */
async function generate(appName: string, o: RunOptions): Promise<CollectedBatch<string>[]> {
  const ssc = new StreamingContext({
    appName,
    batchDuration: o.batchDuration ?? 1000,
    partitions: 2,
    clock: new ManualClock(o.startMs ?? 0),
  });
  const options = {
    ratePerSecond: o.ratePerSecond,
    ...(o.seed === undefined ? {} : { seed: o.seed }),
    ...(o.limit === undefined ? {} : { limit: o.limit }),
  };
  const out = collectBatches(ssc.generatorStream(options));
  await ssc.start();
  await ssc.runBatches(o.batches);
  await ssc.stop();
  return out;
}

test('generatorStream - the same seed gives the same records in two separate contexts', async (t) => {
  const first = await generate('gen-same-a', { seed: 7, ratePerSecond: 50, batches: 3 });
  // A different start time: records depend on the batch's offset from the zero time, not on the clock.
  const second = await generate('gen-same-b', { seed: 7, ratePerSecond: 50, batches: 3, startMs: 5_000_000 });
  t.is(first.length, 3);
  t.is(first.flatMap((b) => b.records).length, 150);
  t.deepEqual(
    first.map((b) => b.records),
    second.map((b) => b.records),
  );
});

test('generatorStream - a different seed gives different records', async (t) => {
  const a = (await generate('gen-seed-a', { seed: 1, ratePerSecond: 20, batches: 2 })).flatMap((b) => b.records);
  const b = (await generate('gen-seed-b', { seed: 2, ratePerSecond: 20, batches: 2 })).flatMap((b) => b.records);
  t.is(a.length, 40);
  t.is(b.length, 40);
  t.notDeepEqual(a, b);
  // Not merely reordered or shifted: almost no line of one seed appears in the other.
  const inA = new Set(a);
  t.true(b.filter((line) => inA.has(line)).length < 4);
});

test('generatorStream - every seed gives its own lines (no seed collapses onto another)', (t) => {
  const seeds = [0, 1, 2, 3, 7, 42, 1000, 2 ** 31 - 1];
  const firstLines = seeds.map((s) => [0, 1, 2].map((seq) => textLine(seq, s)).join('|'));
  t.is(new Set(firstLines).size, seeds.length);
});

test('generatorStream - records are textLine(seq, seed) in sequence order across batches', async (t) => {
  const out = await generate('gen-lines', { seed: 3, ratePerSecond: 4, batches: 2 });
  t.deepEqual(
    out.map((b) => b.records),
    [[0, 1, 2, 3].map((s) => textLine(s, 3)), [4, 5, 6, 7].map((s) => textLine(s, 3))],
  );
});

test('generatorStream - ratePerSecond sets the records per batch', async (t) => {
  const out = await generate('gen-rate', { ratePerSecond: 1000, batchDuration: 500, batches: 4 });
  t.deepEqual(
    out.map((b) => b.records.length),
    [500, 500, 500, 500],
  );
  const slow = await generate('gen-rate-slow', { ratePerSecond: 3, batchDuration: 500, batches: 4 });
  // 1.5 records a batch: the fraction carries over, so every 2 batches hold exactly 3.
  t.deepEqual(
    slow.map((b) => b.records.length),
    [1, 2, 1, 2],
  );
});

test('generatorStream - limit stops the stream after that many records', async (t) => {
  const out = await generate('gen-limit', { ratePerSecond: 10, limit: 25, batches: 4 });
  t.deepEqual(
    out.map((b) => b.records.length),
    [10, 10, 5, 0],
  );
});

test('generatorStream - a custom record function gets the sequence number and seed', async (t) => {
  const ssc = new StreamingContext({ appName: 'gen-record', batchDuration: 1000, partitions: 2, clock: new ManualClock() });
  const out = collectBatches(ssc.generatorStream({ ratePerSecond: 3, seed: 9, record: (seq, seed) => seq * 100 + seed }));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [
      [9, 109, 209],
      [309, 409, 509],
    ],
  );
});

test('generatorStream - a rate that is not a positive number is refused', (t) => {
  const ssc = new StreamingContext({ appName: 'gen-bad', batchDuration: 1000, clock: new ManualClock() });
  for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.throws(() => ssc.generatorStream({ ratePerSecond: rate }), { instanceOf: InvalidConfigError });
  }
});

test('generatorStream - seeds 2^32 apart (e.g. Date.now()-style seeds) give different lines', (t) => {
  const big = 1_700_000_000_000;
  const base = big % 2 ** 32;
  t.notDeepEqual(
    [0, 1, 2].map((seq) => textLine(seq, big)),
    [0, 1, 2].map((seq) => textLine(seq, base)),
  );
  t.notDeepEqual(
    [0, 1, 2].map((seq) => textLine(seq, 2 ** 32 + 1)),
    [0, 1, 2].map((seq) => textLine(seq, 1)),
  );
});

test('generatorStream - sequence numbers past 2^32 do not repeat the first lines', (t) => {
  t.not(textLine(5 + 2 ** 32, 1), textLine(5, 1));
  t.not(textLine(2 ** 33, 1), textLine(0, 1));
});

test('generatorStream - a fractional seed is refused (it would collide with its integer part)', (t) => {
  const ssc = new StreamingContext({ appName: 'gen-bad-seed', batchDuration: 1000, clock: new ManualClock() });
  t.throws(() => ssc.generatorStream({ ratePerSecond: 1, seed: 1.5 }), { instanceOf: InvalidConfigError });
});
