/**
 * The engine's structured logger (pino), quiet by default in tests.
 */
import { pino } from 'pino';

/** The logger type the engine passes around. */
export type Logger = pino.Logger;

/**
 * A logger for an app: level from TRIBUTARY_LOG_LEVEL (default `warn`), JSON to stderr.
 *
 * @example
 * const logger = createLogger('wc');
 */
export function createLogger(appName: string): Logger {
  const level = process.env.TRIBUTARY_LOG_LEVEL ?? 'warn';
  return pino({ name: appName, level }, pino.destination(2));
}
