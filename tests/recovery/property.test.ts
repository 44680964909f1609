/**
 * Property: for random input batches, a random checkpoint interval and one to three
 * random interruptions (crashes between batches, inside a batch's outputs, or while
 * replaying), the outputs of updateStateByKey and of reduceByKeyAndWindow with an
 * inverse after recovery equal those of an uninterrupted run.
 */
import { promises as fs } from 'node:fs';
import anyTest, { type TestFn } from 'ava';
import fc from 'fast-check';
import type { DStream } from '../../runtime/api/index.ts';
import { type AppBuilder, differences, type Interruption, runInterrupted, runUninterrupted, tempDir } from '../helpers/recovery-harness.ts';

interface Ctx {
  readonly dirs: string[];
}

const test = anyTest as TestFn<Ctx>;

test.before((t) => {
  t.context = { dirs: [] };
});

test.after.always(async (t) => {
  await Promise.all(t.context.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

const BATCHES = 20;
const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;

function app(input: string[][], intervalMs: number, windowMs: number, filter: boolean): AppBuilder {
  return (ssc, out) => {
    const pairs = ssc.queueStream(input).map((w) => [w, 1] as [string, number]);
    const state = pairs.updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.reduce(add, 0));
    out('state', state.checkpoint(intervalMs) as DStream<unknown>);
    const window = pairs.reduceByKeyAndWindow(add, sub, windowMs, 1000, filter ? { filter: ([, n]) => n > 0 } : {});
    out('window', window.checkpoint(intervalMs) as DStream<unknown>);
  };
}

const words = fc.array(fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { maxLength: 6 }), { minLength: 1, maxLength: 16 });

const interruption = fc.record({
  at: fc.integer({ min: 1, max: BATCHES - 1 }),
  mode: fc.constantFrom<Interruption['mode']>('between', 'in-output', 'in-replay'),
  downtime: fc.integer({ min: 0, max: 2 }),
});

/** One to three interruptions at increasing batches. */
const interruptions = fc
  .uniqueArray(interruption, { minLength: 1, maxLength: 3, selector: (i) => i.at })
  .map((steps) => [...steps].sort((a, b) => a.at - b.at) as Interruption[]);

test('recovery property - random inputs, checkpoint intervals and crashes equal the uninterrupted run', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      words,
      fc.constantFrom(1000, 2000, 3000),
      fc.constantFrom(2000, 3000, 5000),
      fc.boolean(),
      interruptions,
      async (input, intervalMs, windowMs, filter, steps) => {
        const built = app(input, intervalMs, windowMs, filter);
        // Downtime and the batches run after a crash may go past BATCHES: the oracle runs longer.
        const expected = await runUninterrupted(built, { batches: BATCHES + 12 });
        const dir = await tempDir('trib-prop-');
        t.context.dirs.push(dir);
        try {
          const got = await runInterrupted(built, dir, { batches: BATCHES, interruptions: steps, snapshotFullEvery: 3 });
          const diff = differences(expected, got);
          if (got.lastBatch < BATCHES) diff.push(`the run ended at batch ${got.lastBatch}`);
          if (diff.length > 0) throw new Error(`${diff.length} differences, first: ${diff.slice(0, 5).join('; ')}`);
        } finally {
          await fs.rm(dir, { recursive: true, force: true });
        }
      },
    ),
    { numRuns: 30 },
  );
  t.pass();
});
