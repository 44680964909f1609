/**
 * A small app for the SIGKILL recovery test, run as its own process:
 *
 *   node --import tsx tests/helpers/sigkill-app.ts <dir> <batches>
 *
 * It resumes from (or creates) the checkpoint `<dir>/checkpoint`, runs until batch
 * `<batches>` completed on a ManualClock, appends each output batch to
 * `<dir>/outputs.jsonl` (one JSON line `{op, time, records}`, fsynced like a real
 * sink), and prints `completed <time>` after each completed batch, `finished` at the
 * end. The input is `sigkillInput(<batches>)`, so the test can compute the oracle.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { StreamingContext } from '../../runtime/api/index.ts';
import { ManualClock } from '../../runtime/api/testing.ts';
import { sigkillInput, WINDOW_MS } from './sigkill-input.ts';

const [dir, batchesArg] = process.argv.slice(2);
const batches = Number(batchesArg);
if (dir === undefined || !Number.isSafeInteger(batches) || batches < 1) {
  process.stderr.write('usage: sigkill-app.ts <dir> <batches>\n');
  process.exit(2);
}

const BATCH_MS = 1000;
const input = sigkillInput(batches);
const out = openSync(path.join(dir, 'outputs.jsonl'), 'a');
const clock = new ManualClock();
let completedMs = 0;

function write(op: string, time: number, records: unknown[]): void {
  writeSync(out, `${JSON.stringify({ op, time, records })}\n`);
  fsyncSync(out);
}

function build(): StreamingContext {
  const ssc = new StreamingContext({
    appName: 'sigkill',
    batchDuration: BATCH_MS,
    clock,
    logger: pino({ level: 'silent' }),
    snapshotFullEvery: 3,
  });
  const words = ssc
    .queueStream(input)
    .flatMap((l) => l.split(' ').filter((w) => w.length > 0))
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((vs, s) => (s ?? 0) + vs.length)
    .checkpoint(3 * BATCH_MS)
    .foreachBatch((records, time) => write('counts', time, records));
  words
    .reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      WINDOW_MS,
      BATCH_MS,
    )
    .foreachBatch((records, time) => write('window', time, records));
  ssc.addStreamingListener({
    onBatchCompleted: ({ time }) => {
      completedMs = Math.max(completedMs, time);
      process.stdout.write(`completed ${time}\n`);
    },
  });
  return ssc;
}

const ssc = await StreamingContext.getOrCreate(path.join(dir, 'checkpoint'), build, { clock });
await ssc.start();
// Batches journaled before a kill run again first (runBatches(0) waits for them).
await ssc.runBatches(0);
for (let i = 0; i < batches && completedMs < batches * BATCH_MS; i++) await ssc.runBatches(1);
await ssc.stop();
closeSync(out);
process.stdout.write('finished\n');
