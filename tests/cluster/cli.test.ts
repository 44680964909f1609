/**
 * The commands as a user types them: `tributary run <app> --nats <url> --workers 2`
 * says it waits for its workers until two `tributary worker` processes register,
 * then runs the app on them and stops after --duration.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { startWorkers, stopWorkers, type WorkerProcess } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('cli - run --nats --workers waits for the workers with a clear message, then runs the app on them', async (t) => {
  t.timeout(120_000);
  const server = await startNatsServer();
  const driver = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'runtime/cli/cli.ts',
      'run',
      'tests/helpers/cluster-apps.ts',
      '--nats',
      server.url,
      '--workers',
      '2',
      '--duration',
      '4',
      '--no-status',
      '--',
      'windowed',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  let seen: (() => void) | undefined;
  driver.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  driver.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
    seen?.();
  });
  const exited = new Promise<number | null>((resolve) => driver.once('exit', (code) => resolve(code)));
  let workers: WorkerProcess[] = [];
  try {
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (/waiting for 2 workers of cluster-windowed: 0 registered/.test(err)) resolve();
        };
        seen = check;
        check();
      }),
      30_000,
      'the driver saying it waits for its workers',
    );
    workers = await startWorkers(server.url, 'windowed', 2, 'cli');
    t.is(await within(exited, 60_000, 'the driver finishing its --duration'), 0, err);
    const totals = out.split('\n').filter((l) => l.startsWith('out totals '));
    t.true(totals.length >= 2, out);
    t.true(totals.every((l) => Number(l.split(' ')[3]) > 0));
    t.regex(err, /running for 4 s/);
  } finally {
    driver.kill('SIGKILL');
    await stopWorkers(workers);
    await server.stop();
  }
});
