/**
 * Spark Streaming's WindowOperationsSuite (and the window cases of JavaAPISuite),
 * ported: the same input batches, window and slide durations, number of batches
 * (`expected.length * slide / batch`) and expected output per emitted window. Spark
 * compares these batches as sets; they are sorted here.
 */
import test from 'ava';
import type { DStream } from '../../../../runtime/api/index.ts';
import { BATCH_MS, runOperation, runOperationBatches, sortedCopy } from '../../../helpers/run-operation.ts';

type Pair<K, V> = [K, V];
type Counts = Pair<string, number>[];

/** Spark's `numBatches = expectedOutput.size * (slideDuration / batchDuration)`. */
function batchesFor(expected: readonly unknown[], slideMs: number): number {
  return expected.length * (slideMs / BATCH_MS);
}

const sum = (a: number, b: number) => a + b;
const difference = (a: number, b: number) => a - b;

// ---- window ----------------------------------------------------------------------------

const digits = [[0], [1], [2], [3], [4], [5]];

function testWindow(name: string, input: number[][], expected: number[][], windowMs = 2000, slideMs = 1000): void {
  test(`window - ${name}`, async (t) => {
    const out = await runOperation(input, (s) => s.window(windowMs, slideMs), batchesFor(expected, slideMs), { sorted: true });
    t.deepEqual(out, expected);
  });
}

testWindow('basic window', digits, [[0], [0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]);

testWindow(
  'tumbling window',
  digits,
  [
    [0, 1],
    [2, 3],
    [4, 5],
  ],
  2000,
  2000,
);

testWindow(
  'larger window',
  digits,
  [
    [0, 1],
    [0, 1, 2, 3],
    [2, 3, 4, 5],
    [4, 5],
  ],
  4000,
  2000,
);

testWindow(
  'non-overlapping window',
  digits,
  [
    [1, 2],
    [4, 5],
  ],
  2000,
  3000,
);

test('window - the slide defaults to the parent slide, and windows keep firing after input stops (JavaAPISuite)', async (t) => {
  const out = await runOperation(
    [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ],
    (s) => s.window(2000),
    4,
    { sorted: true },
  );
  t.deepEqual(out, [
    [1, 2, 3],
    [1, 2, 3, 4, 5, 6],
    [4, 5, 6, 7, 8, 9],
    [7, 8, 9],
  ]);
});

test('window - with a slide duration (JavaAPISuite)', async (t) => {
  const input = [range(1, 3), range(4, 6), range(7, 9), range(10, 12), range(13, 15), range(16, 18)];
  const out = await runOperation(input, (s) => s.window(4000, 2000), 8, { sorted: true });
  t.deepEqual(out, [range(1, 6), range(1, 12), range(7, 18), range(13, 18)]);
});

test('window - emits only at multiples of the slide', async (t) => {
  const batches = await runOperationBatches(digits, (s) => s.window(4000, 2000), 8);
  t.deepEqual(
    batches.map((b) => b.time),
    [2000, 4000, 6000, 8000],
  );
});

test('window - an empty window still emits an empty batch', async (t) => {
  const batches = await runOperationBatches([[1]], (s) => s.window(1000, 1000), 3);
  t.deepEqual(
    batches.map((b) => [b.time, b.records]),
    [
      [1000, [1]],
      [2000, []],
      [3000, []],
    ],
  );
});

test('window - a window of a window', async (t) => {
  // Windows of 2 s every 1 s, then windows of 4 s of those every 2 s: batch i appears
  // once for each inner window that holds it and that the outer window covers.
  const input = [[1], [2], [3], [4]];
  const out = await runOperation(input, (s) => s.window(2000, 1000).window(4000, 2000), 6, { sorted: true });
  t.deepEqual(out, [
    [1, 1, 2],
    [1, 1, 2, 2, 3, 3, 4],
    [2, 3, 3, 4, 4],
  ]);
});

test('window - durations that are not multiples of the parent slide are refused', (t) => {
  const build = (f: (s: DStream<number>) => unknown) =>
    runOperation(
      [[1]],
      (s) => {
        f(s);
        return s;
      },
      1,
    );
  return Promise.all([
    t.throwsAsync(
      build((s) => s.window(1500)),
      { code: 'INVALID_DURATION' },
    ),
    t.throwsAsync(
      build((s) => s.window(2000, 500)),
      { code: 'INVALID_DURATION' },
    ),
    t.throwsAsync(
      build((s) => s.window(2000, 2000).window(3000, 2000)),
      { code: 'INVALID_DURATION' },
    ),
    t.throwsAsync(
      build((s) => s.map((x) => [x, x] as Pair<number, number>).reduceByKeyAndWindow(sum, difference, 2500, 1000)),
      { code: 'INVALID_DURATION' },
    ),
  ]);
});

// ---- reduceByKeyAndWindow ---------------------------------------------------------------

const largerSlideInput: Counts[] = [
  [['a', 1]],
  [['a', 2]], // 1st window from here
  [['a', 3]],
  [['a', 4]], // 2nd window from here
  [['a', 5]],
  [['a', 6]], // 3rd window from here
  [],
  [], // 4th window from here
];

const largerSlideReduceOutput: Counts[] = [[['a', 3]], [['a', 10]], [['a', 18]], [['a', 11]]];

const bigInput: Counts[] = [
  [['a', 1]],
  [
    ['a', 1],
    ['b', 1],
  ],
  [
    ['a', 1],
    ['b', 1],
    ['c', 1],
  ],
  [
    ['a', 1],
    ['b', 1],
  ],
  [['a', 1]],
  [],
  [['a', 1]],
  [
    ['a', 1],
    ['b', 1],
  ],
  [
    ['a', 1],
    ['b', 1],
    ['c', 1],
  ],
  [
    ['a', 1],
    ['b', 1],
  ],
  [['a', 1]],
  [],
];

const bigGroupByOutput: Pair<string, number[]>[][] = [
  [['a', [1]]],
  [
    ['a', [1, 1]],
    ['b', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1, 1]],
    ['c', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1, 1]],
    ['c', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1]],
  ],
  [['a', [1]]],
  [['a', [1]]],
  [
    ['a', [1, 1]],
    ['b', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1, 1]],
    ['c', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1, 1]],
    ['c', [1]],
  ],
  [
    ['a', [1, 1]],
    ['b', [1]],
  ],
  [['a', [1]]],
];

const bigReduceOutput: Counts[] = [
  [['a', 1]],
  [
    ['a', 2],
    ['b', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 1],
  ],
  [['a', 1]],
  [['a', 1]],
  [
    ['a', 2],
    ['b', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 1],
  ],
  [['a', 1]],
];

/*
 * With an inverse function but no filter, keys are never eliminated from the
 * reduced window even when their value falls to 0 (Spark's behaviour).
 */
const bigReduceInvOutput: Counts[] = [
  [['a', 1]],
  [
    ['a', 2],
    ['b', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 1],
    ['c', 0],
  ],
  [
    ['a', 1],
    ['b', 0],
    ['c', 0],
  ],
  [
    ['a', 1],
    ['b', 0],
    ['c', 0],
  ],
  [
    ['a', 2],
    ['b', 1],
    ['c', 0],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 2],
    ['b', 1],
    ['c', 0],
  ],
  [
    ['a', 1],
    ['b', 0],
    ['c', 0],
  ],
];

interface ReduceCase {
  readonly name: string;
  readonly input: Counts[];
  readonly expected: Counts[];
  readonly windowMs?: number;
  readonly slideMs?: number;
}

function reduceCases(expectedBig: Counts[], keyRemoved: Counts): ReduceCase[] {
  return [
    {
      name: 'basic reduction',
      input: [
        [
          ['a', 1],
          ['a', 3],
        ],
      ],
      expected: [[['a', 4]]],
    },
    {
      name: 'key already in window and new value added into window',
      input: [[['a', 1]], [['a', 1]]],
      expected: [[['a', 1]], [['a', 2]]],
    },
    {
      name: 'new key added into window',
      input: [
        [['a', 1]],
        [
          ['a', 1],
          ['b', 1],
        ],
      ],
      expected: [
        [['a', 1]],
        [
          ['a', 2],
          ['b', 1],
        ],
      ],
    },
    {
      name: 'key removed from window',
      input: [[['a', 1]], [['a', 1]], [], []],
      expected: [[['a', 1]], [['a', 2]], [['a', 1]], keyRemoved],
    },
    { name: 'larger slide time', input: largerSlideInput, expected: largerSlideReduceOutput, windowMs: 4000, slideMs: 2000 },
    { name: 'big test', input: bigInput, expected: expectedBig },
  ];
}

for (const c of reduceCases(bigReduceOutput, [])) {
  const { windowMs = 2000, slideMs = 1000 } = c;
  test(`reduceByKeyAndWindow - ${c.name}`, async (t) => {
    const out = await runOperation(c.input, (s) => s.reduceByKeyAndWindow(sum, windowMs, slideMs), batchesFor(c.expected, slideMs), {
      sorted: true,
    });
    t.deepEqual(out, c.expected);
  });
}

for (const c of reduceCases(bigReduceInvOutput, [['a', 0]])) {
  const { windowMs = 2000, slideMs = 1000 } = c;
  test(`reduceByKeyAndWindow with inverse function - ${c.name}`, async (t) => {
    const out = await runOperation(
      c.input,
      (s) => s.reduceByKeyAndWindow(sum, difference, windowMs, slideMs).checkpoint(100_000),
      batchesFor(c.expected, slideMs),
      { sorted: true },
    );
    t.deepEqual(out, c.expected);
  });
}

test('reduceByKeyAndWindow with inverse and filter functions - big test', async (t) => {
  const out = await runOperation(
    bigInput,
    (s) => s.reduceByKeyAndWindow(sum, difference, 2000, 1000, { filter: ([, v]) => v !== 0 }).checkpoint(100_000),
    batchesFor(bigReduceOutput, 1000),
    { sorted: true },
  );
  t.deepEqual(out, bigReduceOutput);
});

test('reduceByKeyAndWindow with inverse and filter functions - larger slide time', async (t) => {
  const out = await runOperation(
    largerSlideInput,
    (s) => s.reduceByKeyAndWindow(sum, difference, 4000, 2000, { filter: ([, v]) => v !== 0 }),
    8,
    { sorted: true },
  );
  t.deepEqual(out, largerSlideReduceOutput);
});

test('reduceByKeyAndWindow with inverse function - keeps firing after input stops', async (t) => {
  // The window of the last value has passed: the key stays, at its zero value.
  const batches = await runOperationBatches(largerSlideInput, (s) => s.reduceByKeyAndWindow(sum, difference, 4000, 2000), 12);
  t.deepEqual(
    batches.map((b) => [b.time, b.records]),
    [
      [2000, [['a', 3]]],
      [4000, [['a', 10]]],
      [6000, [['a', 18]]],
      [8000, [['a', 11]]],
      [10000, [['a', 0]]],
      [12000, [['a', 0]]],
    ],
  );
});

test('reduceByKeyAndWindow - inverse and naive forms agree with several partitions', async (t) => {
  const options = { partitions: 3, sorted: true };
  const naive = await runOperation(bigInput, (s) => s.reduceByKeyAndWindow(sum, 3000, 1000, { partitions: 3 }), 14, options);
  const inverse = await runOperation(
    bigInput,
    (s) => s.reduceByKeyAndWindow(sum, difference, 3000, 1000, { partitions: 3, filter: ([, v]) => v !== 0 }),
    14,
    options,
  );
  t.is(naive.length, 14);
  t.deepEqual(inverse, naive);
});

// ---- groupByKeyAndWindow, countByWindow, countByValueAndWindow, reduceByWindow ----------

test('groupByKeyAndWindow - groups the values of each key over the window', async (t) => {
  const out = await runOperation(
    bigInput,
    (s) => s.groupByKeyAndWindow(2000, 1000).mapValues(sortedCopy),
    batchesFor(bigGroupByOutput, 1000),
    { sorted: true },
  );
  t.deepEqual(out, bigGroupByOutput);
});

test('groupByKeyAndWindow - every value, not a set (JavaAPISuite)', async (t) => {
  const input: Counts[] = [
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
  const out = await runOperation(input, (s) => s.groupByKeyAndWindow(2000, 1000).mapValues(sortedCopy), 3, { sorted: true });
  t.deepEqual(out, [
    [
      ['california', [1, 3]],
      ['new york', [1, 4]],
    ],
    [
      ['california', [1, 3, 5, 5]],
      ['new york', [1, 1, 3, 4]],
    ],
    [
      ['california', [5, 5]],
      ['new york', [1, 3]],
    ],
  ]);
});

test('countByWindow - counts the records of each window', async (t) => {
  const expected = [[1], [2], [3], [3], [1], [0]];
  const out = await runOperation([[1], [1], [1, 2], [0], [], []], (s) => s.countByWindow(2000, 1000), batchesFor(expected, 1000));
  t.deepEqual(out, expected);
});

test('countByValueAndWindow - counts each value over the window', async (t) => {
  const expected: Counts[] = [
    [['a', 1]],
    [
      ['a', 1],
      ['b', 2],
    ],
    [
      ['a', 1],
      ['b', 3],
    ],
  ];
  const out = await runOperation([['a'], ['b', 'b'], ['a', 'b']], (s) => s.countByValueAndWindow(2000, 1000), batchesFor(expected, 1000), {
    sorted: true,
  });
  t.deepEqual(out, expected);
});

test('countByValueAndWindow - drops values whose count falls to zero', async (t) => {
  const out = await runOperation([['a'], ['b', 'b'], ['a', 'b']], (s) => s.countByValueAndWindow(2000, 1000), 5, { sorted: true });
  t.deepEqual(out, [
    [['a', 1]],
    [
      ['a', 1],
      ['b', 2],
    ],
    [
      ['a', 1],
      ['b', 3],
    ],
    [
      ['a', 1],
      ['b', 1],
    ],
    [],
  ]);
});

const reduceByWindowInput = [
  [1, 2, 3],
  [4, 5, 6],
  [7, 8, 9],
];

test('reduceByWindow - without inverse function (JavaAPISuite)', async (t) => {
  const out = await runOperation(reduceByWindowInput, (s) => s.reduceByWindow(sum, 2000, 1000), 4);
  t.deepEqual(out, [[6], [21], [39], [24]]);
});

test('reduceByWindow - with inverse function (JavaAPISuite)', async (t) => {
  const out = await runOperation(reduceByWindowInput, (s) => s.reduceByWindow(sum, difference, 2000, 1000), 4);
  t.deepEqual(out, [[6], [21], [39], [24]]);
});

test('reduceByWindow - an empty window emits nothing without an inverse, the zero value with one', async (t) => {
  const naive = await runOperation(reduceByWindowInput, (s) => s.reduceByWindow(sum, 2000, 1000), 5);
  const inverse = await runOperation(reduceByWindowInput, (s) => s.reduceByWindow(sum, difference, 2000, 1000), 5);
  t.deepEqual(naive[4], []);
  t.deepEqual(inverse[4], [0]);
});

test('reduceByWindow - larger slide time', async (t) => {
  const input = [[1], [2], [3], [4], [5], [6]];
  const naive = await runOperation(input, (s) => s.reduceByWindow(sum, 4000, 2000), 8);
  const inverse = await runOperation(input, (s) => s.reduceByWindow(sum, difference, 4000, 2000), 8);
  t.deepEqual(naive, [[3], [10], [18], [11]]);
  t.deepEqual(inverse, naive);
});

/** Spark's `a to b`. */
function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
