import test from 'ava';
import { StreamingContext } from '../../../runtime/api/index.ts';
import { collectBatches, ManualClock } from '../../../runtime/api/testing.ts';

function context(appName: string): StreamingContext {
  return new StreamingContext({ appName, batchDuration: 1000, partitions: 2, clock: new ManualClock() });
}

test('queueStream - oneAtATime (default) takes one queued batch per tick', async (t) => {
  const ssc = context('queue-one');
  const out = collectBatches(ssc.queueStream<string>([['a', 'b'], ['c'], ['d']]));
  await ssc.start();
  await ssc.runBatches(4);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, ['a', 'b']],
      [2000, ['c']],
      [3000, ['d']],
      [4000, []],
    ],
  );
});

test('queueStream - oneAtATime false takes everything queued in one batch, in order', async (t) => {
  const ssc = context('queue-all');
  const out = collectBatches(ssc.queueStream<string>([['a', 'b'], ['c'], ['d']], { oneAtATime: false }));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => [b.time, b.records]),
    [
      [1000, ['a', 'b', 'c', 'd']],
      [2000, []],
    ],
  );
});

test('queueStream - defaultBatch is used for every tick that finds the queue empty', async (t) => {
  const ssc = context('queue-default');
  const out = collectBatches(ssc.queueStream<string>([['a']], { defaultBatch: ['x', 'y'] }));
  await ssc.start();
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['a'], ['x', 'y'], ['x', 'y']],
  );
});

test('queueStream - defaultBatch also applies with oneAtATime false', async (t) => {
  const ssc = context('queue-default-all');
  const out = collectBatches(ssc.queueStream<number>([], { oneAtATime: false, defaultBatch: [0] }));
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [[0], [0]],
  );
});

test('queueStream - batches pushed onto the array after start are taken by later ticks', async (t) => {
  const ssc = context('queue-grow');
  const queue: string[][] = [['a']];
  const out = collectBatches(ssc.queueStream(queue));
  await ssc.start();
  await ssc.runBatches(2);
  queue.push(['b'], ['c']);
  await ssc.runBatches(3);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['a'], [], ['b'], ['c'], []],
  );
});

test('queueStream - a growing array with oneAtATime false takes only what is new', async (t) => {
  const ssc = context('queue-grow-all');
  const queue: string[][] = [['a'], ['b']];
  const out = collectBatches(ssc.queueStream(queue, { oneAtATime: false }));
  await ssc.start();
  await ssc.runBatches(1);
  queue.push(['c'], ['d']);
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(
    out.map((b) => b.records),
    [['a', 'b'], ['c', 'd'], []],
  );
});

test('queueStream - records that are arrays (pairs) are kept whole', async (t) => {
  const ssc = context('queue-pairs');
  const out = collectBatches(
    ssc.queueStream<[string, number]>(
      [
        [
          ['a', 1],
          ['b', 2],
        ],
        [['c', 3]],
      ],
      { oneAtATime: false },
    ),
  );
  await ssc.start();
  await ssc.runBatches(1);
  await ssc.stop();
  t.deepEqual(out[0]?.records, [
    ['a', 1],
    ['b', 2],
    ['c', 3],
  ]);
});

test('queueStream - a defaultBatch is copied, so an output that mutates its batch cannot change later batches', async (t) => {
  const ssc = context('queue-default-copy');
  const seen: number[] = [];
  ssc.queueStream<string>([], { defaultBatch: ['x'] }).foreachBatch((records) => {
    seen.push(records.length);
    records.push('mutated');
  });
  await ssc.start();
  await ssc.runBatches(2);
  await ssc.stop();
  t.deepEqual(seen, [1, 1]);
});
