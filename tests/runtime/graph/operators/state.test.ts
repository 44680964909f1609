/**
 * Spark Streaming's updateStateByKey cases (BasicOperationsSuite) and
 * MapWithStateSuite, ported: the same input batches and the expected output and
 * state per batch. Spark compares those batches as sets; they are sorted here.
 */
import test from 'ava';
import type { DStream, MapWithStateFn, State } from '../../../../runtime/api/index.ts';
import { runOperation, runStreams } from '../../../helpers/run-operation.ts';

type Pair<K, V> = [K, V];

function ones(s: DStream<string>): DStream<Pair<string, number>> {
  return s.map((x) => [x, 1] as Pair<string, number>);
}

const total = (values: number[]) => values.reduce((a, b) => a + b, 0);

// ---- updateStateByKey ---------------------------------------------------------------------

const stateInput = [['a'], ['a', 'b'], ['a', 'b', 'c'], ['a', 'b'], ['a'], []];

test('updateStateByKey - keeps a running count per key', async (t) => {
  const out = await runOperation(
    stateInput,
    (s) => ones(s).updateStateByKey<string, number, number>((vs, state) => total(vs) + (state ?? 0)),
    6,
    {
      sorted: true,
    },
  );
  t.deepEqual(out, [
    [['a', 1]],
    [
      ['a', 2],
      ['b', 1],
    ],
    [
      ['a', 3],
      ['b', 2],
      ['c', 1],
    ],
    [
      ['a', 4],
      ['b', 3],
      ['c', 1],
    ],
    [
      ['a', 5],
      ['b', 3],
      ['c', 1],
    ],
    [
      ['a', 5],
      ['b', 3],
      ['c', 1],
    ],
  ]);
});

test('updateStateByKey - simple with initial value RDD', async (t) => {
  const out = await runOperation(
    stateInput,
    (s) =>
      ones(s).updateStateByKey<string, number, number>((vs, state) => total(vs) + (state ?? 0), {
        partitions: 2,
        initial: [
          ['a', 1],
          ['c', 2],
        ],
      }),
    6,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 2],
      ['c', 2],
    ],
    [
      ['a', 3],
      ['b', 1],
      ['c', 2],
    ],
    [
      ['a', 4],
      ['b', 2],
      ['c', 3],
    ],
    [
      ['a', 5],
      ['b', 3],
      ['c', 3],
    ],
    [
      ['a', 6],
      ['b', 3],
      ['c', 3],
    ],
    [
      ['a', 6],
      ['b', 3],
      ['c', 3],
    ],
  ]);
});

test('updateStateByKey - testing time stamps as input', async (t) => {
  const out = await runOperation(
    stateInput,
    (s) =>
      ones(s).updateStateByKey<string, number, number>(
        // Update only if we receive values for this key during the batch.
        (vs, state, { time }) => (vs.length > 0 ? time + (state ?? 0) : (state ?? 0)),
        {
          initial: [
            ['a', 0],
            ['c', 0],
          ],
        },
      ),
    6,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 1000],
      ['c', 0],
    ],
    [
      ['a', 3000],
      ['b', 2000],
      ['c', 0],
    ],
    [
      ['a', 6000],
      ['b', 5000],
      ['c', 3000],
    ],
    [
      ['a', 10000],
      ['b', 9000],
      ['c', 3000],
    ],
    [
      ['a', 15000],
      ['b', 9000],
      ['c', 3000],
    ],
    [
      ['a', 15000],
      ['b', 9000],
      ['c', 3000],
    ],
  ]);
});

test('updateStateByKey - object lifecycle', async (t) => {
  class StateObject {
    counter = 0;
    expireCounter = 0;
  }
  // Clears a state seen without new values twice in a row. Spark's `null` input
  // batches (no RDD) are empty batches here.
  const update = (values: number[], state: StateObject | undefined): StateObject | undefined => {
    const stateObj = state ?? new StateObject();
    const n = total(values);
    if (n === 0) stateObj.expireCounter += 1;
    else {
      stateObj.counter += n;
      stateObj.expireCounter = 0;
    }
    return stateObj.expireCounter === 2 ? undefined : stateObj;
  };
  const out = await runOperation(
    [['a', 'b'], [], ['a', 'c', 'a'], ['c'], [], []],
    (s) =>
      ones(s)
        .updateStateByKey(update)
        .mapValues((o) => o.counter),
    6,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 1],
      ['b', 1],
    ],
    [
      ['a', 1],
      ['b', 1],
    ],
    [
      ['a', 3],
      ['c', 1],
    ],
    [
      ['a', 3],
      ['c', 2],
    ],
    [['c', 2]],
    [],
  ]);
});

test('updateStateByKey - calls the function for every key every batch, with [] when it has no values', async (t) => {
  const calls: [number, string, number[], number | undefined][] = [];
  await runOperation(
    [['a', 'a'], ['b'], []],
    (s) =>
      ones(s).updateStateByKey<string, number, number>((vs, state, { key, time }) => {
        calls.push([time, key, [...vs], state]);
        return (state ?? 0) + vs.length;
      }),
    3,
  );
  calls.sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : 1));
  t.deepEqual(calls, [
    [1000, 'a', [1, 1], undefined],
    [2000, 'a', [], 2],
    [2000, 'b', [1], undefined],
    [3000, 'a', [], 2],
    [3000, 'b', [], 1],
  ]);
});

test('updateStateByKey - returning undefined removes the key', async (t) => {
  const seen: [number, string, number | undefined][] = [];
  const out = await runOperation(
    [['a', 'b'], ['a'], ['a', 'b']],
    (s) =>
      ones(s).updateStateByKey<string, number, number>((vs, state, { key, time }) => {
        seen.push([time, key, state]);
        // b is dropped as soon as a batch has none of it.
        return vs.length === 0 ? undefined : (state ?? 0) + vs.length;
      }),
    4,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      ['a', 1],
      ['b', 1],
    ],
    [['a', 2]],
    [
      ['a', 3],
      ['b', 1],
    ],
    [],
  ]);
  // Once removed, b starts again from no state, and a removed key is not called again.
  t.deepEqual(
    seen.filter(([, key]) => key === 'b'),
    [
      [1000, 'b', undefined],
      [2000, 'b', 1],
      [3000, 'b', undefined],
      [4000, 'b', 1],
    ],
  );
});

test('updateStateByKey - an initial key is called even without values, and structured keys compare by value', async (t) => {
  const input: Pair<[string, number], number>[][] = [[[['k', 1], 5]], []];
  const out = await runOperation(
    input,
    (s) =>
      s.updateStateByKey<[string, number], number, number>((vs, state) => (state ?? 0) + total(vs), {
        initial: [
          [['k', 1], 10],
          [['j', 2], 1],
        ],
      }),
    2,
    { sorted: true },
  );
  t.deepEqual(out, [
    [
      [['j', 2], 1],
      [['k', 1], 15],
    ],
    [
      [['j', 2], 1],
      [['k', 1], 15],
    ],
  ]);
});

// ---- mapWithState ----------------------------------------------------------------------

interface MapWithStateRun<M, S> {
  readonly outputs: M[][];
  readonly snapshots: Pair<string, S>[][];
}

/**
 * Spark's MapWithStateSuite `getOperationOutput`: input words mapped to `(word, 1)`,
 * the mapped stream and its state snapshots collected every batch.
 */
async function runMapWithState<S, M>(
  input: string[][],
  update: MapWithStateFn<string, number, S, M>,
  numBatches: number,
  options: { timeout?: number; initial?: Pair<string, S>[]; partitions?: number } = {},
): Promise<MapWithStateRun<M, S>> {
  const snapshots: Pair<string, S>[][] = [];
  const batches = await runStreams(
    (ssc) => {
      const mapped = ones(ssc.queueStream(input)).mapWithState<string, number, S, M>({ update, ...options });
      mapped.stateSnapshots().foreachBatch((records) => {
        snapshots.push([...records]);
      });
      return mapped;
    },
    numBatches,
    { sorted: true },
  );
  for (const s of snapshots) s.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { outputs: batches.map((b) => b.records), snapshots };
}

const mwsInput = [[], ['a'], ['a', 'b'], ['a', 'b', 'c'], ['a', 'b'], ['a'], []];

const mwsState: Pair<string, number>[][] = [
  [],
  [['a', 1]],
  [
    ['a', 2],
    ['b', 1],
  ],
  [
    ['a', 3],
    ['b', 2],
    ['c', 1],
  ],
  [
    ['a', 4],
    ['b', 3],
    ['c', 1],
  ],
  [
    ['a', 5],
    ['b', 3],
    ['c', 1],
  ],
  [
    ['a', 5],
    ['b', 3],
    ['c', 1],
  ],
];

function runningCount(_key: string, value: number | undefined, state: State<number>): number {
  const sum = (value ?? 0) + (state.getOption() ?? 0);
  state.update(sum);
  return sum;
}

test('mapWithState - basic operations with simple API', async (t) => {
  const { outputs, snapshots } = await runMapWithState(mwsInput, runningCount, 7);
  t.deepEqual(outputs, [[], [1], [1, 2], [1, 2, 3], [3, 4], [5], []]);
  t.deepEqual(snapshots, mwsState);
});

test('mapWithState - basic operations with advanced API', async (t) => {
  const { outputs, snapshots } = await runMapWithState<number, string>(
    mwsInput,
    (key, value, state) => {
      state.update((value ?? 0) + (state.getOption() ?? 0));
      return key + key;
    },
    7,
  );
  t.deepEqual(outputs, [[], ['aa'], ['aa', 'bb'], ['aa', 'bb', 'cc'], ['aa', 'bb'], ['aa'], []]);
  t.deepEqual(snapshots, mwsState);
});

test('mapWithState - states as mapped data', async (t) => {
  const { outputs, snapshots } = await runMapWithState<number, Pair<string, number>>(
    mwsInput,
    (key, value, state) => {
      const sum = (value ?? 0) + (state.getOption() ?? 0);
      state.update(sum);
      return [key, sum];
    },
    7,
  );
  t.deepEqual(outputs, [
    [],
    [['a', 1]],
    [
      ['a', 2],
      ['b', 1],
    ],
    [
      ['a', 3],
      ['b', 2],
      ['c', 1],
    ],
    [
      ['a', 4],
      ['b', 3],
    ],
    [['a', 5]],
    [],
  ]);
  t.deepEqual(snapshots, mwsState);
});

test('mapWithState - initial states, with nothing returned as from mapping function', async (t) => {
  const { outputs, snapshots } = await runMapWithState<number, number>(
    mwsInput,
    (_key, value, state) => {
      state.update((value ?? 0) + (state.getOption() ?? 0));
      return undefined;
    },
    7,
    {
      initial: [
        ['a', 5],
        ['b', 10],
        ['c', -20],
        ['d', 0],
      ],
    },
  );
  t.deepEqual(
    outputs,
    mwsInput.map(() => []),
  );
  t.deepEqual(snapshots, [
    [
      ['a', 5],
      ['b', 10],
      ['c', -20],
      ['d', 0],
    ],
    [
      ['a', 6],
      ['b', 10],
      ['c', -20],
      ['d', 0],
    ],
    [
      ['a', 7],
      ['b', 11],
      ['c', -20],
      ['d', 0],
    ],
    [
      ['a', 8],
      ['b', 12],
      ['c', -19],
      ['d', 0],
    ],
    [
      ['a', 9],
      ['b', 13],
      ['c', -19],
      ['d', 0],
    ],
    [
      ['a', 10],
      ['b', 13],
      ['c', -19],
      ['d', 0],
    ],
    [
      ['a', 10],
      ['b', 13],
      ['c', -19],
      ['d', 0],
    ],
  ]);
});

test('mapWithState - state removing', async (t) => {
  const { outputs, snapshots } = await runMapWithState<number, string>(
    [
      [],
      ['a'],
      ['a', 'b'], // a will be removed
      ['a', 'b', 'c'], // b will be removed
      ['a', 'b', 'c'], // a and c will be removed
      ['a', 'b'], // b will be removed
      ['a'], // a will be removed
      [],
    ],
    (key, value, state) => {
      if (state.exists()) {
        state.remove();
        return key;
      }
      state.update(value as number);
      return undefined;
    },
    8,
    { partitions: 1 },
  );
  // The states that were removed.
  t.deepEqual(outputs, [[], [], ['a'], ['b'], ['a', 'c'], ['b'], ['a'], []]);
  t.deepEqual(snapshots, [
    [],
    [['a', 1]],
    [['b', 1]],
    [
      ['a', 1],
      ['c', 1],
    ],
    [['b', 1]],
    [['a', 1]],
    [],
    [],
  ]);
});

test('mapWithState - state timing out', async (t) => {
  // Spark only removes timed-out keys on checkpoint batches; Tributary checks the
  // timeout every batch (a deliberate difference), so a key times out in the first
  // batch after it has been idle for longer than the timeout. Spark's assertions
  // hold either way; the exact batches below are Tributary's.
  const input = [
    ['a', 'b', 'c'],
    ['a', 'b'],
    ['a'],
    [], // c will time out
    [], // b will time out
    ['a'], // a will not time out
    ...Array.from({ length: 20 }, () => ['a']), // a will continue to stay active
  ];
  const { outputs, snapshots } = await runMapWithState<number, string>(
    input,
    (key, value, state) => {
      if (value !== undefined) state.update(1);
      return state.isTimingOut() ? key : undefined;
    },
    20,
    { timeout: 3000 },
  );
  // b and c are returned once each, when they were marked as expired.
  t.deepEqual(outputs.flat().sort(), ['b', 'c']);
  // States for a, b, c are defined at one point of time.
  t.true(
    snapshots.some(
      (s) =>
        JSON.stringify(s) ===
        JSON.stringify([
          ['a', 1],
          ['b', 1],
          ['c', 1],
        ]),
    ),
  );
  // Finally state is defined only for a.
  t.deepEqual(snapshots.at(-1), [['a', 1]]);
  // Tributary's exact batches: c (last seen at 1000) times out at 5000 (1000 < 5000 - 3000),
  // b (last seen at 2000) at 6000; a is never idle for 3 s.
  t.deepEqual(outputs.slice(0, 7), [[], [], [], [], ['c'], ['b'], []]);
  t.deepEqual(snapshots[4], [
    ['a', 1],
    ['b', 1],
  ]);
  t.deepEqual(snapshots[5], [['a', 1]]);
});

test('mapWithState - calls the function once per record, in order, and never for idle keys', async (t) => {
  const calls: [number, string, number | undefined][] = [];
  const { outputs } = await runMapWithState<number, number>(
    [['a', 'a', 'b'], [], ['b']],
    (key, value, state, time) => {
      calls.push([time, key, state.getOption()]);
      const n = (state.getOption() ?? 0) + (value ?? 0);
      state.update(n);
      return n;
    },
    4,
  );
  t.deepEqual(outputs, [[1, 1, 2], [], [2], []]);
  calls.sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
  t.deepEqual(calls, [
    [1000, 'a', undefined],
    [1000, 'a', 1],
    [1000, 'b', undefined],
    [3000, 'b', 1],
  ]);
});

test('mapWithState - the State API in the mapping function', async (t) => {
  const seen: string[] = [];
  await runMapWithState<number, null>(
    [['a'], ['a'], ['a']],
    (_key, _value, state, time) => {
      seen.push(`${time} exists=${state.exists()} option=${String(state.getOption())} timingOut=${state.isTimingOut()}`);
      if (!state.exists()) {
        t.throws(() => state.get());
        state.update(1);
        seen.push(`${time} after update get=${state.get()}`);
      } else if (state.get() === 1) {
        state.update(2);
      } else {
        state.remove();
        t.throws(() => state.update(3));
        t.throws(() => state.remove());
        seen.push(`${time} after remove exists=${state.exists()}`);
      }
      return null;
    },
    3,
  );
  t.deepEqual(seen, [
    '1000 exists=false option=undefined timingOut=false',
    '1000 after update get=1',
    '2000 exists=true option=1 timingOut=false',
    '3000 exists=true option=2 timingOut=false',
    '3000 after remove exists=false',
  ]);
});

test('mapWithState - a timeout calls the function once more with no value, then removes the key', async (t) => {
  const calls: string[] = [];
  const { outputs, snapshots } = await runMapWithState<number, string>(
    [['a', 'b'], ['a'], ['a'], ['a'], []],
    (key, value, state, time) => {
      calls.push(`${time} ${key} value=${String(value)} timingOut=${state.isTimingOut()} state=${String(state.getOption())}`);
      if (state.isTimingOut()) {
        t.throws(() => state.update(9));
        t.throws(() => state.remove());
        return `${key} timed out`;
      }
      state.update((state.getOption() ?? 0) + (value ?? 0));
      return undefined;
    },
    6,
    { timeout: 2000 },
  );
  t.deepEqual(
    calls.filter((c) => c.includes(' b ')),
    ['1000 b value=1 timingOut=false state=undefined', '4000 b value=undefined timingOut=true state=1'],
  );
  t.deepEqual(outputs, [[], [], [], ['b timed out'], [], []]);
  t.deepEqual(snapshots[2], [
    ['a', 3],
    ['b', 1],
  ]);
  t.deepEqual(snapshots[3], [['a', 4]]);
  // a last got data at 4000: still there at 6000, as 4000 is not < 6000 - 2000.
  t.deepEqual(snapshots[5], [['a', 4]]);
});

test('mapWithState - data refreshes the timeout even when the function does not update the state', async (t) => {
  // Spark re-stamps a key that receives data whenever a timeout is set, so a key
  // that keeps receiving data never times out, whether or not it is updated.
  const { outputs, snapshots } = await runMapWithState<number, string>(
    [['a'], ['a'], ['a'], ['a'], ['a'], []],
    (key, _value, state) => {
      if (state.isTimingOut()) return `${key} timed out`;
      if (!state.exists()) state.update(1);
      return undefined;
    },
    8,
    { timeout: 2000 },
  );
  t.deepEqual(outputs, [[], [], [], [], [], [], [], ['a timed out']]);
  t.deepEqual(snapshots[6], [['a', 1]]);
  t.deepEqual(snapshots[7], []);
});

test('mapWithState - stateSnapshots emits the whole state every batch', async (t) => {
  const { snapshots } = await runMapWithState<number, undefined>(
    [['a', 'b'], [], ['c']],
    (_key, value, state) => {
      state.update((state.getOption() ?? 0) + (value ?? 0));
      return undefined;
    },
    4,
    { partitions: 3 },
  );
  t.deepEqual(snapshots, [
    [
      ['a', 1],
      ['b', 1],
    ],
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
      ['c', 1],
    ],
  ]);
});

test('mapWithState - initial state counts as updated at the first batch for timeouts', async (t) => {
  const { outputs, snapshots } = await runMapWithState<number, string>(
    [[], [], [], []],
    (key, _value, state) => (state.isTimingOut() ? `${key}=${state.get()}` : undefined),
    4,
    { timeout: 2000, initial: [['x', 7]] },
  );
  // Seeded at 1000, idle until 4000 (1000 < 4000 - 2000).
  t.deepEqual(outputs, [[], [], [], ['x=7']]);
  t.deepEqual(snapshots[0], [['x', 7]]);
  t.deepEqual(snapshots[3], []);
});
