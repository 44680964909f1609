/**
 * The `tributary inspect <checkpoint>` command: prints the report as a table or,
 * with `--json`, as one JSON document, and answers with the exit code: 0 when
 * nothing is damaged, 1 when something is, 2 when the location cannot be inspected
 * (not a checkpoint, a bad URL, an unreachable server, a read that failed).
 */
import { InspectUsageError } from './errors.ts';
import { formatInspectReport } from './format-inspect.ts';
import { inspectCheckpoint } from './inspect-checkpoint.ts';

/** Exit codes of the command. */
export const INSPECT_EXIT = { ok: 0, damaged: 1, usage: 2 } as const;

/** Options of the command line. */
export interface InspectCliOptions {
  readonly json?: boolean;
  readonly verify?: boolean;
  readonly app?: string;
}

/**
 * Runs the command; resolves with its exit code.
 *
 * @example
 * process.exitCode = await inspectCommand('./checkpoints/wc', { verify: true });
 */
export async function inspectCommand(location: string, options: InspectCliOptions): Promise<number> {
  try {
    const report = await inspectCheckpoint(location, { verify: options.verify === true, app: options.app });
    process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatInspectReport(report));
    return report.damage.length > 0 ? INSPECT_EXIT.damaged : INSPECT_EXIT.ok;
  } catch (error) {
    // Exit code 1 means damage found, only: anything that stopped the reading is 2.
    const cause = error instanceof InspectUsageError ? '' : ` (${error instanceof Error ? error.name : 'error'})`;
    process.stderr.write(`tributary inspect: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
    return INSPECT_EXIT.usage;
  }
}
