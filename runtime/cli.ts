#!/usr/bin/env node
/**
 * The `tributary` command.
 *
 *   tributary run <app> [--forever] [--duration <s>] [-- app args]
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import type { App } from './app.ts';
import { delayMs } from './clock.ts';
import { TributaryError } from './errors.ts';
import { StatusLine } from './status-line.ts';

async function loadApp(file: string): Promise<App> {
  const full = path.resolve(file);
  if (full.endsWith('.ts') || full.endsWith('.mts')) {
    // Apps may be written in TypeScript: load them through tsx's ESM hooks.
    const { register } = await import('tsx/esm/api');
    register();
  }
  const mod = (await import(pathToFileURL(full).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new TributaryError('INVALID_CONFIG', `${file} must export default a function that returns a StreamingContext (see defineApp)`);
  }
  return mod.default as App;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of seconds');
  return n;
}

async function run(file: string, args: string[], options: { forever?: boolean; duration: number; status: boolean }): Promise<void> {
  const app = await loadApp(file);
  const ssc = await app({ args });
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
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (ssc.lifecycle === 'initialized') await ssc.start();
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
  .allowUnknownOption(true)
  .action(async (file: string, args: string[], options: { forever?: boolean; duration: number; status: boolean }) => {
    await run(file, args, options);
  });

program.parseAsync(process.argv).then(
  () => process.exit(0),
  (error: unknown) => {
    const code = error instanceof TributaryError ? ` [${error.code}]` : '';
    process.stderr.write(`tributary: ${error instanceof Error ? error.message : String(error)}${code}\n`);
    if (error instanceof Error && error.cause) process.stderr.write(`  caused by: ${String(error.cause)}\n`);
    process.exit(1);
  },
);
