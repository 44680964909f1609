/**
 * A worker process of a chaos run on a cluster: builds the same workload as the
 * driver child and serves it as worker `<id>` until SIGTERM (a graceful leave) or a
 * kill. Prints `registered <id>` once registered.
 *
 *   node worker-child.js <options as JSON> <id>
 */
import { StreamingContext } from '../../api/streaming-context.ts';
import { buildWordCountWorkload, type WorkloadOptions } from './word-count-workload.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as WorkloadOptions;
const id = process.argv[3] ?? `w-${process.pid}`;
const ssc = await StreamingContext.getOrCreate(options.checkpoint, () => buildWordCountWorkload(options));
const worker = await ssc.runWorker({ id });
process.stdout.write(`registered ${id}\n`);
process.once('SIGTERM', () => void worker.stop());
await worker.run().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`chaos worker ${id} failed: ${(error as Error).message}\n`);
    process.exit(3);
  },
);
