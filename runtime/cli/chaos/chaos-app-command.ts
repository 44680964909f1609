/**
 * `tributary chaos <app>`: checks the options that apply to an app module, runs
 * the check and prints its report; the exit code is 0 on a pass, 2 on a failure.
 */
import { TributaryError } from '../../base/errors.ts';
import { formatAppChaosReport, runAppChaos } from './app-runner.ts';

/** The chaos command's options, as commander parsed them. */
export interface ChaosAppCliOptions {
  readonly batches?: number;
  readonly kills: number;
  readonly seed: number;
  readonly targets: string;
  readonly journal: string;
  readonly workers?: number;
  readonly badInput?: boolean;
  readonly cluster?: boolean;
  readonly timeout: number;
  readonly keep?: boolean;
}

/**
 * Runs the check of the app at `file` and returns the process exit code.
 *
 * @example
 * process.exit(await chaosApp('app.ts', [], { kills: 5, seed: 7, targets: 'driver', journal: 'file', timeout: 480 }));
 */
export async function chaosApp(file: string, args: readonly string[], o: ChaosAppCliOptions): Promise<number> {
  // The reference run needs the same input on the same stream-time line: the app runs in one process on a
  // file journal the runner owns, and only that process is killed.
  if (o.targets !== 'driver' || o.journal !== 'file' || o.workers !== undefined || o.badInput || o.cluster) {
    throw new TributaryError(
      'INVALID_CONFIG',
      'a chaos check of an app kills its driver process on a file journal: --targets, --journal nats, --workers, --cluster and --bad-input apply to word-count only',
    );
  }
  process.stderr.write(`chaos: ${o.kills} kills of ${file}, seed ${o.seed}: a reference run, then the run with kills\n`);
  const report = await runAppChaos({
    app: file,
    args,
    kills: o.kills,
    seed: o.seed,
    ...(o.batches !== undefined ? { batches: o.batches } : {}),
    timeoutMs: o.timeout * 1000,
    keep: o.keep === true,
  });
  process.stdout.write(formatAppChaosReport(report));
  return report.passed ? 0 : 2;
}
