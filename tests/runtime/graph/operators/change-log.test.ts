/**
 * Captures and restores of keyed state: columns copied at the capture, a log that
 * gives up (a full snapshot next) once most of the state changed, restores a chunk
 * at a time, and mapWithState's update-time order kept across deltas.
 */
import test from 'ava';
import { ChangeLog, foldChain, RESTORE_CHUNK_ENTRIES, SATURATION_MIN_KEYS } from '../../../../runtime/graph/operators/change-log.ts';
import { mapWithStateSpec } from '../../../../runtime/graph/operators/map-with-state.ts';
import { type UpdateStateByKeyState, updateStateByKeySpec } from '../../../../runtime/graph/operators/update-state-by-key.ts';
import { KeyMap } from '../../../../runtime/graph/partitioner.ts';
import type { SnapshotData } from '../../../../runtime/graph/wire.ts';
import { loopTurns } from '../../../helpers/loop-turns.ts';

const sum = (vs: number[], s: number | undefined) => vs.reduce((a, b) => a + b, s ?? 0);

/** A capture that asks for a delta of `state`, through `log`. */
function captureDelta<K, V>(log: ChangeLog<K>, state: KeyMap<K, V>): SnapshotData {
  return log.capture(
    false,
    (k) => state.get(k),
    () => state.columns(),
    null,
  );
}

function pairs(data: SnapshotData): [unknown, unknown][] {
  return data.keys.map((k, i) => [k, data.values[i]]);
}

test('change log - a delta lists changed and removed keys; over half the state changed, the next capture is full', (t) => {
  const state = new KeyMap<number, number>();
  const n = 4 * SATURATION_MIN_KEYS;
  for (let i = 0; i < n; i++) state.set(i, i);
  const log = new ChangeLog<number>(() => state.size);
  t.is(captureDelta(log, state).kind, 'full', 'the first capture is full');
  state.set(1, 100);
  log.changed(1);
  state.delete(2);
  log.removed(2);
  const delta = captureDelta(log, state);
  t.deepEqual([delta.kind, pairs(delta), delta.removed], ['delta', [[1, 100]], [2]]);
  // Half the keys and one more change: the log stops, and a delta asked for comes out full.
  for (let i = 0; i <= n / 2; i++) log.changed(i);
  t.true(log.fullNext);
  const next = captureDelta(log, state);
  t.is(next.kind, 'full');
  t.is(next.keys.length, n - 1);
  t.false(log.fullNext, 'logging again after the capture');
  log.changed(3);
  t.deepEqual(pairs(captureDelta(log, state)), [[3, 3]]);
});

test('change log - a small state stays incremental whatever share of it changes', (t) => {
  const state = new KeyMap<string, number>();
  for (let i = 0; i < 100; i++) state.set(`k${i}`, i);
  const log = new ChangeLog<string>(() => state.size);
  log.activate();
  for (let i = 0; i < 100; i++) log.changed(`k${i}`);
  t.is(captureDelta(log, state).kind, 'delta');
});

test('capture - a full capture is a copy of the columns: later updates do not reach it, written values are converted', async (t) => {
  const spec = updateStateByKeySpec<string, number, number>(sum, [
    ['a', 1],
    ['b', 2],
  ]);
  const s = spec.create(0, 1);
  const data = s.capture(true);
  t.deepEqual(pairs(data), [
    ['a', 1],
    ['b', 2],
  ]);
  s.step([['a', [10]]], 1000, true, false);
  s.commit();
  t.deepEqual(pairs(data), [
    ['a', 1],
    ['b', 2],
  ]);
  const mws = mapWithStateSpec<string, number, number, string>({
    update: (k, v, st) => {
      st.update((st.getOption() ?? 0) + (v ?? 0));
      return k;
    },
  }).create(0, 1);
  mws.step([['x', 5]], 3000, true, false);
  mws.commit();
  const written = mws.capture(true);
  t.deepEqual(
    written.values.map((v) => [written.written?.(v), written.timeOf?.(v)]),
    [[5, 3000]],
  );
});

test('restore - a chain of 100k keys folds a chunk per turn of the event loop and equals the state', async (t) => {
  const n = 100_000;
  const keys = Array.from({ length: n }, (_, i) => `k${i}`);
  const full: SnapshotData = { kind: 'full', keys, values: keys.map((_, i) => i), removed: [], meta: null };
  const delta: SnapshotData = { kind: 'delta', keys: ['k5', 'new'], values: [-5, 7], removed: ['k6'], meta: null };
  const turns = loopTurns();
  const { entries } = await foldChain<string, number>([full, delta]);
  turns.stop();
  t.true(turns.count() >= Math.ceil(n / RESTORE_CHUNK_ENTRIES) - 1, `${turns.count()} turns for ${n} entries`);
  t.is(entries.size, n);
  t.is(entries.get('k5'), -5);
  t.is(entries.get('new'), 7);
  t.false(entries.has('k6'));
  const restored = await updateStateByKeySpec<string, number, number>(sum, []).restoreChain([full, delta], 0, 1);
  t.is(restored.lookup?.('k99999'), 99_999);
});

test('restore - mapWithState keeps update-time order across deltas, so timeouts still find idle keys first', async (t) => {
  const timedOut: string[] = [];
  const spec = mapWithStateSpec<string, number, number, string>({
    update: (k, v, st) => {
      if (st.isTimingOut()) timedOut.push(k);
      else st.update((st.getOption() ?? 0) + (v ?? 0));
      return k;
    },
    timeout: 2500,
  });
  // Full at 3000 (a@1000, b@2000, c@3000), then a delta: a updated at 4000, c removed.
  const full: SnapshotData = {
    kind: 'full',
    keys: ['a', 'b', 'c'],
    values: [
      [1, 1000],
      [2, 2000],
      [3, 3000],
    ],
    removed: [],
    meta: { seed: [] },
  };
  // The delta as written now: states and a times column (the full one above is in the older [state, time] form).
  const delta: SnapshotData = { kind: 'delta', keys: ['a'], values: [10], times: [4000], removed: ['c'], meta: { seed: [] } };
  const s = await spec.restoreChain([full, delta], 0, 1);
  s.step([], 5000, true, false);
  t.deepEqual(timedOut, ['b'], 'b (idle since 2000) times out at 5000; a, updated at 4000, does not');
  s.commit();
  t.is(s.lookup?.('a'), 10);
  t.is(s.lookup?.('c'), undefined);
});

test('updateStateByKey capture - slots changed, added and removed since the last capture; full once over half changed', (t) => {
  // State = sum of values; a value of -1 removes the key.
  const update = (vs: number[], s: number | undefined) => (vs.includes(-1) ? undefined : vs.reduce((a, b) => a + b, s ?? 0));
  const n = 4 * SATURATION_MIN_KEYS;
  const spec = updateStateByKeySpec<string, number, number>(
    update,
    Array.from({ length: n }, (_, i): [string, number] => [`k${i}`, i]),
  );
  const s = spec.create(0, 1);
  t.is(s.capture(false).kind, 'full', 'the first capture is full');
  const batch = (pairs: [string, number[]][], time: number) => {
    s.step(pairs, time, true, false);
    s.commit();
  };
  batch(
    [
      ['k1', [5]],
      ['k2', [-1]],
      ['new', [7]],
    ],
    1000,
  );
  // A rolled-back batch leaves no trace in the next delta.
  s.step([['k3', [1]]], 2000, true, false);
  s.rollback();
  const delta = s.capture(false);
  t.deepEqual(
    [delta.kind, pairs(delta), delta.removed],
    [
      'delta',
      [
        ['k1', 6],
        ['new', 7],
      ],
      ['k2'],
    ],
  );
  // Removals past a quarter of the slots compact the columns; flags move with their keys.
  batch(Array.from({ length: n / 4 + 1 }, (_, i): [string, number[]] => [`k${n - 1 - i}`, [-1]]).concat([['k10', [1]]]), 3000);
  const afterCompaction = s.capture(false);
  t.deepEqual(pairs(afterCompaction), [['k10', 11]]);
  t.is(afterCompaction.removed.length, n / 4 + 1);
  t.is(s.keyCount?.(), n - 1 - (n / 4 + 1) + 1);
  // Over half of the keys changed: the capture is full whatever is asked.
  batch(
    Array.from({ length: n / 2 }, (_, i): [string, number[]] => [`k${i + 3}`, [1]]),
    4000,
  );
  const full = s.capture(false);
  t.is(full.kind, 'full');
  t.is(full.keys.length, s.keyCount?.() ?? -1);
  t.is(s.capture(false).keys.length, 0, 'and the log starts again empty');
});

test('updateStateByKey step in turns - a slice of the keys per turn, the same states, output and undo as one step', async (t) => {
  // State = sum of values; a value of -1 removes the key.
  const update = (vs: number[], s: number | undefined) => (vs.includes(-1) ? undefined : vs.reduce((a, b) => a + b, s ?? 0));
  const n = 10_000;
  const initial = Array.from({ length: n }, (_, i): [string, number] => [`k${i}`, i]);
  const input: [string, number[]][] = [
    ['k1', [5]],
    ['k9999', [-1]],
    ['k5000', [2, 3]],
    ['new', [7]],
  ];
  const whole = updateStateByKeySpec<string, number, number>(update, initial).create(0, 1);
  const expected = whole.step(input, 1000, true, false);
  const sliced = updateStateByKeySpec<string, number, number>(update, initial).create(0, 1) as UpdateStateByKeyState<
    string,
    number,
    number
  >;
  const turns = loopTurns();
  const got = await sliced.stepInTurns(input, 1000, true, false, undefined, 1000);
  turns.stop();
  t.true(turns.count() >= 9, `${turns.count()} turns for ${n} keys at 1,000 a turn`);
  t.deepEqual(got.output, expected.output);
  // Readers see committed values while the step is pending, the new ones after the commit.
  t.is(sliced.lookup?.('k1'), 1);
  t.is(sliced.lookup?.('new'), undefined);
  t.deepEqual((sliced.toSnapshot() as { entries: unknown[] }).entries, initial, 'a whole-state read too');
  sliced.commit();
  t.deepEqual([sliced.lookup?.('k1'), sliced.lookup?.('k5000'), sliced.lookup?.('k9999'), sliced.lookup?.('new')], [6, 5005, undefined, 7]);
  // Half way through a sliced step, a whole-state read still sees the committed state.
  const committed = (sliced.toSnapshot() as { entries: unknown[] }).entries;
  let midway: unknown[] | undefined;
  setImmediate(() => {
    midway = (sliced.toSnapshot() as { entries: unknown[] }).entries;
  });
  await sliced.stepInTurns(
    [
      ['k2', [100]],
      ['k9998', [-1]],
      ['more', [1]],
    ],
    2000,
    true,
    false,
    undefined,
    1000,
  );
  t.deepEqual(midway, committed);
  sliced.rollback();
  // A rolled-back sliced step leaves the state as it was.
  await sliced.stepInTurns(
    [
      ['k1', [100]],
      ['other', [1]],
    ],
    2000,
    true,
    false,
    undefined,
    1000,
  );
  sliced.rollback();
  t.deepEqual([sliced.lookup?.('k1'), sliced.lookup?.('other'), sliced.keyCount?.()], [6, undefined, n]);
});
