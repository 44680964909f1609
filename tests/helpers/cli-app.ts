/**
 * A small app for the CLI tests, run as `tributary run tests/helpers/cli-app.ts <dir> [<marker>]`.
 *
 * Word count over the deterministic generator (RATE lines a second, 8 words a line)
 * with running totals in `<dir>` (a checkpoint every 3 batches). It prints, on
 * stdout, `start <pid>` when loaded, `batch <time> <zero>` after every completed batch, `total <time> <words>`
 * with the sum of the running totals, and `checkpoint <time>` after every
 * checkpoint. With `<marker>`, a run that finds no marker file creates it and
 * SIGKILLs itself after its first checkpoint (a crash the supervisor must recover).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { defineApp, StreamingContext } from '../../runtime/api/index.ts';

export const BATCH_MS = 100;
export const RATE = 200;
export const WORDS_PER_LINE = 8;

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

export default defineApp(async ({ args }) => {
  const [dir, marker] = args;
  if (dir === undefined) throw new Error('usage: cli-app.ts <checkpoint dir> [<marker file>]');
  say(`start ${process.pid}`);
  const ssc = await StreamingContext.getOrCreate(dir, () => {
    const ssc = new StreamingContext({ appName: 'cli-app', batchDuration: BATCH_MS, logger: pino({ level: 'silent' }) });
    ssc
      .generatorStream({ ratePerSecond: RATE, seed: 3 })
      .flatMap((l) => l.split(' '))
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
      .uid('totals')
      .checkpoint(3 * BATCH_MS)
      .foreachBatch((pairs, time) => {
        say(`total ${time} ${pairs.reduce((n, [, c]) => n + c, 0)}`);
      });
    return ssc;
  });
  ssc.addStreamingListener({
    onBatchCompleted: (info) => say(`batch ${info.time} ${ssc.zeroTime}`),
    onCheckpointCompleted: (c) => {
      say(`checkpoint ${c.time}`);
      if (marker !== undefined && !existsSync(marker)) {
        writeFileSync(marker, String(process.pid));
        process.kill(process.pid, 'SIGKILL');
      }
    },
  });
  return ssc;
});
