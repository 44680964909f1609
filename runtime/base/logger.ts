/**
 * The engine's structured logger (pino), quiet by default in tests: JSON lines, or
 * pino-pretty's one line per event when stderr is a terminal.
 */
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { InvalidConfigError } from './errors.ts';

/** The logger type the engine passes around. */
export type Logger = pino.Logger;

/** The levels `TRIBUTARY_LOG_LEVEL` and `--log-level` take. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * A logger for an app: level from TRIBUTARY_LOG_LEVEL (default `warn`); pretty,
 * one line per event, when stderr is a terminal (unless TRIBUTARY_LOG_FORMAT=json),
 * JSON lines otherwise (`pretty` forces either).
 *
 * @example
 * const logger = createLogger('wc');
 */
export function createLogger(appName: string, options: { readonly pretty?: boolean } = {}): Logger {
  const level = process.env.TRIBUTARY_LOG_LEVEL || 'warn';
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new InvalidConfigError(`TRIBUTARY_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const usePretty = options.pretty ?? (process.stderr.isTTY === true && process.env.TRIBUTARY_LOG_FORMAT !== 'json');
  if (!usePretty) return pino({ name: appName, level }, pino.destination(2));
  return pino(
    { name: appName, level },
    pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, ignore: 'pid,hostname', singleLine: true }),
  );
}

/**
 * An error as one line, its causes after it: for the logs of expected conditions
 * (a retry, a reconnect), which carry no stack trace.
 *
 * @example
 * logger.warn({ reason: reasonOf(error) }, 'journal operation failed; retrying');
 */
export function reasonOf(error: unknown): string {
  const parts: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e !== undefined && depth < 4; depth++) {
    parts.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(' (cause: ') + ')'.repeat(Math.max(0, parts.length - 1));
}
