/**
 * Loads an app module for `tributary run`, `worker` and `chaos`: its default export
 * must be a function that builds a StreamingContext (see defineApp).
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { App } from '../api/app.ts';
import { TributaryError } from '../base/errors.ts';

/**
 * Imports `file` (TypeScript through tsx) and returns its default export.
 *
 * @example
 * const app = await loadApp('app.ts'); const ssc = await app({ args: [] });
 */
export async function loadApp(file: string): Promise<App> {
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
