#!/usr/bin/env node
/**
 * The `tributary` command.
 *
 *   tributary run <app> [--forever] [--duration <s>] [--supervise] [--nats <url> --workers <n>] [--ui host:port] [-- app args]
 *   tributary worker <app> --nats <url> [--id <name>] [-- app args]
 *   tributary chaos word-count [--kills n] [--seed s] [--targets driver,nats] [--journal file|nats] [--bad-input]
 *   tributary chaos <app> [--kills n] [--seed s] [--batches n] [-- app args]
 *   tributary inspect <dir | nats://...> [--verify] [--json] [--app <name>]
 */
import { Command, InvalidArgumentError } from 'commander';
import { delayMs } from '../base/clock.ts';
import { TributaryError } from '../base/errors.ts';
import { LOG_LEVELS } from '../base/logger.ts';
import { loadApp } from './load-app.ts';
import { StatusLine } from './status-line.ts';
import { supervise } from './supervisor.ts';

/** Parses `--log-level`; every process started from here (app, workers, chaos children) inherits it. */
function logLevel(value: string): string {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${LOG_LEVELS.join(', ')}`);
  process.env.TRIBUTARY_LOG_LEVEL = value;
  return value;
}

const LOG_LEVEL_HELP = 'log level: fatal, error, warn (default), info, debug, trace or silent (pretty on a terminal, JSON lines otherwise)';

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of seconds');
  return n;
}

async function run(
  file: string,
  args: string[],
  options: { forever?: boolean; duration: number; status: boolean; nats?: string; workers?: number; standby?: boolean; ui?: string },
): Promise<void> {
  const app = await loadApp(file);
  const ssc = await app({ args });
  if (options.ui !== undefined) {
    if (ssc.lifecycle !== 'initialized')
      throw new TributaryError('INVALID_CONFIG', `${file} started its context itself: --ui cannot apply`);
    ssc.ui(options.ui);
  }
  if (options.nats !== undefined || options.workers !== undefined) {
    if (options.nats === undefined || options.workers === undefined) {
      throw new TributaryError(
        'INVALID_CONFIG',
        '--nats and --workers go together: the driver runs the app on that many workers over NATS',
      );
    }
    if (ssc.lifecycle !== 'initialized')
      throw new TributaryError('INVALID_CONFIG', `${file} started its context itself: --workers cannot apply`);
    ssc.cluster(options.nats, {
      workers: options.workers,
      standby: options.standby === true,
      onWaiting: (text) => process.stderr.write(`${text}\n`),
    });
  }
  const status = new StatusLine();
  if (options.status) ssc.addStreamingListener({ onBatchCompleted: (info) => status.update(info) });
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    status.end();
    process.stderr.write(`stopping (${why}): finishing queued batches...\n`);
    await ssc.stop();
  };
  // Not once: Ctrl-C signals the whole process group, so under --supervise this process gets
  // SIGINT from the terminal and again from the supervisor; the second must not kill the stop.
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  if (ssc.lifecycle === 'initialized') await ssc.start();
  const ui = ssc.uiAddress;
  if (ui) process.stderr.write(`web UI: ${ui.url} (Prometheus: ${ui.url}metrics)\n`);
  if (!options.forever) {
    process.stderr.write(`running for ${options.duration} s (--forever to keep going, Ctrl-C to stop)\n`);
    void delayMs(options.duration * 1000).then(() => stop(`${options.duration} s elapsed`));
  }
  try {
    await ssc.awaitTermination();
  } finally {
    status.end();
  }
}

const program = new Command();
program.name('tributary').description('Run Tributary streaming apps.');
program
  .command('run')
  .description('run an app module whose default export builds a StreamingContext')
  .argument('<app>', 'path to the app module (.ts or .js)')
  .argument('[args...]', 'arguments passed to the app')
  .option('--forever', 'run until stopped (default: stop after --duration)')
  .option('--duration <seconds>', 'stop gracefully after this many seconds', seconds, 20)
  .option('--no-status', 'do not show the live status line')
  .option('--nats <url>', 'run the batches on worker processes over this NATS (with --workers)')
  .option('--workers <n>', 'with --nats: live workers to wait for before the first batch', (v) => positiveInt(v))
  .option('--standby', 'with --nats: wait while another driver of the app is active, take over when it dies')
  .option('--ui <host:port>', 'serve the web UI and Prometheus /metrics here (host defaults to 127.0.0.1; port 0 picks a free one)')
  .option('--supervise', 'restart the driver after a failure (with backoff)')
  .option('--max-restarts <n>', 'with --supervise: crashes allowed within the window', (v) => positiveInt(v), 5)
  .option('--restart-window <seconds>', 'with --supervise: the window crashes are counted in', seconds, 60)
  .allowUnknownOption(true)
  .option('--log-level <level>', LOG_LEVEL_HELP, logLevel)
  .action(async (file: string, args: string[], options: RunCliOptions) => {
    if (options.supervise) {
      // The supervisor runs this same command without --supervise as its child.
      const argv = process.argv.slice(2).filter((a, i, all) => !['--supervise'].includes(a) && !isOptionValue(all, i));
      const code = await supervise(process.execPath, [...process.execArgv, process.argv[1] as string, ...argv], {
        maxRestarts: options.maxRestarts,
        windowMs: options.restartWindow * 1000,
      });
      process.exit(code);
    }
    await run(file, args, options);
  });

program
  .command('init')
  .description('write a new project: package.json, tsconfig, an app with getOrCreate, a test on the manual clock, a README')
  .argument('<dir>', 'directory to create (must be empty or absent)')
  .option(
    '--dependency <spec>',
    'what the project depends on for tributary-streams (default: ^ this version; a tarball path to try an unreleased build)',
  )
  .action(async (dir: string, o: { dependency?: string }) => {
    const { initProject, ownPackage } = await import('./init.ts');
    const files = await initProject(dir, o.dependency ?? `^${ownPackage().version}`);
    process.stdout.write(`created ${dir}: ${files.join(', ')}\nnext: cd ${dir} && npm install && npm test\n`);
  });

interface RunCliOptions {
  ui?: string;
  nats?: string;
  standby?: boolean;
  workers?: number;
  forever?: boolean;
  duration: number;
  status: boolean;
  supervise?: boolean;
  maxRestarts: number;
  restartWindow: number;
}

program
  .command('worker')
  .description('serve an app as a cluster worker: register over NATS and run the partitions the driver assigns')
  .argument('<app>', 'path to the same app module the driver runs')
  .argument('[args...]', 'arguments passed to the app')
  .requiredOption('--nats <url>', 'NATS URL of the cluster (nats://[user:pass@]host:port[?creds=...&tls=1])')
  .option('--id <name>', 'worker id (default: host, pid and a random suffix)')
  .option('--lease-ms <ms>', 'lease time: the driver and every worker must agree (default 3000)', (v) => positiveInt(v))
  .allowUnknownOption(true)
  .option('--log-level <level>', LOG_LEVEL_HELP, logLevel)
  .action(async (file: string, args: string[], options: { nats: string; id?: string; leaseMs?: number }) => {
    const app = await loadApp(file);
    const ssc = await app({ args });
    const worker = await ssc.runWorker({
      nats: options.nats,
      ...(options.id ? { id: options.id } : {}),
      ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}),
    });
    process.stderr.write(`worker ${worker.id} registered for ${ssc.appName}; waiting for the driver\n`);
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`worker ${worker.id} stopping (${why})\n`);
      void worker.stop();
    };
    // Not once: a second signal (Ctrl-C reaches the whole process group) must not cut the handover short.
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    try {
      await worker.run();
    } finally {
      const s = worker.stats;
      if (s) {
        process.stderr.write(
          `worker ${worker.id} stopped: data plane sent ${s.messagesSent} messages (${s.bytesSent} bytes, ${s.chunksSent} chunks), received ${s.messagesReceived} (${s.bytesReceived} bytes)\n`,
        );
      }
    }
  });

/** True for the value of --max-restarts or --restart-window (dropped with the option). */
function isOptionValue(all: string[], i: number): boolean {
  const a = all[i] as string;
  const prev = all[i - 1];
  return a === '--max-restarts' || a === '--restart-window' || prev === '--max-restarts' || prev === '--restart-window';
}

program
  .command('chaos')
  .description('kill the driver and nats-servers at seeded random moments and check nothing was lost')
  .argument('[workload]', 'the built-in word-count, or the path of an app module to check against a reference run', 'word-count')
  .argument('[args...]', 'with an app: arguments passed to it')
  .option('--batches <n>', 'with an app: batches of stream time both runs cover (default: 3 per kill, plus 10)', (v) => positiveInt(v))
  .option('--kills <n>', 'number of kills', (v) => positiveInt(v), 20)
  .option('--seed <n>', 'seed of the kill moments and targets (printed in the report)', (v) => positiveInt(v), Date.now() % 100_000)
  .option('--targets <list>', 'what to kill: driver, nats, worker (with --workers), comma-separated', 'driver')
  .option('--workers <n>', 'run the workload on this many worker processes (needs --journal nats)', (v) => positiveInt(v))
  .option('--journal <kind>', 'checkpoint journal: file or nats', 'file')
  .option('--cluster', 'with --journal nats: a 3-node cluster and an R3 journal (default when nats is a target)')
  .option('--single-server', 'with --journal nats: one nats-server and an R1 journal, even when nats is a target')
  .option('--timeout <seconds>', 'give up after this long', seconds, 480)
  .option('--keep', 'keep the work directory (outputs and checkpoint)')
  .option(
    '--bad-input',
    'also feed malformed records (bad UTF-8, bad JSON, CBOR, oversize) through a JetStream input and check the dead letters (with the file journal, a nats-server carries only that input)',
  )
  .option('--no-progress', 'no progress bar')
  .option('--log-level <level>', LOG_LEVEL_HELP, logLevel)
  .action(async (workload: string, args: string[], o: ChaosCliOptions) => {
    if (workload !== 'word-count') {
      const { chaosApp } = await import('./chaos/chaos-app-command.ts');
      process.exit(await chaosApp(workload, args, o));
    }
    const targets = o.targets.split(',').map((t) => t.trim());
    for (const t of targets) if (t !== 'driver' && t !== 'nats' && t !== 'worker') throw new InvalidArgumentError(`unknown target ${t}`);
    if (targets.includes('worker') && o.workers === undefined)
      throw new TributaryError('INVALID_CONFIG', '--targets worker needs --workers <n>');
    if (o.workers !== undefined && (o.journal !== 'nats' || o.workers < 2)) {
      throw new TributaryError(
        'INVALID_CONFIG',
        '--workers needs --journal nats and at least 2 workers (a cluster keeps its checkpoint in JetStream)',
      );
    }
    if (o.journal !== 'file' && o.journal !== 'nats') throw new InvalidArgumentError(`unknown journal ${o.journal}`);
    const { runChaos, formatChaosReport } = await import('./chaos/runner.ts');
    process.stderr.write(`chaos: ${o.kills} kills of ${targets.join(',')} on the ${o.journal} journal, seed ${o.seed}\n`);
    const report = await runChaos({
      kills: o.kills,
      seed: o.seed,
      targets: targets as ('driver' | 'nats' | 'worker')[],
      ...(o.workers !== undefined ? { workers: o.workers } : {}),
      journal: o.journal,
      ...(o.cluster ? { cluster: true } : o.singleServer ? { cluster: false } : {}),
      timeoutMs: o.timeout * 1000,
      progress: o.progress && process.stderr.isTTY === true,
      keep: o.keep === true,
      ...(o.badInput ? { badInput: true } : {}),
    });
    process.stdout.write(formatChaosReport(report));
    if (!report.passed) process.exit(2);
  });

program
  .command('inspect')
  .description('show what a checkpoint holds (read-only, also while its app runs); exit 1 when damaged, 2 when not a checkpoint')
  .argument('<checkpoint>', 'a checkpoint directory or a nats:// URL')
  .option('--verify', 'read every journal frame and snapshot back; list each bad one with its file (or stream, bucket) and offset')
  .option('--json', 'print the report as JSON (shape: runtime/cli/inspect/inspect-report.ts)')
  .option('--app <name>', 'with a nats:// URL: the app whose checkpoint to read (when the server holds several)')
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  .action(async (location: string, o: { json?: boolean; verify?: boolean; app?: string }) => {
    const { inspectCommand } = await import('./inspect/inspect-command.ts');
    const code = await inspectCommand(location, o);
    if (code !== 0) process.exit(code);
  });

interface ChaosCliOptions {
  batches?: number;
  workers?: number;
  kills: number;
  seed: number;
  targets: string;
  journal: 'file' | 'nats';
  cluster?: boolean;
  singleServer?: boolean;
  timeout: number;
  keep?: boolean;
  badInput?: boolean;
  progress: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number >= 0');
  return n;
}

program.parseAsync(process.argv).then(
  () => process.exit(0),
  (error: unknown) => {
    const code = error instanceof TributaryError ? ` [${error.code}]` : '';
    process.stderr.write(`tributary: ${error instanceof Error ? error.message : String(error)}${code}\n`);
    if (error instanceof Error && error.cause) process.stderr.write(`  caused by: ${String(error.cause)}\n`);
    process.exit(1);
  },
);
