import anyTest, { type TestFn } from 'ava';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { quiet, TempDirs } from '../helpers/checkpoint-kit.ts';

interface Ctx {
  dirs: TempDirs;
}

const test = anyTest as TestFn<Ctx>;

test.before((t) => {
  t.context = { dirs: new TempDirs() };
});

test.after.always(async (t) => {
  await t.context.dirs.removeAll();
});

/** How one version of the app differs from the first. */
interface Version {
  readonly batchDurationMs?: number;
  /** Window length of the windowed counts (default 3000). */
  readonly windowMs?: number;
  /** A stateful operator with uid 'lengths' (word lengths seen), with an output. */
  readonly lengths?: boolean;
  /** A new stateful operator with uid 'new' (running word counts of one kind), with an output. */
  readonly fresh?: FreshKind;
  /** A new updateStateByKey without a uid, with an output. */
  readonly plain?: boolean;
}

/** The kinds of stateful operator an upgrade may add (each is several graph nodes). */
type FreshKind = 'updateStateByKey' | 'mapWithState' | 'reduceByKeyAndWindow';

interface Outputs {
  /** State output of the word totals, by batch time. */
  totals: Map<number, [string, number][]>;
  /** State output of the 'lengths' operator, by batch time. */
  lengths: Map<number, [number, number][]>;
  /** State output of the 'new' operator, by batch time. */
  fresh: Map<number, [string, number][]>;
}

function outputs(): Outputs {
  return { totals: new Map(), lengths: new Map(), fresh: new Map() };
}

const input = Array.from({ length: 30 }, (_, i) => [`a b${i % 3}`, `cc${i % 2}`]);

function sorted<K, V>(records: [K, V][]): [K, V][] {
  return [...records].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function app(clock: ManualClock, out: Outputs, version: Version = {}, dir?: string): StreamingContext {
  const ssc = new StreamingContext({ appName: 'upgrade', batchDuration: version.batchDurationMs ?? 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const words = ssc.queueStream(input).flatMap((l) => l.split(' '));
  const pairs = words.map((w) => [w, 1] as [string, number]);
  pairs
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(3000)
    .foreachBatch((r, t) => void out.totals.set(t, sorted(r)));
  pairs.reduceByKeyAndWindow((a, b) => a + b, version.windowMs ?? 3000, 1000).foreachBatch(() => {});
  if (version.lengths) {
    pairs
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length * 10)
      .uid('lengths')
      .foreachBatch((r, t) => void out.lengths.set(t, sorted(r as unknown as [number, number][])));
  }
  const fresh = (r: [string, number][], t: number) => void out.fresh.set(t, sorted(r));
  if (version.fresh === 'updateStateByKey') {
    pairs
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
      .uid('new')
      .foreachBatch(fresh);
  } else if (version.fresh === 'mapWithState') {
    pairs
      .mapWithState<string, number, number, [string, number]>({
        update: (key, value, state) => {
          const n = (state.exists() ? state.get() : 0) + (value ?? 0);
          state.update(n);
          return [key, n];
        },
      })
      .uid('new')
      .foreachBatch(fresh);
  } else if (version.fresh === 'reduceByKeyAndWindow') {
    pairs
      .reduceByKeyAndWindow(
        (a, b) => a + b,
        (a, b) => a - b,
        3000,
        1000,
        { filter: ([, n]) => n > 0 },
      )
      .uid('new')
      .foreachBatch(fresh);
  }
  if (version.plain) {
    pairs.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length).foreachBatch(() => {});
  }
  return ssc;
}

/** Runs version `before` for `n` batches and stops it gracefully; returns the clock. */
async function runFirst(dir: string, before: Version, n: number, out: Outputs): Promise<ManualClock> {
  const clock = new ManualClock();
  const ssc = app(clock, out, before, dir);
  await ssc.start();
  await ssc.runBatches(n);
  await ssc.stop();
  return clock;
}

/** The word totals an uninterrupted run of the first version outputs, by batch time. */
async function reference(n: number): Promise<Map<number, [string, number][]>> {
  const out = outputs();
  const ssc = app(new ManualClock(), out);
  await ssc.start();
  await ssc.runBatches(n);
  await ssc.stop();
  return out.totals;
}

test('upgrade - a changed window length is INCOMPATIBLE_CHECKPOINT listing the change', async (t) => {
  const dir = await t.context.dirs.make('window');
  const clock = await runFirst(dir, {}, 4, outputs());
  const changed = await StreamingContext.getOrCreate(dir, () => app(clock, outputs(), { windowMs: 5000 }), { clock });
  const error = await t.throwsAsync(changed.start());
  t.is((error as { code?: string }).code, 'INCOMPATIBLE_CHECKPOINT');
  const differences = (error as unknown as { differences: string[] }).differences;
  t.true(differences.length >= 1);
  t.true(
    differences.some((d) => d.startsWith('changed:') && d.includes('3000') && d.includes('5000')),
    differences.join('\n'),
  );
  t.true(error?.message.includes(differences[0] as string));
  t.is(changed.lifecycle, 'stopped');

  // Refused without harm: the old version still resumes from the same directory.
  const again = await StreamingContext.getOrCreate(dir, () => app(clock, outputs()), { clock });
  await again.start();
  await again.runBatches(1);
  await again.stop();
  t.pass();
});

test('upgrade - a changed batch duration is INCOMPATIBLE_CHECKPOINT', async (t) => {
  const dir = await t.context.dirs.make('duration');
  const clock = await runFirst(dir, {}, 4, outputs());
  const changed = await StreamingContext.getOrCreate(dir, () => app(clock, outputs(), { batchDurationMs: 500 }), { clock });
  const error = await t.throwsAsync(changed.start());
  t.is((error as { code?: string }).code, 'INCOMPATIBLE_CHECKPOINT');
  t.true(error?.message.includes('batchDuration: 1000 ms -> 500 ms'), error?.message);
});

/** Words of batches `from` to `to` (1-based), counted. */
function wordsOf(from: number, to: number): [string, number][] {
  const counts = new Map<string, number>();
  for (let i = from; i <= to; i++)
    for (const w of (input[i - 1] ?? []).flatMap((l) => l.split(' '))) counts.set(w, (counts.get(w) ?? 0) + 1);
  return sorted([...counts]);
}

/** What mapWithState's running count emits at batch `at` when it started empty at batch `from`. */
function runningCounts(from: number, at: number): [string, number][] {
  const before = new Map(wordsOf(from, at - 1));
  const emitted: [string, number][] = [];
  for (const w of (input[at - 1] ?? []).flatMap((l) => l.split(' '))) {
    const n = (before.get(w) ?? 0) + 1;
    before.set(w, n);
    emitted.push([w, n]);
  }
  return emitted.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x - y));
}

/** The new operator's output at batch `at` when it started empty at batch 6. */
const freshExpected: Record<FreshKind, (at: number) => [string, number][]> = {
  updateStateByKey: (at) => wordsOf(6, at),
  mapWithState: (at) => runningCounts(6, at),
  reduceByKeyAndWindow: (at) => wordsOf(Math.max(6, at - 2), at),
};

const addOperator = test.macro({
  async exec(t, kind: FreshKind) {
    const dir = await t.context.dirs.make('add');
    const expected = await reference(10);
    const out = outputs();
    const clock = await runFirst(dir, {}, 5, out);
    const upgraded = await StreamingContext.getOrCreate(dir, () => app(clock, out, { fresh: kind }), { clock });
    await upgraded.start();
    await upgraded.runBatches(5);
    await upgraded.stop();
    t.deepEqual(
      [...out.totals].sort(([a], [b]) => a - b),
      [...expected].sort(([a], [b]) => a - b),
      'the old state continues',
    );
    // The new operator starts from nothing with the first batch after the upgrade.
    t.deepEqual(
      [...out.fresh.keys()].sort((a, b) => a - b),
      [6000, 7000, 8000, 9000, 10_000],
    );
    for (let i = 6; i <= 10; i++) t.deepEqual(out.fresh.get(i * 1000), freshExpected[kind](i), `batch ${i}`);
  },
  title: (_, kind: FreshKind) => `upgrade - a new ${kind} with a uid starts empty while the old state continues`,
});

test('upgrade - a new stateful operator without a uid is INCOMPATIBLE_CHECKPOINT naming it', async (t) => {
  const dir = await t.context.dirs.make('add-plain');
  const clock = await runFirst(dir, {}, 3, outputs());
  const changed = await StreamingContext.getOrCreate(dir, () => app(clock, outputs(), { plain: true }), { clock });
  const error = await t.throwsAsync(changed.start());
  t.is((error as { code?: string }).code, 'INCOMPATIBLE_CHECKPOINT');
  const differences = (error as unknown as { differences: string[] }).differences;
  t.true(
    differences.some((d) => d.startsWith('added: updateStateByKey ')),
    differences.join('\n'),
  );
  t.true(
    differences.some((d) => d.startsWith('added: foreachBatch')),
    differences.join('\n'),
  );
});

test(addOperator, 'updateStateByKey');
test(addOperator, 'mapWithState');
test(addOperator, 'reduceByKeyAndWindow');

test('upgrade - removing a stateful operator that had a uid resumes, the rest of the state intact', async (t) => {
  const dir = await t.context.dirs.make('remove');
  const expected = await reference(10);
  const out = outputs();
  const clock = new ManualClock();
  const first = app(clock, out, { lengths: true }, dir);
  await first.start();
  await first.runBatches(5);
  first.crash();
  t.is(out.lengths.size, 5);
  const upgraded = await StreamingContext.getOrCreate(dir, () => app(clock, out, {}), { clock });
  await upgraded.start();
  await upgraded.runBatches(5);
  await upgraded.stop();
  t.is(out.lengths.size, 5, 'the removed operator no longer runs');
  t.deepEqual(
    [...out.totals].sort(([a], [b]) => a - b),
    [...expected].sort(([a], [b]) => a - b),
  );

  // And it may come back later: it resumes from its last snapshot or starts empty, never fails.
  const back = await StreamingContext.getOrCreate(dir, () => app(clock, out, { lengths: true }), { clock });
  await back.start();
  await back.runBatches(1);
  await back.stop();
  t.true(out.lengths.has(11_000));
});
