/**
 * The test kit's chaos check (`checkRecovery` from tributary-streams/testing), used as
 * an app's own test suite would: a word count on a generator survives 20 seeded
 * crashes; the same count with Math.random() in a map is caught as non-deterministic
 * on its first batch; an output that appends to a file is caught as not idempotent.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { defineApp, StreamingContext, seconds } from '../../../runtime/api/index.ts';
import { checkRecovery } from '../../../runtime/api/testing.ts';
import { wordCountApp } from '../../../runtime/cli/chaos/word-count-app.ts';

/** A word count with running totals and a window; `noise` adds Math.random() to every count. */
function wordCount(options: { noise?: boolean; appendTo?: (args: readonly string[]) => string } = {}) {
  return defineApp(({ args }) =>
    StreamingContext.getOrCreate('./checkpoint', () => {
      const ssc = new StreamingContext({ appName: 'kit-wc', batchDuration: seconds(1), partitions: 2 });
      const words = ssc
        .generatorStream({ ratePerSecond: 40, seed: 5 })
        .flatMap((line) => line.split(' '))
        .map((w) => [w, options.noise ? 1 + Math.floor(Math.random() * 2) : 1] as [string, number]);
      const totals = words
        .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce((a, b) => a + b, 0))
        .uid('totals')
        .checkpoint(seconds(3));
      const appendTo = options.appendTo;
      if (appendTo) {
        const file = appendTo(args);
        totals.foreachBatch((records, time) => fs.appendFile(file, `${time} ${records.reduce((n, [, c]) => n + c, 0)}\n`));
      } else {
        totals.foreachBatch(() => {});
      }
      words
        .reduceByKeyAndWindow((a, b) => a + b, seconds(4), seconds(2))
        .uid('window')
        .foreachBatch(() => {});
      return ssc;
    }),
  );
}

test('checkRecovery - a word count survives 20 crashes', async (t) => {
  const report = await checkRecovery(wordCount(), { crashes: 20, seed: 7 });
  t.true(report.passed, report.text);
  t.is(report.diagnosis, 'pass');
  t.is(report.crashes, 20);
  t.is(report.statesCompared.length, 2);
  t.true(report.statesCompared.includes('totals'));
  t.log(report.text);
  // Every batch of both outputs was compared, and some batches were in flight at a crash and ran again.
  t.is(report.outputsCompared, report.batches + report.batches / 2);
  t.true(report.rerunBatches.length >= 5, report.text);
  t.regex(report.text, /^result: +PASS$/m);
});

test('checkRecovery - Math.random() in a map is non-deterministic at batch 1', async (t) => {
  const report = await checkRecovery(wordCount({ noise: true }), { crashes: 3, seed: 7 });
  t.false(report.passed);
  t.is(report.diagnosis, 'non-deterministic');
  t.is(report.firstDifference?.time, 1000);
  t.regex(report.text, /non-deterministic: batch 1000, (foreachBatch|totals|window)/);
});

test('checkRecovery - an output appending to a file is not idempotent', async (t) => {
  const report = await checkRecovery(wordCount({ appendTo: (args) => path.join(args[0] as string, 'totals.log') }), {
    crashes: 4,
    seed: 3,
    args: (dir) => [dir],
  });
  t.false(report.passed);
  t.is(report.diagnosis, 'not-idempotent', report.text);
  t.regex(report.text, /totals\.log holds \d+ lines more than the reference, each a repeat/);
  t.true(report.rerunBatches.includes(report.firstDifference?.time as number), report.text);
  t.log(report.text);
});

test('checkRecovery - the built-in word-count workload, as an app, survives 10 crashes', async (t) => {
  const report = await checkRecovery(wordCountApp, { crashes: 10, seed: 20261124, batches: 40, args: (dir) => [dir] });
  t.true(report.passed, report.text);
  t.is(report.crashes, 10);
  // Per-batch counts, the window's output and the totals file, and the two stateful operators.
  t.true(report.filesCompared > 40, report.text);
  t.true(report.statesCompared.includes('totals') && report.statesCompared.includes('window'), report.text);
  t.true(report.rerunBatches.length > 0, report.text);
});
