/**
 * Spark Streaming's BasicOperationsSuite (and the matching JavaAPISuite cases),
 * ported: the same input batches and the same expected output per batch. Where
 * Spark compares a batch as a set (`useSet = true`), the batch is sorted here.
 * Inputs are split into 2 partitions, as Spark's `numInputPartitions`.
 */
import test from 'ava';
import type { DStream } from '../../../../runtime/api/index.ts';
import { runOperation, runOperation2, runOperationBatches, sortedCopy } from '../../../helpers/run-operation.ts';

type Pair<K, V> = [K, V];

/** Spark's `a to b`. */
function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const numbers = [range(1, 4), range(5, 8), range(9, 12)];

function ones(s: DStream<string>): DStream<Pair<string, number>> {
  return s.map((x) => [x, 1] as Pair<string, number>);
}

function xs(s: DStream<string>): DStream<Pair<string, string>> {
  return s.map((x) => [x, 'x'] as Pair<string, string>);
}

// ---- narrow operators -------------------------------------------------------------

test('map - maps every record', async (t) => {
  const out = await runOperation(numbers, (s) => s.map(String), 3);
  t.deepEqual(
    out,
    numbers.map((b) => b.map(String)),
  );
});

test('flatMap - emits every element of what the function returns', async (t) => {
  const out = await runOperation(numbers, (s) => s.flatMap((x) => [x, x * 2]), 3);
  t.deepEqual(
    out,
    numbers.map((b) => b.flatMap((x) => [x, x * 2])),
  );
});

test('flatMap - accepts any iterable (a string here)', async (t) => {
  const out = await runOperation([['go', 'giants'], ['boo']], (s) => s.flatMap((w) => w.toUpperCase()), 2);
  t.deepEqual(out, [
    ['G', 'O', 'G', 'I', 'A', 'N', 'T', 'S'],
    ['B', 'O', 'O'],
  ]);
});

test('filter - keeps the records for which the predicate holds', async (t) => {
  const out = await runOperation(numbers, (s) => s.filter((x) => x % 2 === 0), 3);
  t.deepEqual(
    out,
    numbers.map((b) => b.filter((x) => x % 2 === 0)),
  );
});

test('glom - turns each of the 2 input partitions into one array', async (t) => {
  const out = await runOperation(numbers, (s) => s.glom(), 3);
  t.deepEqual(out, [
    [
      [1, 2],
      [3, 4],
    ],
    [
      [5, 6],
      [7, 8],
    ],
    [
      [9, 10],
      [11, 12],
    ],
  ]);
});

test('mapPartitions - sees each partition whole', async (t) => {
  const out = await runOperation(numbers, (s) => s.mapPartitions((xs) => [xs.reduce((a, b) => a + b, 0)]), 3, { sorted: true });
  t.deepEqual(out, [
    [3, 7],
    [11, 15],
    [19, 23],
  ]);
});

test('mapPartitions - gets the batch time', async (t) => {
  const out = await runOperation([[1], [2]], (s) => s.mapPartitions((xs, time) => xs.map((x) => [x, time])), 2, { sorted: true });
  t.deepEqual(out, [[[1, 1000]], [[2, 2000]]]);
});

const hundreds = [range(1, 100), range(101, 200), range(201, 300)];

test('repartition - more partitions', async (t) => {
  const out = await runOperation(hundreds, (s) => s.repartition(5).glom(), 3, { partitions: 2 });
  t.is(out.length, 3);
  out.forEach((partitions, i) => {
    t.is(partitions.length, 5);
    t.deepEqual(sortedCopy(partitions.flat()), hundreds[i]);
  });
});

test('repartition - fewer partitions', async (t) => {
  const out = await runOperation(hundreds, (s) => s.repartition(2).glom(), 3, { partitions: 5 });
  t.is(out.length, 3);
  out.forEach((partitions, i) => {
    t.is(partitions.length, 2);
    t.deepEqual(sortedCopy(partitions.flat()), hundreds[i]);
  });
});

// ---- keyed aggregates -------------------------------------------------------------

const words = [['a', 'a', 'b'], ['', ''], []];

test('groupByKey - groups the values of each key', async (t) => {
  const out = await runOperation(words, (s) => ones(s).groupByKey().mapValues(sortedCopy), 3, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 1]],
      ['b', [1]],
    ],
    [['', [1, 1]]],
    [],
  ]);
});

test('groupByKey - keeps every value (JavaAPISuite pairs)', async (t) => {
  const input: Pair<string, string>[][] = [
    [
      ['california', 'dodgers'],
      ['california', 'giants'],
      ['new york', 'yankees'],
      ['new york', 'mets'],
    ],
    [
      ['california', 'sharks'],
      ['california', 'ducks'],
      ['new york', 'rangers'],
      ['new york', 'islanders'],
    ],
  ];
  const out = await runOperation(input, (s) => s.groupByKey().mapValues(sortedCopy), 2, { sorted: true });
  t.deepEqual(out, [
    [
      ['california', ['dodgers', 'giants']],
      ['new york', ['mets', 'yankees']],
    ],
    [
      ['california', ['ducks', 'sharks']],
      ['new york', ['islanders', 'rangers']],
    ],
  ]);
});

test('reduceByKey - reduces the values of each key', async (t) => {
  const out = await runOperation(words, (s) => ones(s).reduceByKey((a, b) => a + b), 3, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', 2],
      ['b', 1],
    ],
    [['', 2]],
    [],
  ]);
});

test('reduceByKey - honours an explicit number of partitions', async (t) => {
  const out = await runOperation(
    words,
    (s) =>
      ones(s)
        .reduceByKey((a, b) => a + b, { partitions: 3 })
        .glom(),
    1,
  );
  t.is(out[0]?.length, 3);
  t.deepEqual(sortedCopy(out[0]?.flat() ?? []), [
    ['a', 2],
    ['b', 1],
  ]);
});

test('reduce - reduces the whole batch to one record', async (t) => {
  const out = await runOperation(numbers, (s) => s.reduce((a, b) => a + b), 3);
  t.deepEqual(out, [[10], [26], [42]]);
});

test('reduce - an empty batch emits nothing', async (t) => {
  const out = await runOperation([[1, 2], [], [3]], (s) => s.reduce((a, b) => a + b), 3);
  t.deepEqual(out, [[3], [], [3]]);
});

test('count - counts the records of each batch, [0] for an empty batch', async (t) => {
  const out = await runOperation([[], range(1, 1), range(1, 2), range(1, 3), range(1, 4)], (s) => s.count(), 5);
  t.deepEqual(out, [[0], [1], [2], [3], [4]]);
});

test('countByValue - counts each distinct value', async (t) => {
  const out = await runOperation([range(1, 1), [1, 1, 1], range(1, 2), [1, 1, 2, 2]], (s) => s.countByValue(), 4, { sorted: true });
  t.deepEqual(out, [
    [[1, 1]],
    [[1, 3]],
    [
      [1, 1],
      [2, 1],
    ],
    [
      [1, 2],
      [2, 2],
    ],
  ]);
});

test('mapValues - maps values and keeps keys', async (t) => {
  const out = await runOperation(
    words,
    (s) =>
      ones(s)
        .reduceByKey((a, b) => a + b)
        .mapValues((v) => v + 10),
    3,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 12],
      ['b', 11],
    ],
    [['', 12]],
    [],
  ]);
});

test('flatMapValues - pairs every element with the key', async (t) => {
  const out = await runOperation(
    words,
    (s) =>
      ones(s)
        .reduceByKey((a, b) => a + b)
        .flatMapValues((v) => [v, v + 10]),
    3,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 2],
      ['a', 12],
      ['b', 1],
      ['b', 11],
    ],
    [
      ['', 2],
      ['', 12],
    ],
    [],
  ]);
});

const stringInt: Pair<string, number>[][] = [
  [
    ['california', 1],
    ['california', 3],
    ['new york', 4],
    ['new york', 1],
  ],
  [
    ['california', 5],
    ['california', 5],
    ['new york', 3],
    ['new york', 1],
  ],
];

test('combineByKey - combines the values of each key (JavaAPISuite)', async (t) => {
  const out = await runOperation(
    stringInt,
    (s) =>
      s.combineByKey(
        (v) => v,
        (a, b) => a + b,
        (a, b) => a + b,
        { partitions: 2 },
      ),
    2,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['california', 4],
      ['new york', 5],
    ],
    [
      ['california', 10],
      ['new york', 4],
    ],
  ]);
});

test('combineByKey - creates once per key and partition, merges combiners across partitions', async (t) => {
  // Partitions of the batch: [a1, b2] and [a3, b4]: each key is in both.
  const input: Pair<string, number>[][] = [
    [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['b', 4],
    ],
  ];
  const out = await runOperation(
    input,
    (s) =>
      s.combineByKey(
        (v): [number, number, string] => [v, 1, 'created'],
        ([sum, n, how], v): [number, number, string] => [sum + v, n + 1, how],
        ([s1, n1, h1], [s2, n2, h2]): [number, number, string] => [s1 + s2, n1 + n2, `${h1}+${h2}`],
      ),
    1,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', [4, 2, 'created+created']],
      ['b', [6, 2, 'created+created']],
    ],
  ]);
});

test('reduceByKey - one process folds every partition of a batch in one combiner, in record order', async (t) => {
  // Partitions [a1, a3] and [a2, a5]; `a - b` tells the folds apart: one combiner over
  // both gives ((1 - 3) - 2) - 5 = -9, a combiner per partition (1 - 3) - (2 - 5) = 1.
  const input: Pair<string, number>[][] = [
    [
      ['a', 1],
      ['a', 3],
      ['a', 2],
      ['a', 5],
    ],
  ];
  t.deepEqual(await runOperation(input, (s) => s.reduceByKey((a, b) => a - b), 1), [[['a', -9]]]);
  // groupByKey keeps record order the same way; combineByKey (above) keeps one create per partition.
  t.deepEqual(await runOperation(input, (s) => s.groupByKey(), 1), [[['a', [1, 3, 2, 5]]]]);
});

test('reduceByKey - a record that fails in one combiner over all partitions is set aside alone', async (t) => {
  const input: Pair<string, number>[][] = [
    [
      ['a', 1],
      ['b', 2],
      ['a', -1],
      ['b', 4],
    ],
  ];
  const out = await runOperation(
    input,
    (s) =>
      s
        .map(([k, v]): Pair<string, number> => {
          if (v < 0) throw new RangeError(`negative ${v}`);
          return [k, v];
        })
        .onRecordError('dead-letter')
        .reduceByKey((a, b) => a + b),
    1,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 1],
      ['b', 6],
    ],
  ]);
});

// ---- union and transform ------------------------------------------------------------

const spaced = [range(1, 4), range(101, 104), range(201, 204)];

test('union - this stream and another, batch by batch', async (t) => {
  const out = await runOperation(spaced, (s) => s.union(s.map((x) => x + 4)), 3);
  t.deepEqual(out, [range(1, 8), range(101, 108), range(201, 208)]);
});

test('union - streams of different slides are refused', async (t) => {
  await t.throwsAsync(
    runOperation(spaced, (s) => s.union(s.window(2000, 2000)), 1),
    { code: 'INVALID_GRAPH' },
  );
});

test('ssc.union - the records of all streams', async (t) => {
  const out = await runOperation(spaced, (s, ssc) => ssc.union([s, s.map((x) => x + 4), s.map((x) => x + 8)]), 3);
  t.deepEqual(out, [range(1, 12), range(101, 112), range(201, 212)]);
});

test('transform - maps the whole batch', async (t) => {
  const out = await runOperation(numbers, (s) => s.transform((records) => records.map(String)), 3);
  t.deepEqual(
    out,
    numbers.map((b) => b.map(String)),
  );
});

test('transform - gets the batch time', async (t) => {
  const batches = await runOperationBatches(
    [[1], [], [2, 3]],
    (s) => s.transform((records, time) => [[records.length, time] as Pair<number, number>]),
    3,
  );
  t.deepEqual(
    batches.map((b) => [b.time, b.records]),
    [
      [1000, [[1, 1000]]],
      [2000, [[0, 2000]]],
      [3000, [[2, 3000]]],
    ],
  );
});

test('transform - a function that returns no array fails the batch', async (t) => {
  await t.throwsAsync(
    runOperation([[1]], (s) => s.transform(() => null as unknown as number[]), 1),
    { code: 'BATCH_FAILED' },
  );
});

/** An in-memory inner join, as `rdd1.join(rdd2)` inside Spark's transformWith test. */
function joinBatches<K, V, W>(left: Pair<K, V>[], right: Pair<K, W>[]): Pair<K, [V, W]>[] {
  const out: Pair<K, [V, W]>[] = [];
  for (const [k, v] of left) for (const [k2, w] of right) if (k === k2) out.push([k, [v, w]]);
  return out;
}

const joinLeft = [['a', 'b'], ['a', ''], [''], []];
const joinRight = [['a', 'b'], ['b', ''], [], ['']];

test('transformWith - sees both batches of the same time', async (t) => {
  const out = await runOperation2(joinLeft, joinRight, (s1, s2) => ones(s1).transformWith(xs(s2), joinBatches), 4, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 'x']],
      ['b', [1, 'x']],
    ],
    [['', [1, 'x']]],
    [],
    [],
  ]);
});

test('transformWith - gets the batch time', async (t) => {
  const out = await runOperation2([[1], [2]], [[3], []], (s1, s2) => s1.transformWith(s2, (a, b, time) => [time, ...a, ...b]), 2);
  t.deepEqual(out, [
    [1000, 1, 3],
    [2000, 2],
  ]);
});

test('ssc.transform - over three streams', async (t) => {
  const out = await runOperation(
    spaced,
    (s, ssc) => ssc.transform<number>([s, s.map((x) => x + 4), s.map((x) => x + 8)], (batches) => batches.flat() as number[]),
    3,
  );
  t.deepEqual(out, [range(1, 12), range(101, 112), range(201, 212)]);
});

test('ssc.transform - gets every stream and the batch time (JavaAPISuite)', async (t) => {
  const seen: [number, number][] = [];
  const out = await runOperation2(
    [[1], [2]],
    [[[1, 'x']], [[2, 'y']]] as Pair<number, string>[][],
    (s1, pairs, ssc) =>
      ssc.transform<Pair<number, [number, string]>>([s1 as DStream<unknown>, pairs as DStream<unknown>], (batches, time) => {
        seen.push([batches.length, time]);
        const left = (batches[0] as number[]).map((i) => [i, i] as Pair<number, number>);
        return joinBatches(left, batches[1] as Pair<number, string>[]);
      }),
    2,
  );
  t.deepEqual(out, [[[1, [1, 'x']]], [[2, [2, 'y']]]]);
  t.deepEqual(seen, [
    [2, 1000],
    [2, 2000],
  ]);
});

// ---- cogroup and joins -----------------------------------------------------------------

test('cogroup - the values of both sides for every key', async (t) => {
  const out = await runOperation2(
    [['a', 'a', 'b'], ['a', ''], [''], []],
    [['a', 'a', 'b'], ['b', ''], [], []],
    (s1, s2) => ones(s1).cogroup(xs(s2)),
    4,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      [
        'a',
        [
          [1, 1],
          ['x', 'x'],
        ],
      ],
      ['b', [[1], ['x']]],
    ],
    [
      ['', [[1], ['x']]],
      ['a', [[1], []]],
      ['b', [[], ['x']]],
    ],
    [['', [[1], []]]],
    [],
  ]);
});

test('join - pairs of values of keys on both sides', async (t) => {
  const out = await runOperation2(joinLeft, joinRight, (s1, s2) => ones(s1).join(xs(s2)), 4, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 'x']],
      ['b', [1, 'x']],
    ],
    [['', [1, 'x']]],
    [],
    [],
  ]);
});

test('join - every combination of the values of a key', async (t) => {
  const out = await runOperation2(
    [
      [
        ['k', 1],
        ['k', 2],
      ],
    ] as Pair<string, number>[][],
    [
      [
        ['k', 'x'],
        ['k', 'y'],
      ],
    ] as Pair<string, string>[][],
    (s1, s2) => s1.join(s2),
    1,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['k', [1, 'x']],
      ['k', [1, 'y']],
      ['k', [2, 'x']],
      ['k', [2, 'y']],
    ],
  ]);
});

test('leftOuterJoin - every left value, the missing right side undefined', async (t) => {
  const out = await runOperation2(joinLeft, joinRight, (s1, s2) => ones(s1).leftOuterJoin(xs(s2)), 4, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 'x']],
      ['b', [1, 'x']],
    ],
    [
      ['', [1, 'x']],
      ['a', [1, undefined]],
    ],
    [['', [1, undefined]]],
    [],
  ]);
});

test('rightOuterJoin - every right value, the missing left side undefined', async (t) => {
  const out = await runOperation2(joinLeft, joinRight, (s1, s2) => ones(s1).rightOuterJoin(xs(s2)), 4, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 'x']],
      ['b', [1, 'x']],
    ],
    [
      ['', [1, 'x']],
      ['b', [undefined, 'x']],
    ],
    [],
    [['', [undefined, 'x']]],
  ]);
});

test('fullOuterJoin - every value of either side, the missing side undefined', async (t) => {
  const out = await runOperation2(joinLeft, joinRight, (s1, s2) => ones(s1).fullOuterJoin(xs(s2)), 4, { sorted: true });
  t.deepEqual(out, [
    [
      ['a', [1, 'x']],
      ['b', [1, 'x']],
    ],
    [
      ['', [1, 'x']],
      ['a', [1, undefined]],
      ['b', [undefined, 'x']],
    ],
    [['', [1, undefined]]],
    [['', [undefined, 'x']]],
  ]);
});

test('join - structured keys compare by value', async (t) => {
  const out = await runOperation2(
    [[[['a', 1], 'left']]] as Pair<[string, number], string>[][],
    [[[['a', 1], 'right']]] as Pair<[string, number], string>[][],
    (s1, s2) => s1.join(s2),
    1,
  );
  t.deepEqual(out, [
    [
      [
        ['a', 1],
        ['left', 'right'],
      ],
    ],
  ]);
});
