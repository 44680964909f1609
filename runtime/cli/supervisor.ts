/**
 * `tributary run <app> --supervise`: restarts the driver after a failure, as
 * Spark's `--supervise` does in cluster mode — with backoff, a log line per
 * restart, and giving up after too many crashes within a window.
 */
import { spawn } from 'node:child_process';
import { holdMs } from '../base/clock.ts';

/** When to give up and how fast to retry. */
export interface SuperviseOptions {
  /** Crashes allowed within `windowMs` before giving up (default 5). */
  readonly maxRestarts: number;
  /** The window crashes are counted in (default 60 s). */
  readonly windowMs: number;
  /** First backoff, doubled per crash in the window up to `backoffMsMax`. */
  readonly backoffMs?: number;
  readonly backoffMsMax?: number;
  /** Where restart lines go (default stderr). */
  readonly log?: (line: string) => void;
}

/**
 * Runs `command args` until it exits 0 or is stopped, restarting it after crashes;
 * resolves with the exit code the supervisor should end with.
 *
 * @example
 * const code = await supervise(process.execPath, [cli, 'run', 'app.js'], { maxRestarts: 5, windowMs: 60_000 });
 */
export async function supervise(command: string, args: readonly string[], options: SuperviseOptions): Promise<number> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const crashes: number[] = [];
  let stopping = false;
  let current: ReturnType<typeof spawn> | undefined;
  const forward = (signal: NodeJS.Signals) => {
    stopping = true;
    current?.kill(signal);
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  try {
    for (let run = 1; ; run++) {
      const child = spawn(command, args, { stdio: 'inherit' });
      current = child;
      const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (c, s) => resolve({ code: c, signal: s })),
      );
      if (stopping) return code ?? 0;
      if (code === 0) return 0;
      const now = Date.now();
      crashes.push(now);
      while (crashes.length > 0 && (crashes[0] as number) < now - options.windowMs) crashes.shift();
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      if (crashes.length > options.maxRestarts) {
        log(`supervisor: driver ${why}; ${crashes.length} crashes within ${options.windowMs / 1000} s: giving up`);
        return 1;
      }
      const wait = Math.min((options.backoffMs ?? 500) * 2 ** (crashes.length - 1), options.backoffMsMax ?? 10_000);
      log(
        `supervisor: driver ${why} (run ${run}); restarting in ${wait} ms (${crashes.length}/${options.maxRestarts} crashes in the window)`,
      );
      await holdMs(wait);
      if (stopping) return 0;
    }
  } finally {
    process.off('SIGTERM', forward);
    process.off('SIGINT', forward);
  }
}
