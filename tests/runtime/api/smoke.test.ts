import test from 'ava';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

test('smoke - word count over two batches', async (t) => {
  const ssc = new StreamingContext({ appName: 'wc', batchDuration: 1000, partitions: 2, clock: new ManualClock() });
  const lines = ssc.queueStream<string>([['a b', 'a'], ['b']]);
  const counts = lines
    .flatMap((l) => l.split(' '))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b);
  const out = collectBatches(counts);
  await ssc.start();
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records.sort()]),
    [
      [
        1000,
        [
          ['a', 2],
          ['b', 1],
        ],
      ],
      [2000, [['b', 1]]],
      [3000, []],
    ],
  );
});
