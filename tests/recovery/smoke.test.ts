import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';

const quiet = pino({ level: 'silent' });
const input = Array.from({ length: 30 }, (_, i) => [`a b${i % 3}`, `c${i % 5} a`]);

function build(dir: string | undefined, clock: ManualClock, out: Map<number, unknown>) {
  const ssc = new StreamingContext({ appName: 'rec', batchDuration: 1000, clock, logger: quiet });
  if (dir) ssc.checkpoint(dir);
  const words = ssc
    .queueStream(input)
    .flatMap((l) => l.split(' '))
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .foreachBatch((r, t) => {
      out.set(t, [...r].sort());
    });
  words
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      5000,
      1000,
    )
    .checkpoint(3000)
    .foreachBatch((r, t) => {
      out.set(-t, [...r].sort());
    });
  return ssc;
}

test('recovery smoke - crash and resume equals an uninterrupted run', async (t) => {
  const expected = new Map<number, unknown>();
  const ref = build(undefined, new ManualClock(), expected);
  await ref.start();
  await ref.runBatches(20);
  await ref.stop();

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'trib-rec-'));
  const got = new Map<number, unknown>();
  const clock = new ManualClock();
  const first = build(dir, clock, got);
  await first.start();
  await first.runBatches(11);
  first.crash();
  const second = await StreamingContext.getOrCreate(dir, () => build(undefined, clock, got), { clock });
  await second.start();
  await second.runBatches(20 - 11);
  await second.stop();
  t.deepEqual(
    [...got.entries()].sort(([a], [b]) => a - b),
    [...expected.entries()].sort(([a], [b]) => a - b),
  );
  await fs.rm(dir, { recursive: true, force: true });
});
