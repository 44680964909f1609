/**
 * The process a chaos run kills: runs the workload from its checkpoint, prints
 * `zero <ms>`, `batch <time> <records> <schedulingDelayMs> <processingMs>` after
 * every completed batch, and `done` once every generated line is processed (then
 * stops gracefully and exits 0). The delays come last so that readers of the first
 * two fields keep working; the runner reads them to see when a run caught up after
 * a NATS outage (a batch that waited less than one batch duration).
 *
 *   node child.js <options as JSON>
 */
import { StreamingContext } from '../../api/streaming-context.ts';
import { buildWordCountWorkload, seqAt, type WorkloadOptions } from './word-count-workload.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as WorkloadOptions;
const say = (line: string) => process.stdout.write(`${line}\n`);

const ssc = await StreamingContext.getOrCreate(options.checkpoint, () => buildWordCountWorkload(options));
let finishing = false;
ssc.addStreamingListener({
  onBatchCompleted: (info) => {
    say(`batch ${info.time} ${info.records} ${Math.round(info.schedulingDelayMs)} ${Math.round(info.processingMs)}`);
    if (!finishing && seqAt(options, ssc.zeroTime, info.time) >= options.records) {
      finishing = true;
      void ssc.stop().then(() => {
        say('done');
        process.exit(0);
      });
    }
  },
  onError: (error) => {
    process.stderr.write(`chaos child failed: ${error.message}\n`);
    process.exit(3);
  },
});
process.once('SIGTERM', () => void ssc.stop().then(() => process.exit(0)));
await ssc.start();
say(`zero ${ssc.zeroTime}`);
