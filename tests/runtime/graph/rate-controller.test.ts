/**
 * Spark's PID rate estimator and the rate controller, as pure logic (the cases of
 * Spark's PIDRateEstimatorSuite), and a receiver slowed to maxRatePerPartition.
 */
import test from 'ava';
import { pino } from 'pino';
import { Receiver, StreamingContext } from '../../../runtime/api/index.ts';
import { ManualClock } from '../../../runtime/api/testing.ts';
import { PidRateEstimator, RateController } from '../../../runtime/graph/rate-controller.ts';

test('rate controller - the first batch only measures; later ones give a rate', (t) => {
  const pid = new PidRateEstimator(1000);
  t.is(pid.compute(1000, 1000, 500, 0), undefined);
  t.not(pid.compute(2000, 1000, 500, 0), undefined);
});

test('rate controller - batches that say nothing (no records, no time, out of order) change nothing', (t) => {
  const pid = new PidRateEstimator(1000);
  pid.compute(1000, 1000, 500, 0);
  t.is(pid.compute(2000, 0, 500, 0), undefined, 'no records');
  t.is(pid.compute(2000, 1000, 0, 0), undefined, 'no processing time');
  t.is(pid.compute(500, 1000, 500, 0), undefined, 'older than the last');
});

test('rate controller - with no error and no delay it follows the processing rate', (t) => {
  const pid = new PidRateEstimator(1000);
  // 1000 records in 1 s: the processing rate is 1000/s, and every batch takes exactly that.
  pid.compute(1000, 1000, 1000, 0);
  for (let time = 2000; time <= 6000; time += 1000) t.is(pid.compute(time, 1000, 1000, 0), 1000);
});

test('rate controller - a scheduling delay keeps the rate below the processing rate', (t) => {
  const pid = new PidRateEstimator(1000);
  pid.compute(1000, 1000, 1000, 0);
  const rate = pid.compute(2000, 1000, 1000, 2000) as number;
  t.true(rate < 1000, `rate ${rate}`);
});

test('rate controller - a slower app lowers the rate, never under minRate', (t) => {
  const pid = new PidRateEstimator(1000, { minRate: 150 });
  pid.compute(1000, 1000, 1000, 0);
  const slower = pid.compute(2000, 1000, 4000, 0) as number;
  t.true(slower < 1000, `rate ${slower}`);
  t.is(pid.compute(3000, 10, 10_000, 60_000), 150);
});

test('rate controller - maxRate caps the estimate; without backpressure only maxRate applies', (t) => {
  const rc = new RateController({ batchMs: 1000, backpressure: true, initialRate: 800, maxRate: 500 });
  t.is(rc.perSecond(), 500);
  const off = new RateController({ batchMs: 1000, backpressure: false, initialRate: 800 });
  t.is(off.perSecond(), undefined);
  off.allocated(1000, 100);
  off.batchCompleted({ time: 1000, processingMs: 10_000, schedulingDelayMs: 0 });
  t.is(off.perSecond(), undefined);
});

test('rate controller - the estimate uses what this input took for the completed batch', (t) => {
  const rc = new RateController({ batchMs: 1000, backpressure: true, initialRate: 100 });
  rc.allocated(1000, 1000);
  rc.batchCompleted({ time: 1000, processingMs: 1000, schedulingDelayMs: 0 });
  rc.allocated(2000, 1000);
  rc.batchCompleted({ time: 2000, processingMs: 2000, schedulingDelayMs: 0 });
  // Processed 500/s while taking at 1000/s: the rate comes down to the processing rate.
  t.is(rc.perSecond(), 500);
});

class Hand extends Receiver<number> {
  onStart(): void {}
  onStop(): void {}
}

test('rate controller - a receiver over maxRatePerPartition gets batches within the rate; store() resolves as they are cut', async (t) => {
  const clock = new ManualClock();
  // 2 partitions x 50 = 100 records/s; the bucket holds one second.
  const ssc = new StreamingContext({
    appName: 'rate-rx',
    batchDuration: 1000,
    partitions: 2,
    maxRatePerPartition: 50,
    clock,
    logger: pino({ level: 'silent' }),
  });
  const rx = new Hand();
  const sizes: number[] = [];
  ssc.receiverStream(rx).foreachBatch((r) => void sizes.push(r.length));
  await ssc.start();
  let resolved = false;
  // 300 records at 100/s: blocks of 20 every 200 ms, so the last is cut at 3 s.
  const stored = rx.storeAll(Array.from({ length: 300 }, (_, i) => i)).then(() => {
    resolved = true;
  });
  await ssc.runBatches(2);
  t.false(resolved, 'two seconds later: 200 of 300 cut');
  await ssc.runBatches(1);
  await stored;
  await ssc.stop();
  t.deepEqual(sizes, [100, 100, 100], 'each batch within 100 records/s');
});
