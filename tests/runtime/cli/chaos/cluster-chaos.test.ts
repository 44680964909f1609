/**
 * Chaos on a cluster: the workload runs on 3 worker processes over a real
 * nats-server while the runner SIGKILLs the driver, SIGKILLs or pauses workers
 * (SIGSTOP past the lease, then SIGCONT), adds a worker and stops one with SIGTERM.
 * The oracle must find nothing lost, repeated or wrong, and every fault must be
 * followed by a recovery.
 */
import { promises as fs } from 'node:fs';
import test from 'ava';
import { formatChaosReport, runChaos } from '../../../../runtime/cli/chaos/runner.ts';

test('chaos - driver kills, worker kills and pauses, a join and a leave on 3 workers pass', async (t) => {
  t.timeout(300_000);
  const r = await runChaos({
    kills: 4,
    seed: 12,
    targets: ['driver', 'worker'],
    journal: 'nats',
    cluster: false,
    workers: 3,
    progress: false,
    timeoutMs: 240_000,
  });
  try {
    t.log(formatChaosReport(r));
    t.true(r.passed, formatChaosReport(r));
    const targets = r.kills.map((k) => k.target);
    t.is(targets.length, 6, '4 faults, a join and a leave');
    t.true(targets.includes('worker-join') && targets.includes('worker-leave'));
    t.true(
      targets.some((k) => k.startsWith('worker-kill') || k.startsWith('worker-pause')),
      targets.join(),
    );
    t.is(r.kills.filter((k) => k.recoveryMs !== undefined).length, 6, 'every fault was followed by a recovery');
    t.is(r.recordsLost, 0);
    t.is(r.duplicates, 0);
    t.is(r.batchesMissing, 0);
    t.is(r.batchesMismatched, 0);
    t.is(r.finalStateMismatches, 0);
    t.regex(formatChaosReport(r), /recovery by target: .*worker-(kill|pause)/);
  } finally {
    await fs.rm(r.workDir, { recursive: true, force: true });
  }
});
