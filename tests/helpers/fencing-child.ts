/**
 * A driver in another process for the fencing tests: starts the fencing app on the
 * checkpoint directory given as argv[2] with the wall clock, prints `started` on
 * stdout, then runs until it is killed.
 *
 * Run: node --import tsx tests/helpers/fencing-child.ts <dir>
 */
import { pino } from 'pino';
import { SystemClock } from '../../runtime/base/clock.ts';
import { fencingApp } from './fencing-app.ts';

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write('usage: fencing-child.ts <checkpoint dir>\n');
  process.exit(2);
}
const ssc = fencingApp(dir, new SystemClock(), pino({ level: 'silent' }));
try {
  await ssc.start();
} catch (error) {
  process.stdout.write(`failed ${(error as { code?: string }).code ?? (error as Error).message}\n`);
  process.exit(1);
}
process.stdout.write('started\n');
// The context's timers keep the process alive; it ends when the test kills it.
await ssc.awaitTermination();
