/**
 * A standby driver: `tributary run <app> --nats <url> --workers 2 --standby` waits
 * while the active driver holds the app's driver lease, takes over when that driver
 * is SIGKILLed (the lease expires), and the workers follow it: the running totals
 * go on from the checkpoint and the journal, with nothing lost.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { startWorkers, stopWorkers } from '../helpers/cluster-kit.ts';
import { within } from '../helpers/jetstream-journal-kit.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BATCH_MS = 200;

interface Driver {
  readonly child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when `test` holds for what the driver printed. */
  until(test: () => boolean, what: string): Promise<void>;
}

function startDriver(url: string, extra: string[]): Driver {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'runtime/cli/cli.ts',
      'run',
      'tests/helpers/cluster-apps.ts',
      '--nats',
      url,
      '--workers',
      '2',
      '--forever',
      '--no-status',
      ...extra,
      '--',
      'windowed',
      url,
      `--batch-ms=${BATCH_MS}`,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  const checks: { test: () => boolean; resolve(): void }[] = [];
  const poke = () => {
    for (const c of [...checks]) {
      if (!c.test()) continue;
      checks.splice(checks.indexOf(c), 1);
      c.resolve();
    }
  };
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
    poke();
  });
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
    poke();
  });
  child.on('exit', poke);
  return {
    child,
    out: () => out,
    err: () => err,
    until: (test, what) =>
      within(
        new Promise<void>((resolve) => {
          if (test()) resolve();
          else checks.push({ test, resolve });
        }),
        60_000,
        what,
      ),
  };
}

/** `out totals <time> <keys> <sum>` lines, as [time, sum]. */
function totals(out: string): [number, number][] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('out totals '))
    .map((l) => {
      const [, , time, , sum] = l.split(' ');
      return [Number(time), Number(sum)];
    });
}

test('cluster - a standby driver takes over when the active one is killed, and the totals go on', async (t) => {
  t.timeout(180_000);
  const server = await startNatsServer();
  const workers = await startWorkers(server.url, 'windowed', 2, 'sb', { checkpoint: server.url, appArgs: [`--batch-ms=${BATCH_MS}`] });
  const active = startDriver(server.url, []);
  let standby: Driver | undefined;
  try {
    await active.until(() => totals(active.out()).length >= 5, 'the active driver running batches');
    const refused = startDriver(server.url, []);
    await refused.until(() => refused.child.exitCode !== null, 'a second driver without --standby exiting');
    t.is(refused.child.exitCode, 1);
    t.regex(refused.err(), /another driver of cluster-windowed is running .*--standby/);

    standby = startDriver(server.url, ['--standby']);
    const s = standby;
    await s.until(() => /standby: waiting for the active driver of cluster-windowed/.test(s.err()), 'the standby waiting');
    const before = totals(active.out());
    active.child.kill('SIGKILL');
    const killedAt = performance.now();
    await s.until(() => totals(s.out()).length >= 3, 'the standby running batches');
    const takeoverMs = performance.now() - killedAt;
    const after = totals(s.out());
    const [lastTime, lastSum] = before[before.length - 1] as [number, number];
    const [firstTime, firstSum] = after[0] as [number, number];
    // The driver prints a batch's output before it journals the batch's completion, so the
    // last batch printed may be the one in flight at the kill: the standby runs it again
    // (at-least-once output for the batch in flight), or goes on with the next one. Never
    // a gap, never further back.
    t.true(
      firstTime === lastTime || firstTime === lastTime + BATCH_MS,
      `the standby goes on from the last batch the active driver printed (${lastTime}), not ${firstTime}`,
    );
    t.true(firstSum >= lastSum, 'the running totals carry on from where they were');
    // Every batch adds the same number of generated words: the totals grow by whole batches, none lost or doubled.
    const perBatch = (before[1]?.[1] ?? 0) - (before[0]?.[1] ?? 0);
    t.true(perBatch > 0);
    const [zeroTime, zeroSum] = before[0] as [number, number];
    for (const [time, sum] of after) t.is(sum - zeroSum, ((time - zeroTime) / BATCH_MS) * perBatch, `totals at ${time}`);
    t.log(`takeover: ${Math.round(takeoverMs)} ms from SIGKILL to the standby's first batch output`);
  } finally {
    active.child.kill('SIGKILL');
    const last = standby?.child;
    if (last && last.exitCode === null && last.signalCode === null) {
      const exited = new Promise<void>((resolve) => last.once('exit', () => resolve()));
      last.kill('SIGTERM');
      const timer = setTimeout(() => last.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    await stopWorkers(workers);
    await server.stop();
  }
});
