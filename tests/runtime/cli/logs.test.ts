/**
 * Logs: JSON lines when stderr is not a terminal, pino-pretty's one line per event
 * on a terminal, `--log-level` on the commands, and expected conditions (retries,
 * reconnects) logged as one line with a reason and no stack trace.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { reasonOf } from '../../../runtime/base/logger.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Logs one warning with a retry reason through createLogger in a fresh process; returns its stderr. */
async function logOnce(pretty: boolean | undefined, env: Record<string, string> = {}): Promise<string> {
  const code = `
    import { createLogger, reasonOf } from './runtime/base/logger.ts';
    const logger = createLogger('logs-test'${pretty === undefined ? '' : `, { pretty: ${pretty} }`});
    const error = new Error('timeout', { cause: new Error('no responders') });
    logger.warn({ reason: reasonOf(error), attempt: 2 }, 'journal operation failed; retrying');
    logger.info('an info line');
  `;
  const { stderr } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  return stderr;
}

/** The messages of the JSON log lines of a one-second demo run with `extra` arguments. */
async function demoMessages(extra: string[]): Promise<string[]> {
  const { stderr } = await run(
    process.execPath,
    ['--import', 'tsx', 'runtime/cli/cli.ts', 'run', 'demos/word-count.ts', '--duration', '1', '--no-status', ...extra],
    { cwd: ROOT, env: { ...process.env, TRIBUTARY_LOG_LEVEL: '' } },
  );
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
}

test('logs - a reason is one line with its causes, never a stack', (t) => {
  t.is(reasonOf(new Error('timeout', { cause: new TypeError('no responders') })), 'Error: timeout (cause: TypeError: no responders)');
  t.is(reasonOf('plain'), 'plain');
});

test('logs - JSON lines off a terminal, at the level TRIBUTARY_LOG_LEVEL names', async (t) => {
  const lines = (await logOnce(undefined, { TRIBUTARY_LOG_LEVEL: 'info' })).trim().split('\n');
  t.is(lines.length, 2);
  const [warn, info] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.like(warn, {
    level: 40,
    msg: 'journal operation failed; retrying',
    reason: 'Error: timeout (cause: Error: no responders)',
    attempt: 2,
  });
  t.false('err' in (warn ?? {}), 'no error object, no stack');
  t.like(info, { level: 30, msg: 'an info line' });
  t.is((await logOnce(undefined, { TRIBUTARY_LOG_LEVEL: 'warn' })).trim().split('\n').length, 1, 'info is below warn');
});

test('logs - pretty, one line per event, as on a terminal', async (t) => {
  const lines = (await logOnce(true, { TRIBUTARY_LOG_LEVEL: 'info' })).trim().split('\n');
  t.is(lines.length, 2, lines.join('\n'));
  t.regex(
    lines[0] ?? '',
    /WARN.*\(logs-test\): journal operation failed; retrying .*"reason":"Error: timeout \(cause: Error: no responders\)"/,
  );
  t.false((lines[0] ?? '').startsWith('{'));
  t.regex(lines[1] ?? '', /INFO.*an info line/);
});

test('logs - --log-level is checked and reaches the app', async (t) => {
  const bad = await run(process.execPath, ['--import', 'tsx', 'runtime/cli/cli.ts', 'run', 'demos/word-count.ts', '--log-level', 'loud'], {
    cwd: ROOT,
  }).catch((e: { code: number; stderr: string }) => e);
  t.is((bad as { code: number }).code, 1);
  t.regex((bad as { stderr: string }).stderr, /--log-level.*must be one of fatal, error, warn, info, debug, trace, silent/);
  t.true((await demoMessages(['--log-level', 'debug'])).includes('checkpoint committed'), 'debug lines from the app');
  t.false((await demoMessages([])).includes('checkpoint committed'), 'none at the default level');
});
