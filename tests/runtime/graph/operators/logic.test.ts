/**
 * The pure logic of the stateful operators, without nact: each partition state is
 * stepped batch by batch, committed or rolled back, snapshotted and restored, as the
 * state actors and the driver do.
 */
import test from 'ava';
import type { PartitionState, StatefulSpec } from '../../../../runtime/graph/graph.ts';
import {
  type MapWithStateSpec,
  type MapWithStateState,
  mapWithStateSpec,
  State,
} from '../../../../runtime/graph/operators/map-with-state.ts';
import { ReducedWindowState, reducedWindowSpec } from '../../../../runtime/graph/operators/reduced-window.ts';
import { UpdateStateByKeyState, updateStateByKeySpec } from '../../../../runtime/graph/operators/update-state-by-key.ts';
import { WindowState, windowSpec } from '../../../../runtime/graph/operators/window.ts';
import { KeyMap, partitionOf } from '../../../../runtime/graph/partitioner.ts';
import { compareValues, sortedCopy } from '../../../helpers/run-operation.ts';

type Pair<K, V> = [K, V];

/** Steps and commits one batch; `emit` as the driver computes it for `slideMs`. */
function stepCommit(state: PartitionState, input: unknown[], time: number, slideMs = 1000, wantExtra = false) {
  const result = state.step(input, time, time % slideMs === 0, wantExtra);
  state.commit();
  return result;
}

/** Steps and commits `batches` (batch i at time (i + 1) * 1000); returns what was emitted. */
function runBatches(state: PartitionState, batches: unknown[][], slideMs = 1000): unknown[][] {
  const out: unknown[][] = [];
  batches.forEach((input, i) => {
    const { output } = stepCommit(state, input, (i + 1) * 1000, slideMs);
    if (output !== undefined) out.push(sortedCopy(output));
  });
  return out;
}

/** Round-trips a state through its snapshot, as a checkpoint and a recovery would. */
function roundTrip(spec: StatefulSpec, state: PartitionState, partition = 0, partitions = 1): PartitionState {
  return spec.restore(structuredClone(state.toSnapshot()), partition, partitions);
}

const sum = (a: number, b: number) => a + b;
const difference = (a: number, b: number) => a - b;

// ---- window ------------------------------------------------------------------------------

test('window logic - emits the records of the batches in (t - w, t]', (t) => {
  const state = new WindowState(2000);
  t.deepEqual(runBatches(state, [[0], [1], [2], [3], [], []]), [[0], [0, 1], [1, 2], [2, 3], [3], []]);
});

test('window logic - holds batches between slides and emits only when told', (t) => {
  const state: PartitionState = new WindowState(4000);
  t.is(state.step([1], 1000, false, false).output, undefined);
  state.commit();
  t.deepEqual(state.step([2], 2000, true, false).output, [1, 2]);
  state.commit();
  t.is(state.step([3], 3000, false, false).output, undefined);
  state.commit();
  t.deepEqual(state.step([4], 4000, true, false).output, [1, 2, 3, 4]);
  state.commit();
  t.is(state.step([], 5000, false, false).output, undefined);
  state.commit();
  t.deepEqual(state.step([], 6000, true, false).output, [3, 4]);
});

test('window logic - rollback undoes the batch', (t) => {
  const state: PartitionState = new WindowState(2000);
  stepCommit(state, [1], 1000);
  t.deepEqual(state.step(['bad'], 2000, true, false).output, [1, 'bad']);
  state.rollback();
  t.deepEqual(state.step([2], 2000, true, false).output, [1, 2]);
  state.commit();
  t.deepEqual(stepCommit(state, [3], 3000).output, [2, 3]);
});

test('window logic - a restored snapshot goes on as the original', (t) => {
  const spec = windowSpec(3000);
  const original = spec.create(0, 1);
  runBatches(original, [[1], [2], [3]]);
  const restored = roundTrip(spec, original);
  t.deepEqual(stepCommit(restored, [4], 4000).output, [2, 3, 4]);
  t.deepEqual(stepCommit(original, [4], 4000).output, [2, 3, 4]);
});

// ---- reduced window (reduceByKeyAndWindow with an inverse) ------------------------------

const bigInput: Pair<string, number>[][] = [
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

function reducedWindow(windowMs = 2000, slideMs = 1000, filter?: (p: Pair<string, number>) => boolean) {
  return reducedWindowSpec<string, number>({ reduce: sum, inverse: difference, windowMs, slideMs, ...(filter ? { filter } : {}) });
}

test('reduced window logic - keeps keys at their zero value without a filter (Spark big test)', (t) => {
  const state = reducedWindow().create(0, 1);
  t.deepEqual(runBatches(state, bigInput), [
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
  ]);
});

test('reduced window logic - the filter drops keys (Spark big test with filter)', (t) => {
  const state = reducedWindow(2000, 1000, ([, v]) => v !== 0).create(0, 1);
  t.deepEqual(runBatches(state, bigInput), [
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
  ]);
});

test('reduced window logic - uses the inverse for the batches that leave', (t) => {
  const calls: string[] = [];
  const state = new ReducedWindowState<string, number>({
    reduce: (a, b) => {
      calls.push(`${a}+${b}`);
      return a + b;
    },
    inverse: (a, b) => {
      calls.push(`${a}-${b}`);
      return a - b;
    },
    windowMs: 3000,
    slideMs: 1000,
  });
  runBatches(state, [[['k', 1]], [['k', 2]], [['k', 4]]]);
  calls.length = 0;
  // At 4000, the batch of 1000 leaves and the batch of 4000 enters: 7 - 1 + 8.
  t.deepEqual(stepCommit(state, [['k', 8]], 4000).output, [['k', 14]]);
  t.deepEqual(calls, ['7-1', '6+8']);
});

test('reduced window logic - slide larger than the batch', (t) => {
  const state = reducedWindow(4000, 2000).create(0, 1);
  const input = [[['a', 1]], [['a', 2]], [['a', 3]], [['a', 4]], [['a', 5]], [['a', 6]], [], [], [], []];
  t.deepEqual(runBatches(state, input, 2000), [[['a', 3]], [['a', 10]], [['a', 18]], [['a', 11]], [['a', 0]]]);
});

test('reduced window logic - rollback of an emitting batch restores the window', (t) => {
  const state = reducedWindow().create(0, 1);
  runBatches(state, [[['a', 1]], [['a', 2]]]);
  // A failed batch at 3000: a leaves with 1 and gains 100.
  t.deepEqual(state.step([['a', 100]], 3000, true, false).output, [['a', 102]]);
  state.rollback();
  // The retried batch sees the state of 2000 again.
  t.deepEqual(
    state.step(
      [
        ['a', 3],
        ['b', 1],
      ],
      3000,
      true,
      false,
    ).output,
    [
      ['a', 5],
      ['b', 1],
    ],
  );
  state.commit();
  t.deepEqual(stepCommit(state, [], 4000).output, [
    ['a', 3],
    ['b', 1],
  ]);
  t.deepEqual(stepCommit(state, [], 5000).output, [
    ['a', 0],
    ['b', 0],
  ]);
});

test('reduced window logic - rollback of a batch between slides forgets its input', (t) => {
  const state = reducedWindow(2000, 2000).create(0, 1);
  t.is(state.step([['a', 100]], 1000, false, false).output, undefined);
  state.rollback();
  t.is(stepCommit(state, [['a', 1]], 1000, 2000).output, undefined);
  t.deepEqual(stepCommit(state, [['a', 2]], 2000, 2000).output, [['a', 3]]);
});

test('reduced window logic - rollback of a key that was new removes it', (t) => {
  const state = reducedWindow().create(0, 1);
  stepCommit(state, [['a', 1]], 1000);
  t.deepEqual(sortedCopy(state.step([['z', 5]], 2000, true, false).output ?? []), [
    ['a', 1],
    ['z', 5],
  ]);
  state.rollback();
  t.is(state.lookup?.('z'), undefined);
  t.deepEqual(stepCommit(state, [], 2000).output, [['a', 1]]);
});

test('reduced window logic - a restored snapshot goes on as the original', (t) => {
  const spec = reducedWindow(3000, 1000);
  const original = spec.create(0, 1);
  runBatches(original, bigInput.slice(0, 3));
  const restored = roundTrip(spec, original);
  const rest = bigInput.slice(3);
  const fromOriginal = rest.map((input, i) => sortedCopy(stepCommit(original, input, (i + 4) * 1000).output ?? []));
  const fromRestored = rest.map((input, i) => sortedCopy(stepCommit(restored, input, (i + 4) * 1000).output ?? []));
  t.deepEqual(fromRestored, fromOriginal);
  t.deepEqual(fromOriginal.at(-1), [
    ['a', 2],
    ['b', 1],
    ['c', 0],
  ]);
});

test('reduced window logic - a key that leaves a window it was never in is an error, as in Spark', (t) => {
  // The filter drops a at 2000 (1 + -1 = 0) although the batch of 1000 still holds it.
  const state = reducedWindow(2000, 1000, ([, v]) => v !== 0).create(0, 1);
  runBatches(state, [[['a', 1]], [['a', -1]]]);
  t.throws(() => state.step([], 3000, true, false), { message: /left a window it was never in/ });
});

// ---- updateStateByKey ----------------------------------------------------------------------

const count = (values: number[], state: number | undefined) => (state ?? 0) + values.length;

function grouped(...keys: string[]): Pair<string, number[]>[] {
  const m = new Map<string, number[]>();
  for (const k of keys) m.set(k, [...(m.get(k) ?? []), 1]);
  return [...m];
}

test('updateStateByKey logic - every key every batch, the whole state as output', (t) => {
  const state = new UpdateStateByKeyState<string, number, number>(count, new KeyMap());
  t.deepEqual(runBatches(state, [grouped('a', 'a'), grouped('b'), []]), [
    [['a', 2]],
    [
      ['a', 2],
      ['b', 1],
    ],
    [
      ['a', 2],
      ['b', 1],
    ],
  ]);
});

test('updateStateByKey logic - undefined removes the key', (t) => {
  const state = new UpdateStateByKeyState<string, number, number>(
    (vs, s) => (vs.length === 0 ? undefined : (s ?? 0) + vs.length),
    new KeyMap(),
  );
  t.deepEqual(runBatches(state, [grouped('a', 'b'), grouped('a'), []]), [
    [
      ['a', 1],
      ['b', 1],
    ],
    [['a', 2]],
    [],
  ]);
  t.is(state.size, 0);
});

test('updateStateByKey logic - rollback drops the batch', (t) => {
  const state = new UpdateStateByKeyState<string, number, number>(count, new KeyMap());
  stepCommit(state, grouped('a'), 1000);
  state.step(grouped('a', 'z'), 2000);
  state.rollback();
  t.is(state.lookup('a'), 1);
  t.is(state.lookup('z'), undefined);
  t.deepEqual(stepCommit(state, grouped('a'), 2000).output, [['a', 2]]);
});

test('updateStateByKey logic - the initial state goes to the partition that owns each key', (t) => {
  const initial: Pair<string, number>[] = ['a', 'b', 'c', 'd', 'e', 'f'].map((k, i) => [k, i]);
  const spec = updateStateByKeySpec<string, number, number>(count, initial);
  const parts = [0, 1, 2].map((p) => spec.create(p, 3));
  parts.forEach((part, p) => {
    const out = (stepCommit(part, [], 1000).output ?? []) as Pair<string, number>[];
    t.deepEqual(
      out.map(([k]) => k).sort(),
      initial
        .filter(([k]) => partitionOf(k, 3) === p)
        .map(([k]) => k)
        .sort(),
    );
  });
});

test('updateStateByKey logic - a restored snapshot goes on as the original', (t) => {
  const spec = updateStateByKeySpec<string, number, number>(count, [['x', 10]]);
  const original = spec.create(0, 1);
  runBatches(original, [grouped('a'), grouped('a', 'b')]);
  const restored = roundTrip(spec, original);
  t.deepEqual(sortedCopy(stepCommit(restored, grouped('b'), 3000).output ?? []), [
    ['a', 2],
    ['b', 2],
    ['x', 10],
  ]);
});

// ---- mapWithState ------------------------------------------------------------------------------

test('mapWithState logic - State: get, exists, update, remove, isTimingOut (Spark state test)', (t) => {
  let state = new State<number>();
  const check = (expected: number | undefined, timingOut = false) => {
    if (expected !== undefined) {
      t.true(state.exists());
      t.is(state.get(), expected);
      t.is(state.getOption(), expected);
    } else {
      t.false(state.exists());
      t.throws(() => state.get());
      t.is(state.getOption(), undefined);
    }
    t.is(state.isTimingOut(), timingOut);
    if (timingOut) {
      t.throws(() => state.remove());
      t.throws(() => state.update(-1));
    }
  };
  check(undefined);
  state.reset(false, undefined, false);
  check(undefined);
  state.reset(true, 1, false);
  check(1);
  state.update(2);
  check(2);
  t.true(state.wasUpdated);

  state = new State<number>();
  state.update(2);
  check(2);
  state.remove();
  check(undefined);
  t.true(state.wasRemoved);
  t.false(state.wasUpdated);
  t.throws(() => state.remove());
  t.throws(() => state.update(-1));

  state.reset(true, 3, true);
  check(3, true);
});

type Counter = MapWithStateSpec<string, number, number, string>;

const countAndReport: Counter['update'] = (key, value, state) => {
  if (state.isTimingOut()) return `${key} timed out at ${state.get()}`;
  state.update((state.getOption() ?? 0) + (value ?? 0));
  return undefined;
};

function mws(spec: Counter): MapWithStateState<string, number, number, string> {
  return mapWithStateSpec(spec).create(0, 1) as MapWithStateState<string, number, number, string>;
}

/** The committed `[key, state]` pairs of a mapWithState partition. */
function snapshotOf(state: PartitionState): Pair<string, number>[] {
  const { entries } = state.toSnapshot() as { entries: [string, { s: number }][] };
  return entries.map(([k, e]): Pair<string, number> => [k, e.s]).sort(compareValues);
}

test('mapWithState logic - runs once per record and keeps state per key', (t) => {
  const calls: string[] = [];
  const state = mws({
    update: (key, value, s, time) => {
      calls.push(`${time}:${key}:${value}`);
      s.update((s.getOption() ?? 0) + (value ?? 0));
      return `${key}=${s.get()}`;
    },
  });
  t.deepEqual(
    stepCommit(
      state,
      [
        ['a', 1],
        ['b', 2],
        ['a', 3],
      ],
      1000,
    ).output,
    ['a=1', 'b=2', 'a=4'],
  );
  t.deepEqual(stepCommit(state, [], 2000).output, []);
  t.deepEqual(calls, ['1000:a:1', '1000:b:2', '1000:a:3']);
});

test('mapWithState logic - times out idle keys once, with no value', (t) => {
  const state = mws({ update: countAndReport, timeout: 2000 });
  stepCommit(
    state,
    [
      ['a', 1],
      ['b', 1],
    ],
    1000,
  );
  stepCommit(state, [['a', 1]], 2000);
  t.deepEqual(stepCommit(state, [['a', 1]], 3000).output, []);
  t.deepEqual(stepCommit(state, [], 4000).output, ['b timed out at 1']);
  t.deepEqual(stepCommit(state, [], 5000).output, []);
  t.deepEqual(stepCommit(state, [], 6000).output, ['a timed out at 3']);
  t.deepEqual(snapshotOf(state), []);
});

test('mapWithState logic - data re-stamps a key that is not updated when there is a timeout', (t) => {
  const state = mws({
    update: (key, _value, s) => {
      if (s.isTimingOut()) return `${key} timed out`;
      if (!s.exists()) s.update(0);
      return undefined;
    },
    timeout: 1000,
  });
  for (let time = 1000; time <= 5000; time += 1000) t.deepEqual(stepCommit(state, [['a', 1]], time).output, []);
  t.deepEqual(stepCommit(state, [], 6000).output, []);
  t.deepEqual(stepCommit(state, [], 7000).output, ['a timed out']);
});

test('mapWithState logic - removes keys the function removes', (t) => {
  const state = mws({
    update: (key, value, s) => {
      if (value === 0) {
        s.remove();
        return `${key} removed`;
      }
      s.update(value ?? 0);
      return undefined;
    },
  });
  stepCommit(
    state,
    [
      ['a', 1],
      ['b', 2],
    ],
    1000,
  );
  t.deepEqual(stepCommit(state, [['a', 0]], 2000).output, ['a removed']);
  t.deepEqual(snapshotOf(state), [['b', 2]]);
});

test('mapWithState logic - rollback restores the state of the batch before', (t) => {
  const state = mws({ update: countAndReport });
  stepCommit(state, [['a', 1]], 1000);
  state.step(
    [
      ['a', 10],
      ['z', 1],
    ],
    2000,
    true,
    false,
  );
  state.rollback();
  t.is(state.lookup('a'), 1);
  t.is(state.lookup('z'), undefined);
  stepCommit(state, [['a', 2]], 2000);
  t.deepEqual(snapshotOf(state), [['a', 3]]);
});

test('mapWithState logic - rollback of the first batch keeps the initial state', (t) => {
  const state = mws({ update: countAndReport, initial: [['seed', 5]] });
  state.step([['a', 1]], 1000, true, true);
  state.rollback();
  const { extra } = stepCommit(state, [['a', 2]], 1000, 1000, true);
  t.deepEqual(sortedCopy(extra ?? []), [
    ['a', 2],
    ['seed', 5],
  ]);
});

test('mapWithState logic - rollback keeps timeouts exact', (t) => {
  const state = mws({ update: countAndReport, timeout: 1000 });
  stepCommit(state, [['a', 1]], 1000);
  stepCommit(state, [['b', 1]], 2000);
  // A failed batch that touched a, then rolled back: a is again last updated at 1000.
  state.step([['a', 1]], 3000, true, false);
  state.rollback();
  t.deepEqual(stepCommit(state, [], 3000).output, ['a timed out at 1']);
  t.deepEqual(stepCommit(state, [], 4000).output, ['b timed out at 1']);
});

test('mapWithState logic - rollback of a timeout brings the key back', (t) => {
  const state = mws({ update: countAndReport, timeout: 1000 });
  stepCommit(state, [['a', 1]], 1000);
  t.deepEqual(state.step([], 3000, true, false).output, ['a timed out at 1']);
  state.rollback();
  t.is(state.lookup('a'), 1);
  t.deepEqual(stepCommit(state, [], 3000).output, ['a timed out at 1']);
  t.is(state.lookup('a'), undefined);
});

test('mapWithState logic - the initial state goes to the partition that owns each key', (t) => {
  const initial: Pair<string, number>[] = ['a', 'b', 'c', 'd', 'e', 'f'].map((k, i) => [k, i]);
  const spec = mapWithStateSpec<string, number, number, string>({ update: countAndReport, initial });
  for (let p = 0; p < 3; p++) {
    const part = spec.create(p, 3);
    const extra = (stepCommit(part, [], 1000, 1000, true).extra ?? []) as Pair<string, number>[];
    t.deepEqual(
      sortedCopy(extra),
      initial.filter(([k]) => partitionOf(k, 3) === p),
    );
  }
});

test('mapWithState logic - a restored snapshot keeps states and their timeouts', (t) => {
  const spec = mapWithStateSpec<string, number, number, string>({ update: countAndReport, timeout: 2000, initial: [['seed', 7]] });
  const original = spec.create(0, 1);
  stepCommit(original, [['a', 1]], 1000);
  stepCommit(original, [['b', 1]], 2000);
  const restored = roundTrip(spec, original);
  for (const state of [original, restored]) {
    t.deepEqual(stepCommit(state, [], 3000).output, []);
    t.deepEqual(sortedCopy((stepCommit(state, [], 4000).output ?? []) as string[]), ['a timed out at 1', 'seed timed out at 7']);
    t.deepEqual(stepCommit(state, [], 5000).output, ['b timed out at 1']);
  }
});

test('mapWithState logic - a snapshot taken before the first batch still seeds the initial state', (t) => {
  const spec = mapWithStateSpec<string, number, number, string>({ update: countAndReport, initial: [['seed', 7]] });
  const restored = roundTrip(spec, spec.create(0, 1));
  t.deepEqual(stepCommit(restored, [], 1000, 1000, true).extra, [['seed', 7]]);
});
